// The same client without coroutines: futures from a thread of your own while an io_context runs
// elsewhere (what a redis-plus-plus user calls synchronously), and plain callbacks.
// Usage: without_coroutines [REDIS_URL]   (default redis://127.0.0.1:6379/0)
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <iostream>
#include <tempest/redis/client.hpp>
#include <thread>

namespace asio = boost::asio;
namespace tr = tempest::redis;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });  // the connection lives on this thread
  tr::Client redis(io.get_executor(), argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0");
  int status = 0;
  try {
    // Futures: each call returns a std::future; get() waits (errors come out of get()).
    redis.connect(asio::use_future).get();
    redis.set("greeting", "hello", tr::ex{60s}, asio::use_future).get();
    std::optional<std::string> v = redis.get("greeting", asio::use_future).get();
    std::cout << "future: " << v.value_or("(none)") << "\n";

    // Callbacks: void(std::exception_ptr, T), run on the client's executor (the runner thread).
    std::promise<void> done;
    redis.incr("callbacks", [&](std::exception_ptr e, long long n) {
      if (e) {
        done.set_exception(e);
        return;
      }
      std::cout << "callback: counter is " << n << "\n";
      done.set_value();
    });
    done.get_future().get();
    redis.disconnect(asio::use_future).get();
  } catch (const tr::Error& e) {
    std::cerr << "redis error: " << e.what() << "\n";
    status = 1;
  }
  work.reset();
  runner.join();
  return status;
}
