// tempest::cache against a real redis-server each test starts for itself.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>

#include "support/fault_proxy.hpp"
#include "support/log_capture.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/cache/detail/manager_state.hpp"
#include "tempest/cache/invalidator.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
namespace tr = tempest::redis;
using namespace std::chrono_literals;
using tempest::test::Clock;
using tempest::test::LogCapture;
using tempest::test::ms_since;
using tempest::test::RedisServer;
using tempest::test::run;
using tempest::test::shell;
using tempest::test::sleep_for;

struct UserProfile {
  std::string id;
  std::string name;
};
BOOST_DESCRIBE_STRUCT(UserProfile, (), (id, name))

struct Order {
  std::string id;
  double total;
};
BOOST_DESCRIBE_STRUCT(Order, (), (id, total))

namespace {

class CacheTest : public ::testing::Test {
 protected:
  LogCapture logs{"tempest.cache"};
  RedisServer server;
  asio::io_context io;
  tc::RedisManager redis{io.get_executor(), server.url()};

  // The seed page's get_user_profile: a 20 ms "database read" that counts its calls.
  int profile_calls = 0;
  auto make_get_user_profile() {
    return tc::cached(redis, {.name = "get_user_profile", .ttl = 300s, .key_prefix = "users:"},
                      [this](std::string user_id) -> asio::awaitable<UserProfile> {
                        ++profile_calls;
                        co_await sleep_for(20ms);
                        UserProfile p{user_id, "Ana"};
                        co_return p;
                      });
  }

  // The seed page's list_orders(user_id, *, fresh=False): `fresh` a keyword argument.
  int orders_calls = 0;
  auto make_kwargs_list_orders() {
    return tc::cached(redis, {.name = "list_orders", .ttl = 60s},
                      [this](std::string user_id,
                             std::optional<bool>) -> asio::awaitable<std::vector<Order>> {
                        ++orders_calls;
                        co_return std::vector<Order>{{user_id + "-cpp", 1.5}};
                      })
        .kwargs({"fresh"});
  }
};

}  // namespace

TEST_F(CacheTest, GetUserProfileMissThenHitWithThePythonKey) {
  auto get_user_profile = make_get_user_profile();
  EXPECT_EQ(get_user_profile.key("123"), "users:get_user_profile:5f11deb66da1aa69390b0572cc7a6b39");
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    UserProfile first = co_await get_user_profile("123");
    UserProfile again = co_await get_user_profile("123");
    UserProfile other = co_await get_user_profile("456");
    EXPECT_EQ(first.name, "Ana");
    EXPECT_EQ(again.id, "123");
    EXPECT_EQ(other.id, "456");
    EXPECT_EQ(profile_calls, 2);
    const auto s = get_user_profile.stats();
    EXPECT_EQ(s.hits, 1u);
    EXPECT_EQ(s.misses, 2u);
    auto client = redis.client();
    auto stored = co_await client.get("users:get_user_profile:5f11deb66da1aa69390b0572cc7a6b39");
    EXPECT_EQ(stored.value_or(""), "{\"id\": \"123\", \"name\": \"Ana\"}");
    co_await redis.disconnect();
  });
}

TEST_F(CacheTest, ListOrdersBypassesTheCacheWhenFresh) {
  int calls = 0;
  auto list_orders =
      tc::cached(redis, {.name = "list_orders", .ttl = 60s},
                 [&calls](std::string user_id, bool fresh) -> asio::awaitable<std::vector<Order>> {
                   ++calls;
                   std::vector<Order> orders{{user_id + "-1", 9.5}, {user_id + "-2", 20.0}};
                   (void)fresh;
                   co_return orders;
                 })
          .skip_cache([](const std::string&, const bool& fresh) { return fresh; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto a = co_await list_orders("u-1", false);  // miss, stored
    auto b = co_await list_orders("u-1", false);  // hit
    EXPECT_EQ(calls, 1);
    auto c = co_await list_orders("u-1", true);  // bypass: runs, no read, no write
    auto d = co_await list_orders("u-1", true);
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(b.size(), 2u);
    EXPECT_DOUBLE_EQ(b[0].total, 9.5);
    auto client = redis.client();
    EXPECT_EQ(co_await client.exists(list_orders.key("u-1", true)), 0);
    EXPECT_EQ(co_await client.exists(list_orders.key("u-1", false)), 1);
    EXPECT_EQ(list_orders.key("u-1", false), "list_orders:b1326c2f3259d0a8eb06f4a08693002f");
    (void)a, (void)c, (void)d;
    co_await redis.disconnect();
  });
}

TEST_F(CacheTest, TtlDefaultAndNoExpiry) {
  auto five_min = tc::cached(redis, {.name = "ttl_default"},
                             [](int x) -> asio::awaitable<int> { co_return x; });
  auto forever = tc::cached(redis, {.name = "ttl_none", .ttl = tc::no_expiry},
                            [](int x) -> asio::awaitable<int> { co_return x; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    (void)co_await five_min(1);
    (void)co_await forever(1);
    auto client = redis.client();
    const auto ttl = co_await client.ttl(five_min.key(1));
    EXPECT_GT(ttl, 295);
    EXPECT_LE(ttl, 300);
    EXPECT_EQ(co_await client.ttl(forever.key(1)), -1);
    co_await redis.disconnect();
  });
}

TEST_F(CacheTest, InteropWithThePythonOriginal) {
  auto get_user_profile = make_get_user_profile();
  const std::string peer =
      std::string("/usr/bin/python3 ") + TEMPEST_SOURCE_DIR "/tests/interop/python_peer.py ";
  // Python writes an entry with its own key builder and json.dumps.
  const std::string py_key =
      shell(peer + "write " + server.url() +
            " get_user_profile users: '[\"7\"]' '{\"id\": \"7\", \"name\": \"Py\"}'");
  EXPECT_EQ(py_key, get_user_profile.key("7"));
  std::string cpp_key;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    UserProfile from_python = co_await get_user_profile("7");
    EXPECT_EQ(from_python.name, "Py");  // a hit: the function did not run
    EXPECT_EQ(profile_calls, 0);
    (void)co_await get_user_profile("8");  // written here
    cpp_key = get_user_profile.key("8");
    co_await redis.disconnect();
  });
  EXPECT_EQ(shell(peer + "read " + server.url() + " " + cpp_key),
            "{\"id\": \"8\", \"name\": \"Ana\"}");
}

// With no option that needs metadata, a stored value is byte for byte what the Python SDK's
// json.dumps stores for the same data: its separators, repr() floats (19.9 and 5.0, not 1.99E1
// and 5E0), ensure_ascii escapes.
TEST_F(CacheTest, StoredValuesAreByteIdenticalToPythons) {
  auto order = tc::cached(redis, {.name = "order"}, [](std::string id) -> asio::awaitable<Order> {
    co_return Order{id, id == "a" ? 19.9 : 5.0};
  });
  auto profile =
      tc::cached(redis, {.name = "profile"}, [](std::string id) -> asio::awaitable<UserProfile> {
        co_return UserProfile{id, "Zo\xc3\xab \"Q\"\n"};
      });
  std::vector<std::string> stored;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    (void)co_await order("a");
    (void)co_await order("b");
    (void)co_await profile("p");
    stored.push_back(*co_await c.get(order.key("a")));
    stored.push_back(*co_await c.get(order.key("b")));
    stored.push_back(*co_await c.get(profile.key("p")));
    co_await redis.disconnect();
  });
  const std::string python = shell(
      "/usr/bin/python3 -c 'import json; print(json.dumps({\"id\": \"a\", \"total\": 19.9})); "
      "print(json.dumps({\"id\": \"b\", \"total\": 5.0})); "
      "print(json.dumps({\"id\": \"p\", \"name\": \"Zo\\u00eb \\\"Q\\\"\\n\"}))'");
  EXPECT_EQ(stored[0] + "\n" + stored[1] + "\n" + stored[2], python);
  EXPECT_EQ(stored[0], R"({"id": "a", "total": 19.9})");
}

// The seed page's list_orders(user_id, *, fresh=False) in both languages: the C++ function
// declares `fresh` a keyword argument, so list_orders("u-1") and list_orders("u-1",
// fresh=False) each share their entry with Python, both ways.
TEST_F(CacheTest, KeywordArgumentsShareEntriesWithPython) {
  int& calls = orders_calls;
  auto list_orders = make_kwargs_list_orders();
  const std::string peer =
      std::string("/usr/bin/python3 ") + TEMPEST_SOURCE_DIR "/tests/interop/python_peer.py ";
  // Python's list_orders("u-1") and list_orders("u-2", fresh=False) stored these.
  EXPECT_EQ(shell(peer + "write " + server.url() +
                  " list_orders '' '[\"u-1\"]' '[{\"id\": \"py-1\", \"total\": 2.5}]'"),
            list_orders.key("u-1", std::nullopt));
  EXPECT_EQ(shell(peer + "write " + server.url() +
                  " list_orders '' '[\"u-2\"]' '[{\"id\": \"py-2\", \"total\": 3.5}]'"
                  " '{\"fresh\": false}'"),
            list_orders.key("u-2", false));
  EXPECT_NE(list_orders.key("u-1", std::nullopt), list_orders.key("u-1", false));
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ((co_await list_orders("u-1", std::nullopt)).front().id, "py-1");
    EXPECT_EQ((co_await list_orders("u-2", false)).front().id, "py-2");
    EXPECT_EQ(calls, 0);
    (void)co_await list_orders("u-3", std::nullopt);  // computed here, read by Python below
    EXPECT_EQ(calls, 1);
    co_await redis.disconnect();
  });
  EXPECT_EQ(shell(peer + "read " + server.url() + " " + list_orders.key("u-3", std::nullopt)),
            R"([{"id": "u-3-cpp", "total": 1.5}])");
}

// TTL jitter spreads the expiries of entries written together; cache_if keeps some results out;
// ttl_for gives a result's entry its own TTL (negative: not stored).
TEST_F(CacheTest, JitterConditionAndTtlFromTheResult) {
  auto jittered = tc::cached(redis, {.name = "j", .ttl = 100s, .ttl_jitter = 20s},
                             [](int x) -> asio::awaitable<int> { co_return x; });
  int calls = 0;
  auto conditional =
      tc::cached(redis, {.name = "c"}, [&calls](int x) -> asio::awaitable<std::vector<int>> {
        ++calls;
        co_return x == 0 ? std::vector<int>{} : std::vector<int>{x};
      }).cache_if([](const std::vector<int>& v) { return !v.empty(); });
  // ttl_for's TTL is exact: no jitter on it.
  auto timed =
      tc::cached(redis, {.name = "t", .ttl_jitter = 20s}, [](int x) -> asio::awaitable<int> {
        co_return x;
      }).ttl_for([](const int& x) { return std::chrono::seconds(x); });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    std::vector<long long> ttls;
    for (int i = 0; i < 1000; ++i) {
      (void)co_await jittered(i);
      ttls.push_back(co_await c.ttl(jittered.key(i)));
    }
    const auto [lo, hi] = std::minmax_element(ttls.begin(), ttls.end());
    std::set<long long> distinct(ttls.begin(), ttls.end());
    std::printf("ttl 100 s + jitter 20 s over 1000 entries: %lld..%lld s, %zu distinct values\n",
                *lo, *hi, distinct.size());
    EXPECT_GE(*lo, 99);
    EXPECT_LE(*hi, 120);
    EXPECT_GE(distinct.size(), 15u);  // spread over the 21 possible values
    (void)co_await conditional(0);
    (void)co_await conditional(0);
    EXPECT_EQ(calls, 2);  // an empty result is not stored
    (void)co_await conditional(1);
    (void)co_await conditional(1);
    EXPECT_EQ(calls, 3);
    (void)co_await timed(42);
    EXPECT_GE(co_await c.ttl(timed.key(42)), 40);
    EXPECT_LE(co_await c.ttl(timed.key(42)), 42);
    (void)co_await timed(-1);
    EXPECT_EQ(co_await c.exists(timed.key(-1)), 0);
    (void)co_await timed(0);
    EXPECT_EQ(co_await c.ttl(timed.key(0)), -1);  // no_expiry
    co_await redis.disconnect();
  });
}

// The same with the Python original's own @cached (the reference SDK's source, outside this
// repository: TEMPEST_PYTHON_SDK, or ../shared/reference/sdk beside the checkout; skipped when
// neither is there): list_orders(user_id, *, fresh=False) shares its entries both ways.
TEST_F(CacheTest, KeywordArgumentsShareEntriesWithThePythonSdksOwnCached) {
  const std::string sdk = tempest::test::python_sdk_dir();
  if (sdk.empty()) GTEST_SKIP() << "the Python SDK's source is not here (TEMPEST_PYTHON_SDK)";
  int& calls = orders_calls;
  auto list_orders = make_kwargs_list_orders();
  const std::string python = "/usr/bin/python3 " TEMPEST_SOURCE_DIR
                             "/tests/interop/python_sdk_orders.py '" +
                             sdk + "' " + server.url() + " ";
  // Python first: list_orders("p-1") and list_orders("p-2", fresh=False) ran there.
  EXPECT_EQ(shell(python + "p-1"), R"({"ran": true, "result": [{"id": "p-1-py", "total": 2.5}]})");
  EXPECT_EQ(shell(python + "p-2 fresh=false"),
            R"({"ran": true, "result": [{"id": "p-2-py", "total": 2.5}]})");
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ((co_await list_orders("p-1", std::nullopt)).front().id, "p-1-py");
    EXPECT_EQ((co_await list_orders("p-2", false)).front().id, "p-2-py");
    EXPECT_EQ(calls, 0);
    // C++ first: Python's calls are hits.
    (void)co_await list_orders("c-1", std::nullopt);
    (void)co_await list_orders("c-2", false);
    EXPECT_EQ(calls, 2);
    co_await redis.disconnect();
  });
  EXPECT_EQ(shell(python + "c-1"),
            R"({"ran": false, "result": [{"id": "c-1-cpp", "total": 1.5}]})");
  EXPECT_EQ(shell(python + "c-2 fresh=false"),
            R"({"ran": false, "result": [{"id": "c-2-cpp", "total": 1.5}]})");
}

TEST_F(CacheTest, TenKindsOfCorruptValueFallBackWarnAndOverwrite) {
  auto get_user_profile = make_get_user_profile();
  const std::vector<std::string> corrupt = {
      "not json",
      "{\"id\": \"1\", \"name\": ",                    // truncated
      "[\"1\", \"Ana\"]",                              // wrong shape
      "{\"id\": 1, \"name\": 2}",                      // wrong types
      std::string("\xff\xfe\x00\x01\x80garbage", 12),  // binary garbage
      "",                                              // empty
      "null",
      "{\"id\": \"1\"}",  // missing member
      "NaN",              // Python may write it; not JSON
      "{\"id\": \"1\", \"name\": \"x\"} trailing",
  };
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto client = redis.client();
    const std::string key = get_user_profile.key("1");
    int expected_calls = 0;
    for (std::size_t i = 0; i <= corrupt.size(); ++i) {
      if (i < corrupt.size()) {
        co_await client.set(key, corrupt[i]);
      } else {  // the eleventh: a key of another type (GET says WRONGTYPE)
        co_await client.del(key);
        co_await client.sadd(key, "member");
      }
      UserProfile p = co_await get_user_profile("1");
      ++expected_calls;
      EXPECT_EQ(p.name, "Ana") << i;
      EXPECT_EQ(profile_calls, expected_calls) << "case " << i << " did not fall back";
      auto now = co_await client.get(key);
      EXPECT_EQ(now.value_or(""), "{\"id\": \"1\", \"name\": \"Ana\"}")
          << "case " << i << " not overwritten";
      (void)co_await get_user_profile("1");  // and it is a hit again
      EXPECT_EQ(profile_calls, expected_calls) << i;
    }
    EXPECT_EQ(get_user_profile.stats().corrupt, corrupt.size() + 1);
    co_await redis.disconnect();
  });
  EXPECT_EQ(logs.count("cached_deserialization_failed"), 11u);
  EXPECT_GE(logs.count("users:get_user_profile:"), 11u);  // the warning names the key
}

TEST_F(CacheTest, RedisStoppedEveryCallAnswersWithinTheFunctionsTimePlusFiveMs) {
  std::vector<double> fn_ms;
  auto slow_square = tc::cached(redis, {.name = "square"}, [&fn_ms](int x) -> asio::awaitable<int> {
    const auto t = Clock::now();
    co_await sleep_for(1ms);
    fn_ms.push_back(ms_since(t));
    co_return x* x;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    server.stop();
    for (int i = 0; i < 300 && redis.is_up(); ++i)
      co_await sleep_for(10ms);
    EXPECT_FALSE(redis.is_up());
    double worst_overhead = 0;
    int wrong = 0;
    for (int i = 0; i < 1000; ++i) {
      const auto t = Clock::now();
      const int r = co_await slow_square(i);
      const double overhead = ms_since(t) - fn_ms.back();
      worst_overhead = std::max(worst_overhead, overhead);
      if (r != i * i) ++wrong;
    }
    EXPECT_EQ(wrong, 0);
    EXPECT_LE(worst_overhead, 5.0);
    std::printf("redis stopped: 1000 calls, worst overhead over the function %.3f ms\n",
                worst_overhead);
    EXPECT_EQ(slow_square.stats().errors, 1000u);
    co_await redis.disconnect();
  });
  EXPECT_GE(logs.count("Redis unavailable"), 1u);
  EXPECT_LE(logs.count("Redis unavailable"), 2u);  // rate-limited, not 1000 lines
}

TEST_F(CacheTest, RedisFrozenCostsAtMostTheCacheDeadlineThenHitsResume) {
  int calls = 0;
  auto twice = tc::cached(redis, {.name = "twice"}, [&calls](int x) -> asio::awaitable<int> {
    ++calls;
    co_await sleep_for(5ms);
    co_return 2 * x;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    (void)co_await twice(1);
    server.pause();
    double worst = 0;
    for (int i = 2; i < 22; ++i) {
      const auto t = Clock::now();
      EXPECT_EQ(co_await twice(i), 2 * i);
      worst = std::max(worst, ms_since(t));
    }
    std::printf("redis frozen: worst call %.1f ms (function 5 ms + deadline 100 ms)\n", worst);
    EXPECT_LE(worst, 5.0 + 100.0 + 20.0);
    server.resume();
    for (int i = 0; i < 300 && !redis.is_up(); ++i)
      co_await sleep_for(10ms);
    const int before = calls;
    EXPECT_EQ(co_await twice(100), 200);
    EXPECT_EQ(co_await twice(100), 200);
    EXPECT_EQ(calls, before + 1);  // the second was a hit
    co_await redis.disconnect();
  });
}

// The circuit breaker with Redis frozen (SIGSTOP; health checks far off, so the link still looks
// up): after `failures` calls that paid the cache deadline, calls skip Redis until the cool-down
// ends, then one probes. Without it every call pays the deadline.
TEST(CacheBreaker, RedisFrozenCallsStopPayingTheDeadline) {
  RedisServer server;
  asio::io_context io;
  tc::ManagerOptions o;
  o.breaker.enabled = true;
  o.breaker.failures = 5;
  o.breaker.cool_down = 500ms;
  tc::RedisManager redis(io.get_executor(), server.url("?health_interval=60s"), o);
  auto twice =
      tc::cached(redis, {.name = "twice"}, [](int x) -> asio::awaitable<int> { co_return 2 * x; });
  constexpr int kCalls = 10000;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    (void)co_await twice(1);
    server.pause();
    std::vector<double> ms;
    const auto start = Clock::now();
    for (int i = 0; i < kCalls; ++i) {
      const auto t = Clock::now();
      EXPECT_EQ(co_await twice(i), 2 * i);
      ms.push_back(ms_since(t));
      if (i % 10 == 0) co_await sleep_for(1ms);  // spread over a few cool-downs
    }
    const double elapsed = ms_since(start);
    server.resume();
    // A call that paid the deadline took 100 ms; a skipped one microseconds (a stalled thread
    // on a loaded machine may add a few ms, never 90).
    const auto paid = std::count_if(ms.begin(), ms.end(), [](double m) { return m >= 90; });
    std::sort(ms.begin(), ms.end());
    const double cool_downs = elapsed / 500.0;
    std::printf(
        "redis frozen, breaker 5 failures / 500 ms: %d calls in %.0f ms, %ld paid the 100 ms "
        "deadline (at most 5 + one probe per cool-down: %.0f), p99 %.3f ms, p50 %.3f ms\n",
        kCalls, elapsed, static_cast<long>(paid), 5 + cool_downs + 1, ms[ms.size() * 99 / 100],
        ms[ms.size() / 2]);
    EXPECT_LE(paid, 5 + static_cast<long>(cool_downs) + 1);
    EXPECT_GE(paid, 5);
    EXPECT_GT(twice.stats().breaker_skips, static_cast<std::uint64_t>(kCalls) - 100);
    // Redis back: the next probe closes the breaker and hits resume.
    bool hit = false;
    for (int i = 0; i < 200 && !hit; ++i) {
      const auto hits = twice.stats().hits;
      (void)co_await twice(1);
      hit = twice.stats().hits > hits;
      if (!hit) co_await sleep_for(10ms);
    }
    EXPECT_TRUE(hit);
    EXPECT_FALSE(redis.breaker()->open());
    co_await redis.disconnect();
  });
}

TEST(CacheBreaker, BadOptionsAreNamed) {
  asio::io_context io;
  tc::ManagerOptions o;
  o.breaker.enabled = true;
  o.breaker.failures = 0;
  try {
    tc::RedisManager m(io.get_executor(), "redis://127.0.0.1:1", o);
    ADD_FAILURE() << "accepted failures = 0";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("BreakerOptions"), std::string::npos) << e.what();
  }
}

TEST_F(CacheTest, ThousandConcurrentCallsOnAColdKeyRunTheFunctionOnce) {
  int calls = 0;
  auto slow = tc::cached(redis, {.name = "stampede"}, [&calls](int x) -> asio::awaitable<int> {
    ++calls;
    co_await sleep_for(50ms);
    co_return x + 1;
  });
  int right = 0;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    int running = 1000;
    asio::steady_timer done(io, Clock::time_point::max());
    for (int i = 0; i < 1000; ++i)
      asio::co_spawn(
          io, [&]() -> asio::awaitable<void> { right += (co_await slow(41)) == 42; },
          [&](std::exception_ptr) {
            if (--running == 0) done.cancel();
          });
    boost::system::error_code ec;
    co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_await redis.disconnect();
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(right, 1000);
  EXPECT_EQ(slow.stats().joins, 999u);
}

TEST_F(CacheTest, ExceptionsReachEverySharingCallerAndAreNotCached) {
  int calls = 0;
  auto failing = tc::cached(redis, {.name = "failing"}, [&calls](int) -> asio::awaitable<int> {
    ++calls;
    co_await sleep_for(20ms);
    throw std::runtime_error("boom");
  });
  int caught = 0;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    int running = 10;
    asio::steady_timer done(io, Clock::time_point::max());
    for (int i = 0; i < 10; ++i)
      asio::co_spawn(io, failing(1), [&](std::exception_ptr e, int) {
        try {
          if (e) std::rethrow_exception(e);
        } catch (const std::runtime_error& err) {
          caught += std::string(err.what()) == "boom";
        }
        if (--running == 0) done.cancel();
      });
    boost::system::error_code ec;
    co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_THROW(co_await failing(1), std::runtime_error);  // not cached: runs again
    auto client = redis.client();
    EXPECT_EQ(co_await client.exists(failing.key(1)), 0);
    co_await redis.disconnect();
  });
  EXPECT_EQ(caught, 10);
  EXPECT_EQ(calls, 2);
}

TEST_F(CacheTest, UnserializableResultIsReturnedUncached) {
  tc::FunctionCodec<int> codec{[](const int&) -> std::string { throw std::runtime_error("no"); },
                               [](std::string_view) -> int { return 0; }};
  int calls = 0;
  auto f = tc::cached(
      redis, {.name = "unserializable"},
      [&calls](int x) -> asio::awaitable<int> {
        ++calls;
        co_return x;
      },
      codec);
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await f(7), 7);
    EXPECT_EQ(co_await f(7), 7);
    co_await redis.disconnect();
  });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(f.stats().unserializable, 2u);
  EXPECT_EQ(logs.count("cached_serialization_failed"), 2u);
}

TEST_F(CacheTest, RawStringCodecStoresBytesAsIs) {
  auto page = tc::cached(
      redis, {.name = "page"},
      [](std::string path) -> asio::awaitable<std::string> {
        co_return "<html>" + path + "</html>";
      },
      tc::RawCodec{});
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await page("/a"), "<html>/a</html>");
    auto client = redis.client();
    EXPECT_EQ((co_await client.get(page.key("/a"))).value_or(""), "<html>/a</html>");
    co_await redis.disconnect();
  });
}

TEST_F(CacheTest, PropagateOptionThrowsTheRedisError) {
  auto f = tc::cached(redis, {.name = "strict", .on_redis_error = tc::OnRedisError::propagate},
                      [](int x) -> asio::awaitable<int> { co_return x; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    server.stop();
    for (int i = 0; i < 300 && redis.is_up(); ++i)
      co_await sleep_for(10ms);
    EXPECT_THROW(co_await f(1), tr::ConnectionError);
    co_await redis.disconnect();
  });
}

TEST_F(CacheTest, DistributedLockTwoProcessesComputeOnceInAll) {
  const auto start_at = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch() + 700ms)
                            .count();
  const std::string cmd =
      std::string(TEMPEST_LOCK_PEER) + " " + server.url() + " 50 " + std::to_string(start_at);
  std::string out1, out2;
  std::thread a([&] { out1 = shell(cmd); });
  std::thread b([&] { out2 = shell(cmd); });
  a.join();
  b.join();
  EXPECT_EQ(out1.substr(0, 8), "50/50 ok") << out1;
  EXPECT_EQ(out2.substr(0, 8), "50/50 ok") << out2;
  EXPECT_EQ(server.cli("GET lock_peer:runs"), "1\n") << out1 << " | " << out2;
  // The lock was contended: exactly one process waited for the other's value.
  const auto waits = [](const std::string& out) {
    return out.substr(out.find("lock waits ") + 11);
  };
  EXPECT_EQ(std::stoi(waits(out1)) + std::stoi(waits(out2)), 1) << out1 << " | " << out2;
}

TEST_F(CacheTest, InvalidationByNamespaceTagTagsKeysWithExactCounts) {
  auto profile =
      tc::cached(redis,
                 {.name = "profile", .key_prefix = "app:", .ns = "users", .tags = {"profiles"}},
                 [](int id) -> asio::awaitable<int> { co_return id; })
          .tags(
              [](const int& id) { return std::vector<std::string>{"user:" + std::to_string(id)}; });
  tc::CacheInvalidator inv(redis, "app:");
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto client = redis.client();
    for (int id = 1; id <= 5; ++id)
      (void)co_await profile(id);
    // Registry sets exactly as the Python SDK writes them.
    auto members = co_await client.smembers("app:__ns__:users");
    EXPECT_EQ(members.size(), 5u);
    EXPECT_GT(co_await client.ttl("app:__tag__:user:1"), 295);
    EXPECT_EQ(co_await inv.invalidate_tag("user:1"), 1u);
    EXPECT_EQ(co_await client.exists(profile.key(1)), 0);
    EXPECT_EQ(co_await client.exists(profile.key(2)), 1);
    const std::vector<std::string> two_three = {"user:2", "user:3"};
    EXPECT_EQ(co_await inv.invalidate_tags(two_three), 2u);
    const std::vector<std::string> keys = {profile.key(4), "app:missing"};
    EXPECT_EQ(co_await inv.invalidate_keys(keys), 1u);
    // The namespace set still lists all five keys (as in the Python SDK, counts are of
    // registered keys); only key 5 was still there.
    EXPECT_EQ(co_await inv.invalidate_namespace("users"), 5u);
    EXPECT_EQ(co_await client.exists(profile.key(5)), 0);
    EXPECT_EQ(co_await client.exists("app:__ns__:users"), 0);
    EXPECT_EQ(co_await inv.invalidate_tag("nothing"), 0u);
    co_await redis.disconnect();
  });
}

// A registry set never expires before an entry it indexes: a longer-lived entry extends it, a
// shorter-lived one does not shorten it, an entry without expiry makes it persistent (the Python
// SDK's SADD + EXPIRE shortened it: the long-lived entry then escaped invalidate_tag).
TEST_F(CacheTest, ARegistrySetOutlivesEveryEntryItIndexes) {
  auto long_lived = tc::cached(redis, {.name = "long", .ttl = 3600s, .tags = {"t"}},
                               [](int id) -> asio::awaitable<int> { co_return id; });
  auto short_lived = tc::cached(redis, {.name = "short", .ttl = 60s, .tags = {"t"}},
                                [](int id) -> asio::awaitable<int> { co_return id; });
  auto forever = tc::cached(redis, {.name = "forever", .ttl = tc::no_expiry, .tags = {"u"}},
                            [](int id) -> asio::awaitable<int> { co_return id; });
  auto brief = tc::cached(redis, {.name = "brief", .ttl = 60s, .tags = {"u"}},
                          [](int id) -> asio::awaitable<int> { co_return id; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto client = redis.client();
    (void)co_await short_lived(1);
    const long long first = co_await client.ttl("__tag__:t");
    EXPECT_GT(first, 0);  // a new set: the entry's TTL
    EXPECT_LE(first, 60);
    (void)co_await long_lived(1);
    EXPECT_GT(co_await client.ttl("__tag__:t"), 3500);  // extended
    (void)co_await short_lived(2);
    EXPECT_GT(co_await client.ttl("__tag__:t"), 3500);  // not shortened
    (void)co_await forever(1);
    EXPECT_EQ(co_await client.ttl("__tag__:u"), -1);  // no expiry, as its entry
    (void)co_await brief(1);
    EXPECT_EQ(co_await client.ttl("__tag__:u"), -1);  // still none
    co_await redis.disconnect();
  });
}

// A tags builder that throws: the result is returned uncached and the distributed lock is
// released (it used to stay until its own expiry, holding back every other process).
TEST_F(CacheTest, ATagsBuilderThatThrowsStillReleasesTheLock) {
  tc::CachedOptions o{.name = "tagged", .lock = {.enabled = true}};
  auto fn = tc::cached(redis, o, [](int id) -> asio::awaitable<int> {
              co_return id * 2;
            }).tags([](const int&) -> std::vector<std::string> {
    throw std::runtime_error("no tags today");
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await fn(21), 42);
    auto client = redis.client();
    EXPECT_EQ(co_await client.exists(fn.key(21) + ":lock"), 0);
    EXPECT_EQ(co_await client.exists(fn.key(21)), 0);  // not stored outside its registry sets
    EXPECT_EQ(fn.stats().unserializable, 1u);
    co_await redis.disconnect();
  });
  EXPECT_EQ(logs.count("callback threw: no tags today"), 1u);
}

// An entry registered while invalidate_tag runs is never lost from its set: it is invalidated
// too, or stays registered. The invalidator's replies are held back by the fault proxy while
// another process registers a new entry (with SMEMBERS then DEL of the set, the new member went
// with the set and its entry escaped every later invalidation).
TEST(CacheInvalidation, AnEntryRegisteredDuringInvalidateTagIsNeverLost) {
  RedisServer server;
  tempest::test::FaultProxy proxy(server.port());
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), proxy.url());
  tc::RedisManager other(io.get_executor(), server.url());
  tc::CacheInvalidator inv(redis, "");
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    co_await other.connect();
    auto c = other.client();
    for (int i = 0; i < 5; ++i) {
      (void)co_await c.set("entry:" + std::to_string(i), "v");
      (void)co_await c.command(tr::cmd("SADD", "__tag__:t", "entry:" + std::to_string(i)));
    }
    proxy.set_mode(tempest::test::FaultProxy::Mode::delay_replies, 300ms);
    std::optional<std::size_t> removed;
    bool ended = false;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { removed = co_await inv.invalidate_tag("t"); },
        [&](std::exception_ptr e) {
          ended = true;
          if (e) ADD_FAILURE() << "invalidate_tag threw";
        });
    // The invalidator has read the set (its reply is on its way back) when another process
    // registers a new entry.
    for (int i = 0; i < 250; ++i) {
      const std::string list =
          shell("redis-cli -p " + std::to_string(server.port()) + " CLIENT LIST TYPE normal");
      if (list.find("cmd=smembers") != std::string::npos ||
          list.find("cmd=spop") != std::string::npos || list.find("cmd=eval") != std::string::npos)
        break;
      co_await sleep_for(1ms);
    }
    (void)co_await c.set("entry:new", "v");
    (void)co_await c.command(tr::cmd("SADD", "__tag__:t", "entry:new"));
    for (int i = 0; i < 2000 && !ended; ++i)
      co_await sleep_for(5ms);
    CO_ASSERT_TRUE(removed.has_value());
    proxy.set_mode(tempest::test::FaultProxy::Mode::pass);
    const bool entry_left = co_await c.exists("entry:new") == 1;
    const bool registered =
        (co_await c.command(tr::cmd("SISMEMBER", "__tag__:t", "entry:new"))).integer() == 1;
    EXPECT_TRUE(!entry_left || registered) << "entry:new exists but is in no registry set";
    for (int i = 0; i < 5; ++i)
      EXPECT_EQ(co_await c.exists("entry:" + std::to_string(i)), 0);
    co_await redis.disconnect();
    co_await other.disconnect();
  });
}

// The reply of the command that takes the registrations out of their set is lost after Redis
// ran it (the fault proxy cuts the connection on it): the invalidation fails, and the next one
// still finds and removes every entry. (With SPOP the members were gone with the reply, and
// their entries escaped every later invalidation.)
TEST(CacheInvalidation, ARegistrationTakenOutByAnInvalidationWhoseReplyIsLostIsNotLost) {
  RedisServer server;
  tempest::test::FaultProxy proxy(server.port());
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), proxy.url());
  tc::RedisManager other(io.get_executor(), server.url());
  tc::CacheInvalidator inv(redis, "");
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    co_await other.connect();
    auto c = other.client();
    for (int i = 0; i < 5; ++i) {
      (void)co_await c.set("entry:" + std::to_string(i), "v");
      (void)co_await c.command(tr::cmd("SADD", "__tag__:t", "entry:" + std::to_string(i)));
    }
    proxy.set_mode_of_marked("SPOP", tempest::test::FaultProxy::Mode::reset_mid_reply);
    bool failed = false;
    try {
      (void)co_await inv.invalidate_tag("t");
    } catch (const tr::Error&) {
      failed = true;
    }
    proxy.set_mode_of_marked("", tempest::test::FaultProxy::Mode::pass);
    if (!failed) {
      ADD_FAILURE() << "the reply was not cut: nothing was tested";
      co_return;
    }
    // Redis did run it: the members are out of the registry set.
    EXPECT_EQ((co_await c.command(tr::cmd("SCARD", "__tag__:t"))).integer(), 0);
    const std::size_t removed = co_await inv.invalidate_tag("t");
    EXPECT_EQ(removed, 5u);
    for (int i = 0; i < 5; ++i)
      EXPECT_EQ(co_await c.exists("entry:" + std::to_string(i)), 0) << "entry:" << i;
    co_await redis.disconnect();
    co_await other.disconnect();
  });
}

// An entry that a store of this process may have left without its registrations (its
// registration failed and Redis could not be reached to take it out again) is unlinked by the
// next invalidation of its sets here, before that one returns.
TEST(CacheInvalidation, ADoubtfulEntryIsUnlinkedByTheNextInvalidationOfItsSets) {
  RedisServer server;
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), server.url());
  tc::CacheInvalidator inv(redis, "p:");
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    (void)co_await c.set("p:entry", "v");  // in no registry set
    (void)co_await c.set("p:other", "v");
    const auto state = redis.state();
    state->doubtful.add("p:entry", {"p:__tag__:t"},
                        tc::detail::DoubtfulEntries::Clock::now() + 60s);
    state->doubtful.add("p:other", {"p:__tag__:u"},
                        tc::detail::DoubtfulEntries::Clock::now() + 60s);
    EXPECT_EQ(co_await inv.invalidate_tag("t"), 1u);
    EXPECT_EQ(co_await c.exists("p:entry"), 0);
    EXPECT_FALSE(state->doubtful.contains("p:entry"));
    // Another set's doubtful entry is left to its own invalidation.
    EXPECT_EQ(co_await c.exists("p:other"), 1);
    EXPECT_TRUE(state->doubtful.contains("p:other"));
    co_await redis.disconnect();
  });
}

TEST_F(CacheTest, PrefixInvalidationOverHundredThousandKeysIsExactAndNonBlocking) {
  tc::CacheInvalidator inv(redis);
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto client = redis.client();
    for (int base = 0; base < 100'000; base += 10'000) {
      tr::Pipeline fill;
      for (int i = base; i < base + 10'000; ++i)
        fill.add("SET", "bulk:" + std::to_string(i), "x");
      co_await client.exec(fill, {.timeout = 30s});
    }
    tr::Pipeline others;
    for (int i = 0; i < 1000; ++i)
      others.add("SET", "bulkier" + std::to_string(i), "x");
    others.add("SET", "we*ird:1", "x").add("SET", "weXird:1", "x");
    co_await client.exec(others, {.timeout = 30s});
    // A second client measures how long Redis keeps others waiting meanwhile.
    tr::Client probe(io.get_executor(), server.url());
    co_await probe.connect();
    bool stop = false;
    double worst_ping = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          while (!stop) {
            const auto t = Clock::now();
            (void)co_await probe.ping({.timeout = 5s});
            worst_ping = std::max(worst_ping, ms_since(t));
            co_await sleep_for(2ms);
          }
        },
        asio::detached);
    const auto t = Clock::now();
    const auto removed = co_await inv.invalidate_prefix("bulk:");
    const double took = ms_since(t);
    stop = true;
    EXPECT_EQ(removed, 100'000u);
    EXPECT_EQ((co_await client.command(tr::cmd("DBSIZE"))).integer(), 1002);
    EXPECT_EQ(co_await inv.invalidate_prefix("we*ird:"), 1u);  // '*' matches only itself
    EXPECT_EQ(co_await client.exists("weXird:1"), 1);
    std::printf("prefix invalidation: 100000 keys in %.0f ms, worst concurrent PING %.1f ms\n",
                took, worst_ping);
    EXPECT_LT(worst_ping, 250.0);
    co_await sleep_for(10ms);
    co_await probe.disconnect();
    co_await redis.disconnect();
  });
}

TEST(RedisManager, ClientBeforeConnectIsAClearError) {
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), "redis://127.0.0.1:1");
  try {
    (void)redis.client();
    FAIL() << "no error";
  } catch (const tc::NotConnectedError& e) {
    EXPECT_STREQ(e.what(), "RedisManager::connect() must be called before accessing the client.");
  }
  EXPECT_FALSE(redis.client_dependency());
  EXPECT_THROW(tc::RedisManager(io.get_executor(), "redis://h:port"), tr::ConfigError);
}

TEST(RedisManager, UnreachableRedisStartsAnywayOrThrowsWhenRequired) {
  LogCapture logs("tempest.cache");
  const auto port = tempest::test::free_port();
  const std::string url =
      "redis://:s3cr3t@127.0.0.1:" + std::to_string(port) + "?connect_timeout=200ms";
  asio::io_context io;
  tc::RedisManager lenient(io.get_executor(), url);
  tc::ManagerOptions strict_options;
  strict_options.require_connection = true;
  tc::RedisManager strict(io.get_executor(), url, strict_options);
  run(io, [&]() -> asio::awaitable<void> {
    co_await lenient.connect();  // returns, with a warning
    EXPECT_TRUE(lenient.client_dependency().has_value());
    EXPECT_FALSE(co_await lenient.health_check());
    try {
      co_await strict.connect();
      ADD_FAILURE() << "strict connect returned";
    } catch (const tr::ConnectionError& e) {
      EXPECT_EQ(std::string(e.what()).find("s3cr3t"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("unreachable"), std::string::npos) << e.what();
    }
    // Redis comes up: the same manager becomes healthy by itself.
    RedisServer server({}, port);
    server.cli("CONFIG SET requirepass s3cr3t");
    for (int i = 0; i < 300 && !lenient.is_up(); ++i)
      co_await sleep_for(10ms);
    EXPECT_TRUE(co_await lenient.health_check());
    co_await lenient.disconnect();
    co_await lenient.disconnect();  // idempotent
    EXPECT_THROW((void)lenient.client(), tc::NotConnectedError);
    co_await strict.disconnect();
  });
  EXPECT_GE(logs.count("unreachable"), 1u);
  for (const auto& line : logs.lines())
    EXPECT_EQ(line.find("s3cr3t"), std::string::npos) << line;
}

TEST(RedisManager, HealthCheckIsBoundedWhenRedisIsFrozen) {
  RedisServer server;
  asio::io_context io;
  tc::ManagerOptions options;
  options.health_timeout = 300ms;
  tc::RedisManager redis(io.get_executor(), server.url(), options);
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_TRUE(co_await redis.health_check());
    server.pause();
    const auto t = Clock::now();
    EXPECT_FALSE(co_await redis.health_check());
    EXPECT_LE(ms_since(t), 300.0 + 150.0);
    server.resume();
    co_await redis.disconnect();
  });
}

// A health check still waiting on a frozen Redis when its manager is destroyed ends on its own
// (false), touching nothing of the manager that is gone (AddressSanitizer checks).
TEST(RedisManager, AHealthCheckOutlivesItsManager) {
  RedisServer server;
  asio::io_context io;
  tc::ManagerOptions options;
  options.health_timeout = 300ms;
  auto redis = std::make_unique<tc::RedisManager>(io.get_executor(), server.url(), options);
  run(io, [&]() -> asio::awaitable<void> { co_await redis->connect(); });
  server.pause();
  std::optional<bool> healthy;
  asio::co_spawn(io, redis->health_check(), [&](std::exception_ptr, bool ok) { healthy = ok; });
  io.restart();
  io.run_for(50ms);  // the check waits for its PING
  EXPECT_FALSE(healthy.has_value());
  redis.reset();
  io.run_for(1s);
  server.resume();
  ASSERT_TRUE(healthy.has_value());
  EXPECT_FALSE(*healthy);
}

TEST(CachedOptions, NameIsRequiredAndTtlMustNotBeNegative) {
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), "redis://127.0.0.1:1");
  auto fn = [](int x) -> asio::awaitable<int> { co_return x; };
  try {
    (void)tc::cached(redis, {.name = ""}, fn);
    FAIL() << "no error for an empty name";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("name is required"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)tc::cached(redis, {.name = "f", .ttl = std::chrono::seconds(-1)}, fn),
               std::invalid_argument);
}
