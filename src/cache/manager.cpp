#include "tempest/cache/manager.hpp"

#include <spdlog/spdlog.h>

#include <atomic>

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
    : executor_(std::move(executor)), config_(std::move(config)), options_(std::move(options)) {
  const auto& n = options_.near;
  if (n.enabled) {
    if (n.max_entries == 0 || n.max_bytes == 0)
      throw std::invalid_argument(
          "NearCacheOptions: max_entries and max_bytes must be positive (got " +
          std::to_string(n.max_entries) + " and " + std::to_string(n.max_bytes) + ")");
    near_ = std::make_shared<detail::NearStore>(n.max_entries, n.max_bytes);
  }
}

NearCacheStats RedisManager::near_stats() const {
  return near_ ? near_->stats() : NearCacheStats{};
}

RedisManager::~RedisManager() {
  std::lock_guard lock(mutex_);
  if (client_) client_->close();
}

asio::awaitable<void> RedisManager::connect() {
  std::optional<redis::Client> client;
  {
    std::lock_guard lock(mutex_);
    if (!client_) {
      client_.emplace(executor_, config_);
      // Reads are tracked from the first connection on; nothing is stored in the near cache
      // until every connection tracks.
      if (near_) {
        auto forwarder = std::make_shared<NearForwarder>(near_);
        client_->track(forwarder);
        near_forwarder_ = std::move(forwarder);
      }
    }
    client = client_;
  }
  client->start();
  const bool up = co_await client->wait_connected(config_.connect_timeout);
  if (up) co_return;
  const std::string why = client->last_error();
  const std::string message = "Redis at " + config_.redacted() + " is unreachable" +
                              (why.empty() ? std::string() : " (" + why + ")");
  if (options_.require_connection) throw redis::ConnectionError(message);
  tempest::logger("tempest.cache")
      ->warn(
          "{}; starting anyway, the connection keeps retrying and health checks fail until it is "
          "up",
          message);
}

asio::awaitable<void> RedisManager::disconnect() {
  std::optional<redis::Client> client;
  {
    std::lock_guard lock(mutex_);
    client.swap(client_);
    // Nothing reports changes any more: the near cache empties and stays unused until the next
    // connect() tracks again.
    if (near_forwarder_) {
      static_cast<NearForwarder&>(*near_forwarder_).retire();
      near_forwarder_.reset();
      near_->reset();
    }
  }
  if (client) {
    co_await client->disconnect();
    client->close();  // the invalidation connections too
  }
}

redis::Client RedisManager::client() const {
  std::lock_guard lock(mutex_);
  if (!client_) throw NotConnectedError();
  return *client_;
}

std::optional<redis::Client> RedisManager::client_dependency() const {
  std::lock_guard lock(mutex_);
  return client_;
}

bool RedisManager::is_up() const {
  std::lock_guard lock(mutex_);
  return client_ && client_->is_connected();
}

asio::awaitable<bool> RedisManager::health_check() {
  auto client = client_dependency();
  std::string failure;
  if (!client) {
    failure = "not connected (RedisManager::connect() was not called)";
  } else if (!client->is_connected()) {
    // Known to be down: answer now instead of waiting out the timeout for a reconnect.
    const auto why = client->last_error();
    failure = "not connected" + (why.empty() ? std::string() : " (" + why + ")");
  } else {
    try {
      (void)co_await client->ping(redis::CallOptions{options_.health_timeout});
      co_return true;
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  tempest::logger("tempest.cache")
      ->warn("Redis health check failed: {} ({})", failure, config_.redacted());
  co_return false;
}

}  // namespace tempest::cache
