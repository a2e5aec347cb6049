#include "tempest/http/app.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <list>

#include "tempest/cache/manager.hpp"
#include "tempest/log.hpp"

namespace tempest::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; '+' is a space in query strings. Malformed escapes are kept as they are.
std::string decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

Request to_request(bhttp::request<bhttp::string_body>&& raw) {
  Request r;
  r.method = std::string(raw.method_string());
  r.target = std::string(raw.target());
  const auto q = r.target.find('?');
  r.path = decode(std::string_view(r.target).substr(0, q), false);
  if (q != std::string::npos) {
    std::string_view query = std::string_view(r.target).substr(q + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const auto item = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
      if (item.empty()) continue;
      const auto eq = item.find('=');
      r.query[decode(item.substr(0, eq), true)] =
          eq == std::string_view::npos ? std::string() : decode(item.substr(eq + 1), true);
    }
  }
  for (const auto& field : raw) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    r.headers[name] = std::string(field.value());
  }
  r.body = std::move(raw.body());
  return r;
}

bhttp::response<bhttp::string_body> to_response(Response&& res, unsigned version, bool keep_alive,
                                                bool head) {
  bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(res.status), version};
  out.set(bhttp::field::server, "tempest");
  out.set(bhttp::field::content_type, res.content_type);
  for (auto& [k, v] : res.headers)
    out.set(k, v);
  out.body() = std::move(res.body);
  out.prepare_payload();
  if (head) out.body().clear();
  out.keep_alive(keep_alive);
  return out;
}

}  // namespace

struct App::Impl {
  asio::io_context& io;
  ServerOptions options;
  std::vector<Hook> startup, shutdown;
  std::optional<tcp::acceptor> acceptor;
  asio::steady_timer stop_signal;
  bool stopping = false;
  std::size_t connections = 0;
  std::size_t in_flight = 0;
  // Sessions waiting for a request (not handling one): closed at once on shutdown.
  std::list<beast::tcp_stream*> idle;
  std::shared_ptr<spdlog::logger> log = tempest::logger("tempest.http");

  Impl(asio::io_context& ctx, ServerOptions o)
      : io(ctx), options(std::move(o)), stop_signal(ctx, Clock::time_point::max()) {}
};

App::App(asio::io_context& io, ServerOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))),
      metrics_(std::make_shared<HttpMetrics>()) {}

App::~App() = default;

void App::on_startup(Hook hook) {
  impl_->startup.push_back(std::move(hook));
}
void App::on_shutdown(Hook hook) {
  impl_->shutdown.push_back(std::move(hook));
}

void App::stop() {
  asio::post(impl_->io, [impl = impl_.get()] {
    impl->stopping = true;
    impl->stop_signal.cancel();
  });
}

asio::awaitable<Response> App::handle(Request& request) {
  auto m = router_.match(request.method, request.path);
  if (!m.handler) {
    request.route = m.allowed.empty() ? "(unmatched)" : request.path;
    if (m.allowed.empty()) co_return Response::error(404, "Not Found");
    Response r = Response::error(405, "Method Not Allowed");
    std::string allow;
    for (const auto& a : m.allowed)
      allow += (allow.empty() ? "" : ", ") + a;
    r.headers["allow"] = allow;
    co_return r;
  }
  request.params = std::move(m.params);
  request.route = m.route;
  std::string failure;
  try {
    co_return co_await (*m.handler)(request);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  impl_->log->error("{} {} failed: {}", request.method, request.route, failure);
  co_return Response::error(500, "Internal Server Error");
}

namespace {

asio::awaitable<void> session(App& app, App::Impl& impl, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(impl.options.max_header_bytes));
    parser.body_limit(impl.options.max_body_bytes);
    stream.expires_after(first ? impl.options.read_timeout : impl.options.idle_timeout);
    first = false;
    error_code ec;
    impl.idle.push_front(&stream);
    const auto idle_pos = impl.idle.begin();
    if (impl.stopping) break;
    co_await bhttp::async_read(stream, buffer, parser,
                               asio::redirect_error(asio::use_awaitable, ec));
    impl.idle.erase(idle_pos);
    if (ec) {
      // Oversized or malformed requests get their 4xx and the connection is closed; timeouts
      // and clients that went away are just closed.
      unsigned status = 0;
      if (ec == bhttp::error::header_limit)
        status = 431;
      else if (ec == bhttp::error::body_limit)
        status = 413;
      else if (ec != bhttp::error::end_of_stream && ec != beast::error::timeout &&
               ec != asio::error::operation_aborted && ec != asio::error::eof &&
               ec != asio::error::connection_reset &&
               ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
        status = 400;
      if (status != 0) {
        auto res =
            to_response(Response::error(status, status == 431   ? "Request Header Fields Too Large"
                                                : status == 413 ? "Payload Too Large"
                                                                : "Bad Request"),
                        11, false, false);
        stream.expires_after(std::chrono::seconds(5));
        co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      }
      break;
    }
    ++impl.in_flight;
    const auto started = Clock::now();
    auto raw = parser.release();
    const unsigned version = raw.version();
    const bool wants_keep_alive = raw.keep_alive();
    const bool head = raw.method() == bhttp::verb::head;
    Request request = to_request(std::move(raw));
    Response response = co_await app.handle(request);
    app.metrics().observe(request.route, request.method, response.status, Clock::now() - started);
    const bool keep_alive = wants_keep_alive && !impl.stopping;
    auto out = to_response(std::move(response), version, keep_alive, head);
    stream.expires_after(impl.options.read_timeout);
    co_await bhttp::async_write(stream, out, asio::redirect_error(asio::use_awaitable, ec));
    --impl.in_flight;
    if (impl.stopping && impl.in_flight == 0) impl.stop_signal.cancel();
    if (ec || !keep_alive) break;
  }
  for (auto it = impl.idle.begin(); it != impl.idle.end(); ++it)
    if (*it == &stream) {
      impl.idle.erase(it);
      break;
    }
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
  --impl.connections;
  if (impl.stopping) impl.stop_signal.cancel();
}

asio::awaitable<void> accept_loop(App& app, App::Impl& impl) {
  for (;;) {
    error_code ec;
    tcp::socket socket =
        co_await impl.acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (impl.stopping || ec == asio::error::operation_aborted) co_return;
      impl.log->warn("accept failed: {}", ec.message());
      continue;
    }
    if (impl.connections >= impl.options.max_connections) {
      socket.close(ec);  // over the limit: refuse fast rather than queue
      continue;
    }
    ++impl.connections;
    asio::co_spawn(impl.io, session(app, impl, std::move(socket)), asio::detached);
  }
}

}  // namespace

asio::awaitable<void> App::serve() {
  Impl& impl = *impl_;
  for (auto& hook : impl.startup)
    co_await hook();
  const auto address = asio::ip::make_address(impl.options.host);
  impl.acceptor.emplace(impl.io);
  const tcp::endpoint endpoint(address, impl.options.port);
  impl.acceptor->open(endpoint.protocol());
  impl.acceptor->set_option(tcp::acceptor::reuse_address(true));
  impl.acceptor->bind(endpoint);
  impl.acceptor->listen();
  bound_port_ = impl.acceptor->local_endpoint().port();
  accepting_ = true;
  impl.log->info("listening on http://{}:{}", impl.options.host, bound_port_.load());
  asio::co_spawn(impl.io, accept_loop(*this, impl), asio::detached);

  error_code ec;
  while (!impl.stopping)
    co_await impl.stop_signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));

  // Graceful shutdown: stop accepting, close idle keep-alive connections, let requests in
  // flight finish (bounded), then run the shutdown hooks.
  accepting_ = false;
  impl.acceptor->close(ec);
  for (auto* s : impl.idle)
    s->socket().cancel(ec);
  const auto deadline = Clock::now() + impl.options.shutdown_timeout;
  while (impl.connections > 0 && Clock::now() < deadline) {
    impl.stop_signal.expires_at(std::min(deadline, Clock::now() + std::chrono::milliseconds(50)));
    co_await impl.stop_signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    for (auto* s : impl.idle)
      s->socket().cancel(ec);
  }
  if (impl.connections > 0)
    impl.log->warn("shutdown: {} connection(s) still open after {} ms", impl.connections,
                   impl.options.shutdown_timeout.count());
  for (auto& hook : impl.shutdown) {
    try {
      co_await hook();
    } catch (const std::exception& e) {
      impl.log->error("shutdown hook failed: {}", e.what());
    }
  }
  impl.log->info("stopped");
}

int App::run() {
  Impl& impl = *impl_;
  asio::signal_set signals(impl.io, SIGINT, SIGTERM);
  signals.async_wait([this](error_code ec, int sig) {
    if (ec) return;
    impl_->log->info("signal {}: shutting down", sig);
    stop();
  });
  int status = 0;
  asio::co_spawn(impl.io, serve(), [&](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& err) {
        impl.log->critical("startup failed: {}", err.what());
        std::fprintf(stderr, "startup failed: %s\n", err.what());
      }
      status = 1;
    }
    error_code ignored;
    signals.cancel(ignored);
    impl.io.stop();
  });
  impl.io.run();
  return status;
}

Handler with_client(cache::RedisManager& manager,
                    std::function<asio::awaitable<Response>(Request&, redis::Client)> handler) {
  return [&manager, handler = std::move(handler)](Request& req) -> asio::awaitable<Response> {
    auto client = manager.client_dependency();
    if (!client) co_return Response::error(503, "Redis client unavailable");
    co_return co_await handler(req, std::move(*client));
  };
}

}  // namespace tempest::http
