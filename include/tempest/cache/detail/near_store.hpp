// The near cache's store (socket-free): decoded values in process memory, bounded by entries and
// bytes with LRU eviction, each entry expiring no later than its Redis entry. Coherence comes from
// outside (Redis invalidation messages call invalidate() / clear()); the store closes the race of
// a read whose reply arrives after an invalidation of its key: begin_read() takes a ticket, and
// put() stores only if no invalidation of that key (or clear()) came since.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <typeinfo>
#include <unordered_map>
#include <vector>

#include "tempest/cache/options.hpp"
#include "tempest/redis/tracking.hpp"

namespace tempest::cache::detail {

class NearStore final : public redis::InvalidationSink {
 public:
  using Clock = std::chrono::steady_clock;
  using Value = std::shared_ptr<const void>;  // a decoded value, type known to its caller

  // At most `max_entries` entries and `max_bytes` bytes (the sizes callers declare plus the
  // keys); the least recently used go first. Split in `shards` locks (a power of two).
  NearStore(std::size_t max_entries, std::size_t max_bytes, std::size_t shards = 16);

  // The value of `key` if present, not expired and of `type` (it becomes the most recently used).
  Value get(std::string_view key, Clock::time_point now, const std::type_info& type);

  // Before reading `key` from Redis: what put() needs to know no invalidation came meanwhile.
  struct Ticket {
    std::uint64_t epoch = 0;
    std::uint64_t generation = 0;
    bool tracked = false;  // reads were tracked when it was taken
  };
  Ticket begin_read(std::string_view key) const;
  // Stores `value` (declared `bytes`) until `expires`, unless `key` was invalidated (or the store
  // cleared) since `ticket` was taken; returns whether it was stored. A value larger than the
  // whole byte bound is not stored.
  bool put(std::string_view key, const Ticket& ticket, Value value, const std::type_info& type,
           std::size_t bytes, Clock::time_point expires);

  // Redis said `key` changed: its entry goes, and reads of it under way store nothing.
  void invalidate(std::string_view key) noexcept override;
  // Everything goes (FLUSHDB / FLUSHALL, slots that moved); reads under way store nothing.
  void invalidate_all() noexcept override { clear(); }
  // Tracking broke: everything goes and nothing is stored until armed().
  void reset() noexcept override;
  void armed() noexcept override { tracked_.store(true, std::memory_order_release); }
  void clear() noexcept;
  // Whether reads are tracked now (puts are possible).
  bool tracked() const noexcept { return tracked_.load(std::memory_order_acquire); }

  NearCacheStats stats() const;

 private:
  // A key with its hash, computed once per operation: it picks the shard and the index's bucket.
  struct HashedKey {
    std::string_view text;
    std::size_t hash = 0;
  };
  struct HashOf {
    std::size_t operator()(const HashedKey& k) const noexcept { return k.hash; }
  };
  struct SameText {
    bool operator()(const HashedKey& a, const HashedKey& b) const noexcept {
      return a.hash == b.hash && a.text == b.text;
    }
  };
  struct Entry {
    std::string key;
    std::size_t hash = 0;  // of `key`
    Value value;
    const std::type_info* type = nullptr;
    std::size_t bytes = 0;
    Clock::time_point expires;
  };
  struct Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // front: most recently used
    std::unordered_map<HashedKey, std::list<Entry>::iterator, HashOf, SameText> index;
    std::size_t bytes = 0;
    std::uint64_t hits = 0, misses = 0, invalidations = 0, evictions = 0, stale_drops = 0;
  };
  static constexpr std::size_t kGenerations = 4096;  // invalidation counters by key hash

  Shard& shard_of(std::size_t hash);
  void erase_locked(Shard& s, std::list<Entry>::iterator it);
  void evict_locked(Shard& s);

  std::size_t max_entries_per_shard_;
  std::size_t max_bytes_per_shard_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> generations_;
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<std::uint64_t> flushes_{0};
  std::atomic<std::uint64_t> resets_{0};
  std::atomic<bool> tracked_{false};
};

}  // namespace tempest::cache::detail
