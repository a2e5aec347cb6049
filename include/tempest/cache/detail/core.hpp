// The compiled core behind cached(): Redis I/O with the cache's own deadline and fail-open
// policy, single-flight, the distributed lock, registry sets, stats and logging. The templates
// in cached.hpp only encode arguments and decode results.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tempest/cache/options.hpp"
#include "tempest/redis/client.hpp"

namespace tempest::cache {
class RedisManager;
}

namespace tempest::cache::detail {

namespace asio = boost::asio;

// One in-process computation of a key that concurrent callers share.
class Flight {
 public:
  Flight();
  // Waits for the leader; returns its result or rethrows its exception.
  asio::awaitable<std::shared_ptr<const void>> wait();
  // The same for at most `limit`: nullopt when it ran out.
  asio::awaitable<std::optional<std::shared_ptr<const void>>> wait_for(
      std::chrono::milliseconds limit);
  void complete(std::exception_ptr error, std::shared_ptr<const void> value);
  struct State;
  // Calls fn on `ex` once the flight is done.
  void on_done(asio::any_io_executor ex,
               std::function<void(std::exception_ptr, std::shared_ptr<const void>)> fn);

 private:
  friend class CacheCore;
  std::shared_ptr<State> state_;
};

// Where a stored entry stands, from the freshness times stored after its value (early_refresh /
// fail_safe_max; see CacheCore::settle).
enum class Freshness : std::uint8_t {
  fresh,
  refresh_due,  // past early_refresh: serve it and recompute in the background
  stale,        // past its TTL, kept by fail_safe_max: served only when recomputing fails
};

struct Lookup {
  std::optional<std::string> value;  // the stored payload on a hit
  bool redis_ok = false;             // false: Redis failed or is down; do not write either
  bool corrupt = false;              // the key held something unreadable (already counted)
  Freshness freshness = Freshness::fresh;
  // For the near cache: until when the value may be served without asking Redis again (the
  // entry's expiry, its freshness, or its refresh time; max: never), counted from the send.
  std::chrono::steady_clock::time_point expires = std::chrono::steady_clock::time_point::max();
};

class NearStore;
class KeyBuffer;
class CircuitBreaker;
class ManagerState;

struct Lock {
  std::string key;
  std::string token;
  bool acquired = false;
};

class CacheCore : public std::enable_shared_from_this<CacheCore> {
 public:
  CacheCore(RedisManager& manager, CachedOptions options);
  ~CacheCore();

  const CachedOptions& options() const noexcept { return options_; }
  std::string key_with_prefix(std::string_view built) const;
  void key_for_args(KeyBuffer& out, std::string_view args_json,
                    std::string_view kwargs_json = "{}") const;

  // Single-flight: the first caller for a key leads; later ones get a flight to wait on.
  struct Joined {
    std::shared_ptr<Flight> flight;  // joiners only
    bool leader = true;
  };
  Joined join(const std::string& key);
  // The leader is done: hands joiners the error, or the value made by `value` (called only if
  // someone joined).
  void finish(const std::string& key, std::exception_ptr error,
              const std::function<std::shared_ptr<const void>()>& value);

  // GET (and PTTL for the near cache); the freshness times are read from the value's end.
  asio::awaitable<Lookup> lookup(const std::string& key);
  // The same in steps, for cached()'s hit path to await the GET itself (one coroutine frame
  // less per call): begin_lookup(key) gives the GET of `key` to await, not started yet (made
  // from the manager's client under its lock, without copying the client), or none (Redis known
  // down, not connected, or the breaker open: then unavailable() is the lookup; or making the GET
  // threw: then `failure`, for lookup_failed()); then looked_up() on the GET's reply, or
  // lookup_failed() with its exception. unavailable() and lookup_failed() throw with
  // OnRedisError::propagate. After a hit has decoded the value, recycle() gives the reply's
  // buffer back for a later reply to be read into (no allocation per reply).
  struct LookupStart {
    asio::awaitable<std::optional<std::string>> get;  // valid() when Redis is asked
    std::exception_ptr failure;                       // making the GET threw
    bool breaker_open = false;
    bool has_client = false;  // connect() ran (the client may be down)
  };
  LookupStart begin_lookup(std::string_view key);
  Lookup unavailable(const LookupStart& start);
  void looked_up(Lookup& found);  // found.value: the GET's reply, read in place
  Lookup lookup_failed(const std::string& key, std::exception_ptr e);
  static void recycle(Lookup& found) noexcept;
  // The near cache this function uses, or null.
  NearStore* near() const noexcept { return near_; }
  // SET (EX ttl, the options' unless `ttl` says otherwise, plus the jitter; XX with
  // `only_if_exists`) and the registry sets.
  asio::awaitable<void> store(const std::string& key, std::string payload,
                              std::vector<std::string> tags,
                              std::optional<std::chrono::seconds> ttl = std::nullopt,
                              bool only_if_exists = false);
  // Whether the key still exists (EXISTS; true when Redis cannot tell): a stale value of an
  // entry invalidated meanwhile is never served.
  asio::awaitable<bool> still_there(const std::string& key);
  asio::awaitable<Lock> acquire_lock(const std::string& key);
  // After losing the lock race: polls for the winner's value up to LockOptions::wait.
  asio::awaitable<std::optional<std::string>> wait_for_value(const std::string& key,
                                                             const Lock& lock);
  asio::awaitable<void> release_lock(const Lock& lock);

  void count_hit() { hits_.fetch_add(1, std::memory_order_relaxed); }
  void count_miss() { misses_.fetch_add(1, std::memory_order_relaxed); }
  void count_near_hit() {
    hits_.fetch_add(1, std::memory_order_relaxed);
    near_hits_.fetch_add(1, std::memory_order_relaxed);
  }
  // Fail-safe: a stale value answers instead of the function (`why`: its error or timeout), and
  // the key is not recomputed again for fail_safe_throttle.
  void serve_stale(const std::string& key, const std::string& why);
  // Whether the key's function failed within the last fail_safe_throttle (serve stale values).
  bool throttled(std::string_view key);
  // Early refresh: at most one background refresh of a key at a time in this process, and none
  // for lock.wait after another process was found holding the key's lock (`lost_lock`).
  bool claim_refresh(std::string_view key);
  void end_refresh(const std::string& key, std::exception_ptr error, bool lost_lock);
  void count_refresh() { refreshes_.fetch_add(1, std::memory_order_relaxed); }
  // Computations under a timeout, by key, while they run: a later caller waits for the one that
  // outlived an earlier caller's timeout instead of starting another.
  std::shared_ptr<Flight> running(const std::string& key);
  std::shared_ptr<Flight> start_running(const std::string& key);
  void stop_running(const std::string& key, const std::shared_ptr<Flight>& flight);
  // Whether `e` is a Redis error that OnRedisError::propagate hands to the caller.
  bool propagates(std::exception_ptr e) const;
  void count_stale() { stale_served_.fetch_add(1, std::memory_order_relaxed); }
  void count_timeout() { timeouts_.fetch_add(1, std::memory_order_relaxed); }
  void corrupt_value(std::string_view key, const std::string& problem);
  void unserializable(const std::string& key, const std::string& problem);
  CacheStats stats() const;

 private:
  void redis_error(const std::string& what);
  // Reads and removes the freshness times after a stored value (see with_freshness).
  void settle(Lookup& found, std::chrono::steady_clock::time_point sent) const;
  // The payload to store: the value, then its freshness times when the options need them.
  std::string with_freshness(std::string payload, long long ttl_seconds) const;
  std::shared_ptr<const ManagerState> manager_;
  CachedOptions options_;
  std::mutex flights_mutex_;
  std::map<std::string, std::shared_ptr<Flight>, std::less<>> flights_;
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, errors_{0}, corrupt_{0}, joins_{0},
      unserializable_{0}, lock_waits_{0}, near_hits_{0}, breaker_skips_{0}, stale_served_{0},
      refreshes_{0}, refresh_failures_{0}, timeouts_{0};
  std::mutex freshness_mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> throttled_;
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> refreshing_;
  std::map<std::string, std::shared_ptr<Flight>, std::less<>> running_;
  NearStore* near_ = nullptr;
  std::atomic<std::int64_t> last_warning_ns_{0};
  std::atomic<std::uint64_t> suppressed_warnings_{0};
};

}  // namespace tempest::cache::detail
