// Quick start: connect, SET with an expiry, GET, a pipeline, and a clean disconnect.
// Usage: quickstart [REDIS_URL]   (default redis://127.0.0.1:6379/0)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <iostream>
#include <tempest/redis/client.hpp>

namespace asio = boost::asio;
namespace tr = tempest::redis;
using namespace std::chrono_literals;

asio::awaitable<void> quickstart(tr::Client& redis) {
  co_await redis.connect();  // waits for the first handshake, bounded by connect_timeout
  co_await redis.set("user:123:name", "Ana", tr::ex{300s});
  std::optional<std::string> name = co_await redis.get("user:123:name");
  std::cout << "name: " << name.value_or("(none)") << "\n";

  tr::Pipeline p;  // written in one go, one reply per command
  p.add("INCR", "visits").add("TTL", "user:123:name");
  auto replies = co_await redis.exec(p);
  std::cout << "visits: " << replies[0].integer() << ", ttl: " << replies[1].integer() << "s\n";

  co_await redis.disconnect();
}

int main(int argc, char** argv) {
  asio::io_context io;
  tr::Client redis(io.get_executor(), argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0");
  int status = 0;
  asio::co_spawn(io, quickstart(redis), [&](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const tr::Error& err) {
      std::cerr << "redis error: " << err.what() << "\n";
      status = 1;
    }
  });
  io.run();
  return status;
}
