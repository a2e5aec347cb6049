// JsonCodec's direct decoding (detail::JsonReader + detail/json_decode.hpp): what it reads, its
// errors, and that it agrees with the document path (boost::json::parse + try_value_to).
#include <gtest/gtest.h>

#include <boost/describe/class.hpp>
#include <boost/describe/enum.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "tempest/cache/codec.hpp"
#include "tempest/cache/detail/json_decode.hpp"
#include "tempest/cache/detail/json_reader.hpp"

namespace tc = tempest::cache;
namespace td = tempest::cache::detail;

namespace jr_test {

// The shape of tools/bench_profile.hpp's Profile (what `tempest bench --mode cached` caches).
struct Profile {
  std::string id;
  std::string name;
  std::string email;
  long long age;
  double score;
  bool operator==(const Profile&) const = default;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (id, name, email, age, score))

enum class Color { red, green, blue };
BOOST_DESCRIBE_ENUM(Color, red, green, blue)

struct Address {
  std::string city;
  std::optional<int> zip;
  bool operator==(const Address&) const = default;
};
BOOST_DESCRIBE_STRUCT(Address, (), (city, zip))

struct Order {
  long long id;
  std::vector<double> amounts;
  Address ship;
  std::vector<Address> history;
  std::map<std::string, int> counts;
  std::unordered_map<std::string, std::vector<std::string>> tags;
  std::optional<Address> billing;
  bool paid;
  Color color;
  std::vector<bool> flags;
  unsigned short small;
  bool operator==(const Order&) const = default;
};
BOOST_DESCRIBE_STRUCT(Order, (),
                      (id, amounts, ship, history, counts, tags, billing, paid, color, flags,
                       small))

struct One {
  int a;
  bool operator==(const One&) const = default;
};
BOOST_DESCRIBE_STRUCT(One, (), (a))

// Parts that have no direct reading: read through Boost.JSON's own conversions.
struct Mixed {
  std::string name;
  std::variant<long long, std::string> key;
  boost::json::value extra;
  std::pair<int, std::string> pair;
  bool operator==(const Mixed&) const = default;
};
BOOST_DESCRIBE_STRUCT(Mixed, (), (name, key, extra, pair))

// A type with its own conversion: decoded by the document path as a whole.
struct Celsius {
  double degrees;
  bool operator==(const Celsius&) const = default;
};
Celsius tag_invoke(boost::json::value_to_tag<Celsius>, const boost::json::value& v) {
  return Celsius{v.as_object().at("c").to_number<double>()};
}

}  // namespace jr_test

namespace {

using namespace jr_test;

#ifdef __SIZEOF_INT128__
__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;
#endif

// What went wrong, or "" when it decoded.
template <class T>
std::string direct_error(std::string_view text) {
  try {
    (void)td::json_decode_direct<T>(text);
    return "";
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
}

template <class T>
std::optional<T> dom(std::string_view text) {
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(text, ec);
  if (ec) return std::nullopt;
  auto r = boost::json::try_value_to<T>(v);
  if (!r) return std::nullopt;
  return std::move(*r);
}

template <class T>
std::optional<T> direct(std::string_view text) {
  try {
    return td::json_decode_direct<T>(text);
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

template <class T>
bool same(const T& a, const T& b) {
  if constexpr (std::is_floating_point_v<T>)
    return std::bit_cast<std::uint64_t>(static_cast<double>(a)) ==
           std::bit_cast<std::uint64_t>(static_cast<double>(b));
  else
    return a == b;
}

// Both paths decode text to the same value, or both refuse it.
template <class T>
void expect_agree(std::string_view text) {
  const auto a = direct<T>(text);
  const auto b = dom<T>(text);
  ASSERT_EQ(a.has_value(), b.has_value())
      << "'" << text << "': direct " << (a ? "reads it" : direct_error<T>(text)) << ", document "
      << (b ? "reads it" : "refuses it");
  if (a) {
    EXPECT_TRUE(same(*a, *b)) << "'" << text << "' reads differently";
  }
}

template <class T>
T read(std::string_view text) {
  return td::json_decode_direct<T>(text);
}

double read_double(std::string_view text) {
  return read<double>(text);
}

std::uint64_t bits(double d) {
  return std::bit_cast<std::uint64_t>(d);
}

// Text from parts (appending: GCC 12 at -O3 warns falsely about "literal" + std::string).
template <class... S>
std::string cat(const S&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

// The error's text names `what` at `offset`.
template <class T>
void expect_error(std::string_view text, std::size_t offset, std::string_view what) {
  const std::string e = direct_error<T>(text);
  ASSERT_FALSE(e.empty()) << "accepted '" << text << "'";
  EXPECT_NE(e.find(cat("at offset ", std::to_string(offset), ":")), std::string::npos)
      << "'" << text << "': " << e;
  EXPECT_NE(e.find(what), std::string::npos) << "'" << text << "': " << e;
}

}  // namespace

// ---- what decodes

TEST(JsonReader, ProfileRoundTrip) {
  const Profile p{"12345", "Ana \"A\" Lima", "ana@example.com", 37, 9.5};
  const std::string text = tc::JsonCodec<Profile>::encode(p);
  EXPECT_EQ(text,
            R"({"id": "12345", "name": "Ana \"A\" Lima", "email": "ana@example.com", "age": 37, )"
            R"("score": 9.5})");
  EXPECT_EQ(tc::JsonCodec<Profile>::decode(text), p);
  EXPECT_EQ(read<Profile>(text), p);
  // Extremes survive the trip too.
  const Profile q{"", std::string("\0\x01\x1f\x7f", 4) + "\xc3\xa9\xf0\x9f\x98\x80",
                  std::string(100, 'x'), std::numeric_limits<long long>::min(), -0.0};
  const Profile back = tc::JsonCodec<Profile>::decode(tc::JsonCodec<Profile>::encode(q));
  EXPECT_EQ(back, q);
  EXPECT_TRUE(std::signbit(back.score));
}

// Members in T's order are read on a fast path; any other layout is read the general way, from
// the start again, to the same value (or the same error).
TEST(JsonReader, EveryLayoutOfTheMembersReadsAlike) {
  const Profile p{"15", "Ana", "ana@example.com", 37, 9.5};
  for (
      const std::string text : {
          R"({"id": "15", "name": "Ana", "email": "ana@example.com", "age": 37, "score": 9.5})",
          R"({"id":"15","name":"Ana","email":"ana@example.com","age":37,"score":9.5})",
          R"({ "id" : "15" , "name" : "Ana", "email": "ana@example.com", "age": 37, "score": 9.5 })",
          R"({"score": 9.5, "age": 37, "email": "ana@example.com", "name": "Ana", "id": "15"})",
          R"({"id": "15", "x": [1, {"y": 2}], "name": "Ana", "email": "ana@example.com", )"
          R"("age": 37, "score": 9.5})",
          R"({"id": "15", "name": "Ana", "email": "ana@example.com", "age": 37, "score": 9.5, )"
          R"("extra": null})",
          R"({"id": "15", "name": "Ana", "email": "ana@example.com", "age": 37, )"
          R"("score": 9.5})",
          R"({"id": "1", "name": "Ana", "email": "ana@example.com", "age": 37, "score": 9.5, )"
          R"("id": "15"})",
      }) {
    EXPECT_EQ(read<Profile>(text), p) << text;
    EXPECT_EQ(tc::JsonCodec<Profile>::decode(text), p) << text;
  }
  // Cut short after each member, or a member missing: the same error as the general way's.
  EXPECT_THROW(read<Profile>(R"({"id": "15", "name": "Ana", "email": "e", "age": 37})"),
               std::invalid_argument);
  EXPECT_THROW(read<Profile>(R"({"id": "15", "name": "Ana", "email": "e", "age": "37", )"
                             R"("score": 9.5})"),
               std::invalid_argument);
  EXPECT_THROW(read<Profile>(R"({"id": "15", "name": "Ana", "email": "e", "age": 37, )"
                             R"("score": 9.5)"),
               std::invalid_argument);
}

TEST(JsonReader, PythonTextWithEscapesAndUnicode) {
  // json.dumps({"id": "u\u00e9\U0001F600", "name": "q\"\\/\b\f\n\r\t\u0001", ...}), its
  // ensure_ascii escapes, then the same with the characters as UTF-8 (ensure_ascii=False).
  const Profile p = tc::JsonCodec<Profile>::decode(
      R"({"id": "u\u00e9\ud83d\ude00", "name": "q\"\\\/\b\f\n\r\t\u0001", )"
      R"("email": "\u20ac\u0000\uFFFF", "age": -3, "score": 1e-05})");
  EXPECT_EQ(p.id, "u\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(p.name, "q\"\\/\b\f\n\r\t\x01");
  EXPECT_EQ(p.email, std::string("\xe2\x82\xac\0\xef\xbf\xbf", 7));
  EXPECT_EQ(p.age, -3);
  EXPECT_EQ(p.score, 1e-05);
  const Profile raw = tc::JsonCodec<Profile>::decode(
      "{\"id\": \"u\xc3\xa9\xf0\x9f\x98\x80\", \"name\": \"\xe4\xb8\xad\xe6\x96\x87\", "
      "\"email\": \"\xf4\x8f\xbf\xbf\", \"age\": 0, \"score\": 0}");
  EXPECT_EQ(raw.id, p.id);
  EXPECT_EQ(raw.name, "\xe4\xb8\xad\xe6\x96\x87");
  EXPECT_EQ(raw.email, "\xf4\x8f\xbf\xbf");  // U+10FFFF
  // Whitespace wherever JSON allows it, members in any order, escaped member names.
  const Profile spaced = tc::JsonCodec<Profile>::decode(
      " \t\r\n{ \"score\" : 2.5 ,\n\"age\"\t:\t1,\"\\u0069d\":\"x\" , \"name\":\"\", "
      "\"email\" :\"e\"\n}\n ");
  EXPECT_EQ(spaced, (Profile{"x", "", "e", 1, 2.5}));
}

TEST(JsonReader, StringsOfEveryLengthAndEscapePosition) {
  // Strings are scanned 8 bytes at a time: a special byte at each position of each length.
  for (std::size_t len = 0; len < 40; ++len) {
    const std::string plain(len, 'a');
    EXPECT_EQ(read<std::string>(cat("\"", plain, "\"")), plain);
    for (std::size_t k = 0; k < len; ++k) {
      std::string want = plain;
      want[k] = '\n';
      std::string text = cat("\"", plain.substr(0, k), "\\n", plain.substr(k + 1), "\"");
      EXPECT_EQ(read<std::string>(text), want) << text;
      want[k] = '"';
      text = cat("\"", plain.substr(0, k), "\\\"", plain.substr(k + 1), "\"");
      EXPECT_EQ(read<std::string>(text), want) << text;
      want[k] = '\x7f';
      text = cat("\"", want, "\"");
      EXPECT_EQ(read<std::string>(text), want) << text;
      // A raw control character or a stray UTF-8 byte: refused at its own offset.
      text[k + 1] = '\x1f';
      expect_error<std::string>(text, k + 1, "control character");
      text[k + 1] = '\x80';
      expect_error<std::string>(text, k + 1, "invalid UTF-8");
    }
    expect_error<std::string>(cat("\"", plain), len + 1, "unterminated string");
  }
}

TEST(JsonReader, NestedStructsVectorsMapsOptionals) {
  const std::string text =
      R"({"id": 7, "amounts": [1.5, -2, 0.1, 3e2], "ship": {"city": "Lisboa", "zip": 1000},)"
      R"( "history": [{"city": "Porto", "zip": null}, {"zip": 4000, "city": ""}], )"
      R"("counts": {"a": 1, "b": -2, "": 0}, "tags": {"x": ["p", "q"], "y": []}, )"
      R"("billing": null, "paid": true, "color": "green", "flags": [true, false, true], )"
      R"("small": 65535})";
  Order want{};  // (member by member: GCC 12 at -O3 sees the aggregate as maybe uninitialized)
  want.id = 7;
  want.amounts = {1.5, -2, 0.1, 300};
  want.ship = Address{"Lisboa", 1000};
  want.history = {Address{"Porto", std::nullopt}, Address{"", 4000}};
  want.counts = {{"a", 1}, {"b", -2}, {"", 0}};
  want.tags = {{"x", {"p", "q"}}, {"y", {}}};
  want.paid = true;
  want.color = Color::green;
  want.flags = {true, false, true};
  want.small = 65535;
  EXPECT_EQ(read<Order>(text), want);
  EXPECT_EQ(tc::JsonCodec<Order>::decode(text), want);
  expect_agree<Order>(text);
  // And back through the encoder.
  want.billing = Address{"Faro", std::nullopt};
  EXPECT_EQ(tc::JsonCodec<Order>::decode(tc::JsonCodec<Order>::encode(want)), want);
  EXPECT_EQ(read<std::vector<std::vector<int>>>("[[], [1], [2, 3]]"),
            (std::vector<std::vector<int>>{{}, {1}, {2, 3}}));
  EXPECT_EQ(read<std::optional<std::vector<int>>>("null"), std::nullopt);
  EXPECT_EQ(read<std::optional<std::optional<int>>>("null"), std::nullopt);
  EXPECT_EQ(read<std::optional<int>>(" 5 "), 5);
  // A repeated key: the last one wins, as in the document (and json.loads).
  EXPECT_EQ((read<std::map<std::string, int>>(R"({"k": 1, "k": 2})")),
            (std::map<std::string, int>{{"k", 2}}));
  EXPECT_EQ(read<One>(R"({"a": 1, "a": 2})"), One{2});
}

TEST(JsonReader, IntegersAtTheLimits) {
  EXPECT_EQ(read<long long>("9223372036854775807"), std::numeric_limits<long long>::max());
  EXPECT_EQ(read<long long>("-9223372036854775808"), std::numeric_limits<long long>::min());
  EXPECT_EQ(read<unsigned long long>("18446744073709551615"),
            std::numeric_limits<unsigned long long>::max());
  EXPECT_EQ(read<int>("2147483647"), 2147483647);
  EXPECT_EQ(read<int>("-2147483648"), -2147483647 - 1);
  EXPECT_EQ(read<signed char>("-128"), -128);
  EXPECT_EQ(read<unsigned short>("65535"), 65535);
  EXPECT_EQ(read<long long>("-0"), 0);
  EXPECT_EQ(read<unsigned>("-0"), 0u);
  EXPECT_EQ(read<long long>("123456789012345678"), 123456789012345678);  // 18 digits
  EXPECT_EQ(read<long long>("-1234567890123456789"), -1234567890123456789);
  for (const char* bad : {"9223372036854775808", "-9223372036854775809", "99999999999999999999",
                          "-99999999999999999999999"})
    expect_error<long long>(bad, 0, "integer out of range");
  for (const char* bad : {"18446744073709551616", "-1", "-18446744073709551615"})
    expect_error<unsigned long long>(bad, 0, "integer out of range");
  expect_error<int>("2147483648", 0, "integer out of range");
  expect_error<int>("-2147483649", 0, "integer out of range");
  expect_error<signed char>("128", 0, "integer out of range");
  expect_error<unsigned short>("65536", 0, "integer out of range");
  // As value_to: a number with a fraction or exponent whose double is an integer in range.
  EXPECT_EQ(read<int>("1.0"), 1);
  EXPECT_EQ(read<int>("1e2"), 100);
  EXPECT_EQ(read<int>("-0.0"), 0);
  EXPECT_EQ(read<int>("2147483647.0"), 2147483647);
  EXPECT_EQ(read<unsigned>("4.2e1"), 42u);
  EXPECT_EQ(read<long long>("9.2233720368547748e18"), 9223372036854774784);
  expect_error<int>("1.5", 0, "found a fraction");
  expect_error<int>("1e10", 0, "integer out of range");
  expect_error<int>("2147483648.0", 0, "integer out of range");
  expect_error<long long>("9.2233720368547758e18", 0, "integer out of range");   // 2^63
  expect_error<long long>("-9.2233720368547758e18", 0, "integer out of range");  // value_to's
  expect_error<unsigned long long>("1.8446744073709552e19", 0, "integer out of range");
  expect_error<unsigned>("-1.0", 0, "integer out of range");
  expect_error<int>("NaN", 0, "NaN or Infinity");
  expect_error<int>("-Infinity", 0, "NaN or Infinity");
}

TEST(JsonReader, DoublesAsPythonReadsThem) {
  EXPECT_EQ(bits(read_double("0.1")), bits(0.1));
  EXPECT_EQ(bits(read_double("1e+300")), bits(1e300));
  EXPECT_EQ(bits(read_double("5e-324")), bits(5e-324));
  EXPECT_EQ(bits(read_double("-0.0")), bits(-0.0));
  EXPECT_EQ(bits(read_double("-0e5")), bits(-0.0));
  EXPECT_EQ(bits(read_double("-0")), bits(0.0));  // json.loads: the int 0
  EXPECT_EQ(bits(read_double("1.7976931348623157e+308")), bits(1.7976931348623157e308));
  EXPECT_EQ(bits(read_double("2.2250738585072014E-308")), bits(2.2250738585072014e-308));
  EXPECT_EQ(bits(read_double("123456789012345678901234567890")), bits(1.2345678901234568e+29));
  EXPECT_EQ(bits(read_double("18446744073709551615")), bits(18446744073709551615.0));
  EXPECT_EQ(bits(read_double("9007199254740993")), bits(9007199254740992.0));  // to even
  // Correctly rounded where Boost.JSON 1.81's parser is not (Python agrees: 5e-324, and
  // 1.0000000000000002 for the second).
  EXPECT_EQ(bits(read_double("2.4703282292062328e-324")), bits(5e-324));
  EXPECT_EQ(bits(read_double("1.000000000000000111022302462515654042363166809082031250000000001")),
            bits(1.0000000000000002));
  EXPECT_EQ(bits(read_double("1.00000000000000011102230246251565404236316680908203125")),
            bits(1.0));  // exactly halfway: to even
  // Beyond double's range, as float(): inf, or a zero of the same sign.
  EXPECT_EQ(read_double("1e400"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(read_double("-1e400"), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(read_double("1.7976931348623159e308"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(read_double("1e99999999999999999999"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(bits(read_double("1e-400")), bits(0.0));
  EXPECT_EQ(bits(read_double("-1e-400")), bits(-0.0));
  EXPECT_EQ(bits(read_double("0e99999999999999999999")), bits(0.0));
  // What json.dumps writes for those floats.
  EXPECT_TRUE(std::isnan(read_double("NaN")));
  EXPECT_EQ(read_double("Infinity"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(read_double("-Infinity"), -std::numeric_limits<double>::infinity());
  const auto v = read<std::vector<double>>("[NaN, Infinity, -Infinity, 1]");
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_EQ(v[2], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(read<float>("0.1"), static_cast<float>(0.1));  // as value_to: via double
  // Every double's shortest text (Python's repr) and its 17 digits read back exactly.
  std::mt19937_64 rng(42);
  for (int i = 0; i < 20000; ++i) {
    double d = std::bit_cast<double>(rng());
    if (!std::isfinite(d)) continue;
    if (i % 4 == 0)
      d = static_cast<double>(static_cast<std::int64_t>(rng() % 2000000) - 1000000) / 1000;
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    const std::string shortest(buf, r.ptr);
    ASSERT_EQ(bits(read_double(shortest)), bits(d)) << shortest;
    r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific, 16);
    ASSERT_EQ(bits(read_double(std::string(buf, r.ptr))), bits(d)) << std::string(buf, r.ptr);
    r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
    if (r.ec == std::errc()) {
      ASSERT_EQ(bits(read_double(std::string(buf, r.ptr))), bits(d));
    }
  }
}

TEST(JsonReader, UnknownMembersAreSkipped) {
  const std::string text =
      R"({"skip": {"a": [1, {"b": null, "c": [true, false, "x\"]}"]}], "d": {}}, "id": "1",)"
      R"( "name": "n", "more": [[], [[]], {"e": -1.5e-3}], "email": "e", "age": 2, )"
      R"("score": 3, "last": "\ud83d\ude00", "n": NaN})";
  EXPECT_EQ(read<Profile>(text), (Profile{"1", "n", "e", 2, 3}));
  EXPECT_EQ(tc::JsonCodec<Profile>::decode(text), (Profile{"1", "n", "e", 2, 3}));
  // Skipped values are still checked.
  for (const char* bad :
       {R"({"a": 1, "x": [1,]})", R"({"a": 1, "x": {"y" 1}})", R"({"a": 1, "x": "\q"})",
        R"({"a": 1, "x": tru})", R"({"a": 1, "x": 01})", R"({"a": 1, "x": [})"})
    EXPECT_FALSE(direct_error<One>(bad).empty()) << bad;
}

TEST(JsonReader, MissingMemberIsAnErrorAsInValueTo) {
  // value_to<T> for a described struct refuses an object without one of T's members; so does
  // the direct reading (naming it), an optional member included.
  expect_error<Profile>(R"({"id": "1", "name": "n", "email": "e", "score": 1})", 50,
                        "missing member 'age'");
  expect_error<Address>(R"({"city": "c"})", 13, "missing member 'zip'");
  EXPECT_THROW((void)tc::JsonCodec<Address>::decode(R"({"city": "c"})"), std::invalid_argument);
  EXPECT_FALSE(dom<Address>(R"({"city": "c"})"));
  EXPECT_EQ(read<Address>(R"({"city": "c", "zip": null})"), (Address{"c", std::nullopt}));
  expect_error<One>("{}", 2, "missing member 'a'");
}

TEST(JsonReader, WrongTypesAreErrors) {
  expect_error<int>(R"("1")", 0, "expected an integer, found a string");
  expect_error<std::string>("1", 0, "expected a string, found a number");
  expect_error<std::string>("null", 0, "expected a string, found null");
  expect_error<bool>("1", 0, "expected true or false, found a number");
  expect_error<double>("true", 0, "expected a number, found a boolean");
  expect_error<Profile>("[]", 0, "expected an object, found an array");
  expect_error<std::vector<int>>("{}", 0, "expected an array, found an object");
  expect_error<One>(R"({"a": "x"})", 6, "expected an integer, found a string");
  expect_error<One>(R"({"a": null})", 6, "expected an integer, found null");
  expect_error<std::vector<int>>("[1, 2, 3.5]", 7, "found a fraction");
  expect_error<Color>(R"("purple")", 0, "unknown enumerator");
  expect_error<Color>("0", 0, "expected a string");
  expect_error<std::map<std::string, int>>(R"({"a": []})", 6, "expected an integer");
  for (const char* bad : {R"({"id": 5, "name": "n", "email": "e", "age": 1, "score": 1})",
                          R"({"id": "1", "name": "n", "email": "e", "age": "1", "score": 1})",
                          R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": "1"})",
                          R"({"id": "1", "name": "n", "email": "e", "age": 1.5, "score": 1})",
                          R"({"id": "1", "name": "n", "email": "e", "age": true, "score": 1})",
                          R"({"id": "1", "name": null, "email": "e", "age": 1, "score": 1})"}) {
    EXPECT_FALSE(direct_error<Profile>(bad).empty()) << bad;
    EXPECT_THROW((void)tc::JsonCodec<Profile>::decode(bad), std::invalid_argument) << bad;
  }
}

TEST(JsonReader, InvalidJsonNamesTheOffset) {
  expect_error<Profile>("", 0, "unexpected end");
  expect_error<Profile>("   ", 3, "unexpected end");
  expect_error<Profile>(R"({"id": "x")", 10, "unexpected end");
  expect_error<Profile>(R"({"id": "x)", 9, "unterminated string");
  expect_error<Profile>(R"({"id" "x"})", 6, "expected ':'");
  expect_error<Profile>(R"({"id": "x" "name": "y"})", 11, "expected ',' or '}'");
  expect_error<Profile>(R"({"id": "x",})", 11, "expected a member name");
  expect_error<Profile>(R"({,"id": "x"})", 1, "expected a member name");
  expect_error<Profile>(R"({id: "x"})", 1, "expected a member name");
  expect_error<std::vector<int>>("[1,]", 3, "expected a value");
  expect_error<std::vector<int>>("[1 2]", 3, "expected ',' or ']'");
  expect_error<std::vector<int>>("[,1]", 1, "expected a value");
  expect_error<std::vector<int>>("[1", 2, "unexpected end");
  expect_error<std::string>(R"("a\x")", 2, "bad escape");
  expect_error<std::string>(R"("a\u12")", 2, "bad \\u escape");
  expect_error<std::string>(R"("a\u12)", 6, "unterminated \\u escape");
  expect_error<std::string>(R"("\ud800")", 1, "lone high surrogate");
  expect_error<std::string>(R"("\ud800\u0041")", 1, "lone high surrogate");
  expect_error<std::string>(R"("\ud800\ud800")", 1, "lone high surrogate");
  expect_error<std::string>(R"("x\udc00")", 2, "lone low surrogate");
  expect_error<std::string>("\"\xed\xa0\x80\"", 1, "invalid UTF-8");      // a surrogate, raw
  expect_error<std::string>("\"\xc0\xaf\"", 1, "invalid UTF-8");          // overlong
  expect_error<std::string>("\"\xf4\x90\x80\x80\"", 1, "invalid UTF-8");  // above U+10FFFF
  expect_error<std::string>("\"\xe2\x82\"", 1, "invalid UTF-8");          // truncated
  expect_error<std::string>("\"\t\"", 1, "control character");
  expect_error<double>("01", 1, "text after the value");
  expect_error<double>("1.", 2, "expected a digit after '.'");
  expect_error<double>(".5", 0, "expected a value");
  expect_error<double>("-", 1, "expected a digit");
  expect_error<double>("-x", 1, "expected a digit");
  expect_error<double>("+1", 0, "expected a value");
  expect_error<double>("1e", 2, "expected a digit in the exponent");
  expect_error<double>("1e+", 3, "expected a digit in the exponent");
  expect_error<double>("-NaN", 1, "expected a digit");
  expect_error<double>("Inf", 0, "bad number");
  expect_error<bool>("tru", 0, "bad literal");
  expect_error<std::optional<int>>("nul", 0, "bad literal");
  expect_error<std::optional<int>>("nulll", 4, "text after the value");
}

TEST(JsonReader, TrailingTextIsAnError) {
  const std::string ok = R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": 1})";
  EXPECT_NO_THROW((void)read<Profile>(ok + " \n\t\r"));
  expect_error<Profile>(ok + " x", ok.size() + 1, "text after the value");
  expect_error<Profile>(ok + "}", ok.size(), "text after the value");
  expect_error<Profile>(ok + ok, ok.size(), "text after the value");
  EXPECT_THROW((void)tc::JsonCodec<Profile>::decode(ok + ","), std::invalid_argument);
  expect_error<int>("1 2", 2, "text after the value");
  std::string nul = "1";
  nul += '\0';
  expect_error<int>(nul, 1, "text after the value");
}

TEST(JsonReader, NestingStopsAt256) {
  const auto nested = [](int depth) {
    return std::string(static_cast<std::size_t>(depth), '[') +
           std::string(static_cast<std::size_t>(depth), ']');
  };
  const auto skip = [](const std::string& text) {
    td::JsonReader r(text);
    r.skip_value();
    r.finish();
  };
  EXPECT_NO_THROW(skip(nested(256)));
  EXPECT_THROW(skip(nested(257)), std::invalid_argument);
  try {
    skip(nested(100000));  // no recursion that deep, nothing read past the end
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("offset 256: nested deeper than 256"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(skip(std::string(100000, '[')), std::invalid_argument);
  EXPECT_THROW(skip(std::string(300, '{')), std::invalid_argument);
  // In a struct: the struct's own object counts.
  const auto in_member = [&](int depth) { return cat(R"({"a": 1, "x": )", nested(depth), "}"); };
  EXPECT_EQ(read<One>(in_member(255)), One{1});
  EXPECT_FALSE(direct_error<One>(in_member(256)).empty());
}

TEST(JsonReader, EnumsAsValueToReadsThem) {
  EXPECT_EQ(read<Color>(R"("blue")"), Color::blue);
  EXPECT_EQ(read<std::vector<Color>>(R"(["red", "green"])"),
            (std::vector<Color>{Color::red, Color::green}));
  // value_to compares the name as a C string: up to its first NUL.
  expect_agree<Color>(R"("green\u0000x")");
  EXPECT_EQ(read<Color>(R"("green\u0000x")"), Color::green);
}

TEST(JsonReader, OtherPartsGoThroughBoostJson) {
  static_assert(td::json_kind<Profile>() == td::JsonKind::described_class);
  static_assert(td::json_kind<std::optional<Profile>>() == td::JsonKind::optional);
  static_assert(td::json_kind<Color>() == td::JsonKind::described_enum);
  static_assert(td::json_kind<std::map<std::string, int>>() == td::JsonKind::map);
  static_assert(td::json_kind<std::map<int, int>>() == td::JsonKind::fallback);
  static_assert(td::json_kind<std::vector<Profile>>() == td::JsonKind::vector);
  static_assert(td::json_kind<boost::json::value>() == td::JsonKind::fallback);
  static_assert(td::json_kind<boost::json::array>() == td::JsonKind::fallback);
  static_assert(td::json_kind<std::variant<int, std::string>>() == td::JsonKind::fallback);
  static_assert(td::json_kind<std::tuple<int, int>>() == td::JsonKind::fallback);
  static_assert(td::json_kind<Celsius>() == td::JsonKind::fallback);
  static_assert(td::json_kind<std::nullptr_t>() == td::JsonKind::fallback);
#ifdef __SIZEOF_INT128__
  if constexpr (std::is_arithmetic_v<Int128>) {  // wider than read_int: Boost.JSON reads them
    static_assert(td::json_kind<Int128>() == td::JsonKind::fallback);
    EXPECT_TRUE(tc::JsonCodec<Int128>::decode("1e30") == *dom<Int128>("1e30"));
    EXPECT_TRUE(read<std::vector<UInt128>>("[18446744073709551615, 1e20]") ==
                *dom<std::vector<UInt128>>("[18446744073709551615, 1e20]"));
  }
#endif
  const std::string text =
      R"({"name": "n", "key": "k", "extra": {"a": [1, 2.5, null]}, "pair": [3, "p"]})";
  const Mixed m = read<Mixed>(text);
  EXPECT_EQ(m.key, (std::variant<long long, std::string>("k")));
  EXPECT_EQ(m.extra, boost::json::parse(R"({"a": [1, 2.5, null]})"));
  EXPECT_EQ(m.pair, (std::pair<int, std::string>(3, "p")));
  expect_agree<Mixed>(text);
  expect_agree<Mixed>(R"({"name": "n", "key": 12, "extra": null, "pair": [3, "p"]})");
  expect_agree<Mixed>(R"({"name": "n", "key": 1.5, "extra": null, "pair": [3, "p"]})");
  expect_agree<Mixed>(R"({"name": "n", "key": 1, "extra": null, "pair": [3]})");
  expect_error<Mixed>(R"({"name": "n", "key": 1, "extra": NaN, "pair": [3, "p"]})", 33,
                      "Boost.JSON cannot read");
  EXPECT_EQ(tc::JsonCodec<Celsius>::decode(R"({"c": 21.5})"), Celsius{21.5});
  EXPECT_EQ(tc::JsonCodec<std::vector<Celsius>>::decode(R"([{"c": 1}, {"c": 2}])"),
            (std::vector<Celsius>{{1}, {2}}));
  EXPECT_EQ(tc::JsonCodec<boost::json::value>::decode("[1, 2]"), boost::json::parse("[1,2]"));
  EXPECT_THROW((void)tc::JsonCodec<Celsius>::decode(R"({"f": 1})"), std::exception);
}

// ---- the two paths agree

TEST(JsonReader, AgreesWithTheDocumentPath) {
  for (const char* t : {"0",
                        "-0",
                        "1",
                        "-1",
                        "2147483647",
                        "2147483648",
                        "-2147483648",
                        "-2147483649",
                        "1.0",
                        "1.5",
                        "1e2",
                        "1E+2",
                        "-1e-2",
                        "1e10",
                        "9223372036854775807",
                        "9223372036854775808",
                        "2147483647.0",
                        "2147483647.5",
                        "-0.0",
                        "\"1\"",
                        "true",
                        "null",
                        "[]",
                        "{}",
                        "",
                        " ",
                        "01",
                        "1.",
                        ".5",
                        "+1",
                        "-",
                        "1e",
                        "1 2",
                        "1x",
                        "NaN",
                        "Infinity"}) {
    expect_agree<int>(t);
    expect_agree<long long>(t);
    expect_agree<unsigned>(t);
    expect_agree<unsigned long long>(t);
    expect_agree<short>(t);
    expect_agree<std::optional<int>>(t);
    expect_agree<bool>(t);
    expect_agree<std::string>(t);
  }
  for (const char* t : {"18446744073709551615", "18446744073709551616", "-9223372036854775808",
                        "-9223372036854775809", "9.2233720368547758e18", "-1.0", "4.2e1", "1e-1",
                        "100e-2", "0.5e1"}) {
    expect_agree<long long>(t);
    expect_agree<unsigned long long>(t);
    expect_agree<int>(t);
  }
  // Doubles that Boost.JSON 1.81 reads correctly rounded (see codec.hpp for those it does not).
  for (const char* t : {"0.1", "1e+300", "5e-324", "-0.0", "-0", "0", "1.5", "9.5", "123.456",
                        "1e400", "-1e400", "1e-400", "1.7976931348623157e+308", "1e-05",
                        "0.30000000000000004", "123456789012345678901234567890", "1E5", "2"}) {
    expect_agree<double>(t);
    expect_agree<float>(t);
    expect_agree<std::vector<double>>(cat("[", t, ", ", t, "]"));
  }
  for (const char* t :
       {R"("")", R"("abc")", R"("\u00e9\ud83d\ude00")", R"("\"\\\/\b\f\n\r\t")", R"("\u0000")",
        R"("\ud800")", R"("\udc00")", R"("\ud800\u0041")", "\"\xc3\xa9\"", "\"\xed\xa0\x80\"",
        "\"\xef\xbf\xbf\"", "\"\x7f\"", "\"\x1f\"", R"("\x")", R"("abc)", R"("a" "b")"}) {
    expect_agree<std::string>(t);
  }
  for (const char* t :
       {R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": 1})",
        R"({"score": 1.25, "age": -7, "email": "", "name": "\u00e9", "id": "x"})",
        R"({"id":"1","name":"n","email":"e","age":1,"score":1})",
        R"({"id": "1", "name": "n", "email": "e", "age": 1})",
        R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": "1"})",
        R"({"id": "1", "name": "n", "email": "e", "age": 1.0, "score": 1})",
        R"({"id": "1", "name": "n", "email": "e", "age": 1e300, "score": 1})",
        R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": 1,})",
        R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": 1} 1)",
        R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": 1)",
        R"({"id": "1", "id": "2", "name": "n", "email": "e", "age": 1, "score": 1})",
        R"({"\u0069d": "1", "name": "n", "email": "e", "age": 1, "score": 1})",
        R"(["1", "n", "e", 1, 1])", "null", "{}"}) {
    expect_agree<Profile>(t);
    expect_agree<std::optional<Profile>>(t);
    expect_agree<std::vector<Profile>>(cat("[", t, "]"));
    expect_agree<std::map<std::string, Profile>>(cat(R"({"k": )", t, "}"));
  }
  for (const char* t : {R"({"a": 1, "b": 2})", R"({"a": 1, "a": 2})", R"({})", R"({"a": null})",
                        R"([1])", R"({"a": 1.0})", R"({"": 0})"}) {
    expect_agree<std::map<std::string, int>>(t);
    expect_agree<std::unordered_map<std::string, int>>(t);
    expect_agree<std::map<std::string, std::optional<int>>>(t);
  }
  for (const char* t : {"[]", "[1]", "[1, 2, 3]", "[1,2,]", "[null]", "[[1]]", "[1.5]", "[true]",
                        "[\"a\"]", "{}"}) {
    expect_agree<std::vector<int>>(t);
    expect_agree<std::vector<std::optional<int>>>(t);
    expect_agree<std::vector<bool>>(t);
    expect_agree<std::vector<std::vector<int>>>(t);
  }
  for (const char* t : {R"("red")", R"("blue")", R"("purple")", R"("")", "0", "null"})
    expect_agree<Color>(t);
}

// Random edits of a stored value: whatever the document path reads, the direct reading reads
// the same (JsonCodec too), and nothing reads out of bounds (the sanitizer build checks that).
TEST(JsonReader, AgreesOnEditedText) {
  Order order{};
  order.id = -12;
  order.amounts = {0.5, 19.9, -3};
  order.ship = Address{"Lisboa \u00e9", 1200};
  order.history = {Address{"Porto", std::nullopt}};
  order.counts = {{"a", 1}, {"bb", 22}};
  order.tags = {{"t", {"x", "\xf0\x9f\x98\x80"}}};
  order.billing = Address{"", 0};
  order.paid = false;
  order.color = Color::blue;
  order.flags = {false, true};
  order.small = 7;
  const std::string base = tc::JsonCodec<Order>::encode(order);
  ASSERT_EQ(read<Order>(base), order);
  static constexpr std::string_view bytes = "{}[]\",:0123456789.eE+- \\/ntrufalsu\x80\xc3\xa9\x01";
  std::mt19937 rng(7);
  int read_by_both = 0;
  for (int i = 0; i < 30000; ++i) {
    std::string t = base;
    for (unsigned e = 0, edits = 1 + rng() % 3; e < edits; ++e) {
      const std::size_t at = rng() % (t.size() + 1);
      const char c = bytes[rng() % bytes.size()];
      switch (rng() % 4) {
        case 0:
          if (at < t.size()) t[at] = c;
          break;
        case 1:
          t.insert(t.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 2:
          if (at < t.size()) t.erase(at, 1);
          break;
        default:
          t.resize(at);
      }
    }
    const auto a = direct<Order>(t);
    const auto b = dom<Order>(t);
    if (!b) continue;
    ++read_by_both;
    ASSERT_TRUE(a) << t << "\n" << direct_error<Order>(t);
    ASSERT_EQ(*a, *b) << t;
    ASSERT_EQ(tc::JsonCodec<Order>::decode(t), *b) << t;
  }
  EXPECT_GT(read_by_both, 100);
  for (std::size_t n = 0; n < base.size(); ++n) {
    EXPECT_FALSE(direct<Order>(std::string_view(base).substr(0, n))) << n;
    EXPECT_FALSE(dom<Order>(std::string_view(base).substr(0, n))) << n;
  }
}

TEST(JsonReader, AgreesOnEveryShortUtf8Sequence) {
  // Every 1- and 2-byte string, and every 3-byte one of a few third bytes: Boost.JSON's UTF-8
  // check and the reader's refuse the same ones.
  for (unsigned a = 0; a < 256; ++a) {
    expect_agree<std::string>(std::string("\"") + static_cast<char>(a) + "\"");
    for (unsigned b = 0; b < 256; ++b) {
      std::string s = "\"";
      s += static_cast<char>(a);
      s += static_cast<char>(b);
      ASSERT_NO_FATAL_FAILURE(expect_agree<std::string>(s + "\""));
      if (a < 0xE0) continue;
      for (const unsigned c : {0x00u, 0x41u, 0x7Fu, 0x80u, 0x8Fu, 0x90u, 0xBFu, 0xC0u, 0xFFu}) {
        ASSERT_NO_FATAL_FAILURE(expect_agree<std::string>(s + static_cast<char>(c) + "\""));
        if (a >= 0xF0) {
          ASSERT_NO_FATAL_FAILURE(expect_agree<std::string>(s + static_cast<char>(c) + "\x80\""));
        }
      }
    }
  }
}

// Where the paths differ on purpose (codec.hpp): the direct reading reads more.
TEST(JsonReader, ReadsWhatTheDocumentPathRefuses) {
  const std::string extra =
      R"({"id": "1", "name": "n", "email": "e", "age": 1, "score": 1, "new": [1]})";
  EXPECT_FALSE(dom<Profile>(extra));  // value_to: the object's size is not T's
  EXPECT_EQ(read<Profile>(extra), (Profile{"1", "n", "e", 1, 1}));
  EXPECT_FALSE(dom<double>("NaN"));
  EXPECT_TRUE(std::isnan(tc::JsonCodec<double>::decode("NaN")));
  EXPECT_FALSE(dom<double>("1e99999999999999999999"));
  const std::string deep = std::string(40, '[') + std::string(40, ']');
  EXPECT_FALSE(dom<One>(cat(R"({"a": 1, "b": )", deep, "}")));
  EXPECT_EQ(read<One>(cat(R"({"a": 1, "b": )", deep, "}")), One{1});
  // Boost.JSON 1.81's parser is one ulp off here; the direct reading is not.
  EXPECT_EQ(bits(*dom<double>("2.4703282292062328e-324")), bits(0.0));
  EXPECT_EQ(bits(tc::JsonCodec<double>::decode("2.4703282292062328e-324")), bits(5e-324));
  EXPECT_EQ(bits(*dom<double>("3e+23")), bits(2.9999999999999997e+23));
  EXPECT_EQ(bits(tc::JsonCodec<double>::decode("3e+23")), bits(3e+23));  // Python's repr(3e23)
  // So are integers read from such numbers (Python: int(float(text))).
  EXPECT_EQ(*dom<long long>("9.2233720368547748e18"), 9223372036854773760);
  EXPECT_EQ(tc::JsonCodec<long long>::decode("9.2233720368547748e18"), 9223372036854774784);
  EXPECT_FALSE(dom<unsigned long long>("1.8446744073709550e19"));
  EXPECT_EQ(tc::JsonCodec<unsigned long long>::decode("1.8446744073709550e19"),
            18446744073709549568u);
}

// A repeated member whose first value is of the wrong type: the document (the last one wins)
// reads it, the direct reading alone does not; JsonCodec asks the document path then.
TEST(JsonReader, TheDocumentPathHasTheLastWord) {
  const char* text = R"({"a": "x", "a": 2})";
  EXPECT_FALSE(direct_error<One>(text).empty());
  EXPECT_EQ(dom<One>(text), One{2});
  EXPECT_EQ(tc::JsonCodec<One>::decode(text), One{2});
  using Map = std::map<std::string, int>;
  EXPECT_FALSE(direct_error<Map>(text).empty());
  EXPECT_EQ(tc::JsonCodec<Map>::decode(text), (Map{{"a", 2}}));
  // When both refuse, the error is the direct reading's, with its offset.
  try {
    (void)tc::JsonCodec<One>::decode(R"({"a": "x"})");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("at offset 6"), std::string::npos) << e.what();
  }
}
