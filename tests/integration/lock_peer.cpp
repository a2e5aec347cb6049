// A separate process for the distributed-lock test: at a given wall-clock time it fires
// `concurrency` concurrent calls of one cached function (lock enabled) on one cold key. The
// function counts its runs in Redis (INCR lock_peer:runs) and takes 300 ms.
//   tempest_lock_peer URL CONCURRENCY START_AT_EPOCH_MS
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "tempest/cache/cached.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const std::string url = argv[1];
  const int concurrency = std::stoi(argv[2]);
  const auto start_at =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(std::stoll(argv[3])));
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), url);
  tc::CachedOptions options;
  options.name = "lock_peer_value";
  options.lock.enabled = true;
  options.lock.wait = 5s;
  auto value = tc::cached(redis, options, [&redis](int n) -> asio::awaitable<int> {
    auto client = redis.client();
    (void)co_await client.incr("lock_peer:runs");
    asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
    co_await t.async_wait(asio::use_awaitable);
    co_return n * 2;
  });
  int good = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await redis.connect();
        std::this_thread::sleep_until(start_at);
        int running = concurrency;
        asio::steady_timer done(io, std::chrono::steady_clock::time_point::max());
        for (int i = 0; i < concurrency; ++i) {
          asio::co_spawn(
              io,
              [&]() -> asio::awaitable<void> {
                if (co_await value(21) == 42) ++good;
              },
              [&](std::exception_ptr) {
                if (--running == 0) done.cancel();
              });
        }
        boost::system::error_code ec;
        co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        co_await redis.disconnect();
      },
      [&](std::exception_ptr) { io.stop(); });
  io.run();
  std::printf("%d/%d ok, lock waits %llu\n", good, concurrency,
              static_cast<unsigned long long>(value.stats().lock_waits));
  return good == concurrency ? 0 : 1;
}
