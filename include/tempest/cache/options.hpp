/// @file
/// Options and statistics of cached functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tempest::cache {

/// ttl = no_expiry stores without expiry (plain SET), like ttl=0 in the Python SDK.
inline constexpr std::chrono::seconds no_expiry{0};

/// What a cached call does when Redis fails or is too slow.
enum class OnRedisError {
  fail_open,  ///< default: run the function, return its result, warn (rate-limited), count
  propagate,  ///< throw the Redis error to the caller
};

/// A lock across processes so that N processes missing the same key compute it once: SET NX PX
/// with a random token, released by a compare-and-delete script. Losers poll for the value for at
/// most `wait`, then compute anyway.
struct LockOptions {
  bool enabled = false;                  ///< off by default (single_flight still applies)
  std::chrono::milliseconds ttl{10000};  ///< the lock expires even if its holder dies
  std::chrono::milliseconds wait{3000};  ///< how long a loser waits for the winner's value
  std::chrono::milliseconds poll{10};    ///< how often it looks
};

/// Whether a cached function keeps a near cache (decoded values in process memory, kept coherent
/// by Redis's invalidation reports; see NearCacheOptions).
enum class NearCache : std::uint8_t {
  manager_default,  ///< as the RedisManager's NearCacheOptions::default_on says
  on,               ///< requires a RedisManager with NearCacheOptions::enabled
  off,              ///< never
};

/// The options of cached(), the Python decorator's arguments and more.
///
/// Build it as a named variable or directly in the cached(...) call, not inside a co_await
/// expression (g++ 12 miscompiles braced aggregates with strings there).
struct CachedOptions {
  std::string name = {};                    ///< required; the Python SDK uses __qualname__
  std::chrono::seconds ttl{300};            ///< no_expiry: no expiry
  std::chrono::seconds ttl_jitter{0};       ///< each entry lives ttl + a random 0..ttl_jitter
  std::string key_prefix = {};              ///< e.g. "users:"; prefix invalidation works on it
  std::string ns = {};                      ///< namespace: registry set {prefix}__ns__:{ns}
  std::vector<std::string> tags = {};       ///< static tags: registry sets {prefix}__tag__:{tag}
  std::chrono::milliseconds deadline{100};  ///< the cache's own bound on each Redis round trip
  OnRedisError on_redis_error = OnRedisError::fail_open;  ///< see OnRedisError
  bool single_flight = true;                    ///< concurrent misses of one key share one call
  LockOptions lock = {};                        ///< a lock across processes (off by default)
  NearCache near = NearCache::manager_default;  ///< this function's use of the near cache

  /// Freshness and failure handling (all off by default; see the README's "Freshness" section).
  /// Early refresh: once an entry is past this fraction of its TTL (e.g. 0.8), the first call
  /// that reads it starts one recomputation in the background (with lock.enabled: in one process
  /// only) and every call, that one too, gets the current value at once. 0: off; else 0 < x < 1.
  double early_refresh = 0;
  /// Fail-safe: entries stay in Redis this long past their TTL (stale). When recomputing an
  /// expired entry throws or exceeds a timeout, the stale value is returned instead (logged and
  /// counted), and the function is tried again no sooner than fail_safe_throttle later.
  std::chrono::seconds fail_safe_max{0};
  std::chrono::milliseconds fail_safe_throttle{30000};  ///< see fail_safe_max
  /// Factory timeouts (0: none). Past soft_timeout a call that has a stale value returns it and
  /// the computation finishes in the background (its result is stored); past hard_timeout a call
  /// throws FactoryTimeout (or returns the stale value, if it has one) and the computation still
  /// finishes and stores its result. soft_timeout needs fail_safe_max > 0.
  std::chrono::milliseconds soft_timeout{0};
  std::chrono::milliseconds hard_timeout{0};  ///< see soft_timeout
};

/// A cached function's counters (Cached::stats(), all_cache_stats(), /metrics).
struct CacheStats {
  std::uint64_t hits = 0;            ///< calls answered from the cache
  std::uint64_t misses = 0;          ///< calls not answered from the cache
  std::uint64_t errors = 0;          ///< Redis unreachable, slow or failing (fail-open events)
  std::uint64_t corrupt = 0;         ///< stored values that could not be decoded (then recomputed)
  std::uint64_t joins = 0;           ///< calls that shared another call's computation
  std::uint64_t unserializable = 0;  ///< results returned uncached because encoding failed
  std::uint64_t lock_waits = 0;      ///< calls that waited for another process's computation
  std::uint64_t near_hits = 0;       ///< hits served from the near cache (counted in hits too)
  std::uint64_t breaker_skips = 0;   ///< calls that skipped Redis: the circuit breaker was open
  std::uint64_t stale_served = 0;    ///< calls answered with a stale value (fail-safe)
  std::uint64_t refreshes = 0;       ///< early refreshes started in the background
  std::uint64_t refresh_failures = 0;  ///< early refreshes whose function threw
  std::uint64_t timeouts = 0;          ///< calls that stopped waiting for their function
};

/// A RedisManager's near cache (L1): the values its cached functions read from Redis, decoded,
/// in process memory. Redis tracks the keys read (CLIENT TRACKING) and reports every change, by
/// any process, on an invalidation connection; a lost connection or a moved slot clears it all.
struct NearCacheOptions {
  bool enabled = false;              ///< the manager keeps one (and its connections track reads)
  bool default_on = true;            ///< cached functions with NearCache::manager_default use it
  std::size_t max_entries = 100000;  ///< entries held at most (least recently used go first)
  std::size_t max_bytes = std::size_t{64} << 20;  ///< stored JSON sizes plus keys and overhead
};

/// A near cache's counters (RedisManager::near_stats()).
struct NearCacheStats {
  std::uint64_t hits = 0;           ///< reads served from process memory
  std::uint64_t misses = 0;         ///< reads that went to Redis
  std::uint64_t invalidations = 0;  ///< keys Redis reported changed
  std::uint64_t evictions = 0;      ///< entries removed for the bounds
  std::uint64_t flushes = 0;        ///< times everything went (FLUSHDB, resets, moved slots)
  std::uint64_t resets = 0;         ///< times tracking broke (a lost or replaced connection)
  std::uint64_t stale_drops = 0;    ///< replies not stored: their key changed while being read
  std::uint64_t entries = 0;        ///< entries held now
  std::uint64_t bytes = 0;          ///< their accounted size now
  bool tracked = false;             ///< reads are tracked now (the near cache is in use)
};

/// The stats of every cached function alive in this process (for /metrics), by name. Functions
/// that share a name are summed.
std::vector<std::pair<std::string, CacheStats>> all_cache_stats();

}  // namespace tempest::cache
