/// @file
/// An HTTP/1.1 server on Boost.Beast, on the same Asio executor as the cache: routes, lifespan
/// hooks, handler dependencies, limits, timeouts, and graceful shutdown.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tempest/http/metrics.hpp"
#include "tempest/http/router.hpp"
#include "tempest/http/types.hpp"

namespace tempest::cache {
class RedisManager;
}
namespace tempest::redis {
class Client;
}

namespace tempest::http {

/// The server's address, limits, timeouts and threads.
struct ServerOptions {
  ServerOptions() = default;                 ///< not an aggregate: see tempest::redis::ScanOptions
  std::string host = "127.0.0.1";            ///< address to listen on
  std::uint16_t port = 8000;                 ///< 0: any free port (see App::port())
  std::size_t max_header_bytes = 8 * 1024;   ///< larger: 431
  std::size_t max_body_bytes = 1024 * 1024;  ///< larger: 413
  std::chrono::milliseconds read_timeout{
      10000};  ///< a request must arrive within this: else closed
  std::chrono::milliseconds idle_timeout{30000};  ///< keep-alive connections idle longer: closed
  std::size_t max_connections = 1024;             ///< more: accepted and closed at once
  /// Of those, at most this many from one client address, so that one address holding slow
  /// connections cannot lock out the others (a health probe, say). Behind a reverse proxy, every
  /// connection comes from the proxy: raise it to max_connections there.
  std::size_t max_connections_per_address = 768;
  std::chrono::milliseconds shutdown_timeout{10000};  ///< in-flight requests get this long
  /// Threads serving connections; 0: one per CPU. Each has its own io_context and its own
  /// SO_REUSEPORT listener on the port, and the kernel spreads new connections over them. The
  /// first is the io_context given to the App (which run() runs; with serve(), you do), the
  /// others are the App's own. Handlers and middleware then run on several threads at once:
  /// what they share must be thread-safe (tempest's Client, RedisManager, cached(), the
  /// invalidator, the response-cache stores and the metrics are).
  unsigned threads = 0;
};

/// The HTTP application: routes, middleware, lifespan hooks, and the server that runs them (the
/// C++ side of a FastAPI app).
class App {
 public:
  /// Listens on nothing until run() or serve(); `io` is the first serving thread's io_context.
  explicit App(asio::io_context& io, ServerOptions options = {});
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  /// Lifespan: startup hooks run before the server accepts any connection (one that throws makes
  /// run() return 1 with a clear message); shutdown hooks run after the last request.
  ///@{
  void on_startup(Hook hook);
  void on_shutdown(Hook hook);
  ///@}

  /// The app's own router: `app.router().get("/users/{id}", handler)`.
  Router& router() { return router_; }
  /// Adds a middleware around every request (before run()/serve()). Routing comes first, so a
  /// middleware sees request.route and request.params; the first added is the outermost.
  App& use(Middleware middleware);
  /// Adds every route of `r` (with its prefix), as FastAPI's include_router.
  App& include(const Router& r) {
    router_.include(r);
    return *this;
  }

  /// Runs startup, listens, serves until SIGINT/SIGTERM or stop(), then shuts down gracefully.
  /// Runs the io_context itself; returns the process exit code (0 after a clean shutdown).
  int run();
  /// The same as a coroutine, for hosting the app in an io_context you run yourself. Throws what
  /// a startup hook threw.
  asio::awaitable<void> serve();
  /// Begins a graceful shutdown (thread-safe).
  void stop();

  /// The port listened on, once listening began (0 before): the free port when
  /// ServerOptions::port is 0.
  std::uint16_t port() const noexcept { return bound_port_.load(); }
  /// Whether the server accepts connections now (false before listening and once stopping).
  bool accepting() const noexcept { return accepting_.load(); }
  /// The request metrics that GET /metrics renders (see metrics.hpp).
  HttpMetrics& metrics() noexcept { return *metrics_; }

  /// Handles one request as the server does (routing, 404/405, errors to 500): for tests.
  asio::awaitable<Response> handle(Request& request);

  struct Impl;

 private:
  friend class Next;
  asio::awaitable<Response> step(Request& request, const Router::Match& match,
                                 std::size_t index) const;
  asio::awaitable<Response> run_route(Request& request, const Router::Match& match) const;

  std::unique_ptr<Impl> impl_;
  Router router_;
  std::shared_ptr<HttpMetrics> metrics_;
  std::atomic<std::uint16_t> bound_port_{0};
  std::atomic<bool> accepting_{false};
};

/// Hands the live Redis client to a handler: when the manager has none (before connect(), after
/// disconnect()), the handler does not run and the response is 503 {"detail": ...}.
Handler with_client(cache::RedisManager& manager,
                    std::function<asio::awaitable<Response>(Request&, redis::Client)> handler);

}  // namespace tempest::http
