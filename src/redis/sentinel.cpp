#include "sentinel.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>

#include <spdlog/spdlog.h>

#include "tempest/log.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/command.hpp"
#include "tempest/redis/subscriber.hpp"

namespace tempest::redis::detail {

namespace asio = boost::asio;

namespace {

std::string where(const Endpoint& e) {
  return (e.host.find(':') != std::string::npos ? "[" + e.host + "]" : e.host) + ":" +
         std::to_string(e.port);
}

// Runs one command on a short-lived connection of its own: the reply, or nullopt with `why`
// saying what failed (the connection, or the command's deadline).
asio::awaitable<std::optional<Reply>> run_once(asio::any_io_executor executor, Config config,
                                               Command command, std::string& why) {
  Client client(executor, config);
  std::optional<Reply> reply;
  try {
    co_await client.connect();
    reply = co_await client.command(std::move(command));
  } catch (const std::exception& e) {
    why = e.what();
  }
  try {
    co_await client.disconnect();
  } catch (const std::exception&) {
  }
  co_return reply;
}

// "host" and "port" as a sentinel gives them: an Endpoint, or nullopt when they are not one.
std::optional<Endpoint> endpoint_of(const std::string& host, const std::string& port_text) {
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535 || host.empty())
    return std::nullopt;
  return Endpoint{host, static_cast<std::uint16_t>(port)};
}

// The master a sentinel names, or nullopt with `why` filled.
asio::awaitable<std::optional<Endpoint>> ask(asio::any_io_executor executor, Config config,
                                             std::string service, std::string& why) {
  auto r = co_await run_once(executor, std::move(config),
                             cmd("SENTINEL", "get-master-addr-by-name", service), why);
  if (!r) co_return std::nullopt;
  if (r->is_nil()) {
    why = "does not monitor a master named '" + service + "'";
  } else if (r->is_error()) {
    why = "answered " + r->str();
  } else if (!r->is_array() || r->elements().size() != 2 || !r->elements()[0].is_string() ||
             !r->elements()[1].is_string()) {
    why = "answered " + r->debug_string().substr(0, 80) + ", not [host, port]";
  } else if (auto found = endpoint_of(r->elements()[0].str(), r->elements()[1].str())) {
    co_return found;
  } else {
    why = "named a master at a bad address '" + r->elements()[0].str() + ":" +
          r->elements()[1].str() + "'";
  }
  co_return std::nullopt;
}

// Whether the node at `config` says it is a master; `why` says what it is otherwise.
asio::awaitable<bool> is_master(asio::any_io_executor executor, Config config, std::string& why) {
  const std::string node = where(Endpoint{config.host, config.port});
  auto r = co_await run_once(executor, std::move(config), Command("ROLE"), why);
  if (!r) {
    why = "named " + node + ", which cannot be used: " + why;
    co_return false;
  }
  const std::string role =
      r->is_array() && !r->elements().empty() ? r->elements().front().str() : r->debug_string();
  if (role == "master") co_return true;
  why = "named " + node + ", which says ROLE " + role;
  co_return false;
}

// The replicas of `service` a sentinel lists as up and in sync with their master (SENTINEL
// replicas: one array of field, value, field, value... per replica), or nullopt with `why`.
asio::awaitable<std::optional<std::vector<Endpoint>>> replicas_of(asio::any_io_executor executor,
                                                                  Config config,
                                                                  std::string service,
                                                                  std::string& why) {
  auto r =
      co_await run_once(executor, std::move(config), cmd("SENTINEL", "replicas", service), why);
  if (!r) co_return std::nullopt;
  if (r->is_error() || !r->is_array()) {
    why = "answered " + r->debug_string().substr(0, 80) + " to SENTINEL replicas";
    co_return std::nullopt;
  }
  std::vector<Endpoint> found;
  for (const Reply& replica : r->elements()) {
    if (!replica.is_array()) continue;
    std::string ip, port, flags, link;
    const auto& f = replica.elements();
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
      const std::string& name = f[i].str();
      if (name == "ip")
        ip = f[i + 1].str();
      else if (name == "port")
        port = f[i + 1].str();
      else if (name == "flags")
        flags = f[i + 1].str();
      else if (name == "master-link-status")
        link = f[i + 1].str();
    }
    // Down (subjectively or objectively), unreachable, or still syncing: not one to read from.
    const bool down = flags.find("s_down") != std::string::npos ||
                      flags.find("o_down") != std::string::npos ||
                      flags.find("disconnected") != std::string::npos;
    if (down || link != "ok") continue;
    if (auto e = endpoint_of(ip, port)) found.push_back(std::move(*e));
  }
  co_return found;
}

}  // namespace

SentinelDiscovery::SentinelDiscovery(asio::any_io_executor executor, const Config& config)
    : executor_(std::move(executor)),
      service_(config.sentinel.service),
      order_(config.sentinel.sentinels) {
  Config& c = sentinel_config_;
  c.username = config.sentinel.username;
  c.password = config.sentinel.password;
  c.tls = config.tls;
  c.connect_timeout = config.connect_timeout;
  c.command_timeout = config.connect_timeout;
  c.reconnect_min = config.reconnect_min;
  c.reconnect_max = std::max(config.reconnect_min, config.reconnect_max);
  // The master's own credentials and TLS, no database, no sentinel.
  Config& p = probe_config_;
  p = config;
  p.sentinel = SentinelOptions();
  p.db = 0;
  p.command_timeout = config.connect_timeout;
}

std::vector<Endpoint> SentinelDiscovery::order() {
  std::lock_guard lock(mutex_);
  return order_;
}

Config SentinelDiscovery::sentinel_at(const Endpoint& sentinel) const {
  Config c = sentinel_config_;
  c.host = sentinel.host;
  c.port = sentinel.port;
  return c;
}

void SentinelDiscovery::find_master(bool retry, Done done) {
  auto self = shared_from_this();
  asio::co_spawn(
      executor_,
      [self, retry, done = std::move(done)]() -> asio::awaitable<void> {
        std::vector<Endpoint> order = self->order();
        if (retry && order.size() > 1) std::rotate(order.begin(), order.begin() + 1, order.end());
        std::string failures;
        for (const auto& sentinel : order) {
          std::string why;
          auto master =
              co_await ask(self->executor_, self->sentinel_at(sentinel), self->service_, why);
          if (master) {
            Config probe = self->probe_config_;
            probe.host = master->host;
            probe.port = master->port;
            if (!co_await is_master(self->executor_, probe, why)) master.reset();
          }
          if (master) {
            {
              std::lock_guard lock(self->mutex_);
              auto& o = self->order_;
              const auto it = std::find_if(o.begin(), o.end(), [&](const Endpoint& e) {
                return e.host == sentinel.host && e.port == sentinel.port;
              });
              if (it != o.end()) std::rotate(o.begin(), it, it + 1);  // to the front
            }
            logger("tempest.redis")
                ->debug("sentinel {} names {} the master of '{}'", where(sentinel), where(*master),
                        self->service_);
            done(std::move(master), {});
            co_return;
          }
          failures += (failures.empty() ? "" : "; ") + where(sentinel) + ": " + why;
        }
        done(std::nullopt,
             "no sentinel named the master of '" + self->service_ + "' (" + failures + ")");
      },
      asio::detached);
}

void SentinelDiscovery::find_replicas(ReplicasDone done) {
  auto self = shared_from_this();
  asio::co_spawn(
      executor_,
      [self, done = std::move(done)]() -> asio::awaitable<void> {
        std::string failures;
        for (const auto& sentinel : self->order()) {
          std::string why;
          if (auto found = co_await replicas_of(self->executor_, self->sentinel_at(sentinel),
                                                self->service_, why)) {
            done(std::move(*found), {});
            co_return;
          }
          failures += (failures.empty() ? "" : "; ") + where(sentinel) + ": " + why;
        }
        done(std::nullopt,
             "no sentinel listed the replicas of '" + self->service_ + "' (" + failures + ")");
      },
      asio::detached);
}

void SentinelDiscovery::watch(std::function<void()> on_switch) {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    watchers_.push_back(std::move(on_switch));
    if (watching_) return;
    watching_ = true;
  }
  auto self = shared_from_this();
  asio::co_spawn(
      executor_,
      [self]() -> asio::awaitable<void> {
        const std::string prefix = self->service_ + " ";
        for (std::size_t attempt = 0;; ++attempt) {
          std::shared_ptr<Subscriber> sub;
          {
            std::lock_guard lock(self->mutex_);
            if (self->stopped_) co_return;
            const Endpoint& e = self->order_[attempt % self->order_.size()];
            sub = std::make_shared<Subscriber>(self->executor_, self->sentinel_at(e));
            self->subscriber_ = sub;
          }
          try {
            co_await sub->connect();
            co_await sub->subscribe(std::string_view("+switch-master"));
            for (;;) {
              Message m = co_await sub->next();
              // "<service> <old ip> <old port> <new ip> <new port>"; a gap: one may be missed.
              if (m.kind == Message::Kind::gap || m.payload.starts_with(prefix)) self->switched();
            }
          } catch (const std::exception&) {
          }
          sub->close();
          {
            std::lock_guard lock(self->mutex_);
            if (self->stopped_) co_return;
          }
          // That sentinel is gone: the next one, after a pause.
          asio::steady_timer pause(self->executor_, std::chrono::seconds(1));
          boost::system::error_code ec;
          co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
      },
      asio::detached);
}

void SentinelDiscovery::switched() {
  std::vector<std::function<void()>> watchers;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    watchers = watchers_;
  }
  for (auto& w : watchers)
    w();
}

void SentinelDiscovery::stop() {
  std::shared_ptr<Subscriber> sub;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    sub = std::move(subscriber_);
    watchers_.clear();
  }
  if (sub) sub->close();
}

}  // namespace tempest::redis::detail
