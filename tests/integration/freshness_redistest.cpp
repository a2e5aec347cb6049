// cached()'s freshness and failure handling against a real redis-server: early refresh,
// fail-safe (serve-stale) with its throttle, soft and hard factory timeouts, and what a Python
// reader sees of entries that carry a stale time.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/log_capture.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/cache/cached.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
using namespace std::chrono_literals;
using tempest::test::all_workers;
using tempest::test::Clock;
using tempest::test::LogCapture;
using tempest::test::ms_since;
using tempest::test::RedisServer;
using tempest::test::run;
using tempest::test::shell;
using tempest::test::sleep_for;

namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

class FreshnessTest : public ::testing::Test {
 protected:
  LogCapture logs{"tempest.cache"};
  RedisServer server;
  asio::io_context io;
  tc::RedisManager redis{io.get_executor(), server.url()};
};

// The function's runs: when each started and ended (ms since the test's start).
struct Runs {
  Clock::time_point origin = Clock::now();
  std::mutex mutex;
  std::vector<std::pair<double, double>> spans;
  std::size_t start() {
    std::lock_guard lock(mutex);
    spans.emplace_back(ms_since(origin), std::numeric_limits<double>::infinity());
    return spans.size() - 1;
  }
  void end(std::size_t i) {
    std::lock_guard lock(mutex);
    spans[i].second = ms_since(origin);
  }
  bool during_one(double t) {
    std::lock_guard lock(mutex);
    return std::any_of(spans.begin(), spans.end(),
                       [t](const auto& s) { return t >= s.first && t <= s.second; });
  }
};

// 64 callers for 5.5 s on one key with a 2 s TTL refreshed at half of it, the function taking
// 200 ms: exactly one recomputation per period, the entry never expires, and no call waits for
// a recomputation (calls during a refresh cost what plain hits cost).
void expect_one_refresh_per_period(asio::io_context& io, std::vector<tc::RedisManager*> managers,
                                   bool lock) {
  Runs runs;
  tc::CachedOptions o{.name = "rates", .ttl = 2s};
  o.early_refresh = 0.5;
  o.lock.enabled = lock;
  using Fn = std::function<asio::awaitable<int>(int)>;
  Fn fn = [&runs](int x) -> asio::awaitable<int> {
    const auto i = runs.start();
    co_await sleep_for(200ms);
    runs.end(i);
    co_return x + static_cast<int>(i);
  };
  std::vector<tc::Cached<Fn, tc::JsonCodec<int>, int, std::tuple<int>>> fns;
  for (auto* m : managers)
    fns.push_back(tc::cached(*m, o, fn));
  std::vector<double> during, plain;
  double slowest = 0;
  run(io, [&]() -> asio::awaitable<void> {
    for (auto* m : managers)
      co_await m->connect();
    (void)co_await fns[0](1);  // the first value (a miss)
    const auto start = Clock::now();
    co_await all_workers(64, [&](int w) -> asio::awaitable<void> {
      auto& f = fns[static_cast<std::size_t>(w) % fns.size()];
      while (ms_since(start) < 5500) {
        const double t = ms_since(runs.origin);
        const auto c = Clock::now();
        (void)co_await f(1);
        const double took = ms_since(c);
        slowest = std::max(slowest, took);
        (runs.during_one(t) ? during : plain).push_back(took);
        co_await sleep_for(2ms);
      }
    });
    for (auto* m : managers)
      co_await m->disconnect();
  });
  std::uint64_t misses = 0, refreshes = 0, hits = 0;
  for (auto& f : fns) {
    misses += f.stats().misses;
    refreshes += f.stats().refreshes;
    hits += f.stats().hits;
  }
  std::printf(
      "early refresh (ttl 2 s, at 0.5, function 200 ms, %zu process(es), lock %s): %zu runs, "
      "%llu calls; p99 during a refresh %.3f ms (%zu calls), p99 of plain hits %.3f ms, slowest "
      "%.3f ms\n",
      managers.size(), lock ? "on" : "off", runs.spans.size(),
      static_cast<unsigned long long>(hits), percentile(during, 0.99), during.size(),
      percentile(plain, 0.99), slowest);
  EXPECT_EQ(misses, 1u);  // the entry never expired
  // The first run, then one per period (1 s + the 200 ms run) over 5.5 s: 4 refreshes.
  EXPECT_GE(runs.spans.size(), 4u);
  EXPECT_LE(runs.spans.size(), 6u);
  for (std::size_t i = 1; i < runs.spans.size(); ++i)  // never two in one period
    EXPECT_GE(runs.spans[i].first - runs.spans[i - 1].first, 900) << "run " << i;
  EXPECT_GE(during.size(), 100u);
  EXPECT_LT(slowest, 150);  // nobody waited for the 200 ms function
}

}  // namespace

TEST_F(FreshnessTest, EarlyRefreshRecomputesOncePerPeriodAndNoCallWaits) {
  expect_one_refresh_per_period(io, {&redis}, false);
}

// Two managers (as two processes) with the distributed lock: still one refresh per period.
TEST_F(FreshnessTest, EarlyRefreshWithTheLockRecomputesInOneProcess) {
  tc::RedisManager other(io.get_executor(), server.url());
  expect_one_refresh_per_period(io, {&redis, &other}, true);
}

// A function that starts throwing after its first value: callers get the stale value until
// fail_safe_max has passed, then the error; after a failure the function is not run again for
// fail_safe_throttle.
TEST_F(FreshnessTest, FailSafeServesTheStaleValueUntilItsMaximumThenTheError) {
  int runs = 0;
  tc::CachedOptions o{.name = "quote", .ttl = 1s};
  o.fail_safe_max = 2s;
  o.fail_safe_throttle = 400ms;
  auto quote = tc::cached(redis, o, [&runs](int x) -> asio::awaitable<int> {
    if (++runs > 1) throw std::runtime_error("the upstream is down");
    co_return x * 10;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    const auto stored = Clock::now();
    EXPECT_EQ(co_await quote(7), 70);
    // The entry lives its TTL plus the stale time; its bytes are the value, then its freshness
    // times as 46 characters of JSON whitespace.
    tempest::redis::Pipeline p;
    p.add("PTTL", quote.key(7));
    const auto pttl = (co_await c.exec(p))[0].integer();
    EXPECT_GT(pttl, 2500);
    EXPECT_LE(pttl, 3000);
    const std::string bytes = (co_await c.get(quote.key(7))).value_or("");
    EXPECT_EQ(bytes.size(), 2u + 46u);
    EXPECT_EQ(bytes.substr(0, 2), "70");
    EXPECT_EQ(bytes.find_first_not_of(" \t\r\n", 2), std::string::npos);
    EXPECT_EQ(co_await quote(7), 70);  // fresh: a hit
    EXPECT_EQ(runs, 1);
    co_await sleep_for(1100ms);        // expired, kept stale
    EXPECT_EQ(co_await quote(7), 70);  // the function threw: the stale value
    EXPECT_EQ(runs, 2);
    EXPECT_EQ(quote.stats().stale_served, 1u);
    EXPECT_TRUE(logs.count("serving the stale value (the upstream is down)"));
    // Within the throttle: stale values without running the function.
    for (int i = 0; i < 20; ++i)
      EXPECT_EQ(co_await quote(7), 70);
    EXPECT_EQ(runs, 2);
    co_await sleep_for(450ms);  // the throttle is over: one more try, then stale again
    EXPECT_EQ(co_await quote(7), 70);
    EXPECT_EQ(co_await quote(7), 70);
    EXPECT_EQ(runs, 3);
    EXPECT_EQ(quote.stats().stale_served, 23u);
    // Past fail_safe_max the entry is gone: the error reaches the caller.
    co_await sleep_for(
        std::chrono::milliseconds(3100) -
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stored));
    bool threw = false;
    try {
      (void)co_await quote(7);
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()) == "the upstream is down";
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(runs, 4);
    co_await redis.disconnect();
  });
}

// An invalidated entry is gone, stale time and all: never served as a fallback, also when the
// invalidation lands while the function runs.
TEST_F(FreshnessTest, FailSafeNeverServesAnInvalidatedEntry) {
  int runs = 0;
  tc::CachedOptions o{.name = "price", .ttl = 1s};
  o.fail_safe_max = 60s;
  std::string key;
  auto price = tc::cached(redis, o, [&](int x) -> asio::awaitable<int> {
    if (++runs == 1) co_return x;
    (void)co_await redis.client().del(key);  // invalidated while it runs
    throw std::runtime_error("down");
  });
  key = price.key(3);
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await price(3), 3);
    co_await sleep_for(1100ms);
    bool threw = false;
    try {
      (void)co_await price(3);
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()) == "down";
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(runs, 2);
    EXPECT_EQ(price.stats().stale_served, 0u);
    co_await redis.disconnect();
  });
}

// An invalidation while a background computation runs (an early refresh, a computation that
// outlived its soft timeout) wins: the computation does not store its result over it.
TEST_F(FreshnessTest, AnInvalidationDuringABackgroundComputationWins) {
  int runs = 0;
  tc::CachedOptions o{.name = "row", .ttl = 2s};
  o.early_refresh = 0.5;
  o.fail_safe_max = 30s;
  o.soft_timeout = 50ms;
  auto row = tc::cached(redis, o, [&runs](int) -> asio::awaitable<int> {
    const int n = ++runs;
    if (n > 1) co_await sleep_for(300ms);
    co_return n;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    EXPECT_EQ(co_await row(1), 1);
    co_await sleep_for(1100ms);     // due for a refresh
    EXPECT_EQ(co_await row(1), 1);  // the refresh starts
    co_await sleep_for(50ms);
    (void)co_await c.del(row.key(1));  // invalidated while it runs
    co_await sleep_for(400ms);
    EXPECT_EQ(runs, 2);
    EXPECT_EQ(co_await c.exists(row.key(1)), 0);  // not written back
    // A computation that outlives its soft timeout, invalidated meanwhile: not written back.
    EXPECT_EQ(co_await row(2), 3);
    co_await sleep_for(2100ms);     // stale now
    EXPECT_EQ(co_await row(2), 3);  // after the soft timeout: the stale value
    (void)co_await c.del(row.key(2));
    co_await sleep_for(400ms);
    EXPECT_EQ(runs, 4);
    EXPECT_EQ(co_await c.exists(row.key(2)), 0);
    co_await redis.disconnect();
  });
}

// An early refresh whose function throws: the current value stays and is served, the failure
// is counted and logged, and the key is not refreshed again within fail_safe_throttle.
TEST_F(FreshnessTest, AFailedEarlyRefreshKeepsTheCurrentValue) {
  int runs = 0;
  tc::CachedOptions o{.name = "fx", .ttl = 2s};
  o.early_refresh = 0.5;
  o.fail_safe_throttle = 500ms;
  auto fx = tc::cached(redis, o, [&runs](int) -> asio::awaitable<int> {
    if (++runs > 1) throw std::runtime_error("rates unavailable");
    co_return 42;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await fx(0), 42);
    co_await sleep_for(1100ms);
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(co_await fx(0), 42);
      co_await sleep_for(5ms);
    }
    EXPECT_EQ(runs, 2);  // one refresh, then the throttle
    EXPECT_EQ(fx.stats().refresh_failures, 1u);
    EXPECT_EQ(logs.count("the early refresh failed (rates unavailable)"), 1u);
    co_await sleep_for(500ms);
    EXPECT_EQ(co_await fx(0), 42);
    co_await sleep_for(20ms);
    EXPECT_EQ(runs, 3);  // after the throttle, one more try
    co_await redis.disconnect();
  });
}

// Another process holds the key's lock (it is refreshing): this one does not ask for the lock
// again on every hit, and counts no refresh.
TEST_F(FreshnessTest, EarlyRefreshLeavesAKeyAloneWhileAnotherProcessHoldsItsLock) {
  int runs = 0;
  tc::CachedOptions o{.name = "lk", .ttl = 2s};
  o.early_refresh = 0.5;
  o.lock.enabled = true;
  auto lk = tc::cached(redis, o, [&runs](int) -> asio::awaitable<int> { co_return ++runs; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    EXPECT_EQ(co_await lk(0), 1);
    tempest::redis::SetOptions hold;
    hold.expire_millis = 10s;
    (void)co_await c.set(lk.key(0) + ":lock", "another-process", hold);
    co_await sleep_for(1100ms);
    tempest::redis::Pipeline reset;
    reset.add("CONFIG", "RESETSTAT");
    (void)co_await c.exec(reset);
    for (int i = 0; i < 200; ++i) {
      EXPECT_EQ(co_await lk(0), 1);
      co_await sleep_for(1ms);
    }
    tempest::redis::Pipeline info;
    info.add("INFO", "commandstats");
    const std::string stats = (co_await c.exec(info))[0].str();
    const auto at = stats.find("cmdstat_set:calls=");
    const long long sets = at == std::string::npos ? 0 : std::atoll(stats.c_str() + at + 18);
    std::printf("200 hits due for a refresh while another process holds the lock: %lld SET NX\n",
                sets);
    EXPECT_LE(sets, 2);
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(lk.stats().refreshes, 0u);
    co_await redis.disconnect();
  });
}

// A function that hangs past hard_timeout: later callers wait for the computation already under
// way instead of starting one each.
TEST_F(FreshnessTest, CallersAfterAHardTimeoutWaitForTheComputationUnderWay) {
  int runs = 0;
  tc::CachedOptions o{.name = "slow"};
  o.hard_timeout = 50ms;
  auto slow = tc::cached(redis, o, [&runs](int x) -> asio::awaitable<int> {
    ++runs;
    co_await sleep_for(600ms);
    co_return x;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    int timeouts = 0;
    for (int i = 0; i < 5; ++i) {
      try {
        (void)co_await slow(1);
      } catch (const tc::FactoryTimeout&) {
        ++timeouts;
      }
    }
    EXPECT_EQ(timeouts, 5);
    EXPECT_EQ(runs, 1);
    co_await sleep_for(700ms);
    EXPECT_EQ(co_await slow(1), 1);  // its result was stored
    EXPECT_EQ(runs, 1);
    co_await redis.disconnect();
  });
}

// A Python reader (the SDK's plain GET + json.loads) reads an entry with freshness times as a
// hit, during its TTL and its stale time alike; a Python writer's entry (no times) is a plain hit
// here, fresh until Redis expires it.
TEST_F(FreshnessTest, APythonReaderSeesAStaleEntryAsAHit) {
  tc::CachedOptions o{.name = "profile", .ttl = 1s};
  o.fail_safe_max = 30s;
  o.early_refresh = 0.8;
  int runs = 0;
  auto profile = tc::cached(
      redis, o, [&runs](std::string id) -> asio::awaitable<std::map<std::string, double>> {
        ++runs;
        co_return std::map<std::string, double>{{id, 19.9}};
      });
  const std::string peer =
      std::string("/usr/bin/python3 ") + TEMPEST_SOURCE_DIR "/tests/interop/python_peer.py ";
  EXPECT_EQ(shell(peer + "write " + server.url() + " profile '' '[\"py\"]' '{\"py\": 1.5}'"),
            profile.key("py"));
  std::string key;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    const auto from_python = co_await profile("py");
    EXPECT_EQ(from_python.at("py"), 1.5);
    EXPECT_EQ(runs, 0);
    EXPECT_EQ(profile.stats().refreshes, 0u);
    (void)co_await profile("a");
    key = profile.key("a");
    co_await sleep_for(1100ms);  // stale now
    co_await redis.disconnect();
  });
  EXPECT_EQ(shell(peer + "read " + server.url() + " " + key), "{\"a\": 19.9}");
}

// A slow function: past hard_timeout the caller gets FactoryTimeout, and the computation still
// stores its result for the next caller.
TEST_F(FreshnessTest, HardTimeoutThrowsAndTheResultIsStoredLater) {
  int runs = 0;
  tc::CachedOptions o{.name = "report"};
  o.hard_timeout = 100ms;
  auto report = tc::cached(redis, o, [&runs](int x) -> asio::awaitable<int> {
    ++runs;
    co_await sleep_for(300ms);
    co_return x + 1;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    const auto t = Clock::now();
    bool timed_out = false;
    try {
      (void)co_await report(1);
    } catch (const tc::FactoryTimeout& e) {
      timed_out =
          std::string(e.what()).find("longer than 100 ms (hard_timeout)") != std::string::npos;
    }
    const double took = ms_since(t);
    std::printf("hard timeout 100 ms, function 300 ms: the call gave up after %.1f ms\n", took);
    EXPECT_TRUE(timed_out);
    EXPECT_GE(took, 95);
    EXPECT_LT(took, 250);
    EXPECT_EQ(report.stats().timeouts, 1u);
    co_await sleep_for(300ms);  // the computation finished in the background and stored
    EXPECT_EQ(co_await report(1), 2);
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(report.stats().hits, 1u);
    co_await redis.disconnect();
  });
}

// With a stale value, past soft_timeout the caller gets it at once; the computation finishes in
// the background and its result is the next caller's hit. Without one, soft_timeout does not
// apply and hard_timeout does.
TEST_F(FreshnessTest, SoftTimeoutReturnsTheStaleValueAndTheComputationFinishes) {
  int runs = 0;
  tc::CachedOptions o{.name = "feed", .ttl = 1s};
  o.fail_safe_max = 30s;
  o.soft_timeout = 50ms;
  o.hard_timeout = 2s;
  auto feed = tc::cached(redis, o, [&runs](int) -> asio::awaitable<int> {
    const int n = ++runs;
    co_await sleep_for(n == 1 ? 1ms : 300ms);
    co_return n;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await feed(0), 1);
    co_await sleep_for(1100ms);  // stale
    auto t = Clock::now();
    EXPECT_EQ(co_await feed(0), 1);  // the stale value after the soft timeout
    const double took = ms_since(t);
    std::printf("soft timeout 50 ms, function 300 ms, stale value present: answered in %.1f ms\n",
                took);
    EXPECT_GE(took, 45);
    EXPECT_LT(took, 250);
    EXPECT_EQ(feed.stats().timeouts, 1u);
    EXPECT_EQ(feed.stats().stale_served, 1u);
    co_await sleep_for(350ms);  // it finished and stored
    EXPECT_EQ(co_await feed(0), 2);
    EXPECT_EQ(runs, 2);
    // No stale value (a new key): the caller waits the whole 300 ms, under the hard timeout.
    t = Clock::now();
    EXPECT_EQ(co_await feed(1), 3);
    EXPECT_GE(ms_since(t), 295);
    co_await redis.disconnect();
  });
}

// A hard timeout with a stale value answers with it (fail-safe) instead of the error.
TEST_F(FreshnessTest, HardTimeoutWithAStaleValueServesIt) {
  int runs = 0;
  tc::CachedOptions o{.name = "board", .ttl = 1s};
  o.fail_safe_max = 30s;
  o.hard_timeout = 80ms;
  auto board = tc::cached(redis, o, [&runs](int) -> asio::awaitable<int> {
    const int n = ++runs;
    if (n > 1) co_await sleep_for(500ms);
    co_return n;
  });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await board(0), 1);
    co_await sleep_for(1100ms);
    EXPECT_EQ(co_await board(0), 1);
    EXPECT_EQ(board.stats().stale_served, 1u);
    EXPECT_TRUE(logs.count("serving the stale value (a timeout)"));
    co_await sleep_for(600ms);
    co_await redis.disconnect();
  });
}

// The near cache keeps a value only while it is fresh: not through its stale time (it would be
// served without asking whether the function can do better) nor past its early refresh point.
TEST(FreshnessNear, TheNearCacheKeepsAValueOnlyWhileItIsFresh) {
  RedisServer server;
  asio::io_context io;
  tc::ManagerOptions mo;
  mo.near.enabled = true;
  tc::RedisManager redis(io.get_executor(), server.url(), mo);
  int runs = 0;
  tc::CachedOptions o{.name = "n", .ttl = 1s};
  o.fail_safe_max = 30s;
  o.early_refresh = 0.5;
  auto n = tc::cached(redis, o, [&runs](int) -> asio::awaitable<int> { co_return ++runs; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await n(0), 1);
    std::uint64_t near_hits = 0;
    for (int i = 0; i < 100 && near_hits == 0; ++i) {  // once tracking is armed
      (void)co_await n(0);
      near_hits = n.stats().near_hits;
      if (near_hits == 0) co_await sleep_for(5ms);
    }
    EXPECT_GT(near_hits, 0u);
    co_await sleep_for(600ms);  // past the refresh point: Redis is asked, a refresh starts
    EXPECT_EQ(co_await n(0), 1);
    for (int i = 0; i < 100 && runs < 2; ++i)
      co_await sleep_for(5ms);
    EXPECT_EQ(runs, 2);
    co_await sleep_for(1100ms);  // the refreshed value is stale now: recomputed, not served
    EXPECT_EQ(co_await n(0), 3);
    co_await redis.disconnect();
  });
}

// The freshness times are taken off before decoding, whatever the codec: a raw string keeps its
// own trailing whitespace, and a reader without the options gets the value without the times.
TEST_F(FreshnessTest, RawValuesComeBackExactlyAsReturned) {
  tc::CachedOptions o{.name = "raw", .ttl = 60s};
  o.fail_safe_max = 60s;
  auto raw = tc::cached(
      redis, o,
      [](int i) -> asio::awaitable<std::string> {
        co_return "line " + std::to_string(i) + " \t\r\n";
      },
      tc::RawCodec{});
  auto plain = tc::cached(
      redis, {.name = "raw", .ttl = 60s},
      [](int) -> asio::awaitable<std::string> { co_return std::string("recomputed"); },
      tc::RawCodec{});
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_EQ(co_await raw(1), "line 1 \t\r\n");
    EXPECT_EQ(co_await raw(1), "line 1 \t\r\n");
    EXPECT_EQ(raw.stats().hits, 1u);
    EXPECT_EQ(co_await plain(1), "line 1 \t\r\n");  // same key, no options: a hit as well
    EXPECT_EQ(plain.stats().hits, 1u);
    (void)co_await redis.client().set(plain.key(2), "ends in spaces   ");
    EXPECT_EQ(co_await raw(2), "ends in spaces   ");
    // A value ending in the mark and 42 bytes that are digits but for one (at any place, any
    // near miss: another whitespace or control character, a letter) holds no times: it stays.
    for (std::size_t at = 0; at < 42; ++at) {
      for (const char odd : {'\v', '\f', '\0', 'x', '!', ')'}) {
        std::string v = "value\t\r\t\r" + std::string(42, '\t');
        v[9 + at] = odd;
        (void)co_await redis.client().set(plain.key(3), v);
        EXPECT_EQ(co_await raw(3), v) << "odd byte " << int(odd) << " at " << at;
      }
    }
    co_await redis.disconnect();
  });
}

// Everything at once on four threads (for the sanitizers): callers hit, refresh early, time out,
// fail and get stale values; every answer is a value the function returned for that key.
TEST(FreshnessThreads, CallersOnFourThreadsRefreshTimeOutAndFailSafely) {
  RedisServer server;
  asio::io_context io(4);
  tc::RedisManager redis(io.get_executor(), server.url());
  tc::CachedOptions o{.name = "mt", .ttl = 1s};
  o.early_refresh = 0.5;
  o.fail_safe_max = 30s;
  o.fail_safe_throttle = 100ms;
  o.soft_timeout = 20ms;
  o.hard_timeout = 200ms;
  std::atomic<int> runs{0};
  auto fn = [&runs](int k) -> asio::awaitable<int> {
    const int n = runs.fetch_add(1);
    if (n % 5 == 3) throw std::runtime_error("flaky");
    if (n % 7 == 2) co_await sleep_for(60ms);  // past the soft timeout
    co_return k * 1000 + n % 1000;
  };
  auto f = tc::cached(redis, o, fn);
  o.name = "mt_expiring";  // no early refresh: entries expire, stale values answer
  o.early_refresh = 0;
  auto g = tc::cached(redis, o, fn);
  std::atomic<long long> calls{0}, wrong{0}, errors{0};
  tempest::test::run_on_threads(io, 4, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    const auto start = Clock::now();
    (void)co_await all_workers(32, [&](int w) -> asio::awaitable<void> {
      for (int i = 0; ms_since(start) < 2500; ++i) {
        const int k = (w + i) % 8;
        try {
          int v = 0;  // (no co_await inside ?: with g++ 12)
          if (w % 2 == 0) {
            v = co_await f(k);
          } else {
            v = co_await g(k);
          }
          if (v / 1000 != k) ++wrong;
        } catch (const std::runtime_error&) {
          ++errors;  // no value yet for this key (a first computation failed)
        }
        ++calls;
        co_await sleep_for(1ms);
      }
    });
    co_await sleep_for(300ms);  // background work ends
    co_await redis.disconnect();
  });
  auto st = f.stats();
  const auto sg = g.stats();
  st.hits += sg.hits;
  st.stale_served += sg.stale_served;
  st.timeouts += sg.timeouts;
  std::printf(
      "four threads: %lld calls, %d runs, %llu refreshes, %llu stale served, %llu timeouts, %lld "
      "errors\n",
      calls.load(), runs.load(), static_cast<unsigned long long>(st.refreshes),
      static_cast<unsigned long long>(st.stale_served),
      static_cast<unsigned long long>(st.timeouts), errors.load());
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(calls.load(), 1000);
  EXPECT_LT(errors.load(), calls.load() / 20);  // only while a key had no value yet
  EXPECT_GT(st.refreshes, 0u);
  EXPECT_GT(st.stale_served, 0u);
  EXPECT_GT(st.hits, static_cast<std::uint64_t>(calls.load()) / 2);
}

// A call under a long hard_timeout whose function answers at once leaves nothing pending: the
// io_context's run() returns when the work is done, not when the timeout would have passed.
TEST(FreshnessTimeouts, AFinishedCallLeavesNoTimerBehind) {
  RedisServer server;
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), server.url());
  tc::CachedOptions o{.name = "quick"};
  o.hard_timeout = 30s;
  auto quick = tc::cached(redis, o, [](int x) -> asio::awaitable<int> { co_return x; });
  int got = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await redis.connect();
        got = co_await quick(7);
        co_await redis.disconnect();
      },
      asio::detached);
  const auto start = Clock::now();
  io.run();
  const double took = ms_since(start);
  EXPECT_EQ(got, 7);
  EXPECT_LT(took, 10000) << "run() waited for the 30 s timeout";
}

TEST(FreshnessOptions, BackgroundWorkNeedsArgumentsThatOwnTheirData) {
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), "redis://127.0.0.1:1");
  tc::CachedOptions o{.name = "v"};
  auto by_view = [](std::string_view s) -> asio::awaitable<std::size_t> { co_return s.size(); };
  EXPECT_NO_THROW((void)tc::cached(redis, o, by_view));  // nothing runs in the background
  o.hard_timeout = 100ms;
  try {
    (void)tc::cached(redis, o, by_view);
    ADD_FAILURE() << "accepted a std::string_view argument for background work";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("own their data"), std::string::npos) << e.what();
  }
}

TEST(FreshnessOptions, BadCombinationsAreNamed) {
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), "redis://127.0.0.1:1");
  auto expect_refused = [&](tc::CachedOptions o, const std::string& words) {
    try {
      auto f = tc::cached(redis, o, [](int x) -> asio::awaitable<int> { co_return x; });
      ADD_FAILURE() << "accepted: " << words;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  tc::CachedOptions o{.name = "f"};
  o.early_refresh = 1.0;
  expect_refused(o, "early_refresh must be 0 (off) or a fraction of the TTL in (0, 1)");
  o.early_refresh = std::nan("");
  expect_refused(o, "early_refresh must be 0 (off)");
  o.early_refresh = 0.8;
  o.ttl = tc::no_expiry;
  expect_refused(o, "need a TTL");
  o = tc::CachedOptions{.name = "f"};
  o.soft_timeout = 10ms;
  expect_refused(o, "soft_timeout needs fail_safe_max > 0");
  o.fail_safe_max = 10s;
  o.hard_timeout = 10ms;
  expect_refused(o, "soft_timeout must be shorter than hard_timeout");
  o = tc::CachedOptions{.name = "f"};
  o.fail_safe_max = -1s;
  expect_refused(o, "fail_safe_max must be >= 0");
}
