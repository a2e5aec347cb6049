#include "tempest/redis/reply.hpp"

#include <array>

#include "tempest/redis/client.hpp"
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

namespace detail {
namespace {
// This thread's spare string buffers (see recycle_string): only this thread touches them.
struct Spares {
  static constexpr std::size_t kKeep = 16;
  static constexpr std::size_t kMaxCapacity = 4096;  // as a pooled request keeps (request.cpp)
  std::array<std::string, kKeep> strings;
  std::size_t size = 0;
};
thread_local Spares t_spares;
const std::size_t kInlineCapacity = std::string().capacity();
}  // namespace

void recycle_string(std::string&& s) noexcept {
  const std::size_t capacity = s.capacity();
  if (capacity <= kInlineCapacity || capacity > Spares::kMaxCapacity) return;
  Spares& spares = t_spares;
  if (spares.size == Spares::kKeep) return;
  s.clear();
  // Into an empty slot: the buffer changes hands (no copy), and `s` is left empty.
  spares.strings[spares.size++] = std::move(s);
}

std::optional<std::string> to_optional_string_reusing(Reply&& r) {
  std::optional<std::string> out = std::move(r).as_optional_string();
  // The value took the request's buffer: a spare one takes its place (the request's next reply
  // is read into it), if this thread has one.
  if (out && out->capacity() > kInlineCapacity) {
    Spares& spares = t_spares;
    if (spares.size != 0) r.str() = std::move(spares.strings[--spares.size]);
  }
  return out;
}
}  // namespace detail

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
