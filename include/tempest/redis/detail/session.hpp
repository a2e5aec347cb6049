// The socket-free state of one connection to Redis: the request queue and in-order reply
// matching, the reply parser, the handshake, health checks, deadlines, reconnect backoff and the
// graceful stop. Events go in, each with the current time; actions come out (open or close the
// transport, write these bytes, call on_timer at this time, deliver these completed requests).
// It reads no clock and touches no socket, so unit tests drive it with a fake clock.
//
// Life of a link: idle -> opening (transport) -> handshaking (AUTH, SELECT, CLIENT SETNAME and a
// PING, matched like any request and always answered) -> ready -> (lost) -> backoff -> opening
// ... and stop() -> draining -> stopped. User requests are written only while ready; they wait
// in the queue otherwise (until their deadline, or at once with WhenDisconnected::fail).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tempest/redis/config.hpp"
#include "tempest/redis/detail/parser.hpp"
#include "tempest/redis/detail/request.hpp"

namespace spdlog {
class logger;
}

namespace tempest::redis {
struct ConnectionStats;
enum class ConnectionState : std::uint8_t;
}  // namespace tempest::redis

namespace tempest::redis::detail {

// A FIFO of requests through Request::prev / next (one list per request at a time).
class RequestQueue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }
  Request* front() const noexcept { return head_; }
  void push_back(Request* r) noexcept;
  void push_front(Request* r) noexcept;
  void remove(Request* r) noexcept;
  Request* pop_front() noexcept;

 private:
  Request* head_ = nullptr;
  Request* tail_ = nullptr;
  std::size_t size_ = 0;
};

// Requests not yet completed, by deadline (through Request::deadline_prev / next). Requests are
// kept in lanes by timeout: within a lane they arrive in deadline order, so insertion is O(1) at
// the back and the earliest deadline is the earliest lane head. Requests whose timeout has no lane
// (more distinct timeouts at once than lanes) go to an ordered set: O(log n).
class DeadlineList {
 public:
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  Request* front() const noexcept;
  // Inline for the common case (the previous request's lane, at its back); the rest out of line.
  void insert(Request* r) {
    Lane& lane = lanes_[last_lane_];
    const Clock::duration span = r->deadline() - r->created();
    Request* tail = lane.tail;
    if (tail == nullptr) {
      lane.span = span;
      lane.head = r;
    } else if (lane.span == span && !(r->deadline() < tail->deadline())) {
      tail->deadline_next = r;
    } else {
      insert_elsewhere(r);
      return;
    }
    r->deadline_prev = tail;
    r->deadline_next = nullptr;
    lane.tail = r;
    r->deadline_lane = static_cast<std::uint8_t>(last_lane_);
    r->in_deadlines = true;
    ++size_;
  }
  void remove(Request* r) noexcept {
    if (!r->in_deadlines) return;
    if (r->deadline_lane == kOverflow) {
      remove_overflow(r);
      return;
    }
    r->in_deadlines = false;
    --size_;
    Lane& lane = lanes_[r->deadline_lane];
    Request* prev = r->deadline_prev;
    Request* next = r->deadline_next;
    (prev != nullptr ? prev->deadline_next : lane.head) = next;
    (next != nullptr ? next->deadline_prev : lane.tail) = prev;
    r->deadline_prev = r->deadline_next = nullptr;
  }

 private:
  struct Lane {
    Clock::duration span{};
    Request* head = nullptr;
    Request* tail = nullptr;
  };
  static constexpr std::uint8_t kOverflow = 8;
  std::array<Lane, kOverflow> lanes_{};
  std::set<std::pair<TimePoint, Request*>> overflow_;
  std::size_t size_ = 0;
  std::size_t last_lane_ = 0;  // where the previous request went (usually the next one's too)

  void insert_elsewhere(Request* r);
  void remove_overflow(Request* r) noexcept;
};

// Counters, written under the connection's lock and readable from any thread.
struct SessionCounters {
  static constexpr std::size_t kBuckets = 13;
  std::atomic<std::uint64_t> commands{0}, errors{0}, timeouts{0}, reconnects{0}, connects{0},
      writes{0}, rejected{0}, pending{0};
  std::array<std::atomic<std::uint64_t>, kBuckets> latency{};
  std::atomic<std::uint64_t> latency_nanos{0};
  void fill(ConnectionStats& s) const noexcept;
};

class Session {
 public:
  enum class Phase : std::uint8_t { idle, opening, handshaking, ready, backoff, stopped };

  struct Actions {
    bool open = false;   // open the transport now, then report on_open or on_open_failed
    bool close = false;  // close the transport now; no event is expected from it afterwards
    bool write = false;  // write write_buffer() in full, then report on_written
    TimePoint wake = TimePoint::max();  // call on_timer at this time (max: nothing to wait for)
    Request* done = nullptr;  // completed requests to deliver, through Request::done_next; each
                              // carries one reference for the deliverer
  };

  Session(Config config, std::shared_ptr<spdlog::logger> log, std::uint64_t seed = 0);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // ---- events -----------------------------------------------------------------------------------
  void start(TimePoint now);
  void on_open(TimePoint now);
  void on_open_failed(TimePoint now, std::string why);
  // `n` bytes were read into read_space().
  void on_read(TimePoint now, std::size_t n);
  void on_written(TimePoint now);
  // The transport failed (read or write error, or the peer closed it).
  void on_link_error(TimePoint now, std::string why);
  void on_timer(TimePoint now);
  // Waiting to reconnect: try now (a sentinel announced a new master).
  void retry_now(TimePoint now);
  // Takes one reference to `r`. The request is queued, or completed at once (stopped, not
  // started, Config::max_pending reached, or disconnected with WhenDisconnected::fail).
  void submit(TimePoint now, Request* r);
  // Completes `r` with `why` unless already completed: a queued request is never written, a
  // written one's reply is read and dropped.
  void cancel(TimePoint now, Request* r, std::exception_ptr why);
  // disconnect(): no new requests; those queued and in flight get until now +
  // Config::disconnect_timeout, then the link closes and whatever is left fails.
  void stop(TimePoint now);
  // Fails everything at once and closes (the connection is being destroyed or closed).
  void abort(TimePoint now);
  // The I/O context is going away: every request still here is handed to `out` (one reference
  // each, its handler never invoked) and the session stops without another event.
  void abandon(std::vector<Request*>& out);
  // false: a lost link is not replaced; the session stops and what is pending fails (a dedicated
  // connection, whose WATCH or transaction would not survive a new link).
  void set_reconnect(bool on) noexcept { reconnect_ = on; }
  // READONLY after the handshake: reads may be served by this node when it is a replica.
  void set_readonly(bool on) noexcept { readonly_ = on; }
  // What the handshake's ROLE must say (a Sentinel master's link: master; a link to one of its
  // replicas, for reads: replica); a node that says otherwise fails the attempt.
  enum class Role : std::uint8_t { any, master, replica };
  void expect_role(Role r) noexcept { role_ = r; }
  // The server the next connect attempt goes to (a subscriber moving to another cluster node).
  void set_endpoint(std::string host, std::uint16_t port) {
    cfg_.host = std::move(host);
    cfg_.port = port;
  }

  // ---- subscriber mode: pub/sub on a connection of its own
  // --------------------------------------- Messages ("message" / "pmessage" arrays, and RESP3
  // pushes) are not replies to requests: they are kept for take_messages(). The channels and
  // patterns named by subscribed() are subscribed again on every new link, in its handshake, and a
  // new link after the first one reports a gap (what was published meanwhile is lost). Requests are
  // SUBSCRIBE and company built as pipelines of one reply per name (see subscribed()), and PING.
  struct Pushed {
    bool gap = false;  // not a message: the link was replaced, messages may have been missed
    Reply reply;       // ["message", channel, payload] or ["pmessage", pattern, channel, payload]
  };
  enum class Subscription : std::uint8_t { channel, pattern };
  void set_subscriber(bool on) noexcept { subscriber_ = on; }
  bool subscriber() const noexcept { return subscriber_; }
  // Records what a (P)(UN)SUBSCRIBE about to be submitted changes, so that a new link restores it.
  void subscribed(Subscription kind, const std::vector<std::string>& names, bool on);
  std::size_t subscriptions() const noexcept { return channels_.size() + patterns_.size(); }
  void take_messages(std::vector<Pushed>& out);
  bool has_messages() const noexcept { return !pushed_.empty(); }

  // ---- client-side caching (CLIENT TRACKING, RESP2 REDIRECT mode) -----------------------------
  // A data connection with tracking sends `CLIENT TRACKING on REDIRECT <id>` in its handshake
  // (when an id is set) and on redirect(); a refusal does not fail the handshake. An invalidation
  // connection (subscriber mode with identify) runs CLIENT ID in its handshake. Both report what
  // happened as events, taken with take_tracking_events() after the step.
  struct TrackingEvent {
    enum class Kind : std::uint8_t {
      lost,         // the link is gone (or stopped): what it tracked is no longer reported
      redirecting,  // tracking is on, reported to client `id`
      refused,      // CLIENT TRACKING was refused (`why`): this link's reads are not tracked
      identified,   // an invalidation link is ready (subscribed) as client `id`
    };
    Kind kind = Kind::lost;
    long long id = 0;
    std::string why;
  };
  void set_tracking(bool on) noexcept { tracking_ = on; }
  // The client the next handshake redirects to (0: none).
  void set_redirect(long long id) noexcept { redirect_ = id; }
  // Redirects the ready link to `id` now (else the next handshake does, with set_redirect()).
  void redirect(TimePoint now, long long id);
  void set_identify(bool on) noexcept { identify_ = on; }
  bool has_tracking_events() const noexcept { return !tracking_events_.empty(); }
  void take_tracking_events(std::vector<TrackingEvent>& out);

  // What to do now. Call after every event (requests completed by the event are handed out
  // here, and the write buffer is filled when no write is in flight).
  Actions take_actions(TimePoint now);

  // ---- buffers
  // ------------------------------------------------------------------------------------ Where the
  // transport reads into (at least 4 KiB; valid until the next on_read).
  std::pair<char*, std::size_t> read_space();
  const std::string& write_buffer() const noexcept { return out_; }

  // ---- state
  // ----------------------------------------------------------------------------------------
  Phase phase() const noexcept { return phase_; }
  ConnectionState state() const noexcept;
  bool writing() const noexcept { return writing_; }
  bool transport_open() const noexcept {
    return phase_ == Phase::handshaking || phase_ == Phase::ready;
  }
  std::size_t queued() const noexcept { return queue_.size(); }
  std::size_t in_flight() const noexcept { return in_flight_.size(); }
  std::size_t pending() const noexcept { return live_; }  // submitted, not completed
  bool has_completed() const noexcept { return done_head_ != nullptr; }
  const std::string& last_error() const noexcept { return last_error_; }
  const Config& config() const noexcept { return cfg_; }
  const SessionCounters& counters() const noexcept { return counters_; }
  // The delay before the next reconnect attempt (for tests of the backoff policy).
  Duration current_backoff() const noexcept { return backoff_; }
  std::uint64_t failed_attempts() const noexcept { return failures_; }

 private:
  enum class Outcome : std::uint8_t { reply, error, timeout };
  void set_phase(Phase p) noexcept;
  void finish(Request* r, std::exception_ptr e, Reply&& reply);
  void append_done(Request* r) noexcept;
  void complete_in_place(Request* r, TimePoint now);
  void complete(Request* r, std::exception_ptr e, Reply&& reply, TimePoint now, Outcome how);
  void record_latency(Clock::duration took) noexcept;
  void finish_waiters(RequestKind kind, const Reply& result, TimePoint now);
  void on_reply(Reply&& reply, TimePoint now, bool rejected);
  void on_handshake_reply(const Request& r, const Reply& reply, bool rejected, TimePoint now);
  void on_tracking_reply(const Request& r, const Reply& reply, bool rejected);
  void unlink_in_flight(Request* r);
  void begin_open(TimePoint now);
  void become_ready(TimePoint now);
  void link_down(TimePoint now, std::string why);
  std::string demoted_error() const;
  void finish_stop(TimePoint now);
  void fail_queue(TimePoint now, const std::exception_ptr& e);
  void queue_internal(RequestKind kind, Command c);
  void expire(TimePoint now);
  void check_health(TimePoint now);
  void set_last_error(std::string why);
  TimePoint next_wake() const noexcept;
  // submit()'s rare paths: a user request completed at once, and the waiters (connect,
  // disconnect).
  void refuse(TimePoint now, Request* r);
  void submit_internal(Request* r);
  // Moves the queued requests the phase allows into the write buffer; false when none was.
  [[gnu::noinline]] bool fill_write_buffer();
  std::exception_ptr timeout_error(const Request& r) const;
  std::exception_ptr not_connected_error() const;
  std::exception_ptr closed_error() const;
  std::string cannot_connect() const;

  Config cfg_;
  std::shared_ptr<spdlog::logger> log_;
  std::minstd_rand rng_;
  Phase phase_ = Phase::idle;
  bool subscriber_ = false;
  bool was_ready_ = false;  // a link was ready before (a new one is a gap for a subscriber)
  std::set<std::string> channels_, patterns_;
  bool tracking_ = false;
  bool identify_ = false;
  long long redirect_ = 0;
  long long client_id_ = 0;
  std::vector<TrackingEvent> tracking_events_;
  void tracking_event(TrackingEvent::Kind kind, long long id, std::string why = {});
  std::vector<Pushed> pushed_;
  std::atomic<std::uint8_t> state_;  // ConnectionState, for readers on other threads
  bool stopping_ = false;
  bool reconnect_ = true;
  bool readonly_ = false;
  Role role_ = Role::any;
  std::string closed_reason_ = "the Redis connection was closed by disconnect()";
  bool outage_ = false;  // a connect failed or the link was lost since the last ready link

  RequestQueue queue_;      // user requests not yet written
  RequestQueue handshake_;  // the handshake's requests not yet written
  RequestQueue in_flight_;  // written, awaiting replies in order
  DeadlineList deadlines_;  // every request not yet completed, by deadline
  RequestQueue waiters_;    // wait_ready / wait_stopped requests
  bool want_open_ = false;
  bool want_close_ = false;
  bool wake_dirty_ = true;
  TimePoint cached_wake_ = TimePoint::max();
  Request* done_head_ = nullptr;
  Request* done_tail_ = nullptr;
  std::size_t live_ = 0;  // user requests submitted and not completed

  ReplyParser parser_;
  std::vector<char> in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  std::string out_;
  bool writing_ = false;
  std::size_t handshake_left_ = 0;  // handshake replies still to come
  std::string handshake_failure_;

  TimePoint open_deadline_ = TimePoint::max();  // connect + handshake must be done by then
  TimePoint reconnect_at_ = TimePoint::max();
  TimePoint last_read_{};
  TimePoint ping_sent_ = TimePoint::max();        // health PING outstanding since
  TimePoint health_check_at_ = TimePoint::max();  // when to judge the link
  TimePoint ready_since_ = TimePoint::max();
  TimePoint stop_deadline_ = TimePoint::max();
  Duration backoff_;
  std::uint64_t failures_ = 0;  // failed attempts since the last stable link
  bool stable_ = false;         // the current link has stayed up for Config::stable_after
  bool warned_ = false;         // this burst of failures has been logged as a warning
  std::string last_error_;
  SessionCounters counters_;
};

}  // namespace tempest::redis::detail
