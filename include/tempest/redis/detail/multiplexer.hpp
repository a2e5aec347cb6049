// The socket-free core of a connection: the queue of requests, write batching and in-order reply
// matching. The Asio connection is a thin shell that drives it; unit tests drive it directly.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tempest/redis/command.hpp"
#include "tempest/redis/reply.hpp"

namespace tempest::redis::detail {

using Clock = std::chrono::steady_clock;

// One unit of work: a command (one reply) or a pipeline / transaction (several replies). The
// multiplexer calls complete() exactly once.
class Request {
 public:
  enum class State : unsigned char { pending, written, done };

  Request(Command c, Clock::time_point deadline, Clock::time_point created = Clock::now())
      : command_(std::move(c)), deadline_(deadline), created_(created) {}
  Request(std::string raw, std::size_t replies, Clock::time_point deadline,
          Clock::time_point created = Clock::now())
      : raw_(std::move(raw)), expected_(replies), deadline_(deadline), created_(created) {}
  Clock::time_point created() const noexcept { return created_; }
  virtual ~Request() = default;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  State state() const noexcept { return state_; }
  bool done() const noexcept { return state_ == State::done; }
  Clock::time_point deadline() const noexcept { return deadline_; }
  std::size_t expected_replies() const noexcept { return expected_; }
  // Name of the (first) command, for error messages.
  std::string_view name() const noexcept;

 protected:
  // Called once, with either an error or the reply (an array of replies when expected > 1).
  virtual void on_complete(std::exception_ptr error, Reply reply) = 0;

 private:
  friend class Multiplexer;
  void finish(std::exception_ptr error, Reply reply) {
    state_ = State::done;
    on_complete(std::move(error), std::move(reply));
  }

  Command command_;  // single command (raw_ empty)
  std::string raw_;  // pre-encoded pipeline
  std::size_t expected_ = 1;
  Clock::time_point deadline_;
  Clock::time_point created_;
  State state_ = State::pending;
  std::vector<Reply> collected_;
};

class Multiplexer {
 public:
  using RequestPtr = std::shared_ptr<Request>;

  // Queues a request for the next write.
  void add(RequestPtr r);
  // Moves every queued request in flight and appends their bytes to `out` (one write for all).
  // Requests are in flight from here on: their replies may arrive before the write completes.
  // Returns how many requests were moved.
  std::size_t prepare_write(std::string& out);
  // Matches one reply to the oldest request in flight. A reply for a request that was already
  // completed (deadline, cancellation) is dropped. Throws ProtocolError for a reply that no
  // request awaits (the stream is out of sync and the connection must be dropped).
  void on_reply(Reply reply);
  // Completes `r` now with `error`. Queued: it is never written. In flight: its replies will be
  // read and dropped. Done: nothing happens. Returns whether it completed the request.
  bool cancel(Request& r, std::exception_ptr error);
  // Completes every request whose deadline is <= now with the error made by `make_error(request)`;
  // returns the earliest deadline still pending (nullopt when nothing waits).
  template <class MakeError>
  std::optional<Clock::time_point> expire(Clock::time_point now, MakeError&& make_error);
  // The connection was lost: everything in flight fails with `error` (it may have been applied and
  // is never resent); queued requests stay queued for the next connection.
  void on_disconnect(std::exception_ptr error);
  // Fails everything, queued and in flight.
  void fail_all(std::exception_ptr error);

  std::size_t queued() const noexcept { return queued_.size(); }
  std::size_t in_flight() const noexcept { return in_flight_.size(); }
  // Requests whose caller still waits (queued or in flight, not yet completed).
  std::size_t live() const noexcept { return live_; }
  bool idle() const noexcept { return queued_.empty() && in_flight_.empty(); }

 private:
  void complete(Request& r, std::exception_ptr error, Reply reply);
  std::optional<Clock::time_point> earliest_live() const;

  std::deque<RequestPtr> queued_;     // not yet written (completed ones are skipped lazily)
  std::deque<RequestPtr> in_flight_;  // written, awaiting replies in order
  std::size_t front_replies_ = 0;     // replies already received for in_flight_.front()
  std::size_t live_ = 0;
};

template <class MakeError>
std::optional<Clock::time_point> Multiplexer::expire(Clock::time_point now,
                                                     MakeError&& make_error) {
  auto sweep = [&](std::deque<RequestPtr>& q) {
    for (auto& r : q)
      if (!r->done() && r->deadline() <= now) complete(*r, make_error(*r), Reply{});
  };
  sweep(queued_);
  sweep(in_flight_);
  return earliest_live();
}

}  // namespace tempest::redis::detail
