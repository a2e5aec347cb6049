// tempest stats: hit/miss counters, from a service's Prometheus /metrics (what
// tempest::http::make_metrics_router serves) or from Redis INFO.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "run.hpp"
#include "tempest/redis/client.hpp"

namespace tempest::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace tr = tempest::redis;

namespace {

std::string ratio(double hits, double misses) {
  if (hits + misses <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * hits / (hits + misses));
  return buf;
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

// ---- Redis INFO ------------------------------------------------------------------------------
std::map<std::string, std::string> info_fields(const std::string& text) {
  std::map<std::string, std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (const auto colon = line.find(':'); colon != std::string::npos && !line.starts_with("#"))
      out[line.substr(0, colon)] = line.substr(colon + 1);
    at = end + 1;
  }
  return out;
}

int redis_stats(const StatsOptions& o) {
  asio::io_context io(1);
  tr::Client client(io.get_executor(), tool_config(o.url, o.timeout_s));
  std::vector<std::string> masters;
  std::vector<std::string> stats, keyspace;
  run_bounded(
      io,
      [&]() -> asio::awaitable<void> {
        co_await connect_or_explain(client);
        masters = client.masters();
        const tr::CallOptions call{to_ms(o.timeout_s)};
        for (auto& r : co_await client.for_each_master(tr::cmd("INFO", "stats"), call))
          stats.push_back(std::move(r).checked().as_string());
        for (auto& r : co_await client.for_each_master(tr::cmd("INFO", "keyspace"), call))
          keyspace.push_back(std::move(r).checked().as_string());
        co_await client.disconnect();
      },
      to_ms(o.timeout_s) * 4, "stats");
  double hits = 0, misses = 0;
  std::printf("source:          %s (Redis INFO, %zu server%s)\n",
              client.config().redacted().c_str(), stats.size(), stats.size() == 1 ? "" : "s");
  for (std::size_t i = 0; i < stats.size(); ++i) {
    auto f = info_fields(stats[i]);
    const double h = f.contains("keyspace_hits") ? std::stod(f["keyspace_hits"]) : 0;
    const double m = f.contains("keyspace_misses") ? std::stod(f["keyspace_misses"]) : 0;
    hits += h;
    misses += m;
    if (stats.size() > 1)
      std::printf("  %s: keyspace_hits %s, keyspace_misses %s, hit ratio %s\n",
                  i < masters.size() ? masters[i].c_str() : "?", number(h).c_str(),
                  number(m).c_str(), ratio(h, m).c_str());
  }
  std::printf("keyspace_hits:   %s\n", number(hits).c_str());
  std::printf("keyspace_misses: %s\n", number(misses).c_str());
  std::printf(
      "hit ratio:       %s (of every key lookup the server answered, not only cache "
      "entries)\n",
      ratio(hits, misses).c_str());
  std::printf("keyspace:\n");
  bool any = false;
  for (std::size_t i = 0; i < keyspace.size(); ++i)
    for (const auto& [db, figures] : info_fields(keyspace[i])) {
      any = true;
      if (keyspace.size() > 1)
        std::printf("  %s %s: %s\n", i < masters.size() ? masters[i].c_str() : "?", db.c_str(),
                    figures.c_str());
      else
        std::printf("  %s: %s\n", db.c_str(), figures.c_str());
    }
  if (!any) std::printf("  (no keys)\n");
  return kOk;
}

// ---- HTTP /metrics ---------------------------------------------------------------------------
struct HttpUrl {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;  // path and query
};

HttpUrl parse_http_url(const std::string& url) {
  HttpUrl u;
  std::string rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
    u.tls = true;
  } else {
    throw UsageError("--url: not an http://, https:// or Redis URL");
  }
  const auto slash = rest.find_first_of("/?");
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "" : rest.substr(slash);
  if (u.target.empty() || u.target == "/") u.target = "/metrics";
  if (u.target.front() == '?') u.target = "/metrics" + u.target;
  if (const auto at = authority.rfind('@'); at != std::string::npos)
    authority = authority.substr(at + 1);  // credentials are not sent (nor ever printed)
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    const auto close = authority.find(']');
    if (close == std::string::npos) throw UsageError("--url: bad IPv6 address");
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      u.port = authority.substr(close + 2);
  } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
  }
  if (u.host.empty()) throw UsageError("--url: no host");
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  if (u.port.find_first_not_of("0123456789") != std::string::npos || u.port.size() > 5 ||
      std::stoi(u.port) == 0 || std::stoi(u.port) > 65535)
    throw UsageError("--url: bad port '" + u.port + "'");
  return u;
}

std::string shown(const HttpUrl& u) {
  return std::string(u.tls ? "https://" : "http://") +
         (u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host) + ":" + u.port +
         u.target;
}

template <class Stream>
asio::awaitable<http::response<http::string_body>> exchange(Stream& stream, const HttpUrl& u) {
  http::request<http::empty_body> req(http::verb::get, u.target, 11);
  req.set(http::field::host, u.host);
  req.set(http::field::user_agent, "tempest-cli");
  req.set(http::field::accept, "text/plain");
  req.set(http::field::connection, "close");
  co_await http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  co_return parser.release();
}

asio::awaitable<std::string> http_get(const HttpUrl& u, std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(ex);
  const auto endpoints = co_await resolver.async_resolve(u.host, u.port, asio::use_awaitable);
  http::response<http::string_body> res;
  if (!u.tls) {
    beast::tcp_stream stream(ex);
    stream.expires_after(timeout);
    co_await stream.async_connect(endpoints, asio::use_awaitable);
    stream.expires_after(timeout);
    res = co_await exchange(stream, u);
  } else {
    asio::ssl::context tls(asio::ssl::context::tls_client);
    tls.set_default_verify_paths();
    tls.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
    stream.set_verify_callback(asio::ssl::host_name_verification(u.host));
    if (!SSL_set_tlsext_host_name(stream.native_handle(), u.host.c_str()))
      throw std::runtime_error("TLS: cannot set the server name");
    beast::get_lowest_layer(stream).expires_after(timeout);
    co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::use_awaitable);
    co_await stream.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
    beast::get_lowest_layer(stream).expires_after(timeout);
    res = co_await exchange(stream, u);
  }
  if (res.result() != http::status::ok)
    throw std::runtime_error(shown(u) + " answered " + std::to_string(res.result_int()) + " " +
                             std::string(res.reason()));
  co_return std::move(res.body());
}

// One sample of the Prometheus text format: name{labels} value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<Sample> parse_prometheus(const std::string& text) {
  std::vector<Sample> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line.front() == '#') continue;
    Sample s;
    std::size_t i = line.find_first_of("{ ");
    if (i == std::string::npos) continue;
    s.name = line.substr(0, i);
    if (line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const auto eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        std::string label = line.substr(i, eq - i), value;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        s.labels[label] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    while (i < line.size() && line[i] == ' ')
      ++i;
    try {
      s.value = std::stod(line.substr(i));
    } catch (const std::exception&) {
      continue;
    }
    out.push_back(std::move(s));
  }
  return out;
}

int http_stats(const StatsOptions& o) {
  const HttpUrl u = parse_http_url(o.url);
  std::string body;
  asio::io_context io(1);
  std::string failure;
  try {
    run_bounded(
        io, [&]() -> asio::awaitable<void> { body = co_await http_get(u, to_ms(o.timeout_s)); },
        to_ms(o.timeout_s) * 3, "GET " + shown(u));
  } catch (const boost::system::system_error& e) {
    failure = e.code().message();
  }
  if (!failure.empty()) throw std::runtime_error("cannot GET " + shown(u) + ": " + failure);

  // Per cached function (the "function" label): hits and misses (near hits are counted in hits).
  const std::vector<std::string> columns = {"hits", "misses", "near_hits", "stale_served",
                                            "errors"};
  std::map<std::string, std::map<std::string, double>> by_function;
  std::map<std::string, std::map<std::string, double>> near;  // by "redis" label
  for (const auto& s : parse_prometheus(body)) {
    for (const auto& c : columns)
      if (s.name == "tempest_cache_" + c + "_total") {
        const auto it = s.labels.find("function");
        by_function[it == s.labels.end() ? "" : it->second][c] += s.value;
      }
    for (const char* c : {"hits", "misses"})
      if (s.name == std::string("tempest_near_cache_") + c + "_total") {
        const auto it = s.labels.find("redis");
        near[it == s.labels.end() ? "" : it->second][c] += s.value;
      }
  }
  std::printf(
      "source: %s (Prometheus text: tempest_cache_hits_total, tempest_cache_misses_total)\n",
      shown(u).c_str());
  if (by_function.empty()) {
    std::printf(
        "no tempest_cache_* counters in the response (no cached function has run yet, or "
        "not a tempest service)\n");
    return kFailure;
  }
  std::size_t width = 13;
  for (const auto& [fn, _] : by_function)
    width = std::max(width, fn.size());
  const int w = static_cast<int>(width);
  std::printf("%-*s %12s %12s %9s %12s %12s %12s\n", w, "function", "hits", "misses", "hit ratio",
              "near_hits", "stale_served", "errors");
  std::map<std::string, double> total;
  const auto row = [&](const std::string& name, std::map<std::string, double>& v) {
    std::printf("%-*s %12s %12s %9s %12s %12s %12s\n", w, name.c_str(), number(v["hits"]).c_str(),
                number(v["misses"]).c_str(), ratio(v["hits"], v["misses"]).c_str(),
                number(v["near_hits"]).c_str(), number(v["stale_served"]).c_str(),
                number(v["errors"]).c_str());
  };
  for (auto& [fn, v] : by_function) {
    row(fn, v);
    for (const auto& c : columns)
      total[c] += v[c];
  }
  if (by_function.size() > 1) row("all functions", total);
  for (auto& [where, v] : near)
    std::printf("near cache %s: hits %s, misses %s, hit ratio %s\n", where.c_str(),
                number(v["hits"]).c_str(), number(v["misses"]).c_str(),
                ratio(v["hits"], v["misses"]).c_str());
  return kOk;
}

}  // namespace

int run_stats(const StatsOptions& o) {
  if (o.url.starts_with("http://") || o.url.starts_with("https://")) return http_stats(o);
  return redis_stats(o);
}

}  // namespace tempest::cli
