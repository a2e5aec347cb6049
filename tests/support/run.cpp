#include "support/run.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <memory>
#include <stdexcept>

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
