// tempest::http over real sockets: routing, dependencies, the health contract, /metrics, bad
// requests, limits, timeouts, and graceful shutdown.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "support/http_client.hpp"
#include "support/redis_cluster.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "support/served_app.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/http/app.hpp"
#include "tempest/http/health.hpp"
#include "tempest/http/metrics.hpp"

namespace asio = boost::asio;
namespace th = tempest::http;
namespace tc = tempest::cache;
using namespace std::chrono_literals;
using tempest::test::Clock;
using tempest::test::http_get;
using tempest::test::http_request;
using tempest::test::ms_since;
using tempest::test::raw_http;
using tempest::test::RedisServer;
using tempest::test::Served;
using tempest::test::sleep_for;

namespace {

th::Handler text(std::string body) {
  return [body](th::Request&) -> asio::awaitable<th::Response> {
    co_return th::Response::json(200, body);
  };
}

}  // namespace

TEST(HttpRouter, PathParamsQueryParams404And405) {
  Served s;
  s.app.router()
      .get("/users/{id}/orders/{order}",
           [](th::Request& r) -> asio::awaitable<th::Response> {
             co_return th::Response::json(200, "{\"id\":\"" + r.param("id") + "\",\"order\":\"" +
                                                   r.param("order") + "\",\"fresh\":\"" +
                                                   r.query_param("fresh").value_or("-") + "\"}");
           })
      .get("/items", text("[]"))
      .post("/items", text("{\"created\":true}"));
  s.start();
  auto r = http_get(s.port(), "/users/42/orders/a%20b?fresh=true&x=1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body(), "{\"id\":\"42\",\"order\":\"a b\",\"fresh\":\"true\"}");
  r = http_get(s.port(), "/users/42/orders");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body(), "{\"detail\":\"Not Found\"}");
  r = http_request(s.port(), "DELETE", "/items");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.body(), "{\"detail\":\"Method Not Allowed\"}");
  EXPECT_NE(r.text.find("allow: GET, POST"), std::string::npos) << r.text;
  EXPECT_EQ(http_request(s.port(), "POST", "/items", "{}").body(), "{\"created\":true}");
  // The router reuses its segment strings from one request to the next: a long segment, then
  // shorter ones, then one to decode, each matched as sent.
  const std::string long_id(300, 'x');
  EXPECT_EQ(http_get(s.port(), "/users/" + long_id + "/orders/1").body(),
            "{\"id\":\"" + long_id + "\",\"order\":\"1\",\"fresh\":\"-\"}");
  EXPECT_EQ(http_get(s.port(), "/users/7/orders/2?fresh=a+b").body(),
            "{\"id\":\"7\",\"order\":\"2\",\"fresh\":\"a b\"}");
  EXPECT_EQ(http_get(s.port(), "/users/%37%38/orders/3").body(),
            "{\"id\":\"78\",\"order\":\"3\",\"fresh\":\"-\"}");
  EXPECT_EQ(http_get(s.port(), "/users/7/orders").status, 404);
}

TEST(HttpDependencies, NoClientMeans503AndTheHandlerDoesNotRun) {
  Served s;
  tc::RedisManager& redis = s.manager("redis://127.0.0.1:1");  // never connected
  bool ran = false;
  s.app.router().get(
      "/cached",
      th::with_client(
          redis, [&ran](th::Request&, tempest::redis::Client) -> asio::awaitable<th::Response> {
            ran = true;
            co_return th::Response::json(200, "{}");
          }));
  s.start();
  const auto r = http_get(s.port(), "/cached");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body(), "{\"detail\":\"Redis client unavailable\"}");
  EXPECT_FALSE(ran);
}

TEST(HttpErrors, HandlerThatThrowsGives500AndTheServerKeepsServing) {
  Served s;
  s.app.router()
      .get("/boom",
           [](th::Request&) -> asio::awaitable<th::Response> {
             throw std::runtime_error("kaboom");
             co_return th::Response::json(200, "{}");
           })
      .get("/ok", text("{\"ok\":true}"));
  s.start();
  const auto r = http_get(s.port(), "/boom");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body(), "{\"detail\":\"Internal Server Error\"}");
  EXPECT_EQ(http_get(s.port(), "/ok").status, 200);
}

namespace {
th::HealthCheck fixed(bool ok) {
  return [ok]() -> asio::awaitable<bool> { co_return ok; };
}
th::HealthCheck hanging(std::chrono::milliseconds d) {
  return [d]() -> asio::awaitable<bool> {
    co_await sleep_for(d);
    co_return true;
  };
}
}  // namespace

TEST(HealthRouter, ExactCodesAndBodiesOfThePythonSdk) {
  Served s;
  s.app.include(th::make_health_router({.checks = {{"redis", fixed(true)}, {"db", fixed(true)}}}));
  s.app.include(th::make_health_router(
      {.checks = {{"redis", fixed(false)}, {"db", fixed(true)}}, .prefix = "/down"}));
  s.app.include(th::make_health_router({.checks = {{"redis", fixed(true)}},
                                        .prefix = "/private",
                                        .version = "1.2.3",
                                        .expose_checks = false}));
  s.app.include(th::make_health_router({.prefix = "/none", .version = "1.2.3"}));
  s.start();
  auto r = http_get(s.port(), "/health/liveness");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body(), "{\"status\":\"ok\"}");
  r = http_get(s.port(), "/health/readiness");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body(), "{\"status\":\"ready\",\"checks\":{\"redis\":true,\"db\":true}}");
  r = http_get(s.port(), "/down/readiness");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body(), "{\"status\":\"not_ready\",\"checks\":{\"redis\":false,\"db\":true}}");
  r = http_get(s.port(), "/private/readiness");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body(), "{\"status\":\"ready\",\"version\":\"1.2.3\"}");
  r = http_get(s.port(), "/none/readiness");  // no checks: ready
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body(), "{\"status\":\"ready\",\"checks\":{},\"version\":\"1.2.3\"}");
  EXPECT_EQ(http_request(s.port(), "POST", "/health/liveness").status, 405);
}

TEST(HealthRouter, ChecksRunConcurrentlyEachBoundedByTheTimeout) {
  Served s;
  s.app.include(th::make_health_router({.checks = {{"a", hanging(10s)},
                                                   {"b", hanging(10s)},
                                                   {"c", hanging(50ms)},
                                                   {"d", fixed(true)}},
                                        .timeout = 300ms}));
  s.start();
  const auto t = Clock::now();
  const auto r = http_get(s.port(), "/health/readiness");
  const double took = ms_since(t);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(
      r.body(),
      "{\"status\":\"not_ready\",\"checks\":{\"a\":false,\"b\":false,\"c\":true,\"d\":true}}");
  EXPECT_GE(took, 290.0);
  EXPECT_LE(took, 600.0);  // not 2 x 300 ms: concurrent
}

TEST(HealthRouter, FrozenRedisTurnsReadinessTo503WithinTheTimeout) {
  RedisServer server;
  Served s;
  tc::RedisManager& redis = s.manager(server.url());
  s.app.on_startup([&]() -> asio::awaitable<void> { co_await redis.connect(); });
  s.app.on_shutdown([&]() -> asio::awaitable<void> { co_await redis.disconnect(); });
  s.app.include(th::make_health_router(
      {.checks = {{"redis", [&] { return redis.health_check(); }}}, .timeout = 500ms}));
  s.start();
  EXPECT_EQ(http_get(s.port(), "/health/readiness").status, 200);
  server.pause();
  const auto t = Clock::now();
  const auto r = http_get(s.port(), "/health/readiness");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body(), "{\"status\":\"not_ready\",\"checks\":{\"redis\":false}}");
  EXPECT_LE(ms_since(t), 500.0 + 300.0);
  server.resume();
}

// On a Redis Cluster, /metrics has a series per node the client uses (here the masters: no
// replica reads), with the node and its role as labels.
TEST(Metrics, ClusterNodesHaveTheirOwnSeries) {
  Served s;
  tc::RedisManager& redis = s.manager(tempest::test::shared_cluster_url());
  s.app.on_startup([&]() -> asio::awaitable<void> { co_await redis.connect(); });
  s.app.on_shutdown([&]() -> asio::awaitable<void> { co_await redis.disconnect(); });
  s.app.router().get("/get/{k}", [&](th::Request& r) -> asio::awaitable<th::Response> {
    auto v = co_await redis.client().get("metrics:" + std::string(r.param("k")));
    co_return th::Response::json(200, v ? "1" : "0");
  });
  s.app.include(th::make_metrics_router(s.app.metrics(), {.managers = {&redis}}));
  s.start();
  for (int i = 0; i < 60; ++i)
    EXPECT_EQ(http_get(s.port(), "/get/" + std::to_string(i)).status, 200);
  const std::string body = http_get(s.port(), "/metrics").body();
  const std::regex connected(
      R"re(tempest_redis_node_connected\{redis="[^"]*cluster=true",node="127\.0\.0\.1:(\d+)",role="(master|replica)"\} ([01]))re");
  const std::regex commands(
      R"re(tempest_redis_node_commands_total\{redis="[^"]*",node="127\.0\.0\.1:\d+",role="master"\} (\d+))re");
  int masters = 0, replicas = 0, masters_used = 0;
  long long total = 0;
  for (std::sregex_iterator it(body.begin(), body.end(), connected), end; it != end; ++it) {
    if ((*it)[2] == "master") {
      ++masters;
      EXPECT_EQ((*it)[3], "1") << it->str();
    } else {
      ++replicas;
    }
  }
  for (std::sregex_iterator it(body.begin(), body.end(), commands), end; it != end; ++it) {
    const long long n = std::stoll((*it)[1]);
    total += n;
    if (n > 0) ++masters_used;
  }
  EXPECT_EQ(masters, 3) << body;
  EXPECT_EQ(replicas, 0) << body;
  EXPECT_EQ(masters_used, 3) << "60 keys reach every master";
  EXPECT_GE(total, 60);
}

TEST(Metrics, EveryLineFollowsTheExpositionFormat) {
  RedisServer server;
  Served s;
  tc::RedisManager& redis = s.manager(server.url());
  auto square =
      tc::cached(redis, {.name = "square"}, [](int x) -> asio::awaitable<int> { co_return x* x; });
  s.app.on_startup([&]() -> asio::awaitable<void> { co_await redis.connect(); });
  s.app.on_shutdown([&]() -> asio::awaitable<void> { co_await redis.disconnect(); });
  s.app.router().get("/square/{x}", [&](th::Request& r) -> asio::awaitable<th::Response> {
    co_return th::Response::json(200, std::to_string(co_await square(std::stoi(r.param("x")))));
  });
  s.app.include(th::make_metrics_router(s.app.metrics(), {.managers = {&redis}}));
  s.start();
  EXPECT_EQ(http_get(s.port(), "/square/3").body(), "9");
  EXPECT_EQ(http_get(s.port(), "/square/3").body(), "9");
  (void)http_get(s.port(), "/nothing-here");
  const auto r = http_get(s.port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.text.find("text/plain; version=0.0.4"), std::string::npos);
  const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  const std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? (-?[0-9.eE+-]+|\+Inf|NaN)$)");
  std::istringstream lines(r.body());
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(std::regex_match(line, comment)) << line;
    } else {
      EXPECT_TRUE(std::regex_match(line, sample)) << line;
      ++samples;
    }
  }
  EXPECT_GT(samples, 20);
  const std::string body = r.body();
  EXPECT_NE(body.find("tempest_cache_hits_total{function=\"square\"} 1"), std::string::npos);
  EXPECT_NE(body.find("tempest_cache_misses_total{function=\"square\"} 1"), std::string::npos);
  EXPECT_NE(body.find("tempest_redis_connected{redis=\"redis://127.0.0.1:"), std::string::npos);
  // Nothing waits at the moment of the scrape: the gauge reads 0.
  EXPECT_NE(body.find("tempest_redis_pending{redis=\"redis://127.0.0.1:"), std::string::npos);
  EXPECT_NE(body.find("tempest_redis_rejected_replies_total{redis="), std::string::npos);
  EXPECT_NE(body.find("tempest_redis_command_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(
      body.find(
          "tempest_http_requests_total{route=\"/square/{x}\",method=\"GET\",status=\"200\"} 2"),
      std::string::npos);
  EXPECT_NE(body.find("status=\"404\""), std::string::npos);
}

TEST(HttpLimits, BadRequestsGetTheirStatusAndTheServerKeepsServing) {
  th::ServerOptions o;
  o.max_header_bytes = 1024;
  o.max_body_bytes = 100;
  o.read_timeout = 300ms;
  o.idle_timeout = 300ms;
  Served s(o);
  s.app.router()
      .get("/ok", text("{\"ok\":true}"))
      .post("/echo", [](th::Request& r) -> asio::awaitable<th::Response> {
        co_return th::Response::json(200, r.body);
      });
  s.start();
  // Malformed request line.
  auto r = raw_http(s.port(), "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(r.status, 400) << r.text;
  // Oversized header.
  r = raw_http(s.port(),
               "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n");
  EXPECT_EQ(r.status, 431) << r.text;
  // Oversized body.
  const std::string big(1000, 'b');
  r = raw_http(s.port(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + big);
  EXPECT_EQ(r.status, 413) << r.text;
  // A slow client that stops sending half way: closed after the read timeout, no response.
  const auto t = Clock::now();
  r = raw_http(s.port(), "GET /ok HTTP/1.1\r\nHo", 3000ms, false);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.status, 0);
  EXPECT_GE(ms_since(t), 250.0);
  EXPECT_LE(ms_since(t), 1500.0);
  // An idle keep-alive connection is closed after the idle timeout.
  r = raw_http(s.port(), "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", 3000ms, false);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.closed);
  // And the server still serves others.
  EXPECT_EQ(http_get(s.port(), "/ok").status, 200);
  EXPECT_EQ(http_request(s.port(), "POST", "/echo", "{\"a\":1}").body(), "{\"a\":1}");
}

TEST(HttpLimits, ConnectionsBeyondTheLimitAreClosed) {
  th::ServerOptions o;
  o.max_connections = 2;
  o.read_timeout = 2s;
  Served s(o);
  s.app.router().get("/ok", text("{}"));
  s.start();
  std::vector<std::thread> holders;
  for (int i = 0; i < 2; ++i)
    holders.emplace_back(
        [&] { (void)raw_http(s.port(), "GET /ok HTTP/1.1\r\nHo", 1000ms, false); });
  std::this_thread::sleep_for(200ms);
  auto r = raw_http(s.port(), "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1000ms);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.status, 0);
  for (auto& t : holders)
    t.join();
  // The holders hung up; once the server has seen them go, the slots are free again.
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    status = http_get(s.port(), "/ok").status;
    if (status != 200) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(status, 200);
}

TEST(HttpShutdown, InFlightRequestsCompleteHooksRunAndServeReturns) {
  Served s;
  bool shutdown_ran = false;
  s.app.on_shutdown([&]() -> asio::awaitable<void> {
    shutdown_ran = true;
    co_return;
  });
  s.app.router().get("/slow", [](th::Request&) -> asio::awaitable<th::Response> {
    co_await sleep_for(300ms);
    co_return th::Response::json(200, "{\"done\":true}");
  });
  s.start();
  tempest::test::RawResponse slow;
  std::thread client([&] { slow = http_get(s.port(), "/slow"); });
  std::this_thread::sleep_for(100ms);
  const auto t = Clock::now();
  s.stop();  // returns when serve() finished
  client.join();
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.body(), "{\"done\":true}");
  EXPECT_TRUE(shutdown_ran);
  EXPECT_TRUE(s.finished);
  EXPECT_FALSE(s.failure);
  EXPECT_GE(ms_since(t), 150.0);
}

TEST(HttpLifespan, FailingStartupNeverAcceptsAndReportsTheError) {
  Served s;
  s.app.on_startup([]() -> asio::awaitable<void> {
    throw std::runtime_error("database unreachable");
    co_return;
  });
  s.start();
  for (int i = 0; i < 200 && !s.finished; ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(s.finished);
  EXPECT_FALSE(s.app.accepting());
  ASSERT_TRUE(s.failure);
  try {
    std::rethrow_exception(s.failure);
  } catch (const std::exception& e) {
    EXPECT_STREQ(e.what(), "database unreachable");
  }
}
