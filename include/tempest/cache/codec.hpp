/// @file
/// Codecs turn a cached function's result into the bytes stored in Redis and back.
///   JsonCodec<T>   (default): Boost.JSON, with BOOST_DESCRIBE_STRUCT types as objects. Reads what
///                  Python's json.dumps wrote for the same shape; writes JSON json.loads reads.
///   RawCodec       : std::string stored as is.
///   FunctionCodec<T>: a user serializer / deserializer pair (model_dump_json /
///   model_validate_json).
/// decode() throws on anything it cannot turn into a T (invalid JSON, wrong shape, wrong types);
/// the cache treats that as a corrupt entry.
///
/// JsonCodec<T>::decode reads the text straight into T (detail/json_decode.hpp over the compiled
/// detail::JsonReader) when T is made of described structs and enums, std::string, bool,
/// arithmetic types, std::optional, std::vector, and std::map / std::unordered_map with string
/// keys; any other part of T (a user tag_invoke, boost::json::value, std::variant, tuples, ...)
/// goes through boost::json::parse + try_value_to<T> for its own text, and a T that is none of
/// those is decoded as before (the document path) as a whole. The direct reading gives what
/// value_to<T> gives for everything the document path reads, but:
///   - A described struct's members that T does not have are skipped (value_to refuses an object
///     whose size is not T's member count); a missing member is still an error, as in value_to.
///   - Doubles are correctly rounded (std::from_chars; json.loads' float()); Boost.JSON 1.81's
///     parser is often one ulp off for large or small exponents (3e+23, as json.dumps writes it,
///     reads as 2.9999999999999997e+23; about 3 in 10 random doubles' repr), never for decimals
///     like 19.99.
///     An integer target read from a number with a fraction or exponent (1.0, 1e2) takes the
///     correctly rounded double, then value_to's rule (integral and in range).
///   - What Python's json.dumps writes and Boost.JSON refuses reads as json.loads reads it: NaN,
///     Infinity, -Infinity, and exponents beyond Boost's range (1e99999999999999999999 is inf).
///     1e400 is inf and 1e-400 is 0 on both paths.
///   - Nesting up to 256 levels (Boost.JSON's parser stops at 32).
/// When the direct reading fails, the document path has the last word: a value it reads is
/// returned (an object with a duplicate member, the last one winning, whose first occurrence
/// is of the wrong type), otherwise the direct reading's error (it names the byte offset).
#pragma once

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include "tempest/cache/detail/json_decode.hpp"
#include "tempest/cache/key.hpp"

namespace tempest::cache {

/// The default codec: JSON through Boost.JSON (value_from / value_to, Boost.Describe structs),
/// written exactly as the Python SDK's json.dumps writes it, so both read each other's entries.
template <class T>
struct JsonCodec {
  /// What the Python SDK's json.dumps would store for the same value, byte for byte.
  static std::string encode(const T& value) {
    return python_json(boost::json::value_from(value), JsonStyle::python_default);
  }
  /// The value from stored JSON; std::invalid_argument when it is not JSON of T's shape (the
  /// cache then counts it corrupt and recomputes).
  static T decode(std::string_view bytes) {
    std::optional<T> out;
    decode_into(bytes, out);
    return std::move(*out);
  }

  /// decode(), into `out` (emplaced; left empty when it throws): no move of the result.
  /// The direct reading first; when it fails, the document path has the last word.
  static void decode_into(std::string_view bytes, std::optional<T>& out) {
    if constexpr (detail::json_direct<T>) {
      try {
        detail::json_decode_direct_into(bytes, out.emplace());
        return;
      } catch (const std::invalid_argument&) {
        out.reset();
        try {
          out.emplace(decode_document(bytes));
          return;
        } catch (const std::invalid_argument&) {
        }
        throw;  // the direct reading's error
      }
    } else {
      out.emplace(decode_document(bytes));
    }
  }

  /// boost::json::parse, then try_value_to<T>.
  static T decode_document(std::string_view bytes) {
    // A parser per thread keeps its internal stacks, and the document goes into a stack arena:
    // decoding a typical cached value allocates nothing but the T it returns.
    thread_local boost::json::parser parser;
    unsigned char arena[4096];
    boost::json::monotonic_resource mr(arena, sizeof arena);
    parser.reset(&mr);
    boost::system::error_code ec;
    parser.write(bytes.data(), bytes.size(), ec);
    if (ec) throw std::invalid_argument("invalid JSON: " + ec.message());
    boost::json::value v = parser.release();
    auto result = boost::json::try_value_to<T>(v);
    if (!result)
      throw std::invalid_argument("JSON of the wrong shape: " + result.error().message());
    return std::move(*result);
  }
};

/// Stores a std::string result as it is (no JSON): for values already serialized.
struct RawCodec {
  /// The bytes themselves, both ways.
  ///@{
  static std::string encode(const std::string& value) { return value; }
  static std::string decode(std::string_view bytes) { return std::string(bytes); }
  ///@}
};

/// A codec from two functions (the Python SDK's serializer / deserializer arguments).
template <class T>
struct FunctionCodec {
  std::function<std::string(const T&)> serialize;  ///< value to stored bytes
  std::function<T(std::string_view)> deserialize;  ///< stored bytes to value; throws if invalid
  /// Calls serialize / deserialize.
  ///@{
  std::string encode(const T& value) const { return serialize(value); }
  T decode(std::string_view bytes) const { return deserialize(bytes); }
  ///@}
};

}  // namespace tempest::cache
