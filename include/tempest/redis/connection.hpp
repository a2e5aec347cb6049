/// @file
/// Types of a connection to Redis: per-call options, state and counters. The connection itself is
/// reached through Client (client.hpp), a cheap handle to it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tempest/redis/config.hpp"

namespace tempest::redis {

/// Per-call overrides of the connection defaults.
struct CallOptions {
  /// Deadline of this call; default Config::command_timeout.
  std::optional<Duration> timeout = std::nullopt;
};

/// The shared connection's life: idle (not started), connecting, connected, disconnected
/// (retrying), stopped (disconnect() or close() called).
enum class ConnectionState : std::uint8_t { idle, connecting, connected, disconnected, stopped };
/// The state's name, e.g. "connected".
std::string_view to_string(ConnectionState s) noexcept;

/// Counters, readable at any time from any thread.
struct ConnectionStats {
  /// Upper bounds (seconds) of the command latency histogram; a last, unbounded bucket follows.
  static constexpr std::array<double, 12> kLatencyBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
  /// Requests per latency bucket, not cumulative.
  std::array<std::uint64_t, kLatencyBounds.size() + 1> latency_buckets{};
  double latency_seconds_sum = 0;  ///< of requests completed with a reply

  std::uint64_t commands = 0;    ///< requests completed with a reply (pipelines count once)
  std::uint64_t errors = 0;      ///< requests failed with ConnectionError or ProtocolError
  std::uint64_t timeouts = 0;    ///< requests failed with TimeoutError (deadline or cancellation)
  std::uint64_t reconnects = 0;  ///< successful connects after the first
  std::uint64_t connects = 0;    ///< successful connects (handshake done)
  std::uint64_t writes = 0;      ///< socket writes; commands / writes is the pipelining factor
  std::uint64_t rejected = 0;    ///< replies over max_reply_size or the nesting limit (dropped)
  std::uint64_t pending = 0;     ///< requests waiting now (queued or in flight), a gauge

  /// Adds another connection's counters (a cluster's nodes summed).
  ConnectionStats& operator+=(const ConnectionStats& o) noexcept;
};

/// One server's connection: the one of a client on one server, or each node of a cluster's map.
struct NodeStats {
  std::string address;     ///< "host:port"; "other" for the nodes past the label bound, summed
  bool master = true;      ///< a master (false: a replica read from)
  bool connected = false;  ///< its connection is up now
  ConnectionStats stats;   ///< its counters
};

}  // namespace tempest::redis
