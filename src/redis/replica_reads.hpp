// A Sentinel service read from its replicas (private to src/redis): the master's link (as any
// redis+sentinel:// client has) for everything that writes, and one link per replica the
// sentinels list as up and in sync, for the commands that only read. A read goes to the next
// connected replica in turn; none connected, to the master. A read a replica could not answer
// (its link dropped, LOADING, MASTERDOWN) goes to the master within its deadline: a read can
// run twice without harm. The list is asked for again every replica_refresh and whenever the
// sentinels announce a new master; each replica's handshake checks that it says ROLE slave.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "link.hpp"

namespace tempest::redis::detail {

class Tracker;

class ReplicaReads final : public Backend, public std::enable_shared_from_this<ReplicaReads> {
 public:
  // Throws ConfigError for an invalid config. `config` is a redis+sentinel:// one.
  ReplicaReads(asio::any_io_executor executor, Config config);
  ~ReplicaReads() override;

  void enroll() override;
  void start() override;
  void submit(RequestRef r) override;
  void cancel(Request* r) noexcept override;
  void close() noexcept override;
  void routed_done(Request* r, bool inline_ok) noexcept override;

  const asio::any_io_executor& executor() const noexcept override { return executor_; }
  const Config& config() const noexcept override { return master_->config(); }
  Venue venue() const noexcept override { return Venue::shared; }
  // The master's: writes need it, and a health check asks it.
  ConnectionState state() const noexcept override { return master_->state(); }
  ConnectionStats stats() const noexcept override;
  std::string last_error() const override { return master_->last_error(); }
  std::vector<NodeStats> node_stats() const override;
  void track(std::shared_ptr<InvalidationSink> sink) override;

 private:
  struct Replica {
    Endpoint at;
    std::shared_ptr<Link> link;
  };
  // Asks the sentinels for the replicas (again), then opens and closes links to match.
  void refresh();
  void apply(const std::vector<Endpoint>& listed);
  void schedule_refresh();
  // The next connected replica in turn, or null.
  std::shared_ptr<Link> pick_replica();
  void deliver(RequestRef ref, bool inline_ok) noexcept;
  // disconnect(): the replicas' links stop gracefully, reads go to the master from now on.
  void stop_replicas() noexcept;

  asio::any_io_executor executor_;
  Config
      replica_cfg_;  // the master's credentials, TLS and db; no sentinel; host and port per replica
  std::shared_ptr<Link> master_;
  std::shared_ptr<asio::steady_timer> timer_;  // the next refresh
  mutable std::mutex mu_;
  std::vector<Replica> replicas_;     // under mu_
  std::shared_ptr<Tracker> tracker_;  // under mu_ after start()
  // Links of replicas that left (closed): kept until this backend goes, as a request routed
  // there may still point at one, and their counters stay in stats(). Under mu_.
  std::vector<std::shared_ptr<Link>> retired_links_;
  bool closed_ = false;                  // disconnect() or close(): no refresh, no replica read
  bool closing_ = false;                 // close() ran (under mu_)
  std::atomic<std::size_t> next_{0};     // the replica to try first for the next read
  std::atomic<bool> refreshing_{false};  // a refresh is under way
  std::atomic<bool> again_{false};       // one was asked for meanwhile: run it after
};

}  // namespace tempest::redis::detail
