// Deadlines, cancellation, reconnects and disconnect against a redis-server this test controls.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <thread>

#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/redis/client.hpp"

namespace asio = boost::asio;
using namespace tempest::redis;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using tempest::test::Clock;
using tempest::test::ms_since;
using tempest::test::RedisServer;
using tempest::test::run;
using tempest::test::sleep_for;

TEST(Deadline, FrozenServerTimesOutWithinBoundsAndStreamStaysInSync) {
  RedisServer server;
  asio::io_context io;
  // Health checks are slow here so that only the deadline is under test.
  Client client(io.get_executor(), server.url("?health_interval=30s&health_timeout=30s"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set("dl:a", "1");
    server.pause();
    for (int i = 0; i < 3; ++i) {
      const auto start = Clock::now();
      bool timed_out = false;
      try {
        co_await client.get("dl:a", {.timeout = 100ms});
      } catch (const TimeoutError& e) {
        timed_out = true;
        EXPECT_NE(std::string(e.what()).find("GET"), std::string::npos) << e.what();
      }
      const double took = ms_since(start);
      EXPECT_TRUE(timed_out);
      EXPECT_GE(took, 99.0);
      EXPECT_LE(took, 300.0);
    }
    server.resume();
    // The three abandoned GETs' replies arrive first and are dropped; these get their own.
    EXPECT_EQ(co_await client.get("dl:a"), "1");
    EXPECT_TRUE(co_await client.set("dl:b", "2"));
    EXPECT_EQ(co_await client.get("dl:b"), "2");
    EXPECT_EQ(co_await client.command(cmd("ECHO", "in-sync")), Reply::string("in-sync"));
    co_await client.disconnect();
  });
}

TEST(Deadline, DebugSleepBlocksServerAndCallsTimeOut) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?health_interval=30s&health_timeout=30s"));
  Client other(io.get_executor(), server.url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await other.connect();
    asio::co_spawn(io, other.command(cmd("DEBUG", "SLEEP", "0.5"), {.timeout = 5s}),
                   asio::detached);
    co_await sleep_for(20ms);
    const auto start = Clock::now();
    EXPECT_THROW(co_await client.ping({.timeout = 100ms}), TimeoutError);
    EXPECT_LE(ms_since(start), 300.0);
    EXPECT_EQ(co_await client.ping({.timeout = 2s}), "PONG");
    co_await client.disconnect();
    co_await other.disconnect();
  });
}

TEST(Deadline, CancelledCallerGetsTimeoutAtOnceAndReplyIsDropped) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?health_interval=30s&health_timeout=30s"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set("c:a", "A");
    server.pause();
    asio::steady_timer t(io, 50ms);
    const auto start = Clock::now();
    // The GET loses the race against the timer; || cancels it.
    auto result =
        co_await (client.get("c:a", {.timeout = 10s}) || t.async_wait(asio::use_awaitable));
    EXPECT_EQ(result.index(), 1u);
    EXPECT_LE(ms_since(start), 150.0);
    server.resume();
    co_await client.set("c:b", "B");
    EXPECT_EQ(co_await client.get("c:b"), "B");
    EXPECT_EQ(client.stats().timeouts, 1u);
    co_await client.disconnect();
  });
}

TEST(Reconnect, ServerKilledAndRestartedWhileSixteenCoroutinesRun) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?reconnect_min=20ms&reconnect_max=200ms"));
  std::atomic<long long> ok{0}, wrong{0}, conn_errors{0}, timeouts{0}, other_errors{0};
  bool saw_down = false, saw_up_again = false;
  std::atomic<bool> stop{false};
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    int running = 16;
    asio::steady_timer done(io, Clock::time_point::max());
    for (int w = 0; w < 16; ++w) {
      asio::co_spawn(
          io,
          [&, w]() -> asio::awaitable<void> {
            for (int i = 0; !stop; ++i) {
              const std::string v = std::to_string(w) + ":" + std::to_string(i);
              try {
                auto r = co_await client.command(cmd("ECHO", v), {.timeout = 500ms});
                (r.str() == v ? ok : wrong)++;
              } catch (const ConnectionError&) {
                ++conn_errors;
              } catch (const TimeoutError&) {
                ++timeouts;
              } catch (...) {
                ++other_errors;
              }
              if (i % 64 == 0) co_await sleep_for(1ms);
            }
          },
          [&](std::exception_ptr) {
            if (--running == 0) done.cancel();
          });
    }
    co_await sleep_for(200ms);
    const auto before = ok.load();
    EXPECT_GT(before, 0);
    server.kill();
    // The client notices and reports the link down.
    for (int i = 0; i < 200 && client.is_connected(); ++i)
      co_await sleep_for(5ms);
    saw_down = !client.is_connected();
    co_await sleep_for(150ms);
    server.start();
    for (int i = 0; i < 400 && !client.is_connected(); ++i)
      co_await sleep_for(5ms);
    saw_up_again = client.is_connected();
    const auto at_reconnect = ok.load();
    co_await sleep_for(300ms);
    EXPECT_GT(ok.load(), at_reconnect) << "no successful command after the reconnect";
    stop = true;
    boost::system::error_code ec;
    co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_GE(client.stats().reconnects, 1u);
    co_await client.disconnect();
  });
  EXPECT_TRUE(saw_down);
  EXPECT_TRUE(saw_up_again);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(other_errors.load(), 0);
  // Requests queued while the link was down wait for the reconnect and succeed; only those
  // written before the kill may fail, so errors are possible but not required.
  std::printf("reconnect run: %lld ok, %lld ConnectionError, %lld TimeoutError\n", ok.load(),
              conn_errors.load(), timeouts.load());
}

TEST(Reconnect, RequestsWaitForTheConnectionUpToTheirDeadline) {
  const auto port = tempest::test::free_port();
  asio::io_context io;
  Client client(io.get_executor(), "redis://127.0.0.1:" + std::to_string(port) +
                                       "?reconnect_min=10ms&reconnect_max=50ms");
  std::unique_ptr<RedisServer> server;
  run(io, [&]() -> asio::awaitable<void> {
    client.start();
    // Nothing listens yet: a short deadline fails with the reason in the message.
    try {
      co_await client.ping({.timeout = 100ms});
      ADD_FAILURE() << "ping succeeded without a server";
    } catch (const TimeoutError& e) {
      EXPECT_NE(std::string(e.what()).find("waiting for a connection"), std::string::npos)
          << e.what();
    }
    // A longer deadline outlives the outage: the server starts 150 ms into the call.
    std::thread starter([&] {
      std::this_thread::sleep_for(150ms);
      server = std::make_unique<RedisServer>(std::vector<std::string>{}, port);
    });
    std::string pong;
    try {
      pong = co_await client.ping({.timeout = 5s});
    } catch (...) {
      starter.join();
      throw;
    }
    starter.join();
    EXPECT_EQ(pong, "PONG");
    co_await client.disconnect();
  });
}

TEST(Reconnect, ConnectFailsClearlyWhenNothingListens) {
  const auto port = tempest::test::free_port();
  asio::io_context io;
  Client client(io.get_executor(),
                "redis://:topsecret@127.0.0.1:" + std::to_string(port) + "?connect_timeout=300ms");
  run(io, [&]() -> asio::awaitable<void> {
    try {
      co_await client.connect();
      ADD_FAILURE() << "connected to nothing";
    } catch (const ConnectionError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("refused"), std::string::npos) << what;
      EXPECT_EQ(what.find("topsecret"), std::string::npos) << what;
      EXPECT_NE(what.find(":***@"), std::string::npos) << what;
    }
    co_await client.disconnect();
  });
}

TEST(Health, FrozenServerIsDetectedByPing) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?health_interval=100ms&health_timeout=200ms"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    server.pause();
    const auto start = Clock::now();
    while (client.is_connected() && ms_since(start) < 3000)
      co_await sleep_for(10ms);
    EXPECT_FALSE(client.is_connected());
    EXPECT_LE(ms_since(start), 1000.0);
    server.resume();
    EXPECT_TRUE(co_await client.wait_connected(3s));
    EXPECT_EQ(co_await client.ping(), "PONG");
    co_await client.disconnect();
  });
}

TEST(Disconnect, InFlightRequestsFinishLaterOnesFailAndItIsIdempotent) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url());
  Client sleeper(io.get_executor(), server.url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    int finished = 0;
    bool failed = false;
    // A slow command in flight when disconnect() is called still gets its reply.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto r = co_await client.command(cmd("DEBUG", "SLEEP", "0.2"), {.timeout = 5s});
          if (r.is_status()) ++finished;
        },
        [&](std::exception_ptr e) { failed = e != nullptr; });
    co_await sleep_for(20ms);
    co_await client.disconnect();
    EXPECT_EQ(finished, 1);
    EXPECT_FALSE(failed);
    EXPECT_EQ(client.state(), ConnectionState::stopped);
    co_await client.disconnect();  // idempotent
    EXPECT_THROW(co_await client.ping(), ConnectionError);
    co_await sleeper.disconnect();  // never connected: fine too
  });
}
