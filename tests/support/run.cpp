#include "support/run.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tempest::test {

void run(asio::io_context& io, std::function<asio::awaitable<void>()> body,
         std::chrono::seconds limit) {
  bool done = false;
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    done = true;
    failure = e;
    io.stop();
  });
  asio::steady_timer watchdog(io, limit);
  watchdog.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  io.restart();
  io.run();
  watchdog.cancel();
  // Let handlers that were already queued (cancellations, closes) run.
  io.restart();
  io.poll();
  if (!done) throw std::runtime_error("test coroutine did not finish in time");
  if (failure) std::rethrow_exception(failure);
}

void run_on_threads(asio::io_context& io, int threads,
                    std::function<asio::awaitable<void>()> body) {
  std::atomic<bool> finished{false};
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    failure = e;
    finished = true;
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] { io.run(); });
  for (auto& t : pool)
    t.join();
  if (!finished.load()) throw std::runtime_error("test coroutine did not finish");
  if (failure) std::rethrow_exception(failure);
}

std::string python_sdk_dir() {
  const char* env = std::getenv("TEMPEST_PYTHON_SDK");
  const std::string sdk = env != nullptr
                              ? std::string(env)
                              : std::string(TEMPEST_SOURCE_DIR "/../shared/reference/sdk");
  return shell("test -f '" + sdk + "/load_sdk.py' && echo yes") == "yes" ? sdk : "";
}

std::string unique_prefix(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  static const std::string run =
      std::to_string(::getpid()) + "." +
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  return tag + ":" + run + ":" + info->test_suite_name() + ":" + info->name() + ":";
}

asio::awaitable<long long> all_workers(int n, Worker worker) {
  auto ex = co_await asio::this_coro::executor;
  // The workers may end on different threads (an io_context run by several): atomics, and a
  // thread-safe channel for the last one's signal.
  std::atomic<int> running{n};
  std::atomic<long long> failed{0};
  asio::experimental::concurrent_channel<void(boost::system::error_code)> all_done(ex, 1);
  for (int w = 0; w < n; ++w) {
    asio::co_spawn(ex, worker(w), [&](std::exception_ptr e) {
      if (e) failed.fetch_add(1);
      if (running.fetch_sub(1) == 1) (void)all_done.try_send(boost::system::error_code{});
    });
  }
  boost::system::error_code ec;
  co_await all_done.async_receive(asio::redirect_error(asio::use_awaitable, ec));
  co_return failed.load();
}

std::string shell(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::string out;
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, pipe.get()))
    out.append(buf, n);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
    out.pop_back();
  return out;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

}  // namespace tempest::test
