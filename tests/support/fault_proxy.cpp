#include "support/fault_proxy.hpp"

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <optional>
#include <utility>

namespace tempest::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Mode = FaultProxy::Mode;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}  // namespace

// One accepted connection and its upstream twin. Lives on the proxy's thread only.
class FaultProxy::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(FaultProxy& proxy, tcp::socket client)
      : proxy_(proxy),
        client_(std::move(client)),
        server_(proxy.io_),
        to_server_(client_, server_, false, proxy.io_),
        to_client_(server_, client_, true, proxy.io_) {}

  void start() {
    asio::co_spawn(
        proxy_.io_, [self = shared_from_this()] { return self->connect_and_pump(); },
        asio::detached);
  }

  // The mode changed: writers look at their queue again (a sleep for delay or slow_drip may now
  // be shorter, longer or over).
  void on_mode_changed(Mode m) {
    if (m == Mode::accept_then_close) return close(false);
    for (Pump* p : {&to_server_, &to_client_}) {
      p->drip_at.reset();
      p->wake.cancel();
    }
  }

  bool marked() const { return marked_; }

  // Closes both sockets (reset: with SO_LINGER 0, so the peers get an RST). Idempotent.
  void close(bool reset) {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    for (tcp::socket* s : {&client_, &server_}) {
      if (reset && s->is_open()) s->set_option(asio::socket_base::linger(true, 0), ec);
      s->close(ec);
    }
    to_server_.wake.cancel();
    to_client_.wake.cancel();
    proxy_.forget(shared_from_this());
  }

 private:
  struct Chunk {
    std::string bytes;
    std::size_t sent = 0;  // how many of `bytes` went out already
    Clock::time_point arrived;
    bool eof = false;  // the source half-closed; forwarded as a shutdown of the destination
  };

  // One direction: a reader filling `queue` and a writer emptying it according to the mode.
  struct Pump {
    Pump(tcp::socket& f, tcp::socket& t, bool tc, asio::io_context& io)
        : from(f), to(t), to_client(tc), wake(io) {}
    tcp::socket& from;
    tcp::socket& to;
    const bool to_client;  // server->client, where slow_drip and reset_mid_reply apply
    std::deque<Chunk> queue;
    asio::steady_timer wake;                   // the writer sleeps on it; cancel() wakes it
    std::optional<Clock::time_point> drip_at;  // slow_drip: when the next byte may go
  };

  bool marked_ = false;  // the client sent the proxy's needle (see set_mode_of_marked)
  std::string seen_;     // what the client sent, until marked

  asio::awaitable<void> connect_and_pump() {
    auto [ec] = co_await server_.async_connect(
        tcp::endpoint(asio::ip::address_v4::loopback(), proxy_.upstream_port_), use_tuple);
    if (closed_) co_return;
    if (ec) {
      close(false);
      co_return;
    }
    boost::system::error_code ignored;
    client_.set_option(tcp::no_delay(true), ignored);
    server_.set_option(tcp::no_delay(true), ignored);
    auto self = shared_from_this();
    for (Pump* p : {&to_server_, &to_client_}) {
      asio::co_spawn(
          proxy_.io_, [self, p] { return self->read_loop(*p); }, asio::detached);
      asio::co_spawn(
          proxy_.io_, [self, p] { return self->write_loop(*p); }, asio::detached);
    }
  }

  // Reads whatever arrives, in every mode (black_hole holds it in the queue).
  asio::awaitable<void> read_loop(Pump& p) {
    std::array<char, 16 * 1024> buf;
    for (;;) {
      auto [ec, n] = co_await p.from.async_read_some(asio::buffer(buf), use_tuple);
      if (closed_) co_return;
      if (ec == asio::error::eof) {
        p.queue.push_back(Chunk{{}, 0, Clock::now(), true});
        p.wake.cancel();
        co_return;
      }
      if (ec) {  // reset or other error: pass it on as a reset
        close(true);
        co_return;
      }
      if (!p.to_client && !marked_) {
        const std::string needle = proxy_.needle();
        seen_.append(buf.data(), n);
        if (!needle.empty() && seen_.find(needle) != std::string::npos) marked_ = true;
        if (seen_.size() > 64 * 1024) seen_.erase(0, seen_.size() - 1024);
      }
      p.queue.push_back(Chunk{std::string(buf.data(), n), 0, Clock::now(), false});
      p.wake.cancel();
    }
  }

  // Handles the queue's front chunk according to the current mode, one step at a time; every
  // sleep can be cut short (new chunk, mode change, close), after which the loop looks again.
  asio::awaitable<void> write_loop(Pump& p) {
    for (;;) {
      if (closed_) co_return;
      if (p.queue.empty()) {
        co_await sleep_until(p, Clock::time_point::max());
        continue;
      }
      Chunk& c = p.queue.front();  // stays valid: the reader only appends to the deque
      const Setting s = proxy_.setting_for(marked_);
      Mode m = s.mode;
      if (m == Mode::delay_replies) m = p.to_client ? Mode::delay : Mode::pass;
      if (!p.to_client && (m == Mode::slow_drip || m == Mode::reset_mid_reply)) m = Mode::pass;
      if (m != Mode::slow_drip) p.drip_at.reset();

      if (m == Mode::delay && Clock::now() < c.arrived + s.param) {
        co_await sleep_until(p, c.arrived + s.param);
        continue;
      }
      if (m == Mode::black_hole) {
        // A partition: nothing moves (an EOF neither) until it heals, then TCP delivers what it
        // held, in order. (Dropping bytes and going on would make a stream with a hole in it,
        // which no TCP connection can be.)
        co_await sleep_until(p, Clock::time_point::max());
        continue;
      }
      if (c.eof) {  // in every mode: only bytes are delayed or cut
        boost::system::error_code ignored;
        p.to.shutdown(tcp::socket::shutdown_send, ignored);
        if (++half_closed_ == 2) close(false);
        co_return;
      }
      if (m == Mode::accept_then_close) {
        // set_mode is about to close this session.
        p.queue.pop_front();
        continue;
      }
      if (m == Mode::slow_drip) {
        if (!p.drip_at) p.drip_at = Clock::now() + s.param;
        if (Clock::now() < *p.drip_at) {
          co_await sleep_until(p, *p.drip_at);
          continue;
        }
        p.drip_at.reset();
        if (!co_await send(p, c, 1)) co_return;
        if (c.sent == c.bytes.size()) p.queue.pop_front();
        continue;
      }
      if (m == Mode::reset_mid_reply) {
        co_await send(p, c, (c.bytes.size() - c.sent) / 2);
        close(true);
        co_return;
      }
      // pass, or delay once the chunk is due.
      if (!co_await send(p, c, c.bytes.size() - c.sent)) co_return;
      p.queue.pop_front();
    }
  }

  // Writes the next n unsent bytes of c; false when the session is (now) closed.
  asio::awaitable<bool> send(Pump& p, Chunk& c, std::size_t n) {
    auto [ec, written] =
        co_await asio::async_write(p.to, asio::buffer(c.bytes.data() + c.sent, n), use_tuple);
    c.sent += written;
    if (ec) close(true);
    co_return !closed_;
  }

  asio::awaitable<void> sleep_until(Pump& p, Clock::time_point t) {
    p.wake.expires_at(t);
    co_await p.wake.async_wait(use_tuple);
  }

  FaultProxy& proxy_;
  tcp::socket client_;
  tcp::socket server_;
  Pump to_server_;
  Pump to_client_;
  bool closed_ = false;
  int half_closed_ = 0;  // directions that delivered their EOF
};

FaultProxy::FaultProxy(std::uint16_t upstream_port)
    : upstream_port_(upstream_port),
      acceptor_(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(
      io_, [this] { return accept_loop(); }, asio::detached);
  std::promise<void> done;
  thread_done_ = done.get_future();
  thread_ = std::thread([this, done = std::move(done)]() mutable {
    io_.run();
    done.set_value();
  });
}

FaultProxy::~FaultProxy() {
  asio::post(io_, [this] {
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    const auto sessions = sessions_;  // close() erases from sessions_
    for (const auto& s : sessions)
      s->close(false);
  });
  // Closing cancels every read, write and sleep, so run() returns at once. Should anything still
  // be pending, stop: the io_context's destructor then destroys what is left.
  if (thread_done_.wait_for(std::chrono::milliseconds(500)) != std::future_status::ready) {
    io_.stop();
  }
  thread_.join();
  sessions_.clear();
}

std::string FaultProxy::url(const std::string& path_and_query) const {
  return "redis://127.0.0.1:" + std::to_string(port_) + path_and_query;
}

void FaultProxy::set_mode(Mode m, std::chrono::milliseconds param) {
  {
    std::lock_guard lock(mu_);
    setting_ = {m, param};
  }
  run_on_proxy_thread([this, m] {
    const auto sessions = sessions_;  // on_mode_changed may close, which erases
    for (const auto& s : sessions)
      s->on_mode_changed(m);
  });
}

void FaultProxy::set_mode_of_marked(std::string needle, Mode m, std::chrono::milliseconds param) {
  {
    std::lock_guard lock(mu_);
    needle_ = std::move(needle);
    marked_setting_ = {m, param};
  }
  run_on_proxy_thread([this, m] {
    const auto sessions = sessions_;
    for (const auto& s : sessions)
      if (s->marked() || m != Mode::accept_then_close) s->on_mode_changed(m);
  });
}

FaultProxy::Setting FaultProxy::setting_for(bool marked) const {
  std::lock_guard lock(mu_);
  return marked && !needle_.empty() ? marked_setting_ : setting_;
}

std::string FaultProxy::needle() const {
  std::lock_guard lock(mu_);
  return needle_;
}

FaultProxy::Mode FaultProxy::mode() const {
  return setting().mode;
}

std::chrono::milliseconds FaultProxy::param() const {
  return setting().param;
}

FaultProxy::Setting FaultProxy::setting() const {
  std::lock_guard lock(mu_);
  return setting_;
}

void FaultProxy::drop_connections() {
  run_on_proxy_thread([this] {
    const auto sessions = sessions_;
    for (const auto& s : sessions)
      s->close(true);
  });
}

std::size_t FaultProxy::connections_accepted() const {
  return accepted_.load();
}

std::size_t FaultProxy::open_connections() const {
  return open_.load();
}

asio::awaitable<void> FaultProxy::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
    if (stopping_ || ec == asio::error::operation_aborted) co_return;
    if (ec) {  // out of descriptors or such: try again a little later
      asio::steady_timer pause(io_, std::chrono::milliseconds(10));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    ++accepted_;
    if (setting().mode == Mode::accept_then_close) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    auto session = std::make_shared<Session>(*this, std::move(socket));
    sessions_.insert(session);
    ++open_;
    session->start();
  }
}

void FaultProxy::forget(const std::shared_ptr<Session>& session) {
  if (sessions_.erase(session) > 0) --open_;
}

void FaultProxy::run_on_proxy_thread(const std::function<void()>& fn) {
  if (io_.get_executor().running_in_this_thread()) return fn();
  std::promise<void> done;
  auto ran = done.get_future();
  asio::post(io_, [&] {
    fn();
    done.set_value();
  });
  ran.wait();
}

}  // namespace tempest::test
