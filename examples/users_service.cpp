// users_service: the documentation page's example service in C++, on tempest::http.
// Environment: REDIS_URL (redis://127.0.0.1:6379/0), HOST (127.0.0.1), PORT (8000),
// REDIS_REQUIRED (0), THREADS (0: one per CPU), NEAR_CACHE (0).
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tempest/cache/cached.hpp>
#include <tempest/cache/invalidator.hpp>
#include <tempest/http/app.hpp>
#include <tempest/http/health.hpp>
#include <tempest/http/metrics.hpp>
#include <tempest/http/response_cache.hpp>

namespace asio = boost::asio;
namespace tc = tempest::cache;
namespace th = tempest::http;
using namespace std::chrono_literals;

struct UserProfile {
  std::string id;
  std::string name;
};
BOOST_DESCRIBE_STRUCT(UserProfile, (), (id, name))

struct Order {
  std::string id;
  double total;
};
BOOST_DESCRIBE_STRUCT(Order, (), (id, total))

namespace {

std::string env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// A whole number from the environment, at most `max`; anything else is an error naming it.
unsigned long env_number(const char* name, const char* fallback, unsigned long max) {
  const std::string text = env(name, fallback);
  std::size_t used = 0;
  unsigned long n = 0;
  try {
    n = std::stoul(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || text[0] == '-' || n > max)
    throw std::invalid_argument(std::string(name) + " must be a whole number from 0 to " +
                                std::to_string(max) + ", got \"" + text + "\"");
  return n;
}

template <class T>
th::Response json(const T& value) {
  // Numbers as a Python (or JS) service writes them: 19.9 and 5.0, not 1.99E1 and 5E0.
  return th::Response::json(
      200, tc::python_json(boost::json::value_from(value), tc::JsonStyle::compact));
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

}  // namespace

int serve();

int main() {
  try {
    return serve();
  } catch (const std::exception& e) {  // a bad REDIS_URL, HOST, PORT or THREADS
    std::fprintf(stderr, "users_service: %s\n", e.what());
    return 1;
  }
}

int serve() {
  asio::io_context io(1);
  th::ServerOptions server;
  server.host = env("HOST", "127.0.0.1");
  server.port = static_cast<std::uint16_t>(env_number("PORT", "8000", 65535));
  // Every core by default: handlers run on several threads at once (the names below have a
  // mutex; tempest's manager, cached() and stores are thread-safe).
  server.threads = static_cast<unsigned>(env_number("THREADS", "0", 1024));
  th::App app(io, server);
  // REDIS_REQUIRED=1: refuse to start without Redis (by default the service starts and serves
  // uncached while readiness reports Redis down).
  tc::ManagerOptions manager_options;
  manager_options.require_connection = env("REDIS_REQUIRED", "0") == "1";
  // NEAR_CACHE=1: hits are served from process memory, kept coherent by Redis (CLIENT TRACKING);
  // a POST here or a write by any other process invalidates them.
  manager_options.near.enabled = env("NEAR_CACHE", "0") == "1";
  tc::RedisManager redis(io.get_executor(), env("REDIS_URL", "redis://127.0.0.1:6379/0"),
                         manager_options);

  app.on_startup([&]() -> asio::awaitable<void> { co_await redis.connect(); });
  app.on_shutdown([&]() -> asio::awaitable<void> { co_await redis.disconnect(); });

  // The simulated database: a 20 ms read.
  std::map<std::string, std::string> names = {{"1", "Ana"}, {"2", "Bruno"}};
  std::mutex names_mutex;
  auto get_user_profile =
      tc::cached(redis, {.name = "get_user_profile", .ttl = 300s, .key_prefix = "users:"},
                 [&](std::string user_id) -> asio::awaitable<UserProfile> {
                   co_await sleep_for(20ms);
                   std::lock_guard lock(names_mutex);
                   const auto it = names.find(user_id);
                   UserProfile p{user_id, it == names.end() ? "User " + user_id : it->second};
                   co_return p;
                 })
          .tags([](const std::string& user_id) {
            return std::vector<std::string>{"user:" + user_id};
          });
  // Python: async def list_orders(user_id: str, *, fresh: bool = False). `fresh` is a keyword
  // argument; left out (nullopt) it is not in the key, so both languages share the entry.
  auto list_orders =
      tc::cached(
          redis, {.name = "list_orders", .ttl = 60s},
          [](std::string user_id, std::optional<bool>) -> asio::awaitable<std::vector<Order>> {
            co_await sleep_for(20ms);
            std::vector<Order> orders{{user_id + "-1", 19.9}, {user_id + "-2", 5.0}};
            co_return orders;
          })
          .kwargs({"fresh"})
          .skip_cache([](const std::string&, const std::optional<bool>& fresh) {
            return fresh.value_or(false);
          });
  tc::CacheInvalidator invalidator(redis, "users:");
  // The SDK's response cache on a read-only route: whole responses kept in Redis for 30 s and
  // served without the handler (X-Cache: HIT), a strong ETag, If-None-Match answered 304. Shared
  // with a Python service running ResponseCacheMiddleware on the same Redis.
  app.use(th::response_cache({.store = std::make_shared<th::RedisResponseCacheStore>(redis),
                              .ttl = 30s,
                              .cacheable = [](const th::Request& req) {
                                return req.route == "/users/{id}/orders" &&
                                       req.query_param("fresh") != "true";
                              }}));

  auto& r = app.router();
  r.get(
      "/named",
      th::with_client(
          redis, [](th::Request&, tempest::redis::Client client) -> asio::awaitable<th::Response> {
            co_await client.set("user:123:name", "Ana", tempest::redis::ex{300s});
            co_return th::Response::json(200, "{\"name\":\"Ana\"}");
          }));
  r.get(
      "/cached",
      th::with_client(
          redis, [](th::Request&, tempest::redis::Client client) -> asio::awaitable<th::Response> {
            auto value = co_await client.get("greeting");
            co_return th::Response::json(
                200, "{\"value\":" +
                         boost::json::serialize(boost::json::value(value.value_or("hello"))) + "}");
          }));
  r.get("/users/{id}", [&](th::Request& req) -> asio::awaitable<th::Response> {
    co_return json(co_await get_user_profile(req.param("id")));
  });
  r.get("/users/{id}/orders", [&](th::Request& req) -> asio::awaitable<th::Response> {
    std::optional<bool> fresh;
    if (req.query_param("fresh").value_or("false") == "true") fresh = true;
    co_return json(co_await list_orders(req.param("id"), fresh));
  });
  r.post("/users/{id}", [&](th::Request& req) -> asio::awaitable<th::Response> {
    boost::system::error_code ec;
    auto body = boost::json::parse(req.body, ec);
    if (ec || !body.is_object() || !body.as_object().contains("name") ||
        !body.as_object().at("name").is_string())
      co_return th::Response::error(422, "body must be a JSON object with a string \"name\"");
    const std::string id = req.param("id");
    {
      std::lock_guard lock(names_mutex);
      names[id] = std::string(body.as_object().at("name").as_string());
    }
    const auto removed = co_await invalidator.invalidate_tag("user:" + id);
    co_return th::Response::json(
        200, "{\"id\":" + boost::json::serialize(boost::json::value(id)) +
                 ",\"name\":" + boost::json::serialize(body.as_object().at("name")) +
                 ",\"invalidated\":" + std::to_string(removed) + "}");
  });
  app.include(
      th::make_health_router({.checks = {{"redis", [&] { return redis.health_check(); }}}}));
  app.include(th::make_metrics_router(app.metrics(), {.managers = {&redis}}));
  return app.run();
}
