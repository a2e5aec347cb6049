// A RedisManager's state, shared with the cached functions made on it (they outlive it safely:
// once the manager is gone they find no client, as after disconnect()).
#pragma once

#include <memory>
#include <mutex>
#include <optional>

#include "tempest/cache/manager.hpp"
#include "tempest/redis/detail/lock.hpp"

namespace tempest::cache::detail {

class ManagerState {
 public:
  ManagerState(redis::Config c, ManagerOptions o);

  // The client between connect() and disconnect() (and while the manager lives).
  std::optional<redis::Client> client() const {
    std::lock_guard lock(mutex);
    return client_;
  }
  // Calls fn with the client (null when there is none) under the lock, without copying it: a
  // cached hit starts its GET here, so it pays no Client copy (two reference counts up, two
  // down). fn must be short and must not call back into the manager (the lock is not
  // recursive); the client cannot be replaced or destroyed while fn runs.
  template <class F>
  decltype(auto) with_client(F&& fn) const {
    std::lock_guard lock(mutex);
    return std::forward<F>(fn)(client_ ? &*client_ : static_cast<const redis::Client*>(nullptr));
  }

  const redis::Config config;
  const ManagerOptions options;
  const std::unique_ptr<CircuitBreaker> breaker;  // null unless enabled
  const std::shared_ptr<NearStore> near;          // null unless enabled

 private:
  friend class tempest::cache::RedisManager;
  // Held for a copy of client_ or a hit's GET being made (with_client), and by connect() and
  // disconnect(): short sections, so the library's small lock (one compare-and-swap to take, one
  // exchange to give back) rather than a pthread mutex.
  mutable redis::detail::Lock mutex;
  std::optional<redis::Client> client_;
  std::shared_ptr<redis::InvalidationSink> near_forwarder_;  // the current client's
};

}  // namespace tempest::cache::detail
