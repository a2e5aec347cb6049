#include "tempest/cache/manager.hpp"

#include <spdlog/spdlog.h>

#include "tempest/log.hpp"

namespace tempest::cache {

RedisManager::RedisManager(asio::any_io_executor executor, std::string_view url,
                           ManagerOptions options)
    : RedisManager(std::move(executor), redis::Config::from_url(url), std::move(options)) {}

RedisManager::RedisManager(asio::any_io_executor executor, redis::Config config,
                           ManagerOptions options)
    : executor_(std::move(executor)), config_(std::move(config)), options_(std::move(options)) {}

RedisManager::~RedisManager() {
  std::lock_guard lock(mutex_);
  if (client_) client_->close();
}

asio::awaitable<void> RedisManager::connect() {
  std::optional<redis::Client> client;
  {
    std::lock_guard lock(mutex_);
    if (!client_) client_.emplace(executor_, config_);
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
  }
  if (client) co_await client->disconnect();
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
