#include "tempest/redis/command.hpp"

#include <charconv>

namespace tempest::redis {
namespace {
void append_number(std::string& out, long long v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
}  // namespace

Command& Command::arg(std::string_view a) {
  body_ += '$';
  append_number(body_, static_cast<long long>(a.size()));
  body_ += "\r\n";
  body_.append(a);
  body_ += "\r\n";
  ++argc_;
  return *this;
}

Command& Command::arg_int(long long v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return arg(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}

void Command::append_to(std::string& out) const {
  out += '*';
  append_number(out, static_cast<long long>(argc_));
  out += "\r\n";
  out += body_;
}

std::string_view Command::name() const noexcept {
  if (argc_ == 0) return {};
  const auto start = body_.find("\r\n") + 2;
  const auto end = body_.find("\r\n", start);
  return std::string_view(body_).substr(start, end - start);
}

}  // namespace tempest::redis
