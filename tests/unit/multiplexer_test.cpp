// The multiplexer without a socket: batching, in-order matching, deadlines, cancellation, loss.
#include <gtest/gtest.h>

#include "tempest/redis/detail/multiplexer.hpp"
#include "tempest/redis/error.hpp"

using namespace tempest::redis;
using detail::Clock;
using detail::Multiplexer;

namespace {

struct Recorder : detail::Request {
  using Request::Request;
  int completions = 0;
  std::exception_ptr error;
  Reply reply;
  void on_complete(std::exception_ptr e, Reply r) override {
    ++completions;
    error = std::move(e);
    reply = std::move(r);
  }
  std::string error_text() const {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
  }
};

const Clock::time_point t0 = Clock::now();
const Clock::time_point far = t0 + std::chrono::hours(1);

std::shared_ptr<Recorder> make(std::string_view name, Clock::time_point deadline = far) {
  return std::make_shared<Recorder>(Command(name), deadline);
}

auto timeout_error = [](const detail::Request&) {
  return std::make_exception_ptr(TimeoutError("deadline"));
};

}  // namespace

TEST(Multiplexer, BatchesEverythingQueuedIntoOneWrite) {
  Multiplexer m;
  auto a = make("A");
  auto b = make("B");
  m.add(a);
  m.add(b);
  std::string out;
  EXPECT_EQ(m.prepare_write(out), 2u);
  EXPECT_EQ(out, "*1\r\n$1\r\nA\r\n*1\r\n$1\r\nB\r\n");
  EXPECT_EQ(m.queued(), 0u);
  EXPECT_EQ(m.in_flight(), 2u);
  std::string again;
  EXPECT_EQ(m.prepare_write(again), 0u);
  EXPECT_TRUE(again.empty());
}

TEST(Multiplexer, RepliesMatchInOrder) {
  Multiplexer m;
  auto a = make("A");
  auto b = make("B");
  m.add(a);
  m.add(b);
  std::string out;
  m.prepare_write(out);
  m.on_reply(Reply::string("first"));
  EXPECT_EQ(a->completions, 1);
  EXPECT_EQ(a->reply, Reply::string("first"));
  EXPECT_EQ(b->completions, 0);
  m.on_reply(Reply::integer(2));
  EXPECT_EQ(b->reply, Reply::integer(2));
  EXPECT_TRUE(m.idle());
  EXPECT_EQ(m.live(), 0u);
}

// What a caller resumed by a reply does: queue its next request and write it, all inside the
// completion of the reply being matched. The stream stays in order.
struct Resubmitter : detail::Request {
  Resubmitter(Multiplexer& m, std::string& wire, std::shared_ptr<Recorder> next)
      : Request(Command("A"), far), m_(m), wire_(wire), next_(std::move(next)) {}
  void on_complete(std::exception_ptr, Reply r) override {
    reply = std::move(r);
    m_.add(next_);
    m_.prepare_write(wire_);
  }
  Multiplexer& m_;
  std::string& wire_;
  std::shared_ptr<Recorder> next_;
  Reply reply;
};

TEST(Multiplexer, RequestWrittenFromInsideACompletionGetsTheNextReply) {
  Multiplexer m;
  std::string out;
  auto next = make("B");
  auto first = std::make_shared<Resubmitter>(m, out, next);
  auto other = make("C");
  m.add(first);
  m.add(other);
  m.prepare_write(out);
  out.clear();
  m.on_reply(Reply::string("a"));  // completes `first`, which queues and writes B behind C
  EXPECT_EQ(first->reply, Reply::string("a"));
  EXPECT_EQ(out, "*1\r\n$1\r\nB\r\n");
  EXPECT_EQ(m.in_flight(), 2u);  // C, then B
  m.on_reply(Reply::string("c"));
  m.on_reply(Reply::string("b"));
  EXPECT_EQ(other->reply, Reply::string("c"));
  EXPECT_EQ(next->reply, Reply::string("b"));
  EXPECT_TRUE(m.idle());
}

TEST(Multiplexer, ReplyBeforeWriteCompletionIsMatched) {
  // Requests are in flight as soon as prepare_write hands out their bytes.
  Multiplexer m;
  auto a = make("A");
  m.add(a);
  std::string out;
  m.prepare_write(out);
  auto late = make("LATE");
  m.add(late);  // queued while the first write is "in progress"
  m.on_reply(Reply::status("OK"));
  EXPECT_EQ(a->reply, Reply::status("OK"));
  EXPECT_EQ(late->completions, 0);
  EXPECT_EQ(m.queued(), 1u);
}

TEST(Multiplexer, UnsolicitedReplyIsAProtocolError) {
  Multiplexer m;
  EXPECT_THROW(m.on_reply(Reply::status("OK")), ProtocolError);
}

TEST(Multiplexer, CancelledQueuedRequestIsNeverWritten) {
  Multiplexer m;
  auto a = make("A");
  auto b = make("B");
  m.add(a);
  m.add(b);
  EXPECT_TRUE(m.cancel(*a, std::make_exception_ptr(TimeoutError("x"))));
  EXPECT_EQ(a->completions, 1);
  EXPECT_FALSE(m.cancel(*a, std::make_exception_ptr(TimeoutError("x"))));
  std::string out;
  EXPECT_EQ(m.prepare_write(out), 1u);
  EXPECT_EQ(out, "*1\r\n$1\r\nB\r\n");
  m.on_reply(Reply::string("b"));
  EXPECT_EQ(b->reply, Reply::string("b"));
  EXPECT_EQ(a->completions, 1);
}

TEST(Multiplexer, CancelledWrittenRequestsReplyIsReadAndDropped) {
  Multiplexer m;
  auto a = make("A");
  auto b = make("B");
  m.add(a);
  m.add(b);
  std::string out;
  m.prepare_write(out);
  m.cancel(*a, std::make_exception_ptr(TimeoutError("x")));
  EXPECT_EQ(a->completions, 1);
  EXPECT_TRUE(a->error);
  m.on_reply(Reply::string("for-a"));  // dropped
  EXPECT_EQ(a->completions, 1);
  EXPECT_EQ(b->completions, 0);
  m.on_reply(Reply::string("for-b"));
  EXPECT_EQ(b->reply, Reply::string("for-b"));
  EXPECT_TRUE(m.idle());
}

TEST(Multiplexer, PipelineCollectsAllItsReplies) {
  Multiplexer m;
  Pipeline p;
  p.add("SET", "k", "v").add("GET", "k").add("INCR", "n");
  auto r = std::make_shared<Recorder>(p.wire(), p.size(), far);
  auto after = make("PING");
  m.add(r);
  m.add(after);
  std::string out;
  m.prepare_write(out);
  EXPECT_EQ(out, p.wire() + "*1\r\n$4\r\nPING\r\n");
  m.on_reply(Reply::status("OK"));
  m.on_reply(Reply::string("v"));
  EXPECT_EQ(r->completions, 0);
  m.on_reply(Reply::error("ERR not an integer"));
  ASSERT_EQ(r->completions, 1);
  ASSERT_TRUE(r->reply.is_array());
  ASSERT_EQ(r->reply.elements().size(), 3u);
  EXPECT_EQ(r->reply.elements()[1], Reply::string("v"));
  EXPECT_TRUE(r->reply.elements()[2].is_error());
  m.on_reply(Reply::status("PONG"));
  EXPECT_EQ(after->reply, Reply::status("PONG"));
}

TEST(Multiplexer, AbandonedPipelineStillConsumesAllItsReplies) {
  Multiplexer m;
  Pipeline p;
  p.add("A").add("B");
  auto r = std::make_shared<Recorder>(p.wire(), 2, far);
  auto next = make("C");
  m.add(r);
  m.add(next);
  std::string out;
  m.prepare_write(out);
  m.on_reply(Reply::string("a"));
  m.cancel(*r, std::make_exception_ptr(TimeoutError("x")));
  m.on_reply(Reply::string("b"));  // still r's
  EXPECT_EQ(next->completions, 0);
  m.on_reply(Reply::string("c"));
  EXPECT_EQ(next->reply, Reply::string("c"));
}

TEST(Multiplexer, ExpireFailsOnlyDueRequestsAndReportsNextDeadline) {
  Multiplexer m;
  auto soon = make("SOON", t0 + std::chrono::milliseconds(100));
  auto later = make("LATER", t0 + std::chrono::milliseconds(500));
  auto written = make("W", t0 + std::chrono::milliseconds(50));
  m.add(written);
  std::string out;
  m.prepare_write(out);
  m.add(soon);
  m.add(later);
  auto next = m.expire(t0 + std::chrono::milliseconds(10), timeout_error);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, t0 + std::chrono::milliseconds(50));
  next = m.expire(t0 + std::chrono::milliseconds(100), timeout_error);
  EXPECT_EQ(written->completions, 1);
  EXPECT_EQ(soon->completions, 1);
  EXPECT_EQ(later->completions, 0);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, t0 + std::chrono::milliseconds(500));
  EXPECT_EQ(soon->error_text(), "deadline");
  // The expired, written request's reply arrives late and is dropped.
  m.on_reply(Reply::string("late"));
  EXPECT_EQ(written->completions, 1);
  m.prepare_write(out);
  m.on_reply(Reply::string("later"));
  EXPECT_EQ(later->reply, Reply::string("later"));
  EXPECT_FALSE(m.expire(t0 + std::chrono::hours(2), timeout_error));
}

TEST(Multiplexer, DisconnectFailsInFlightButKeepsQueued) {
  Multiplexer m;
  auto written = make("W");
  m.add(written);
  std::string out;
  m.prepare_write(out);
  auto queued = make("Q");
  m.add(queued);
  m.on_disconnect(std::make_exception_ptr(ConnectionError("lost")));
  EXPECT_EQ(written->completions, 1);
  EXPECT_EQ(written->error_text(), "lost");
  EXPECT_EQ(queued->completions, 0);
  EXPECT_EQ(m.in_flight(), 0u);
  // After reconnecting, the queued request goes out first and gets the first reply.
  std::string again;
  EXPECT_EQ(m.prepare_write(again), 1u);
  m.on_reply(Reply::string("q"));
  EXPECT_EQ(queued->reply, Reply::string("q"));
}

TEST(Multiplexer, DisconnectResetsPartialPipelineCount) {
  Multiplexer m;
  Pipeline p;
  p.add("A").add("B");
  auto r = std::make_shared<Recorder>(p.wire(), 2, far);
  m.add(r);
  std::string out;
  m.prepare_write(out);
  m.on_reply(Reply::string("a"));
  m.on_disconnect(std::make_exception_ptr(ConnectionError("lost")));
  auto next = make("N");
  m.add(next);
  m.prepare_write(out);
  m.on_reply(Reply::string("n"));
  EXPECT_EQ(next->reply, Reply::string("n"));
}

TEST(Multiplexer, FailAllCompletesEverythingOnce) {
  Multiplexer m;
  auto a = make("A");
  auto b = make("B");
  m.add(a);
  std::string out;
  m.prepare_write(out);
  m.add(b);
  m.fail_all(std::make_exception_ptr(ConnectionError("closed")));
  EXPECT_EQ(a->completions, 1);
  EXPECT_EQ(b->completions, 1);
  EXPECT_TRUE(m.idle());
  EXPECT_EQ(m.live(), 0u);
}
