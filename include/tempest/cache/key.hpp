/// @file
/// Cache keys compatible with the Python SDK:
///   key_prefix + name + ":" + first 32 hex chars of SHA-256 of {"args":[...],"kwargs":{}}
/// where the JSON is Python's json.dumps(..., separators=(",", ":")) (ensure_ascii, float repr).
/// Argument encoding is a compile-time customization point: specialize KeyEncoder<T>.
#pragma once

#include <algorithm>
#include <array>
#include <boost/describe/members.hpp>
#include <boost/mp11/algorithm.hpp>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace boost::json {
class value;
}

namespace tempest::cache {

/// Writes JSON exactly as Python's json.dumps(value, separators=(",", ":")) does.
class KeyWriter {
 public:
  /// Appends a value: null, true / false, an integer (signed or not).
  ///@{
  void null() {
    comma();
    out_ += "null";
  }
  void boolean(bool v) {
    comma();
    out_ += v ? "true" : "false";
  }
  void integer(long long v);
  void uinteger(unsigned long long v);
  ///@}
  void integer_text(std::string_view digits);  ///< an integer of any size, as decimal digits
  void raw(std::string_view json);             ///< a value already written by another KeyWriter
  void number(double v);  ///< Python float repr: 0.1, 1.0, 1e+16, 1e-05, -0.0, NaN, Infinity
  /// UTF-8 text; bytes that are not UTF-8 become U+FFFD as Python's decode(errors="replace").
  void string(std::string_view utf8);
  /// Opens or closes an array or an object (64 levels at most: std::invalid_argument beyond).
  ///@{
  void begin_array();
  void end_array();
  void begin_object();
  ///@}
  void key(std::string_view utf8);  ///< the next value is this member's
  void end_object();                ///< closes the object begin_object() opened

  /// The JSON written so far.
  const std::string& str() const noexcept { return out_; }
  /// The JSON written so far, moved out.
  std::string take() { return std::move(out_); }

 private:
  static constexpr std::size_t kMaxDepth = 64;
  void comma();
  void open(char bracket);
  std::string out_;
  std::array<bool, kMaxDepth> first_{};  ///< per open container: nothing written in it yet
  std::size_t depth_ = 0;
  bool after_key_ = false;
};

/// Python's repr() of a float.
std::string python_float_repr(double v);

/// A JSON value written as Python writes it: floats by repr() (19.9, 5.0, never 1.99E1),
/// ensure_ascii escapes, members in their order. python_default: json.dumps's own separators
/// (", " and ": "), what the Python SDK stores; compact: (",", ":"), FastAPI's separators (FastAPI
/// writes non-ASCII characters as UTF-8 where this escapes them: the same JSON, other bytes).
enum class JsonStyle : std::uint8_t { python_default, compact };
/// `v` written in `style` (see JsonStyle).
std::string python_json(const boost::json::value& v, JsonStyle style = JsonStyle::python_default);

/// SHA-256 of `{"args":<args_json>,"kwargs":{}}`, first 32 lowercase hex characters.
std::string args_digest(std::string_view args_json, std::string_view kwargs_json = "{}");
/// key_prefix + name + ":" + args_digest(args_json, kwargs_json)
std::string make_key(std::string_view key_prefix, std::string_view name, std::string_view args_json,
                     std::string_view kwargs_json = "{}");
namespace detail {
/// A key built in place: a typical one (prefix + name + ':' + 32 hex digits) fits inline, so a
/// cached hit allocates nothing for its key; a longer one goes to the heap.
class KeyBuffer {
 public:
  KeyBuffer() = default;
  KeyBuffer(const KeyBuffer&) = delete;
  KeyBuffer& operator=(const KeyBuffer&) = delete;
  /// Room for exactly n characters, to be written by the caller.
  char* resize(std::size_t n);
  void assign(std::string_view text);
  std::string_view view() const noexcept { return {heap_ ? heap_.get() : inline_.data(), size_}; }
  std::string str() const { return std::string(view()); }

 private:
  std::array<char, 88> inline_;
  std::unique_ptr<char[]> heap_;
  std::size_t size_ = 0;
};
/// make_key(), into `out`.
void make_key(KeyBuffer& out, std::string_view key_prefix, std::string_view name,
              std::string_view args_json, std::string_view kwargs_json = "{}");

/// Appends `utf8` as a JSON string literal the way Python's json.dumps (ensure_ascii) writes it:
/// everything outside ' '..'~' escaped; what is not UTF-8 becomes U+FFFD.
void append_python_json_string(std::string& out, std::string_view utf8);
}  // namespace detail

/// The key for arguments given as JSON text (a JSON array), as the CLI takes them. Integers stay
/// integers, decimals become the nearest double, objects keep their member order. Throws
/// std::invalid_argument naming what is wrong with the text.
std::string key_from_json_args(std::string_view key_prefix, std::string_view name,
                               std::string_view json_array, std::string_view json_kwargs = "{}");

template <class T, class Enable = void>
struct KeyEncoder;  // specialize: static void encode(KeyWriter&, const T&)

template <class T>
concept KeyEncodable = requires(KeyWriter& w, const T& v) {
  KeyEncoder<T>::encode(w, v);
};

/// Appends the key JSON of one argument with its KeyEncoder (a clear compile error names a type
/// that has none).
template <class T>
void encode_key_value(KeyWriter& w, const T& v) {
  static_assert(KeyEncodable<T>,
                "tempest::cache: this argument type cannot be encoded into a cache key. Use "
                "strings, numbers, bool, optional, ranges, tuples, maps or BOOST_DESCRIBE_STRUCT "
                "types, or specialize tempest::cache::KeyEncoder<T>.");
  KeyEncoder<T>::encode(w, v);
}

namespace detail {
/// An argument that the library's own encoder writes as a plain decimal integer (not a 128-bit
/// one, nor a type with a KeyEncoder specialization of the user's): a call of only these has its
/// arguments' JSON written straight into a buffer on the stack, without a KeyWriter (the
/// same text: "[" the to_chars digits, comma-separated, "]").
template <class T>
concept PlainIntegerKey = requires {
  requires KeyEncoder<T>::plain_integer;
};
template <class... A>
inline constexpr bool plain_integer_args = sizeof...(A) > 0 && (PlainIntegerKey<A> && ...);
/// Room for the JSON array of n such arguments: 20 characters each at most (-9223372036854775808,
/// 18446744073709551615) and a comma or bracket each, and the closing bracket.
constexpr std::size_t plain_integer_args_room(std::size_t n) {
  return 21 * n + 1;
}
template <class... A>
std::size_t write_plain_integer_args(char* out, const A&... args) {
  char* p = out;
  char* const end = out + plain_integer_args_room(sizeof...(A));
  bool first = true;
  const auto one = [&]<class T>(const T& v) {
    *p++ = first ? '[' : ',';
    first = false;
    // As KeyEncoder's encode() hands them to KeyWriter::integer() / uinteger().
    if constexpr (std::is_signed_v<T>)
      p = std::to_chars(p, end, static_cast<long long>(v)).ptr;
    else
      p = std::to_chars(p, end, static_cast<unsigned long long>(v)).ptr;
  };
  (one(args), ...);
  *p++ = ']';
  return static_cast<std::size_t>(p - out);
}
}  // namespace detail

/// The JSON array of a call's arguments.
template <class... A>
std::string encode_args(const A&... args) {
  if constexpr (detail::plain_integer_args<A...>) {
    char buf[detail::plain_integer_args_room(sizeof...(A))];
    return std::string(buf, detail::write_plain_integer_args(buf, args...));
  } else {
    KeyWriter w;
    w.begin_array();
    (encode_key_value(w, args), ...);
    w.end_array();
    return w.take();
  }
}

template <class T>
struct is_std_optional : std::false_type {};
template <class T>
struct is_std_optional<std::optional<T>> : std::true_type {};

/// A call with keyword arguments: the last keyword_names.size() arguments are passed by keyword,
/// under those names (sorted, as Python's key builder sorts them); a keyword argument that is an
/// empty std::optional is left out, as a Python caller leaves out a parameter with a default.
/// Returns the JSON texts of args and kwargs.
template <class... A>
std::pair<std::string, std::string> encode_call(const std::vector<std::string>& keyword_names,
                                                const A&... args) {
  if (keyword_names.size() > sizeof...(A))
    throw std::invalid_argument("encode_call: more keyword names than arguments");
  const std::size_t positional = sizeof...(A) - keyword_names.size();
  KeyWriter pos;
  pos.begin_array();
  std::vector<std::pair<std::string_view, std::string>> kw;
  std::size_t i = 0;
  const auto one = [&](const auto& a) {
    if (i < positional) {
      encode_key_value(pos, a);
    } else {
      bool omitted = false;
      if constexpr (is_std_optional<std::decay_t<decltype(a)>>::value) omitted = !a.has_value();
      if (!omitted) {
        KeyWriter w;
        encode_key_value(w, a);
        kw.emplace_back(keyword_names[i - positional], w.take());
      }
    }
    ++i;
  };
  (one(args), ...);
  pos.end_array();
  std::sort(kw.begin(), kw.end());
  KeyWriter obj;
  obj.begin_object();
  for (const auto& [name, text] : kw) {
    obj.key(name);
    obj.raw(text);
  }
  obj.end_object();
  return {pos.take(), obj.take()};
}

// ---- encoders for the standard vocabulary ------------------------------------------------------

template <class T>
concept StringLikeKey =
    std::convertible_to<const T&, std::string_view> && !std::is_null_pointer_v<T>;

/// Strings (std::string, std::string_view, C strings): a JSON string.
template <class T>
struct KeyEncoder<T, std::enable_if_t<StringLikeKey<T>>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const T& v) { w.string(std::string_view(v)); }
};

/// bool: true / false.
template <>
struct KeyEncoder<bool> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, bool v) { w.boolean(v); }
};

/// Integers: their decimal digits, as Python's int.
template <class T>
struct KeyEncoder<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                      !std::is_same_v<T, char>>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, T v) {
    if constexpr (sizeof(T) > sizeof(long long)) {
      // 128-bit integers: exactly, as Python's int would be written (never truncated).
      using U = std::make_unsigned_t<T>;
      const bool negative = v < 0;
      U m = negative ? static_cast<U>(U(0) - static_cast<U>(v)) : static_cast<U>(v);
      char buf[48];
      char* p = buf + sizeof buf;
      do {
        *--p = static_cast<char>('0' + static_cast<int>(m % 10));
        m /= 10;
      } while (m != 0);
      if (negative) *--p = '-';
      w.integer_text(std::string_view(p, static_cast<std::size_t>(buf + sizeof buf - p)));
    } else if constexpr (std::is_signed_v<T>) {
      w.integer(static_cast<long long>(v));
    } else {
      w.uinteger(static_cast<unsigned long long>(v));
    }
  }
  /// Written as std::to_chars writes it (what integer() / uinteger() do): see PlainIntegerKey.
  static constexpr bool plain_integer = sizeof(T) <= sizeof(long long);
};

/// A float is written as its own shortest decimal (0.1f as 0.1, what the caller wrote and what
/// Python's float would hold), not as the double it widens to (0.10000000149011612).
double float_as_decimal(float v);

/// Floating point: Python's float repr().
template <class T>
struct KeyEncoder<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, T v) {
    if constexpr (std::is_same_v<T, float>) {
      w.number(float_as_decimal(v));
    } else {
      w.number(static_cast<double>(v));
    }
  }
};

/// nullptr: null (Python's None).
template <>
struct KeyEncoder<std::nullptr_t> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, std::nullptr_t) { w.null(); }
};
/// std::nullopt: null (Python's None).
template <>
struct KeyEncoder<std::nullopt_t> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, std::nullopt_t) { w.null(); }
};

/// std::optional: its value, or null when empty.
template <class T>
struct KeyEncoder<std::optional<T>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::optional<T>& v) {
    if (v) {
      encode_key_value(w, *v);
    } else {
      w.null();
    }
  }
};

namespace detail {
template <class R>
void encode_sequence(KeyWriter& w, const R& r) {
  w.begin_array();
  for (const auto& e : r)
    encode_key_value(w, e);
  w.end_array();
}
template <class K>
std::string member_name(const K& k) {
  if constexpr (StringLikeKey<K>) {
    return std::string(std::string_view(k));
  } else {
    static_assert(std::is_integral_v<K> || std::is_floating_point_v<K>,
                  "tempest::cache: map keys must be strings or numbers (as in JSON objects)");
    KeyWriter w;  // Python turns int/float keys into their JSON text
    encode_key_value(w, k);
    return w.take();
  }
}
template <class M>
void encode_map(KeyWriter& w, const M& m, bool sort) {
  using K = typename M::key_type;
  std::vector<std::pair<std::string, const typename M::mapped_type*>> members;
  if constexpr (std::is_arithmetic_v<K>) {
    // Numeric keys in numeric order (as std::map holds them), so that a std::map and a
    // std::unordered_map with the same contents give the same key.
    std::vector<std::pair<K, const typename M::mapped_type*>> by_value;
    for (const auto& [k, v] : m)
      by_value.emplace_back(k, &v);
    if (sort)
      std::sort(by_value.begin(), by_value.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [k, v] : by_value)
      members.emplace_back(member_name(k), v);
  } else {
    for (const auto& [k, v] : m)
      members.emplace_back(member_name(k), &v);
    if (sort)
      std::sort(members.begin(), members.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  w.begin_object();
  for (const auto& [k, v] : members) {
    w.key(k);
    encode_key_value(w, *v);
  }
  w.end_object();
}
}  // namespace detail

/// std::vector: a JSON array (a Python list).
template <class T, class A>
struct KeyEncoder<std::vector<T, A>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::vector<T, A>& v) { detail::encode_sequence(w, v); }
};
/// std::array: a JSON array (a Python list).
template <class T, std::size_t N>
struct KeyEncoder<std::array<T, N>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::array<T, N>& v) { detail::encode_sequence(w, v); }
};
/// std::set: a JSON array in the set's order.
template <class T, class C, class A>
struct KeyEncoder<std::set<T, C, A>> {  // ordered: the set's own order
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::set<T, C, A>& v) { detail::encode_sequence(w, v); }
};
/// std::unordered_set: a JSON array, sorted, so equal sets give one key.
template <class T, class H, class E, class A>
struct KeyEncoder<std::unordered_set<T, H, E, A>> {  // unordered: sorted, so equal sets match
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::unordered_set<T, H, E, A>& v) {
    std::vector<T> sorted(v.begin(), v.end());
    std::sort(sorted.begin(), sorted.end());
    detail::encode_sequence(w, sorted);
  }
};
/// std::tuple: a JSON array (a Python tuple).
template <class... T>
struct KeyEncoder<std::tuple<T...>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::tuple<T...>& v) {
    w.begin_array();
    std::apply([&](const auto&... e) { (encode_key_value(w, e), ...); }, v);
    w.end_array();
  }
};
/// std::pair: a two-element JSON array.
template <class A, class B>
struct KeyEncoder<std::pair<A, B>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::pair<A, B>& v) {
    w.begin_array();
    encode_key_value(w, v.first);
    encode_key_value(w, v.second);
    w.end_array();
  }
};
/// std::map: a JSON object in the map's order (string keys, as json.dumps writes them).
template <class K, class V, class C, class A>
struct KeyEncoder<std::map<K, V, C, A>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::map<K, V, C, A>& m) {
    detail::encode_map(w, m, false);
  }
};
/// std::unordered_map: a JSON object, members sorted by key, so equal maps give one key.
template <class K, class V, class H, class E, class A>
struct KeyEncoder<std::unordered_map<K, V, H, E, A>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const std::unordered_map<K, V, H, E, A>& m) {
    detail::encode_map(w, m, true);
  }
};

/// BOOST_DESCRIBE_STRUCT types: a JSON object with the public members in declaration order.
template <class T>
struct KeyEncoder<
    T, std::enable_if_t<boost::describe::has_describe_members<T>::value && !std::is_union_v<T>>> {
  /// Appends the JSON of `v` (or `m`) to `w`.
  static void encode(KeyWriter& w, const T& v) {
    using Members = boost::describe::describe_members<T, boost::describe::mod_public>;
    w.begin_object();
    boost::mp11::mp_for_each<Members>([&](auto m) {
      w.key(m.name);
      encode_key_value(w, v.*m.pointer);
    });
    w.end_object();
  }
};

}  // namespace tempest::cache
