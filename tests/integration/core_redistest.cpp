// The connection core against a real redis-server: every reply to its own caller whatever the
// user sends, no user code inside the connection's processing, bounded backlogs, slow commands,
// dedicated connections, completion tokens, reply limits.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <random>
#include <thread>

#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/redis/client.hpp"

using namespace tempest::redis;
using namespace tempest::test;
using namespace std::chrono_literals;

namespace {

// Runs `io` until `done()` or `limit`; exceptions thrown by handlers leave io.run_one_for and are
// counted (what a service's own run loop does), then the loop goes on.
int run_catching(asio::io_context& io, const std::function<bool()>& done,
                 std::chrono::milliseconds limit) {
  int thrown = 0;
  const auto until = Clock::now() + limit;
  io.restart();
  while (!done() && Clock::now() < until) {
    try {
      io.run_one_for(10ms);
    } catch (const std::exception&) {
      ++thrown;
    }
    if (io.stopped()) io.restart();
  }
  return thrown;
}

}  // namespace

// The defect this issue started from: one CLIENT REPLY SKIP used to hand every caller another
// caller's reply. Now each refused command fails before anything is written, while 8 coroutines
// loop ECHO <unique> and check every reply.
TEST(Isolation, RefusedCommandsNeverDisturbOtherCallers) {
  asio::io_context io;
  Client client(io.get_executor(), shared_redis_url());
  std::atomic<long> right{0}, wrong{0};
  int refused = 0;
  const std::vector<Command> attempts = {cmd("CLIENT", "REPLY", "SKIP"),
                                         cmd("CLIENT", "REPLY", "OFF"),
                                         cmd("SUBSCRIBE", "ch"),
                                         cmd("PSUBSCRIBE", "c*"),
                                         cmd("UNSUBSCRIBE"),
                                         Command("MONITOR"),
                                         Command("RESET"),
                                         cmd("HELLO", 3),
                                         cmd("SELECT", 1),
                                         Command("QUIT"),
                                         cmd("WATCH", "k"),
                                         Command("UNWATCH"),
                                         Command("MULTI"),
                                         Command("EXEC"),
                                         Command("DISCARD"),
                                         cmd("BLPOP", "q", 1),
                                         cmd("AUTH", "x")};
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    int running = 8;
    asio::steady_timer all_done(io, Clock::time_point::max());
    for (int w = 0; w < 8; ++w) {
      asio::co_spawn(
          io,
          [&, w]() -> asio::awaitable<void> {
            for (int i = 0; i < 500; ++i) {
              const std::string v = "w" + std::to_string(w) + "-" + std::to_string(i);
              const Reply r = co_await client.command(cmd("ECHO", v));
              (r == Reply::string(v) ? right : wrong)++;
            }
          },
          [&](std::exception_ptr e) {
            if (e) ADD_FAILURE() << "an ECHO worker failed";
            if (--running == 0) all_done.cancel();
          });
    }
    for (int round = 0; round < 5; ++round) {
      for (const auto& c : attempts) {
        try {
          co_await client.command(c);
        } catch (const std::invalid_argument&) {
          ++refused;
        }
        Pipeline p;
        p.add("ECHO", "before").add(c).add("ECHO", "after");
        try {
          co_await client.exec(p);
        } catch (const std::invalid_argument&) {
          ++refused;
        }
        Pipeline t;
        t.add(c);
        try {
          co_await client.transaction(t);
        } catch (const std::invalid_argument&) {
          ++refused;
        }
      }
      co_await sleep_for(1ms);
    }
    boost::system::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    // The connection is as it was: the same database, every reply its own.
    EXPECT_EQ(co_await client.command(cmd("ECHO", "still-in-sync")),
              Reply::string("still-in-sync"));
    co_await client.disconnect();
  });
  // BLPOP is allowed inside a transaction (it does not block there): 16 of 17 refused in each.
  EXPECT_EQ(refused, 5 * (17 + 17 + 16));
  EXPECT_EQ(right.load(), 8 * 500);
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Isolation, FromWireWithAWrongCountIsRefused) {
  const std::string wire = cmd("ECHO", "a").wire() + cmd("ECHO", "b").wire();
  EXPECT_THROW((void)Pipeline::from_wire(wire, 1), std::invalid_argument);
  EXPECT_THROW((void)Pipeline::from_wire(wire, 3), std::invalid_argument);
}

// A typed helper that receives a reply of the wrong type fails for that caller only. The server
// here answers GET with SMEMBERS (renamed commands), so client.get() receives an array.
TEST(Isolation, WrongReplyTypeIsATypedErrorForThatCallerOnly) {
  RedisServer server({"--rename-command", "GET", "REALGET", "--rename-command", "SMEMBERS", "GET"});
  asio::io_context io;
  Client client(io.get_executor(), server.url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.sadd("set", "m");
    try {
      (void)co_await client.get("set");
      ADD_FAILURE() << "an array was accepted as a string";
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find("expected string or nil, got array"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(co_await client.command(cmd("ECHO", "next")), Reply::string("next"));
    EXPECT_EQ(client.stats().reconnects, 0u);
    co_await client.disconnect();
  });
}

// Replies nested deeper than hiredis 0.14's limit (7) used to drop the connection; they parse.
// One deeper than the parser's own limit (256) fails that call and nothing else.
TEST(Replies, DeepNestingParsesAndBeyondTheLimitFailsOneCall) {
  asio::io_context io;
  Client client(io.get_executor(), shared_redis_url());
  const auto nested = [](int depth) {
    return "local t = {} local c = t for i=1," + std::to_string(depth) +
           " do local n = {} c[1] = n c = n end c[1] = 7 return t";
  };
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Reply r = co_await client.eval(nested(20));
    for (int i = 0; i < 20; ++i) {
      CO_ASSERT_TRUE(r.is_array());
      r = Reply(r.elements().at(0));
    }
    EXPECT_EQ(r.elements().at(0), Reply::integer(7));
    try {
      (void)co_await client.eval(nested(300));
      ADD_FAILURE() << "a 300-deep reply was accepted";
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find("nested deeper than 256"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(co_await client.ping(), "PONG");
    EXPECT_EQ(client.stats().reconnects, 0u);
    co_await client.disconnect();
  });
}

TEST(Replies, ReplyOverMaxReplySizeFailsThatCallOnly) {
  asio::io_context io;
  Client client(io.get_executor(), shared_redis_url() + "?max_reply_size=1048576");
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set("limits:big", std::string(2 << 20, 'x'));
    co_await client.set("limits:small", "fine");
    try {
      (void)co_await client.get("limits:big");
      ADD_FAILURE() << "a 2 MiB reply passed a 1 MiB limit";
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find("max_reply_size"), std::string::npos) << e.what();
    }
    EXPECT_EQ(co_await client.get("limits:small"), "fine");
    EXPECT_EQ(client.stats().rejected, 1u);
    EXPECT_EQ(client.stats().reconnects, 0u);
    co_await client.disconnect();
  });
}

// What a caller's completion handler throws leaves through io_context::run(): while the link
// drops and while deadlines expire. The connection's own work goes on; after Redis comes back
// the client reconnects and serves.
TEST(Delivery, ThrowingHandlersNeverStopTheConnection) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(),
                server.url("?reconnect_min=20ms&reconnect_max=100ms&health_interval=200ms"));
  bool up = false;
  client.connect([&](std::exception_ptr e) { up = !e; });
  run_catching(
      io, [&] { return up; }, 5s);
  ASSERT_TRUE(up);

  // Deadlines expire (the server is frozen); every handler throws.
  server.pause();
  int completed = 0;
  for (int i = 0; i < 10; ++i)
    client.get("k", CallOptions{.timeout = 100ms},
               [&](std::exception_ptr e, std::optional<std::string>) {
                 ++completed;
                 if (e) throw std::runtime_error("user handler threw on a timeout");
               });
  EXPECT_EQ(run_catching(
                io, [&] { return completed == 10; }, 5s),
            10);

  // The link drops with requests in flight; every handler throws again.
  completed = 0;
  for (int i = 0; i < 10; ++i)
    client.get("k", CallOptions{.timeout = 5s},
               [&](std::exception_ptr e, std::optional<std::string>) {
                 ++completed;
                 if (e) throw std::runtime_error("user handler threw on a lost link");
               });
  run_catching(
      io, [] { return false; }, 50ms);  // written, unanswered
  server.kill();
  EXPECT_EQ(run_catching(
                io, [&] { return completed == 10; }, 5s),
            10);

  // Redis restarted: the client reconnects on its own and serves.
  server.start();
  std::optional<std::string> value;
  bool answered = false;
  run_catching(
      io, [&] { return client.is_connected(); }, 5s);
  client.set("after", "restart", [&](std::exception_ptr e, bool) {
    if (e) return;
    client.get("after", [&](std::exception_ptr e2, std::optional<std::string> v) {
      answered = !e2;
      value = std::move(v);
    });
  });
  run_catching(
      io, [&] { return answered; }, 5s);
  EXPECT_TRUE(answered);
  EXPECT_EQ(value, "restart");
  EXPECT_GE(client.stats().reconnects, 1u);

  // The usual coroutine form: co_spawn with a completion handler that rethrows. Its exception
  // leaves through run() as well (Asio gathers those of one handler into multiple_exceptions),
  // and the client goes on.
  int rethrown = 0;
  for (int i = 0; i < 3; ++i)
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          (void)co_await client.get("k", CallOptions{.timeout = 100ms});
          throw std::runtime_error("the coroutine failed");
        },
        [&](std::exception_ptr e) {
          ++rethrown;
          if (e) std::rethrow_exception(e);
        });
  EXPECT_GE(run_catching(
                io, [&] { return rethrown == 3; }, 2s),
            1);
  EXPECT_EQ(rethrown, 3);
  answered = false;
  client.get("after", [&](std::exception_ptr e, std::optional<std::string>) { answered = !e; });
  run_catching(
      io, [&] { return answered; }, 5s);
  EXPECT_TRUE(answered);
  client.close();
}

// 100,000 requests queued during an outage all expire, and leave nothing behind: afterwards the
// client serves as before.
TEST(Backlog, HundredThousandQueuedDuringAnOutageExpireAndTheQueueEmpties) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?reconnect_min=20ms&reconnect_max=200ms"));
  run(io, [&]() -> asio::awaitable<void> { co_await client.connect(); });
  server.kill();
  run_catching(
      io, [&] { return !client.is_connected(); }, 5s);
  ASSERT_FALSE(client.is_connected());
  int timeouts = 0, others = 0;
  const auto start = Clock::now();
  for (int i = 0; i < 100000; ++i)
    client.get("k", CallOptions{.timeout = 300ms},
               [&](std::exception_ptr e, std::optional<std::string>) {
                 try {
                   if (e) std::rethrow_exception(e);
                   ++others;
                 } catch (const TimeoutError&) {
                   ++timeouts;
                 } catch (...) {
                   ++others;
                 }
               });
  run_catching(
      io, [&] { return timeouts + others == 100000; }, 20s);
  const double took = ms_since(start);
  EXPECT_EQ(timeouts, 100000);
  EXPECT_EQ(others, 0);
  std::printf("100,000 queued requests expired in %.0f ms\n", took);
  EXPECT_EQ(client.stats().timeouts, 100000u);
  EXPECT_EQ(client.stats().pending, 0u);  // nothing left queued
  server.start();
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.wait_connected(5s);
    EXPECT_TRUE(co_await client.set("k", "v"));
    EXPECT_EQ(co_await client.get("k"), "v");
    co_await client.disconnect();
  });
}

TEST(Backlog, MaxPendingFailsNewRequestsAtOnce) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?max_pending=100"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    server.pause();
    int failed_at_once = 0;
    for (int i = 0; i < 150; ++i)
      client.get("k", CallOptions{.timeout = 2s},
                 [&](std::exception_ptr e, std::optional<std::string>) {
                   try {
                     if (e) std::rethrow_exception(e);
                   } catch (const ConnectionError& c) {
                     if (std::string(c.what()).find("max_pending") != std::string::npos)
                       ++failed_at_once;
                   } catch (...) {
                   }
                 });
    co_await sleep_for(50ms);
    EXPECT_EQ(failed_at_once, 50);
    server.resume();
    co_await sleep_for(100ms);
    EXPECT_TRUE(co_await client.set("k", "v"));
    co_await client.disconnect();
  });
}

TEST(Backlog, WhenDisconnectedFailFailsAtOnce) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?when_disconnected=fail&reconnect_min=1s"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    server.kill();
    for (int i = 0; i < 200 && client.is_connected(); ++i)
      co_await sleep_for(5ms);
    const auto start = Clock::now();
    try {
      (void)co_await client.get("k");
      ADD_FAILURE() << "a request succeeded with Redis down";
    } catch (const ConnectionError& e) {
      EXPECT_NE(std::string(e.what()).find("when_disconnected=fail"), std::string::npos)
          << e.what();
    }
    EXPECT_LT(ms_since(start), 50.0);
    client.close();
  });
}

// DEBUG SLEEP 3 with a 5 s timeout completes although nothing arrives for 3 s (health checks
// every 200 ms with a 300 ms timeout); callers with 1 s timeouts fail with TimeoutError only.
TEST(Health, SlowCommandWithItsOwnTimeoutIsNotADeadLink) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?health_interval=200ms&health_timeout=300ms"));
  int timeouts = 0, answered = 0, others = 0;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    bool slept = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          const auto r = co_await client.command(cmd("DEBUG", "SLEEP", 3), {.timeout = 5s});
          slept = r == Reply::status("OK");
        },
        asio::detached);
    co_await sleep_for(50ms);
    // Requests behind the sleeping server, each with 1 s: they time out (the last may be
    // answered when the sleep ends).
    while (!slept) {
      try {
        (void)co_await client.get("k", {.timeout = 1s});
        ++answered;
      } catch (const TimeoutError&) {
        ++timeouts;
      } catch (...) {
        ++others;
      }
    }
    EXPECT_TRUE(slept);
    EXPECT_EQ(client.stats().reconnects, 0u);
    EXPECT_EQ(co_await client.ping(), "PONG");
    co_await client.disconnect();
  });
  EXPECT_GE(timeouts, 2);
  EXPECT_LE(answered, 1);
  EXPECT_EQ(others, 0);
}

// disconnect() waits for requests in flight, but not for a link that has died meanwhile.
TEST(Disconnect, ReturnsPromptlyWhenTheLinkDropsWhileItDrains) {
  RedisServer server;
  asio::io_context io;
  Client client(io.get_executor(), server.url("?disconnect_timeout=5s"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    server.pause();
    client.get("k", CallOptions{.timeout = 10s},
               [](std::exception_ptr, std::optional<std::string>) {});
    co_await sleep_for(20ms);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await sleep_for(100ms);
          server.kill();
        },
        asio::detached);
    const auto start = Clock::now();
    co_await client.disconnect();
    EXPECT_LT(ms_since(start), 1000.0);
    EXPECT_EQ(client.state(), ConnectionState::stopped);
  });
}

// WATCH-guarded transactions run on a dedicated connection; a concurrent change is detected.
TEST(Dedicated, WatchDetectsAConcurrentChange) {
  asio::io_context io;
  Client client(io.get_executor(), shared_redis_url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set("watch:balance", "100");
    Client tx = co_await client.dedicated();
    EXPECT_TRUE(tx.is_dedicated());
    co_await tx.command(cmd("WATCH", "watch:balance"));
    const auto seen = co_await tx.get("watch:balance");
    const auto balance = std::stoll(seen.value_or("0"));
    co_await client.set("watch:balance", "50");  // someone else, meanwhile
    Pipeline p;
    p.add("SET", "watch:balance", std::to_string(balance - 30));
    try {
      (void)co_await tx.transaction(p);
      ADD_FAILURE() << "the concurrent change was not detected";
    } catch (const WatchError&) {
    }
    EXPECT_EQ(co_await client.get("watch:balance"), "50");
    // Without interference the same transaction commits.
    co_await tx.command(cmd("WATCH", "watch:balance"));
    const auto replies = co_await tx.transaction(p);
    EXPECT_EQ(replies.size(), 1u);
    EXPECT_EQ(co_await client.get("watch:balance"), "70");
    // Blocking commands too: the dedicated connection waits, the shared one is not held up.
    auto blocked = tx.command(cmd("BLPOP", "dedicated:queue", 2));
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await sleep_for(100ms);
          EXPECT_EQ(co_await client.ping(), "PONG");
          co_await client.command(cmd("RPUSH", "dedicated:queue", "job"));
        },
        asio::detached);
    const Reply popped = co_await std::move(blocked);
    EXPECT_EQ(popped, Reply::array({Reply::string("dedicated:queue"), Reply::string("job")}));
    co_await tx.disconnect();
    co_await client.disconnect();
  });
}

// A dedicated connection whose link drops between WATCH and EXEC does not reconnect and commit
// unguarded: the transaction fails, and so does the connection from then on.
TEST(Dedicated, ALostLinkBetweenWatchAndExecNeverCommits) {
  asio::io_context io;
  Client client(io.get_executor(), shared_redis_url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set("lost:balance", "100");
    Client tx = co_await client.dedicated();
    const Reply id = co_await tx.command(cmd("CLIENT", "ID"));
    co_await tx.command(cmd("WATCH", "lost:balance"));
    (void)co_await tx.get("lost:balance");
    co_await client.command(cmd("CLIENT", "KILL", "ID", std::to_string(id.integer())));
    co_await client.set("lost:balance", "50");  // someone else, while the link is gone
    co_await sleep_for(50ms);
    Pipeline p;
    p.add("SET", "lost:balance", "70");
    try {
      (void)co_await tx.transaction(p);
      ADD_FAILURE() << "the transaction ran on a new link without its WATCH";
    } catch (const ConnectionError& e) {
      EXPECT_NE(std::string(e.what()).find("dedicated connection"), std::string::npos) << e.what();
    }
    EXPECT_EQ(co_await client.get("lost:balance"), "50");
    EXPECT_EQ(tx.state(), ConnectionState::stopped);
    co_await client.disconnect();
  });
}

// A blocking pop that the caller gives up on does not take an element pushed afterwards: the
// dedicated connection is closed when its deadline passes.
TEST(Dedicated, ABlockingPopGivenUpOnTakesNothing) {
  asio::io_context io;
  Client client(io.get_executor(), shared_redis_url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.del("giveup:queue");
    Client tx = co_await client.dedicated();
    try {
      (void)co_await tx.command(cmd("BLPOP", "giveup:queue", 10), {.timeout = 200ms});
      ADD_FAILURE() << "BLPOP returned without data";
    } catch (const TimeoutError&) {
    }
    co_await client.command(cmd("RPUSH", "giveup:queue", "job"));
    co_await sleep_for(100ms);
    EXPECT_EQ(co_await client.command(cmd("LLEN", "giveup:queue")), Reply::integer(1));
    // Blocking forever needs an explicit bound.
    Client tx2 = co_await client.dedicated();
    EXPECT_THROW((void)tx2.command(cmd("BLPOP", "giveup:queue", 0)), std::invalid_argument);
    co_await tx2.disconnect();
    co_await client.disconnect();
  });
}

// An io_context destroyed while a coroutine that owns a Client waits for a reply: the waiting
// handler is destroyed as Asio destroys its own, so the coroutine's frame (and the connection it
// keeps) is freed, not kept alive by a cycle through the connection.
TEST(Lifetime, DestroyingTheIoContextWithRequestsPendingFreesThem) {
  RedisServer server;
  std::weak_ptr<int> frame_alive;
  bool waiting = false;
  {
    asio::io_context io;
    auto token = std::make_shared<int>(7);
    frame_alive = token;
    // The coroutine holds the only Client.
    asio::co_spawn(
        io,
        [client = Client(io.get_executor(), server.url()), token, &server,
         &waiting]() mutable -> asio::awaitable<void> {
          co_await client.connect();
          server.pause();
          waiting = true;
          (void)co_await client.get("k", {.timeout = 60s});
        },
        asio::detached);
    token.reset();
    for (int i = 0; i < 500 && !waiting; ++i)
      io.run_for(10ms);
    ASSERT_TRUE(waiting);
    io.run_for(50ms);
  }
  server.resume();
  EXPECT_TRUE(frame_alive.expired());
}

// The same calls with other completion tokens: a future from a thread of the caller's own while
// the io_context runs elsewhere, a plain callback, and deferred.
TEST(Tokens, FutureCallbackAndDeferred) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  Client client(io.get_executor(), shared_redis_url());
  client.connect(asio::use_future).get();
  EXPECT_TRUE(client.set("tokens:k", "v", asio::use_future).get());
  EXPECT_EQ(client.get("tokens:k", asio::use_future).get(), "v");
  EXPECT_THROW(client.incr("tokens:k", asio::use_future).get(), ServerError);
  Pipeline p;
  p.add("SET", "tokens:n", 1).add("INCR", "tokens:n");
  EXPECT_EQ(client.exec(p, asio::use_future).get().at(1), Reply::integer(2));

  std::promise<std::string> got;
  client.get("tokens:k", [&](std::exception_ptr e, std::optional<std::string> v) {
    if (e) {
      got.set_exception(e);
    } else {
      got.set_value(v.value_or("(nil)"));
    }
  });
  EXPECT_EQ(got.get_future().get(), "v");

  auto later = client.get("tokens:k", asio::deferred);  // nothing is sent yet
  std::promise<std::optional<std::string>> deferred_result;
  std::move(later)([&](std::exception_ptr e, std::optional<std::string> v) {
    if (e) {
      deferred_result.set_exception(e);
    } else {
      deferred_result.set_value(std::move(v));
    }
  });
  EXPECT_EQ(deferred_result.get_future().get(), "v");

  client.disconnect(asio::use_future).get();
  work.reset();
  runner.join();
}

// Cancellation from other threads of a multi-threaded io_context: get() raced against a short
// timer in 64 coroutines on 4 threads (the TSan build runs this). Each coroutine runs on a
// strand of its own, as Asio requires for awaitable operators on a multi-threaded io_context
// (their two branches would otherwise run at once); the client's replies and cancellations
// arrive from whichever thread runs the connection.
TEST(ClientThreads, CancellationFromOtherThreadsIsSafe) {
  using namespace asio::experimental::awaitable_operators;
  asio::io_context io(4);
  Client client(io.get_executor(), shared_redis_url());
  std::atomic<int> replies{0}, timers{0}, finished{0};
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await client.connect();
        co_await client.set("cancel:k", "v");
        for (int w = 0; w < 64; ++w)
          asio::co_spawn(
              asio::make_strand(io),
              [&, w]() -> asio::awaitable<void> {
                std::minstd_rand rng(static_cast<unsigned>(w));
                for (int i = 0; i < 200; ++i) {
                  asio::steady_timer t(co_await asio::this_coro::executor,
                                       std::chrono::microseconds(rng() % 400));
                  auto r = co_await (client.get("cancel:k") || t.async_wait(asio::use_awaitable));
                  if (r.index() == 0) {
                    EXPECT_EQ(std::get<0>(r), "v");
                    ++replies;
                  } else {
                    ++timers;
                  }
                }
              },
              [&](std::exception_ptr e) {
                if (e) ADD_FAILURE() << "a worker failed";
                if (++finished == 64) client.close();
              });
      },
      asio::detached);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] { io.run(); });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(finished.load(), 64);
  EXPECT_EQ(replies + timers, 64 * 200);
  std::printf("cancellation race: %d replies first, %d timers first (%llu requests cancelled)\n",
              replies.load(), timers.load(),
              static_cast<unsigned long long>(client.stats().timeouts));
}
