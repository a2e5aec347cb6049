// The near cache (L1) and the client tracking under it, against a real redis-server each test
// starts: values served from memory stay coherent with writes from other connections and other
// processes (C++ and Python), through lost connections and a restart.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "support/fault_proxy.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/cache/detail/near_store.hpp"
#include "tempest/cache/invalidator.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
namespace tr = tempest::redis;
using namespace std::chrono_literals;
using tempest::test::Clock;
using tempest::test::FaultProxy;
using tempest::test::RedisServer;
using tempest::test::run;
using tempest::test::shell;
using tempest::test::sleep_for;

struct Item {
  std::string id;
  std::string v;
};
BOOST_DESCRIBE_STRUCT(Item, (), (id, v))

namespace {

tc::ManagerOptions near_on() {
  tc::ManagerOptions o;
  o.near.enabled = true;
  return o;
}

// Waits until `done()` holds, for at most `limit`; returns whether it did.
template <class F>
asio::awaitable<bool> eventually(F done, std::chrono::milliseconds limit = 5000ms) {
  const auto until = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > until) co_return false;
    co_await sleep_for(1ms);
  }
  co_return true;
}

std::string json(const std::string& id, const std::string& v) {
  return "{\"id\":\"" + id + "\",\"v\":\"" + v + "\"}";
}

asio::awaitable<std::string> computed_value(int) {
  co_return std::string("computed");
}

class NearCacheTest : public ::testing::Test {
 protected:
  explicit NearCacheTest(std::vector<std::string> extra = {}) : server(std::move(extra)) {}

  RedisServer server;
  asio::io_context io;
  std::string url = server.url("?reconnect_min=5ms&reconnect_max=50ms");
  tc::RedisManager redis{io.get_executor(), url, near_on()};
  tr::Client writer{io.get_executor(), server.url()};
  int computed = 0;
  using ItemFn = std::function<asio::awaitable<Item>(std::string)>;
  tc::Cached<ItemFn, tc::JsonCodec<Item>, Item, std::tuple<std::string>> get_item =
      tc::cached(redis, tc::CachedOptions{.name = "get_item", .ttl = 300s},
                 ItemFn([this](std::string id) -> asio::awaitable<Item> {
                   ++computed;
                   co_return Item{id, "computed"};
                 }));

  tc::NearCacheStats near() const { return redis.near_stats(); }

  asio::awaitable<void> start() {
    co_await redis.connect();
    co_await writer.connect();
    EXPECT_TRUE(co_await eventually([&] { return near().tracked; }));
  }

  // Calls get_item(id) until `expected` is served from memory (an invalidation of an older value
  // may still be on its way); returns what came.
  asio::awaitable<std::string> warm(const std::string& id, const std::string& expected) {
    std::string got;
    for (int i = 0; i < 200; ++i) {
      const auto before = get_item.stats().near_hits;
      got = (co_await get_item(id)).v;
      if (get_item.stats().near_hits > before && got == expected) co_return got;
      co_await sleep_for(1ms);
    }
    ADD_FAILURE() << "get_item(" << id << ") never served " << expected
                  << " from the near cache (last: " << got << ")";
    co_return got;
  }

  // After a break in tracking (resets counted before it): the near cache was reset, and every
  // connection tracks again.
  asio::awaitable<void> expect_reset_and_rearmed(std::uint64_t resets) {
    EXPECT_TRUE(co_await eventually([&] { return near().resets > resets; }));
    EXPECT_TRUE(co_await eventually([&] { return near().tracked; }));
  }

  // "a" was set to w2 during or after the break: it is read (never the old w1), cached again,
  // and the next write (w3) reaches the near cache.
  asio::awaitable<void> expect_coherent_again() {
    const std::string key = get_item.key("a");
    EXPECT_EQ((co_await get_item("a")).v, "w2");
    EXPECT_EQ(co_await warm("a", "w2"), "w2");
    const auto invalidations = near().invalidations;
    (void)co_await writer.set(key, json("a", "w3"));
    EXPECT_TRUE(co_await eventually([&] { return near().invalidations > invalidations; }));
    EXPECT_EQ((co_await get_item("a")).v, "w3");
  }
};

TEST_F(NearCacheTest, HitsComeFromMemoryAndEveryKindOfWriteInvalidatesThem) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await start();
    const std::string key = get_item.key("a");
    (void)co_await writer.set(key, json("a", "w1"));
    EXPECT_EQ(co_await warm("a", "w1"), "w1");
    EXPECT_EQ(near().entries, 1u);

    // Each write by another connection: the entry goes when its invalidation arrives, and the
    // next call reads what Redis holds.
    struct Case {
      const char* what;
      std::string before;
      tr::Command write;
      std::string expect;
    };
    std::vector<Case> cases;
    cases.push_back({"SET", "w1", tr::cmd("SET", key, json("a", "w2")), "w2"});
    cases.push_back({"DEL", "old", tr::cmd("DEL", key), "computed"});
    cases.push_back({"UNLINK", "old", tr::cmd("UNLINK", key), "computed"});
    cases.push_back({"EXPIRE", "w3", tr::cmd("PEXPIRE", key, 2000), "w3"});
    for (auto& c : cases) {
      (void)co_await writer.set(key, json("a", c.before));
      EXPECT_EQ(co_await warm("a", c.before), c.before) << c.what;
      const auto invalidations = near().invalidations;
      (void)co_await writer.command(c.write);
      EXPECT_TRUE(co_await eventually([&] { return near().invalidations > invalidations; }))
          << c.what;
      const int computed_before = computed;
      EXPECT_EQ((co_await get_item("a")).v, c.expect) << c.what;
      EXPECT_EQ(computed - computed_before, c.expect == "computed" ? 1 : 0) << c.what;
    }
    // PEXPIRE 2000: the entry read after it expires with the Redis entry, not later.
    EXPECT_EQ(co_await warm("a", "w3"), "w3");
    co_await sleep_for(2300ms);
    const int computed_before = computed;
    EXPECT_EQ((co_await get_item("a")).v, "computed");
    EXPECT_EQ(computed, computed_before + 1);

    // FLUSHDB: a null invalidation empties the near cache.
    (void)co_await writer.set(get_item.key("b"), json("b", "w1"));
    EXPECT_EQ(co_await warm("b", "w1"), "w1");
    const auto flushes = near().flushes;
    (void)co_await writer.command(tr::cmd("FLUSHDB"));
    EXPECT_TRUE(co_await eventually([&] { return near().flushes > flushes; }));
    EXPECT_EQ(near().entries, 0u);
    EXPECT_EQ((co_await get_item("b")).v, "computed");
    EXPECT_TRUE(near().tracked);
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

class NearCacheEvictionTest : public NearCacheTest {
 protected:
  NearCacheEvictionTest()
      : NearCacheTest({"--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"}) {}
};

TEST_F(NearCacheEvictionTest, AKeyEvictedUnderMaxmemoryLeavesTheNearCache) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await start();
    const std::string key = get_item.key("a");
    (void)co_await writer.set(key, json("a", "w1"));
    EXPECT_EQ(co_await warm("a", "w1"), "w1");
    const auto invalidations = near().invalidations;
    // Fill Redis past maxmemory until the least recently used key, ours, is evicted.
    const std::string filler(16 * 1024, 'x');
    for (int i = 0; i < 5000; ++i) {
      (void)co_await writer.set("filler:" + std::to_string(i), filler);
      if (i % 50 == 49 && (co_await writer.command(tr::cmd("EXISTS", key))).integer() == 0) break;
    }
    CO_ASSERT_EQ((co_await writer.command(tr::cmd("EXISTS", key))).integer(), 0);
    EXPECT_TRUE(co_await eventually([&] { return near().invalidations > invalidations; }));
    const int before = computed;
    EXPECT_EQ((co_await get_item("a")).v, "computed");
    EXPECT_EQ(computed, before + 1);
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

// What must hold after tracking broke: L1 was emptied, it is used again only once every
// connection tracks, and a write made during the break is never served stale afterwards.
TEST_F(NearCacheTest, KillingTheInvalidationConnectionClearsAndRearms) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await start();
    const std::string key = get_item.key("a");
    (void)co_await writer.set(key, json("a", "w1"));
    EXPECT_EQ(co_await warm("a", "w1"), "w1");
    const auto resets = near().resets;
    EXPECT_EQ((co_await writer.command(tr::cmd("CLIENT", "KILL", "TYPE", "pubsub"))).integer(), 1);
    (void)co_await writer.set(key, json("a", "w2"));  // its invalidation has nowhere to go
    co_await expect_reset_and_rearmed(resets);
    co_await expect_coherent_again();  // the new invalidation connection hears the next write
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

TEST_F(NearCacheTest, KillingTheDataConnectionClearsAndRearms) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await start();
    const std::string key = get_item.key("a");
    (void)co_await writer.set(key, json("a", "w1"));
    EXPECT_EQ(co_await warm("a", "w1"), "w1");
    const auto resets = near().resets;
    // Every normal connection but the writer's: the reader's data connection.
    EXPECT_EQ(
        (co_await writer.command(tr::cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")))
            .integer(),
        1);
    (void)co_await writer.set(key, json("a", "w2"));  // the killed client tracked the key
    co_await expect_reset_and_rearmed(resets);
    co_await expect_coherent_again();
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

TEST_F(NearCacheTest, ARedisRestartClearsAndRearms) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await start();
    const std::string key = get_item.key("a");
    (void)co_await writer.set(key, json("a", "w1"));
    EXPECT_EQ(co_await warm("a", "w1"), "w1");
    const auto resets = near().resets;
    server.stop();
    server.start();
    co_await expect_reset_and_rearmed(resets);
    EXPECT_TRUE(co_await writer.wait_connected(5000ms));
    (void)co_await writer.set(key, json("a", "w2"));
    co_await expect_coherent_again();
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

// The read race, made deterministic by the fault proxy: only the data connection's replies are
// held back, so a write lands after Redis ran the GET and before its reply arrives, and the
// write's invalidation (on the other connection) arrives first; then the reply is let through. The
// old value goes to that caller (it was current when read) but never into the near cache.
TEST(NearCache, AWriteBetweenTheReadAndItsReplyLeavesNoStaleEntry) {
  RedisServer server;
  FaultProxy proxy(server.port());
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), proxy.url(), near_on());
  tr::Client writer(io.get_executor(), server.url());
  auto get_item = tc::cached(redis, tc::CachedOptions{.name = "get_item", .deadline = 20000ms},
                             [](std::string id) -> asio::awaitable<Item> {
                               co_return Item{id, "computed"};
                             });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    co_await writer.connect();
    EXPECT_TRUE(co_await eventually([&] { return redis.near_stats().tracked; }));
    const std::string key = get_item.key("a");
    (void)co_await writer.set(key, json("a", "w1"));
    // The data connection's replies are held back until released below.
    proxy.set_mode_of_marked("TRACKING", FaultProxy::Mode::delay_replies, 3600s);
    const auto before = redis.near_stats();
    std::optional<Item> first;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { first = co_await get_item("a"); }, asio::detached);
    // Redis ran the read (GET then PTTL) when the reader's connection last ran PTTL.
    EXPECT_TRUE(co_await eventually(
        [&] {
          return shell("redis-cli -p " + std::to_string(server.port()) +
                       " CLIENT LIST TYPE normal | grep -c 'cmd=pttl'") == "1";
        },
        5000ms));
    (void)co_await writer.set(key, json("a", "w2"));
    // Its invalidation arrives (on the other connection) before the read's reply.
    EXPECT_TRUE(co_await eventually(
        [&] { return redis.near_stats().invalidations > before.invalidations; }, 5000ms));
    EXPECT_FALSE(first.has_value());  // its reply is still held back
    proxy.set_mode_of_marked("TRACKING", FaultProxy::Mode::pass);
    EXPECT_TRUE(co_await eventually([&] { return first.has_value(); }, 5000ms));
    CO_ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->v, "w1");
    const auto after = redis.near_stats();
    EXPECT_EQ(after.stale_drops, before.stale_drops + 1);
    EXPECT_EQ(after.entries, 0u);
    proxy.set_mode_of_marked("", FaultProxy::Mode::pass);
    EXPECT_EQ((co_await get_item("a")).v, "w2");
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

// Two services on one Redis, each with its own near cache (connections of their own, as two
// processes would have): what one invalidates through its CacheInvalidator, or stores after a
// miss, reaches the other's near cache with no code of the user's.
TEST(NearCache, OneServicesWritesReachAnothersNearCache) {
  RedisServer server;
  asio::io_context io;
  tc::RedisManager a(io.get_executor(), server.url(), near_on());
  tc::RedisManager b(io.get_executor(), server.url(), near_on());
  int version = 1;
  const auto fn = [&version](std::string id) -> asio::awaitable<Item> {
    co_return Item{id, "v" + std::to_string(version)};
  };
  auto on_a = tc::cached(a, tc::CachedOptions{.name = "item", .tags = {"items"}}, fn);
  auto on_b = tc::cached(b, tc::CachedOptions{.name = "item", .tags = {"items"}}, fn);
  tc::CacheInvalidator invalidator_b(b, "");
  const auto near_hit = [](auto& f, const std::string& id) -> asio::awaitable<std::string> {
    for (int i = 0; i < 200; ++i) {
      const auto before = f.stats().near_hits;
      const Item got = co_await f(id);
      std::string v = got.v;
      if (f.stats().near_hits > before) co_return v;
      co_await sleep_for(1ms);
    }
    co_return std::string("never from the near cache");
  };
  run(io, [&]() -> asio::awaitable<void> {
    co_await a.connect();
    co_await b.connect();
    EXPECT_TRUE(
        co_await eventually([&] { return a.near_stats().tracked && b.near_stats().tracked; }));
    EXPECT_EQ(co_await near_hit(on_a, "1"), "v1");  // A computed and stored v1
    EXPECT_EQ(co_await near_hit(on_b, "1"), "v1");  // B read it from Redis
    // B invalidates by tag: A's near cache hears it and A computes again.
    version = 2;
    const auto invalidations = a.near_stats().invalidations;
    EXPECT_EQ(co_await invalidator_b.invalidate_tag("items"), 1u);
    EXPECT_TRUE(co_await eventually([&] { return a.near_stats().invalidations > invalidations; }));
    EXPECT_EQ((co_await on_a("1")).v, "v2");  // a miss: computed and stored by A
    // A's store after its miss reaches B's near cache (B had dropped v1 at its own invalidation).
    EXPECT_EQ(co_await near_hit(on_b, "1"), "v2");
    EXPECT_EQ(co_await near_hit(on_a, "1"), "v2");
    co_await a.disconnect();
    co_await b.disconnect();
  });
}

// disconnect() empties the near cache and nothing is served from it until a connect() tracks
// again (a write made meanwhile is not reported to anyone).
TEST_F(NearCacheTest, DisconnectEmptiesItAndConnectRearms) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await start();
    const std::string key = get_item.key("a");
    (void)co_await writer.set(key, json("a", "w1"));
    EXPECT_EQ(co_await warm("a", "w1"), "w1");
    co_await redis.disconnect();
    EXPECT_EQ(near().entries, 0u);
    EXPECT_FALSE(near().tracked);
    (void)co_await writer.set(key, json("a", "w2"));
    co_await redis.connect();
    EXPECT_TRUE(co_await eventually([&] { return near().tracked; }));
    EXPECT_EQ((co_await get_item("a")).v, "w2");
    EXPECT_EQ(co_await warm("a", "w2"), "w2");
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

// Four threads run one io_context: 32 callers hit the near cache while a writer on another
// connection keeps changing the keys. Afterwards every key reads as last written (and the
// ThreadSanitizer build runs this too).
TEST(NearCache, CallersOnFourThreadsWhileAWriterWrites) {
  RedisServer server;
  asio::io_context io(4);
  tc::RedisManager redis(io.get_executor(), server.url(), near_on());
  tr::Client writer(io.get_executor(), server.url());
  auto read =
      tc::cached(redis, tc::CachedOptions{.name = "mt"}, &computed_value, tc::RawCodec{})
          .key_builder([](std::string_view, const int& i) { return "mt:" + std::to_string(i); });
  constexpr int kKeys = 50;
  std::vector<int> last(kKeys, 0);
  std::atomic<long long> calls{0};
  tempest::test::run_on_threads(io, 4, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    co_await writer.connect();
    for (int k = 0; k < kKeys; ++k)
      (void)co_await writer.set("mt:" + std::to_string(k), "0");
    EXPECT_TRUE(co_await eventually([&] { return redis.near_stats().tracked; }));
    std::atomic<bool> writing{true};
    auto callers = tempest::test::all_workers(32, [&](int w) -> asio::awaitable<void> {
      for (int i = 0; writing.load() || i < 200; ++i) {
        (void)co_await read((w * 7 + i) % kKeys);
        calls.fetch_add(1);
        if (i % 16 == 0)
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      }
    });
    asio::co_spawn(
        co_await asio::this_coro::executor,
        [&]() -> asio::awaitable<void> {
          for (int n = 1; n <= 300; ++n) {
            const int k = n % kKeys;
            last[static_cast<std::size_t>(k)] = n;
            (void)co_await writer.set("mt:" + std::to_string(k), std::to_string(n));
            co_await sleep_for(1ms);
          }
          writing = false;
        },
        asio::detached);
    EXPECT_EQ(co_await std::move(callers), 0);
    // Once the last invalidations have arrived (within 5 s), every key reads as last written.
    int stale = kKeys;
    const auto until = Clock::now() + 5s;
    while (stale > 0 && Clock::now() < until) {
      stale = 0;
      for (int k = 0; k < kKeys; ++k)
        if (co_await read(k) != std::to_string(last[static_cast<std::size_t>(k)])) ++stale;
      if (stale > 0) co_await sleep_for(1ms);
    }
    EXPECT_EQ(stale, 0);
    EXPECT_GT(redis.near_stats().hits, 0u);
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
  std::printf("%lld calls on four threads, %llu near hits, %llu invalidations\n", calls.load(),
              static_cast<unsigned long long>(redis.near_stats().hits),
              static_cast<unsigned long long>(redis.near_stats().invalidations));
}

// 21 callers read 64 ids through a near cache while the same process invalidates them at
// random: a read that begins after an invalidation returned sees the generation (a Redis counter
// the invalidation raised first) or a later one, unless a call of that id was running when the
// invalidation began. (An invalidation used to return before the entries a concurrent one had
// taken out of its way were unlinked, and near hits served them meanwhile: ~50 a second.)
struct Versioned {
  int id = 0;
  long long gen = 0;
};
BOOST_DESCRIBE_STRUCT(Versioned, (), (id, gen))

TEST(NearCache, NoReadAfterAnInvalidationReturnedSeesWhatItRemoved) {
  RedisServer server;
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), server.url(), near_on());
  auto item =
      tc::cached(redis, {.name = "versioned", .ttl = 30s, .key_prefix = "v:"},
                 [&redis](int id) -> asio::awaitable<Versioned> {
                   auto c = redis.client();
                   const auto g = co_await c.get("gen:" + std::to_string(id));
                   Versioned v{id, g ? std::atoll(g->c_str()) : 0};
                   co_return v;
                 })
          .tags([](int id) { return std::vector<std::string>{"t" + std::to_string(id % 16)}; });
  tc::CacheInvalidator inv(redis, "v:");
  std::vector<long long> floor(64, 0);
  std::vector<int> in_flight(64, 0);
  long long reads = 0, stale = 0, raised = 0;
  bool stop = false;
  std::string first;
  auto caller = [&](unsigned seed) -> asio::awaitable<void> {
    std::mt19937 r(seed);
    while (!stop) {
      const int id = static_cast<int>(r() % 64);
      const auto i = static_cast<std::size_t>(id);
      if (r() % 50 == 0) {
        const bool binding = in_flight[i] == 0;
        auto c = redis.client();
        const long long g = co_await c.incr("gen:" + std::to_string(id));
        (void)co_await inv.invalidate_tag("t" + std::to_string(id % 16));
        if (binding && g > floor[i]) {
          floor[i] = g;
          ++raised;
        }
      } else {
        const long long f = floor[i];
        ++in_flight[i];
        const Versioned v = co_await item(id);
        --in_flight[i];
        ++reads;
        if (v.gen < f && stale++ == 0)
          first = "item(" + std::to_string(id) + ") -> generation " + std::to_string(v.gen) +
                  " after the invalidation of " + std::to_string(f) + " returned";
      }
    }
  };
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    for (unsigned c = 0; c < 21; ++c)
      asio::co_spawn(io, caller(c), asio::detached);
    co_await sleep_for(3s);
    stop = true;
    co_await sleep_for(200ms);
    co_await redis.disconnect();
  });
  std::printf("%lld reads, %lld invalidations held to, %lld stale\n", reads, raised, stale);
  EXPECT_EQ(stale, 0) << first;
  EXPECT_GT(raised, 100);
  EXPECT_GT(redis.near_stats().hits, 1000u);
}

TEST(NearCache, FunctionsChooseAndAMissingNearCacheIsNamed) {
  RedisServer server;
  asio::io_context io;
  tc::RedisManager plain(io.get_executor(), server.url());
  auto fn = [](int x) -> asio::awaitable<int> { co_return x; };
  try {
    (void)tc::cached(plain, tc::CachedOptions{.name = "f", .near = tc::NearCache::on}, fn);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ManagerOptions::near.enabled"), std::string::npos)
        << e.what();
  }
  tc::ManagerOptions bad = near_on();
  bad.near.max_entries = 0;
  EXPECT_THROW(tc::RedisManager(io.get_executor(), server.url(), bad), std::invalid_argument);
  tc::RedisManager with(io.get_executor(), server.url(), near_on());
  auto uses = tc::cached(with, tc::CachedOptions{.name = "g"}, fn);
  auto opted_out = tc::cached(with, tc::CachedOptions{.name = "h", .near = tc::NearCache::off}, fn);
  run(io, [&]() -> asio::awaitable<void> {
    co_await with.connect();
    EXPECT_TRUE(co_await eventually([&] { return with.near_stats().tracked; }));
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(co_await uses(1), 1);
      EXPECT_EQ(co_await opted_out(1), 1);
      co_await sleep_for(2ms);
    }
    EXPECT_GT(uses.stats().near_hits, 0u);
    EXPECT_EQ(opted_out.stats().near_hits, 0u);
    EXPECT_EQ(opted_out.stats().hits, 4u);
    co_await with.disconnect();
  });
}

// Records when each invalidation arrives (the near cache's sink, without the cache).
struct Recorder : tr::InvalidationSink {
  std::mutex mu;
  std::unordered_map<std::string, Clock::time_point> seen;
  std::atomic<bool> is_armed{false};
  void invalidate(std::string_view key) noexcept override {
    const auto now = Clock::now();
    std::lock_guard lock(mu);
    seen.emplace(std::string(key), now);
  }
  void invalidate_all() noexcept override {}
  void reset() noexcept override { is_armed = false; }
  void armed() noexcept override { is_armed = true; }
  std::size_t count() {
    std::lock_guard lock(mu);
    return seen.size();
  }
};

// A near cache holding `n` keys "<prefix><i>" (values written by others, read raw).
struct NearReader {
  NearReader(asio::io_context& io, const std::string& url, std::string prefix)
      : redis(io.get_executor(), url, near_on()),
        read(tc::cached(redis, tc::CachedOptions{.name = "read"}, &computed_value, tc::RawCodec{})
                 .key_builder([prefix](std::string_view, const int& i) {
                   return prefix + std::to_string(i);
                 })) {}
  tc::RedisManager redis;
  tc::Cached<asio::awaitable<std::string> (*)(int), tc::RawCodec, std::string, std::tuple<int>>
      read;

  // Reads every key until each one is in the near cache.
  asio::awaitable<void> warm(int n) {
    for (int round = 0; round < 50 && redis.near_stats().entries < static_cast<std::size_t>(n);
         ++round)
      for (int i = 0; i < n; ++i)
        (void)co_await read(i);
    EXPECT_EQ(redis.near_stats().entries, static_cast<std::size_t>(n));
  }
  // After the invalidations of `n` writes arrived: how many reads still return `old`.
  asio::awaitable<int> stale_reads(int n, const std::string& old, std::uint64_t invalidations) {
    EXPECT_TRUE(co_await eventually(
        [&] { return redis.near_stats().invalidations >= invalidations + n; }, 10000ms));
    int stale = 0;
    for (int i = 0; i < n; ++i)
      if (co_await read(i) == old) ++stale;
    co_return stale;
  }
};

void print_delays(const char* who, std::vector<double> us) {
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) { return us[static_cast<std::size_t>(q * (us.size() - 1))]; };
  std::printf("invalidation delay, %s writer, %zu writes: p50 %.0f us, p99 %.0f us, max %.0f us\n",
              who, us.size(), at(0.5), at(0.99), us.back());
}

// Keys read through a tracking client, then written once each by another connection: the delay
// from the write's return to its invalidation's arrival.
TEST(NearCache, InvalidationDelayOverTenThousandWrites) {
  RedisServer server;
  asio::io_context io;
  tr::Client reader(io.get_executor(), server.url());
  tr::Client writer(io.get_executor(), server.url());
  auto rec = std::make_shared<Recorder>();
  reader.track(rec);
  NearReader l1(io, server.url(), "k:");
  constexpr int kWrites = 10000;
  run(io, [&]() -> asio::awaitable<void> {
    co_await reader.connect();
    co_await writer.connect();
    co_await l1.redis.connect();
    EXPECT_TRUE(co_await eventually([&] { return rec->is_armed.load(); }));
    EXPECT_TRUE(co_await eventually([&] { return l1.redis.near_stats().tracked; }));
    for (int i = 0; i < kWrites; ++i)
      (void)co_await writer.set("k:" + std::to_string(i), "old");
    co_await l1.warm(kWrites);
    const auto invalidations = l1.redis.near_stats().invalidations;
    for (int i = 0; i < kWrites; i += 500) {
      tr::Pipeline p;
      for (int j = i; j < i + 500; ++j)
        p.add("GET", "k:" + std::to_string(j));
      (void)co_await reader.exec(p);
    }
    std::vector<Clock::time_point> returned(kWrites);
    for (int i = 0; i < kWrites; ++i) {
      (void)co_await writer.set("k:" + std::to_string(i), "new");
      returned[static_cast<std::size_t>(i)] = Clock::now();
    }
    EXPECT_TRUE(co_await eventually([&] { return rec->count() == kWrites; }));
    std::vector<double> us;
    {
      std::lock_guard lock(rec->mu);
      for (int i = 0; i < kWrites; ++i) {
        auto it = rec->seen.find("k:" + std::to_string(i));
        if (it == rec->seen.end()) continue;
        us.push_back(std::max(0.0, std::chrono::duration<double, std::micro>(
                                       it->second - returned[static_cast<std::size_t>(i)])
                                       .count()));
      }
    }
    CO_ASSERT_EQ(us.size(), static_cast<std::size_t>(kWrites));
    print_delays("C++", us);
    // The near cache heard every write too: nothing old is served after that.
    EXPECT_EQ(co_await l1.stale_reads(kWrites, "old", invalidations), 0);
    co_await reader.disconnect();
    co_await writer.disconnect();
    co_await l1.redis.disconnect();
  });
}

// The same with the writer in another process: Debian's python3-redis.
TEST(NearCache, AWriterInPythonInvalidatesToo) {
  RedisServer server;
  asio::io_context io;
  tr::Client reader(io.get_executor(), server.url());
  tr::Client writer(io.get_executor(), server.url());
  auto rec = std::make_shared<Recorder>();
  reader.track(rec);
  NearReader l1(io, server.url(), "py:");
  constexpr int kWrites = 10000;
  run(io, [&]() -> asio::awaitable<void> {
    co_await reader.connect();
    co_await writer.connect();
    co_await l1.redis.connect();
    EXPECT_TRUE(co_await eventually([&] { return rec->is_armed.load(); }));
    EXPECT_TRUE(co_await eventually([&] { return l1.redis.near_stats().tracked; }));
    for (int i = 0; i < kWrites; ++i)
      (void)co_await writer.set("py:" + std::to_string(i), "old");
    co_await l1.warm(kWrites);
    const auto invalidations = l1.redis.near_stats().invalidations;
    tr::Pipeline p;
    for (int j = 0; j < kWrites; ++j)
      p.add("GET", "py:" + std::to_string(j));
    (void)co_await reader.exec(p);
    std::string out;
    std::thread python([&] {
      out = shell(std::string("/usr/bin/python3 ") +
                  TEMPEST_SOURCE_DIR "/tests/interop/python_writer.py " + server.url() +
                  " py: " + std::to_string(kWrites));
    });
    // The io_context goes on running (invalidations arrive) while Python writes.
    co_await eventually([&] { return rec->count() == kWrites; }, 60000ms);
    python.join();
    std::istringstream lines(out);
    std::string key;
    long long ns = 0;
    std::vector<double> us;
    {
      std::lock_guard lock(rec->mu);
      while (lines >> key >> ns) {
        auto it = rec->seen.find(key);
        if (it == rec->seen.end()) continue;
        const double arrived =
            std::chrono::duration<double, std::micro>(it->second.time_since_epoch()).count();
        us.push_back(std::max(0.0, arrived - static_cast<double>(ns) / 1000.0));
      }
    }
    EXPECT_EQ(us.size(), static_cast<std::size_t>(kWrites)) << out.substr(0, 300);
    if (!us.empty()) print_delays("Python", us);
    EXPECT_EQ(co_await l1.stale_reads(kWrites, "old", invalidations), 0);
    co_await reader.disconnect();
    co_await writer.disconnect();
    co_await l1.redis.disconnect();
  });
}

}  // namespace
