// tempest::http on several threads (ServerOptions::threads): connections spread over every
// thread's listener, handlers using one RedisManager, cached() and the response cache from all
// of them at once, consistent metrics, and a graceful shutdown with requests in flight.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/describe/class.hpp>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/log_capture.hpp"
#include "support/run.hpp"
#include "support/served_app.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/http/app.hpp"
#include "tempest/http/metrics.hpp"
#include "tempest/http/response_cache.hpp"

namespace asio = boost::asio;
namespace th = tempest::http;
namespace tc = tempest::cache;
using namespace std::chrono_literals;
using tempest::test::http_get;
using tempest::test::Served;

namespace {

struct Item {
  std::string id;
  int square;
};
BOOST_DESCRIBE_STRUCT(Item, (), (id, square))

std::string redis_url() {
  const char* url = std::getenv("TEMPEST_REDIS_URL");
  return url ? url : "redis://127.0.0.1:6379";
}

th::ServerOptions threads(unsigned n) {
  th::ServerOptions o;
  o.threads = n;
  return o;
}

// Runs `clients` threads, each sending `each` GETs of target(client, i) on its own connections.
template <class Target, class Check>
void hammer(std::uint16_t port, int clients, int each, Target target, Check check) {
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      for (int i = 0; i < each; ++i)
        check(http_get(port, target(c, i)), c, i);
    });
  for (auto& t : threads)
    t.join();
}

}  // namespace

TEST(HttpThreads, ConnectionsSpreadOverEveryThreadAndShareOneRedis) {
  Served s(threads(3));
  auto& redis = s.manager(redis_url());
  const std::string prefix = tempest::test::unique_prefix("threads");
  std::atomic<int> runs{0};
  auto square = tc::cached(redis, {.name = "square", .ttl = 60s, .key_prefix = prefix},
                           [&runs](std::string id) -> asio::awaitable<Item> {
                             ++runs;
                             co_await tempest::test::sleep_for(2ms);
                             const int n = std::stoi(id);
                             Item item{id, n * n};
                             co_return item;
                           });
  std::mutex mutex;
  std::set<std::thread::id> seen;
  s.app.on_startup([&]() -> asio::awaitable<void> { co_await redis.connect(); });
  s.app.on_shutdown([&]() -> asio::awaitable<void> { co_await redis.disconnect(); });
  s.app.use(th::response_cache(
      {.store = std::make_shared<th::RedisResponseCacheStore>(redis, "respcache:" + prefix),
       .cacheable = [](const th::Request& r) { return r.route == "/page/{id}"; }}));
  const auto item_json = [](const Item& item) {
    return "{\"id\":\"" + item.id + "\",\"square\":" + std::to_string(item.square) + "}";
  };
  s.app.router()
      .get("/square/{id}",
           [&](th::Request& r) -> asio::awaitable<th::Response> {
             {
               std::lock_guard lock(mutex);
               seen.insert(std::this_thread::get_id());
             }
             const Item item = co_await square(r.param("id"));
             co_return th::Response::json(200, item_json(item));
           })
      .get("/page/{id}", [&](th::Request& r) -> asio::awaitable<th::Response> {
        const Item item = co_await square(r.param("id"));
        co_return th::Response::json(200, item_json(item));
      });
  s.app.include(th::make_metrics_router(s.app.metrics(), {}));
  s.start();
  ASSERT_TRUE(s.app.accepting());

  std::atomic<int> wrong{0};
  const auto expect_square = [&](const tempest::test::RawResponse& r, int id) {
    const std::string want =
        "{\"id\":\"" + std::to_string(id) + "\",\"square\":" + std::to_string(id * id) + "}";
    if (r.status != 200 || r.body() != want) ++wrong;
  };
  // 8 clients x 50 requests, 20 distinct ids: every answer right, every thread used.
  hammer(
      s.port(), 8, 50, [](int c, int i) { return "/square/" + std::to_string((c * 50 + i) % 20); },
      [&](const tempest::test::RawResponse& r, int c, int i) {
        expect_square(r, (c * 50 + i) % 20);
      });
  hammer(
      s.port(), 8, 25, [](int, int i) { return "/page/" + std::to_string(i % 5); },
      [&](const tempest::test::RawResponse& r, int, int i) { expect_square(r, i % 5); });
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(seen.size(), 3u);  // 400 connections over 3 listeners
  EXPECT_LE(runs, 20 + 5);     // computed once per id (single flight), however many threads

  // The metrics counted every request exactly once.
  const auto metrics = http_get(s.port(), "/metrics").body();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      metrics, m,
      std::regex(
          R"re(tempest_http_requests_total\{route="/square/\{id\}",method="GET",status="200"\} (\d+))re")));
  EXPECT_EQ(m[1], "400");
  ASSERT_TRUE(std::regex_search(
      metrics, m,
      std::regex(
          R"re(tempest_http_requests_total\{route="/page/\{id\}",method="GET",status="200"\} (\d+))re")));
  EXPECT_EQ(m[1], "200");
  s.stop();
  EXPECT_TRUE(s.finished);
  EXPECT_FALSE(s.failure);
}

// stop() with requests in flight on every thread: each is answered, then serve() returns, the
// other threads joined.
TEST(HttpThreads, GracefulShutdownFinishesRequestsOnEveryThread) {
  Served s(threads(2));
  std::atomic<int> started{0};
  s.app.router().get("/slow", [&](th::Request&) -> asio::awaitable<th::Response> {
    ++started;
    co_await tempest::test::sleep_for(300ms);
    co_return th::Response::json(200, "{\"slow\":true}");
  });
  s.start();
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&] {
      if (http_get(s.port(), "/slow").status == 200) ++answered;
    });
  for (int i = 0; i < 200 && started < 8; ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(started, 8);
  s.stop();
  for (auto& c : clients)
    c.join();
  EXPECT_EQ(answered, 8);
  EXPECT_TRUE(s.finished);
  EXPECT_FALSE(s.app.accepting());
}

TEST(HttpThreads, ZeroMeansOnePerCpu) {
  tempest::test::LogCapture log("tempest.http");
  th::ServerOptions o;
  o.port = 0;
  o.threads = 0;
  asio::io_context io;
  th::App app(io, o);
  app.router().get("/", [](th::Request&) -> asio::awaitable<th::Response> {
    co_return th::Response::json(200, "{}");
  });
  std::thread t([&] { app.run(); });
  for (int i = 0; i < 500 && !app.accepting(); ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(app.accepting());
  EXPECT_EQ(http_get(app.port(), "/").status, 200);
  app.stop();
  t.join();
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_EQ(log.count("(" + std::to_string(cpus) + " thread"), 1u);
}
