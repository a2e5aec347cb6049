/// @file
/// Prometheus text exposition (version 0.0.4): cached functions, Redis connections, HTTP.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "tempest/http/router.hpp"

namespace tempest::cache {
class RedisManager;
}

namespace tempest::http {

/// Requests and latency by route, method and status. Bounded: the route is a pattern of the
/// router (or "(unmatched)"), and methods other than the nine of RFC 9110 count as "other".
class HttpMetrics {
 public:
  /// Upper bounds (seconds) of the latency histogram's buckets; +Inf follows.
  static constexpr std::array<double, 11> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0};
  /// Counts one request (thread-safe); the server calls it for every response.
  void observe(const std::string& route, const std::string& method, unsigned status,
               std::chrono::nanoseconds took);
  /// Appends the series in Prometheus text format to `out`.
  void render(std::string& out) const;

 private:
  struct Series {
    std::uint64_t count = 0;
    double sum = 0;
    std::array<std::uint64_t, kBuckets.size()> buckets{};
  };
  mutable std::mutex mutex_;
  using Key = std::tuple<std::string, std::string, unsigned>;  // route, method, status
  using KeyView = std::tuple<std::string_view, std::string_view, unsigned>;
  // Orders keys and their views alike, so that a request's series is found without copying.
  struct KeyLess {
    using is_transparent = void;
    static KeyView view(const Key& k) noexcept {
      return {std::get<0>(k), std::get<1>(k), std::get<2>(k)};
    }
    static const KeyView& view(const KeyView& k) noexcept { return k; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return view(a) < view(b);
    }
  };
  std::map<Key, Series, KeyLess> series_;
};

/// What make_metrics_router() reports, and where.
struct MetricsOptions {
  std::vector<cache::RedisManager*> managers = {};  ///< Redis connections to report
  std::string path = "/metrics";                    ///< the route
};

/// GET /metrics: every cached function's stats, the managers' Redis connections, and `http`.
Router make_metrics_router(const HttpMetrics& http, MetricsOptions options);

}  // namespace tempest::http
