#include "tempest/redis/detail/session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "tempest/redis/connection.hpp"
#include "tempest/redis/error.hpp"

namespace tempest::redis::detail {

// ---- RequestQueue -----------------------------------------------------------------------------

void RequestQueue::push_back(Request* r) noexcept {
  r->prev = tail_;
  r->next = nullptr;
  if (tail_ != nullptr) {
    tail_->next = r;
  } else {
    head_ = r;
  }
  tail_ = r;
  ++size_;
}

void RequestQueue::push_front(Request* r) noexcept {
  r->next = head_;
  r->prev = nullptr;
  if (head_ != nullptr) {
    head_->prev = r;
  } else {
    tail_ = r;
  }
  head_ = r;
  ++size_;
}

void RequestQueue::remove(Request* r) noexcept {
  if (r->prev != nullptr) {
    r->prev->next = r->next;
  } else {
    head_ = r->next;
  }
  if (r->next != nullptr) {
    r->next->prev = r->prev;
  } else {
    tail_ = r->prev;
  }
  r->prev = r->next = nullptr;
  --size_;
}

Request* RequestQueue::pop_front() noexcept {
  Request* r = head_;
  if (r != nullptr) remove(r);
  return r;
}

// ---- DeadlineList -----------------------------------------------------------------------------

Request* DeadlineList::front() const noexcept {
  if (size_ == 0) return nullptr;
  Request* best = overflow_.empty() ? nullptr : overflow_.begin()->second;
  for (const auto& lane : lanes_)
    if (lane.head != nullptr && (best == nullptr || lane.head->deadline() < best->deadline()))
      best = lane.head;
  return best;
}

void DeadlineList::insert_elsewhere(Request* r) {
  // Not at the back of the previous request's lane: find the lane of this timeout, or a free one.
  const auto span = r->deadline() - r->created();
  std::size_t i = last_lane_;
  if (lanes_[i].head != nullptr && lanes_[i].span != span) {
    std::size_t free_lane = kOverflow;
    for (i = 0; i < kOverflow; ++i) {
      if (lanes_[i].head != nullptr && lanes_[i].span == span) break;
      if (lanes_[i].head == nullptr && free_lane == kOverflow) free_lane = i;
    }
    if (i == kOverflow) i = free_lane;
    if (i == kOverflow) {
      overflow_.emplace(r->deadline(), r);
      r->deadline_lane = kOverflow;
      r->in_deadlines = true;
      ++size_;
      return;
    }
    last_lane_ = i;
  }
  Lane& lane = lanes_[i];
  if (lane.head == nullptr) lane.span = span;
  // Requests of one span arrive in deadline order; a clock read on another thread just before
  // may be a little older, so walk back the few steps that takes.
  Request* after = lane.tail;
  while (after != nullptr && after->deadline() > r->deadline())
    after = after->deadline_prev;
  r->deadline_prev = after;
  r->deadline_next = after != nullptr ? after->deadline_next : lane.head;
  if (r->deadline_next != nullptr) {
    r->deadline_next->deadline_prev = r;
  } else {
    lane.tail = r;
  }
  if (after != nullptr) {
    after->deadline_next = r;
  } else {
    lane.head = r;
  }
  r->deadline_lane = static_cast<std::uint8_t>(i);
  r->in_deadlines = true;
  ++size_;
}

void DeadlineList::remove_overflow(Request* r) noexcept {
  r->in_deadlines = false;
  --size_;
  overflow_.erase({r->deadline(), r});
}

// ---- SessionCounters --------------------------------------------------------------------------

void SessionCounters::fill(ConnectionStats& s) const noexcept {
  s.commands = commands.load(std::memory_order_relaxed);
  s.errors = errors.load(std::memory_order_relaxed);
  s.timeouts = timeouts.load(std::memory_order_relaxed);
  s.reconnects = reconnects.load(std::memory_order_relaxed);
  s.connects = connects.load(std::memory_order_relaxed);
  s.writes = writes.load(std::memory_order_relaxed);
  s.rejected = rejected.load(std::memory_order_relaxed);
  s.pending = pending.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < s.latency_buckets.size() && i < latency.size(); ++i)
    s.latency_buckets[i] = latency[i].load(std::memory_order_relaxed);
  s.latency_seconds_sum = static_cast<double>(latency_nanos.load(std::memory_order_relaxed)) / 1e9;
}

namespace {

static_assert(SessionCounters::kBuckets == ConnectionStats::kLatencyBounds.size() + 1);

// Every counter has one writer at a time (the connection's lock): a relaxed load and store, no
// locked read-modify-write, keeps readers on other threads race-free.
void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMinReadSpace = 4096;

std::string scrub(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos))
    text.replace(pos, secret.size(), "***");
  return text;
}

std::string millis(Duration d) {
  return std::to_string(d.count()) + " ms";
}

ConnectionState state_of(Session::Phase p) noexcept {
  switch (p) {
    case Session::Phase::idle:
      return ConnectionState::idle;
    case Session::Phase::opening:
    case Session::Phase::handshaking:
      return ConnectionState::connecting;
    case Session::Phase::ready:
      return ConnectionState::connected;
    case Session::Phase::backoff:
      return ConnectionState::disconnected;
    case Session::Phase::stopped:
      return ConnectionState::stopped;
  }
  return ConnectionState::idle;
}

}  // namespace

// ---- Session ----------------------------------------------------------------------------------

Session::Session(Config config, std::shared_ptr<spdlog::logger> log, std::uint64_t seed)
    : cfg_(std::move(config)),
      log_(std::move(log)),
      rng_(static_cast<std::minstd_rand::result_type>(seed != 0 ? seed : std::random_device{}())),
      state_(static_cast<std::uint8_t>(ConnectionState::idle)),
      parser_(ParserLimits{cfg_.max_reply_size}),
      in_(kReadChunk),
      backoff_(cfg_.reconnect_min) {
  if (cfg_.sentinel.enabled) role_ = Role::master;
}

Session::~Session() {
  // Requests still here never completed (the connection is being destroyed with its I/O
  // context): their handlers are destroyed without being invoked, as Asio does.
  for (RequestQueue* q : {&queue_, &handshake_, &in_flight_, &waiters_})
    while (Request* r = q->pop_front())
      r->release();
  while (Request* r = done_head_) {
    done_head_ = r->done_next;
    r->release();
  }
}

void Session::abandon(std::vector<Request*>& out) {
  for (RequestQueue* q : {&queue_, &handshake_, &in_flight_, &waiters_})
    while (Request* r = q->pop_front()) {
      deadlines_.remove(r);
      r->where = Request::Where::none;
      out.push_back(r);
    }
  while (Request* r = done_head_) {
    done_head_ = r->done_next;
    r->done_next = nullptr;
    out.push_back(r);
  }
  done_tail_ = nullptr;
  live_ = 0;
  counters_.pending.store(0, std::memory_order_relaxed);
  stopping_ = true;
  want_open_ = false;
  set_phase(Phase::stopped);
}

ConnectionState Session::state() const noexcept {
  return static_cast<ConnectionState>(state_.load(std::memory_order_relaxed));
}

void Session::set_phase(Phase p) noexcept {
  phase_ = p;
  wake_dirty_ = true;
  state_.store(static_cast<std::uint8_t>(state_of(p)), std::memory_order_relaxed);
}

// ---- events -----------------------------------------------------------------------------------

void Session::start(TimePoint now) {
  if (phase_ != Phase::idle || stopping_) return;
  begin_open(now);
}

void Session::begin_open(TimePoint now) {
  set_phase(Phase::opening);
  open_deadline_ = now + cfg_.connect_timeout;
  reconnect_at_ = TimePoint::max();
  want_open_ = true;
}

void Session::on_open(TimePoint now) {
  if (phase_ != Phase::opening) return;  // a stale report: the attempt was abandoned
  set_phase(Phase::handshaking);
  parser_.reset();
  in_begin_ = in_end_ = 0;
  out_.clear();
  writing_ = false;
  last_read_ = now;
  handshake_failure_.clear();
  handshake_left_ = 0;
  client_id_ = 0;
  if (!cfg_.password.empty()) {
    if (cfg_.username.empty()) {
      queue_internal(RequestKind::handshake, cmd("AUTH", cfg_.password));
    } else {
      queue_internal(RequestKind::handshake, cmd("AUTH", cfg_.username, cfg_.password));
    }
  }
  if (cfg_.db != 0) queue_internal(RequestKind::handshake, cmd("SELECT", cfg_.db));
  if (!cfg_.client_name.empty())
    queue_internal(RequestKind::handshake, cmd("CLIENT", "SETNAME", cfg_.client_name));
  if (readonly_) queue_internal(RequestKind::handshake, Command("READONLY"));
  // Always answered: a peer that is not Redis (or accepts and closes) fails here.
  queue_internal(RequestKind::handshake, Command("PING"));
  // A sentinel can name a node that is no longer the master (stale, or a failover under way).
  if (role_ != Role::any) queue_internal(RequestKind::handshake, Command("ROLE"));
  if (tracking_ && redirect_ != 0)
    queue_internal(RequestKind::handshake, cmd("CLIENT", "TRACKING", "on", "REDIRECT", redirect_));
  // Before SUBSCRIBE: a RESP2 subscriber can run nothing else.
  if (identify_) queue_internal(RequestKind::handshake, cmd("CLIENT", "ID"));
  // A subscriber's channels and patterns, one per command (one confirmation each).
  if (subscriber_) {
    for (const auto& c : channels_)
      queue_internal(RequestKind::handshake, cmd("SUBSCRIBE", c));
    for (const auto& p : patterns_)
      queue_internal(RequestKind::handshake, cmd("PSUBSCRIBE", p));
  }
}

void Session::subscribed(Subscription kind, const std::vector<std::string>& names, bool on) {
  auto& set = kind == Subscription::channel ? channels_ : patterns_;
  for (const auto& n : names) {
    if (on) {
      set.insert(n);
    } else {
      set.erase(n);
    }
  }
}

void Session::redirect(TimePoint, long long id) {
  redirect_ = id;
  // No link yet: the next handshake redirects. A link (ready, or in its handshake, which may
  // have redirected elsewhere or not at all): after what is queued, before what comes next.
  if (!transport_open() || stopping_ || id == 0) return;
  queue_internal(RequestKind::tracking, cmd("CLIENT", "TRACKING", "on", "REDIRECT", id));
}

void Session::tracking_event(TrackingEvent::Kind kind, long long id, std::string why) {
  tracking_events_.push_back(TrackingEvent{kind, id, std::move(why)});
}

void Session::take_tracking_events(std::vector<TrackingEvent>& out) {
  for (auto& e : tracking_events_)
    out.push_back(std::move(e));
  tracking_events_.clear();
}

void Session::take_messages(std::vector<Pushed>& out) {
  for (auto& p : pushed_)
    out.push_back(std::move(p));
  pushed_.clear();
}

namespace {
// A published message on a subscriber's connection (RESP2 array or RESP3 push).
bool is_message(const Reply& r) {
  if (!r.is_array() || r.elements().size() < 3 || !r.elements().front().is_string()) return false;
  const std::string& kind = r.elements().front().str();
  return (kind == "message" && r.elements().size() == 3) ||
         (kind == "pmessage" && r.elements().size() == 4) ||
         (kind == "smessage" && r.elements().size() == 3);
}
}  // namespace

void Session::on_open_failed(TimePoint now, std::string why) {
  if (phase_ != Phase::opening) return;
  link_down(now, std::move(why));
}

void Session::on_read(TimePoint now, std::size_t n) {
  if (!transport_open()) return;
  in_end_ += n;
  last_read_ = now;
  if (ping_sent_ != TimePoint::max()) {
    // The link answered: the next check is an interval after this read, which may come before
    // the check that was due (when health_timeout > health_interval).
    ping_sent_ = health_check_at_ = TimePoint::max();
    wake_dirty_ = true;
  }
  while (transport_open() && in_begin_ < in_end_) {
    std::size_t used = 0;
    ReplyParser::Event ev;
    // The reply to a plain user request is parsed straight into it.
    Request* head = in_flight_.front();
    // Not for a subscriber: what comes may be a message rather than the head's reply.
    Reply* target = !subscriber_ && head != nullptr && head->kind() == RequestKind::user &&
                            !head->is_pipeline() && !head->completed()
                        ? &head->reply()
                        : nullptr;
    try {
      ev = parser_.parse(in_.data() + in_begin_, in_end_ - in_begin_, used, target);
    } catch (const ProtocolError& e) {
      link_down(now, std::string(e.what()) +
                         (phase_ == Phase::handshaking ? " (is this a Redis server?)" : ""));
      return;
    }
    in_begin_ += used;
    if (ev == ReplyParser::Event::need_more) break;
    if (subscriber_ && !parser_.parsed_into_target() && is_message(parser_.reply())) {
      last_read_ = now;
      pushed_.push_back(Pushed{false, std::move(parser_.reply())});
      continue;
    }
    if (ev == ReplyParser::Event::push) {
      log_->debug("dropped a RESP3 push message from {}", cfg_.redacted());
      continue;
    }
    if (parser_.parsed_into_target()) {
      complete_in_place(head, now);
    } else {
      on_reply(std::move(parser_.reply()), now, ev == ReplyParser::Event::rejected);
    }
  }
  if (in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
    if (in_.size() > 4 * kReadChunk) {
      in_.resize(kReadChunk);
      in_.shrink_to_fit();
    }
  }
}

void Session::on_written(TimePoint) {
  writing_ = false;
  if (out_.capacity() > (std::size_t{1} << 20)) std::string().swap(out_);
}

void Session::on_link_error(TimePoint now, std::string why) {
  if (!transport_open()) return;
  if (phase_ == Phase::handshaking)
    why +=
        " before answering the handshake (is this a Redis server, and does it accept this "
        "client?)";
  link_down(now, std::move(why));
}

void Session::retry_now(TimePoint now) {
  if (phase_ != Phase::backoff) return;
  reconnect_at_ = now;
  on_timer(now);
}

void Session::on_timer(TimePoint now) {
  wake_dirty_ = true;
  expire(now);
  switch (phase_) {
    case Phase::opening:
    case Phase::handshaking:
      if (now >= open_deadline_)
        link_down(now, "connect timed out after " + millis(cfg_.connect_timeout) +
                           (phase_ == Phase::handshaking
                                ? " (the server accepted the connection but did not answer PING)"
                                : ""));
      break;
    case Phase::backoff:
      if (now >= reconnect_at_) begin_open(now);
      break;
    case Phase::ready:
      if (!stable_ && now >= ready_since_ + cfg_.stable_after) {
        stable_ = true;
        backoff_ = cfg_.reconnect_min;
        if (warned_)
          log_->info("connection to {} is up again after {} failed attempt(s)", cfg_.redacted(),
                     failures_);
        warned_ = false;
        failures_ = 0;
      }
      check_health(now);
      break;
    case Phase::idle:
    case Phase::stopped:
      break;
  }
  if (stopping_ && phase_ != Phase::stopped && now >= stop_deadline_) finish_stop(now);
}

void Session::submit(TimePoint now, Request* r) {
  if ((r->flags & kRouted) == 0) {
    const Duration timeout = r->timeout().count() > 0 ? r->timeout() : cfg_.command_timeout;
    r->set_times(now, now + timeout);
  }
  if (r->deadline() < cached_wake_) wake_dirty_ = true;
  if (r->kind() != RequestKind::user) return submit_internal(r);
  ++live_;
  counters_.pending.store(live_, std::memory_order_relaxed);
  if (r->cancel_requested.load(std::memory_order_relaxed) || stopping_ ||
      phase_ == Phase::stopped || phase_ == Phase::idle || live_ > cfg_.max_pending ||
      (outage_ && cfg_.when_disconnected == Config::WhenDisconnected::fail) ||
      r->expected_replies() == 0)
    return refuse(now, r);
  queue_.push_back(r);
  r->where = Request::Where::queued;
  deadlines_.insert(r);
}

void Session::refuse(TimePoint now, Request* r) {
  if (r->cancel_requested.load(std::memory_order_relaxed))
    return complete(
        r,
        std::make_exception_ptr(TimeoutError("Redis " + std::string(r->name()) + " was cancelled")),
        {}, now, Outcome::timeout);
  if (stopping_ || phase_ == Phase::stopped)
    return complete(r, closed_error(), {}, now, Outcome::error);
  if (phase_ == Phase::idle)
    return complete(r,
                    std::make_exception_ptr(ConnectionError(
                        "the Redis connection was not started: call connect() first")),
                    {}, now, Outcome::error);
  if (live_ > cfg_.max_pending)
    return complete(
        r,
        std::make_exception_ptr(ConnectionError(
            std::to_string(cfg_.max_pending) + " requests are already waiting for " +
            cfg_.redacted() + " (Config::max_pending); Redis is down or too slow" +
            (last_error_.empty() ? std::string() : " (last error: " + last_error_ + ")"))),
        {}, now, Outcome::error);
  if (outage_ && cfg_.when_disconnected == Config::WhenDisconnected::fail)
    return complete(r, not_connected_error(), {}, now, Outcome::error);
  // No command at all (an empty pipeline): nothing to send, nothing to wait for.
  complete(r, nullptr, Reply::array({}), now, Outcome::reply);
}

void Session::submit_internal(Request* r) {
  if (r->cancel_requested.load(std::memory_order_relaxed) && r->kind() != RequestKind::handshake &&
      r->kind() != RequestKind::health)
    return finish(r,
                  std::make_exception_ptr(TimeoutError(r->kind() == RequestKind::wait_stopped
                                                           ? "disconnect() was cancelled"
                                                           : "connect() was cancelled")),
                  {});
  switch (r->kind()) {
    case RequestKind::wait_ready:
      if (phase_ == Phase::ready) return finish(r, nullptr, Reply::integer(1));
      if (phase_ == Phase::stopped || stopping_)
        return finish(r, nullptr, Reply::error(closed_reason_));
      if (phase_ == Phase::idle)
        return finish(r, nullptr,
                      Reply::error("the Redis connection was not started: call connect() first"));
      if ((r->flags & kWaitFirstAttempt) != 0 && phase_ == Phase::backoff)
        return finish(r, nullptr, Reply::error(cannot_connect()));
      break;
    case RequestKind::wait_stopped:
      if (phase_ == Phase::stopped) return finish(r, nullptr, Reply::nil());
      break;
    case RequestKind::handshake:
    case RequestKind::health:
    case RequestKind::tracking:
    case RequestKind::user:  // (submit() takes these)
      r->release();          // the library's own are never submitted from outside
      return;
  }
  waiters_.push_back(r);
  r->where = Request::Where::waiting;
  deadlines_.insert(r);
}

void Session::cancel(TimePoint now, Request* r, std::exception_ptr why) {
  if (r->completed() || r->kind() == RequestKind::handshake || r->kind() == RequestKind::health ||
      r->kind() == RequestKind::tracking)
    return;
  if (r->where == Request::Where::none) return;  // not submitted here (or already delivered)
  complete(r, std::move(why), {}, now, Outcome::timeout);
}

void Session::stop(TimePoint now) {
  if (stopping_ || phase_ == Phase::stopped) return;
  wake_dirty_ = true;
  stopping_ = true;
  stop_deadline_ = now + cfg_.disconnect_timeout;
  if (phase_ != Phase::ready || live_ == 0) finish_stop(now);
}

void Session::abort(TimePoint now) {
  stopping_ = true;
  finish_stop(now);
}

// ---- actions ----------------------------------------------------------------------------------

Session::Actions Session::take_actions(TimePoint now) {
  if (stopping_ && phase_ != Phase::stopped && live_ == 0) finish_stop(now);
  Actions a;
  a.open = std::exchange(want_open_, false);
  a.close = std::exchange(want_close_, false);
  if (!writing_ && (!queue_.empty() || !handshake_.empty()) && transport_open())
    a.write = fill_write_buffer();
  // The earliest wake-up only moves earlier with a phase change, a new request or a timer event;
  // replies and completions only move it later (the timer then fires early, harmlessly), so it is
  // computed again only then.
  if (wake_dirty_) {
    cached_wake_ = next_wake();
    wake_dirty_ = false;
  }
  a.wake = cached_wake_;
  a.done = done_head_;
  done_head_ = done_tail_ = nullptr;
  return a;
}

bool Session::fill_write_buffer() {
  out_.clear();
  const auto take = [&](RequestQueue& q) {
    while (Request* r = q.pop_front()) {
      r->append_to(out_);
      r->flags |= kWritten;
      r->where = Request::Where::in_flight;
      in_flight_.push_back(r);
    }
  };
  take(handshake_);
  if (phase_ == Phase::ready) take(queue_);
  if (out_.empty()) return false;
  writing_ = true;
  bump(counters_.writes);
  return true;
}

std::pair<char*, std::size_t> Session::read_space() {
  if (in_.size() - in_end_ < kMinReadSpace) {
    if (in_begin_ > 0) {
      std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    // A line longer than the buffer (the parser bounds it by max_reply_size).
    if (in_.size() - in_end_ < kMinReadSpace) in_.resize(in_.size() * 2);
  }
  return {in_.data() + in_end_, in_.size() - in_end_};
}

TimePoint Session::next_wake() const noexcept {
  TimePoint w = TimePoint::max();
  if (const Request* r = deadlines_.front()) w = r->deadline();
  switch (phase_) {
    case Phase::opening:
    case Phase::handshaking:
      w = std::min(w, open_deadline_);
      break;
    case Phase::backoff:
      w = std::min(w, reconnect_at_);
      break;
    case Phase::ready:
      w = std::min(
          w, ping_sent_ == TimePoint::max() ? last_read_ + cfg_.health_interval : health_check_at_);
      if (!stable_) w = std::min(w, ready_since_ + cfg_.stable_after);
      break;
    case Phase::idle:
    case Phase::stopped:
      break;
  }
  if (stopping_ && phase_ != Phase::stopped) w = std::min(w, stop_deadline_);
  return w;
}

// ---- internals --------------------------------------------------------------------------------

void Session::finish(Request* r, std::exception_ptr e, Reply&& reply) {
  r->set_result(std::move(e), std::move(reply));
  append_done(r);
}

void Session::complete(Request* r, std::exception_ptr e, Reply&& reply, TimePoint now,
                       Outcome how) {
  if (r->completed()) return;
  deadlines_.remove(r);
  if (r->kind() == RequestKind::user) {
    --live_;
    counters_.pending.store(live_, std::memory_order_relaxed);
    switch (how) {
      case Outcome::reply:
        bump(counters_.commands);
        record_latency(now - r->created());
        break;
      case Outcome::error:
        bump(counters_.errors);
        break;
      case Outcome::timeout:
        bump(counters_.timeouts);
        break;
    }
  }
  switch (r->where) {
    case Request::Where::queued:
      queue_.remove(r);  // its queue reference moves to the done list
      r->where = Request::Where::none;
      break;
    case Request::Where::waiting:
      waiters_.remove(r);
      r->where = Request::Where::none;
      break;
    case Request::Where::in_flight:
      r->add_ref();  // the in-flight list keeps its own until the reply is read
      break;
    case Request::Where::none:
      break;  // completed at submit: the submit reference moves to the done list
  }
  finish(r, std::move(e), std::move(reply));
}

void Session::record_latency(Clock::duration took) noexcept {
  // The histogram's bounds in nanoseconds (ConnectionStats::kLatencyBounds, in seconds).
  static constexpr auto kBounds = [] {
    std::array<std::int64_t, ConnectionStats::kLatencyBounds.size()> b{};
    for (std::size_t i = 0; i < b.size(); ++i)
      b[i] = static_cast<std::int64_t>(ConnectionStats::kLatencyBounds[i] * 1e9 + 0.5);
    return b;
  }();
  const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(took).count();
  std::size_t i = 0;
  while (i < kBounds.size() && ns > kBounds[i])
    ++i;
  bump(counters_.latency[i]);
  bump(counters_.latency_nanos, static_cast<std::uint64_t>(ns));
}

void Session::finish_waiters(RequestKind kind, const Reply& result, TimePoint now) {
  for (Request* r = waiters_.front(); r != nullptr;) {
    Request* next = r->next;
    if (r->kind() == kind) complete(r, nullptr, Reply(result), now, Outcome::reply);
    r = next;
  }
}

void Session::complete_in_place(Request* r, TimePoint now) {
  ++r->replies_seen;
  in_flight_.remove(r);  // its in-flight reference moves to the done list
  r->where = Request::Where::none;
  deadlines_.remove(r);
  --live_;
  counters_.pending.store(live_, std::memory_order_relaxed);
  bump(counters_.commands);
  record_latency(now - r->created());
  r->set_result_in_place();
  append_done(r);
  // Under Sentinel, -READONLY: the master was demoted (see on_reply).
  if (cfg_.sentinel.enabled && r->reply().is_error() && r->reply().str().starts_with("READONLY"))
    link_down(now, demoted_error());
}

void Session::append_done(Request* r) noexcept {
  r->done_next = nullptr;
  if (done_tail_ != nullptr) {
    done_tail_->done_next = r;
  } else {
    done_head_ = r;
  }
  done_tail_ = r;
}

void Session::on_reply(Reply&& reply, TimePoint now, bool rejected) {
  Request* r = in_flight_.front();
  if (r == nullptr) {
    link_down(now, "Redis sent a reply that no request was waiting for (" +
                       reply.debug_string().substr(0, 80) + ")");
    return;
  }
  ++r->replies_seen;
  // Under Sentinel, a write answered -READONLY reached a master that was demoted (a failover):
  // the link is dropped once this reply is delivered, and the next one finds the new master.
  const bool demoted =
      reply.is_error() && cfg_.sentinel.enabled && reply.str().starts_with("READONLY");
  if (r->kind() == RequestKind::user && !r->is_pipeline() && !r->completed() && !rejected) {
    // The common case, in one step: the in-flight reference moves to the done list.
    in_flight_.remove(r);
    r->where = Request::Where::none;
    deadlines_.remove(r);
    --live_;
    counters_.pending.store(live_, std::memory_order_relaxed);
    bump(counters_.commands);
    record_latency(now - r->created());
    finish(r, nullptr, std::move(reply));
    if (demoted) link_down(now, demoted_error());
    return;
  }
  if (rejected) bump(counters_.rejected);
  const bool last = r->replies_seen >= r->expected_replies();
  if (r->kind() == RequestKind::handshake || r->kind() == RequestKind::health ||
      r->kind() == RequestKind::tracking) {
    unlink_in_flight(r);
    if (r->kind() == RequestKind::handshake) on_handshake_reply(*r, reply, rejected, now);
    if (r->kind() == RequestKind::tracking) on_tracking_reply(*r, reply, rejected);
    r->release();
    return;
  }
  if (!r->completed()) {
    if (!r->is_pipeline()) {
      if (rejected) {
        complete(r, std::make_exception_ptr(ProtocolError(parser_.rejection())), {}, now,
                 Outcome::error);
      } else {
        complete(r, nullptr, std::move(reply), now, Outcome::reply);
      }
    } else {
      if (rejected && r->rejection.empty())
        r->rejection = "the reply to command " + std::to_string(r->replies_seen) +
                       " of the pipeline: " + parser_.rejection();
      if (r->rejection.empty()) {
        if (r->collected.empty()) r->collected.reserve(r->expected_replies());
        r->collected.push_back(std::move(reply));
      }
      if (last) {
        if (!r->rejection.empty()) {
          complete(r, std::make_exception_ptr(ProtocolError(r->rejection)), {}, now,
                   Outcome::error);
        } else {
          complete(r, nullptr, Reply::array(std::move(r->collected)), now, Outcome::reply);
        }
        r->collected = {};
      }
    }
  }
  if (last) {
    unlink_in_flight(r);
    r->release();
  }
  if (demoted && transport_open()) link_down(now, demoted_error());
}

std::string Session::demoted_error() const {
  return cfg_.host + ":" + std::to_string(cfg_.port) +
         " answered READONLY: no longer the master of '" + cfg_.sentinel.service +
         "' (a failover); finding the master again through the sentinels";
}

void Session::unlink_in_flight(Request* r) {
  in_flight_.remove(r);
  r->where = Request::Where::none;
}

// CLIENT TRACKING's answer (in a handshake or after redirect()): an event, never a link failure.
void Session::on_tracking_reply(const Request& r, const Reply& reply, bool rejected) {
  const long long id = std::strtoll(std::string(r.command().argument(4)).c_str(), nullptr, 10);
  if (!rejected && reply.is_status()) {
    tracking_event(TrackingEvent::Kind::redirecting, id);
  } else {
    tracking_event(TrackingEvent::Kind::refused, id,
                   rejected ? parser_.rejection() : scrub(reply.str(), cfg_.password));
  }
}

void Session::on_handshake_reply(const Request& r, const Reply& reply, bool rejected,
                                 TimePoint now) {
  if (handshake_left_ > 0) --handshake_left_;
  const bool client = r.command().name() == "CLIENT" && r.command().argc() >= 2;
  if (client && r.command().argument(1) == "TRACKING") {
    on_tracking_reply(r, reply, rejected);
  } else if (client && r.command().argument(1) == "ID" && !rejected && reply.is_integer()) {
    client_id_ = reply.integer();
  } else if (handshake_failure_.empty()) {
    const std::string_view name = r.command().name();
    std::string step(name);
    if (name == "AUTH" && r.command().argc() == 3)
      step = "AUTH as user '" + std::string(r.command().argument(1)) + "'";
    if (name == "SELECT") step = "SELECT " + std::string(r.command().argument(1));
    if (name == "CLIENT") step = "CLIENT " + std::string(r.command().argument(1));
    if (rejected) {
      handshake_failure_ = step + " failed: " + parser_.rejection();
    } else if (reply.is_error()) {
      handshake_failure_ = step + " failed: " + scrub(reply.str(), cfg_.password);
      if (reply.str().starts_with("NOAUTH"))
        handshake_failure_ +=
            " (the server requires a password: redis://:password@host, or "
            "redis://user:password@host for an ACL user)";
    } else if (name == "CLIENT" && r.command().argument(1) == "ID") {
      handshake_failure_ =
          "CLIENT ID was answered with " + reply.debug_string().substr(0, 80) + ", not an integer";
    } else if (name == "ROLE") {
      const auto& e = reply.elements();
      const std::string role = reply.is_array() && !e.empty() ? e.front().str() : "?";
      const std::string where = cfg_.host + ":" + std::to_string(cfg_.port);
      if (role_ == Role::master && role != "master")
        handshake_failure_ = where + " says ROLE " + role +
                             ", not master: it is not the master of '" + cfg_.sentinel.service +
                             "' (the sentinel that named it is stale, or a failover is under way)";
      else if (role_ == Role::replica && role != "slave")
        handshake_failure_ = where + " says ROLE " + role +
                             ", not slave: it is no longer a replica to read from (a failover "
                             "promoted it, or a sentinel is stale)";
      else if (role_ == Role::replica && (e.size() < 4 || e[3].str() != "connected"))
        // Restarted, or cut off from its master: until it has synced it may answer from an
        // empty or old data set.
        handshake_failure_ = where + " is a replica whose link to its master is " +
                             (e.size() >= 4 ? "'" + e[3].str() + "'" : std::string("unknown")) +
                             ", not 'connected': not read from until it has synced";
    } else if (name == "PING" && !(reply.is_status() && reply.str() == "PONG")) {
      handshake_failure_ = "PING was answered with " + reply.debug_string().substr(0, 80) +
                           ", not PONG (is this a Redis server?)";
    }
  }
  if (handshake_left_ > 0) return;
  if (!handshake_failure_.empty()) {
    link_down(now, handshake_failure_);
  } else {
    become_ready(now);
  }
}

void Session::become_ready(TimePoint now) {
  set_phase(Phase::ready);
  if (subscriber_ && was_ready_) pushed_.push_back(Pushed{true, Reply{}});
  if (identify_) tracking_event(TrackingEvent::Kind::identified, client_id_);
  was_ready_ = true;
  outage_ = false;
  ready_since_ = now;
  stable_ = false;
  open_deadline_ = TimePoint::max();
  last_read_ = now;
  ping_sent_ = health_check_at_ = TimePoint::max();
  if (counters_.connects.load(std::memory_order_relaxed) > 0) bump(counters_.reconnects);
  bump(counters_.connects);
  if (counters_.connects.load(std::memory_order_relaxed) == 1) {
    log_->info("connected to {}", cfg_.redacted());
  } else {
    log_->debug("connected to {} again", cfg_.redacted());
  }
  finish_waiters(RequestKind::wait_ready, Reply::integer(1), now);
}

void Session::link_down(TimePoint now, std::string why) {
  const bool was_ready = phase_ == Phase::ready;
  if (tracking_ || identify_) tracking_event(TrackingEvent::Kind::lost, 0, why);
  want_close_ = true;
  want_open_ = false;
  set_last_error(std::move(why));
  writing_ = false;
  parser_.reset();
  in_begin_ = in_end_ = 0;
  ping_sent_ = health_check_at_ = TimePoint::max();
  open_deadline_ = TimePoint::max();
  outage_ = true;
  if (!in_flight_.empty()) {
    const auto lost = std::make_exception_ptr(
        ConnectionError("connection to " + cfg_.redacted() + " lost (" + last_error_ +
                        "); the command was sent and may or may not have been applied"));
    while (Request* r = in_flight_.pop_front()) {
      // Still marked in flight while completing: the done list takes a reference of its own.
      if (r->kind() == RequestKind::user) complete(r, lost, {}, now, Outcome::error);
      r->where = Request::Where::none;
      r->release();
    }
  }
  while (Request* r = handshake_.pop_front())
    r->release();
  // The health PING, if queued, goes with the link.
  for (Request* r = queue_.front(); r != nullptr;) {
    Request* next = r->next;
    if (r->kind() != RequestKind::user) {
      queue_.remove(r);
      r->release();
    }
    r = next;
  }
  if (cfg_.when_disconnected == Config::WhenDisconnected::fail)
    fail_queue(now, not_connected_error());
  ++failures_;
  if (!warned_) {
    warned_ = true;
    if (was_ready) {
      log_->warn("connection to {} lost: {}; reconnecting", cfg_.redacted(), last_error_);
    } else {
      log_->warn(
          "cannot connect to {}: {}; retrying with backoff (further failures are logged at "
          "debug level until the link is stable)",
          cfg_.redacted(), last_error_);
    }
  } else {
    log_->debug("{} to {} failed (attempt {}): {}", was_ready ? "link" : "connect", cfg_.redacted(),
                failures_, last_error_);
  }
  // A connect() waiting for the first attempt's outcome has it now.
  for (Request* r = waiters_.front(); r != nullptr;) {
    Request* next = r->next;
    if (r->kind() == RequestKind::wait_ready && (r->flags & kWaitFirstAttempt) != 0)
      complete(r, nullptr, Reply::error(cannot_connect()), now, Outcome::reply);
    r = next;
  }
  if (stopping_) {
    finish_stop(now);  // disconnect() does not wait for a link that is gone
    return;
  }
  if (!reconnect_) {
    closed_reason_ = "the dedicated connection to " + cfg_.redacted() + " was lost (" +
                     last_error_ +
                     "); what it held (WATCH, a transaction, a blocking command) is "
                     "gone with it: start again on a new client.dedicated()";
    stopping_ = true;
    finish_stop(now);
    return;
  }
  set_phase(Phase::backoff);
  std::uniform_real_distribution<double> jitter(0.75, 1.25);
  const auto delay =
      Duration(std::max<long long>(1, static_cast<long long>(backoff_.count() * jitter(rng_))));
  backoff_ = std::min(backoff_ * 2, cfg_.reconnect_max);
  reconnect_at_ = now + delay;
}

void Session::finish_stop(TimePoint now) {
  if (phase_ == Phase::stopped) return;
  if (tracking_ || identify_) tracking_event(TrackingEvent::Kind::lost, 0, closed_reason_);
  if (transport_open() || phase_ == Phase::opening) want_close_ = true;
  want_open_ = false;
  set_phase(Phase::stopped);
  writing_ = false;
  parser_.reset();
  in_begin_ = in_end_ = 0;
  const auto closed = closed_error();
  while (Request* r = in_flight_.pop_front()) {
    if (r->kind() == RequestKind::user) complete(r, closed, {}, now, Outcome::error);
    r->where = Request::Where::none;
    r->release();
  }
  while (Request* r = handshake_.pop_front())
    r->release();
  fail_queue(now, closed);
  finish_waiters(RequestKind::wait_ready, Reply::error(closed_reason_), now);
  finish_waiters(RequestKind::wait_stopped, Reply::nil(), now);
  log_->debug("connection to {} stopped", cfg_.redacted());
}

void Session::fail_queue(TimePoint now, const std::exception_ptr& e) {
  while (Request* r = queue_.front()) {
    if (r->kind() == RequestKind::user) {
      complete(r, e, {}, now, Outcome::error);  // removes it from the queue
    } else {
      queue_.remove(r);
      r->release();
    }
  }
}

void Session::queue_internal(RequestKind kind, Command c) {
  RequestRef r = RequestRef::make();
  r->set_kind(kind);
  r->command() = std::move(c);
  Request* raw = r.detach();
  raw->where = Request::Where::queued;
  if (kind == RequestKind::handshake) {
    handshake_.push_back(raw);
    ++handshake_left_;
  } else {
    queue_.push_back(raw);
  }
}

void Session::expire(TimePoint now) {
  while (Request* r = deadlines_.front()) {
    if (r->deadline() > now) break;
    switch (r->kind()) {
      case RequestKind::wait_ready:
        complete(r, nullptr,
                 Reply::error(
                     "cannot connect to " + cfg_.redacted() + ": timed out after " +
                     millis(r->timeout()) +
                     (last_error_.empty() ? std::string() : " (last error: " + last_error_ + ")")),
                 now, Outcome::reply);
        break;
      case RequestKind::wait_stopped:
        complete(r, nullptr, Reply::nil(), now, Outcome::reply);
        break;
      default: {
        const bool blocked = r->where == Request::Where::in_flight &&
                             (r->flags & kBlockingCommand) != 0 && transport_open();
        complete(r, timeout_error(*r), {}, now, Outcome::timeout);
        if (blocked) {
          // Redis still blocks on it: when it unblocks, it would take an element (BLPOP) that no
          // caller waits for any more. Closing the link makes Redis drop the command instead.
          link_down(now, "a blocking " + std::string(r->name()) +
                             " outlived its deadline; the connection was closed so that Redis "
                             "does not hand it data nobody waits for");
        }
        break;
      }
    }
  }
}

void Session::check_health(TimePoint now) {
  if (ping_sent_ == TimePoint::max()) {
    if (now - last_read_ >= cfg_.health_interval) {
      queue_internal(RequestKind::health, Command("PING"));
      ping_sent_ = now;
      health_check_at_ = now + cfg_.health_timeout;
    }
    return;
  }
  if (now < health_check_at_) return;
  // Nothing arrived since the PING. Replies come in order, so the server is still on the oldest
  // request in flight: while that one's own deadline is ahead (DEBUG SLEEP, a slow script), the
  // silence is explained; judge again at that deadline. Requests written after it explain
  // nothing, however long their deadlines.
  const Request* head = in_flight_.front();
  if (head != nullptr && head->kind() == RequestKind::user && head->deadline() > now) {
    health_check_at_ = head->deadline();
    return;
  }
  link_down(now, "no reply from Redis within " + millis(cfg_.health_timeout) + " of a PING");
}

void Session::set_last_error(std::string why) {
  last_error_ = scrub(std::move(why), cfg_.password);
}

std::exception_ptr Session::timeout_error(const Request& r) const {
  std::string msg = "Redis " + std::string(r.name()) + " timed out after " +
                    millis(std::chrono::duration_cast<Duration>(r.deadline() - r.created()));
  if (phase_ == Phase::ready) {
    msg += ": no reply from " + cfg_.redacted() + " before the deadline";
  } else {
    msg += " waiting for a connection to " + cfg_.redacted();
    if (!last_error_.empty()) msg += " (last error: " + last_error_ + ")";
  }
  return std::make_exception_ptr(TimeoutError(msg));
}

std::exception_ptr Session::not_connected_error() const {
  return std::make_exception_ptr(
      ConnectionError("not connected to " + cfg_.redacted() +
                      (last_error_.empty() ? std::string() : " (last error: " + last_error_ + ")") +
                      "; requests fail at once while disconnected (when_disconnected=fail)"));
}

std::string Session::cannot_connect() const {
  return "cannot connect to " + cfg_.redacted() + ": " +
         (last_error_.empty() ? std::string("no reply") : last_error_);
}

std::exception_ptr Session::closed_error() const {
  return std::make_exception_ptr(ConnectionError(closed_reason_));
}

}  // namespace tempest::redis::detail
