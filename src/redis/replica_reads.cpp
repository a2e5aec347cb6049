#include "replica_reads.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "sentinel.hpp"
#include "tempest/log.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"
#include "tempest/redis/error.hpp"
#include "tracking.hpp"

namespace tempest::redis::detail {

namespace {

// Whether every command of `r` only reads (so that a replica may answer it). A transaction's
// MULTI, and anything not in the command table, is not a read.
bool only_reads(const Request& r) {
  thread_local CommandReader reader;
  thread_local CommandKeys keys;
  reader.reset(r.is_pipeline() ? std::string_view(r.wire())
                               : std::string_view(r.command().encoded()));
  bool any = false;
  for (Args a = reader.next(); !a.empty(); a = reader.next()) {
    command_keys(a, keys);
    if (!keys.readonly) return false;
    any = true;
  }
  return any;
}

// A replica's answer that the master may not give: still loading its data set, or cut off from
// its master with replica-serve-stale-data off.
bool replica_cannot_answer(const Reply& reply) {
  return reply.is_error() &&
         (reply.str().starts_with("LOADING") || reply.str().starts_with("MASTERDOWN"));
}

std::string where(const Endpoint& e) {
  return e.host + ":" + std::to_string(e.port);
}

}  // namespace

ReplicaReads::ReplicaReads(asio::any_io_executor executor, Config config)
    : executor_(std::move(executor)),
      replica_cfg_(config),
      master_(std::make_shared<Link>(executor_, std::move(config), Venue::shared)),
      timer_(std::make_shared<asio::steady_timer>(executor_)) {
  replica_cfg_.sentinel = SentinelOptions();
  // A read sent to a replica whose link is down comes back at once and goes to the master.
  replica_cfg_.when_disconnected = Config::WhenDisconnected::fail;
}

ReplicaReads::~ReplicaReads() {
  close();
}

void ReplicaReads::enroll() {
  master_->enroll();
}

void ReplicaReads::track(std::shared_ptr<InvalidationSink> sink) {
  auto tracker = std::make_shared<Tracker>(executor_, master_->config(), std::move(sink));
  tracker->attach(master_);
  std::lock_guard lock(mu_);
  tracker_ = std::move(tracker);
}

void ReplicaReads::start() {
  master_->start();
  // A new master: the replicas have changed (the old master may come back as one).
  master_->sentinel()->watch([weak = weak_from_this()] {
    if (auto self = weak.lock()) self->refresh();
  });
  refresh();
}

void ReplicaReads::refresh() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
  }
  // One refresh at a time; one asked for meanwhile (a switch) runs once this one is over.
  if (refreshing_.exchange(true, std::memory_order_acq_rel)) {
    again_.store(true, std::memory_order_release);
    return;
  }
  master_->sentinel()->find_replicas(
      [weak = weak_from_this()](std::optional<std::vector<Endpoint>> listed, std::string error) {
        auto self = weak.lock();
        if (!self) return;
        try {
          if (listed) {
            self->apply(*listed);
          } else {
            // The replicas known stay; reads go to those connected.
            logger("tempest.redis")->warn("{}", error);
          }
        } catch (const std::exception& e) {
          // A replica's link could not be made (its TLS files, say): the next refresh tries again.
          logger("tempest.redis")
              ->warn("reading from the replicas of '{}': {}",
                     self->master_->config().sentinel.service, e.what());
        }
        self->refreshing_.store(false, std::memory_order_release);
        if (self->again_.exchange(false, std::memory_order_acq_rel)) {
          self->refresh();
        } else {
          self->schedule_refresh();
        }
      });
}

void ReplicaReads::schedule_refresh() {
  std::lock_guard lock(mu_);
  if (closed_) return;
  // A wait already pending is cancelled (a refresh came early): one chain of refreshes.
  timer_->expires_after(master_->config().sentinel.replica_refresh);
  timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->refresh();
  });
}

void ReplicaReads::apply(const std::vector<Endpoint>& listed) {
  const auto same = [](const Endpoint& a, const Endpoint& b) {
    return a.host == b.host && a.port == b.port;
  };
  // The new links first (a constructor may throw: then nothing has changed).
  std::vector<Replica> fresh;
  {
    std::vector<Endpoint> wanted;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      for (const Endpoint& e : listed)
        if (std::none_of(replicas_.begin(), replicas_.end(),
                         [&](const Replica& r) { return same(r.at, e); }))
          wanted.push_back(e);
    }
    for (const Endpoint& e : wanted) {
      Config c = replica_cfg_;
      c.host = e.host;
      c.port = e.port;
      fresh.push_back(Replica{e, std::make_shared<Link>(executor_, std::move(c), Venue::shared)});
    }
  }
  std::vector<std::shared_ptr<Link>> gone;
  std::shared_ptr<Tracker> tracker;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;  // the fresh links were never started: they just go
    auto keep = std::stable_partition(replicas_.begin(), replicas_.end(), [&](const Replica& r) {
      return std::any_of(listed.begin(), listed.end(),
                         [&](const Endpoint& e) { return same(e, r.at); });
    });
    for (auto it = keep; it != replicas_.end(); ++it) {
      logger("tempest.redis")
          ->info("replica {} of '{}' left", where(it->at), master_->config().sentinel.service);
      gone.push_back(it->link);
      // Kept until this backend goes: a request routed there may still point at it.
      retired_links_.push_back(std::move(it->link));
    }
    replicas_.erase(keep, replicas_.end());
    for (auto& r : fresh) {
      logger("tempest.redis")
          ->info("reading from replica {} of '{}'", where(r.at),
                 master_->config().sentinel.service);
      replicas_.push_back(r);
    }
    tracker = tracker_;
  }
  // Outside the lock: the links take their own, and the Tracker its.
  for (auto& link : gone) {
    if (tracker) tracker->detach(*link);
    link->close();
  }
  for (auto& r : fresh) {
    r.link->enroll();
    r.link->expect_role(Session::Role::replica);
    if (tracker) tracker->attach(r.link);
    r.link->start();
  }
}

std::shared_ptr<Link> ReplicaReads::pick_replica() {
  std::lock_guard lock(mu_);
  const std::size_t n = replicas_.size();
  if (n == 0 || closed_) return nullptr;
  const std::size_t first = next_.fetch_add(1, std::memory_order_relaxed);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& link = replicas_[(first + i) % n].link;
    if (link->state() == ConnectionState::connected) return link;
  }
  return nullptr;
}

void ReplicaReads::submit(RequestRef ref) {
  Request* r = ref.get();
  if (r->kind() == RequestKind::wait_stopped) stop_replicas();
  if (r->kind() != RequestKind::user) return master_->submit(std::move(ref));
  std::shared_ptr<Link> replica = only_reads(*r) ? pick_replica() : nullptr;
  if (!replica) return master_->submit(std::move(ref));
  // The deadline counts from now, wherever the request ends up.
  const TimePoint now = Clock::now();
  const Duration timeout =
      r->timeout().count() > 0 ? r->timeout() : master_->config().command_timeout;
  r->set_times(now, now + timeout);
  r->flags |= kRouted;
  r->route.used = true;
  r->route.router = shared_from_this();
  {
    std::lock_guard g(r->route.lock);
    r->route.link = replica.get();
  }
  replica->submit(std::move(ref));
}

void ReplicaReads::routed_done(Request* raw, bool inline_ok) noexcept {
  RequestRef ref = RequestRef::adopt(raw);
  Request* r = raw;
  // Cancelled: delivered as it is, without the request's lock, which cancel() holds while the
  // link it calls completes the request (and may deliver it here, on the same thread).
  if (r->cancel_requested.load(std::memory_order_acquire))
    return deliver(std::move(ref), inline_ok);
  // route.link is written only by whoever holds the request (submit, and here), and read by
  // cancel() under the lock: reading it here needs no lock.
  const bool on_master = r->route.link == master_.get();
  const bool again =
      !on_master &&
      (r->error() ? is_connection_error(r->error()) : replica_cannot_answer(r->reply())) &&
      Clock::now() < r->deadline();
  if (!again) {
    {
      std::lock_guard g(r->route.lock);
      r->route.link = nullptr;  // a cancel from now on finds nothing to cancel
    }
    return deliver(std::move(ref), inline_ok);
  }
  // The replica could not answer it (a connection error leaves nothing of it in that link's
  // session): the master reads it, within the same deadline.
  r->prepare_retry();
  {
    std::lock_guard g(r->route.lock);
    r->route.link = master_.get();
  }
  master_->submit(std::move(ref));
}

void ReplicaReads::deliver(RequestRef ref, bool inline_ok) noexcept {
  deliver_routed(std::move(ref), executor_, inline_ok);
}

void ReplicaReads::cancel(Request* r) noexcept {
  if (r->cancel_requested.exchange(true, std::memory_order_acq_rel)) return;  // once
  // Under the request's lock, so that it cannot move to the master meanwhile (routed_done does
  // not take it for a cancelled request: the link may deliver it inside this call).
  std::lock_guard g(r->route.lock);
  if (r->route.link != nullptr) {
    r->route.link->cancel(r);
  } else {
    master_->cancel(r);
  }
}

void ReplicaReads::stop_replicas() noexcept {
  // disconnect(): no more refreshes, reads go to the master (which stops too); each replica's
  // link stops gracefully, letting what it has in flight finish within disconnect_timeout.
  std::vector<std::shared_ptr<Link>> links;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    try {
      timer_->cancel();
    } catch (...) {
    }
    for (auto& r : replicas_)
      links.push_back(r.link);
  }
  for (auto& l : links) {
    try {
      RequestRef w = RequestRef::make();
      w->set_kind(RequestKind::wait_stopped);
      w->set_timeout(master_->config().disconnect_timeout + std::chrono::seconds(1));
      w->set_handler<void>([](std::exception_ptr) {}, &to_nothing);
      l->submit(std::move(w));
    } catch (...) {
      l->close();
    }
  }
}

void ReplicaReads::close() noexcept {
  std::vector<Replica> replicas;
  std::shared_ptr<Tracker> tracker;
  {
    std::lock_guard lock(mu_);
    if (closing_) return;
    closing_ = true;
    closed_ = true;
    replicas = std::move(replicas_);
    replicas_.clear();
    tracker = std::move(tracker_);
    try {
      timer_->cancel();
    } catch (...) {
    }
  }
  for (auto& r : replicas)
    r.link->close();
  if (tracker) tracker->close();
  master_->close();
  std::lock_guard lock(mu_);
  for (auto& r : replicas)
    retired_links_.push_back(std::move(r.link));
}

ConnectionStats ReplicaReads::stats() const noexcept {
  ConnectionStats total = master_->stats();
  std::lock_guard lock(mu_);
  for (const auto& r : replicas_)
    total += r.link->stats();
  for (const auto& l : retired_links_)  // closed: their counters are final, nothing pending
    total += l->stats();
  return total;
}

std::vector<NodeStats> ReplicaReads::node_stats() const {
  std::vector<NodeStats> out = master_->node_stats();
  std::lock_guard lock(mu_);
  for (const auto& r : replicas_) {
    if (out.size() >= kNodeLabels) break;
    for (NodeStats n : r.link->node_stats()) {
      n.master = false;
      out.push_back(std::move(n));
    }
  }
  return out;
}

}  // namespace tempest::redis::detail
