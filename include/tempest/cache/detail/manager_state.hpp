// A RedisManager's state, shared with the cached functions made on it (they outlive it safely:
// once the manager is gone they find no client, as after disconnect()).
#pragma once

#include <memory>
#include <mutex>
#include <optional>

#include "tempest/cache/manager.hpp"

namespace tempest::cache::detail {

class ManagerState {
 public:
  ManagerState(redis::Config c, ManagerOptions o);

  // The client between connect() and disconnect() (and while the manager lives).
  std::optional<redis::Client> client() const {
    std::lock_guard lock(mutex);
    return client_;
  }

  const redis::Config config;
  const ManagerOptions options;
  const std::unique_ptr<CircuitBreaker> breaker;  // null unless enabled
  const std::shared_ptr<NearStore> near;          // null unless enabled

 private:
  friend class tempest::cache::RedisManager;
  mutable std::mutex mutex;
  std::optional<redis::Client> client_;
  std::shared_ptr<redis::InvalidationSink> near_forwarder_;  // the current client's
};

}  // namespace tempest::cache::detail
