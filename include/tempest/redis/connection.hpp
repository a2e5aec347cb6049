// One self-healing, automatically pipelined connection to Redis, shared by any number of
// coroutines on any number of threads.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tempest/redis/command.hpp"
#include "tempest/redis/config.hpp"
#include "tempest/redis/reply.hpp"

namespace tempest::redis {

namespace asio = boost::asio;

// Per-call overrides of the connection defaults.
struct CallOptions {
  std::optional<Duration> timeout =
      std::nullopt;  // deadline of this call; default Config::command_timeout
};

enum class ConnectionState : std::uint8_t { idle, connecting, connected, disconnected, stopped };
std::string_view to_string(ConnectionState s) noexcept;

// Counters, readable at any time from any thread.
struct ConnectionStats {
  // Upper bounds (seconds) of the command latency histogram; a last, unbounded bucket follows.
  static constexpr std::array<double, 12> kLatencyBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
  std::array<std::uint64_t, kLatencyBounds.size() + 1>
      latency_buckets{};           // per bucket, not cumulative
  double latency_seconds_sum = 0;  // of requests completed with a reply

  std::uint64_t commands = 0;    // requests completed with a reply (pipelines count once)
  std::uint64_t errors = 0;      // requests failed with ConnectionError
  std::uint64_t timeouts = 0;    // requests failed with TimeoutError (deadline or cancellation)
  std::uint64_t reconnects = 0;  // successful connects after the first
  std::uint64_t connects = 0;    // successful connects (handshake done)
  std::uint64_t writes = 0;      // socket writes; commands / writes is the pipelining factor
};

class Connection {
 public:
  // Nothing is opened until start(). Throws ConfigError for TLS files that cannot be loaded.
  Connection(asio::any_io_executor executor, Config config);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting (and reconnecting) in the background. Idempotent; thread-safe.
  void start();
  // Waits until the connection is up or `timeout` passes; true when connected.
  asio::awaitable<bool> wait_connected(Duration timeout);
  // Stops taking requests, lets requests in flight finish within Config::disconnect_timeout,
  // closes the socket and fails whatever is left with ConnectionError. Idempotent.
  asio::awaitable<void> disconnect();
  // Like disconnect() without waiting: used by destructors.
  void close() noexcept;

  // Sends one command. The reply may be an error reply (Reply::is_error()); typed helpers of
  // Client turn those into ServerError. Throws TimeoutError, ConnectionError.
  asio::awaitable<Reply> exec(Command command, CallOptions options = {});
  // Sends a pipeline in one write; one reply per command, in order.
  asio::awaitable<std::vector<Reply>> exec(const Pipeline& pipeline, CallOptions options = {});
  // Like exec(command), with the reply turned into a T by `convert` as it arrives (no coroutine
  // of its own); what `convert` throws reaches the caller. T is one of the types instantiated in
  // connection.cpp: Reply, void, bool, long long, std::string, std::optional<std::string>,
  // std::vector<std::string>, std::vector<std::optional<std::string>>.
  template <class T>
  asio::awaitable<T> exec_as(Command command, CallOptions options, T (*convert)(Reply&&));

  ConnectionState state() const noexcept;
  bool is_connected() const noexcept { return state() == ConnectionState::connected; }
  ConnectionStats stats() const noexcept;
  const Config& config() const noexcept;
  // The last connection error (empty when none), e.g. "connection refused"; never a password.
  std::string last_error() const;

  class Impl;  // implementation detail (connection.cpp)

 private:
  std::shared_ptr<Impl> impl_;
};

extern template asio::awaitable<Reply> Connection::exec_as(Command, CallOptions,
                                                           Reply (*)(Reply&&));
extern template asio::awaitable<void> Connection::exec_as(Command, CallOptions, void (*)(Reply&&));
extern template asio::awaitable<bool> Connection::exec_as(Command, CallOptions, bool (*)(Reply&&));
extern template asio::awaitable<long long> Connection::exec_as(Command, CallOptions,
                                                               long long (*)(Reply&&));
extern template asio::awaitable<std::string> Connection::exec_as(Command, CallOptions,
                                                                 std::string (*)(Reply&&));
extern template asio::awaitable<std::optional<std::string>> Connection::exec_as(
    Command, CallOptions, std::optional<std::string> (*)(Reply&&));
extern template asio::awaitable<std::vector<std::string>> Connection::exec_as(
    Command, CallOptions, std::vector<std::string> (*)(Reply&&));
extern template asio::awaitable<std::vector<std::optional<std::string>>> Connection::exec_as(
    Command, CallOptions, std::vector<std::optional<std::string>> (*)(Reply&&));

}  // namespace tempest::redis
