#include "tempest/redis/reply.hpp"

#include "tempest/redis/error.hpp"

namespace tempest::redis {

std::string_view to_string(Reply::Type t) noexcept {
  switch (t) {
    case Reply::Type::nil:
      return "nil";
    case Reply::Type::string:
      return "string";
    case Reply::Type::integer:
      return "integer";
    case Reply::Type::status:
      return "status";
    case Reply::Type::error:
      return "error";
    case Reply::Type::array:
      return "array";
  }
  return "unknown";
}

namespace {
[[noreturn]] void unexpected(const Reply& r, const char* wanted) {
  if (r.is_error()) throw ServerError(r.str());
  throw ProtocolError(std::string("unexpected reply type: expected ") + wanted + ", got " +
                      std::string(to_string(r.type())));
}
}  // namespace

std::string Reply::as_string() && {
  if (type_ == Type::string || type_ == Type::status) return std::move(str_);
  unexpected(*this, "string");
}

std::optional<std::string> Reply::as_optional_string() && {
  if (type_ == Type::nil) return std::nullopt;
  if (type_ == Type::string || type_ == Type::status) return std::move(str_);
  unexpected(*this, "string or nil");
}

long long Reply::as_integer() const {
  if (type_ == Type::integer) return integer_;
  unexpected(*this, "integer");
}

std::vector<Reply> Reply::as_array() && {
  if (type_ == Type::array) return std::move(elements_);
  if (type_ == Type::nil) return {};
  unexpected(*this, "array");
}

Reply&& Reply::checked() && {
  if (type_ == Type::error) throw ServerError(str_);
  return std::move(*this);
}

std::string Reply::debug_string() const {
  switch (type_) {
    case Type::nil:
      return "(nil)";
    case Type::integer:
      return "(integer) " + std::to_string(integer_);
    case Type::string:
      return "\"" + str_ + "\"";
    case Type::status:
      return str_;
    case Type::error:
      return "(error) " + str_;
    case Type::array: {
      std::string out = "[";
      for (std::size_t i = 0; i < elements_.size(); ++i) {
        if (i) out += ", ";
        out += elements_[i].debug_string();
      }
      return out + "]";
    }
  }
  return {};
}

}  // namespace tempest::redis
