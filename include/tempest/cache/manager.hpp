/// @file
/// RedisManager: the counterpart of the Python SDK's AsyncRedisManager. A clear lifecycle
/// (connect / disconnect), the live client for handlers, and a bounded health check.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string_view>

#include "tempest/cache/options.hpp"
#include "tempest/redis/client.hpp"

namespace tempest::cache {

namespace detail {
class NearStore;
}

namespace asio = boost::asio;
/// Timeouts and intervals, in milliseconds.
using Duration = std::chrono::milliseconds;

/// client() was called before connect() or after disconnect().
class NotConnectedError : public redis::Error {
 public:
  NotConnectedError()
      : redis::Error("RedisManager::connect() must be called before accessing the client.") {}
};

/// The cache's circuit breaker for Redis (opt-in): after `failures` Redis failures or timeouts in
/// a row, cached calls skip Redis entirely (they run their function, as when Redis is down) for
/// `cool_down`; then one call probes Redis, and its success closes the breaker again.
struct BreakerOptions {
  bool enabled = false;      ///< off by default
  int failures = 5;          ///< failures in a row that open it
  Duration cool_down{1000};  ///< how long it stays open before a probe
};

/// A RedisManager's options beyond the connection's (which come from the URL or redis::Config).
struct ManagerOptions {
  ManagerOptions() = default;  ///< not an aggregate: see tempest::redis::ScanOptions
  /// false (default): connect() with Redis unreachable logs a warning and returns; the connection
  /// keeps trying and health_check() is false meanwhile. true: connect() throws ConnectionError.
  bool require_connection = false;
  /// Bound of health_check()'s PING (the Python original has none and hangs with Redis).
  Duration health_timeout{1000};
  /// A near cache for this manager's cached functions (off by default).
  NearCacheOptions near = {};
  BreakerOptions breaker = {};  ///< the circuit breaker (off by default)
};

namespace detail {
/// The breaker's state, lock-free: a hit pays two relaxed loads.
class CircuitBreaker {
 public:
  explicit CircuitBreaker(BreakerOptions o) : options_(o) {}
  /// Whether this call may use Redis now (false: the breaker is open). After the cool-down one
  /// caller gets true (the probe) and the others keep false until it reported.
  bool allow() noexcept;
  void record(bool ok) noexcept;
  bool open() const noexcept { return open_until_.load(std::memory_order_relaxed) != 0; }
  std::uint64_t opened() const noexcept { return opened_.load(std::memory_order_relaxed); }

 private:
  BreakerOptions options_;
  std::atomic<int> failures_{0};
  std::atomic<std::int64_t> open_until_{0};  ///< steady_clock ns; 0: closed
  std::atomic<std::uint64_t> opened_{0};
};

class ManagerState;
}  // namespace detail

/// The counterpart of the Python SDK's AsyncRedisManager: owns the connection to Redis that
/// cached functions, invalidators and handlers use, with a clear lifecycle and a bounded health
/// check. Thread-safe.
class RedisManager {
 public:
  /// Opens nothing. Throws ConfigError for a bad URL (the message never holds the password).
  ///@{
  RedisManager(asio::any_io_executor executor, std::string_view url, ManagerOptions options = {});
  RedisManager(asio::any_io_executor executor, redis::Config config, ManagerOptions options = {});
  ///@}
  ~RedisManager();
  RedisManager(const RedisManager&) = delete;
  RedisManager& operator=(const RedisManager&) = delete;

  /// Idempotent. Starts the connection and waits up to the connect timeout for the handshake.
  asio::awaitable<void> connect();
  /// Idempotent and graceful: in-flight requests finish (bounded), then the connection closes.
  asio::awaitable<void> disconnect();

  /// The live client. Throws NotConnectedError before connect() and after disconnect().
  redis::Client client() const;
  /// What an HTTP layer hands to a handler: the client while the manager is connected (even if
  /// Redis is momentarily down: requests then fail fast or wait for their deadline), nullopt
  /// before connect() and after disconnect().
  std::optional<redis::Client> client_dependency() const;
  /// True when connect() ran (and disconnect() did not) and the link to Redis is up right now.
  bool is_up() const;

  /// PING bounded by ManagerOptions::health_timeout. Never throws; logs a warning on failure.
  asio::awaitable<bool> health_check();

  /// The circuit breaker (null unless BreakerOptions::enabled).
  detail::CircuitBreaker* breaker() const noexcept;
  /// The near cache (null unless NearCacheOptions::enabled) and its figures (zero without one).
  ///@{
  detail::NearStore* near_store() const noexcept;
  NearCacheStats near_stats() const;
  ///@}

  /// The connection's configuration (its password included: never log it; use redacted()).
  const redis::Config& config() const noexcept;
  /// The options given at construction.
  const ManagerOptions& options() const noexcept;
  /// The executor given at construction.
  asio::any_io_executor executor() const { return executor_; }

  /// What cached functions keep of their manager: shared, so that work of theirs still running
  /// when the manager is destroyed (a background refresh) finds no client instead of a dangling
  /// manager.
  std::shared_ptr<const detail::ManagerState> state() const noexcept { return state_; }

 private:
  asio::any_io_executor executor_;
  std::shared_ptr<detail::ManagerState> state_;
};

}  // namespace tempest::cache
