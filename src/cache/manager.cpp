#include "tempest/cache/manager.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include <atomic>

#include "tempest/cache/detail/manager_state.hpp"
#include "tempest/cache/detail/near_store.hpp"
#include "tempest/log.hpp"

namespace tempest::cache {

namespace {
// What one connection's tracking says, passed on to the manager's near cache while that
// connection is the manager's: a client from before a disconnect() cannot arm or reset the near
// cache of the one after it (its invalidations still pass: dropping an entry is always safe).
class NearForwarder final : public redis::InvalidationSink {
 public:
  explicit NearForwarder(std::shared_ptr<detail::NearStore> store) : store_(std::move(store)) {}
  void retire() noexcept { live_.store(false, std::memory_order_release); }
  void invalidate(std::string_view key) noexcept override { store_->invalidate(key); }
  void invalidate_all() noexcept override { store_->invalidate_all(); }
  void reset() noexcept override {
    if (live_.load(std::memory_order_acquire)) store_->reset();
  }
  void armed() noexcept override {
    if (live_.load(std::memory_order_acquire)) store_->armed();
  }

 private:
  std::shared_ptr<detail::NearStore> store_;
  std::atomic<bool> live_{true};
};
}  // namespace

RedisManager::RedisManager(asio::any_io_executor executor, std::string_view url,
                           ManagerOptions options)
    : RedisManager(std::move(executor), redis::Config::from_url(url), std::move(options)) {}

RedisManager::RedisManager(asio::any_io_executor executor, redis::Config config,
                           ManagerOptions options)
    : executor_(std::move(executor)),
      state_(std::make_shared<detail::ManagerState>(std::move(config), std::move(options))) {}

namespace {
std::unique_ptr<detail::CircuitBreaker> make_breaker(const BreakerOptions& b) {
  if (!b.enabled) return nullptr;
  if (b.failures <= 0 || b.cool_down.count() <= 0)
    throw std::invalid_argument("BreakerOptions: failures and cool_down must be positive (got " +
                                std::to_string(b.failures) + " and " +
                                std::to_string(b.cool_down.count()) + " ms)");
  return std::make_unique<detail::CircuitBreaker>(b);
}

std::shared_ptr<detail::NearStore> make_near(const NearCacheOptions& n) {
  if (!n.enabled) return nullptr;
  if (n.max_entries == 0 || n.max_bytes == 0)
    throw std::invalid_argument(
        "NearCacheOptions: max_entries and max_bytes must be positive (got " +
        std::to_string(n.max_entries) + " and " + std::to_string(n.max_bytes) + ")");
  return std::make_shared<detail::NearStore>(n.max_entries, n.max_bytes);
}
}  // namespace

bool detail::DoubtfulEntries::add(const std::string& key, std::vector<std::string> sets,
                                  Clock::time_point until) {
  constexpr std::size_t kMax = 10000;
  std::lock_guard lock(mutex_);
  if (entries_.size() >= kMax && entries_.count(key) == 0) return false;
  auto& e = entries_[key];
  e.sets = std::move(sets);
  e.until = std::max(e.until, until);
  return true;
}

std::vector<std::string> detail::DoubtfulEntries::under(
    const std::vector<std::string>& sets) const {
  std::vector<std::string> out;
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  for (const auto& [key, e] : entries_) {
    if (e.until <= now) continue;
    for (const auto& s : e.sets) {
      if (std::find(sets.begin(), sets.end(), s) != sets.end()) {
        out.push_back(key);
        break;
      }
    }
  }
  return out;
}

void detail::DoubtfulEntries::remove(const std::string& key) {
  std::lock_guard lock(mutex_);
  entries_.erase(key);
}

bool detail::DoubtfulEntries::contains(const std::string& key) const {
  std::lock_guard lock(mutex_);
  return entries_.count(key) != 0;
}

std::size_t detail::DoubtfulEntries::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

detail::ManagerState::ManagerState(redis::Config c, ManagerOptions o)
    : config(std::move(c)),
      options(std::move(o)),
      breaker(make_breaker(options.breaker)),
      near(make_near(options.near)) {}

namespace detail {
namespace {
std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

bool CircuitBreaker::allow() noexcept {
  std::int64_t until = open_until_.load(std::memory_order_relaxed);
  if (until == 0) return true;
  const std::int64_t now = now_ns();
  if (now < until) return false;
  // Past the cool-down: one caller moves the deadline on and probes; the others stay out.
  const std::int64_t next =
      now + std::chrono::duration_cast<std::chrono::nanoseconds>(options_.cool_down).count();
  return open_until_.compare_exchange_strong(until, next, std::memory_order_acq_rel);
}

void CircuitBreaker::record(bool ok) noexcept {
  if (ok) {
    if (failures_.load(std::memory_order_relaxed) != 0)
      failures_.store(0, std::memory_order_relaxed);
    if (open_until_.load(std::memory_order_relaxed) != 0)
      open_until_.store(0, std::memory_order_release);
    return;
  }
  if (failures_.fetch_add(1, std::memory_order_relaxed) + 1 >= options_.failures) {
    const std::int64_t until =
        now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(options_.cool_down).count();
    if (open_until_.exchange(until, std::memory_order_acq_rel) == 0) {
      opened_.fetch_add(1, std::memory_order_relaxed);
      tempest::logger("tempest.cache")
          ->warn(
              "circuit breaker open: {} Redis failures in a row; cached calls skip Redis for "
              "{} ms, then one probes",
              options_.failures, options_.cool_down.count());
    }
  }
}
}  // namespace detail

NearCacheStats RedisManager::near_stats() const {
  return state_->near ? state_->near->stats() : NearCacheStats{};
}
detail::CircuitBreaker* RedisManager::breaker() const noexcept {
  return state_->breaker.get();
}
detail::NearStore* RedisManager::near_store() const noexcept {
  return state_->near.get();
}
const redis::Config& RedisManager::config() const noexcept {
  return state_->config;
}
const ManagerOptions& RedisManager::options() const noexcept {
  return state_->options;
}

RedisManager::~RedisManager() {
  // Cached functions may outlive the manager (they share its state): they find no client.
  std::optional<redis::Client> client;
  {
    std::lock_guard lock(state_->mutex);
    client.swap(state_->client_);
    if (state_->near_forwarder_) {
      static_cast<NearForwarder&>(*state_->near_forwarder_).retire();
      state_->near_forwarder_.reset();
      state_->near->reset();
    }
  }
  if (client) client->close();
}

// The coroutines below keep the state they use (not `this`) across their waits: a check still
// waiting when its manager goes (a health check on a frozen Redis) finds the state alive.
asio::awaitable<void> RedisManager::connect() {
  const std::shared_ptr<const detail::ManagerState> state = state_;
  std::optional<redis::Client> client;
  {
    auto& s = *state_;
    std::lock_guard lock(s.mutex);
    if (!s.client_) {
      s.client_.emplace(executor_, s.config);
      // Reads are tracked from the first connection on; nothing is stored in the near cache
      // until every connection tracks.
      if (s.near) {
        auto forwarder = std::make_shared<NearForwarder>(s.near);
        s.client_->track(forwarder);
        s.near_forwarder_ = std::move(forwarder);
      }
    }
    client = s.client_;
  }
  client->start();
  const bool up = co_await client->wait_connected(state->config.connect_timeout);
  if (up) co_return;
  const std::string why = client->last_error();
  const std::string message = "Redis at " + state->config.redacted() + " is unreachable" +
                              (why.empty() ? std::string() : " (" + why + ")");
  if (state->options.require_connection) throw redis::ConnectionError(message);
  tempest::logger("tempest.cache")
      ->warn(
          "{}; starting anyway, the connection keeps retrying and health checks fail until it is "
          "up",
          message);
}

asio::awaitable<void> RedisManager::disconnect() {
  std::optional<redis::Client> client;
  {
    auto& s = *state_;
    std::lock_guard lock(s.mutex);
    client.swap(s.client_);
    // Nothing reports changes any more: the near cache empties and stays unused until the next
    // connect() tracks again.
    if (s.near_forwarder_) {
      static_cast<NearForwarder&>(*s.near_forwarder_).retire();
      s.near_forwarder_.reset();
      s.near->reset();
    }
  }
  if (client) {
    co_await client->disconnect();
    client->close();  // the invalidation connections too
  }
}

redis::Client RedisManager::client() const {
  auto client = state_->client();
  if (!client) throw NotConnectedError();
  return *std::move(client);
}

std::optional<redis::Client> RedisManager::client_dependency() const {
  return state_->client();
}

bool RedisManager::is_up() const {
  auto client = state_->client();
  return client && client->is_connected();
}

asio::awaitable<bool> RedisManager::health_check() {
  const std::shared_ptr<const detail::ManagerState> state = state_;
  auto client = state->client();
  std::string failure;
  if (!client) {
    failure = "not connected (RedisManager::connect() was not called)";
  } else if (!client->is_connected()) {
    // Known to be down: answer now instead of waiting out the timeout for a reconnect.
    const auto why = client->last_error();
    failure = "not connected" + (why.empty() ? std::string() : " (" + why + ")");
  } else {
    try {
      (void)co_await client->ping(redis::CallOptions{state->options.health_timeout});
      co_return true;
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  tempest::logger("tempest.cache")
      ->warn("Redis health check failed: {} ({})", failure, state->config.redacted());
  co_return false;
}

}  // namespace tempest::cache
