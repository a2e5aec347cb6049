// Cache keys byte-identical to the Python SDK's, from JSON text and from typed C++ arguments.
#include <gtest/gtest.h>

#include <boost/describe/class.hpp>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <openssl/sha.h>
#include <boost/json/parse.hpp>

#include "tempest/cache/codec.hpp"
#include "tempest/cache/invalidator.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"

using namespace tempest::cache;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Vector {
  std::string name, prefix, args, key;
};

// The reference file is JSON written by Python; each vector's "args" is re-read here as text.
std::vector<Vector> load_vectors() {
  const std::string text = read_file(TEMPEST_TEST_DATA "/key-vectors.json");
  const auto doc = boost::json::parse(text).as_array();
  std::vector<Vector> out;
  // The args are taken from the original text (not Boost.JSON's doubles) to keep number text
  // exact: find each vector's "args" array by bracket matching.
  std::size_t pos = 0;
  for (const auto& v : doc) {
    const auto& o = v.as_object();
    pos = text.find("\"args\"", pos);
    const auto open = text.find('[', pos);
    int depth = 0;
    std::size_t i = open;
    bool in_string = false;
    for (; i < text.size(); ++i) {
      const char c = text[i];
      if (in_string) {
        if (c == '\\')
          ++i;
        else if (c == '"')
          in_string = false;
        continue;
      }
      if (c == '"')
        in_string = true;
      else if (c == '[')
        ++depth;
      else if (c == ']' && --depth == 0)
        break;
    }
    out.push_back({std::string(o.at("name").as_string()),
                   std::string(o.at("key_prefix").as_string()), text.substr(open, i + 1 - open),
                   std::string(o.at("key").as_string())});
    pos = i;
  }
  return out;
}

}  // namespace

TEST(Key, EveryReferenceVectorMatchesFromJsonText) {
  const auto vectors = load_vectors();
  ASSERT_EQ(vectors.size(), 13u);
  for (const auto& v : vectors)
    EXPECT_EQ(key_from_json_args(v.prefix, v.name, v.args), v.key) << v.name << " " << v.args;
}

TEST(Key, SeedExampleKey) {
  EXPECT_EQ(make_key("users:", "get_user_profile", encode_args(std::string("123"))),
            "users:get_user_profile:5f11deb66da1aa69390b0572cc7a6b39");
}

struct Profile {
  std::string id;
  int age;
  std::vector<std::string> tags;
  double score;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (id, age, tags, score))

struct BA {
  int b;
  std::tuple<bool, std::nullptr_t> a;
};
BOOST_DESCRIBE_STRUCT(BA, (), (b, a))

TEST(Key, TypedArgumentsReproduceTheVectors) {
  auto key = [](std::string_view prefix, std::string_view name, const std::string& args) {
    return make_key(prefix, name, args);
  };
  EXPECT_EQ(key("", "list_orders", encode_args("u-1", false)),
            "list_orders:b1326c2f3259d0a8eb06f4a08693002f");
  EXPECT_EQ(key("orders:", "list_orders", encode_args(std::string_view("u-1"), true)),
            "orders:list_orders:9588bf7d124aefab1043b239daaf5e2a");
  EXPECT_EQ(key("", "no_args", encode_args()), "no_args:97fcdad9fe31227a9ec60e519ff7635a");
  EXPECT_EQ(key("", "ints",
                encode_args(0, -1, 42, 9007199254740993LL, std::numeric_limits<long long>::min(),
                            std::numeric_limits<unsigned long long>::max())),
            "ints:b3f094c718f62a2ddcf6909070868510");
  EXPECT_EQ(key("", "floats",
                encode_args(0.1, 1.0, -0.0, 2.5, 1e16, 1e-05, 0.0001, 123456789.123, 1e300, 5e-324,
                            3e-07, 1.7976931348623157e308)),
            "floats:dc4b48e925a4c36279864b025655ba79");
  EXPECT_EQ(key("", "bools_null", encode_args(true, false, nullptr)),
            "bools_null:9be42b7302685d8c4a6f7413e126eba1");
  EXPECT_EQ(key("", "strings",
                encode_args("", "a b", "quote\"back\\slash", "tab\tnl\ncr\r", "\x01\x1f\x7f")),
            "strings:80874ab581a0624db8dd24115fbacde3");
  EXPECT_EQ(
      key("", "unicode",
          encode_args("Ana", "\xc3\xa9", "\xc3\xa7\xc3\xa3o",
                      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xf0\x9f\x98\x80", "\xe2\x80\xa8")),
      "unicode:39f543f4d8f952ad35fe7e953cdb76c4");
  const auto nested =
      std::make_tuple(1, std::make_tuple(2, std::make_tuple(3, std::vector<int>{})));
  EXPECT_EQ(key("p:", "nested", encode_args(nested, BA{1, {true, nullptr}})),
            "p:nested:8a4dadedaea2933160568f886eadd725");
  EXPECT_EQ(key("", "struct_like", encode_args(Profile{"u1", 37, {"x", "y"}, 9.5})),
            "struct_like:8db8f7aedf16146847f5717e309db743");
  EXPECT_EQ(key("", "mixed",
                encode_args("x", 1, 1.5, std::optional<int>{}, std::vector<int>{},
                            std::map<std::string, int>{})),
            "mixed:9156ef50484af7af073757c67808be26");
}

// The digest hashes a text that fits one SHA-256 block (up to 55 bytes) itself, and longer ones
// through SHA256_Update/Final: every length around the edges against OpenSSL's one-shot SHA256.
TEST(Key, DigestMatchesSha256AtEveryLength) {
  for (std::size_t len = 0; len <= 140; ++len) {
    const std::string args = "[\"" + std::string(len, 'x') + "\"]";
    for (const std::string kwargs : {"{}", "{\"a\":1}"}) {
      const std::string text = "{\"args\":" + args + ",\"kwargs\":" + kwargs + "}";
      unsigned char md[SHA256_DIGEST_LENGTH];
      SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), md);
      std::string want;
      for (int i = 0; i < 16; ++i) {
        static constexpr char hex[] = "0123456789abcdef";
        want += hex[md[i] >> 4];
        want += hex[md[i] & 15];
      }
      ASSERT_EQ(args_digest(args, kwargs), want) << text.size() << " bytes: " << text;
      ASSERT_EQ(make_key("p:", "f", args, kwargs), "p:f:" + want);
    }
  }
}

// Integer-only calls take encode_args' fast path (no KeyWriter): the same text as KeyWriter's.
TEST(Key, IntegerArgumentsFastPathWritesWhatKeyWriterWrites) {
  const auto by_writer = [](const auto&... args) {
    KeyWriter w;
    w.begin_array();
    (encode_key_value(w, args), ...);
    w.end_array();
    return w.take();
  };
  const auto same = [&](const auto&... args) {
    static_assert(detail::plain_integer_args<std::decay_t<decltype(args)>...>);
    EXPECT_EQ(encode_args(args...), by_writer(args...));
  };
  same(0);
  same(-1);
  same(37LL);
  same(std::numeric_limits<long long>::min());
  same(std::numeric_limits<long long>::max());
  same(std::numeric_limits<unsigned long long>::max());
  same(std::numeric_limits<long long>::min(), std::numeric_limits<unsigned long long>::max(),
       std::numeric_limits<long long>::min());
  same(static_cast<short>(-32768), static_cast<unsigned short>(65535),
       static_cast<signed char>(-128), static_cast<unsigned char>(255), 7u, -7L, char16_t{65});
  EXPECT_EQ(encode_args(1, -2, 3ULL), "[1,-2,3]");
  // Not plain integers: bool, char, 128-bit integers, other types, none.
  static_assert(!detail::plain_integer_args<bool>);
  static_assert(!detail::plain_integer_args<char>);
  __extension__ typedef __int128 Wide;
  static_assert(!detail::plain_integer_args<Wide>);
  static_assert(!detail::plain_integer_args<int, double>);
  static_assert(!detail::plain_integer_args<>);
}

TEST(Key, DifferentValuesTypesAndOrderGiveDifferentKeys) {
  const auto k = [](const std::string& args) { return make_key("", "f", args); };
  EXPECT_NE(k(encode_args(1)), k(encode_args(2)));
  EXPECT_NE(k(encode_args(1)), k(encode_args("1")));
  EXPECT_NE(k(encode_args(1)), k(encode_args(1.0)));
  EXPECT_NE(k(encode_args(true)), k(encode_args(1)));
  EXPECT_NE(k(encode_args("a", "b")), k(encode_args("b", "a")));
  EXPECT_NE(k(encode_args(std::vector<int>{1, 2})), k(encode_args(1, 2)));
  EXPECT_EQ(k(encode_args(std::string("same"))), k(encode_args("same")));
  // Unordered containers are sorted, so equal contents give equal keys.
  std::unordered_map<std::string, int> m1{{"a", 1}, {"b", 2}, {"c", 3}},
      m2{{"c", 3}, {"a", 1}, {"b", 2}};
  EXPECT_EQ(encode_args(m1), encode_args(m2));
  EXPECT_EQ(encode_args(m1), "[{\"a\":1,\"b\":2,\"c\":3}]");
  EXPECT_EQ(encode_args(std::map<int, bool>{{2, true}, {10, false}}),
            "[{\"2\":true,\"10\":false}]");
}

TEST(Key, PythonFloatRepr) {
  const std::pair<double, const char*> cases[] = {
      {0.1, "0.1"},
      {1.0, "1.0"},
      {-0.0, "-0.0"},
      {100.0, "100.0"},
      {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {5e-324, "5e-324"},
      {1.5e300, "1.5e+300"},
      {-2.5, "-2.5"},
      {123456789.123, "123456789.123"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {3e-07, "3e-07"},
      {12345678901234567.0, "1.2345678901234568e+16"}};
  for (const auto& [v, repr] : cases)
    EXPECT_EQ(python_float_repr(v), repr) << repr;
  EXPECT_EQ(python_float_repr(std::nan("")), "NaN");
  EXPECT_EQ(python_float_repr(-std::numeric_limits<double>::infinity()), "-Infinity");
}

// Bytes that are not UTF-8 never make a call throw: they read as Python's
// bytes.decode("utf-8", "replace") reads them (one U+FFFD per maximal ill-formed subpart); the
// expected texts are what Python's json.dumps([b.decode("utf-8", "replace")]) printed.
TEST(Key, InvalidUtf8ReadsAsPythonsReplacementDecoding) {
  const std::pair<std::string, std::string> cases[] = {
      {"\xff", R"(["\ufffd"])"},
      {"\xc3", R"(["\ufffd"])"},
      {"\xed\xa0\x80", R"(["\ufffd\ufffd\ufffd"])"},  // a surrogate
      {"\xc0\xaf", R"(["\ufffd\ufffd"])"},            // overlong
      {"a\xe2\x82"
       "b",
       R"(["a\ufffdb"])"},                                      // truncated, then more
      {"\xf0\x9f\x98", R"(["\ufffd"])"},                        // truncated at the end
      {"\xf4\x90\x80\x80", R"(["\ufffd\ufffd\ufffd\ufffd"])"},  // above U+10FFFF
      {"ok\xe2\x82\xacz", R"(["ok\u20acz"])"}};                 // valid
  for (const auto& [bytes, python] : cases)
    EXPECT_EQ(encode_args(bytes), python) << python;
}

TEST(Key, JsonArgsErrorsNameTheProblem) {
  for (const char* bad : {"", "{}", "[1,", "[1 2]", "[\"x]", "[tru]", "[1]x", "[\"\\ud800\"]",
                          "[01.]", "[01.5]", "[-00.1]", "[01e2]"}) {
    try {
      (void)key_from_json_args("", "f", bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("bad --args JSON"), std::string::npos) << e.what();
    }
  }
}

TEST(Codec, JsonRoundTripAndPythonsSpacing) {
  const Profile p{"u1", 37, {"x"}, 9.5};
  const auto text = JsonCodec<Profile>::encode(p);
  const auto back = JsonCodec<Profile>::decode(text);
  EXPECT_EQ(back.id, "u1");
  EXPECT_EQ(back.age, 37);
  // What Python's json.dumps writes (", " and ": " separators) decodes too.
  const auto py = JsonCodec<Profile>::decode(
      "{\"id\": \"u2\", \"age\": 5, \"tags\": [\"a\", \"b\"], \"score\": 1.25}");
  EXPECT_EQ(py.tags.size(), 2u);
  EXPECT_DOUBLE_EQ(py.score, 1.25);
}

TEST(Codec, JsonRejectsWrongShapes) {
  for (const char* bad : {"", "{", "[1,2]", "{\"id\": 5, \"age\": 1, \"tags\": [], \"score\": 1}",
                          "null", "{\"id\": \"x\"}", "\xff\xfe garbage"}) {
    EXPECT_THROW((void)JsonCodec<Profile>::decode(bad), std::exception) << bad;
  }
}

TEST(Key, KeyTextIsPythonJsonDumps) {
  EXPECT_EQ(encode_args("a", 1, 2.5, true, nullptr, std::vector<int>{1, 2}),
            "[\"a\",1,2.5,true,null,[1,2]]");
  EXPECT_EQ(encode_args(std::string("\xc3\xa9\xf0\x9f\x98\x80")), "[\"\\u00e9\\ud83d\\ude00\"]");
}

// What Python's json.loads reads, read the same way by the CLI's --args: NaN, Infinity, a
// decimal out of double range, integers of any size; duplicate members are refused (json.loads
// would keep the last one silently). Expected keys computed by Python's own key builder.
TEST(Key, JsonArgsReadLikePythonsJsonLoads) {
  const std::pair<const char*, const char*> cases[] = {
      {"[NaN]", "f:f59f1c89a8c1df940ce79ee4ff914142"},
      {"[Infinity, -Infinity]", "f:68ce46b788d774463c23e02665ef183c"},
      {"[1e400]", "f:8b351f3835406427ffce1f33b0de3f61"},
      {"[1.0]", "f:f73998a21f13788a7d344776fbd2ac61"},
      {"[-0.0]", "f:bf7556ac5f656f7075fbd52630f63308"},
      {"[123456789012345678901234567890]", "f:c1f71984118a1b9611a1afbe7e7a1a63"},
      {"[-0]", "f:1c2855d53b47e6a93250255db57a1a89"},
      {"[18446744073709551616]", "f:fde39e3c476b6009f1a458090110437e"}};
  for (const auto& [args, key] : cases)
    EXPECT_EQ(key_from_json_args("", "f", args), key) << args;
  try {
    (void)key_from_json_args("", "f", R"([{"a":1,"a":2}])");
    ADD_FAILURE() << "a duplicate member was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("member \"a\" appears twice"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)key_from_json_args("", "f", "[01]"), std::invalid_argument);
}

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

// Argument encodings that used to differ from Python's: a float is its own shortest decimal,
// 128-bit integers are exact, and a std::map and a std::unordered_map with the same int keys give
// the same key (numeric order). Python printed json.dumps([0.1, 2**100, -2**100]) and
// json.dumps([{1: "x", 2: "y", 10: "z"}]).
TEST(Key, FloatsInt128AndIntKeyedMapsEncodeAsPythonWould) {
  const Int128 big = static_cast<Int128>(1) << 100;
  EXPECT_EQ(encode_args(0.1f, static_cast<UInt128>(big), -big),
            "[0.1,1267650600228229401496703205376,-1267650600228229401496703205376]");
  const std::map<int, std::string> ordered{{10, "z"}, {1, "x"}, {2, "y"}};
  const std::unordered_map<int, std::string> unordered{{10, "z"}, {2, "y"}, {1, "x"}};
  EXPECT_EQ(encode_args(ordered), R"([{"1":"x","2":"y","10":"z"}])");
  EXPECT_EQ(encode_args(unordered), encode_args(ordered));
}

// Keyword arguments: every vector the Python original computed with kwargs, from JSON text (the
// CLI's --args / --kwargs) and from typed C++ calls through encode_call (as cached(...).kwargs()
// builds keys).
TEST(Key, EveryKwargsVectorMatches) {
  const auto doc = boost::json::parse(read_file(TEMPEST_TEST_DATA "/key-vectors-kwargs.json"));
  ASSERT_EQ(doc.as_array().size(), 6u);
  for (const auto& v : doc.as_array()) {
    const auto& o = v.as_object();
    EXPECT_EQ(key_from_json_args(std::string(o.at("key_prefix").as_string()),
                                 std::string(o.at("name").as_string()),
                                 boost::json::serialize(o.at("args")),
                                 boost::json::serialize(o.at("kwargs"))),
              std::string(o.at("key").as_string()))
        << boost::json::serialize(v);
  }
  const auto key = [](std::string_view prefix, std::string_view name,
                      const std::pair<std::string, std::string>& call) {
    return make_key(prefix, name, call.first, call.second);
  };
  const std::vector<std::string> fresh{"fresh"};
  // list_orders(user_id, *, fresh=False): not passed, passed False, passed True.
  EXPECT_EQ(key("", "list_orders", encode_call(fresh, std::string("u-1"), std::optional<bool>())),
            "list_orders:6ff74ed3fcc49000382e95635e372e29");
  EXPECT_EQ(key("", "list_orders", encode_call(fresh, std::string("u-1"), std::optional(false))),
            "list_orders:2df40db3efc60d319deaae3cc2a02ded");
  EXPECT_EQ(key("orders:", "list_orders", encode_call(fresh, std::string("u-1"), true)),
            "orders:list_orders:9d2c5399516d8925ce22c7ea4afe8380");
  EXPECT_EQ(key("users:", "get_profile", encode_call({"user_id"}, 42)),
            "users:get_profile:52b15f6681352b05605f5a7cfea8cf5d");
  EXPECT_EQ(key("", "search", encode_call({"limit", "offset"}, std::string("q"), 10, 0)),
            "search:9fb7a6fb780c6e797d931ac09c9cff88");
  // report(x, *, b, a): sorted by name in the key, whatever the parameter order.
  const std::map<std::string, std::nullptr_t> a{{"k", nullptr}};
  EXPECT_EQ(
      key("r:", "report", encode_call({"b", "a"}, std::string("x"), std::vector<int>{1, 2}, a)),
      "r:report:c9f158801ede893274e74e20327a454a");
  EXPECT_THROW((void)key_from_json_args("", "f", "[]", R"({"a":1,"a":2})"), std::invalid_argument);
  EXPECT_THROW((void)key_from_json_args("", "f", "[]", "[1]"), std::invalid_argument);
}

// The registry sets' names are the Python SDK's (a C++ and a Python service invalidate each
// other's entries), and a pending set lives in its registry set's cluster slot (the move script
// touches both keys).
TEST(RegistryNames, NamespaceAndTagSetsAreThePythonSdks) {
  EXPECT_EQ(tempest::cache::namespace_set("", "users"), "__ns__:users");
  EXPECT_EQ(tempest::cache::namespace_set("app:", "users"), "app:__ns__:users");
  EXPECT_EQ(tempest::cache::tag_set("", "user:1"), "__tag__:user:1");
  EXPECT_EQ(tempest::cache::tag_set("app:", "user:1"), "app:__tag__:user:1");
}

TEST(RegistryNames, APendingSetIsInItsRegistrySetsSlot) {
  using tempest::cache::pending_set;
  using tempest::redis::detail::key_slot;
  // No braces: the whole set name becomes the hash tag.
  EXPECT_EQ(pending_set("__tag__:user:1"), "{__tag__:user:1}:pending");
  // A set with a hash tag of its own keeps it: appending ":pending" stays in its slot.
  EXPECT_EQ(pending_set("{app}:__tag__:x"), "{app}:__tag__:x:pending");
  for (std::string set : {"__ns__:users", "{app}:__tag__:x", "a{b}c", "p:__tag__:é"}) {
    const std::string p = pending_set(set);
    ASSERT_FALSE(p.empty()) << set;
    EXPECT_EQ(key_slot(p), key_slot(set)) << set;
  }
  // Braces that are not a hash tag ("{}" is empty) and hash to another slot with either form:
  // none (the invalidation then pops members instead of moving them).
  for (std::string set : {"x{}y", "{}:__tag__:t"}) {
    const std::string p = pending_set(set);
    if (!p.empty()) {
      EXPECT_EQ(key_slot(p), key_slot(set)) << set;
    }
  }
}
