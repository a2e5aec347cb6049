#include "tempest/redis/command.hpp"

#include <charconv>
#include <cstring>

namespace tempest::redis {
namespace {
std::string_view number(char (&buf)[24], long long v) {
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return {buf, static_cast<std::size_t>(r.ptr - buf)};
}
}  // namespace

Command& Command::operator=(const Command& other) {
  if (this == &other) return *this;
  size_ = 0;
  append(other.body().data(), other.size_);
  argc_ = other.argc_;
  write_head();
  return *this;
}

Command& Command::operator=(Command&& other) noexcept {
  if (this == &other) return *this;
  argc_ = other.argc_;
  size_ = other.size_;
  head_ = other.head_;
  if (other.heap_) {
    heap_ = std::move(other.heap_);
    capacity_ = other.capacity_;
  } else {
    heap_.reset();
    capacity_ = kInline;
    // The whole inline buffer: a fixed-size copy compiles to a few vector moves, cheaper than a
    // call to memcpy for the few bytes in use.
    std::memcpy(inline_, other.inline_, sizeof inline_);
  }
  other.size_ = 0;
  other.argc_ = 0;
  other.head_ = 0;
  other.capacity_ = kInline;
  return *this;
}

void Command::reserve_more(std::size_t n) {
  if (size_ + n <= capacity_) return;
  std::size_t cap = capacity_ * 2;
  while (cap < size_ + n)
    cap *= 2;
  auto bigger = std::make_unique<char[]>(kHead + cap);
  std::memcpy(bigger.get(), buffer(), kHead + size_);
  heap_ = std::move(bigger);
  capacity_ = cap;
}

void Command::append(const char* p, std::size_t n) {
  reserve_more(n);
  if (n != 0) std::memcpy(buffer() + kHead + size_, p, n);
  size_ += n;
}

void Command::write_long_head() noexcept {
  char head[kHead];
  head[0] = '*';
  const auto r = std::to_chars(head + 1, head + kHead - 2, argc_);
  char* end = r.ptr;
  *end++ = '\r';
  *end++ = '\n';
  head_ = static_cast<std::size_t>(end - head);
  std::memcpy(buffer() + kHead - head_, head, head_);
}

Command& Command::arg_int(long long v) {
  char buf[24];
  return arg(number(buf, v));
}

void Command::append_to(std::string& out) const {
  if (argc_ == 0) {
    out += "*0\r\n";
    return;
  }
  out.append(buffer() + kHead - head_, head_ + size_);
}

std::string_view Command::name() const noexcept {
  return argument(0);
}

std::string_view Command::argument(std::size_t i) const noexcept {
  const std::string_view b = body();
  std::size_t pos = 0;
  for (std::size_t k = 0; k < argc_; ++k) {
    // "$<len>\r\n<bytes>\r\n", as arg() wrote it.
    const auto nl = b.find("\r\n", pos);
    std::size_t len = 0;
    std::from_chars(b.data() + pos + 1, b.data() + nl, len);
    const auto start = nl + 2;
    if (k == i) return b.substr(start, len);
    pos = start + len + 2;
  }
  return {};
}

}  // namespace tempest::redis
