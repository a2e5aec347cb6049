/// @file
/// The canonical health router of the Python SDK: GET {prefix}/liveness and {prefix}/readiness,
/// with its exact codes and bodies. Unlike the original, checks run concurrently and each is
/// bounded by `timeout`, so a frozen Redis turns readiness to 503 instead of hanging the probe.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tempest/http/router.hpp"

namespace tempest::http {

/// A readiness check: true when the dependency it checks is usable (e.g. RedisManager's
/// health_check). A check that throws or outlives HealthOptions::timeout counts as false.
using HealthCheck = std::function<asio::awaitable<bool>()>;

/// The health router's checks and shape.
struct HealthOptions {
  std::vector<std::pair<std::string, HealthCheck>> checks = {};  ///< name -> check, in this order
  std::string prefix = "/health";  ///< the routes are prefix + /liveness, /readiness
  std::optional<std::string> version = std::nullopt;  ///< reported as "version" when set
  bool expose_checks = true;  ///< false: leave "checks" out (do not tell anonymous callers)
  std::chrono::milliseconds timeout{1000};  ///< bound of each check (they run concurrently)
};

/// GET {prefix}/liveness (always 200) and GET {prefix}/readiness (200 when every check passed,
/// 503 otherwise), with the Python SDK's bodies.
Router make_health_router(HealthOptions options);

}  // namespace tempest::http
