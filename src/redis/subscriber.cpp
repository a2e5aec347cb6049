#include "tempest/redis/subscriber.hpp"

#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>

#include "link.hpp"
#include "tempest/redis/client.hpp"  // detail::to_reply
#include "tempest/redis/detail/async.hpp"
#include "tempest/redis/error.hpp"

namespace tempest::redis {

namespace asio = boost::asio;
using detail::Link;
using detail::RequestRef;
using detail::Session;

struct Subscriber::State {
  using Channel = asio::experimental::concurrent_channel<void(boost::system::error_code, Message)>;

  State(asio::any_io_executor ex, Config c, std::size_t backlog)
      : executor(std::move(ex)), messages(executor, backlog) {
    c.validate();
    // Subscribing waits for the link, like any request on a shared connection.
    c.when_disconnected = Config::WhenDisconnected::queue;
    link = std::make_shared<Link>(executor, std::move(c), detail::Venue::shared);
  }

  asio::any_io_executor executor;
  std::shared_ptr<Link> link;
  Channel messages;
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<bool> owe_gap{false};  // messages were dropped: a gap goes out before the next one
  std::atomic<bool> closed{false};

  // On the link's thread, outside its lock.
  void take(std::vector<Session::Pushed>&& pushed) {
    for (auto& p : pushed) {
      if (owe_gap.load(std::memory_order_acquire)) {
        if (!messages.try_send(boost::system::error_code{},
                               Message{Message::Kind::gap, {}, {}, {}})) {
          dropped.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        owe_gap.store(false, std::memory_order_release);
      }
      Message m;
      if (p.gap) {
        m.kind = Message::Kind::gap;
      } else {
        auto& e = p.reply.elements();
        if (e.front().str() == "pmessage") {
          m.kind = Message::Kind::pattern_message;
          m.pattern = std::move(e[1]).as_string();
          m.channel = std::move(e[2]).as_string();
          m.payload = std::move(e[3]).as_string();
        } else {
          m.channel = std::move(e[1]).as_string();
          m.payload = std::move(e[2]).as_string();
        }
      }
      if (!messages.try_send(boost::system::error_code{}, std::move(m))) {
        dropped.fetch_add(1, std::memory_order_relaxed);
        owe_gap.store(true, std::memory_order_release);
      }
    }
  }

  asio::awaitable<Reply> run(RequestRef r) {
    detail::Initiation<Reply> initiation{link, &detail::to_reply};
    detail::NewRequest request(std::move(r));
    Reply reply = co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                                void(std::exception_ptr, Reply)>(
        std::move(initiation), asio::use_awaitable, std::move(request));
    co_return reply;
  }

  asio::awaitable<void> change(std::string_view verb, Session::Subscription kind,
                               std::vector<std::string> names, bool on) {
    if (names.empty()) throw std::invalid_argument(std::string(verb) + ": no channel or pattern");
    if (closed.load(std::memory_order_acquire))
      throw ConnectionError("the Redis subscriber was closed");
    Command c(verb);
    for (const auto& n : names)
      c.arg(n);
    RequestRef r = RequestRef::make();
    r->set_pipeline(c.wire(), names.size());  // one confirmation per name
    link->note_subscriptions(kind, names, on);
    const Reply confirmations = co_await run(std::move(r));
    for (const auto& one : confirmations.elements())
      if (one.is_error()) throw ServerError(one.str());
  }
};

Subscriber::Subscriber(asio::any_io_executor executor, Config config, std::size_t backlog)
    : state_(std::make_shared<State>(std::move(executor), std::move(config), backlog)) {
  state_->link->enroll();
  std::weak_ptr<State> weak = state_;
  state_->link->set_subscriber([weak](std::vector<Session::Pushed>&& pushed) {
    if (auto s = weak.lock()) s->take(std::move(pushed));
  });
}

Subscriber::Subscriber(asio::any_io_executor executor, std::string_view url, std::size_t backlog)
    : Subscriber(std::move(executor), Config::from_url(url), backlog) {}

Subscriber::~Subscriber() {
  close();
}

asio::awaitable<void> Subscriber::connect() {
  auto s = state_;
  if (s->link->config().cluster.enabled && !s->link->started()) {
    // A cluster: every node hears every PUBLISH, so a lost node is replaced by another one. The
    // masters come from the slot map (read once, here), then the seeds.
    Config c = s->link->config();
    std::vector<Endpoint> nodes;
    try {
      Client discovery(s->executor, c);
      co_await discovery.connect();
      for (const auto& m : discovery.masters()) {
        const auto colon = m.rfind(':');
        nodes.push_back(Endpoint{m.substr(0, colon),
                                 static_cast<std::uint16_t>(std::stoi(m.substr(colon + 1)))});
      }
      discovery.close();
    } catch (const std::exception&) {
      // The seeds alone, then (the subscriber's own connect below says what is wrong).
    }
    nodes.push_back(Endpoint{c.host, c.port});
    for (const auto& seed : c.cluster.seeds)
      nodes.push_back(seed);
    s->link->set_alternates(std::move(nodes));
  }
  s->link->start();
  RequestRef r = RequestRef::make();
  r->set_kind(detail::RequestKind::wait_ready);
  r->flags = detail::kWaitFirstAttempt;
  r->set_timeout(s->link->config().connect_timeout);
  const Reply ok = co_await s->run(std::move(r));
  if (ok.is_error()) throw ConnectionError(ok.str());
}

asio::awaitable<void> Subscriber::subscribe(std::vector<std::string> channels) {
  auto s = state_;
  co_await s->change("SUBSCRIBE", Session::Subscription::channel, std::move(channels), true);
}

asio::awaitable<void> Subscriber::psubscribe(std::vector<std::string> patterns) {
  auto s = state_;
  co_await s->change("PSUBSCRIBE", Session::Subscription::pattern, std::move(patterns), true);
}

asio::awaitable<void> Subscriber::unsubscribe(std::vector<std::string> channels) {
  auto s = state_;
  co_await s->change("UNSUBSCRIBE", Session::Subscription::channel, std::move(channels), false);
}

asio::awaitable<void> Subscriber::punsubscribe(std::vector<std::string> patterns) {
  auto s = state_;
  co_await s->change("PUNSUBSCRIBE", Session::Subscription::pattern, std::move(patterns), false);
}

asio::awaitable<void> Subscriber::subscribe(std::string_view channel) {
  return subscribe(std::vector<std::string>{std::string(channel)});
}

asio::awaitable<void> Subscriber::psubscribe(std::string_view pattern) {
  return psubscribe(std::vector<std::string>{std::string(pattern)});
}

asio::awaitable<void> Subscriber::unsubscribe(std::string_view channel) {
  return unsubscribe(std::vector<std::string>{std::string(channel)});
}

asio::awaitable<void> Subscriber::punsubscribe(std::string_view pattern) {
  return punsubscribe(std::vector<std::string>{std::string(pattern)});
}

asio::awaitable<Message> Subscriber::next() {
  auto s = state_;
  boost::system::error_code ec;
  Message m = co_await s->messages.async_receive(asio::redirect_error(asio::use_awaitable, ec));
  if (ec) throw ConnectionError("the Redis subscriber was closed");
  co_return m;
}

std::uint64_t Subscriber::dropped() const noexcept {
  return state_->dropped.load(std::memory_order_relaxed);
}

asio::awaitable<void> Subscriber::disconnect() {
  auto s = state_;
  if (s->closed.exchange(true)) co_return;
  RequestRef r = RequestRef::make();
  r->set_kind(detail::RequestKind::wait_stopped);
  r->set_timeout(s->link->config().disconnect_timeout + std::chrono::seconds(1));
  (void)co_await s->run(std::move(r));
  s->messages.close();
}

void Subscriber::close() noexcept {
  if (!state_) return;
  state_->closed.store(true, std::memory_order_release);
  state_->link->close();
  state_->messages.close();
}

}  // namespace tempest::redis
