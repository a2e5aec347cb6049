/// @file
/// Building commands: binary-safe arguments encoded as RESP arrays of bulk strings.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace tempest::redis {

class Command;
namespace detail {
/// A bit naming how `c` may be used (detail/commands.hpp), kept by pipelines.
std::uint8_t command_use_bit(const Command& c) noexcept;
}  // namespace detail

/// One Redis command: its name and arguments, encoded as they are appended (RESP array of bulk
/// strings). Typical cache commands fit in the object itself: building one allocates nothing.
class Command {
 public:
  Command() = default;  ///< An empty command (no name yet).
  /// A command named `name` (e.g. "GET"), arguments to follow.
  explicit Command(std::string_view name) { arg(name); }
  /// Copies and moves keep the encoding (a move leaves `other` empty).
  ///@{
  Command(const Command& other) { *this = other; }
  Command(Command&& other) noexcept { *this = std::move(other); }
  Command& operator=(const Command& other);
  Command& operator=(Command&& other) noexcept;
  ///@}
  ~Command() = default;

  /// Appends "$<len>\r\n<bytes>\r\n" (inline: a literal name folds to a few stores).
  Command& arg(std::string_view a) {
    const std::size_t n = a.size();
    std::size_t digits = n < 10 ? 1 : 2;  // the usual lengths: below 100
    for (std::size_t v = n / 100; v != 0; v /= 10)
      ++digits;
    const std::size_t need = digits + n + 5;
    if (size_ + need > capacity_) reserve_more(need);
    char* out = buffer() + kHead + size_;
    *out++ = '$';
    if (n < 10) {
      *out++ = static_cast<char>('0' + n);
    } else {
      out += digits;
      char* d = out;
      std::size_t v = n;
      do {
        *--d = static_cast<char>('0' + v % 10);
        v /= 10;
      } while (v != 0);
    }
    *out++ = '\r';
    *out++ = '\n';
    if (n != 0) std::memcpy(out, a.data(), n);
    out += n;
    *out++ = '\r';
    *out = '\n';
    size_ += need;
    ++argc_;
    write_head();
    return *this;
  }
  /// The same for C strings and std::string.
  ///@{
  Command& arg(const char* a) { return arg(std::string_view(a)); }
  Command& arg(const std::string& a) { return arg(std::string_view(a)); }
  ///@}
  /// An integer argument in decimal (bool and char are refused: say what you mean).
  template <std::integral I>
  requires(!std::same_as<I, bool> && !std::same_as<I, char>) Command& arg(I v) {
    return arg_int(static_cast<long long>(v));
  }
  /// Appends each of `a` with arg().
  template <class... A>
  Command& args(const A&... a) {
    (arg(a), ...);
    return *this;
  }

  /// Removes every argument (the storage is kept for reuse).
  void clear() noexcept {
    size_ = 0;
    argc_ = 0;
    head_ = 0;
  }
  /// The number of arguments, the name included.
  std::size_t argc() const noexcept { return argc_; }
  /// Bytes of encoded arguments held without allocating again.
  std::size_t capacity() const noexcept { return capacity_; }
  /// No name and no argument.
  bool empty() const noexcept { return argc_ == 0; }
  /// Appends the complete RESP encoding ("*N\r\n$len\r\narg\r\n...") to `out`.
  void append_to(std::string& out) const;
  /// The complete RESP encoding as a new string.
  std::string wire() const {
    std::string s;
    append_to(s);
    return s;
  }
  /// The RESP encoding in place (what append_to() appends; empty for an empty command).
  std::string_view encoded() const noexcept {
    if (argc_ == 0) return {};
    return {buffer() + kHead - head_, head_ + size_};
  }
  /// The command name as given (first argument), for logs and metrics.
  std::string_view name() const noexcept;
  /// Argument `i` (0 is the name); empty past the last one.
  std::string_view argument(std::size_t i) const noexcept;

 private:
  Command& arg_int(long long v);
  void append(const char* p, std::size_t n);
  void reserve_more(std::size_t n);
  /// Keeps "*<argc>\r\n" right-aligned in front of the arguments.
  void write_head() noexcept {
    if (argc_ < 10) {
      char* head = buffer() + kHead - 4;
      head[0] = '*';
      head[1] = static_cast<char>('0' + argc_);
      head[2] = '\r';
      head[3] = '\n';
      head_ = 4;
    } else {
      write_long_head();
    }
  }
  void write_long_head() noexcept;
  char* buffer() noexcept { return heap_ ? heap_.get() : inline_; }
  const char* buffer() const noexcept { return heap_ ? heap_.get() : inline_; }
  std::string_view body() const noexcept { return {buffer() + kHead, size_}; }

  /// The buffer holds room for the "*N\r\n" header (kept up to date, right-aligned against the
  /// arguments, so encoding is one copy) and the encoded arguments. Typical cache commands fit
  /// inline, so building one allocates nothing.
  static constexpr std::size_t kHead = 16;
  static constexpr std::size_t kInline = 104;  ///< bytes of arguments held inline
  std::unique_ptr<char[]> heap_;
  std::size_t size_ = 0;  ///< bytes of encoded arguments
  std::size_t capacity_ = kInline;
  std::size_t argc_ = 0;
  std::size_t head_ = 0;  ///< bytes of the header
  char inline_[kHead + kInline];
};

/// cmd("SET", key, value, "EX", 300)
template <class... A>
Command cmd(std::string_view name, const A&... a) {
  Command c(name);
  c.args(a...);
  return c;
}

/// Several commands written as one unit; exec() returns one reply per command, in order.
class Pipeline {
 public:
  /// Appends a command.
  Pipeline& add(const Command& c) {
    c.append_to(wire_);
    ++count_;
    uses_ |= detail::command_use_bit(c);
    return *this;
  }
  /// Appends cmd(name, a...): `p.add("INCR", "visits").add("TTL", key)`.
  template <class... A>
  Pipeline& add(std::string_view name, const A&... a) {
    return add(cmd(name, a...));
  }
  /// Appends every command of `other`, after those already here.
  Pipeline& append(const Pipeline& other) {
    wire_ += other.wire_;
    count_ += other.count_;
    uses_ |= other.uses_;
    return *this;
  }
  /// The number of commands.
  std::size_t size() const noexcept { return count_; }
  /// No command yet.
  bool empty() const noexcept { return count_ == 0; }
  /// The commands' RESP encoding, concatenated.
  const std::string& wire() const noexcept { return wire_; }
  /// How the commands may be used: a mask of detail::use_bit (detail/commands.hpp).
  std::uint8_t uses() const noexcept { return uses_; }
  /// A pipeline from already encoded RESP commands. Throws std::invalid_argument unless `wire` is
  /// exactly `count` RESP arrays of bulk strings: a wrong count would hand replies to the wrong
  /// callers.
  static Pipeline from_wire(std::string wire, std::size_t count);

 private:
  std::string wire_;
  std::size_t count_ = 0;
  std::uint8_t uses_ = 0;
};

}  // namespace tempest::redis
