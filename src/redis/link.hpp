// The Asio shell of a connection (private to src/redis): one socket (TCP or Unix) with TLS as a
// filter, one timer, and a Session it drives. Every event takes the lock, feeds the session,
// carries out its actions (open, close, write, arm the timer) and leaves the lock; the requests
// that the step completed are then delivered to their callers, outside the lock and after the
// step. No caller's code runs while the session is in the middle of matching, expiring or
// failing requests, and every use of the socket and of the TLS state happens under the lock.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "backend.hpp"
#include "tempest/redis/connection.hpp"
#include "tempest/redis/detail/commands.hpp"
#include "tempest/redis/detail/lock.hpp"
#include "tempest/redis/detail/session.hpp"

namespace tempest::redis::detail {

namespace asio = boost::asio;

struct Transport;
struct DeliveryScope;
class TlsFilter;
class LinkRegistry;

class Link;
class Tracker;
class SentinelDiscovery;

// "host:port", or the Unix socket's path: the server a config names.
std::string where_of(const Config& c);

// What follows a link's client-side caching (CLIENT TRACKING): the Tracker. Called under the
// link's lock, so it must be quick and never call into that link.
class TrackingHook {
 public:
  virtual ~TrackingHook() = default;
  // The link's tracking events, in order (on an invalidation link, with its messages). Returns
  // the client id a data link must redirect to now (0: nothing to do).
  virtual long long on_link_events(const Link& link, std::vector<Session::TrackingEvent>& events,
                                   std::vector<Session::Pushed>& messages) = 0;
  // Before each connect attempt of a data link: the client its reads are reported to (0: none).
  virtual long long redirect_for(const Link& link) = 0;
};

class Link final : public Backend, public std::enable_shared_from_this<Link> {
 public:
  // Requests queued by callers resumed within one delivery that are written together before the
  // delivery is over (measured on 2 cores: 6-8 is best at 64 callers on a plain socket).
  static constexpr std::size_t kFlushEvery = 8;

  // Throws ConfigError for an invalid config or TLS files that cannot be loaded.
  Link(asio::any_io_executor executor, Config config, Venue venue);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // Registers with the I/O context's LinkRegistry (after construction, for weak_from_this).
  void enroll() override;
  // The I/O context is shutting down: pending handlers are destroyed without being invoked (as
  // Asio does with its own operations), which breaks the cycle link -> request -> handler ->
  // coroutine frame -> Client -> link.
  void abandon() noexcept;

  void start() override;
  void submit(RequestRef r) override;
  void cancel(Request* r) noexcept override;
  // Stops at once: everything pending fails, the transport closes.
  void close() noexcept override;
  void routed_done(Request* r, bool inline_ok) noexcept override;
  // Sends READONLY after the handshake (a cluster reading from replicas). Before start().
  void set_readonly();
  // What the handshake's ROLE must say (a link to a Sentinel service's replica). Before start().
  void expect_role(Session::Role role);
  // The Sentinel discovery of a redis+sentinel:// link (null otherwise): what finds its master.
  const std::shared_ptr<SentinelDiscovery>& sentinel() const noexcept { return sentinel_; }
  // Servers to try in turn after an attempt failed or the link was lost (a subscriber on a
  // cluster, where any node hears every PUBLISH). Before start().
  void set_alternates(std::vector<Endpoint> nodes);
  bool started() const;
  // Writes what is queued now (the end of another link's delivery that queued requests here).
  void flush_queued();
  // A subscriber's link (before start()): messages go to `sink`, called after each step outside
  // the lock, on the thread that read them.
  using MessageSink = std::function<void(std::vector<Session::Pushed>&&)>;
  void set_subscriber(MessageSink sink);
  // Records a (P)(UN)SUBSCRIBE about to be submitted (see Session::subscribed).
  void note_subscriptions(Session::Subscription kind, const std::vector<std::string>& names,
                          bool on);
  std::vector<NodeStats> node_stats() const override;
  // Client-side caching. A data link (before start()): its handshakes turn tracking on,
  // redirected where `hook` says. An invalidation link (before start()): subscriber mode,
  // CLIENT ID in its handshake, subscribed to __redis__:invalidate; its messages go to `hook`.
  void set_tracking(std::weak_ptr<TrackingHook> hook, bool invalidation_link);
  // A data link: redirect its tracking to client `id` now (or at its next handshake).
  void redirect(long long id);
  // As a single-node Client's backend: its reads are tracked and reported to `sink`.
  void track(std::shared_ptr<InvalidationSink> sink) override;
  // This link is one node of a cluster: what the callers its delivery resumes send to it goes
  // out in one write at the end of the delivery (see deliver()). Before start().
  void set_cluster_node();

  const asio::any_io_executor& executor() const noexcept override { return executor_; }
  const Config& config() const noexcept override { return session_.config(); }
  Venue venue() const noexcept override { return venue_; }
  ConnectionState state() const noexcept override { return session_.state(); }
  ConnectionStats stats() const noexcept override;
  std::string last_error() const override;

 private:
  struct ReadOp;
  struct WriteOp;
  struct TimerOp;
  friend struct DeliveryScope;

  void make_tls_context();
  // Runs `f(now)` under the lock; unless it returns false (a stale event), carries out the
  // session's actions; then delivers what completed.
  template <class F>
  void step(bool inline_ok, F&& f);
  // Under the lock: feeds the session's actions to the transport and the timer; returns the
  // completed requests to deliver after the lock is released.
  Request* carry_out(TimePoint now);
  Request* track_events(TimePoint now, Request* done, std::vector<Session::Pushed>& pushed);
  // Waiting to reconnect: try now.
  void retry_now();
  void begin_open();
  void open_endpoint(std::uint64_t gen);
  void connect_next(std::uint64_t gen, std::size_t index);
  void connected(std::uint64_t gen, boost::system::error_code ec, std::size_t index);
  std::string tls_failure(const TlsFilter& tls) const;
  void start_read(std::shared_ptr<Link> self, std::shared_ptr<Transport> transport);
  void on_read(ReadOp op, boost::system::error_code ec, std::size_t n);
  // TLS: ciphertext arrived; drives the handshake or decrypts into the session.
  void on_cipher(TimePoint now, Transport& t, std::size_t n);
  void on_written(std::uint64_t gen, boost::system::error_code ec, std::size_t n);
  void on_timer(std::uint64_t gen, boost::system::error_code ec);
  // Writes the session's buffer (plain) or its ciphertext (TLS): at once when the kernel takes
  // it all, the rest by asynchronous writes under the lock. True when it failed at once (the
  // session has been told).
  bool write(TimePoint now);
  bool flush_tls(TimePoint now);
  // Sends bytes [from, end) of `bytes`: a non-blocking send, then asynchronous writes for what is
  // left. True when it failed at once; `done` tells whether everything went out now.
  bool send(TimePoint now, const std::string& bytes, std::size_t from, bool& done);
  void fail(TimePoint now, const std::string& why);
  void close_transport() noexcept;
  void arm(TimePoint wake);
  void deliver(Request* list, bool inline_ok);

  asio::any_io_executor executor_;
  Venue venue_;
  mutable Lock mu_;
  Session session_;
  std::optional<asio::ssl::context> tls_ctx_;
  asio::ip::tcp::resolver resolver_;
  std::vector<asio::generic::stream_protocol::endpoint> endpoints_;  // of the current attempt
  std::shared_ptr<Transport> transport_;  // the current attempt's (null when closed)
  asio::steady_timer timer_;
  std::size_t flush_every_ = kFlushEvery;
  MessageSink sink_;                             // set before start(), read after
  std::weak_ptr<TrackingHook> tracking_;         // set before start(), read after
  bool tracked_ = false;                         // tracking_ was set
  std::shared_ptr<Tracker> tracker_;             // track(): the Tracker of this single-node client
  std::vector<Endpoint> alternates_;             // set_alternates()
  std::shared_ptr<SentinelDiscovery> sentinel_;  // Sentinel: finds the master before a connect
  bool watching_ = false;                        // sentinel_->watch() was called (under mu_)
  std::size_t next_alternate_ = 0;
  std::size_t write_parts_ = 8;  // a large delivery's requests go out in this many writes
  bool burst_ = false;           // a flush is posted for requests submitted from outside a delivery
  TimePoint armed_ = TimePoint::max();
  std::uint64_t timer_gen_ = 0;
  std::uint64_t link_gen_ = 0;  // bumped when the transport closes: late completions are ignored
  LinkRegistry* registry_ = nullptr;  // cleared by the registry when it shuts down
  friend class LinkRegistry;
};

// Every link of one I/O context (an Asio service of its execution context): shut down with it.
class LinkRegistry : public asio::execution_context::service {
 public:
  using key_type = LinkRegistry;
  static asio::execution_context::id id;
  explicit LinkRegistry(asio::execution_context& context) : service(context) {}
  void add(Link* link, std::weak_ptr<Link> weak);
  void remove(Link* link) noexcept;

 private:
  void shutdown() override;
  std::mutex mu_;
  std::vector<std::pair<Link*, std::weak_ptr<Link>>> links_;
};

}  // namespace tempest::redis::detail
