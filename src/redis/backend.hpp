// What a Client handle drives (private to src/redis): one connection (Link), or a cluster of
// them (Cluster). Requests enter through submit() and leave through their handlers.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "tempest/redis/config.hpp"
#include "tempest/redis/connection.hpp"
#include "tempest/redis/detail/commands.hpp"
#include "tempest/redis/detail/request.hpp"
#include "tempest/redis/tracking.hpp"

namespace tempest::redis::detail {

class Backend {
 public:
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;

  // Registers with the I/O context (after construction, when a shared_ptr owns the object).
  virtual void enroll() = 0;
  virtual void start() = 0;
  // Takes the request (its reference); its handler is invoked once, whatever happens.
  virtual void submit(RequestRef r) = 0;
  // Cancels `r` if it is still pending (from any thread).
  virtual void cancel(Request* r) noexcept = 0;
  // Stops at once: everything pending fails.
  virtual void close() noexcept = 0;
  // A request this backend routed (Request::route.router) was completed by one of its links;
  // takes the reference of the link's delivery.
  virtual void routed_done(Request* r, bool inline_ok) noexcept = 0;

  virtual const boost::asio::any_io_executor& executor() const noexcept = 0;
  virtual const Config& config() const noexcept = 0;
  virtual Venue venue() const noexcept = 0;
  virtual ConnectionState state() const noexcept = 0;
  virtual ConnectionStats stats() const noexcept = 0;
  virtual std::string last_error() const = 0;
  // Per server: one entry for a single connection, one per node (at most kNodeLabels, the rest
  // summed as "other") for a cluster.
  virtual std::vector<NodeStats> node_stats() const = 0;
  // Client-side caching (before start()): keys read through this backend are tracked by Redis,
  // and what changes them is reported to `sink` (see tempest/redis/tracking.hpp).
  virtual void track(std::shared_ptr<InvalidationSink> sink) = 0;
  static constexpr std::size_t kNodeLabels = 32;

  // Whether requests go by the slot of their key (a cluster): a client that knows the key of a
  // request it builds (get, set...) puts the slot in Request::route, and the cluster need not
  // read the command to find it.
  bool routes_by_slot() const noexcept { return routes_by_slot_; }

  // Counting the user handles (Client copies): the last one going away closes the backend.
  void retain_user() noexcept { users_.fetch_add(1, std::memory_order_relaxed); }
  void release_user() noexcept {
    if (users_.fetch_sub(1, std::memory_order_acq_rel) == 1) close();
  }

 private:
  std::atomic<std::uint32_t> users_{0};

 protected:
  bool routes_by_slot_ = false;
};

// For routers (a cluster; a Sentinel service read from its replicas), defined in request.cpp:
// what kind of failure a request met, and the end of a routed request: its handler runs (or it is
// released), and the router's reference on it goes only after that (the router may go with it).
bool is_connection_error(const std::exception_ptr& e) noexcept;
bool is_timeout(const std::exception_ptr& e) noexcept;
void deliver_routed(RequestRef ref, const boost::asio::any_io_executor& fallback,
                    bool inline_ok) noexcept;

}  // namespace tempest::redis::detail
