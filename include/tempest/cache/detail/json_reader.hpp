// JsonReader: a pull reader over JSON text, for decoding cached values straight into C++ types
// without building a document (see detail/json_decode.hpp and JsonCodec in codec.hpp).
//
// The caller walks the document in order: begin_object() then next_member(name) until it returns
// false, begin_array() then next_element() until false, and one read_*() / skip_value() per
// value; finish() after the top-level value. Whitespace is allowed wherever JSON allows it
// (space, tab, LF, CR). Every problem throws std::invalid_argument naming it and its byte offset:
// "invalid JSON at offset N: ..." for text that is not JSON, "JSON of the wrong shape at offset
// N: ..." for JSON that is not what the caller asked for. Nothing reads past the text's end, and
// objects and arrays nest at most max_depth deep.
//
// What it reads is what Python's json.loads reads, with these choices:
//   - Strings must be valid UTF-8 (json.loads reads str; the cache stores UTF-8). All escapes,
//     \uXXXX and surrogate pairs included, become UTF-8. A lone surrogate (\ud800 alone, or a low
//     one first) is an error: json.loads would give a str that has no UTF-8 form. Raw control
//     characters in strings are errors (json.loads' default strict=True).
//   - NaN, Infinity and -Infinity (what json.dumps writes for those floats) are numbers.
//   - Numbers out of double range read as json.loads' float() does: 1e400 is inf, 1e-400 is 0.
//   - read_double() is correctly rounded (std::from_chars), integers included; "-0" is +0.0
//     (json.loads gives the int 0) while "-0.0" is -0.0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tempest::cache::detail {

class JsonReader {
 public:
  static constexpr int max_depth = 256;

  explicit JsonReader(std::string_view text) noexcept
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()) {}

  // Objects: begin_object(), then next_member() until it returns false (it consumes the '}').
  // `name` stays valid until the next call on this reader.
  void begin_object();
  bool next_member(std::string_view& name);
  // next_member() in two steps, for names known in advance: next_key() (false at the '}'),
  // then key_is() for each name the caller knows, and key() when none of them is it (the
  // name may be spelled with escapes).
  bool next_key();
  // Whether the name is `plain` (len bytes, nothing a JSON string escapes) as is, followed at
  // once by the ':'; if so, consumes both. Inline: a known length makes memcmp a few loads.
  bool key_is(const char* plain, std::size_t len) noexcept {
    if (static_cast<std::size_t>(end_ - p_) < len + 2 || p_[len] != '"' || p_[len + 1] != ':' ||
        std::memcmp(p_, plain, len) != 0)
      return false;
    p_ += len + 2;
    return true;
  }
  void key(std::string_view& name);
  // The layout of an object whose members come in the reader's expected order, as a JSON writer
  // writes them (Python's {"a": 1, "b": 2}, or compact): right after begin_object() or a value,
  // the member `"plain":` (after its ',' unless first; one space after the ',' allowed)? It is
  // consumed, and the value is next. Otherwise false, and nothing is consumed.
  [[gnu::always_inline]] bool member_in_order(bool first, const char* plain,
                                              std::size_t len) noexcept {
    const char* q = p_;
    if (!first) {
      if (q == end_ || *q != ',') return false;
      ++q;
      if (q != end_ && *q == ' ') ++q;
    }
    if (static_cast<std::size_t>(end_ - q) < len + 3 || q[0] != '"' || q[len + 1] != '"' ||
        q[len + 2] != ':')
      return false;
    // Byte by byte: with len known where this is inlined, a few compares (GCC calls memcmp for
    // lengths that are not a power of two).
    for (std::size_t i = 0; i < len; ++i)
      if (q[1 + i] != plain[i]) return false;
    p_ = q + len + 3;
    first_ = false;
    return true;
  }
  // The '}' right after the last value? Consumed (the object ends); otherwise false.
  bool end_in_order() noexcept {
    if (p_ == end_ || *p_ != '}') return false;
    ++p_;
    --depth_;
    return true;
  }
  // Where the reader is, to read an object again another way (see member_in_order).
  struct Mark {
    const char* p;
    int depth;
    bool first;
  };
  Mark mark() const noexcept { return {p_, depth_, first_}; }
  void reset(const Mark& m) noexcept {
    p_ = m.p;
    depth_ = m.depth;
    first_ = m.first;
  }
  // Arrays: begin_array(), then next_element() until it returns false (it consumes the ']').
  void begin_array();
  bool next_element();

  void read_string(std::string& out);
  // Integers as Boost.JSON 1.81's value::to_number reads them: an exact integer, or a number with
  // a fraction or exponent whose (correctly rounded) double is integral and within
  // +-9223372036854774784 (signed) or 0..18446744073709549568 (unsigned); then within
  // [min, max]. "-0" is 0 for both.
  std::int64_t read_int(std::int64_t min, std::int64_t max);
  std::uint64_t read_uint(std::uint64_t max);
  std::int64_t read_int64() { return read_int(INT64_MIN, INT64_MAX); }
  std::uint64_t read_uint64() { return read_uint(UINT64_MAX); }
  double read_double();
  bool read_bool();
  // Consumes a null and returns true; otherwise consumes nothing (but whitespace).
  bool is_null();
  // Skips one value of any kind, checking it is valid JSON.
  void skip_value();
  // Skips one value and returns its text.
  std::string_view raw_value();
  // Only whitespace may follow the top-level value.
  void finish();

  // Offset of the next non-whitespace byte (whitespace is consumed).
  std::size_t value_offset();
  std::size_t offset() const noexcept { return static_cast<std::size_t>(p_ - begin_); }

  // "JSON of the wrong shape at offset N: <what>".
  [[noreturn]] void wrong_shape(std::string_view what) const;
  [[noreturn]] void wrong_shape_at(std::size_t offset, std::string_view what) const;
  // "... missing member '<name>'" at the current offset.
  [[noreturn]] void missing_member(std::string_view name) const;

 private:
  struct Number;
  [[noreturn]] void invalid(std::string_view what) const;
  [[noreturn]] void invalid_at(const char* at, std::string_view what) const;
  // At a byte that is not `expected`: the wrong shape when a value starts there, else invalid.
  [[noreturn]] void unexpected(const char* expected) const;
  void skip_ws() noexcept;
  char peek();  // skips whitespace; the next byte (an error at the end of the text)
  void enter();
  // The rest of a string from q (inside it, after a plain-ASCII start), appended to *out
  // decoded (only checked when out is null); p_ ends after the closing quote.
  void string_slow(const char* q, std::string* out);
  // What next_key() found instead of a member or the '}'.
  [[noreturn, gnu::noinline]] void key_error();
  // The general cases of read_string, read_int, read_double (their usual case is inline there).
  [[gnu::noinline]] void string_value_slow(std::string& out);
  [[gnu::noinline]] std::int64_t int_slow(std::int64_t min, std::int64_t max);
  [[gnu::noinline]] double double_slow();
  Number scan_number();
  double number_to_double(const Number& n) const;
  bool number_magnitude(const Number& n, std::uint64_t limit, std::uint64_t& v) const;

  const char* begin_;
  const char* p_;
  const char* end_;
  int depth_ = 0;
  bool first_ = false;   // right after begin_object() / begin_array()
  std::string scratch_;  // member names with escapes
};

}  // namespace tempest::cache::detail
