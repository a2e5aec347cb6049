// The connection's state machine without a socket or a clock: handshake, in-order matching,
// deadlines, health, backoff, the backlog bound and the graceful stop, driven event by event
// with a fake time.
#include <gtest/gtest.h>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <cstring>

#include "tempest/redis/connection.hpp"
#include "tempest/redis/detail/session.hpp"
#include "tempest/redis/error.hpp"

using namespace tempest::redis;
using namespace std::chrono_literals;
using detail::Request;
using detail::RequestKind;
using detail::RequestRef;
using detail::Session;
using detail::TimePoint;

namespace {

std::string error_text(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  }
  return {};
}

template <class E>
bool is(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
  }
  return false;
}

Config base_config() {
  Config c;
  c.host = "cache.internal";
  c.reconnect_min = 100ms;
  c.reconnect_max = 1600ms;
  c.stable_after = 5s;
  return c;
}

struct Harness {
  explicit Harness(Config c = base_config(), bool connect = true)
      : session(std::move(c),
                spdlog::create<spdlog::sinks::null_sink_st>("session-test-" + std::to_string(++n)),
                42) {
    if (connect) up();
  }
  ~Harness() { spdlog::drop("session-test-" + std::to_string(n)); }

  Session session;
  TimePoint now = TimePoint{} + 1000h;
  std::string written;  // everything the session asked to write, in order
  std::vector<RequestRef> done;
  Session::Actions last;
  static inline int n = 0;

  // Takes the actions; a write is "completed" at once unless `hold_write`.
  Session::Actions step(bool hold_write = false) {
    last = session.take_actions(now);
    for (Request* r = last.done; r != nullptr;) {
      Request* next = r->done_next;
      r->done_next = nullptr;
      done.push_back(RequestRef::adopt(r));
      r = next;
    }
    if (last.write) {
      written += session.write_buffer();
      if (!hold_write) session.on_written(now);
    }
    return last;
  }
  void feed(std::string_view bytes) {
    auto [p, n] = session.read_space();
    ASSERT_LE(bytes.size(), n);
    std::memcpy(p, bytes.data(), bytes.size());
    session.on_read(now, bytes.size());
    step();
  }
  void up() {
    session.start(now);
    ASSERT_TRUE(step().open);
    session.on_open(now);
    step();
    feed("+PONG\r\n");
    ASSERT_EQ(session.phase(), Session::Phase::ready);
    written.clear();
  }
  RequestRef submit(Command c, std::optional<Duration> timeout = std::nullopt) {
    RequestRef r = RequestRef::make();
    r->command() = std::move(c);
    if (timeout) r->set_timeout(*timeout);
    RequestRef mine = r;
    session.submit(now, r.detach());
    step();
    return mine;
  }
  RequestRef wait(RequestKind kind, Duration timeout, std::uint8_t flags = 0) {
    RequestRef r = RequestRef::make();
    r->set_kind(kind);
    r->set_timeout(timeout);
    r->flags = flags;
    RequestRef mine = r;
    session.submit(now, r.detach());
    step();
    return mine;
  }
  void advance(Duration d) {
    now += d;
    session.on_timer(now);
    step();
  }
  // After a loss: the backoff's timer fires, the transport opens, the handshake's PING is answered.
  void reconnect() {
    now = last.wake;
    session.on_timer(now);
    step();
    session.on_open(now);
    step();
    feed("+PONG\r\n");
    ASSERT_EQ(session.phase(), Session::Phase::ready);
  }
};

}  // namespace

TEST(Session, HandshakeIsAuthSelectNameAndPingBeforeAnyUserRequest) {
  Config c = base_config();
  c.username = "app";
  c.password = "hunter2";
  c.db = 3;
  c.client_name = "orders";
  Harness h(c, false);
  h.session.start(h.now);
  EXPECT_TRUE(h.step().open);
  auto early = h.submit(cmd("GET", "k"));  // queued before the link is up
  EXPECT_TRUE(h.written.empty());
  h.session.on_open(h.now);
  h.step(/*hold_write=*/true);
  EXPECT_EQ(h.written, cmd("AUTH", "app", "hunter2").wire() + cmd("SELECT", 3).wire() +
                           cmd("CLIENT", "SETNAME", "orders").wire() + Command("PING").wire());
  h.session.on_written(h.now);
  h.step();
  h.feed("+OK\r\n+OK\r\n+OK\r\n");
  EXPECT_EQ(h.session.phase(), Session::Phase::handshaking);
  EXPECT_FALSE(early->completed());
  h.written.clear();
  h.feed("+PONG\r\n");
  EXPECT_EQ(h.session.phase(), Session::Phase::ready);
  EXPECT_EQ(h.written, cmd("GET", "k").wire());  // the user's request goes out only now
  h.feed("$1\r\nv\r\n");
  ASSERT_TRUE(early->completed());
  EXPECT_EQ(early->reply(), Reply::string("v"));
}

TEST(Session, FailedAuthClosesAndNamesTheStepWithoutThePassword) {
  Config c = base_config();
  c.password = "hunter2";
  Harness h(c, false);
  h.session.start(h.now);
  h.step();
  auto connect = h.wait(RequestKind::wait_ready, 2s, detail::kWaitFirstAttempt);
  h.session.on_open(h.now);
  h.step();
  h.feed("-WRONGPASS invalid username-password pair or user is disabled. hunter2\r\n");
  EXPECT_FALSE(h.last.close);  // the PING's reply is still to come
  h.feed("-NOAUTH Authentication required.\r\n");
  EXPECT_TRUE(h.last.close);
  EXPECT_EQ(h.session.phase(), Session::Phase::backoff);
  const std::string why = h.session.last_error();
  EXPECT_NE(why.find("AUTH failed: WRONGPASS"), std::string::npos) << why;
  EXPECT_EQ(why.find("hunter2"), std::string::npos) << why;
  ASSERT_TRUE(connect->completed());
  EXPECT_TRUE(connect->reply().is_error());
  EXPECT_NE(connect->reply().str().find("cannot connect to redis://:***@cache.internal"),
            std::string::npos)
      << connect->reply().str();
}

TEST(Session, SomethingThatIsNotRedisFailsTheHandshakeClearly) {
  Harness h(base_config(), false);
  h.session.start(h.now);
  h.step();
  h.session.on_open(h.now);
  h.step();
  h.feed("HTTP/1.1 400 Bad Request\r\n\r\n");
  EXPECT_TRUE(h.last.close);
  EXPECT_NE(h.session.last_error().find("is this a Redis server?"), std::string::npos)
      << h.session.last_error();
}

TEST(Session, ExtraHandshakeRepliesNeverReachUserRequests) {
  Harness h(base_config(), false);
  h.session.start(h.now);
  h.step();
  auto user = h.submit(cmd("GET", "k"));
  h.session.on_open(h.now);
  h.step();
  h.feed("+PONG\r\n+OK\r\n");  // one reply too many
  EXPECT_TRUE(h.last.close);
  EXPECT_NE(h.session.last_error().find("no request was waiting"), std::string::npos);
  EXPECT_FALSE(user->completed());  // it was never written; it waits for the next link
  EXPECT_EQ(h.session.queued(), 1u);
}

// A listener that accepts and closes: every attempt fails in the handshake, and the delays
// follow the backoff (doubling, +-25% jitter, capped), with one warning for the whole burst.
TEST(Session, AcceptThenCloseIsRetriedAtTheBackoffsPace) {
  Harness h(base_config(), false);
  h.session.start(h.now);
  h.step();
  auto connect = h.wait(RequestKind::wait_ready, 2s, detail::kWaitFirstAttempt);
  std::vector<Duration> delays;
  for (int attempt = 0; attempt < 7; ++attempt) {
    h.session.on_open(h.now);
    h.step();
    h.session.on_link_error(h.now, "the server closed the connection");
    EXPECT_TRUE(h.step().close);
    ASSERT_EQ(h.session.phase(), Session::Phase::backoff);
    const auto delay = std::chrono::duration_cast<Duration>(h.last.wake - h.now);
    delays.push_back(delay);
    h.now = h.last.wake;
    h.session.on_timer(h.now);
    EXPECT_TRUE(h.step().open);
  }
  const Duration expected[] = {100ms, 200ms, 400ms, 800ms, 1600ms, 1600ms, 1600ms};
  for (std::size_t i = 0; i < delays.size(); ++i) {
    EXPECT_GE(delays[i], expected[i] * 3 / 4) << i;
    EXPECT_LE(delays[i], expected[i] * 5 / 4) << i;
  }
  EXPECT_EQ(h.session.failed_attempts(), 7u);
  ASSERT_TRUE(connect->completed());
  EXPECT_NE(connect->reply().str().find("before answering the handshake"), std::string::npos)
      << connect->reply().str();
}

TEST(Session, BackoffStartsAgainOnlyAfterTheLinkStayedUp) {
  Harness h;
  // Lost after one second up: not stable, the delay keeps growing.
  h.advance(1s);
  h.session.on_link_error(h.now, "reset");
  h.step();
  const auto first = h.last.wake - h.now;
  h.reconnect();
  h.advance(1s);
  h.session.on_link_error(h.now, "reset");
  h.step();
  const auto second = h.last.wake - h.now;
  EXPECT_GT(second, first);
  EXPECT_GE(second, 200ms * 3 / 4);
  // Up for longer than stable_after: the next loss reconnects after reconnect_min again.
  h.reconnect();
  for (int i = 0; i < 6; ++i) {
    h.advance(1s);
    h.feed("+PONG\r\n");  // the health checks' answers
  }
  h.session.on_link_error(h.now, "reset");
  h.step();
  EXPECT_LE(h.last.wake - h.now, 100ms * 5 / 4);
}

TEST(Session, RepliesGoToTheirRequestsInOrder) {
  Harness h;
  auto a = h.submit(cmd("ECHO", "a"));
  auto b = h.submit(cmd("ECHO", "b"));
  Pipeline p;
  p.add("ECHO", "c").add("ECHO", "d");
  RequestRef pipe = RequestRef::make();
  pipe->set_pipeline(p.wire(), 2);
  RequestRef keep = pipe;
  h.session.submit(h.now, pipe.detach());
  h.step();
  EXPECT_EQ(h.written, cmd("ECHO", "a").wire() + cmd("ECHO", "b").wire() + p.wire());
  h.feed("$1\r\na\r\n$1\r\nb\r\n$1\r");  // the last reply arrives in two reads
  EXPECT_EQ(a->reply(), Reply::string("a"));
  EXPECT_EQ(b->reply(), Reply::string("b"));
  EXPECT_FALSE(keep->completed());
  h.feed("\nc\r\n$1\r\nd\r\n");
  ASSERT_TRUE(keep->completed());
  EXPECT_EQ(keep->reply(), Reply::array({Reply::string("c"), Reply::string("d")}));
  EXPECT_EQ(h.session.in_flight(), 0u);
}

TEST(Session, AnOversizedReplyFailsOnlyItsRequest) {
  Config c = base_config();
  c.max_reply_size = 1024;
  Harness h(c);
  auto a = h.submit(cmd("GET", "big"));
  auto b = h.submit(cmd("GET", "small"));
  h.feed("$2000\r\n" + std::string(2000, 'x') + "\r\n$2\r\nok\r\n");
  ASSERT_TRUE(a->completed());
  EXPECT_TRUE(is<ProtocolError>(a->error()));
  EXPECT_NE(error_text(a->error()).find("larger than 1024 bytes"), std::string::npos);
  EXPECT_EQ(b->reply(), Reply::string("ok"));
  EXPECT_EQ(h.session.phase(), Session::Phase::ready);
  EXPECT_EQ(h.session.counters().rejected.load(), 1u);
}

TEST(Session, UnsolicitedReplyDropsTheLinkAndFailsWhatWasInFlight) {
  Harness h;
  auto a = h.submit(cmd("GET", "k"));
  h.feed("$1\r\nv\r\n+surprise\r\n");
  EXPECT_EQ(a->reply(), Reply::string("v"));
  EXPECT_TRUE(h.last.close);
  EXPECT_EQ(h.session.phase(), Session::Phase::backoff);
}

TEST(Session, DeadlinesFailRequestsAndLateRepliesAreDropped) {
  Harness h;
  auto slow = h.submit(cmd("GET", "a"), 100ms);
  auto later = h.submit(cmd("GET", "b"), 300ms);
  EXPECT_EQ(h.last.wake, h.now + 100ms);
  h.advance(100ms);
  ASSERT_TRUE(slow->completed());
  EXPECT_TRUE(is<TimeoutError>(slow->error()));
  EXPECT_NE(error_text(slow->error()).find("GET timed out after 100 ms"), std::string::npos)
      << error_text(slow->error());
  EXPECT_FALSE(later->completed());
  h.feed("$1\r\nA\r\n$1\r\nB\r\n");  // the first reply belongs to the expired request: dropped
  EXPECT_EQ(later->reply(), Reply::string("B"));
  EXPECT_EQ(h.session.counters().timeouts.load(), 1u);
}

TEST(Session, CancelledQueuedRequestIsNeverWritten) {
  Harness h(base_config(), false);
  h.session.start(h.now);
  h.step();
  auto a = h.submit(cmd("GET", "a"));
  auto b = h.submit(cmd("GET", "b"));
  h.session.cancel(h.now, a.get(), std::make_exception_ptr(TimeoutError("cancelled")));
  h.step();
  EXPECT_TRUE(a->completed());
  h.session.on_open(h.now);
  h.step();
  h.feed("+PONG\r\n");
  EXPECT_EQ(h.written, Command("PING").wire() + cmd("GET", "b").wire());
  h.session.on_open(h.now);  // a stale report changes nothing
  EXPECT_EQ(h.session.in_flight(), 1u);
}

TEST(Session, RequestsBeforeStartFailClearly) {
  Harness h(base_config(), false);
  auto early = h.submit(cmd("GET", "k"));
  ASSERT_TRUE(early->completed());
  EXPECT_NE(error_text(early->error()).find("call connect() first"), std::string::npos);
}

// 100,000 requests queued during an outage leave the queue as they expire; the queue is empty
// afterwards and the deadline bookkeeping with it.
TEST(Session, BacklogDuringAnOutageExpiresAndLeavesNothingBehind) {
  Config c = base_config();
  Harness h(c);
  h.session.on_link_error(h.now, "reset");
  h.step();
  std::vector<RequestRef> mine;
  mine.reserve(100000);
  for (int i = 0; i < 100000; ++i) {
    RequestRef r = RequestRef::make();
    r->command() = cmd("GET", "k");
    // Two different timeouts, interleaved.
    r->set_timeout(i % 2 == 0 ? 1000ms : 250ms);
    mine.push_back(r);
    h.session.submit(h.now, r.detach());
    if (i % 1000 == 0) h.now += 1ms;
  }
  h.step();
  EXPECT_EQ(h.session.queued(), 100000u);
  for (int i = 0; i < 30 && h.session.pending() > 0; ++i) {
    h.now += 100ms;
    h.session.on_timer(h.now);
    h.step();
  }
  EXPECT_EQ(h.session.queued(), 0u);
  EXPECT_EQ(h.session.pending(), 0u);
  EXPECT_EQ(h.done.size(), 100000u);
  for (const auto& r : mine)
    ASSERT_TRUE(is<TimeoutError>(r->error()));
}

// Every request with a timeout of its own (more distinct timeouts than the deadline lanes):
// they still expire in deadline order, each at its time.
TEST(Session, ManyDistinctTimeoutsExpireInOrder) {
  Harness h;
  h.session.on_link_error(h.now, "reset");
  h.step();
  std::vector<RequestRef> mine;
  for (int i = 0; i < 2000; ++i) {
    RequestRef r = RequestRef::make();
    r->command() = cmd("GET", "k");
    r->set_timeout(Duration(1000 + (i * 7919) % 2000));  // 2,000 distinct, shuffled
    mine.push_back(r);
    h.session.submit(h.now, r.detach());
  }
  h.step();
  std::size_t expired = 0;
  for (Duration t = 1000ms; t < 3000ms; t += 1ms) {
    h.now = TimePoint{} + 1000h + t;
    h.session.on_timer(h.now);
    h.step();
    for (const auto& r : mine)
      if (r->completed() && r->timeout() == t) ++expired;
    ASSERT_EQ(h.done.size(), expired) << "at " << t.count() << " ms";
  }
  EXPECT_EQ(expired, 2000u);
  EXPECT_EQ(h.session.pending(), 0u);
}

TEST(Session, MaxPendingFailsNewRequestsAtOnce) {
  Config c = base_config();
  c.max_pending = 3;
  Harness h(c);
  auto a = h.submit(cmd("GET", "a"));
  auto b = h.submit(cmd("GET", "b"));
  auto c3 = h.submit(cmd("GET", "c"));
  auto d = h.submit(cmd("GET", "d"));
  ASSERT_TRUE(d->completed());
  EXPECT_TRUE(is<ConnectionError>(d->error()));
  EXPECT_NE(error_text(d->error()).find("max_pending"), std::string::npos);
  EXPECT_FALSE(c3->completed());
  h.feed("$1\r\nA\r\n");
  auto e = h.submit(cmd("GET", "e"));  // room again
  EXPECT_FALSE(e->completed());
}

TEST(Session, WhenDisconnectedFailRejectsAtOnceDuringAnOutage) {
  Config c = base_config();
  c.when_disconnected = Config::WhenDisconnected::fail;
  Harness h(c);
  auto in_flight = h.submit(cmd("GET", "a"));
  h.session.on_link_error(h.now, "reset");
  h.step();
  EXPECT_TRUE(is<ConnectionError>(in_flight->error()));
  auto during = h.submit(cmd("GET", "b"));
  ASSERT_TRUE(during->completed());
  EXPECT_NE(error_text(during->error()).find("when_disconnected=fail"), std::string::npos);
}

TEST(Session, HealthPingWhenIdleAndADeadLinkIsDropped) {
  Harness h;
  h.advance(1s);  // nothing read for health_interval: a PING goes out
  EXPECT_EQ(h.written, Command("PING").wire());
  h.advance(999ms);
  EXPECT_FALSE(h.last.close);
  h.advance(1ms);
  EXPECT_TRUE(h.last.close);
  EXPECT_NE(h.session.last_error().find("no reply from Redis within 1000 ms of a PING"),
            std::string::npos);
}

// DEBUG SLEEP 3 with a 5 s timeout: the silence is explained by that request's own deadline, so
// the link stays up and the command completes; a 1 s request behind it times out alone.
TEST(Session, SlowCommandIsNotMistakenForADeadLink) {
  Harness h;
  auto slow = h.submit(cmd("DEBUG", "SLEEP", 3), 5s);
  auto quick = h.submit(cmd("GET", "k"), 1s);
  for (int i = 0; i < 29; ++i)
    h.advance(100ms);
  EXPECT_FALSE(h.last.close);
  EXPECT_TRUE(is<TimeoutError>(quick->error()));
  EXPECT_FALSE(slow->completed());
  h.feed("+OK\r\n$1\r\nv\r\n+PONG\r\n");
  EXPECT_EQ(slow->reply(), Reply::status("OK"));
  EXPECT_EQ(h.session.phase(), Session::Phase::ready);
  // Without such a request, the same silence ends the link.
  auto again = h.submit(cmd("GET", "k"), 1s);
  for (int i = 0; i < 40 && !h.last.close; ++i)
    h.advance(100ms);
  EXPECT_TRUE(h.last.close);
}

// Requests written while the link is already silent do not explain the silence, however many
// and however long their deadlines: only the oldest request in flight can.
TEST(Session, NewRequestsDoNotKeepASilentLinkAlive) {
  Harness h;
  std::vector<RequestRef> keep;
  for (int i = 0; i < 40 && !h.last.close; ++i) {
    keep.push_back(h.submit(cmd("GET", "k"), 200ms));
    h.advance(50ms);
  }
  ASSERT_TRUE(h.last.close);
  // The first request timed out at 200 ms; the PING went out at 1 s; dead 1 s later.
  EXPECT_LE(h.now - (TimePoint{} + 1000h), 2050ms);
}

TEST(Session, StopDrainsThenStopsAndALostLinkStopsAtOnce) {
  Harness h;
  auto a = h.submit(cmd("GET", "a"));
  auto stopped = h.wait(RequestKind::wait_stopped, 2s);
  h.session.stop(h.now);
  h.step();
  EXPECT_FALSE(stopped->completed());
  auto refused = h.submit(cmd("GET", "b"));
  EXPECT_NE(error_text(refused->error()).find("closed by disconnect()"), std::string::npos);
  h.feed("$1\r\nA\r\n");
  EXPECT_EQ(a->reply(), Reply::string("A"));
  EXPECT_TRUE(h.last.close);
  EXPECT_TRUE(stopped->completed());
  EXPECT_EQ(h.session.phase(), Session::Phase::stopped);

  Harness g;
  auto pending = g.submit(cmd("GET", "a"));
  auto done = g.wait(RequestKind::wait_stopped, 2s);
  g.session.stop(g.now);
  g.step();
  g.session.on_link_error(g.now, "reset");  // the link drops while it drains
  g.step();
  EXPECT_TRUE(done->completed());
  EXPECT_TRUE(is<ConnectionError>(pending->error()));
  EXPECT_EQ(g.session.phase(), Session::Phase::stopped);
}

// A dedicated connection does not quietly reconnect: its WATCH or transaction would be gone.
TEST(Session, WithoutReconnectALostLinkStopsAndSaysWhy) {
  Harness h;
  h.session.set_reconnect(false);
  auto in_flight = h.submit(cmd("WATCH", "k"));
  h.session.on_link_error(h.now, "reset");
  h.step();
  EXPECT_TRUE(h.last.close);
  EXPECT_FALSE(h.last.open);
  EXPECT_EQ(h.session.phase(), Session::Phase::stopped);
  EXPECT_TRUE(is<ConnectionError>(in_flight->error()));
  auto later = h.submit(cmd("EXEC"));
  ASSERT_TRUE(later->completed());
  EXPECT_NE(error_text(later->error()).find("dedicated connection"), std::string::npos)
      << error_text(later->error());
  h.advance(10s);
  EXPECT_FALSE(h.last.open);  // never again
}

// A blocking command whose deadline passes while Redis still blocks: the link is closed, so that
// Redis does not hand it an element when it unblocks.
TEST(Session, ABlockingCommandOutlivingItsDeadlineClosesTheLink) {
  Harness h;
  h.session.set_reconnect(false);
  RequestRef pop = RequestRef::make();
  pop->command() = cmd("BLPOP", "q", 5);
  pop->set_timeout(200ms);
  pop->flags = detail::kBlockingCommand;
  RequestRef keep = pop;
  h.session.submit(h.now, pop.detach());
  h.step();
  h.advance(200ms);
  EXPECT_TRUE(is<TimeoutError>(keep->error()));
  EXPECT_TRUE(h.last.close);
  EXPECT_EQ(h.session.phase(), Session::Phase::stopped);
  EXPECT_NE(h.session.last_error().find("blocking BLPOP outlived its deadline"), std::string::npos)
      << h.session.last_error();
}

TEST(Session, CancelledBeforeSubmissionWaitersEndAtOnce) {
  Harness h(base_config(), false);
  h.session.start(h.now);
  h.step();
  RequestRef w = RequestRef::make();
  w->set_kind(RequestKind::wait_ready);
  w->set_timeout(2s);
  w->cancel_requested = true;
  RequestRef keep = w;
  h.session.submit(h.now, w.detach());
  h.step();
  ASSERT_TRUE(keep->completed());
  EXPECT_TRUE(is<TimeoutError>(keep->error()));
}

// The session asks to be woken exactly when something is due: stepping only to the times it
// asks for, the PING goes out after health_interval of silence, the link is judged at
// health_timeout after it, and a reply moves the next check to an interval after that reply
// (even when health_timeout > health_interval).
TEST(Session, WakesUpExactlyWhenSomethingIsDue) {
  Config c = base_config();
  c.health_interval = 300ms;
  c.health_timeout = 2s;
  Harness h(c);
  const TimePoint up = h.now;
  EXPECT_EQ(h.last.wake, up + 300ms);
  h.now = h.last.wake;
  h.session.on_timer(h.now);
  h.step();
  EXPECT_EQ(h.written, Command("PING").wire());
  EXPECT_EQ(h.last.wake, up + 300ms + 2s);
  h.now += 50ms;
  h.feed("+PONG\r\n");
  EXPECT_EQ(h.last.wake, h.now + 300ms);  // not the 2 s check that was due
  auto r = h.submit(cmd("GET", "k"), 100ms);
  EXPECT_EQ(h.last.wake, h.now + 100ms);
  h.now = h.last.wake;
  h.session.on_timer(h.now);
  h.step();
  EXPECT_TRUE(is<TimeoutError>(r->error()));
}

TEST(Session, WaitReadyEndsAtItsDeadlineWithTheLastError) {
  Harness h(base_config(), false);
  h.session.start(h.now);
  h.step();
  auto w = h.wait(RequestKind::wait_ready, 300ms);
  h.session.on_open_failed(h.now, "cannot connect to cache.internal:6379: Connection refused");
  h.step();
  EXPECT_FALSE(w->completed());  // keeps waiting through the retries
  h.advance(300ms);
  ASSERT_TRUE(w->completed());
  EXPECT_NE(w->reply().str().find("Connection refused"), std::string::npos) << w->reply().str();
}

// The deadline index against a plain ordered set: a few timeouts (lanes), some clocks a little
// behind (out of order within a lane), more distinct timeouts than lanes (the overflow set), and
// removals from anywhere. front() must always be a request with the earliest deadline.
TEST(DeadlineList, FrontIsAlwaysAnEarliestDeadline) {
  detail::DeadlineList list;
  std::set<std::pair<TimePoint, Request*>> model;
  std::vector<RequestRef> pool;
  std::mt19937 rng(7);
  TimePoint clock = TimePoint{} + 1h;
  for (int step = 0; step < 20000; ++step) {
    const bool add = model.empty() || rng() % 100 < 55;
    if (add) {
      RequestRef r = RequestRef::make();
      // Mostly 3 timeouts; now and then one of 40 others (more than the 8 lanes).
      const auto span =
          rng() % 10 < 8 ? Duration(100 * (1 + rng() % 3)) : Duration(1000 + 10 * (rng() % 40));
      clock += Duration(rng() % 3);
      const TimePoint created = clock - Duration(rng() % 4 == 0 ? rng() % 5 : 0);
      r->set_times(created, created + span);
      list.insert(r.get());
      model.emplace(r->deadline(), r.get());
      pool.push_back(std::move(r));
    } else {
      auto it = model.begin();
      std::advance(it, rng() % model.size());
      list.remove(it->second);
      model.erase(it);
    }
    ASSERT_EQ(list.size(), model.size());
    if (model.empty()) {
      ASSERT_EQ(list.front(), nullptr);
    } else {
      ASSERT_NE(list.front(), nullptr);
      ASSERT_EQ(list.front()->deadline(), model.begin()->first) << "at step " << step;
    }
  }
  while (!model.empty()) {
    ASSERT_EQ(list.front()->deadline(), model.begin()->first);
    list.remove(model.begin()->second);
    model.erase(model.begin());
  }
  EXPECT_TRUE(list.empty());
}

namespace {
std::string resp_array(std::initializer_list<std::string_view> items) {
  std::string out = "*" + std::to_string(items.size()) + "\r\n";
  for (auto i : items)
    out += "$" + std::to_string(i.size()) + "\r\n" + std::string(i) + "\r\n";
  return out;
}
std::string confirmation(std::string_view kind, std::string_view name, int count) {
  std::string out = "*3\r\n$" + std::to_string(kind.size()) + "\r\n" + std::string(kind) + "\r\n";
  out += "$" + std::to_string(name.size()) + "\r\n" + std::string(name) + "\r\n";
  return out + ":" + std::to_string(count) + "\r\n";
}
RequestRef subscribe_request(Harness& h, std::string_view verb, std::vector<std::string> names,
                             Session::Subscription kind, bool on) {
  Command c(verb);
  for (const auto& n : names)
    c.arg(n);
  RequestRef r = RequestRef::make();
  r->set_pipeline(c.wire(), names.size());  // one confirmation per name
  h.session.subscribed(kind, names, on);
  RequestRef mine = r;
  h.session.submit(h.now, r.detach());
  h.step();
  return mine;
}
}  // namespace

TEST(Session, SubscriberTellsMessagesFromConfirmations) {
  Harness h(base_config(), false);
  h.session.set_subscriber(true);
  h.up();
  auto sub = subscribe_request(h, "SUBSCRIBE", {"a", "b"}, Session::Subscription::channel, true);
  EXPECT_EQ(h.written, cmd("SUBSCRIBE", "a", "b").wire());
  // A message for `a` arrives between the two confirmations.
  h.feed(confirmation("subscribe", "a", 1) + resp_array({"message", "a", "hi"}) +
         confirmation("subscribe", "b", 2));
  ASSERT_TRUE(sub->completed());
  ASSERT_EQ(sub->reply().elements().size(), 2u);
  EXPECT_EQ(sub->reply().elements()[1].elements()[1].str(), "b");
  h.feed(resp_array({"pmessage", "n*", "news", "x"}) + resp_array({"message", "b", "there"}));
  std::vector<Session::Pushed> got;
  h.session.take_messages(got);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_FALSE(got[0].gap);
  EXPECT_EQ(got[0].reply.elements()[2].str(), "hi");
  EXPECT_EQ(got[1].reply.elements()[0].str(), "pmessage");
  EXPECT_EQ(got[2].reply.elements()[2].str(), "there");
  EXPECT_FALSE(h.session.has_messages());
  // A PING in subscribed mode is answered ["pong", ""]: a reply like any other.
  auto ping = h.submit(Command("PING"));
  h.feed(resp_array({"pong", ""}));
  ASSERT_TRUE(ping->completed());
  EXPECT_EQ(ping->reply().elements()[0].str(), "pong");
}

TEST(Session, SubscriberSubscribesAgainOnANewLinkAndReportsTheGap) {
  Harness h(base_config(), false);
  h.session.set_subscriber(true);
  h.up();
  (void)subscribe_request(h, "SUBSCRIBE", {"a", "b"}, Session::Subscription::channel, true);
  (void)subscribe_request(h, "PSUBSCRIBE", {"n*"}, Session::Subscription::pattern, true);
  h.feed(confirmation("subscribe", "a", 1) + confirmation("subscribe", "b", 2) +
         confirmation("psubscribe", "n*", 3));
  (void)subscribe_request(h, "UNSUBSCRIBE", {"b"}, Session::Subscription::channel, false);
  h.feed(confirmation("unsubscribe", "b", 2));
  std::vector<Session::Pushed> got;
  h.session.take_messages(got);
  EXPECT_TRUE(got.empty());  // no gap on the first link
  h.session.on_link_error(h.now, "the connection was reset");
  h.step();
  h.written.clear();
  h.now = h.last.wake;
  h.session.on_timer(h.now);
  h.step();
  h.session.on_open(h.now);
  h.step();
  EXPECT_EQ(h.written,
            Command("PING").wire() + cmd("SUBSCRIBE", "a").wire() + cmd("PSUBSCRIBE", "n*").wire());
  h.feed("+PONG\r\n" + confirmation("subscribe", "a", 1));
  EXPECT_EQ(h.session.phase(), Session::Phase::handshaking);  // a pattern still to confirm
  h.feed(confirmation("psubscribe", "n*", 2) + resp_array({"message", "a", "after"}));
  EXPECT_EQ(h.session.phase(), Session::Phase::ready);
  h.session.take_messages(got);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].gap);
  EXPECT_EQ(got[1].reply.elements()[2].str(), "after");
}

// Sentinel: the handshake ends with ROLE, and a node that is not a master is refused (a stale
// sentinel named a replica): the attempt fails, naming the role and the service.
TEST(Session, UnderSentinelTheHandshakeRefusesANodeThatIsNotTheMaster) {
  Config c = base_config();
  c.sentinel.enabled = true;
  c.sentinel.service = "orders";
  c.sentinel.sentinels = {Endpoint{"s1", 26379}};
  for (const bool master : {false, true}) {
    Harness h(c, false);
    h.session.start(h.now);
    h.step();
    h.session.on_open(h.now);
    h.step();
    EXPECT_EQ(h.written, Command("PING").wire() + Command("ROLE").wire());
    h.feed("+PONG\r\n");
    EXPECT_EQ(h.session.phase(), Session::Phase::handshaking);  // ROLE still to come
    if (master) {
      h.feed("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
      EXPECT_EQ(h.session.phase(), Session::Phase::ready);
    } else {
      h.feed("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n:0\r\n");
      EXPECT_TRUE(h.last.close);
      EXPECT_EQ(h.session.phase(), Session::Phase::backoff);
      const auto why = h.session.last_error();
      EXPECT_NE(why.find("says ROLE slave, not master"), std::string::npos) << why;
      EXPECT_NE(why.find("'orders'"), std::string::npos) << why;
    }
  }
}

// A link to a Sentinel service's replica, for reads: ROLE must say slave; a replica a failover
// promoted (ROLE master) is refused, so its reads go elsewhere.
TEST(Session, AReplicaLinkRefusesANodeThatIsNoLongerAReplica) {
  for (const bool replica : {false, true}) {
    Harness h(base_config(), false);
    h.session.expect_role(Session::Role::replica);
    h.session.start(h.now);
    h.step();
    h.session.on_open(h.now);
    h.step();
    EXPECT_EQ(h.written, Command("PING").wire() + Command("ROLE").wire());
    h.feed("+PONG\r\n");
    if (replica) {
      h.feed("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n:0\r\n");
      EXPECT_EQ(h.session.phase(), Session::Phase::ready);
    } else {
      h.feed("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
      EXPECT_TRUE(h.last.close);
      EXPECT_EQ(h.session.phase(), Session::Phase::backoff);
      const auto why = h.session.last_error();
      EXPECT_NE(why.find("says ROLE master, not slave"), std::string::npos) << why;
    }
  }
}

// A replica still syncing (restarted without persistence: an empty data set until its first
// sync) is not read from: its ROLE must say its link to the master is "connected".
TEST(Session, AReplicaLinkRefusesAReplicaThatHasNotSynced) {
  for (const std::string state : {"connect", "connecting", "sync"}) {
    Harness h(base_config(), false);
    h.session.expect_role(Session::Role::replica);
    h.session.start(h.now);
    h.step();
    h.session.on_open(h.now);
    h.step();
    h.feed("+PONG\r\n*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$" +
           std::to_string(state.size()) + "\r\n" + state + "\r\n:-1\r\n");
    EXPECT_TRUE(h.last.close) << state;
    EXPECT_EQ(h.session.phase(), Session::Phase::backoff) << state;
    const auto why = h.session.last_error();
    EXPECT_NE(why.find("link to its master is '" + state + "'"), std::string::npos) << why;
  }
}

// Sentinel: a write answered -READONLY went to a demoted master (a failover): the caller gets
// the error, and the link is dropped so that the next one finds the new master.
TEST(Session, UnderSentinelReadonlyDropsTheLinkToFindTheMasterAgain) {
  Config c = base_config();
  c.sentinel.enabled = true;
  c.sentinel.service = "orders";
  c.sentinel.sentinels = {Endpoint{"s1", 26379}};
  Harness h(c, false);
  h.session.start(h.now);
  h.step();
  h.session.on_open(h.now);
  h.step();
  h.feed("+PONG\r\n*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
  ASSERT_EQ(h.session.phase(), Session::Phase::ready);
  auto write = h.submit(cmd("SET", "k", "v"));
  auto next = h.submit(cmd("GET", "k"));
  h.feed("-READONLY You can't write against a read only replica.\r\n");
  ASSERT_TRUE(write->completed());
  EXPECT_TRUE(write->reply().is_error());
  EXPECT_TRUE(h.last.close);
  EXPECT_EQ(h.session.phase(), Session::Phase::backoff);
  EXPECT_NE(h.session.last_error().find("answered READONLY"), std::string::npos);
  ASSERT_TRUE(next->completed());  // written after it: sent, fate unknown, as for any lost link
  // Without Sentinel the same reply is just an error.
  Harness plain;
  auto w = plain.submit(cmd("SET", "k", "v"));
  plain.feed("-READONLY You can't write against a read only replica.\r\n");
  EXPECT_TRUE(w->completed());
  EXPECT_EQ(plain.session.phase(), Session::Phase::ready);
}
