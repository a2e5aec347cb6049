// The canonical health router of the Python SDK: GET {prefix}/liveness and {prefix}/readiness,
// with its exact codes and bodies. Unlike the original, checks run concurrently and each is
// bounded by `timeout`, so a frozen Redis turns readiness to 503 instead of hanging the probe.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tempest/http/router.hpp"

namespace tempest::http {

using HealthCheck = std::function<asio::awaitable<bool>()>;

struct HealthOptions {
  std::vector<std::pair<std::string, HealthCheck>> checks = {};  // name -> check, in this order
  std::string prefix = "/health";
  std::optional<std::string> version = std::nullopt;
  bool expose_checks = true;  // false: leave "checks" out (do not tell anonymous callers)
  std::chrono::milliseconds timeout{1000};
};

Router make_health_router(HealthOptions options);

}  // namespace tempest::http
