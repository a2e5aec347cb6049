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

// The master a sentinel names, or nullopt with `why` filled.
asio::awaitable<std::optional<Endpoint>> ask(asio::any_io_executor executor, Config config,
                                             std::string service, std::string& why) {
  Client client(executor, config);
  std::optional<Endpoint> found;
  try {
    co_await client.connect();
    Reply r = co_await client.command(cmd("SENTINEL", "get-master-addr-by-name", service));
    if (r.is_nil()) {
      why = "does not monitor a master named '" + service + "'";
    } else if (r.is_error()) {
      why = "answered " + r.str();
    } else if (!r.is_array() || r.elements().size() != 2 || !r.elements()[0].is_string() ||
               !r.elements()[1].is_string()) {
      why = "answered " + r.debug_string().substr(0, 80) + ", not [host, port]";
    } else {
      const std::string& port_text = r.elements()[1].str();
      unsigned port = 0;
      const auto [end, ec] =
          std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
      if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
          port > 65535 || r.elements()[0].str().empty()) {
        why = "named a master at a bad address '" + r.elements()[0].str() + ":" + port_text + "'";
      } else {
        found = Endpoint{r.elements()[0].str(), static_cast<std::uint16_t>(port)};
      }
    }
  } catch (const std::exception& e) {
    why = e.what();
  }
  try {
    co_await client.disconnect();
  } catch (const std::exception&) {
  }
  co_return found;
}

// Whether the node at `config` says it is a master; `why` says what it is otherwise.
asio::awaitable<bool> is_master(asio::any_io_executor executor, Config config, std::string& why) {
  Client client(executor, config);
  bool master = false;
  try {
    co_await client.connect();
    Reply r = co_await client.command(Command("ROLE"));
    const std::string role =
        r.is_array() && !r.elements().empty() ? r.elements().front().str() : r.debug_string();
    master = role == "master";
    if (!master)
      why = "named " + where(Endpoint{config.host, config.port}) + ", which says ROLE " + role;
  } catch (const std::exception& e) {
    why = "named " + where(Endpoint{config.host, config.port}) +
          ", which cannot be used: " + e.what();
  }
  try {
    co_await client.disconnect();
  } catch (const std::exception&) {
  }
  co_return master;
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

void SentinelDiscovery::find_master(bool retry, Done done) {
  auto self = shared_from_this();
  asio::co_spawn(
      executor_,
      [self, retry, done = std::move(done)]() -> asio::awaitable<void> {
        std::vector<Endpoint> order;
        {
          std::lock_guard lock(self->mutex_);
          order = self->order_;
        }
        if (retry && order.size() > 1) std::rotate(order.begin(), order.begin() + 1, order.end());
        std::string failures;
        for (const auto& sentinel : order) {
          Config c = self->sentinel_config_;
          c.host = sentinel.host;
          c.port = sentinel.port;
          std::string why;
          auto master = co_await ask(self->executor_, c, self->service_, why);
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

void SentinelDiscovery::watch(std::function<void()> on_switch) {
  {
    std::lock_guard lock(mutex_);
    if (watching_ || stopped_) return;
    watching_ = true;
  }
  auto self = shared_from_this();
  asio::co_spawn(
      executor_,
      [self, on_switch = std::move(on_switch)]() -> asio::awaitable<void> {
        const std::string prefix = self->service_ + " ";
        for (std::size_t attempt = 0;; ++attempt) {
          Config c = self->sentinel_config_;
          std::shared_ptr<Subscriber> sub;
          {
            std::lock_guard lock(self->mutex_);
            if (self->stopped_) co_return;
            const Endpoint& e = self->order_[attempt % self->order_.size()];
            c.host = e.host;
            c.port = e.port;
            sub = std::make_shared<Subscriber>(self->executor_, c);
            self->subscriber_ = sub;
          }
          try {
            co_await sub->connect();
            co_await sub->subscribe(std::string_view("+switch-master"));
            for (;;) {
              Message m = co_await sub->next();
              // "<service> <old ip> <old port> <new ip> <new port>"; a gap: one may be missed.
              if (m.kind == Message::Kind::gap || m.payload.starts_with(prefix)) on_switch();
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

void SentinelDiscovery::stop() {
  std::shared_ptr<Subscriber> sub;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    sub = std::move(subscriber_);
  }
  if (sub) sub->close();
}

}  // namespace tempest::redis::detail
