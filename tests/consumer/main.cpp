// Connects to the Redis URL given on the command line, round-trips a key and prints "consumer ok".
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <tempest/redis/client.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tempest_consumer REDIS_URL\n");
    return 2;
  }
  boost::asio::io_context io;
  tempest::redis::Client client(io.get_executor(), argv[1]);
  int status = 1;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        co_await client.connect();
        co_await client.set("tempest:consumer", "ok", tempest::redis::ex{std::chrono::seconds(60)});
        auto value = co_await client.get("tempest:consumer");
        co_await client.disconnect();
        if (value == "ok") status = 0;
      },
      [&](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            std::fprintf(stderr, "consumer: %s\n", ex.what());
          }
        }
        io.stop();
      });
  io.run();
  std::puts(status == 0 ? "consumer ok" : "consumer FAILED");
  return status;
}
