// The client through the fault-injecting proxy: a listener that accepts and closes, a black hole,
// replies cut mid-way, slow drips and delays. Failures are typed and clear, retries follow the
// backoff, and no caller ever receives another caller's reply.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include "support/fault_proxy.hpp"
#include "support/log_capture.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/redis/client.hpp"

using namespace tempest::redis;
using namespace tempest::test;
using namespace std::chrono_literals;
using Mode = FaultProxy::Mode;

namespace {

// `workers` coroutines loop ECHO <unique> until finish(), counting right and wrong replies and
// errors by type.
struct EchoLoad {
  explicit EchoLoad(asio::io_context& io) : io(io), all_done(io, Clock::time_point::max()) {}
  asio::io_context& io;
  asio::steady_timer all_done;
  std::atomic<long> right{0}, wrong{0}, connection_errors{0}, timeouts{0}, others{0};
  std::atomic<bool> stop{false};
  int running = 0;

  void start(Client& client, int workers, Duration timeout) {
    running = workers;
    for (int w = 0; w < workers; ++w)
      asio::co_spawn(
          io,
          [this, &client, w, timeout]() -> asio::awaitable<void> {
            for (long i = 0; !stop; ++i) {
              const std::string v = std::to_string(w) + ":" + std::to_string(i);
              bool pause = false;
              try {
                const Reply r = co_await client.command(cmd("ECHO", v), {.timeout = timeout});
                (r == Reply::string(v) ? right : wrong)++;
              } catch (const ConnectionError&) {
                ++connection_errors;
                pause = true;
              } catch (const TimeoutError&) {
                ++timeouts;
              } catch (...) {
                ++others;
              }
              if (pause) co_await sleep_for(5ms);
            }
          },
          [this](std::exception_ptr) {
            if (--running == 0) all_done.cancel();
          });
  }
  // Whether right answers keep coming over `d`.
  asio::awaitable<bool> progresses(Duration d) {
    const long before = right;
    co_await sleep_for(d);
    co_return right.load() > before;
  }
  // Stops the workers and waits for them.
  asio::awaitable<void> finish() {
    stop = true;
    boost::system::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
};

asio::awaitable<void> wait_until(const std::function<bool()>& cond, Duration limit) {
  const auto until = Clock::now() + limit;
  while (!cond() && Clock::now() < until)
    co_await sleep_for(5ms);
}

}  // namespace

// A listener that accepts and closes: connect() fails at once and says why; the attempts follow
// the backoff (not one every few milliseconds) with one warning for the whole burst.
TEST(Faults, AcceptThenCloseFailsClearlyAndRetriesAtTheBackoffsPace) {
  RedisServer server;
  FaultProxy proxy(server.port());
  proxy.set_mode(Mode::accept_then_close);
  LogCapture logs("tempest.redis");
  asio::io_context io;
  Client client(io.get_executor(), proxy.url("?reconnect_min=100ms&reconnect_max=800ms"));
  std::size_t attempts = 0;
  run(io, [&]() -> asio::awaitable<void> {
    const auto start = Clock::now();
    try {
      co_await client.connect();
      ADD_FAILURE() << "connected to a listener that closes every connection";
    } catch (const ConnectionError& e) {
      const std::string what = e.what();
      // "the server closed the connection" or "the connection was reset", depending on whether
      // the PING was already on its way when the listener closed.
      EXPECT_NE(what.find("before answering the handshake"), std::string::npos) << what;
    }
    EXPECT_LT(ms_since(start), 500.0);
    co_await sleep_for(3000ms);
    attempts = proxy.connections_accepted();
    // Healthy again: the client comes back by itself.
    proxy.set_mode(Mode::pass);
    co_await wait_until([&] { return client.is_connected(); }, 3s);
    EXPECT_TRUE(client.is_connected());
    EXPECT_EQ(co_await client.ping(), "PONG");
    co_await client.disconnect();
  });
  // Delays 100, 200, 400, 800, 800... ms (+-25%): about 7 attempts in 3 s, where a retry every
  // 50 ms would make 60.
  EXPECT_GE(attempts, 4u);
  EXPECT_LE(attempts, 10u);
  EXPECT_EQ(logs.count("cannot connect to"), 1u);
}

// A link that goes silent (black hole) is judged dead by the health check and replaced once the
// network recovers; the calls meanwhile fail with typed errors only, and none gets a wrong reply.
TEST(Faults, BlackHoleIsDetectedAndTheClientRecovers) {
  RedisServer server;
  FaultProxy proxy(server.port());
  asio::io_context io;
  Client client(io.get_executor(),
                proxy.url("?health_interval=200ms&health_timeout=300ms&connect_timeout=500ms"
                          "&reconnect_min=50ms&reconnect_max=200ms"));
  EchoLoad load(io);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    load.start(client, 16, 200ms);
    co_await sleep_for(200ms);
    proxy.set_mode(Mode::black_hole);
    co_await wait_until([&] { return !client.is_connected(); }, 3s);
    EXPECT_FALSE(client.is_connected()) << "the black hole was not detected";
    co_await sleep_for(300ms);
    proxy.set_mode(Mode::pass);
    co_await wait_until([&] { return client.is_connected(); }, 5s);
    EXPECT_TRUE(client.is_connected());
    EXPECT_TRUE(co_await load.progresses(200ms)) << "no reply after the recovery";
    co_await load.finish();
    co_await client.disconnect();
  });
  EXPECT_EQ(load.wrong.load(), 0);
  EXPECT_EQ(load.others.load(), 0);
  EXPECT_GT(load.timeouts.load(), 0);
  std::printf("black hole: %ld right, %ld timeouts, %ld connection errors\n", load.right.load(),
              load.timeouts.load(), load.connection_errors.load());
}

// A reply cut in the middle and the connection reset: what was in flight fails with a
// ConnectionError saying it may have been applied; the next link serves everyone correctly.
TEST(Faults, ResetMidReplyFailsWhatWasInFlightAndNothingElse) {
  RedisServer server;
  FaultProxy proxy(server.port());
  asio::io_context io;
  Client client(io.get_executor(), proxy.url("?reconnect_min=20ms&reconnect_max=100ms"));
  EchoLoad load(io);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    try {
      proxy.set_mode(Mode::reset_mid_reply);
      (void)co_await client.command(cmd("ECHO", std::string(1000, 'x')));
      ADD_FAILURE() << "a cut reply was delivered";
    } catch (const ConnectionError& e) {
      EXPECT_NE(std::string(e.what()).find("may or may not have been applied"), std::string::npos)
          << e.what();
    }
    proxy.set_mode(Mode::pass);
    load.start(client, 16, 1s);
    // Five resets under load, each one waited for (a fixed 20 ms window let a slow build, ASan,
    // pass a window without a reply to cut).
    for (int i = 0; i < 5; ++i) {
      co_await sleep_for(50ms);
      const auto before = client.stats().reconnects;
      proxy.set_mode(Mode::reset_mid_reply);
      co_await wait_until([&] { return !client.is_connected(); }, 3s);
      proxy.set_mode(Mode::pass);
      co_await wait_until(
          [&] { return client.is_connected() && client.stats().reconnects > before; }, 3s);
    }
    co_await wait_until([&] { return client.is_connected(); }, 3s);
    EXPECT_TRUE(co_await load.progresses(200ms));
    co_await load.finish();
    EXPECT_GE(client.stats().reconnects, 5u);
    co_await client.disconnect();
  });
  EXPECT_EQ(load.wrong.load(), 0);
  EXPECT_EQ(load.others.load(), 0);
  EXPECT_GT(load.connection_errors.load(), 0);
  std::printf("resets: %ld right, %ld connection errors, %ld timeouts\n", load.right.load(),
              load.connection_errors.load(), load.timeouts.load());
}

// A reply arriving one byte every 20 ms: the link is alive (bytes keep coming), the call
// completes within its deadline; a call whose deadline is shorter times out and its late reply
// is dropped without disturbing the next one.
TEST(Faults, SlowDripCompletesWithinTheDeadlineAndLateRepliesAreDropped) {
  RedisServer server;
  FaultProxy proxy(server.port());
  asio::io_context io;
  Client client(io.get_executor(), proxy.url("?health_interval=100ms&health_timeout=100ms"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set("drip", "0123456789");
    proxy.set_mode(Mode::slow_drip, 20ms);
    const auto start = Clock::now();
    EXPECT_EQ(co_await client.get("drip", {.timeout = 2s}), "0123456789");  // 17 bytes
    EXPECT_GE(ms_since(start), 300.0);
    try {
      (void)co_await client.get("drip", {.timeout = 100ms});
      ADD_FAILURE() << "no timeout";
    } catch (const TimeoutError&) {
    }
    proxy.set_mode(Mode::pass);
    EXPECT_EQ(co_await client.command(cmd("ECHO", "next")), Reply::string("next"));
    EXPECT_EQ(client.stats().reconnects, 0u);
    co_await client.disconnect();
  });
}

// Delay on every chunk: pipelined callers still get their own replies, in order.
TEST(Faults, DelayedLinkKeepsEveryReplyWithItsCaller) {
  RedisServer server;
  FaultProxy proxy(server.port());
  asio::io_context io;
  Client client(io.get_executor(), proxy.url());
  EchoLoad load(io);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    proxy.set_mode(Mode::delay, 30ms);
    load.start(client, 32, 2s);
    co_await sleep_for(600ms);
    co_await load.finish();
    co_await client.disconnect();
  });
  EXPECT_GT(load.right.load(), 32 * 4);
  EXPECT_EQ(load.wrong.load(), 0);
  EXPECT_EQ(load.timeouts.load() + load.connection_errors.load() + load.others.load(), 0);
}
