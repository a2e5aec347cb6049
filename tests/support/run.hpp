// Running coroutines to completion in tests, with a watchdog so nothing waits forever.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string>

// ASSERT_* returns, which a coroutine cannot: these record the failure and co_return.
#define CO_ASSERT_TRUE(cond)                       \
  do {                                             \
    if (!(cond)) {                                 \
      ADD_FAILURE() << "assertion failed: " #cond; \
      co_return;                                   \
    }                                              \
  } while (0)
#define CO_ASSERT_EQ(a, b) CO_ASSERT_TRUE((a) == (b))

namespace tempest::test {

namespace asio = boost::asio;

// Runs `body` on `io` until it finishes; rethrows its exception. Fails the test (throws) when it
// has not finished after `limit`.
void run(asio::io_context& io, std::function<asio::awaitable<void>()> body,
         std::chrono::seconds limit = std::chrono::seconds(120));

// The same with `threads` threads running `io` (no watchdog: the body must end by itself).
void run_on_threads(asio::io_context& io, int threads, std::function<asio::awaitable<void>()> body);

// A key prefix unique to the running test (and to this process):
// "<tag>:<pid.time>:<suite>:<test>:".
std::string unique_prefix(const std::string& tag);

// Runs worker(0) .. worker(n - 1) concurrently on the caller's executor and waits for all of them;
// returns how many ended with an exception.
using Worker = std::function<asio::awaitable<void>(int)>;
asio::awaitable<long long> all_workers(int n, Worker worker);

// Runs a shell command and returns its standard output without trailing line ends.
std::string shell(const std::string& command);

// Where the Python SDK's own source is (outside this repository: TEMPEST_PYTHON_SDK, or
// ../shared/reference/sdk beside the checkout), for the interop tests that run it; "" when it is
// in neither place (those tests are then skipped).
std::string python_sdk_dir();

// Sleeps inside a coroutine.
asio::awaitable<void> sleep_for(std::chrono::milliseconds d);

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace tempest::test
