#include "tempest/redis/detail/parser.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "tempest/redis/error.hpp"

namespace tempest::redis::detail {
namespace {

[[noreturn]] void broken(const std::string& what) {
  throw ProtocolError("not a valid RESP reply: " + what);
}

std::string describe_byte(char c) {
  static constexpr char hex[] = "0123456789abcdef";
  const auto u = static_cast<unsigned char>(c);
  std::string out = "0x";
  out += hex[u >> 4];
  out += hex[u & 15];
  if (u >= 0x20 && u < 0x7f) {
    out += " ('";
    out += c;
    out += "')";
  }
  return out;
}

// A decimal integer as RESP writes it: an optional '-' and 1 to 19 digits, nothing else.
long long parse_integer(const char* p, std::size_t n, const char* what) {
  long long v = 0;
  const auto r = std::from_chars(p, p + n, v);
  if (n == 0 || r.ec != std::errc() || r.ptr != p + n || (p[0] == '-' && n == 1))
    broken(std::string("bad ") + what + " '" + std::string(p, std::min<std::size_t>(n, 32)) + "'");
  return v;
}

bool is_big_number(const char* p, std::size_t n) {
  std::size_t i = (n > 0 && p[0] == '-') ? 1 : 0;
  if (i == n) return false;
  for (; i < n; ++i)
    if (p[i] < '0' || p[i] > '9') return false;
  return true;
}

// Bytes for a partial bulk payload reserved up front; the rest grows as it arrives.
constexpr std::size_t kReserveAtMost = std::size_t{16} << 20;
// Elements of an aggregate reserved up front; the rest grow as they arrive.
constexpr std::uint64_t kReserveElements = 64;

}  // namespace

void ReplyParser::reset() {
  root_ = Reply{};
  stack_.clear();
  root_type_ = 0;
  reply_bytes_ = 0;
  rejecting_ = false;
  bulk_ = nullptr;
  bulk_type_ = 0;
  data_left_ = 0;
  crlf_left_ = 0;
  in_bulk_ = false;
}

bool ReplyParser::in_progress() const noexcept {
  return root_type_ != 0 || !stack_.empty() || in_bulk_;
}

std::size_t ReplyParser::parse_simple(const char* p, std::size_t n, std::size_t max_bytes,
                                      Reply& into) {
  if (n < 4) return 0;
  const char type = p[0];
  if (type == '$') {
    std::size_t i = 1;
    std::size_t len = 0;
    while (i < n && i < 12 && p[i] >= '0' && p[i] <= '9') {
      len = len * 10 + static_cast<std::size_t>(p[i] - '0');
      ++i;
    }
    if (i == 1 || i + 1 >= n || p[i] != '\r' || p[i + 1] != '\n') return 0;
    const std::size_t start = i + 2;
    if (len + 2 > max_bytes || n - start < len + 2) return 0;
    if (p[start + len] != '\r' || p[start + len + 1] != '\n')
      return 0;  // the general path says why
    into.type_ = Reply::Type::string;
    into.integer_ = 0;
    into.str_.assign(p + start, len);
    into.elements_.clear();
    return start + len + 2;
  }
  if (type != '+' && type != '-' && type != ':') return 0;
  const void* cr = std::memchr(p, '\r', std::min(n, max_bytes));
  if (cr == nullptr) return 0;
  const auto end = static_cast<std::size_t>(static_cast<const char*>(cr) - p);
  if (end + 1 >= n || p[end + 1] != '\n') return 0;
  if (type == ':') {
    long long v = 0;
    const auto r = std::from_chars(p + 1, p + end, v);
    if (end == 1 || r.ec != std::errc() || r.ptr != p + end || (p[1] == '-' && end == 2)) return 0;
    into.type_ = Reply::Type::integer;
    into.integer_ = v;
    into.str_.clear();
  } else {
    into.type_ = type == '+' ? Reply::Type::status : Reply::Type::error;
    into.integer_ = 0;
    into.str_.assign(p + 1, end - 1);
  }
  into.elements_.clear();
  return end + 2;
}

ReplyParser::Event ReplyParser::parse(const char* data, std::size_t size, std::size_t& used) {
  return parse(data, size, used, nullptr);
}

ReplyParser::Event ReplyParser::parse(const char* data, std::size_t size, std::size_t& used,
                                      Reply* target) {
  used = 0;
  into_target_ = false;
  if (root_type_ == 0 && !in_bulk_ && stack_.empty()) {
    Reply& into = target != nullptr ? *target : root_;
    if (const std::size_t n = parse_simple(data, size, limits_.max_reply_bytes, into); n > 0) {
      used = n;
      into_target_ = target != nullptr;
      return Event::reply;
    }
  }
  for (;;) {
    if (in_bulk_) {
      if (data_left_ > 0) {
        const auto take =
            static_cast<std::size_t>(std::min<std::uint64_t>(data_left_, size - used));
        if (bulk_ != nullptr) bulk_->str().append(data + used, take);
        used += take;
        data_left_ -= take;
        if (data_left_ > 0) return Event::need_more;
      }
      while (crlf_left_ > 0) {
        if (used == size) return Event::need_more;
        if (data[used] != (crlf_left_ == 2 ? '\r' : '\n'))
          broken("a bulk string is not followed by CRLF");
        ++used;
        --crlf_left_;
      }
      in_bulk_ = false;
      finish_bulk();
      const Event e = element_done();
      if (e != Event::need_more) return e;
      continue;
    }
    if (used == size) return Event::need_more;
    const char* line = data + used;
    const std::size_t avail = size - used;
    const void* cr = std::memchr(line, '\r', avail);
    if (cr == nullptr || static_cast<const char*>(cr) + 1 == line + avail) {
      if (avail > limits_.max_reply_bytes)
        broken("a line of more than " + std::to_string(limits_.max_reply_bytes) + " bytes");
      return Event::need_more;
    }
    const auto len = static_cast<std::size_t>(static_cast<const char*>(cr) - line);
    if (line[len + 1] != '\n') broken("a CR not followed by LF");
    used += len + 2;
    const Event e = parse_line(line, len);
    if (e != Event::need_more) return e;
  }
}

ReplyParser::Event ReplyParser::parse_line(const char* line, std::size_t len) {
  if (len == 0) broken("an empty line where a RESP type was expected");
  const char type = line[0];
  const char* body = line + 1;
  const std::size_t n = len - 1;
  if (stack_.empty() && root_type_ == 0 && type != '|') root_type_ = type;
  account(len + 2);
  switch (type) {
    case '+':
    case '-': {
      if (Reply* s = slot())
        *s = type == '+' ? Reply::status(std::string(body, n)) : Reply::error(std::string(body, n));
      return element_done();
    }
    case ':': {
      const long long v = parse_integer(body, n, "integer");
      if (Reply* s = slot()) *s = Reply::integer(v);
      return element_done();
    }
    case '$':
    case '!':
    case '=':
      start_bulk(type, parse_integer(body, n, "length"));
      return in_bulk_ ? Event::need_more : element_done();
    case '*':
    case '%':
    case '~':
    case '>':
    case '|': {
      const long long count = parse_integer(body, n, "element count");
      open_aggregate(type, count);
      // An empty aggregate (or a null array) is complete at once.
      if (count <= 0 && type != '|') return element_done();
      return Event::need_more;
    }
    case '_':
      if (n != 0) broken("a null with a body");
      if (Reply* s = slot()) *s = Reply::nil();
      return element_done();
    case '#':
      if (n != 1 || (body[0] != 't' && body[0] != 'f')) broken("a boolean that is not t or f");
      if (Reply* s = slot()) *s = Reply::integer(body[0] == 't' ? 1 : 0);
      return element_done();
    case ',':
      if (n == 0) broken("an empty double");
      if (Reply* s = slot()) *s = Reply::string(std::string(body, n));
      return element_done();
    case '(':
      if (!is_big_number(body, n)) broken("a big number that is not decimal digits");
      if (Reply* s = slot()) *s = Reply::string(std::string(body, n));
      return element_done();
    default:
      broken("unexpected byte " + describe_byte(type) + " where a RESP type was expected");
  }
}

Reply* ReplyParser::slot() {
  if (stack_.empty()) return rejecting_ ? nullptr : &root_;
  Frame& f = stack_.back();
  if (f.node == nullptr) return nullptr;
  if (f.prepaid > 0) {
    --f.prepaid;  // its room was accounted when the aggregate opened
  } else {
    account(sizeof(Reply));
  }
  if (f.node == nullptr) return nullptr;  // that element went over the limit
  auto& elements = f.node->elements();
  elements.emplace_back();
  return &elements.back();
}

void ReplyParser::open_aggregate(char type, long long count) {
  if (count < 0) {
    if (count != -1 || type != '*') broken("a negative element count");
    if (Reply* s = slot()) *s = Reply::nil();  // RESP2 null array
    return;
  }
  const bool attribute = type == '|';
  // Maps and attributes hold a key and a value per entry.
  auto elements = static_cast<std::uint64_t>(count);
  if (type == '%' || attribute) elements *= 2;
  Reply* node = nullptr;
  std::uint64_t reserve = 0;
  if (!attribute) {
    node = slot();
    if (node != nullptr) {
      *node = Reply::array({});
      // Room for the first elements, accounted now (and not again as they arrive): a declared
      // count is only a claim, and a hostile peer could otherwise make a few bytes of header
      // reserve kilobytes.
      reserve = std::min<std::uint64_t>(elements, kReserveElements);
      account(static_cast<std::size_t>(reserve) * sizeof(Reply));
      if (!rejecting_) node->elements().reserve(static_cast<std::size_t>(reserve));
    }
  }
  if (elements == 0) return;
  if (!rejecting_ && stack_.size() >= limits_.max_depth)
    reject("reply nested deeper than " + std::to_string(limits_.max_depth) + " levels");
  stack_.push_back(Frame{rejecting_ ? nullptr : node, elements, reserve, attribute});
}

void ReplyParser::start_bulk(char type, long long len) {
  if (len < 0) {
    if (len != -1 || type != '$') broken("a negative length");
    if (Reply* s = slot()) *s = Reply::nil();  // RESP2 null bulk string
    return;
  }
  if (type == '=' && len < 4) broken("a verbatim string without its format");
  account(static_cast<std::size_t>(len) + 2);
  bulk_ = slot();
  if (bulk_ != nullptr) {
    *bulk_ = type == '!' ? Reply::error({}) : Reply::string({});
    bulk_->str().reserve(std::min(static_cast<std::size_t>(len), kReserveAtMost));
  }
  bulk_type_ = type;
  data_left_ = static_cast<std::uint64_t>(len);
  crlf_left_ = 2;
  in_bulk_ = true;
}

void ReplyParser::finish_bulk() {
  if (bulk_ != nullptr && bulk_type_ == '=') bulk_->str().erase(0, 4);  // "txt:" and the like
  bulk_ = nullptr;
}

ReplyParser::Event ReplyParser::element_done() {
  while (!stack_.empty()) {
    Frame& f = stack_.back();
    if (--f.remaining > 0) return Event::need_more;
    const bool attribute = f.attribute;
    stack_.pop_back();
    if (attribute) return Event::need_more;  // the value it annotates is still to come
  }
  if (root_type_ == 0) return Event::need_more;  // only an attribute so far
  Event e = root_type_ == '>' ? Event::push : Event::reply;
  if (rejecting_) {
    e = Event::rejected;
    root_ = Reply{};
  }
  rejecting_ = false;
  reply_bytes_ = 0;
  root_type_ = 0;
  return e;
}

void ReplyParser::reject(std::string why) {
  if (rejecting_) return;
  rejecting_ = true;
  rejection_ = std::move(why);
  for (auto& f : stack_)
    f.node = nullptr;
  bulk_ = nullptr;
  root_ = Reply{};
}

void ReplyParser::account(std::size_t bytes) {
  reply_bytes_ += bytes;
  if (!rejecting_ && reply_bytes_ > limits_.max_reply_bytes)
    reject("reply larger than " + std::to_string(limits_.max_reply_bytes) +
           " bytes (max_reply_size)");
}

}  // namespace tempest::redis::detail
