#include "run.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <stdexcept>

#include "tempest/redis/client.hpp"

namespace tempest::cli {

void run_bounded(boost::asio::io_context& io, std::function<boost::asio::awaitable<void>()> body,
                 std::chrono::milliseconds limit, const std::string& what) {
  bool done = false;
  std::exception_ptr failure;
  boost::asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    done = true;
    failure = e;
    io.stop();
  });
  boost::asio::steady_timer watchdog(io, limit);
  watchdog.async_wait([&](boost::system::error_code ec) {
    if (!ec) io.stop();
  });
  io.restart();
  io.run();
  watchdog.cancel();
  if (!done)
    throw std::runtime_error(what + " did not finish within " +
                             std::to_string(limit.count() / 1000) + " s");
  if (failure) std::rethrow_exception(failure);
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(std::max(1LL, static_cast<long long>(seconds * 1000.0)));
}

boost::asio::awaitable<void> connect_or_explain(redis::Client& client) {
  std::string failure;
  try {
    co_await client.connect();
  } catch (const redis::Error& e) {
    failure = e.what();
  }
  if (!failure.empty()) throw std::runtime_error("Redis unreachable: " + failure);
}

redis::Config tool_config(std::string_view url, double timeout_s) {
  redis::Config config = redis::Config::from_url(url);
  config.connect_timeout = to_ms(timeout_s);
  config.command_timeout = to_ms(timeout_s);
  config.when_disconnected = redis::Config::WhenDisconnected::fail;
  return config;
}

}  // namespace tempest::cli
