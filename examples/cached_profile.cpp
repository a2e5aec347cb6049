// The seed page's @cached example in C++: get_user_profile memoized in Redis for 5 minutes,
// under the same key the Python SDK uses, then invalidated by prefix.
// Usage: cached_profile [REDIS_URL]   (default redis://127.0.0.1:6379/0)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <chrono>
#include <iostream>
#include <tempest/cache/cached.hpp>
#include <tempest/cache/invalidator.hpp>

namespace asio = boost::asio;
namespace tc = tempest::cache;
using namespace std::chrono_literals;

struct UserProfile {
  std::string id;
  std::string name;
};
BOOST_DESCRIBE_STRUCT(UserProfile, (), (id, name))  // JSON codec and key encoding for free

asio::awaitable<UserProfile> load_from_db(std::string user_id) {  // a 20 ms database read
  asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
  co_await t.async_wait(asio::use_awaitable);
  UserProfile p{user_id, "Ana"};
  co_return p;
}

asio::awaitable<void> run(tc::RedisManager& redis) {
  co_await redis.connect();  // lifespan startup; with Redis down it warns and carries on
  auto get_user_profile =
      tc::cached(redis, {.name = "get_user_profile", .ttl = 300s, .key_prefix = "users:"},
                 [](std::string user_id) -> asio::awaitable<UserProfile> {
                   co_return co_await load_from_db(user_id);
                 });
  std::cout << "key: " << get_user_profile.key("123") << "\n";
  for (int i = 0; i < 2; ++i) {
    const auto start = std::chrono::steady_clock::now();
    UserProfile p = co_await get_user_profile("123");
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start);
    std::cout << (i == 0 ? "miss" : "hit") << ": " << p.name << " in " << us.count() << " us\n";
  }
  const auto s = get_user_profile.stats();
  std::cout << "hits " << s.hits << ", misses " << s.misses << "\n";
  tc::CacheInvalidator invalidator(redis);
  std::cout << "invalidated " << co_await invalidator.invalidate_prefix("users:") << " key(s)\n";
  std::cout << "healthy: " << std::boolalpha << co_await redis.health_check() << "\n";
  co_await redis.disconnect();  // lifespan shutdown
}

int main(int argc, char** argv) {
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0");
  int status = 0;
  asio::co_spawn(io, run(redis), [&](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& err) {
      std::cerr << "error: " << err.what() << "\n";
      status = 1;
    }
  });
  io.run();
  return status;
}
