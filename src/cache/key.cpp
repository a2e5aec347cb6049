// SHA256_Init & co. are deprecated in OpenSSL 3 in favour of EVP, which is much slower here.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tempest/cache/key.hpp"

#include <boost/json/value.hpp>

#include <openssl/sha.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>

namespace tempest::cache {

// ---- KeyWriter
// ------------------------------------------------------------------------------------

void KeyWriter::comma() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (depth_ > 0) {
    if (!first_[depth_ - 1]) out_ += ',';
    first_[depth_ - 1] = false;
  }
}

void KeyWriter::open(char bracket) {
  comma();
  if (depth_ == kMaxDepth)
    throw std::invalid_argument("cache key argument nests deeper than " +
                                std::to_string(kMaxDepth));
  out_ += bracket;
  first_[depth_++] = true;
}

void KeyWriter::integer(long long v) {
  comma();
  char buf[24];
  const char* end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out_.append(buf, static_cast<std::size_t>(end - buf));  // (pointer, size): no _M_replace
}

void KeyWriter::uinteger(unsigned long long v) {
  comma();
  char buf[24];
  const char* end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out_.append(buf, static_cast<std::size_t>(end - buf));  // (pointer, size): no _M_replace
}

void KeyWriter::integer_text(std::string_view digits) {
  comma();
  out_ += digits;
}

void KeyWriter::number(double v) {
  comma();
  out_ += python_float_repr(v);
}

namespace {
void append_u(std::string& out, unsigned code) {
  static constexpr char hex[] = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4)
    out += hex[(code >> shift) & 0xF];
}

// Appends `s` as a JSON string literal with Python's ensure_ascii escaping.
void append_python_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          // Python escapes everything outside ' '..'~', DEL (0x7f) included (the reference
          // notes say otherwise; the vectors computed by Python settle it).
          if (c < 0x20 || c == 0x7f) {
            append_u(out, c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence strictly (no overlongs, no surrogates, <= U+10FFFF). What is not
    // UTF-8 becomes U+FFFD, one per maximal ill-formed subpart, as Python's
    // bytes.decode("utf-8", "replace") does (so "/users/%FF" has a key, and Python's for it).
    unsigned len = 0, code = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, code = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, code = c & 0x0F;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, code = c & 0x07;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      append_u(out, 0xFFFD);
      ++i;
      continue;
    }
    unsigned k = 1;
    for (; k < len && i + k < s.size(); ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (cc < l || cc > h) break;
      code = (code << 6) | (cc & 0x3F);
    }
    if (k < len) {
      append_u(out, 0xFFFD);
      i += k;
      continue;
    }
    if (code >= 0x10000) {
      code -= 0x10000;
      append_u(out, 0xD800 + (code >> 10));
      append_u(out, 0xDC00 + (code & 0x3FF));
    } else {
      append_u(out, code);
    }
    i += len;
  }
  out += '"';
}
}  // namespace

void KeyWriter::string(std::string_view utf8) {
  comma();
  append_python_string(out_, utf8);
}

void KeyWriter::begin_array() {
  open('[');
}

void KeyWriter::end_array() {
  out_ += ']';
  --depth_;
}

void KeyWriter::begin_object() {
  open('{');
}

void KeyWriter::key(std::string_view utf8) {
  comma();
  append_python_string(out_, utf8);
  out_ += ':';
  after_key_ = true;
}

void KeyWriter::end_object() {
  out_ += '}';
  --depth_;
}

double float_as_decimal(float v) {
  if (!std::isfinite(v)) return static_cast<double>(v);
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // the float's shortest digits
  double d = 0;
  std::from_chars(buf, r.ptr, d);
  return d;
}

// ---- Python float repr
// ----------------------------------------------------------------------------

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits, from the scientific form "d.ddde[+-]XX".
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));
  const auto e_pos = sci.find('e');
  std::string_view mantissa = sci.substr(0, e_pos);
  int exponent = 0;
  std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+' ? 1 : 0), sci.data() + sci.size(),
                  exponent);
  std::string out;
  if (mantissa.front() == '-') {
    out += '-';
    mantissa.remove_prefix(1);
  }
  std::string digits;
  for (char ch : mantissa)
    if (ch != '.') digits += ch;
  if (exponent < -4 || exponent >= 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += 'e';
    out += exponent < 0 ? '-' : '+';
    const int magnitude = exponent < 0 ? -exponent : exponent;
    if (magnitude < 10) out += '0';
    out += std::to_string(magnitude);
    return out;
  }
  if (exponent < 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-exponent - 1), '0');
    out += digits;
    return out;
  }
  const auto int_digits = static_cast<std::size_t>(exponent) + 1;
  if (digits.size() <= int_digits) {
    out += digits;
    out.append(int_digits - digits.size(), '0');
    out += ".0";
  } else {
    out.append(digits, 0, int_digits);
    out += '.';
    out.append(digits, int_digits);
  }
  return out;
}

// ---- digest and key
// -------------------------------------------------------------------------------

namespace {
// The 32 lowercase hex digits of the digest's first 16 bytes, h[0..3] big-endian.
void write_hex_digest(char* out, const std::uint32_t* h) {
#if defined(__SSE2__)
  // All at once: split each byte into its two nibbles, interleave them, add '0' or 'a' - 10.
  alignas(16) unsigned char bytes[16];
  for (int i = 0; i < 4; ++i) {
    const std::uint32_t be =
        std::endian::native == std::endian::little ? __builtin_bswap32(h[i]) : h[i];
    std::memcpy(bytes + 4 * i, &be, 4);
  }
  const __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(bytes));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
  const __m128i lo = _mm_and_si128(v, low4);
  const auto to_hex = [](__m128i n) {
    const __m128i letter = _mm_cmpgt_epi8(n, _mm_set1_epi8(9));
    return _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8('0')),
                        _mm_and_si128(letter, _mm_set1_epi8('a' - '0' - 10)));
  };
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), to_hex(_mm_unpacklo_epi8(hi, lo)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), to_hex(_mm_unpackhi_epi8(hi, lo)));
#else
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const unsigned byte = (h[i] >> (24 - 8 * j)) & 0xFF;
      out[8 * i + 2 * j] = hex[byte >> 4];
      out[8 * i + 2 * j + 1] = hex[byte & 15];
    }
#endif
}

// Writes the first 32 hex digits of SHA-256 of {"args":<args>,"kwargs":<kwargs>} to `out`.
void write_digest(char* out, std::string_view args_json, std::string_view kwargs_json) {
  static constexpr std::string_view head = "{\"args\":";
  static constexpr std::string_view middle = ",\"kwargs\":";
  const std::size_t n = head.size() + args_json.size() + middle.size() + kwargs_json.size() + 1;
  // The text goes straight into SHA-256's 64-byte block when it fits one (55 bytes, the usual
  // call): padded here and hashed by SHA256_Transform, the block function itself (with SHA-NI
  // where the CPU has it), without SHA256_Update/Final's buffering. Longer texts go through
  // the low-level SHA256_* calls in one update (OpenSSL 3's EVP interface, which SHA256() goes
  // through too, spends several times the hashing itself on provider dispatch).
  alignas(16) unsigned char block[64] = {};  // zero: SHA-256's padding when the text fits
  std::unique_ptr<unsigned char[]> heap;
  unsigned char* text = block;
  if (n > 55) {
    heap.reset(new unsigned char[n]);
    text = heap.get();
  }
  unsigned char* p = text;
  std::memcpy(p, head.data(), head.size());
  p += head.size();
  if (!args_json.empty()) std::memcpy(p, args_json.data(), args_json.size());
  p += args_json.size();
  std::memcpy(p, middle.data(), middle.size());
  p += middle.size();
  if (kwargs_json == "{}") {  // the common case: no call through memcpy
    p[0] = '{';
    p[1] = '}';
  } else if (!kwargs_json.empty()) {
    std::memcpy(p, kwargs_json.data(), kwargs_json.size());
  }
  p += kwargs_json.size();
  *p = '}';
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  if (n <= 55) {
    block[n] = 0x80;
    const std::uint64_t bits = static_cast<std::uint64_t>(n) * 8;  // the length, big-endian
    for (int i = 0; i < 8; ++i)
      block[56 + i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    SHA256_Transform(&ctx, block);
  } else {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256_Update(&ctx, text, n);
    SHA256_Final(md, &ctx);
    for (int i = 0; i < 4; ++i)
      ctx.h[i] = (std::uint32_t{md[4 * i]} << 24) | (std::uint32_t{md[4 * i + 1]} << 16) |
                 (std::uint32_t{md[4 * i + 2]} << 8) | md[4 * i + 3];
  }
  // The digest is h[0..7] big-endian: its first 16 bytes are h[0..3].
  write_hex_digest(out, ctx.h);
}
}  // namespace

std::string args_digest(std::string_view args_json, std::string_view kwargs_json) {
  std::string out(32, '\0');
  write_digest(out.data(), args_json, kwargs_json);
  return out;
}

namespace {
// key_prefix + name + ':' + digest into p (key_prefix.size() + name.size() + 33 characters).
void write_key(char* p, std::string_view key_prefix, std::string_view name,
               std::string_view args_json, std::string_view kwargs_json) {
  if (!key_prefix.empty()) std::memcpy(p, key_prefix.data(), key_prefix.size());
  p += key_prefix.size();
  if (!name.empty()) std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = ':';
  write_digest(p, args_json, kwargs_json);
}
}  // namespace

std::string make_key(std::string_view key_prefix, std::string_view name, std::string_view args_json,
                     std::string_view kwargs_json) {
  // Sized once, written in place: one allocation, no appends.
  std::string key(key_prefix.size() + name.size() + 33, '\0');
  write_key(key.data(), key_prefix, name, args_json, kwargs_json);
  return key;
}

namespace detail {
char* KeyBuffer::resize(std::size_t n) {
  size_ = n;
  if (n <= inline_.size()) {
    heap_.reset();
    return inline_.data();
  }
  heap_.reset(new char[n]);
  return heap_.get();
}

void KeyBuffer::assign(std::string_view text) {
  char* p = resize(text.size());
  if (!text.empty()) std::memcpy(p, text.data(), text.size());
}

void make_key(KeyBuffer& out, std::string_view key_prefix, std::string_view name,
              std::string_view args_json, std::string_view kwargs_json) {
  write_key(out.resize(key_prefix.size() + name.size() + 33), key_prefix, name, args_json,
            kwargs_json);
}

void append_python_json_string(std::string& out, std::string_view utf8) {
  append_python_string(out, utf8);
}
}  // namespace detail

// ---- JSON text to Python's JSON (for the CLI and the reference vectors) -------------------------

namespace {
class Transcoder {
 public:
  Transcoder(std::string_view text, KeyWriter& w) : s_(text), w_(w) {}

  void document() {
    skip_ws();
    if (peek() != '[') fail("expected a JSON array of arguments");
    value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the JSON array");
  }

  // An object's members, from its '{' to its '}': each name (refused when repeated, where
  // Python's json.loads would keep the last one silently) goes to `member`, which reads the value.
  template <class F>
  void members(F member) {
    ++pos_;  // '{'
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return;
    }
    std::set<std::string> names;
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a member name");
      const std::size_t at = pos_;
      std::string name = string();
      if (!names.insert(name).second) {
        pos_ = at;
        fail("member \"" + name +
             "\" appears twice (Python's json.loads would keep the last one silently)");
      }
      skip_ws();
      if (peek() != ':') fail("expected ':'");
      ++pos_;
      member(name);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return;
      }
      fail("expected ',' or '}'");
    }
  }

  // A JSON object of keyword arguments, written with its members sorted by name (as the Python
  // SDK's key builder sorts kwargs).
  void kwargs_document() {
    skip_ws();
    if (peek() != '{') fail("expected a JSON object of keyword arguments");
    std::vector<std::pair<std::string, std::string>> kwargs;
    members([&](const std::string& name) {
      KeyWriter one;
      Transcoder inner(s_, one);
      inner.pos_ = pos_;
      inner.value(1);
      pos_ = inner.pos_;
      kwargs.emplace_back(name, one.take());
    });
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the JSON object");
    std::sort(kwargs.begin(), kwargs.end());
    w_.begin_object();
    for (const auto& [name, text] : kwargs) {
      w_.key(name);
      w_.raw(text);
    }
    w_.end_object();
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw std::invalid_argument("bad --args JSON at offset " + std::to_string(pos_) + ": " + what);
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  void expect(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("unexpected character");
    pos_ += word.size();
  }

  void value(int depth) {
    if (depth > 128) fail("nesting too deep");
    skip_ws();
    switch (peek()) {
      case '[': {
        ++pos_;
        w_.begin_array();
        skip_ws();
        if (peek() == ']') {
          ++pos_;
        } else {
          for (;;) {
            value(depth + 1);
            skip_ws();
            if (peek() == ',') {
              ++pos_;
              continue;
            }
            if (peek() == ']') {
              ++pos_;
              break;
            }
            fail("expected ',' or ']'");
          }
        }
        w_.end_array();
        return;
      }
      case '{':
        w_.begin_object();
        members([&](const std::string& name) {
          w_.key(name);
          value(depth + 1);
        });
        w_.end_object();
        return;
      case '"':
        w_.string(string());
        return;
      case 't':
        expect("true"), w_.boolean(true);
        return;
      case 'f':
        expect("false"), w_.boolean(false);
        return;
      case 'n':
        expect("null"), w_.null();
        return;
      case 'N':  // json.loads reads these three, and json.dumps writes them back
        expect("NaN"), w_.number(std::numeric_limits<double>::quiet_NaN());
        return;
      case 'I':
        expect("Infinity"), w_.number(std::numeric_limits<double>::infinity());
        return;
      default:
        number();
        return;
    }
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail("bad \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") fail("lone high surrogate");
            pos_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone low surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          fail("bad escape");
      }
    }
  }

  // Integers stay integers (arbitrary size is refused beyond 64 bits); decimals and exponents
  // become the nearest double (std::from_chars rounds correctly).
  void number() {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == 'I' && pos_ > start) {
      expect("Infinity"), w_.number(-std::numeric_limits<double>::infinity());
      return;
    }
    if (!(peek() >= '0' && peek() <= '9')) fail("unexpected character");
    const std::size_t int_start = pos_;
    while (peek() >= '0' && peek() <= '9')
      ++pos_;
    if (pos_ - int_start > 1 && s_[int_start] == '0') fail("leading zero");
    bool is_float = false;
    if (peek() == '.') {
      is_float = true;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("digits expected after '.'");
      while (peek() >= '0' && peek() <= '9')
        ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      is_float = true;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("digits expected in the exponent");
      while (peek() >= '0' && peek() <= '9')
        ++pos_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    if (is_float) {
      // As Python's float(): the nearest double, 1e400 is inf and 1e-400 is 0.0 (with the sign).
      double d = 0;
      const auto r = std::from_chars(first, last, d);
      if (r.ec == std::errc::result_out_of_range) {
        const std::string_view text(first, static_cast<std::size_t>(last - first));
        const auto e = text.find_first_of("eE");
        const bool tiny = e != std::string_view::npos && text.substr(e + 1).starts_with('-');
        const bool negative = *first == '-';
        d = tiny ? (negative ? -0.0 : 0.0)
                 : (negative ? -std::numeric_limits<double>::infinity()
                             : std::numeric_limits<double>::infinity());
      } else if (r.ec != std::errc{}) {
        fail("bad number");
      }
      w_.number(d);
    } else {
      // Python's ints have no bound: the digits go as they are ("-0" is 0).
      std::string_view digits(first, static_cast<std::size_t>(last - first));
      w_.integer_text(digits == "-0" ? std::string_view("0") : digits);
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  KeyWriter& w_;
};
}  // namespace

std::string key_from_json_args(std::string_view key_prefix, std::string_view name,
                               std::string_view json_array, std::string_view json_kwargs) {
  KeyWriter w;
  Transcoder(json_array, w).document();
  KeyWriter kw;
  Transcoder(json_kwargs, kw).kwargs_document();
  return make_key(key_prefix, name, w.str(), kw.str());
}

void KeyWriter::raw(std::string_view json) {
  comma();
  out_ += json;
}

// ---- JSON values as Python's json.dumps writes them
// ------------------------------------------------

namespace {
void write_python_json(std::string& out, const boost::json::value& v, JsonStyle style, int depth) {
  if (depth > 256) throw std::invalid_argument("JSON value nests deeper than 256");
  const char* comma = style == JsonStyle::python_default ? ", " : ",";
  const char* colon = style == JsonStyle::python_default ? ": " : ":";
  switch (v.kind()) {
    case boost::json::kind::null:
      out += "null";
      break;
    case boost::json::kind::bool_:
      out += v.get_bool() ? "true" : "false";
      break;
    case boost::json::kind::int64: {
      char buf[24];
      out.append(buf, std::to_chars(buf, buf + sizeof buf, v.get_int64()).ptr);
      break;
    }
    case boost::json::kind::uint64: {
      char buf[24];
      out.append(buf, std::to_chars(buf, buf + sizeof buf, v.get_uint64()).ptr);
      break;
    }
    case boost::json::kind::double_:
      // repr(): 19.9, 5.0, 1e+16; NaN and Infinity as json.dumps writes them (allow_nan).
      out += python_float_repr(v.get_double());
      break;
    case boost::json::kind::string:
      append_python_string(out, std::string_view(v.get_string()));
      break;
    case boost::json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.get_array()) {
        if (!first) out += comma;
        first = false;
        write_python_json(out, e, style, depth + 1);
      }
      out += ']';
      break;
    }
    case boost::json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& m : v.get_object()) {
        if (!first) out += comma;
        first = false;
        append_python_string(out, std::string_view(m.key()));
        out += colon;
        write_python_json(out, m.value(), style, depth + 1);
      }
      out += '}';
      break;
    }
  }
}
}  // namespace

std::string python_json(const boost::json::value& v, JsonStyle style) {
  std::string out;
  write_python_json(out, v, style, 0);
  return out;
}

}  // namespace tempest::cache
