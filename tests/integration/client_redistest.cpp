// tempest::redis against a real redis-server: ordering, binary safety, typed helpers.
#include <gtest/gtest.h>

#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <functional>
#include <thread>

#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/redis/client.hpp"

namespace asio = boost::asio;
using namespace tempest::redis;
using namespace std::chrono_literals;
using tempest::test::all_workers;
using tempest::test::run;
using tempest::test::shared_redis_url;
using tempest::test::Worker;

namespace {

class ClientTest : public ::testing::Test {
 protected:
  asio::io_context io;
  Client client{io.get_executor(), shared_redis_url()};
  std::string p = tempest::test::unique_prefix("t");
};

}  // namespace

TEST_F(ClientTest, SixtyFourCoroutinesTimesTenThousandKeepOrder) {
  constexpr int kWorkers = 64;
  constexpr int kPerWorker = 10'000;
  long long checked = 0;
  long long wrong = 0;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Worker worker = [&](int w) -> asio::awaitable<void> {
      const std::string key = p + std::to_string(w);
      for (int i = 0; i < kPerWorker; ++i) {
        const std::string expect = std::to_string(w) + ":" + std::to_string(i);
        // Alternate a write+read of the worker's own key with an ECHO of the sequence.
        if (i % 2 == 0) {
          co_await client.set(key, expect);
          auto got = co_await client.get(key);
          if (got != expect) ++wrong;
        } else {
          auto got = co_await client.command(cmd("ECHO", expect));
          if (got.str() != expect) ++wrong;
        }
        ++checked;
      }
    };
    wrong += co_await all_workers(kWorkers, worker);
    co_await client.disconnect();
  });
  EXPECT_EQ(checked, static_cast<long long>(kWorkers) * kPerWorker);
  EXPECT_EQ(wrong, 0);
}

// Automatic pipelining: callers resumed by one batch of replies queue their next requests, and
// those go out together (not one write per request).
TEST_F(ClientTest, ConcurrentCallersShareWrites) {
  constexpr int kWorkers = 64;
  constexpr int kPerWorker = 200;
  long long wrong = 0;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set(p + "k", "v");
    Worker worker = [&](int) -> asio::awaitable<void> {
      for (int i = 0; i < kPerWorker; ++i)
        if (co_await client.get(p + "k") != "v") ++wrong;
    };
    wrong += co_await all_workers(kWorkers, worker);
    co_await client.disconnect();
  });
  EXPECT_EQ(wrong, 0);
  const auto stats = client.stats();
  EXPECT_EQ(stats.commands, 1u + kWorkers * kPerWorker);
  ASSERT_GT(stats.writes, 0u);
  // Requests queued by callers resumed within one batch of replies go out 8 at a time (see
  // Connection::Impl::kFlushEvery); one write per request would give 1.
  EXPECT_GE(stats.commands / stats.writes, 6u)
      << stats.commands << " commands in " << stats.writes << " writes";
}

TEST_F(ClientTest, BinarySafeKeysAndValues) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    std::string all;
    for (int b = 0; b < 256; ++b)
      all += static_cast<char>(b);
    const std::string key = p + std::string("k\0ey\r\n", 6) + all;
    EXPECT_TRUE(co_await client.set(key, all));
    EXPECT_EQ(co_await client.get(key), all);
    for (int b = 0; b < 256; ++b) {
      const std::string one(1, static_cast<char>(b));
      co_await client.set(p + "byte" + one, one + std::string("\0", 1) + one);
    }
    for (int b = 0; b < 256; ++b) {
      const std::string one(1, static_cast<char>(b));
      EXPECT_EQ(co_await client.get(p + "byte" + one), one + std::string("\0", 1) + one);
    }
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, SixteenMebibyteValueRoundTrips) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    std::string big(16u << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i)
      big[i] = static_cast<char>((i * 131 + 7) & 0xff);
    CallOptions slow{.timeout = 20s};
    EXPECT_TRUE(co_await client.set(p + "big", big, SetOptions{.timeout = 20s}));
    auto back = co_await client.get(p + "big", slow);
    EXPECT_TRUE(back.has_value());
    EXPECT_EQ(back->size(), big.size());
    EXPECT_TRUE(*back == big);
    const std::string big_key = p + "big";
    co_await client.del(big_key);
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, SetOptions) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    const std::string k = p + "k";
    EXPECT_TRUE(co_await client.set(k, "v1", ex{100s}));
    const auto t = co_await client.ttl(k);
    EXPECT_GT(t, 95);
    EXPECT_LE(t, 100);
    EXPECT_TRUE(co_await client.set(k, "v2", px{50'000ms}));
    EXPECT_LE(co_await client.ttl(k), 50);
    SetOptions nx;
    nx.condition = SetCondition::if_not_exists;
    EXPECT_FALSE(co_await client.set(k, "nope", nx));
    EXPECT_EQ(co_await client.get(k), "v2");
    SetOptions keep;
    keep.keep_ttl = true;
    EXPECT_TRUE(co_await client.set(k, "v3", keep));
    EXPECT_GT(co_await client.ttl(k), 0);
    SetOptions xx;
    xx.condition = SetCondition::if_exists;
    EXPECT_FALSE(co_await client.set(p + "missing", "x", xx));
    EXPECT_EQ(co_await client.set_get(k, "v4"), "v3");
    EXPECT_EQ(co_await client.ttl(k), -1);  // plain SET clears the expiry
    EXPECT_EQ(co_await client.ttl(p + "missing"), -2);
    EXPECT_TRUE(co_await client.set(k, "v5", ex{10s}));
    EXPECT_TRUE(co_await client.expire(k, 1000s));
    EXPECT_GT(co_await client.ttl(k), 990);
    SetOptions both;
    both.expire_seconds = 1s;
    both.expire_millis = 1ms;
    EXPECT_THROW(co_await client.set(k, "x", both), std::invalid_argument);
    EXPECT_THROW(co_await client.set(k, "x", ex{0s}), std::invalid_argument);
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, KeyHelpers) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    // GCC 12 cannot compile a braced list of std::string temporaries inside a coroutine
    // ("array used as initializer"), so the keys are named first.
    const std::string a = p + "a", b = p + "b", c = p + "c", nope = p + "nope";
    const std::vector<std::pair<std::string, std::string>> kv = {{a, "1"}, {b, "2"}, {c, "3"}};
    co_await client.mset(kv);
    auto got = co_await client.mget(a, nope, c);
    EXPECT_EQ(got, (std::vector<std::optional<std::string>>{"1", std::nullopt, "3"}));
    EXPECT_EQ(co_await client.exists(a, b, nope), 2);
    EXPECT_EQ(co_await client.incr(p + "n"), 1);
    EXPECT_EQ(co_await client.incr(p + "n"), 2);
    EXPECT_EQ(co_await client.del(a, nope), 1);
    EXPECT_EQ(co_await client.unlink(b, c), 2);
    EXPECT_EQ(co_await client.exists(a), 0);
    EXPECT_EQ(co_await client.ping(), "PONG");
    EXPECT_EQ(co_await client.publish(p + "chan", "hi"), 0);
    EXPECT_THROW(co_await client.del(Keys{}), std::invalid_argument);
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, SetHelpers) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    EXPECT_EQ(co_await client.sadd(p + "s1", "a", "b"), 2);
    EXPECT_EQ(co_await client.sadd(p + "s1", "b"), 0);
    EXPECT_EQ(co_await client.sadd(p + "s2", "c", "b"), 2);
    auto m = co_await client.smembers(p + "s1");
    std::sort(m.begin(), m.end());
    EXPECT_EQ(m, (std::vector<std::string>{"a", "b"}));
    const std::string s1 = p + "s1", s2 = p + "s2", none = p + "none";
    auto u = co_await client.sunion(s1, s2, none);
    std::sort(u.begin(), u.end());
    EXPECT_EQ(u, (std::vector<std::string>{"a", "b", "c"}));
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, ScanIteratesOverEveryMatchingKeyOnly) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Pipeline fill;
    for (int i = 0; i < 2500; ++i)
      fill.add("SET", p + "m:" + std::to_string(i), "x");
    for (int i = 0; i < 300; ++i)
      fill.add("SET", p + "other:" + std::to_string(i), "x");
    co_await client.exec(fill, {.timeout = 10s});
    auto keys = co_await client.scan_all(ScanOptions(p + "m:*", 100));
    EXPECT_EQ(keys.size(), 2500u);
    for (const auto& k : keys)
      EXPECT_TRUE(k.starts_with(p + "m:")) << k;
    // Streaming form.
    auto scanner = client.scan(ScanOptions(p + "other:*", 50));
    std::size_t seen = 0;
    int rounds = 0;
    for (;;) {
      auto batch = co_await scanner.next();
      if (!batch) break;
      seen += batch->size();
      ++rounds;
    }
    EXPECT_GE(seen, 300u);
    EXPECT_GT(rounds, 1);
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, ScriptsWithNoscriptFallback) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    const Keys k = {p + "k"}, n = {p + "n"}, arg = {"arg"}, five = {"5"}, two = {"2"}, one = {"1"};
    auto r = co_await client.eval("return {KEYS[1], ARGV[1], 7}", k, arg);
    CO_ASSERT_TRUE(r.is_array());
    EXPECT_EQ(r.elements()[0].str(), k[0]);
    EXPECT_EQ(r.elements()[2].integer(), 7);
    co_await client.command(cmd("SCRIPT", "FLUSH"));
    Script script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    EXPECT_THROW(co_await client.evalsha(script.sha1(), n, five), ServerError);
    EXPECT_EQ((co_await client.run(script, n, five)).integer(), 5);  // EVAL, loads it
    EXPECT_EQ((co_await client.evalsha(script.sha1(), n, two)).integer(), 7);
    EXPECT_EQ((co_await client.run(script, n, one)).integer(), 8);
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, PipelineAndTransaction) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Pipeline pl;
    pl.add("SET", p + "k", "v").add("GET", p + "k").add("LPUSH", p + "k", "x").add("INCR", p + "n");
    auto replies = co_await client.exec(pl);
    CO_ASSERT_EQ(replies.size(), 4u);
    EXPECT_EQ(replies[0], Reply::status("OK"));
    EXPECT_EQ(replies[1], Reply::string("v"));
    EXPECT_TRUE(replies[2].is_error());
    EXPECT_TRUE(replies[2].str().starts_with("WRONGTYPE"));
    EXPECT_EQ(replies[3], Reply::integer(1));

    Pipeline tx;
    tx.add("INCR", p + "n").add("INCR", p + "n").add("GET", p + "n");
    auto results = co_await client.transaction(tx);
    CO_ASSERT_EQ(results.size(), 3u);
    EXPECT_EQ(results[0], Reply::integer(2));
    EXPECT_EQ(results[2], Reply::string("3"));

    Pipeline bad;
    bad.add("INCR", p + "n").add("NOSUCHCOMMAND");
    EXPECT_THROW(co_await client.transaction(bad), ServerError);
    EXPECT_EQ(co_await client.get(p + "n"), "3");  // nothing of the aborted transaction ran
    co_await client.disconnect();
  });
}

TEST_F(ClientTest, ServerErrorsCarryRedisText) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.sadd(p + "set", "a");
    try {
      co_await client.get(p + "set");
      ADD_FAILURE() << "no error";
    } catch (const ServerError& e) {
      EXPECT_TRUE(std::string(e.what()).starts_with("WRONGTYPE")) << e.what();
    }
    EXPECT_THROW(co_await client.command(cmd("SUBSCRIBE", "x")), std::invalid_argument);
    // The connection is still in sync after errors.
    EXPECT_EQ(co_await client.ping(), "PONG");
    co_await client.disconnect();
  });
}

TEST(ClientThreads, SafeFromEveryThreadOfAMultiThreadedIoContext) {
  asio::io_context io(4);
  Client client(io.get_executor(), shared_redis_url());
  std::atomic<long long> ok{0}, wrong{0};
  std::atomic<int> running{32};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await client.connect();
        for (int w = 0; w < 32; ++w) {
          asio::co_spawn(
              io,
              [&, w]() -> asio::awaitable<void> {
                for (int i = 0; i < 2000; ++i) {
                  const std::string v = std::to_string(w) + "/" + std::to_string(i);
                  auto r = co_await client.command(cmd("ECHO", v));
                  (r.str() == v ? ok : wrong)++;
                }
              },
              [&](std::exception_ptr e) {
                if (e) ++wrong;
                if (--running == 0)
                  asio::co_spawn(io, client.disconnect(), [&](std::exception_ptr) { io.stop(); });
              });
        }
      },
      asio::detached);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] { io.run(); });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(ok.load(), 32 * 2000);
  EXPECT_EQ(wrong.load(), 0);
}

// An executor that is not an io_context's own (here a thread pool's): the connection serializes
// itself with a strand over it, and callers on every pool thread get their own replies.
TEST(ClientThreads, WorksOnAThreadPoolExecutor) {
  asio::thread_pool pool(3);
  Client client(pool.get_executor(), shared_redis_url());
  std::atomic<long long> ok{0}, wrong{0};
  auto all = asio::co_spawn(
      pool,
      [&]() -> asio::awaitable<void> {
        co_await client.connect();
        std::vector<std::future<void>> done;
        for (int w = 0; w < 16; ++w) {
          auto one = [&, w]() -> asio::awaitable<void> {
            for (int i = 0; i < 500; ++i) {
              const std::string v = std::to_string(w) + "/" + std::to_string(i);
              auto r = co_await client.command(cmd("ECHO", v));
              (r.str() == v ? ok : wrong)++;
            }
          };
          done.push_back(asio::co_spawn(pool, one, asio::use_future));
        }
        for (auto& f : done)
          while (f.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
            asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(5));
            co_await t.async_wait(asio::use_awaitable);
          }
        co_await client.disconnect();
      },
      asio::use_future);
  ASSERT_EQ(all.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  all.get();
  pool.join();
  EXPECT_EQ(ok.load(), 16 * 500);
  EXPECT_EQ(wrong.load(), 0);
}
