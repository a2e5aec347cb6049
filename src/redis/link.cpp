#include "link.hpp"

#include "sentinel.hpp"
#include "tracking.hpp"

#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

#include "tempest/log.hpp"
#include "tempest/redis/detail/async.hpp"
#include "tempest/redis/error.hpp"
#include "tls.hpp"

namespace tempest::redis {

std::string_view to_string(ConnectionState s) noexcept {
  switch (s) {
    case ConnectionState::idle:
      return "idle";
    case ConnectionState::connecting:
      return "connecting";
    case ConnectionState::connected:
      return "connected";
    case ConnectionState::disconnected:
      return "disconnected";
    case ConnectionState::stopped:
      return "stopped";
  }
  return "unknown";
}

}  // namespace tempest::redis

namespace tempest::redis::detail {

using boost::system::error_code;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using generic_endpoint = asio::generic::stream_protocol::endpoint;

// The transport of one link attempt: a socket (TCP or Unix) and, when TLS is on, the filter
// that the bytes pass through. Shared with the operations in flight on it, so that a closed
// transport outlives the completions that Asio still has to run. Used only under the lock.
struct Transport {
  using Socket = asio::basic_stream_socket<asio::generic::stream_protocol, asio::any_io_executor>;
  explicit Transport(const asio::any_io_executor& ex) : socket(ex) {}
  Socket socket;
  std::unique_ptr<TlsFilter> tls;
  std::vector<char> cipher_in;  // TLS: ciphertext is read here, then decrypted into the session
  std::string cipher_out;       // TLS: ciphertext being sent
  bool session_write = false;   // TLS: cipher_out carries the session's write (report when sent)
  // The write in progress: bytes [write_from, size) of *writing are still to go.
  const std::string* writing = nullptr;
  std::size_t write_from = 0;
};

namespace {

// The delivery running on this thread (innermost), if any; see Link::deliver.
thread_local DeliveryScope* t_scope = nullptr;

std::string describe(const error_code& ec) {
  if (ec == asio::error::eof) return "the server closed the connection";
  if (ec == asio::error::connection_reset) return "the connection was reset";
  return ec.message();
}

Config validated(Config c) {
  c.validate();
  return c;
}

}  // namespace

std::string where_of(const Config& c) {
  if (c.transport == Config::Transport::unix_socket) return c.path;
  return c.host + ":" + std::to_string(c.port);
}

// A delivery of completed requests on this thread. Callers it resumes submit their next
// requests into the session at once, but the write waits (see Link::submit) until kFlushEvery
// are queued or the delivery ends, so the server works on some while the others are still being
// resumed, and a request never waits for a caller that blocks.
// Writes what `l` has queued, from a fresh handler (out of line: g++ 12 warns wrongly about
// any_io_executor when this is inlined into a destructor).
void post_flush(std::shared_ptr<Link> l);

struct DeliveryScope {
  Link* link;
  DeliveryScope* outer;
  Request* rest;          // completed requests not yet delivered
  std::size_t flush_at;   // queued requests that go out at once
  bool deferred = false;  // a resumed caller's request waits for the end of the delivery
  bool closed = false;    // left normally (not closed: a handler threw)
  // Other links that resumed callers sent requests to (the nodes of a cluster): written when
  // this delivery ends, each in one write, instead of one write for the first request of each.
  // Constructed as they are added (the first n_others): a delivery that resumes no caller of
  // another link, the usual case, constructs and destroys none.
  static constexpr std::size_t kOthers = 8;
  union Others {
    Others() noexcept {}
    ~Others() {}
    std::shared_ptr<Link> at[kOthers];
  } others;
  std::size_t n_others = 0;

  DeliveryScope(Link* l, Request* list, std::size_t flush)
      : link(l), outer(t_scope), rest(list), flush_at(flush) {
    t_scope = this;
  }
  DeliveryScope(const DeliveryScope&) = delete;
  DeliveryScope& operator=(const DeliveryScope&) = delete;
  // Whether `other`'s write can wait for the end of this delivery (false when too many links).
  bool defer(Link& other) {
    for (std::size_t i = 0; i < n_others; ++i)
      if (others.at[i].get() == &other) return true;
    if (n_others == kOthers) return false;
    ::new (static_cast<void*>(&others.at[n_others]))
        std::shared_ptr<Link>(other.shared_from_this());
    ++n_others;
    return true;
  }
  void flush_others() {
    for (std::size_t i = 0; i < n_others; ++i) {
      std::shared_ptr<Link> l = std::move(others.at[i]);
      l->flush_queued();
    }
    destroy_others();
  }
  void destroy_others() noexcept {
    for (std::size_t i = 0; i < n_others; ++i)
      others.at[i].~shared_ptr();
    n_others = 0;
  }
  void close() {
    closed = true;
    t_scope = outer;
  }
  ~DeliveryScope() {
    if (!closed) abandoned();
    destroy_others();
  }
  // Left by an exception (a caller's handler threw).
  void abandoned() noexcept {
    t_scope = outer;
    // A caller's handler threw (it leaves through io_context::run()): the callers after it, and
    // the writes the resumed ones wait for, go on in a fresh handler.
    try {
      asio::post(link->executor(), [self = link->shared_from_this(), rest = rest] {
        self->deliver(rest, true);
        self->step(true, [](TimePoint) { return true; });
      });
      for (std::size_t i = 0; i < n_others; ++i)
        post_flush(std::move(others.at[i]));
    } catch (...) {
    }
  }
};

struct Link::ReadOp {
  std::shared_ptr<Link> self;
  std::shared_ptr<Transport> transport;
  std::uint64_t gen;
  void operator()(error_code ec, std::size_t n) {
    Link* link = self.get();
    link->on_read(std::move(*this), ec, n);
  }
};

struct Link::WriteOp {
  std::shared_ptr<Link> self;
  std::shared_ptr<Transport> transport;
  std::uint64_t gen;
  void operator()(error_code ec, std::size_t n) { self->on_written(gen, ec, n); }
};

struct Link::TimerOp {
  std::shared_ptr<Link> self;
  std::uint64_t gen;
  void operator()(error_code ec) { self->on_timer(gen, ec); }
};

void Lock::contended() noexcept {
  // The sections are short: spin a little first.
  for (int i = 0; i < 64; ++i) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    int expected = 0;
    if (state_.load(std::memory_order_relaxed) == 0 &&
        state_.compare_exchange_strong(expected, 1, std::memory_order_acquire))
      return;
  }
  // Then sleep on the futex, marking that someone waits (state 2).
  int c = state_.exchange(2, std::memory_order_acquire);
  while (c != 0) {
    state_.wait(2, std::memory_order_relaxed);
    c = state_.exchange(2, std::memory_order_acquire);
  }
}

void submit(Backend& backend, RequestRef r) {
  backend.submit(std::move(r));
}

void cancel(const std::weak_ptr<Backend>& backend, Request* r) noexcept {
  if (auto b = backend.lock()) b->cancel(r);
}

Link::Link(asio::any_io_executor executor, Config config, Venue venue)
    : executor_(std::move(executor)),
      venue_(venue),
      session_(validated(std::move(config)), tempest::logger("tempest.redis")),
      resolver_(executor_),
      timer_(executor_) {
  if (session_.config().sentinel.enabled)
    sentinel_ = std::make_shared<SentinelDiscovery>(executor_, session_.config());
  // A dedicated connection carries state of its caller's (WATCH, a transaction, a blocking
  // command): after a lost link it ends instead of quietly reconnecting without that state.
  if (venue_ == Venue::dedicated) session_.set_reconnect(false);
  if (session_.config().tls.enabled) {
    make_tls_context();
    // Every TLS write is a record, and OpenSSL 3 spends some 8,000 instructions on one: bigger
    // batches (measured: 16 beats 8, 32 and 64 at 64 callers).
    flush_every_ = 2 * kFlushEvery;
  }
}

Link::~Link() {
  if (sentinel_) sentinel_->stop();
  if (LinkRegistry* registry = registry_) registry->remove(this);
}

void Link::set_cluster_node() {
  // A node of a cluster gets a third or so of what its deliveries' callers send next (the rest
  // goes to the other nodes, written when the delivery ends): its share goes in one write too
  // (measured, pinned, 3 masters: 256 callers 1.6-1.8M GETs/s in 8 writes, 1.9-2.0M in one;
  // 64 callers 0.81-0.93M and 0.87-1.05M).
  std::lock_guard lock(mu_);
  write_parts_ = 1;
}

void Link::set_readonly() {
  std::lock_guard lock(mu_);
  session_.set_readonly(true);
}

void Link::expect_role(Session::Role role) {
  std::lock_guard lock(mu_);
  session_.expect_role(role);
}

void Link::routed_done(Request* r, bool inline_ok) noexcept {
  // A link routes nothing itself; a request handed here is simply delivered.
  if (r->has_handler()) {
    r->deliver(executor_, inline_ok);
  } else {
    r->release();
  }
}

void Link::enroll() {
  registry_ = &asio::use_service<LinkRegistry>(asio::query(executor_, asio::execution::context));
  registry_->add(this, weak_from_this());
}

void Link::abandon() noexcept {
  std::vector<Request*> pending;
  {
    std::lock_guard lock(mu_);
    try {
      session_.abandon(pending);
    } catch (...) {
    }
    close_transport();
    ++timer_gen_;
    armed_ = TimePoint::max();
  }
  // Outside the lock: destroying a handler may destroy a coroutine frame, and with it a Client.
  for (Request* r : pending)
    r->release();
}

asio::execution_context::id LinkRegistry::id;

void LinkRegistry::add(Link* link, std::weak_ptr<Link> weak) {
  std::lock_guard lock(mu_);
  links_.emplace_back(link, std::move(weak));
}

void LinkRegistry::remove(Link* link) noexcept {
  std::lock_guard lock(mu_);
  for (auto it = links_.begin(); it != links_.end(); ++it)
    if (it->first == link) {
      links_.erase(it);
      return;
    }
}

void LinkRegistry::shutdown() {
  std::vector<std::shared_ptr<Link>> live;
  {
    std::lock_guard lock(mu_);
    for (auto& [link, weak] : links_) {
      link->registry_ = nullptr;  // the registry goes with the context
      if (auto l = weak.lock()) live.push_back(std::move(l));
    }
    links_.clear();
  }
  for (auto& l : live)
    l->abandon();
}

void Link::make_tls_context() {
  const TlsOptions& t = session_.config().tls;
  tls_ctx_.emplace(ssl::context::tls_client);
  tls_ctx_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  error_code ec;
  const auto check = [&](const char* what, const std::string& file) {
    if (ec)
      throw ConfigError(std::string("cannot load TLS ") + what + " '" + file +
                        "': " + ec.message());
  };
  if (t.verify_peer) {
    tls_ctx_->set_verify_mode(ssl::verify_peer, ec);
    if (!t.ca_file.empty()) {
      tls_ctx_->load_verify_file(t.ca_file, ec);
      check("CA file", t.ca_file);
    } else {
      tls_ctx_->set_default_verify_paths(ec);
    }
  } else {
    tls_ctx_->set_verify_mode(ssl::verify_none, ec);
  }
  if (!t.cert_file.empty()) {
    tls_ctx_->use_certificate_chain_file(t.cert_file, ec);
    check("certificate", t.cert_file);
  }
  if (!t.key_file.empty()) {
    tls_ctx_->use_private_key_file(t.key_file, ssl::context::pem, ec);
    check("private key", t.key_file);
  }
}

template <class F>
void Link::step(bool inline_ok, F&& f) {
  Request* done = nullptr;
  // Only a subscriber's or a tracked link's step has messages: the others make no vector.
  std::optional<std::vector<Session::Pushed>> pushed;
  {
    std::lock_guard lock(mu_);
    const TimePoint now = Clock::now();
    if (!f(now)) return;
    done = carry_out(now);
    if (session_.has_messages() || tracked_) {
      pushed.emplace();
      if (session_.has_messages()) session_.take_messages(*pushed);
      if (tracked_) done = track_events(now, done, *pushed);
    }
  }
  deliver(done, inline_ok);
  if (pushed && !pushed->empty() && sink_) sink_(std::move(*pushed));
}

void Link::set_subscriber(MessageSink sink) {
  std::lock_guard lock(mu_);
  sink_ = std::move(sink);
  session_.set_subscriber(true);
}

// Under the lock: the step's tracking events (and an invalidation link's messages) go to the
// hook; a redirect it asks for is written at once. Returns the list of completed requests.
Request* Link::track_events(TimePoint now, Request* done, std::vector<Session::Pushed>& pushed) {
  while (session_.has_tracking_events() || !pushed.empty()) {
    std::vector<Session::TrackingEvent> events;
    session_.take_tracking_events(events);
    auto hook = tracking_.lock();
    const long long id = hook ? hook->on_link_events(*this, events, pushed) : 0;
    pushed.clear();
    if (id == 0) break;
    session_.redirect(now, id);
    if (Request* more = carry_out(now)) {  // writes it (a failed write is a lost event)
      Request* tail = more;
      while (tail->done_next != nullptr)
        tail = tail->done_next;
      tail->done_next = done;
      done = more;
    }
  }
  return done;
}

void Link::set_tracking(std::weak_ptr<TrackingHook> hook, bool invalidation_link) {
  std::lock_guard lock(mu_);
  tracking_ = std::move(hook);
  tracked_ = true;
  if (invalidation_link) {
    session_.set_subscriber(true);
    session_.set_identify(true);
    session_.subscribed(Session::Subscription::channel, {"__redis__:invalidate"}, true);
  } else {
    session_.set_tracking(true);
  }
}

void Link::redirect(long long id) {
  step(false, [&](TimePoint now) {
    session_.redirect(now, id);
    return true;
  });
}

void Link::track(std::shared_ptr<InvalidationSink> sink) {
  tracker_ = std::make_shared<Tracker>(executor_, config(), std::move(sink));
  tracker_->attach(shared_from_this());
}

void Link::note_subscriptions(Session::Subscription kind, const std::vector<std::string>& names,
                              bool on) {
  std::lock_guard lock(mu_);
  session_.subscribed(kind, names, on);
}

// ---- events -----------------------------------------------------------------------------------

void Link::start() {
  step(false, [&](TimePoint now) {
    session_.start(now);
    return true;
  });
}

void post_flush(std::shared_ptr<Link> l) {
  const asio::any_io_executor ex = l->executor();
  asio::post(ex, [l = std::move(l)] { l->flush_queued(); });
}

void Link::flush_queued() {
  step(true, [](TimePoint) { return true; });
}

void Link::submit(RequestRef ref) {
  Request* r = ref.detach();
  Request* done = nullptr;
  {
    std::lock_guard lock(mu_);
    const TimePoint now = Clock::now();
    if (r->kind() == RequestKind::wait_stopped) session_.stop(now);
    session_.submit(now, r);
    // A caller resumed by this link's delivery on this thread, with more callers still to be
    // resumed: the request is in the session (its deadline runs) and is written with theirs.
    // The last one resumed writes what is queued.
    DeliveryScope* scope = t_scope;
    if (scope != nullptr && scope->link == this) {
      if (scope->rest != nullptr && session_.queued() < scope->flush_at &&
          !session_.has_completed()) {
        scope->deferred = true;
        return;
      }
      scope->deferred = false;
    } else if (scope != nullptr && scope->defer(*this)) {
      // Submitted by a caller that another link is resuming (a cluster's node answering): written
      // when that delivery ends, together with the other callers' requests to this link.
      if (session_.queued() < kFlushEvery * 8 && !session_.has_completed()) return;
    } else if (burst_) {
      // Submitted from elsewhere (an HTTP handler, a timer) while a burst is open: written by
      // the flush posted when the burst began, together with the rest of the burst.
      if (session_.queued() < kFlushEvery * 8 && !session_.has_completed()) return;
    } else {
      // The first request of a burst goes out at once; the ones that follow before the I/O
      // context gets back to its queue are written together (one write, not one each).
      burst_ = true;
      asio::post(executor_, [self = shared_from_this()] {
        self->step(true, [&](TimePoint) {
          self->burst_ = false;
          return true;
        });
      });
    }
    done = carry_out(now);
  }
  deliver(done, false);  // inside the caller's initiating function: never inline
}

void Link::cancel(Request* r) noexcept {
  r->cancel_requested.store(true, std::memory_order_relaxed);  // if not in the session yet
  step(false, [&](TimePoint now) {
    session_.cancel(now, r,
                    std::make_exception_ptr(
                        TimeoutError("Redis " + std::string(r->name()) + " was cancelled")));
    return true;
  });
}

void Link::close() noexcept {
  step(false, [&](TimePoint now) {
    session_.abort(now);
    return true;
  });
  if (tracker_) tracker_->close();
}

void Link::set_alternates(std::vector<Endpoint> nodes) {
  std::lock_guard lock(mu_);
  alternates_ = std::move(nodes);
}

bool Link::started() const {
  std::lock_guard lock(mu_);
  return session_.phase() != Session::Phase::idle;
}

void Link::retry_now() {
  step(false, [&](TimePoint now) {
    session_.retry_now(now);
    return true;
  });
}

void Link::begin_open() {
  const std::uint64_t gen = link_gen_;
  if (sentinel_) {
    // Sentinel: the master first (again on every attempt: a failover moves it), then the
    // connection to it as to any node; its handshake checks ROLE.
    sentinel_->find_master(
        session_.failed_attempts() > 0,
        [self = shared_from_this(), gen](std::optional<Endpoint> master, std::string error) {
          self->step(true, [&](TimePoint now) {
            if (gen != self->link_gen_) return false;
            if (!master) {
              self->session_.on_open_failed(now, error);
              return true;
            }
            self->session_.set_endpoint(master->host, master->port);
            self->open_endpoint(gen);
            if (!self->watching_) {
              // A switch the sentinels announce cuts the reconnect backoff short.
              self->watching_ = true;
              self->sentinel_->watch([weak = std::weak_ptr<Link>(self)] {
                if (auto link = weak.lock()) link->retry_now();
              });
            }
            return true;
          });
        });
    return;
  }
  open_endpoint(gen);
}

void Link::open_endpoint(std::uint64_t gen) {
  if (!alternates_.empty() && session_.failed_attempts() > 0) {
    const Endpoint& e = alternates_[next_alternate_++ % alternates_.size()];
    session_.set_endpoint(e.host, e.port);
  }
  if (tracked_) {
    auto hook = tracking_.lock();
    session_.set_redirect(hook ? hook->redirect_for(*this) : 0);
  }
  transport_ = std::make_shared<Transport>(executor_);
  endpoints_.clear();
  const Config& c = session_.config();
  if (c.transport == Config::Transport::unix_socket) {
    endpoints_.emplace_back(asio::local::stream_protocol::endpoint(c.path));
    connect_next(gen, 0);
    return;
  }
  resolver_.async_resolve(
      c.host, std::to_string(c.port),
      [self = shared_from_this(), gen](error_code ec, const tcp::resolver::results_type& found) {
        self->step(true, [&](TimePoint now) {
          if (gen != self->link_gen_) return false;
          if (ec) {
            self->session_.on_open_failed(
                now, "cannot resolve " + self->config().host + ": " + describe(ec));
            return true;
          }
          for (const auto& entry : found)
            self->endpoints_.emplace_back(entry.endpoint());
          self->connect_next(gen, 0);
          return true;
        });
      });
}

// Tries endpoints_[index] (under the lock; the next one if it fails).
void Link::connect_next(std::uint64_t gen, std::size_t index) {
  error_code ignored;
  transport_->socket.close(ignored);
  transport_->socket.async_connect(
      endpoints_[index], [self = shared_from_this(), gen, index, t = transport_](error_code ec) {
        self->connected(gen, ec, index);
      });
}

void Link::connected(std::uint64_t gen, error_code ec, std::size_t index) {
  step(true, [&](TimePoint now) {
    if (gen != link_gen_) return false;
    if (ec) {
      if (index + 1 < endpoints_.size()) {
        connect_next(gen, index + 1);
      } else {
        session_.on_open_failed(
            now, "cannot connect to " + where_of(session_.config()) + ": " + describe(ec));
      }
      return true;
    }
    Transport& t = *transport_;
    error_code ignored;
    if (session_.config().transport == Config::Transport::tcp)
      t.socket.set_option(tcp::no_delay(true), ignored);
    t.socket.non_blocking(true, ignored);
    if (tls_ctx_) {
      const Config& c = session_.config();
      t.tls = std::make_unique<TlsFilter>(tls_ctx_->native_handle(),
                                          c.tls.server_name.empty() ? c.host : c.tls.server_name,
                                          c.tls.verify_peer && c.tls.verify_host);
      t.cipher_in.resize(64 * 1024);
      (void)t.tls->handshake();  // the ClientHello
      if (flush_tls(now)) return true;
    } else {
      session_.on_open(now);
    }
    start_read(shared_from_this(), transport_);
    return true;
  });
}

std::string Link::tls_failure(const TlsFilter& tls) const {
  const Config& c = session_.config();
  std::string msg = "TLS handshake with " + where_of(c) + " failed: " +
                    (tls.failed() ? tls.error() : std::string("the server closed the connection"));
  const long v = tls.verify_result();
  if (v == X509_V_OK) return msg;
  msg += " (";
  msg += X509_verify_cert_error_string(v);
  msg += ")";
  if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
    const std::string& name = c.tls.server_name.empty() ? c.host : c.tls.server_name;
    msg += ": the server's certificate does not name '" + name +
           "' (connect by a name the certificate lists, or set tls_server_name)";
  }
  return msg;
}

void Link::start_read(std::shared_ptr<Link> self, std::shared_ptr<Transport> transport) {
  Transport& t = *transport;
  ReadOp op{std::move(self), std::move(transport), link_gen_};
  if (t.tls) {
    t.socket.async_read_some(asio::buffer(t.cipher_in), std::move(op));
  } else {
    auto [data, size] = session_.read_space();
    t.socket.async_read_some(asio::buffer(data, size), std::move(op));
  }
}

void Link::on_read(ReadOp op, error_code ec, std::size_t n) {
  // The next read takes op.self; this one keeps the link alive through the delivery below
  // (another thread may drop the last other reference meanwhile).
  const std::shared_ptr<Link> self = op.self;
  step(true, [&](TimePoint now) {
    if (op.gen != link_gen_) return false;
    if (ec) {
      if (op.transport->tls && !op.transport->tls->established()) {
        session_.on_open_failed(now, tls_failure(*op.transport->tls));
      } else {
        session_.on_link_error(now, describe(ec));
      }
    } else if (op.transport->tls) {
      on_cipher(now, *op.transport, n);
    } else {
      session_.on_read(now, n);
    }
    if (op.gen == link_gen_ &&
        (session_.transport_open() || session_.phase() == Session::Phase::opening))
      start_read(std::move(op.self), std::move(op.transport));
    return true;
  });
}

void Link::on_cipher(TimePoint now, Transport& t, std::size_t n) {
  TlsFilter& tls = *t.tls;
  tls.feed(t.cipher_in.data(), n);
  if (!tls.established()) {
    switch (tls.handshake()) {
      case TlsFilter::Status::failed:
        (void)flush_tls(now);  // the alert, if any
        session_.on_open_failed(now, tls_failure(tls));
        return;
      case TlsFilter::Status::want_input:
        (void)flush_tls(now);
        return;
      case TlsFilter::Status::done:
        if (flush_tls(now)) return;
        session_.on_open(now);
        break;
    }
  }
  // Decrypt what arrived into the session's buffer, as much as there is.
  while (session_.transport_open()) {
    auto [data, size] = session_.read_space();
    const std::size_t got = tls.read(data, size);
    if (got == 0) break;
    session_.on_read(now, got);
  }
  if (!session_.transport_open()) return;
  if (tls.failed()) return session_.on_link_error(now, "TLS error: " + tls.error());
  if (tls.closed()) return session_.on_link_error(now, "the server closed the TLS session");
  (void)flush_tls(now);  // post-handshake messages, if any
}

void Link::on_written(std::uint64_t gen, error_code ec, std::size_t n) {
  step(true, [&](TimePoint now) {
    if (gen != link_gen_) return false;
    if (ec) {
      fail(now, describe(ec));
      return true;
    }
    Transport& t = *transport_;
    t.write_from += n;
    if (t.write_from < t.writing->size()) {
      t.socket.async_write_some(
          asio::buffer(t.writing->data() + t.write_from, t.writing->size() - t.write_from),
          WriteOp{shared_from_this(), transport_, link_gen_});
      return true;
    }
    t.writing = nullptr;
    if (t.tls) {
      (void)flush_tls(now);  // what was produced meanwhile; reports the session's write when done
    } else {
      session_.on_written(now);
    }
    return true;
  });
}

void Link::on_timer(std::uint64_t gen, error_code ec) {
  step(true, [&](TimePoint now) {
    if (ec || gen != timer_gen_) return false;  // re-armed or cancelled meanwhile
    armed_ = TimePoint::max();
    session_.on_timer(now);
    return true;
  });
}

// ---- actions ----------------------------------------------------------------------------------

Request* Link::carry_out(TimePoint now) {
  Request* head = nullptr;
  Request* last = nullptr;
  for (;;) {
    Session::Actions a = session_.take_actions(now);
    if (a.done != nullptr) {
      if (last != nullptr) {
        last->done_next = a.done;
      } else {
        head = a.done;
      }
      for (last = a.done; last->done_next != nullptr; last = last->done_next) {
      }
    }
    if (a.close) close_transport();
    if (a.open) begin_open();
    if (a.write && write(now)) continue;  // the write failed at once: take the close action
    if (session_.phase() == Session::Phase::stopped) {
      if (sentinel_) sentinel_->stop();  // nothing more to reconnect: the watch ends too
      if (armed_ != TimePoint::max()) {
        armed_ = TimePoint::max();
        ++timer_gen_;
        timer_.cancel();
      }
    } else {
      arm(a.wake);
    }
    return head;
  }
}

bool Link::write(TimePoint now) {
  Transport& t = *transport_;
  const std::string& out = session_.write_buffer();
  if (t.tls) {
    // Encrypted at once; the ciphertext goes out like a plain write.
    if (!t.tls->write(out.data(), out.size())) {
      fail(now, "TLS error: " + t.tls->error());
      return true;
    }
    t.session_write = true;
    return flush_tls(now);
  }
  bool done = false;
  if (send(now, out, 0, done)) return true;
  if (done) session_.on_written(now);
  return false;
}

bool Link::flush_tls(TimePoint now) {
  Transport& t = *transport_;
  if (t.writing != nullptr) return false;  // goes on when the write in flight completes
  t.cipher_out.clear();
  t.tls->take_output(t.cipher_out);
  bool done = true;
  if (!t.cipher_out.empty() && send(now, t.cipher_out, 0, done)) return true;
  if (done && t.session_write) {
    t.session_write = false;
    session_.on_written(now);
  }
  return false;
}

bool Link::send(TimePoint now, const std::string& bytes, std::size_t from, bool& done) {
  Transport& t = *transport_;
  // A non-blocking send first: when the kernel takes everything (the usual case) the write is
  // over at once, and another can follow within the same batch of replies.
  error_code ec;
  const std::size_t sent =
      t.socket.write_some(asio::buffer(bytes.data() + from, bytes.size() - from), ec);
  if (ec && (ec == asio::error::would_block || ec == asio::error::try_again)) ec = {};
  if (ec) {
    fail(now, describe(ec));
    return true;
  }
  from += sent;
  done = from == bytes.size();
  if (!done) {
    // The rest by asynchronous writes, each started under the lock (on_written).
    t.writing = &bytes;
    t.write_from = from;
    t.socket.async_write_some(asio::buffer(bytes.data() + from, bytes.size() - from),
                              WriteOp{shared_from_this(), transport_, link_gen_});
  }
  return false;
}

void Link::fail(TimePoint now, const std::string& why) {
  // During the TLS handshake the link is not open yet: the attempt failed.
  if (session_.phase() == Session::Phase::opening) {
    session_.on_open_failed(
        now, "TLS handshake with " + where_of(session_.config()) + " failed: " + why);
  } else {
    session_.on_link_error(now, why);
  }
}

void Link::close_transport() noexcept {
  ++link_gen_;
  resolver_.cancel();
  if (transport_) {
    error_code ignored;
    transport_->socket.close(ignored);
    transport_.reset();  // operations still in flight hold it until they complete
  }
}

void Link::arm(TimePoint wake) {
  if (wake >= armed_) return;
  armed_ = wake;
  timer_.expires_at(wake);
  timer_.async_wait(TimerOp{shared_from_this(), ++timer_gen_});
}

// ---- delivery ---------------------------------------------------------------------------------

void Link::deliver(Request* list, bool inline_ok) {
  if (list == nullptr) return;
  // Requests of the callers resumed here go out flush_every_ at a time, or in write_parts_ (8)
  // writes for a large batch (measured, alternating pinned runs at 256 callers: a batch in 8 writes
  // made 1.8-2.1M GETs/s, 16 writes 1.2-1.5M, 4 writes 2.3-2.8M but only 0.7-1.2M at 64 callers).
  std::size_t count = 0;
  for (const Request* r = list; r != nullptr; r = r->done_next)
    ++count;
  DeliveryScope scope(this, list, std::max(flush_every_, count / write_parts_));
  while (scope.rest != nullptr) {
    Request* r = scope.rest;
    scope.rest = r->done_next;
    r->done_next = nullptr;
    if (r->route.router != nullptr) {
      // A cluster's request: it decides whether to deliver it or send it elsewhere.
      Backend* router = r->route.router.get();
      router->routed_done(r, inline_ok);
    } else if (r->has_handler()) {
      r->deliver(executor_, inline_ok);
    } else {
      r->release();
    }
  }
  scope.close();
  // What the resumed callers queued goes out now, here and on the other links they used.
  if (scope.deferred) step(true, [](TimePoint) { return true; });
  scope.flush_others();
}

// ---- state ------------------------------------------------------------------------------------

ConnectionStats Link::stats() const noexcept {
  ConnectionStats s;
  session_.counters().fill(s);
  return s;
}

std::vector<NodeStats> Link::node_stats() const {
  const Config& c = session_.config();
  NodeStats n;
  n.address = c.transport == Config::Transport::unix_socket ? c.path
                                                            : c.host + ":" + std::to_string(c.port);
  n.connected = state() == ConnectionState::connected;
  n.stats = stats();
  return {std::move(n)};
}

std::string Link::last_error() const {
  std::lock_guard lock(mu_);
  return session_.last_error();
}

}  // namespace tempest::redis::detail
