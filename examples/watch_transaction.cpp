// A WATCH-guarded transaction (optimistic locking) on a dedicated connection: move 30 from one
// balance to another unless either changed meanwhile, retrying a few times.
// Usage: watch_transaction [REDIS_URL]   (default redis://127.0.0.1:6379/0)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <iostream>
#include <tempest/redis/client.hpp>

namespace asio = boost::asio;
namespace tr = tempest::redis;

asio::awaitable<bool> transfer(tr::Client& redis, long long amount) {
  // WATCH would change the shared connection for every caller, so it is refused there: the
  // transaction runs on a connection of its own (closed when `tx` goes).
  tr::Client tx = co_await redis.dedicated();
  for (int attempt = 0; attempt < 5; ++attempt) {
    co_await tx.command(tr::cmd("WATCH", "balance:alice", "balance:bob"));
    const auto alice = std::stoll((co_await tx.get("balance:alice")).value_or("0"));
    const auto bob = std::stoll((co_await tx.get("balance:bob")).value_or("0"));
    if (alice < amount) {
      co_await tx.command(tr::Command("UNWATCH"));
      co_return false;
    }
    tr::Pipeline p;
    p.add("SET", "balance:alice", alice - amount).add("SET", "balance:bob", bob + amount);
    try {
      co_await tx.transaction(p);  // MULTI ... EXEC
      co_return true;
    } catch (const tr::WatchError&) {
      // A balance changed between WATCH and EXEC: nothing was applied; read again.
    }
  }
  co_return false;
}

asio::awaitable<void> run(tr::Client& redis) {
  co_await redis.connect();
  co_await redis.set("balance:alice", "100");
  co_await redis.set("balance:bob", "0");
  const bool moved = co_await transfer(redis, 30);
  std::cout << "moved: " << (moved ? "yes" : "no")
            << ", alice: " << (co_await redis.get("balance:alice")).value_or("?")
            << ", bob: " << (co_await redis.get("balance:bob")).value_or("?") << "\n";
  co_await redis.disconnect();
}

int main(int argc, char** argv) {
  asio::io_context io;
  tr::Client redis(io.get_executor(), argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0");
  int status = 0;
  asio::co_spawn(io, run(redis), [&](std::exception_ptr e) {
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
