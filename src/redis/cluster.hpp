// Redis Cluster (private to src/redis): one connection (Link) per node, opened when first
// needed, and a slot map read with CLUSTER SLOTS. Each request goes to the master serving its
// keys' slot (or a replica, for reads, when configured); the node's link hands it back when it
// completes, and a MOVED, ASK, TRYAGAIN, CLUSTERDOWN or READONLY answer, or a failure before
// the bytes were written, sends it again (bounded, within its own deadline). The map is read
// again at once (single-flight, coalesced) on those events and periodically.
//
// Requests whose keys span slots are split into parts that are routed on their own: a
// pipeline into its commands; MGET, DEL, UNLINK, EXISTS, TOUCH and MSET by slot (not atomic);
// a health check's PING goes to every master.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"

namespace tempest::redis::detail {

namespace asio = boost::asio;

class Link;
class Tracker;

class Cluster final : public Backend, public std::enable_shared_from_this<Cluster> {
 public:
  // Throws ConfigError for an invalid config or TLS files that cannot be loaded.
  Cluster(asio::any_io_executor executor, Config config);
  ~Cluster() override;

  void enroll() override {}
  void start() override;
  void submit(RequestRef r) override;
  void cancel(Request* r) noexcept override;
  void close() noexcept override;
  void routed_done(Request* r, bool inline_ok) noexcept override;

  const asio::any_io_executor& executor() const noexcept override { return executor_; }
  const Config& config() const noexcept override { return cfg_; }
  Venue venue() const noexcept override { return Venue::shared; }
  ConnectionState state() const noexcept override;
  ConnectionStats stats() const noexcept override;
  std::string last_error() const override;
  std::vector<NodeStats> node_stats() const override;
  void track(std::shared_ptr<InvalidationSink> sink) override;

  // The masters' addresses ("host:port") in the slot map now, ordered.
  std::vector<std::string> masters() const;
  // The address of the master serving `slot` now; empty when none is known.
  std::string master_address(std::uint32_t slot) const;
  // A node of the map by its address, for Request::route.node; nullptr when unknown.
  const void* node_at(std::string_view address) const;
  // Bumped whenever the slot map changes (a scan restarts a node's cursor when it moved).
  std::uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }

 private:
  struct Node;
  struct Shard;
  struct Fanout;
  struct PartDone;
  struct Redirect;

  // ---- routing
  void route(RequestRef& ref);
  Node* node_for(const Request& r) const noexcept;
  Link* link_of(Node& n);
  void send(RequestRef ref);
  void park(RequestRef ref, Duration delay);
  void redirect(RequestRef ref);
  void resend(RequestRef ref);
  void deliver(RequestRef ref, bool inline_ok) noexcept;
  void fail(RequestRef ref, std::exception_ptr e, bool inline_ok) noexcept;
  // Completes a request the cluster answers itself (connect() and disconnect()).
  void finish(RequestRef ref, Reply reply) noexcept;
  bool retry_after_redirect(RequestRef& ref, const Redirect& d);
  static Redirect parse_redirect(const Reply& e);
  static void set_asking(Request& r, bool on);

  // ---- splitting
  void split_pipeline(RequestRef user);
  void split_keys(RequestRef user, Args args);
  void to_all_masters(RequestRef user);
  void start_fanout(const std::shared_ptr<Fanout>& f);

  // ---- topology
  void request_refresh() noexcept;
  void wake_loop() noexcept;
  static asio::awaitable<void> refresh_loop(std::shared_ptr<Cluster> self);
  asio::awaitable<bool> refresh_once();
  asio::awaitable<Reply> ask(Node& n, Command c, Duration timeout);
  // Applies a CLUSTER SLOTS reply from a node at `asked_host`; false when it is not one.
  bool apply_slots(const Reply& r, const std::string& asked_host);
  Node& node_locked(const std::string& host, std::uint16_t port);
  const Shard* shard_locked(Node* master, std::vector<Node*> replicas);
  void moved(std::uint32_t slot, const std::string& address);

  // ---- connect() and disconnect()
  void submit_wait(RequestRef ref);
  void finish_waiters_locked(std::vector<RequestRef>& out, bool ok);
  std::vector<RequestRef> take_waiters_locked();
  void drop_timer(std::shared_ptr<asio::steady_timer> t) noexcept;
  void stop_all(RequestRef waiter);

  asio::any_io_executor executor_;
  asio::strand<asio::any_io_executor> strand_;  // the refresh loop and its timer
  Config cfg_;
  Config node_cfg_;  // what each node's link is given (host and port set per node)
  std::unique_ptr<std::atomic<const Shard*>[]> slots_;
  std::atomic<std::uint64_t> epoch_{0};
  mutable std::atomic<std::uint32_t> spread_{0};  // keyless commands: rotated over the slots
  std::atomic<bool> started_flag_{false};         // started_ and stopped_, read without the lock
  std::atomic<bool> stopped_flag_{false};

  mutable std::mutex mu_;                                         // everything below
  std::unordered_map<std::string, std::unique_ptr<Node>> nodes_;  // by address; kept to the end
  std::vector<std::unique_ptr<Shard>> shards_;                    // kept to the end
  // Links of nodes that left the map, closed: kept a while (a cancel racing with the delivery of
  // a request they failed may still reach one), then let go, their counters added to
  // retired_stats_ (a service whose cluster fails over now and then must not grow a link each
  // time).
  struct Retired {
    std::shared_ptr<Link> link;
    TimePoint at;
  };
  std::vector<Retired> retired_;
  ConnectionStats retired_stats_;
  std::shared_ptr<Tracker> tracker_;  // track(): set before start()
  std::vector<Node*> masters_;
  struct Waiter {
    RequestRef ref;
    std::shared_ptr<asio::steady_timer> timer;  // its deadline
  };
  std::vector<Waiter> waiters_;  // connect() / wait_connected()
  std::string last_error_;
  bool started_ = false;
  bool stopped_ = false;
  bool closed_ = false;
  bool map_ok_ = false;          // the last map read covers every slot
  bool refresh_failed_ = false;  // the first attempt (or the last) found no node to ask
  bool refresh_wanted_ = false;
  bool wake_posted_ = false;
  std::size_t rounds_ = 0;   // refreshes so far (each starts with another master)
  asio::steady_timer wake_;  // on strand_
};

std::shared_ptr<Backend> make_cluster(asio::any_io_executor executor, Config config);

}  // namespace tempest::redis::detail
