#include "tempest/http/metrics.hpp"

#include <cstdio>
#include <string_view>

#include "tempest/cache/manager.hpp"
#include "tempest/cache/options.hpp"

namespace tempest::http {

namespace {

std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

// The methods a label may name; any other token a client sends counts as "other", so that
// clients cannot grow the series without bound.
std::string_view method_label(std::string_view method) {
  for (const std::string_view known :
       {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
    if (method == known) return known;
  return "other";
}

}  // namespace

void HttpMetrics::observe(const std::string& route, const std::string& method, unsigned status,
                          std::chrono::nanoseconds took) {
  const double seconds = std::chrono::duration<double>(took).count();
  const std::string_view method_text = method_label(method);
  // Found without copying the labels; copied once, when the series is new.
  const KeyView key(route, method_text, status);
  std::lock_guard lock(mutex_);
  auto it = series_.find(key);
  if (it == series_.end())
    it = series_.try_emplace({route, std::string(method_text), status}).first;
  Series& s = it->second;
  ++s.count;
  s.sum += seconds;
  for (std::size_t i = 0; i < kBuckets.size(); ++i)
    if (seconds <= kBuckets[i]) ++s.buckets[i];  // cumulative
}

void HttpMetrics::render(std::string& out) const {
  std::lock_guard lock(mutex_);
  header(out, "tempest_http_requests_total", "counter",
         "HTTP requests by route, method and status.");
  for (const auto& [k, s] : series_) {
    const auto& [route, method, status] = k;
    out += "tempest_http_requests_total{route=\"" + label(route) + "\",method=\"" + label(method) +
           "\",status=\"" + std::to_string(status) + "\"} " + std::to_string(s.count) + "\n";
  }
  header(out, "tempest_http_request_duration_seconds", "histogram",
         "HTTP request latency by route, method and status.");
  for (const auto& [k, s] : series_) {
    const auto& [route, method, status] = k;
    const std::string labels = "route=\"" + label(route) + "\",method=\"" + label(method) +
                               "\",status=\"" + std::to_string(status) + "\"";
    for (std::size_t i = 0; i < kBuckets.size(); ++i)
      out += "tempest_http_request_duration_seconds_bucket{" + labels + ",le=\"" +
             number(kBuckets[i]) + "\"} " + std::to_string(s.buckets[i]) + "\n";
    out += "tempest_http_request_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " +
           std::to_string(s.count) + "\n";
    out += "tempest_http_request_duration_seconds_sum{" + labels + "} " + number(s.sum) + "\n";
    out += "tempest_http_request_duration_seconds_count{" + labels + "} " +
           std::to_string(s.count) + "\n";
  }
}

Router make_metrics_router(const HttpMetrics& http, MetricsOptions options) {
  auto o = std::make_shared<const MetricsOptions>(std::move(options));
  Router r;
  r.get(o->path, [o, &http](Request&) -> asio::awaitable<Response> {
    std::string out;
    // Cached functions.
    const auto cache = cache::all_cache_stats();
    const std::pair<const char*, std::uint64_t cache::CacheStats::*> counters[] = {
        {"hits", &cache::CacheStats::hits},
        {"misses", &cache::CacheStats::misses},
        {"errors", &cache::CacheStats::errors},
        {"corrupt", &cache::CacheStats::corrupt},
        {"stampede_joins", &cache::CacheStats::joins},
        {"unserializable", &cache::CacheStats::unserializable},
        {"lock_waits", &cache::CacheStats::lock_waits},
        {"near_hits", &cache::CacheStats::near_hits},
        {"breaker_skips", &cache::CacheStats::breaker_skips},
        {"stale_served", &cache::CacheStats::stale_served},
        {"refreshes", &cache::CacheStats::refreshes},
        {"refresh_failures", &cache::CacheStats::refresh_failures},
        {"timeouts", &cache::CacheStats::timeouts}};
    for (const auto& [what, member] : counters) {
      const std::string name = std::string("tempest_cache_") + what + "_total";
      header(out, name.c_str(), "counter", ("Cached function " + std::string(what) + ".").c_str());
      for (const auto& [fn, s] : cache)
        out += name + "{function=\"" + label(fn) + "\"} " + std::to_string(s.*member) + "\n";
    }
    // Near caches (managers that keep one).
    const std::pair<const char*, std::uint64_t cache::NearCacheStats::*> near_counters[] = {
        {"hits", &cache::NearCacheStats::hits},
        {"misses", &cache::NearCacheStats::misses},
        {"invalidations", &cache::NearCacheStats::invalidations},
        {"evictions", &cache::NearCacheStats::evictions},
        {"flushes", &cache::NearCacheStats::flushes},
        {"resets", &cache::NearCacheStats::resets},
        {"stale_drops", &cache::NearCacheStats::stale_drops}};
    std::vector<std::pair<std::string, cache::NearCacheStats>> near;
    for (auto* m : o->managers)
      if (m->near_store() != nullptr) near.emplace_back(m->config().redacted(), m->near_stats());
    if (!near.empty()) {
      for (const auto& [what, member] : near_counters) {
        const std::string name = std::string("tempest_near_cache_") + what + "_total";
        header(out, name.c_str(), "counter", ("Near cache " + std::string(what) + ".").c_str());
        for (const auto& [where, s] : near)
          out += name + "{redis=\"" + label(where) + "\"} " + std::to_string(s.*member) + "\n";
      }
      const std::pair<const char*, const char*> gauges[] = {
          {"entries", "Entries in the near cache."},
          {"bytes", "Bytes the near cache holds (stored sizes, keys and overhead)."},
          {"tracked", "1 when Redis tracks the reads (the near cache is in use)."}};
      for (const auto& [what, help] : gauges) {
        const std::string name = std::string("tempest_near_cache_") + what;
        header(out, name.c_str(), "gauge", help);
        for (const auto& [where, s] : near) {
          const std::uint64_t v = std::string_view(what) == "entries" ? s.entries
                                  : std::string_view(what) == "bytes" ? s.bytes
                                                                      : (s.tracked ? 1 : 0);
          out += name + "{redis=\"" + label(where) + "\"} " + std::to_string(v) + "\n";
        }
      }
    }
    // Redis connections.
    std::vector<std::pair<std::string, redis::ConnectionStats>> conns;
    std::vector<std::pair<std::string, bool>> up;
    for (auto* m : o->managers) {
      const std::string where = m->config().redacted();
      auto c = m->client_dependency();
      conns.emplace_back(where, c ? c->stats() : redis::ConnectionStats{});
      up.emplace_back(where, c && c->is_connected());
    }
    const std::pair<const char*, std::uint64_t redis::ConnectionStats::*> rc[] = {
        {"commands", &redis::ConnectionStats::commands},
        {"errors", &redis::ConnectionStats::errors},
        {"timeouts", &redis::ConnectionStats::timeouts},
        {"reconnects", &redis::ConnectionStats::reconnects},
        {"writes", &redis::ConnectionStats::writes},
        {"rejected_replies", &redis::ConnectionStats::rejected}};
    for (const auto& [what, member] : rc) {
      const std::string name = std::string("tempest_redis_") + what + "_total";
      header(out, name.c_str(), "counter", ("Redis " + std::string(what) + ".").c_str());
      for (const auto& [where, s] : conns)
        out += name + "{redis=\"" + label(where) + "\"} " + std::to_string(s.*member) + "\n";
    }
    header(out, "tempest_redis_connected", "gauge", "1 when the connection to Redis is up.");
    for (const auto& [where, is_up] : up)
      out +=
          "tempest_redis_connected{redis=\"" + label(where) + "\"} " + (is_up ? "1" : "0") + "\n";
    header(out, "tempest_redis_pending", "gauge",
           "Requests waiting for Redis now (queued or in flight; bounded by max_pending).");
    for (const auto& [where, s] : conns)
      out += "tempest_redis_pending{redis=\"" + label(where) + "\"} " + std::to_string(s.pending) +
             "\n";
    header(out, "tempest_redis_command_duration_seconds", "histogram", "Redis command latency.");
    for (const auto& [where, s] : conns) {
      std::uint64_t cumulative = 0;
      const std::string l = "redis=\"" + label(where) + "\"";
      for (std::size_t i = 0; i < redis::ConnectionStats::kLatencyBounds.size(); ++i) {
        cumulative += s.latency_buckets[i];
        out += "tempest_redis_command_duration_seconds_bucket{" + l + ",le=\"" +
               number(redis::ConnectionStats::kLatencyBounds[i]) + "\"} " +
               std::to_string(cumulative) + "\n";
      }
      cumulative += s.latency_buckets.back();
      out += "tempest_redis_command_duration_seconds_bucket{" + l + ",le=\"+Inf\"} " +
             std::to_string(cumulative) + "\n";
      out += "tempest_redis_command_duration_seconds_sum{" + l + "} " +
             number(s.latency_seconds_sum) + "\n";
      out += "tempest_redis_command_duration_seconds_count{" + l + "} " +
             std::to_string(cumulative) + "\n";
    }
    // Per node of a Redis Cluster (bounded: at most 32 nodes per client, the rest as "other").
    std::vector<std::pair<std::string, std::vector<redis::NodeStats>>> clusters;
    for (auto* m : o->managers)
      if (auto c = m->client_dependency(); c && c->is_cluster())
        clusters.emplace_back(m->config().redacted(), c->node_stats());
    if (!clusters.empty()) {
      const auto node_label = [&](const std::string& where, const redis::NodeStats& n) {
        return "redis=\"" + label(where) + "\",node=\"" + label(n.address) + "\",role=\"" +
               (n.address == "other" ? "other"
                : n.master           ? "master"
                                     : "replica") +
               "\"";
      };
      header(out, "tempest_redis_node_connected", "gauge",
             "1 when the connection to this node of the Redis Cluster is up.");
      for (const auto& [where, nodes] : clusters)
        for (const auto& n : nodes)
          out += "tempest_redis_node_connected{" + node_label(where, n) + "} " +
                 (n.connected ? "1" : "0") + "\n";
      const std::pair<const char*, std::uint64_t redis::ConnectionStats::*> per_node[] = {
          {"commands", &redis::ConnectionStats::commands},
          {"errors", &redis::ConnectionStats::errors},
          {"timeouts", &redis::ConnectionStats::timeouts}};
      for (const auto& [what, member] : per_node) {
        const std::string name = std::string("tempest_redis_node_") + what + "_total";
        header(out, name.c_str(), "counter",
               ("Redis " + std::string(what) + " on this node of the cluster.").c_str());
        for (const auto& [where, nodes] : clusters)
          for (const auto& n : nodes)
            out +=
                name + "{" + node_label(where, n) + "} " + std::to_string(n.stats.*member) + "\n";
      }
      header(out, "tempest_redis_node_pending", "gauge",
             "Requests waiting for this node of the cluster now.");
      for (const auto& [where, nodes] : clusters)
        for (const auto& n : nodes)
          out += "tempest_redis_node_pending{" + node_label(where, n) + "} " +
                 std::to_string(n.stats.pending) + "\n";
    }
    http.render(out);
    co_return Response::text(200, std::move(out), "text/plain; version=0.0.4; charset=utf-8");
  });
  return r;
}

}  // namespace tempest::http
