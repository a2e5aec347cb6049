// A RedisManager's state, shared with the cached functions made on it (they outlive it safely:
// once the manager is gone they find no client, as after disconnect()).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tempest/cache/manager.hpp"
#include "tempest/redis/detail/lock.hpp"

namespace tempest::cache::detail {

// Entries that may be in Redis without their registrations: a store whose SET may have held while
// a registration failed, and whose clean-up (UNLINK) could not reach Redis either. No
// invalidation could find them, so an invalidation in this process of one of their sets unlinks
// them first, and a background task keeps trying to unlink them until their TTL ends.
class DoubtfulEntries {
 public:
  using Clock = std::chrono::steady_clock;
  // False when too many are tracked already (the entry then stays until its TTL ends).
  bool add(const std::string& key, std::vector<std::string> sets, Clock::time_point until);
  // The keys doubtful under any of `sets` (and not expired).
  std::vector<std::string> under(const std::vector<std::string>& sets) const;
  // Unlinked, or expired by now: no longer doubtful.
  void remove(const std::string& key);
  bool contains(const std::string& key) const;
  std::size_t size() const;

 private:
  struct Entry {
    std::vector<std::string> sets;
    Clock::time_point until;  // its TTL's end: gone from Redis by then anyway
  };
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
};

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
  mutable DoubtfulEntries doubtful;

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
