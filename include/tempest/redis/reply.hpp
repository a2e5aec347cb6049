/// @file
/// An owning RESP2 reply value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tempest::redis {

namespace detail {
class ReplyParser;
/// Gives back the buffer of a string taken from a reply (a GET's value) once its reader is done
/// with it: the next GET on this thread that takes a reply's buffer leaves this one in its place,
/// so the request's next reply is read without an allocation. A few are kept per thread (too
/// small or too large ones are just freed).
void recycle_string(std::string&& s) noexcept;
}  // namespace detail

/// One reply of Redis: nil, a bulk string, an integer, a status, an error or an array of replies.
/// An error reply is a value here; the checked accessors turn it into ServerError.
class Reply {
 public:
  /// The RESP2 reply types.
  enum class Type : std::uint8_t { nil, string, integer, status, error, array };

  Reply() = default;  ///< A nil reply.
  /// Replies of each type, as a parser or a test builds them.
  ///@{
  static Reply nil() { return Reply{}; }
  static Reply string(std::string s) { return Reply(Type::string, std::move(s)); }
  static Reply status(std::string s) { return Reply(Type::status, std::move(s)); }
  static Reply error(std::string s) { return Reply(Type::error, std::move(s)); }
  static Reply integer(long long v) {
    Reply r;
    r.type_ = Type::integer;
    r.integer_ = v;
    return r;
  }
  static Reply array(std::vector<Reply> elements) {
    Reply r;
    r.type_ = Type::array;
    r.elements_ = std::move(elements);
    return r;
  }
  ///@}

  /// The reply's type.
  Type type() const noexcept { return type_; }
  /// Type tests.
  ///@{
  bool is_nil() const noexcept { return type_ == Type::nil; }
  bool is_string() const noexcept { return type_ == Type::string; }
  bool is_integer() const noexcept { return type_ == Type::integer; }
  bool is_status() const noexcept { return type_ == Type::status; }
  bool is_error() const noexcept { return type_ == Type::error; }
  bool is_array() const noexcept { return type_ == Type::array; }
  ///@}

  /// Text of a string, status or error reply (empty for the other types).
  ///@{
  const std::string& str() const noexcept { return str_; }
  std::string& str() noexcept { return str_; }
  ///@}
  /// Value of an integer reply (0 for the other types).
  long long integer() const noexcept { return integer_; }
  /// Elements of an array reply (empty for the other types).
  ///@{
  const std::vector<Reply>& elements() const noexcept { return elements_; }
  std::vector<Reply>& elements() noexcept { return elements_; }
  ///@}

  /// Checked accessors: throw ServerError for an error reply, ProtocolError for another type.
  /// as_optional_string() gives nullopt for nil.
  ///@{
  std::string as_string() &&;
  std::optional<std::string> as_optional_string() &&;
  long long as_integer() const;
  std::vector<Reply> as_array() &&;
  ///@}
  /// Throws ServerError when this is an error reply; returns *this otherwise.
  Reply&& checked() &&;

  /// Human-readable rendering for debugging and the CLI, e.g. "(integer) 3".
  std::string debug_string() const;

  /// Same type and same contents.
  friend bool operator==(const Reply&, const Reply&) = default;

 private:
  friend class detail::ReplyParser;  ///< builds replies in place
  Reply(Type t, std::string s) : type_(t), str_(std::move(s)) {}

  Type type_ = Type::nil;
  long long integer_ = 0;
  std::string str_;
  std::vector<Reply> elements_;
};

/// The type's name: "nil", "string", "integer", "status", "error" or "array".
std::string_view to_string(Reply::Type t) noexcept;

}  // namespace tempest::redis
