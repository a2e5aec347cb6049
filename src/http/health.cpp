#include "tempest/http/health.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>

#include "tempest/log.hpp"

namespace tempest::http {

namespace {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

struct Round {
  explicit Round(asio::any_io_executor ex, std::size_t n) : results(n), pending(n), done(ex) {}
  std::vector<std::optional<bool>> results;  // unset: did not answer in time
  std::size_t pending;
  asio::steady_timer done;
};

// A check that throws counts as failed and is logged, as in the Python SDK.
asio::awaitable<bool> guarded(HealthCheck check, std::string name) {
  try {
    co_return co_await check();
  } catch (const std::exception& e) {
    tempest::logger("tempest.http")->warn("health check '{}' raised: {}", name, e.what());
  }
  co_return false;
}

// All checks at once, each bounded by the timeout: a hung check is reported false when the time
// is up (it may go on in the background; its late answer is ignored).
asio::awaitable<Response> readiness(std::shared_ptr<const HealthOptions> o) {
  auto ex = co_await asio::this_coro::executor;
  auto round = std::make_shared<Round>(ex, o->checks.size());
  for (std::size_t i = 0; i < o->checks.size(); ++i) {
    asio::co_spawn(ex, guarded(o->checks[i].second, o->checks[i].first),
                   [round, i](std::exception_ptr e, bool ok) {
                     round->results[i] = !e && ok;
                     if (--round->pending == 0) round->done.cancel();
                   });
  }
  if (round->pending > 0) {
    round->done.expires_after(o->timeout);
    boost::system::error_code ec;
    co_await round->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  bool all = true;
  std::string checks = "{";
  for (std::size_t i = 0; i < o->checks.size(); ++i) {
    const bool ok = round->results[i].value_or(false);
    if (!round->results[i])
      tempest::logger("tempest.http")
          ->warn("health check '{}' did not answer within {} ms", o->checks[i].first,
                 o->timeout.count());
    all = all && ok;
    if (i) checks += ",";
    checks += json_string(o->checks[i].first) + ":" + (ok ? "true" : "false");
  }
  checks += "}";
  std::string body = std::string("{\"status\":") + (all ? "\"ready\"" : "\"not_ready\"");
  if (o->expose_checks) body += ",\"checks\":" + checks;
  if (o->version) body += ",\"version\":" + json_string(*o->version);
  body += "}";
  co_return Response::json(all ? 200 : 503, std::move(body));
}

}  // namespace

Router make_health_router(HealthOptions options) {
  auto o = std::make_shared<const HealthOptions>(std::move(options));
  Router r(o->prefix);
  // Liveness touches no dependency, and its body is exactly the Python SDK's.
  r.get("/liveness", [](Request&) -> asio::awaitable<Response> {
    co_return Response::json(200, "{\"status\":\"ok\"}");
  });
  r.get("/readiness", [o](Request&) -> asio::awaitable<Response> { return readiness(o); });
  return r;
}

}  // namespace tempest::http
