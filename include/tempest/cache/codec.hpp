// Codecs turn a cached function's result into the bytes stored in Redis and back.
//   JsonCodec<T>   (default): Boost.JSON, with BOOST_DESCRIBE_STRUCT types as objects. Reads what
//                  Python's json.dumps wrote for the same shape; writes JSON json.loads reads.
//   RawCodec       : std::string stored as is.
//   FunctionCodec<T>: a user serializer / deserializer pair (model_dump_json /
//   model_validate_json).
// decode() throws on anything it cannot turn into a T (invalid JSON, wrong shape, wrong types);
// the cache treats that as a corrupt entry.
#pragma once

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include "tempest/cache/key.hpp"

namespace tempest::cache {

template <class T>
struct JsonCodec {
  // What the Python SDK's json.dumps would store for the same value, byte for byte.
  static std::string encode(const T& value) {
    return python_json(boost::json::value_from(value), JsonStyle::python_default);
  }
  static T decode(std::string_view bytes) {
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

struct RawCodec {
  static std::string encode(const std::string& value) { return value; }
  static std::string decode(std::string_view bytes) { return std::string(bytes); }
};

template <class T>
struct FunctionCodec {
  std::function<std::string(const T&)> serialize;
  std::function<T(std::string_view)> deserialize;
  std::string encode(const T& value) const { return serialize(value); }
  T decode(std::string_view bytes) const { return deserialize(bytes); }
};

}  // namespace tempest::cache
