#include "tempest/cache/detail/near_store.hpp"

#include <functional>
#include <stdexcept>

namespace tempest::cache::detail {

namespace {
// What an entry costs besides its declared size: the list node, the index slot, the key.
constexpr std::size_t kEntryOverhead = 96;

std::size_t hash_of(std::string_view key) {
  return std::hash<std::string_view>{}(key);
}
// An invalidation counter by key hash (other bits than the shard's).
std::size_t generation_slot(std::size_t hash, std::size_t slots) {
  return static_cast<std::size_t>((static_cast<std::uint64_t>(hash) * 0x9E3779B97F4A7C15ULL) >>
                                  40) &
         (slots - 1);
}
}  // namespace

NearStore::NearStore(std::size_t max_entries, std::size_t max_bytes, std::size_t shards)
    : generations_(new std::atomic<std::uint64_t>[kGenerations]) {
  if (shards == 0 || (shards & (shards - 1)) != 0)
    throw std::invalid_argument("near cache: shards must be a power of two");
  if (max_entries == 0 || max_bytes == 0)
    throw std::invalid_argument("near cache: max_entries and max_bytes must be positive");
  max_entries_per_shard_ = std::max<std::size_t>(1, max_entries / shards);
  max_bytes_per_shard_ = std::max<std::size_t>(1, max_bytes / shards);
  for (std::size_t i = 0; i < shards; ++i)
    shards_.push_back(std::make_unique<Shard>());
  for (std::size_t i = 0; i < kGenerations; ++i)
    generations_[i].store(0, std::memory_order_relaxed);
}

NearStore::Shard& NearStore::shard_of(std::size_t hash) {
  return *shards_[hash & (shards_.size() - 1)];
}

void NearStore::erase_locked(Shard& s, std::list<Entry>::iterator it) {
  s.bytes -= it->bytes;
  s.index.erase(HashedKey{it->key, it->hash});
  s.lru.erase(it);
}

void NearStore::evict_locked(Shard& s) {
  while (!s.lru.empty() &&
         (s.lru.size() > max_entries_per_shard_ || s.bytes > max_bytes_per_shard_)) {
    erase_locked(s, std::prev(s.lru.end()));
    ++s.evictions;
  }
}

NearStore::Value NearStore::get(std::string_view key, Clock::time_point now,
                                const std::type_info& type) {
  const std::size_t h = hash_of(key);
  Shard& s = shard_of(h);
  std::lock_guard lock(s.mu);
  const auto found = s.index.find(HashedKey{key, h});
  if (found == s.index.end()) {
    ++s.misses;
    return nullptr;
  }
  const auto it = found->second;
  if (it->expires <= now) {
    erase_locked(s, it);
    ++s.misses;
    return nullptr;
  }
  if (*it->type != type) {  // two functions of one name and key, of different result types
    ++s.misses;
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it);
  ++s.hits;
  return it->value;
}

NearStore::Ticket NearStore::begin_read(std::string_view key) const {
  const std::size_t g = generation_slot(hash_of(key), kGenerations);
  // The epoch first: reset() clears `tracked_` before it moves the epoch, so a ticket that saw
  // the new epoch sees tracked == false (unless armed() came after), and one that saw the old
  // epoch fails put()'s epoch check.
  const std::uint64_t epoch = epoch_.load(std::memory_order_acquire);
  const bool tracked = tracked_.load(std::memory_order_acquire);
  return Ticket{epoch, generations_[g].load(std::memory_order_acquire), tracked};
}

bool NearStore::put(std::string_view key, const Ticket& ticket, Value value,
                    const std::type_info& type, std::size_t bytes, Clock::time_point expires) {
  if (!ticket.tracked) return false;  // read while Redis was not tracking: it may never report
  const std::size_t h = hash_of(key);
  const std::size_t cost = bytes + key.size() + kEntryOverhead;
  Shard& s = shard_of(h);
  std::lock_guard lock(s.mu);
  // Checked under the shard's lock: an invalidation bumps its counter before it takes the lock,
  // so either it is seen here, or it comes after and removes what is stored now.
  if (ticket.epoch != epoch_.load(std::memory_order_acquire) ||
      ticket.generation !=
          generations_[generation_slot(h, kGenerations)].load(std::memory_order_acquire)) {
    ++s.stale_drops;
    return false;
  }
  if (cost > max_bytes_per_shard_) return false;
  if (const auto found = s.index.find(HashedKey{key, h}); found != s.index.end())
    erase_locked(s, found->second);
  s.lru.push_front(Entry{std::string(key), h, std::move(value), &type, cost, expires});
  s.index.emplace(HashedKey{s.lru.front().key, h}, s.lru.begin());
  s.bytes += cost;
  evict_locked(s);
  return true;
}

void NearStore::invalidate(std::string_view key) noexcept {
  const std::size_t h = hash_of(key);
  generations_[generation_slot(h, kGenerations)].fetch_add(1, std::memory_order_acq_rel);
  Shard& s = shard_of(h);
  std::lock_guard lock(s.mu);
  ++s.invalidations;
  if (const auto found = s.index.find(HashedKey{key, h}); found != s.index.end())
    erase_locked(s, found->second);
}

void NearStore::reset() noexcept {
  tracked_.store(false, std::memory_order_release);
  resets_.fetch_add(1, std::memory_order_relaxed);
  clear();
}

void NearStore::clear() noexcept {
  epoch_.fetch_add(1, std::memory_order_acq_rel);
  flushes_.fetch_add(1, std::memory_order_relaxed);
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    s->index.clear();
    s->lru.clear();
    s->bytes = 0;
  }
}

NearCacheStats NearStore::stats() const {
  NearCacheStats out;
  out.flushes = flushes_.load(std::memory_order_relaxed);
  out.resets = resets_.load(std::memory_order_relaxed);
  out.tracked = tracked();
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    out.hits += s->hits;
    out.misses += s->misses;
    out.invalidations += s->invalidations;
    out.evictions += s->evictions;
    out.stale_drops += s->stale_drops;
    out.entries += s->lru.size();
    out.bytes += s->bytes;
  }
  return out;
}

}  // namespace tempest::cache::detail
