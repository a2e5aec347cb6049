#include "tempest/cache/detail/json_reader.hpp"
#include "tempest/cache/detail/json_decode.hpp"

#include <boost/json/parse.hpp>

#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <system_error>

namespace tempest::cache::detail {

namespace {

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

// Byte classes: JSON's whitespace, and what a string holds as it is (not '"', '\\', a control
// character or a byte of a multi-byte UTF-8 sequence).
constexpr std::uint8_t kWs = 1, kPlain = 2;
constexpr auto kClass = [] {
  std::array<std::uint8_t, 256> t{};
  for (const char c : {' ', '\t', '\n', '\r'})
    t[static_cast<unsigned char>(c)] = kWs;
  for (unsigned c = 0x20; c < 0x80; ++c)
    if (c != '"' && c != '\\') t[c] |= kPlain;
  return t;
}();

const char* skip_ws(const char* q, const char* end) noexcept {
  while (q != end && (kClass[static_cast<unsigned char>(*q)] & kWs))
    ++q;
  return q;
}

// skip_ws for the usual case: nothing, or the one space of json.dumps' ", " and ": ".
inline const char* ws(const char* q, const char* end) noexcept {
  if (q != end && *q == ' ') ++q;
  if (q != end && static_cast<unsigned char>(*q) <= ' ') [[unlikely]]
    q = skip_ws(q, end);
  return q;
}

// The first byte at or after q that a string does not hold as it is (or end): 8 bytes a step
// while 8 remain.
inline const char* scan_plain(const char* q, const char* end) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101, highs = 0x8080808080808080;
  while (end - q >= 8) {
    std::uint64_t x;
    std::memcpy(&x, q, 8);
    // A byte's high bit in m: it is '"' or '\\' (x ^ c is 0, and 0 - 1 borrows), below 0x20, or
    // above 0x7F. A borrow only carries into the byte above one that matched, so the lowest
    // set bit is the first match.
    const std::uint64_t m =
        (((x ^ (ones * '"')) - ones) | ((x ^ (ones * '\\')) - ones) | (x - ones * 0x20) | x) &
        highs;
    if (m != 0) {
      if constexpr (std::endian::native == std::endian::little)
        return q + (std::countr_zero(m) >> 3);
      else
        return q + (std::countl_zero(m) >> 3);
    }
    q += 8;
  }
  while (q != end && (kClass[static_cast<unsigned char>(*q)] & kPlain))
    ++q;
  return q;
}

// Can `c` start a JSON value (or one of Python's NaN / Infinity)?
bool starts_value(char c) noexcept {
  switch (c) {
    case '{':
    case '[':
    case '"':
    case 't':
    case 'f':
    case 'n':
    case '-':
    case 'N':
    case 'I':
      return true;
    default:
      return is_digit(c);
  }
}

bool starts_number(char c) noexcept {
  return c == '-' || c == 'N' || c == 'I' || is_digit(c);
}

const char* kind_of(char c) noexcept {
  switch (c) {
    case '{':
      return "an object";
    case '[':
      return "an array";
    case '"':
      return "a string";
    case 't':
    case 'f':
      return "a boolean";
    case 'n':
      return "null";
    default:
      return "a number";
  }
}

// Length of the well-formed UTF-8 sequence (Unicode table 3-7) that starts at q with a byte
// >= 0x80, or 0 when there is none: no overlong forms, no surrogates, nothing above U+10FFFF.
std::size_t utf8_length(const char* q, const char* end) noexcept {
  const auto b = [q](std::size_t i) { return static_cast<unsigned char>(q[i]); };
  const auto avail = static_cast<std::size_t>(end - q);
  const unsigned c = b(0);
  const auto tail = [&](std::size_t i) { return (b(i) & 0xC0u) == 0x80u; };
  if (c >= 0xC2 && c <= 0xDF) return avail >= 2 && tail(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (avail < 3) return 0;
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return b(1) >= lo && b(1) <= hi && tail(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (avail < 4) return 0;
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return b(1) >= lo && b(1) <= hi && tail(2) && tail(3) ? 4 : 0;
  }
  return 0;
}

int hex4_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The 4 hex digits at q (q + 4 <= end is the caller's), or -1.
long hex4(const char* q) noexcept {
  long v = 0;
  for (int i = 0; i < 4; ++i) {
    const int d = hex4_digit(q[i]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

void append_utf8(std::string& out, unsigned long cp) {
  char buf[4];
  std::size_t n;
  if (cp < 0x80) {
    buf[0] = static_cast<char>(cp);
    n = 1;
  } else if (cp < 0x800) {
    buf[0] = static_cast<char>(0xC0 | (cp >> 6));
    buf[1] = static_cast<char>(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    buf[0] = static_cast<char>(0xE0 | (cp >> 12));
    buf[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    buf[2] = static_cast<char>(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    buf[0] = static_cast<char>(0xF0 | (cp >> 18));
    buf[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = static_cast<char>(0x80 | (cp & 0x3F));
    n = 4;
  }
  out.append(buf, n);
}

// Powers of ten a double holds exactly.
constexpr double kExactPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                  1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// Boost.JSON 1.81's value::to_number limits for a double read into a 64-bit integer.
constexpr double kInt64Limit = 9223372036854774784.0;
constexpr double kUint64Limit = 18446744073709549568.0;

}  // namespace

// A number token, checked against JSON's grammar (and Python's NaN / Infinity).
struct JsonReader::Number {
  const char* begin = nullptr;
  const char* end = nullptr;
  bool negative = false;
  bool integral = true;      // no fraction, no exponent
  int special = 0;           // 1: NaN, 2: Infinity
  std::uint64_t digits = 0;  // the first (up to 19) significant digits
  int significant = 0;       // how many of them
  bool inexact = false;      // nonzero digits beyond those 19
  long long exp10 = 0;       // value ~ digits * 10^exp10 (saturated, far beyond double's range)
};

// ---- errors

[[gnu::cold]] void JsonReader::invalid_at(const char* at, std::string_view what) const {
  std::string m = "invalid JSON at offset ";
  m += std::to_string(at - begin_);
  m += ": ";
  m += what;
  throw std::invalid_argument(m);
}

[[gnu::cold]] void JsonReader::invalid(std::string_view what) const {
  invalid_at(p_, what);
}

[[gnu::cold]] void JsonReader::wrong_shape_at(std::size_t offset, std::string_view what) const {
  std::string m = "JSON of the wrong shape at offset ";
  m += std::to_string(offset);
  m += ": ";
  m += what;
  throw std::invalid_argument(m);
}

[[gnu::cold]] void JsonReader::wrong_shape(std::string_view what) const {
  wrong_shape_at(offset(), what);
}

[[gnu::cold]] void JsonReader::missing_member(std::string_view name) const {
  std::string m = "missing member '";
  m += name;
  m += '\'';
  wrong_shape(m);
}

[[gnu::cold]] void JsonReader::unexpected(const char* expected) const {
  if (!starts_value(*p_)) invalid("expected a value");
  std::string m = "expected ";
  m += expected;
  m += ", found ";
  m += kind_of(*p_);
  wrong_shape(m);
}

// ---- structure

void JsonReader::skip_ws() noexcept {
  p_ = detail::skip_ws(p_, end_);
}

char JsonReader::peek() {
  skip_ws();
  if (p_ == end_) invalid("unexpected end of the text");
  return *p_;
}

std::size_t JsonReader::value_offset() {
  skip_ws();
  return offset();
}

void JsonReader::enter() {
  if (depth_ == max_depth) invalid("nested deeper than 256");
  ++depth_;
  ++p_;
  first_ = true;
}

void JsonReader::begin_object() {
  if (peek() != '{') unexpected("an object");
  enter();
}

void JsonReader::begin_array() {
  if (peek() != '[') unexpected("an array");
  enter();
}

bool JsonReader::next_key() {
  const char* q = ws(p_, end_);
  if (q != end_) {
    if (*q == ',' && !first_) {
      q = ws(q + 1, end_);
      if (q != end_ && *q == '"') {
        p_ = q + 1;
        return true;
      }
    } else if (*q == '"' && first_) {
      first_ = false;
      p_ = q + 1;
      return true;
    } else if (*q == '}') {  // (after a ',' it is a trailing comma: key_error below)
      p_ = q + 1;
      --depth_;
      first_ = false;
      return false;
    }
  }
  key_error();
}

void JsonReader::key_error() {
  char c = peek();
  if (!first_) {
    if (c != ',') invalid("expected ',' or '}'");
    ++p_;
    c = peek();
  }
  if (c != '"') invalid("expected a member name");
  invalid("bad member");  // not reached: next_key() takes it
}

void JsonReader::key(std::string_view& name) {
  const char* s = p_;
  const char* q = scan_plain(s, end_);
  if (q != end_ && *q == '"') {
    name = std::string_view(s, static_cast<std::size_t>(q - s));
    q = ws(q + 1, end_);
  } else {
    scratch_.assign(s, q);
    string_slow(q, &scratch_);
    name = scratch_;
    q = ws(p_, end_);
  }
  if (q == end_ || *q != ':') {
    p_ = q;
    (void)peek();
    invalid("expected ':'");
  }
  p_ = q + 1;
}

bool JsonReader::next_member(std::string_view& name) {
  if (!next_key()) return false;
  key(name);
  return true;
}

bool JsonReader::next_element() {
  const char c = peek();
  if (first_) {
    first_ = false;
    if (c == ']') {
      ++p_;
      --depth_;
      return false;
    }
    return true;
  }
  if (c == ']') {
    ++p_;
    --depth_;
    return false;
  }
  if (c != ',') invalid("expected ',' or ']'");
  ++p_;
  if (peek() == ']') invalid("expected a value");  // trailing comma
  return true;
}

void JsonReader::finish() {
  skip_ws();
  if (p_ != end_) invalid("text after the value");
}

// ---- strings

void JsonReader::string_slow(const char* q, std::string* out) {
  for (;;) {
    if (q == end_) invalid_at(q, "unterminated string");
    const auto u = static_cast<unsigned char>(*q);
    if (u == '"') {
      p_ = q + 1;
      return;
    }
    if (u == '\\') {
      if (end_ - q < 2) invalid_at(end_, "unterminated string");
      char c;
      switch (q[1]) {
        case '"':
          c = '"';
          break;
        case '\\':
          c = '\\';
          break;
        case '/':
          c = '/';
          break;
        case 'b':
          c = '\b';
          break;
        case 'f':
          c = '\f';
          break;
        case 'n':
          c = '\n';
          break;
        case 'r':
          c = '\r';
          break;
        case 't':
          c = '\t';
          break;
        case 'u': {
          for (int i = 2; i < 6; ++i) {
            if (q + i == end_) invalid_at(end_, "unterminated \\u escape");
            if (hex4_digit(q[i]) < 0) invalid_at(q, "bad \\u escape");
          }
          long cp = hex4(q + 2);
          if (cp >= 0xDC00 && cp <= 0xDFFF) invalid_at(q, "lone low surrogate");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            const long lo = end_ - q >= 12 && q[6] == '\\' && q[7] == 'u' ? hex4(q + 8) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) invalid_at(q, "lone high surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            q += 6;
          }
          q += 6;
          if (out) append_utf8(*out, static_cast<unsigned long>(cp));
          continue;
        }
        default:
          invalid_at(q, "bad escape");
      }
      if (out) out->push_back(c);
      q += 2;
      continue;
    }
    if (u < 0x20) invalid_at(q, "control character in a string");
    if (u < 0x80) {
      const char* s = q;
      q = scan_plain(q + 1, end_);
      if (out) out->append(s, q);
      continue;
    }
    const std::size_t n = utf8_length(q, end_);
    if (n == 0) invalid_at(q, "invalid UTF-8 in a string");
    if (out) out->append(q, n);
    q += n;
  }
}

void JsonReader::read_string(std::string& out) {
  const char* q = ws(p_, end_);
  if (q != end_ && *q == '"') {
    const char* s = q + 1;
    q = scan_plain(s, end_);
    if (q != end_ && *q == '"') {
      out.clear();  // then append(pointer, size): a copy, where assign() goes the general way
      out.append(s, static_cast<std::size_t>(q - s));
      p_ = q + 1;
      return;
    }
  }
  string_value_slow(out);
}

void JsonReader::string_value_slow(std::string& out) {
  if (peek() != '"') unexpected("a string");
  const char* s = p_ + 1;
  const char* q = scan_plain(s, end_);
  out.assign(s, q);
  string_slow(q, &out);
}

// ---- literals

bool JsonReader::read_bool() {
  const char c = peek();
  const auto avail = end_ - p_;
  if (c == 't') {
    if (avail < 4 || std::memcmp(p_, "true", 4) != 0) invalid("bad literal");
    p_ += 4;
    return true;
  }
  if (c == 'f') {
    if (avail < 5 || std::memcmp(p_, "false", 5) != 0) invalid("bad literal");
    p_ += 5;
    return false;
  }
  unexpected("true or false");
}

bool JsonReader::is_null() {
  if (peek() != 'n') return false;
  if (end_ - p_ < 4 || std::memcmp(p_, "null", 4) != 0) invalid("bad literal");
  p_ += 4;
  return true;
}

// ---- numbers

JsonReader::Number JsonReader::scan_number() {
  Number n;
  n.begin = p_;
  const char* q = p_;
  const auto literal = [&](const char* word, std::size_t len) {
    if (static_cast<std::size_t>(end_ - q) < len || std::memcmp(q, word, len) != 0)
      invalid_at(n.begin, "bad number");
    q += len;
  };
  if (*q == '-') {
    n.negative = true;
    ++q;
  }
  if (q != end_ && *q == 'I') {
    literal("Infinity", 8);
    n.special = 2;
  } else if (q != end_ && *q == 'N' && !n.negative) {
    literal("NaN", 3);
    n.special = 1;
  } else {
    const auto digit = [&n](int d, bool fraction) {
      if (n.significant < 19) {
        n.digits = n.digits * 10 + static_cast<unsigned>(d);
        if (n.digits != 0) ++n.significant;
        if (fraction) --n.exp10;
      } else {
        n.inexact = n.inexact || d != 0;
        if (!fraction) ++n.exp10;
      }
    };
    if (q == end_ || !is_digit(*q)) invalid_at(q, "expected a digit");
    if (*q == '0') {
      ++q;
    } else {
      while (q != end_ && is_digit(*q))
        digit(*q++ - '0', false);
    }
    if (q != end_ && *q == '.') {
      n.integral = false;
      ++q;
      if (q == end_ || !is_digit(*q)) invalid_at(q, "expected a digit after '.'");
      while (q != end_ && is_digit(*q))
        digit(*q++ - '0', true);
    }
    if (q != end_ && (*q == 'e' || *q == 'E')) {
      n.integral = false;
      ++q;
      bool negative_exp = false;
      if (q != end_ && (*q == '+' || *q == '-')) negative_exp = *q++ == '-';
      if (q == end_ || !is_digit(*q)) invalid_at(q, "expected a digit in the exponent");
      long long e = 0;
      while (q != end_ && is_digit(*q)) {
        if (e < 1'000'000'000'000LL) e = e * 10 + (*q - '0');
        ++q;
      }
      n.exp10 += negative_exp ? -e : e;
    }
  }
  n.end = q;
  p_ = q;
  return n;
}

double JsonReader::number_to_double(const Number& n) const {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (n.special == 1) return std::numeric_limits<double>::quiet_NaN();
  if (n.special == 2) return n.negative ? -inf : inf;
  if (n.digits == 0) return n.negative && !n.integral ? -0.0 : 0.0;  // "-0" is the int 0
  // Exact digits and an exact power of ten: one IEEE operation rounds correctly.
  if (!n.inexact && n.digits <= (std::uint64_t{1} << 53) && n.exp10 >= -22 && n.exp10 <= 22) {
    double d = static_cast<double>(n.digits);
    if (n.exp10 >= 0)
      d *= kExactPow10[n.exp10];
    else
      d /= kExactPow10[-n.exp10];
    return n.negative ? -d : d;
  }
  double d = 0;
  const auto r = std::from_chars(n.begin, n.end, d);
  if (r.ec == std::errc::result_out_of_range) {
    // Python's float(): inf beyond the largest double, (signed) zero below the smallest.
    const bool overflow = n.exp10 + n.significant - 1 >= 0;
    d = overflow ? inf : 0.0;
    return n.negative ? -d : d;
  }
  if (r.ec != std::errc() || r.ptr != n.end) invalid_at(n.begin, "bad number");
  return d;
}

// The magnitude of an integral token into v; false when it is above limit.
bool JsonReader::number_magnitude(const Number& n, std::uint64_t limit, std::uint64_t& v) const {
  v = 0;
  for (const char* q = n.begin + (n.negative ? 1 : 0); q != n.end; ++q) {
    const auto d = static_cast<std::uint64_t>(*q - '0');
    if (d > limit || v > (limit - d) / 10) return false;
    v = v * 10 + d;
  }
  return true;
}

std::int64_t JsonReader::read_int(std::int64_t min, std::int64_t max) {
  // The usual integer first: up to 18 digits, no fraction, no exponent.
  const char* q = ws(p_, end_);
  const bool negative = q != end_ && *q == '-';
  q += negative;
  if (q != end_ && *q >= '1' && *q <= '9') {
    const char* first = q;
    std::int64_t v = 0;
    while (q != end_ && is_digit(*q) && q - first < 18)
      v = v * 10 + (*q++ - '0');
    if (q == end_ || !(is_digit(*q) || *q == '.' || *q == 'e' || *q == 'E')) {
      if (negative) v = -v;
      if (v >= min && v <= max) {
        p_ = q;
        return v;
      }
    }
  }
  return int_slow(min, max);
}

std::int64_t JsonReader::int_slow(std::int64_t min, std::int64_t max) {
  if (!starts_number(peek())) unexpected("an integer");
  const Number n = scan_number();
  const auto at = static_cast<std::size_t>(n.begin - begin_);
  if (n.special) wrong_shape_at(at, "expected an integer, found NaN or Infinity");
  std::int64_t v;
  if (n.integral) {
    constexpr std::uint64_t two63 = std::uint64_t{1} << 63;
    std::uint64_t m;
    if (!number_magnitude(n, n.negative ? two63 : two63 - 1, m))
      wrong_shape_at(at, "integer out of range");
    v = static_cast<std::int64_t>(n.negative ? 0 - m : m);  // modular: -2^63 included
  } else {
    const double d = number_to_double(n);
    if (!(d >= -kInt64Limit && d <= kInt64Limit)) wrong_shape_at(at, "integer out of range");
    v = static_cast<std::int64_t>(d);
    if (static_cast<double>(v) != d) wrong_shape_at(at, "expected an integer, found a fraction");
  }
  if (v < min || v > max) wrong_shape_at(at, "integer out of range");
  return v;
}

std::uint64_t JsonReader::read_uint(std::uint64_t max) {
  if (!starts_number(peek())) unexpected("an integer");
  const Number n = scan_number();
  const auto at = static_cast<std::size_t>(n.begin - begin_);
  if (n.special) wrong_shape_at(at, "expected an integer, found NaN or Infinity");
  std::uint64_t v;
  if (n.integral) {
    // "-0" is 0; any other negative integer is out of range.
    if (!number_magnitude(n, n.negative ? 0 : std::numeric_limits<std::uint64_t>::max(), v))
      wrong_shape_at(at, "integer out of range");
  } else {
    const double d = number_to_double(n);
    if (!(d >= 0 && d <= kUint64Limit)) wrong_shape_at(at, "integer out of range");
    v = static_cast<std::uint64_t>(d);
    if (static_cast<double>(v) != d) wrong_shape_at(at, "expected an integer, found a fraction");
  }
  if (v > max) wrong_shape_at(at, "integer out of range");
  return v;
}

double JsonReader::read_double() {
  // The usual number first: up to 19 digits (a double's exact integers), at most 22 of them
  // after the point, no exponent: one division by an exact power of ten rounds correctly.
  const char* q = ws(p_, end_);
  const bool negative = q != end_ && *q == '-';
  q += negative;
  if (q != end_ && is_digit(*q)) {
    std::uint64_t m = 0;
    std::ptrdiff_t digits = 0, fraction = 0;
    if (*q == '0') {
      ++q;
    } else {
      const char* first = q;
      while (q != end_ && is_digit(*q))
        m = m * 10 + static_cast<unsigned>(*q++ - '0');
      digits = q - first;
    }
    bool ok = true;
    if (q != end_ && *q == '.') {
      const char* first = ++q;
      while (q != end_ && is_digit(*q))
        m = m * 10 + static_cast<unsigned>(*q++ - '0');
      fraction = q - first;
      ok = fraction > 0;
    }
    ok = ok && digits + fraction <= 19 && fraction <= 22 && m <= (std::uint64_t{1} << 53) &&
         (q == end_ || !(is_digit(*q) || *q == '.' || *q == 'e' || *q == 'E'));
    if (ok) {
      p_ = q;
      if (m == 0) return negative && fraction > 0 ? -0.0 : 0.0;  // "-0" is the int 0
      const double v = static_cast<double>(m) / kExactPow10[fraction];
      return negative ? -v : v;
    }
  }
  return double_slow();
}

double JsonReader::double_slow() {
  if (!starts_number(peek())) unexpected("a number");
  return number_to_double(scan_number());
}

// ---- skipping

void JsonReader::skip_value() {
  switch (peek()) {
    case '{': {
      begin_object();
      std::string_view name;
      while (next_member(name))
        skip_value();
      return;
    }
    case '[':
      begin_array();
      while (next_element())
        skip_value();
      return;
    case '"': {
      const char* q = scan_plain(p_ + 1, end_);
      if (q != end_ && *q == '"')
        p_ = q + 1;
      else
        string_slow(q, nullptr);
      return;
    }
    case 't':
    case 'f':
      (void)read_bool();
      return;
    case 'n':
      (void)is_null();
      return;
    default:
      if (!starts_number(*p_)) invalid("expected a value");
      (void)scan_number();
  }
}

std::string_view JsonReader::raw_value() {
  skip_ws();
  const char* s = p_;
  skip_value();
  return std::string_view(s, static_cast<std::size_t>(p_ - s));
}

boost::json::value json_parse_fallback(JsonReader& r, std::size_t& at) {
  at = r.value_offset();
  const std::string_view text = r.raw_value();
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec) r.wrong_shape_at(at, "a value Boost.JSON cannot read: " + ec.message());
  return v;
}

}  // namespace tempest::cache::detail
