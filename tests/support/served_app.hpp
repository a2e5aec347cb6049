// An App served by serve() on its own io_context thread, on a free port, for the HTTP tests.
#pragma once

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "tempest/cache/manager.hpp"
#include "tempest/http/app.hpp"

namespace tempest::test {

// An App served by serve() on its own io_context thread, on a free port.
class Served {
 public:
  explicit Served(tempest::http::ServerOptions options = {})
      : app(io, with_free_port(std::move(options))) {}
  ~Served() { stop(); }

  void start() {
    thread_ = std::thread([this] {
      boost::asio::co_spawn(io, app.serve(), [this](std::exception_ptr e) {
        failure = e;
        finished = true;
      });
      while (!finished && !io.stopped())
        io.run_one();
      // Work the app left behind (a health check still waiting for a frozen Redis, say) gets a
      // bounded time to finish, so nothing is abandoned half way (LeakSanitizer would object).
      io.run_for(std::chrono::seconds(2));
    });
    for (int i = 0; i < 500 && !app.accepting() && !finished; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  void stop() {
    if (!thread_.joinable()) return;
    app.stop();
    thread_.join();
  }
  std::uint16_t port() const { return app.port(); }
  // A RedisManager on this io_context that lives as long as the app does: the app's shutdown
  // hooks and the work it leaves behind (a health check) still use it when the server stops.
  tempest::cache::RedisManager& manager(const std::string& url) {
    return redis_.emplace(io.get_executor(), url);
  }

  boost::asio::io_context io;
  tempest::http::App app;
  std::atomic<bool> finished{false};
  std::exception_ptr failure;

 private:
  static tempest::http::ServerOptions with_free_port(tempest::http::ServerOptions o) {
    o.port = 0;
    // One thread unless a test asks for more: handlers in tests share plain variables.
    if (o.threads == 0) o.threads = 1;
    return o;
  }
  std::thread thread_;
  std::optional<tempest::cache::RedisManager> redis_;  // destroyed after ~Served() stopped the app
};

}  // namespace tempest::test
