// JSON text straight into T, without a document: the thin template layer over JsonReader that
// JsonCodec<T>::decode uses (see codec.hpp for what it reads and how it differs from the
// document path).
//
// The kind of T is chosen in Boost.JSON 1.81's order (boost/json/impl/conversion.hpp), so a type
// is read as the kind value_to<T> would read it:
//   std::optional<U>        null, or a U
//   a user conversion       (tag_invoke for value_to / try_value_to): fallback
//   boost::json::value, array, object, string: fallback
//   bool                    true / false
//   arithmetic              integers range checked as value::to_number (up to 64 bits; wider
//                           ones: fallback); floating point via double
//   null-like               fallback
//   std::string             a string
//   other string-likes      fallback
//   std::map / std::unordered_map with std::string keys (default ordering / hashing): an object
//   other map-likes         fallback
//   std::vector<U>          an array
//   other sequences, tuples: fallback
//   described classes       an object with every public member (mod_inherited, as value_to)
//   described enums         the enumerator's name
//   anything else           fallback
// "Fallback": the value's text goes through boost::json::parse and try_value_to<T>, at any
// depth; at the top level JsonCodec uses its document path for such a T.
#pragma once

#include <boost/describe/enum_from_string.hpp>
#include <boost/describe/members.hpp>
#include <boost/json/conversion.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>
#include <boost/mp11/algorithm.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>
#include "tempest/cache/detail/json_reader.hpp"

namespace tempest::cache::detail {

enum class JsonKind : std::uint8_t {
  fallback,
  optional,
  boolean,
  integer,
  floating,
  string,
  map,
  vector,
  described_class,
  described_enum
};

template <class T>
struct JsonOptional : std::false_type {};
template <class U>
struct JsonOptional<std::optional<U>> : std::true_type {};

template <class T>
struct JsonVector : std::false_type {};
template <class U, class A>
struct JsonVector<std::vector<U, A>> : std::true_type {};

// Maps whose keys are equal exactly when their bytes are (as the document's member names).
template <class T>
struct JsonMap : std::false_type {};
template <class U, class C, class A>
struct JsonMap<std::map<std::string, U, C, A>>
    : std::bool_constant<std::is_same_v<C, std::less<std::string>> ||
                         std::is_same_v<C, std::less<>>> {};
template <class U, class H, class E, class A>
struct JsonMap<std::unordered_map<std::string, U, H, E, A>>
    : std::bool_constant<std::is_same_v<H, std::hash<std::string>> &&
                         (std::is_same_v<E, std::equal_to<std::string>> ||
                          std::is_same_v<E, std::equal_to<>>)> {};

// What boost::json's conversion_implementation calls a user conversion (std::optional's own
// tag_invoke included, which is why optional is tested first).
template <class T>
concept JsonUserConversion = requires(const boost::json::value& v) {
  tag_invoke(boost::json::value_to_tag<T>(), v);
}
|| requires(const boost::json::value& v) {
  tag_invoke(boost::json::try_value_to_tag<T>(), v);
};

template <class T>
consteval JsonKind json_kind() {
  namespace bj = boost::json;
  if constexpr (JsonOptional<T>::value)
    return JsonKind::optional;
  else if constexpr (JsonUserConversion<T>)
    return JsonKind::fallback;
  else if constexpr (std::is_same_v<T, bj::value> || std::is_same_v<T, bj::array> ||
                     std::is_same_v<T, bj::object> || std::is_same_v<T, bj::string>)
    return JsonKind::fallback;
  else if constexpr (std::is_same_v<T, bool>)
    return JsonKind::boolean;
  else if constexpr (std::is_floating_point_v<T>)
    return JsonKind::floating;
  else if constexpr (std::is_arithmetic_v<T>)
    return sizeof(T) <= 8 ? JsonKind::integer : JsonKind::fallback;  // (__int128: fallback)
  else if constexpr (bj::is_null_like<T>::value)
    return JsonKind::fallback;
  else if constexpr (std::is_same_v<T, std::string>)
    return JsonKind::string;
  else if constexpr (bj::is_string_like<T>::value)
    return JsonKind::fallback;
  else if constexpr (bj::is_map_like<T>::value)
    return JsonMap<T>::value ? JsonKind::map : JsonKind::fallback;
  else if constexpr (bj::is_sequence_like<T>::value)
    return JsonVector<T>::value ? JsonKind::vector : JsonKind::fallback;
  else if constexpr (bj::is_tuple_like<T>::value)
    return JsonKind::fallback;
  else if constexpr (bj::is_described_class<T>::value)
    return JsonKind::described_class;
  else if constexpr (bj::is_described_enum<T>::value)
    return JsonKind::described_enum;
  else
    return JsonKind::fallback;
}

template <class T>
using JsonMembers = boost::describe::describe_members<T, boost::describe::mod_public |
                                                             boost::describe::mod_inherited>;

template <class T>
inline constexpr auto json_member_names = []<template <class...> class L, class... D>(L<D...>) {
  return std::array<std::string_view, sizeof...(D)>{std::string_view(D::name)...};
}(JsonMembers<T>());

// The next value's text through boost::json::parse (`at`: its offset); compiled.
boost::json::value json_parse_fallback(JsonReader& r, std::size_t& at);

// ... and then through try_value_to<T>.
template <class T>
void json_read_fallback(JsonReader& r, T& out) {
  std::size_t at = 0;
  const boost::json::value v = json_parse_fallback(r, at);
  auto result = boost::json::try_value_to<T>(v);
  if (!result) r.wrong_shape_at(at, result.error().message());
  out = std::move(*result);
}

template <class T>
void json_read(JsonReader& r, T& out);

// Reads the member whose name the reader is at into out when it is one of T's spelled as is
// (a few instructions per name): true; false (nothing read) otherwise.
template <class T, class... D>
bool json_read_known_member(JsonReader& r, T& out, bool* seen, boost::mp11::mp_list<D...>) {
  std::size_t i = 0;
  return ((r.key_is(D::name, std::char_traits<char>::length(D::name))
               ? (json_read(r, out.*D::pointer), seen[i] = true)
               : (++i, false)) ||
          ...);
}

// T's members in their order, each name as is, and nothing else (how a value T's own encoder or
// json.dumps wrote is laid out): true when read so; false at the first difference, with `out`
// partly read (the general reading then reads every member again).
template <class T, class D>
[[gnu::always_inline]] inline bool json_read_one_in_order(JsonReader& r, T& out, bool first) {
  constexpr std::size_t len = std::char_traits<char>::length(D::name);  // memcmp on constants
  if (!r.member_in_order(first, D::name, len)) return false;
  json_read(r, out.*D::pointer);
  return true;
}
template <class T, class D0, class... D>
bool json_read_in_order(JsonReader& r, T& out, boost::mp11::mp_list<D0, D...>) {
  return json_read_one_in_order<T, D0>(r, out, true) &&
         (json_read_one_in_order<T, D>(r, out, false) && ...) && r.end_in_order();
}

// The same for a name read (unescaped) by the reader.
template <class T, class... D>
bool json_read_member(JsonReader& r, T& out, std::string_view name, bool* seen,
                      boost::mp11::mp_list<D...>) {
  std::size_t i = 0;
  return ((name == std::string_view(D::name) ? (json_read(r, out.*D::pointer), seen[i] = true)
                                             : (++i, false)) ||
          ...);
}

template <class T>
void json_read_struct(JsonReader& r, T& out) {
  using Ds = boost::mp11::mp_rename<JsonMembers<T>, boost::mp11::mp_list>;
  constexpr std::size_t n = boost::mp11::mp_size<Ds>::value;
  r.begin_object();
  std::string_view name;
  if constexpr (n == 0) {
    while (r.next_member(name))
      r.skip_value();
  } else {
    const JsonReader::Mark start = r.mark();
    if (json_read_in_order(r, out, Ds())) return;
    r.reset(start);  // another order, other members, escapes, whitespace: the general way
    bool seen[n] = {};
    while (r.next_key()) {
      if (json_read_known_member(r, out, seen, Ds())) continue;
      r.key(name);
      if (!json_read_member(r, out, name, seen, Ds())) r.skip_value();  // a member T lacks
    }
    for (std::size_t i = 0; i < n; ++i)
      if (!seen[i]) r.missing_member(json_member_names<T>[i]);
  }
}

template <class T>
void json_read(JsonReader& r, T& out) {
  constexpr JsonKind kind = json_kind<T>();
  if constexpr (kind == JsonKind::optional) {
    if (r.is_null()) {
      out.reset();
    } else {
      if (!out) out.emplace();
      json_read(r, *out);
    }
  } else if constexpr (kind == JsonKind::boolean) {
    out = r.read_bool();
  } else if constexpr (kind == JsonKind::floating) {
    out = static_cast<T>(r.read_double());
  } else if constexpr (kind == JsonKind::integer) {
    if constexpr (std::is_signed_v<T>)
      out =
          static_cast<T>(r.read_int(std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
    else
      out = static_cast<T>(r.read_uint(std::numeric_limits<T>::max()));
  } else if constexpr (kind == JsonKind::string) {
    r.read_string(out);
  } else if constexpr (kind == JsonKind::map) {
    out.clear();
    r.begin_object();
    std::string_view name;
    while (r.next_member(name))
      json_read(r, out[std::string(name)]);  // the last one wins
  } else if constexpr (kind == JsonKind::vector) {
    out.clear();
    r.begin_array();
    while (r.next_element()) {
      if constexpr (std::is_same_v<typename T::value_type, bool>) {
        out.push_back(r.read_bool());
      } else {
        out.emplace_back();
        json_read(r, out.back());
      }
    }
  } else if constexpr (kind == JsonKind::described_class) {
    json_read_struct(r, out);
  } else if constexpr (kind == JsonKind::described_enum) {
    const std::size_t at = r.value_offset();
    std::string s;
    r.read_string(s);
    // As value_to: the name up to its first NUL (enum_from_string takes a C string).
    if (!boost::describe::enum_from_string(s.c_str(), out))
      r.wrong_shape_at(at, "unknown enumerator");
  } else {
    json_read_fallback(r, out);
  }
}

// A T with a direct reading (at the top level: any T but a fallback).
template <class T>
inline constexpr bool json_direct = json_kind<T>() != JsonKind::fallback;

// The direct reading of the whole text, without the document path's second opinion.
template <class T>
void json_decode_direct_into(std::string_view text, T& out) {
  JsonReader r(text);
  json_read(r, out);
  r.finish();
}

template <class T>
T json_decode_direct(std::string_view text) {
  T out{};
  json_decode_direct_into(text, out);
  return out;
}

}  // namespace tempest::cache::detail
