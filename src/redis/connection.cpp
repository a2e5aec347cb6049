#include "tempest/redis/connection.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <mutex>
#include <random>
#include <variant>

#include "tempest/log.hpp"
#include "tempest/redis/detail/multiplexer.hpp"
#include "tempest/redis/detail/reader.hpp"
#include "tempest/redis/error.hpp"

namespace tempest::redis {

namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using unix_stream = asio::local::stream_protocol;
using asio::use_awaitable;
using boost::system::error_code;
using detail::Clock;
using namespace asio::experimental::awaitable_operators;

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

namespace {

struct Counters {
  std::atomic<std::uint64_t> commands{0}, errors{0}, timeouts{0}, reconnects{0}, connects{0},
      writes{0};
  std::array<std::atomic<std::uint64_t>, ConnectionStats::kLatencyBounds.size() + 1> latency{};
  std::atomic<std::uint64_t> latency_nanos{0};
  // When the replies being matched now were read (set by the reader on the strand), so a
  // completion costs no clock read of its own.
  detail::Clock::time_point batch_time{};

  // Every counter has one writer, the connection's strand: a relaxed load and store (no locked
  // read-modify-write) keeps readers on other threads race-free at no cost on the hot path.
  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }

  void record_latency(detail::Clock::duration took) {
    const double seconds = std::chrono::duration<double>(took).count();
    std::size_t i = 0;
    while (i < ConnectionStats::kLatencyBounds.size() &&
           seconds > ConnectionStats::kLatencyBounds[i])
      ++i;
    bump(latency[i]);
    bump(latency_nanos, static_cast<std::uint64_t>(
                            std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()));
  }
};

// A request whose completion resumes the awaiting caller on the caller's own executor. Templated
// on the concrete handler (use_awaitable's), so completing it costs no type-erased allocation, and
// on what the caller receives: the Reply itself, or a T made from it by `convert` right here.
template <class Handler, class T = Reply>
class AsyncRequest final : public detail::Request {
 public:
  using Convert = T (*)(Reply&&);

  template <class... A>
  AsyncRequest(Handler h, Counters* counters, Convert convert, A&&... a)
      : Request(std::forward<A>(a)...),
        handler_(std::move(h)),
        counters_(counters),
        convert_(convert) {}

  Handler& handler() noexcept { return handler_; }

 private:
  void on_complete(std::exception_ptr error, Reply reply) override {
    if (!error) {
      Counters::bump(counters_->commands);
      counters_->record_latency(counters_->batch_time - created());
    }
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    // What `convert` throws becomes the caller's error.
    const auto converting = [&](auto&& step) {
      if (error) return;
      try {
        step();
      } catch (...) {
        error = std::current_exception();
      }
    };
    if constexpr (std::is_void_v<T>) {
      converting([&] { convert_(std::move(reply)); });
      deliver(std::move(error));
    } else if constexpr (std::is_same_v<T, Reply>) {
      if (convert_ != nullptr) converting([&] { reply = convert_(std::move(reply)); });
      deliver(std::move(error), std::move(reply));
    } else {
      T value{};
      converting([&] { value = convert_(std::move(reply)); });
      deliver(std::move(error), std::move(value));
    }
  }

  // When the caller's io_context runs on this thread, resume the caller right here (what
  // asio::dispatch does, without its type-erased allocation); otherwise post to its executor.
  template <class... V>
  void deliver(std::exception_ptr error, V&&... value) {
    auto ex = asio::get_associated_executor(handler_);
    using IoExecutor = asio::io_context::executor_type;
    if (const auto* io = ex.template target<IoExecutor>(); io && io->running_in_this_thread()) {
      std::move(handler_)(std::move(error), std::forward<V>(value)...);
      return;
    }
    asio::dispatch(ex, [h = std::move(handler_), e = std::move(error),
                        ... v = std::forward<V>(value)]() mutable {
      std::move(h)(std::move(e), std::move(v)...);
    });
  }

  Handler handler_;
  Counters* counters_;  // owned by the connection, which outlives its requests
  Convert convert_;
};

// A request made by the connection itself (health PING); its reply is ignored.
class InternalRequest final : public detail::Request {
 public:
  using Request::Request;

 private:
  void on_complete(std::exception_ptr, Reply) override {}
};

// Notifies coroutines waiting for a condition (each waits on its own timer, cancelled here).
struct Waiters {
  std::vector<asio::steady_timer*> timers;
  void notify_all() {
    for (auto* t : timers)
      t->cancel();
  }
};

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown error";
  }
}

std::string scrub(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos))
    text.replace(pos, secret.size(), "***");
  return text;
}

}  // namespace

class Connection::Impl : public std::enable_shared_from_this<Impl> {
 public:
  // Requests queued by callers resumed within one batch of replies that are written together
  // before the batch is over (measured on 2 cores: 6-8 is best at 64 callers; see BENCHMARKS.md).
  static constexpr std::size_t kFlushEvery = 8;

  Impl(asio::any_io_executor ex, Config cfg)
      : cfg_(std::move(cfg)),
        strand_(make_serial(ex)),
        deadline_timer_(strand_, Clock::time_point::max()),
        health_timer_(strand_),
        backoff_timer_(strand_),
        connect_timer_(strand_),
        resolver_(strand_),
        read_buf_(64 * 1024),
        log_(tempest::logger("tempest.redis")),
        counters_(std::make_shared<Counters>()),
        rng_(std::random_device{}()) {
    if (cfg_.tls.enabled) make_tls_context();
  }

  // ---- called from any thread -----------------------------------------------------------------
  void start() {
    if (started_.exchange(true)) return;
    auto self = shared_from_this();
    asio::co_spawn(strand_, self->run(), asio::detached);
    asio::co_spawn(strand_, self->deadline_loop(), asio::detached);
  }

  template <class Req>
  void submit(std::shared_ptr<Req> req) {
    auto slot = asio::get_associated_cancellation_slot(req->handler());
    if (slot.is_connected()) {
      slot.assign([w = std::weak_ptr<Req>(req), self = weak_from_this()](asio::cancellation_type) {
        auto s = self.lock();
        if (!s) return;
        asio::post(s->strand_, [w, s] {
          if (auto r = w.lock()) {
            if (s->mux_.cancel(*r, std::make_exception_ptr(TimeoutError(
                                       "Redis " + std::string(r->name()) + " was cancelled"))))
              s->counters_->timeouts.fetch_add(1, std::memory_order_relaxed);
          }
        });
      });
    }
    // A caller resumed by a reply of this connection (inside on_bytes, on the strand) queues its
    // next request directly. Every kFlushEvery such requests go out at once, so the server works
    // on them while the rest of the batch is matched (a write per whole batch would leave it
    // idle meanwhile); on_bytes writes what is left when the batch is done.
    if (on_strand() && in_reply_batch_ && !stopping_) {
      queue(std::move(req));
      if (mux_.queued() >= kFlushEvery) kick_writer();
      return;
    }
    // Anyone else goes through the inbox: one strand post carries every request submitted
    // before the strand gets to it, and they go out in one write.
    {
      std::lock_guard lock(inbox_mutex_);
      inbox_.push_back(std::move(req));
      if (inbox_.size() > 1) return;  // a drain is already posted
    }
    asio::post(strand_, [self = shared_from_this()] { self->drain_inbox(); });
  }

  void close() noexcept {
    try {
      asio::post(strand_, [self = shared_from_this()] { self->begin_stop(); });
    } catch (...) {
    }
  }

  // ---- strand only ----------------------------------------------------------------------------
  void drain_inbox() {
    {
      std::lock_guard lock(inbox_mutex_);
      draining_.swap(inbox_);
    }
    for (auto& req : draining_)
      enqueue(std::move(req));
    draining_.clear();
    kick_writer();
  }

  void enqueue(std::shared_ptr<detail::Request> req) {
    if (stopping_ || !started_) {
      mux_.add(req);
      mux_.cancel(*req,
                  std::make_exception_ptr(ConnectionError(
                      stopping_ ? "the Redis connection was closed by disconnect()"
                                : "the Redis connection was not started: call connect() first")));
      counters_->errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue(std::move(req));
  }

  // Queues a request for the next write; wakes the deadline loop if it is now the earliest.
  void queue(std::shared_ptr<detail::Request> req) {
    if (req->deadline() < deadline_timer_.expiry()) deadline_timer_.cancel();
    mux_.add(std::move(req));
  }

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    Duration backoff = cfg_.reconnect_min;
    bool failing = false;
    while (!stopping_) {
      state_.store(ConnectionState::connecting);
      std::exception_ptr failure;
      try {
        co_await connect_once();
      } catch (...) {
        failure = std::current_exception();
      }
      if (failure) {
        close_stream();
        set_last_error(describe(failure));
        if (!failing)
          log_->warn("cannot connect to {}: {}", cfg_.redacted(), last_error());
        else
          log_->debug("cannot connect to {}: {}", cfg_.redacted(), last_error());
        failing = true;
        state_.store(ConnectionState::disconnected);
        if (stopping_) break;
        co_await sleep(jittered(backoff));
        backoff = std::min(backoff * 2, cfg_.reconnect_max);
        continue;
      }
      failing = false;
      backoff = cfg_.reconnect_min;
      if (counters_->connects.fetch_add(1) > 0) counters_->reconnects.fetch_add(1);
      link_up_ = true;
      last_read_ = Clock::now();
      state_.store(ConnectionState::connected);
      log_->info("connected to {}", cfg_.redacted());
      connected_waiters_.notify_all();
      ++link_gen_;
      kick_writer();  // requests queued while disconnected go out first
      co_await (read_loop() || health_loop());
      close_stream();
      const std::string reason = last_error();
      const auto lost = mux_.in_flight();
      mux_.on_disconnect(std::make_exception_ptr(
          ConnectionError("connection to " + cfg_.redacted() + " lost (" + reason +
                          "); the command was sent and may or may not have been applied")));
      counters_->errors.fetch_add(lost, std::memory_order_relaxed);
      state_.store(ConnectionState::disconnected);
      if (stopping_) break;
      log_->warn("connection to {} lost: {}; reconnecting", cfg_.redacted(), reason);
      co_await sleep(jittered(cfg_.reconnect_min));
    }
    close_stream();
    mux_.fail_all(std::make_exception_ptr(
        ConnectionError("the Redis connection was closed by disconnect()")));
    state_.store(ConnectionState::stopped);
    deadline_timer_.cancel();
    connected_waiters_.notify_all();
    stopped_waiters_.notify_all();
    log_->debug("connection to {} stopped", cfg_.redacted());
  }

  asio::awaitable<void> deadline_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto next = mux_.expire(Clock::now(), [this](const detail::Request& r) {
        counters_->timeouts.fetch_add(1, std::memory_order_relaxed);
        return timeout_error(r);
      });
      if (state_.load() == ConnectionState::stopped && !next) co_return;
      deadline_timer_.expires_at(next.value_or(Clock::time_point::max()));
      error_code ec;
      co_await deadline_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }

  asio::awaitable<bool> wait_connected(Duration timeout) {
    auto self = shared_from_this();
    co_return co_await wait_for(connected_waiters_, timeout,
                                [this] {
                                  return state_.load() == ConnectionState::connected ||
                                         state_.load() == ConnectionState::stopped;
                                }) &&
        state_.load() == ConnectionState::connected;
  }

  asio::awaitable<void> disconnect() {
    auto self = shared_from_this();
    if (!started_.exchange(true)) {  // never started: nothing to drain
      stopping_ = true;
      state_.store(ConnectionState::stopped);
      mux_.fail_all(std::make_exception_ptr(
          ConnectionError("the Redis connection was closed by disconnect()")));
      co_return;
    }
    if (!stopping_) {
      stopping_ = true;
      if (link_up_) {
        co_await wait_for(drained_waiters_, cfg_.disconnect_timeout,
                          [this] { return mux_.idle(); });
      }
      begin_stop();
    }
    co_await wait_for(stopped_waiters_, cfg_.disconnect_timeout + Duration(1000),
                      [this] { return state_.load() == ConnectionState::stopped; });
  }

  Config cfg_;
  // A strand over the caller's executor, held type-erased. Over an io_context's own executor type
  // when that is what was given: a strand over any_io_executor does not fit any_io_executor's
  // small buffer, so every copy of it (each I/O operation takes some) would allocate.
  asio::any_io_executor strand_;

  using IoStrand = asio::strand<asio::io_context::executor_type>;
  using AnyStrand = asio::strand<asio::any_io_executor>;
  static asio::any_io_executor make_serial(const asio::any_io_executor& ex) {
    if (const auto* io = ex.target<asio::io_context::executor_type>()) return IoStrand(*io);
    return AnyStrand(ex);
  }
  bool on_strand() const noexcept {
    if (const auto* s = strand_.target<IoStrand>()) return s->running_in_this_thread();
    if (const auto* s = strand_.target<AnyStrand>()) return s->running_in_this_thread();
    return false;
  }
  std::atomic<ConnectionState> state_{ConnectionState::idle};

  std::string last_error() const {
    std::lock_guard lock(error_mutex_);
    return last_error_;
  }
  const std::shared_ptr<Counters>& counters() const { return counters_; }

 private:
  using TlsStream = ssl::stream<tcp::socket>;
  using Stream = std::variant<std::monostate, tcp::socket, TlsStream, unix_stream::socket>;

  void make_tls_context() {
    tls_ctx_.emplace(ssl::context::tls_client);
    tls_ctx_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
    error_code ec;
    auto check = [&](const char* what, const std::string& file) {
      if (ec)
        throw ConfigError(std::string("cannot load TLS ") + what + " '" + file +
                          "': " + ec.message());
    };
    if (cfg_.tls.verify_peer) {
      tls_ctx_->set_verify_mode(ssl::verify_peer, ec);
      if (!cfg_.tls.ca_file.empty()) {
        tls_ctx_->load_verify_file(cfg_.tls.ca_file, ec);
        check("CA file", cfg_.tls.ca_file);
      } else {
        tls_ctx_->set_default_verify_paths(ec);
      }
    } else {
      tls_ctx_->set_verify_mode(ssl::verify_none, ec);
    }
    if (!cfg_.tls.cert_file.empty()) {
      tls_ctx_->use_certificate_chain_file(cfg_.tls.cert_file, ec);
      check("certificate", cfg_.tls.cert_file);
    }
    if (!cfg_.tls.key_file.empty()) {
      tls_ctx_->use_private_key_file(cfg_.tls.key_file, ssl::context::pem, ec);
      check("private key", cfg_.tls.key_file);
    }
  }

  void set_last_error(std::string e) {
    std::lock_guard lock(error_mutex_);
    last_error_ = scrub(std::move(e), cfg_.password);
  }

  std::exception_ptr timeout_error(const detail::Request& r) const {
    std::string msg = "Redis " + std::string(r.name()) + " timed out";
    if (link_up_) {
      msg += ": no reply from " + cfg_.redacted() + " before the deadline";
    } else {
      const auto err = last_error();
      msg += " waiting for a connection to " + cfg_.redacted();
      if (!err.empty()) msg += " (last error: " + err + ")";
    }
    return std::make_exception_ptr(TimeoutError(msg));
  }

  Duration jittered(Duration d) {
    std::uniform_real_distribution<double> dist(0.75, 1.25);
    return Duration(std::max<long long>(1, static_cast<long long>(d.count() * dist(rng_))));
  }

  asio::awaitable<void> sleep(Duration d) {
    backoff_timer_.expires_after(d);
    error_code ec;
    co_await backoff_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
  }

  template <class Pred>
  asio::awaitable<bool> wait_for(Waiters& w, Duration timeout, Pred pred) {
    const auto until = Clock::now() + timeout;
    while (!pred() && Clock::now() < until) {
      asio::steady_timer t(strand_, until);
      w.timers.push_back(&t);
      error_code ec;
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
      w.timers.erase(std::find(w.timers.begin(), w.timers.end(), &t));
    }
    co_return pred();
  }

  void begin_stop() {
    stopping_ = true;
    close_stream();
    backoff_timer_.cancel();
    health_timer_.cancel();
    if (state_.load() == ConnectionState::idle) {
      state_.store(ConnectionState::stopped);
      mux_.fail_all(std::make_exception_ptr(
          ConnectionError("the Redis connection was closed by disconnect()")));
    }
  }

  void close_stream() {
    link_up_ = false;
    error_code ec;
    std::visit(
        [&](auto& s) {
          if constexpr (std::is_same_v<std::decay_t<decltype(s)>, TlsStream>) {
            s.lowest_layer().close(ec);
          } else if constexpr (!std::is_same_v<std::decay_t<decltype(s)>, std::monostate>) {
            s.close(ec);
          }
        },
        stream_);
    resolver_.cancel();
  }

  asio::awaitable<std::size_t> read_some() {
    switch (stream_.index()) {
      case 1:
        co_return co_await std::get<1>(stream_).async_read_some(asio::buffer(read_buf_),
                                                                use_awaitable);
      case 2:
        co_return co_await std::get<2>(stream_).async_read_some(asio::buffer(read_buf_),
                                                                use_awaitable);
      case 3:
        co_return co_await std::get<3>(stream_).async_read_some(asio::buffer(read_buf_),
                                                                use_awaitable);
      default:
        throw ConnectionError("not connected");
    }
  }

  asio::awaitable<void> write_all(const std::string& data) {
    auto buf = asio::buffer(data);
    switch (stream_.index()) {
      case 1:
        co_await asio::async_write(std::get<1>(stream_), buf, use_awaitable);
        break;
      case 2:
        co_await asio::async_write(std::get<2>(stream_), buf, use_awaitable);
        break;
      case 3:
        co_await asio::async_write(std::get<3>(stream_), buf, use_awaitable);
        break;
      default:
        throw ConnectionError("not connected");
    }
  }

  // Opens the transport and runs the handshake, bounded by connect_timeout: a watchdog closes
  // the socket when the time is up, which aborts whatever step is pending.
  asio::awaitable<void> connect_once() {
    reader_.reset();
    stream_.emplace<std::monostate>();
    const auto gen = ++connect_gen_;
    connect_timed_out_ = false;
    connect_timer_.expires_after(cfg_.connect_timeout);
    connect_timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->connect_gen_) return;
      self->connect_timed_out_ = true;
      self->close_stream();
    });
    std::exception_ptr failure;
    try {
      co_await open_transport();
      co_await handshake();
    } catch (...) {
      failure = std::current_exception();
    }
    ++connect_gen_;  // disarms the watchdog even if its expiry is already queued
    connect_timer_.cancel();
    if (connect_timed_out_)
      throw ConnectionError("connect timed out after " +
                            std::to_string(cfg_.connect_timeout.count()) + " ms");
    if (failure) std::rethrow_exception(failure);
  }

  asio::awaitable<void> open_transport() {
    if (cfg_.transport == Config::Transport::unix_socket) {
      auto& s = stream_.emplace<unix_stream::socket>(strand_);
      error_code ec;
      co_await s.async_connect(unix_stream::endpoint(cfg_.path),
                               asio::redirect_error(use_awaitable, ec));
      if (ec) throw ConnectionError("cannot connect to " + cfg_.path + ": " + ec.message());
      s.non_blocking(true, ec);
      co_return;
    }
    error_code ec;
    auto endpoints = co_await resolver_.async_resolve(cfg_.host, std::to_string(cfg_.port),
                                                      asio::redirect_error(use_awaitable, ec));
    if (ec) throw ConnectionError("cannot resolve " + cfg_.host + ": " + ec.message());
    const std::string where = cfg_.host + ":" + std::to_string(cfg_.port);
    if (!cfg_.tls.enabled) {
      auto& s = stream_.emplace<tcp::socket>(strand_);
      co_await asio::async_connect(s, endpoints, asio::redirect_error(use_awaitable, ec));
      if (ec) throw ConnectionError("cannot connect to " + where + ": " + ec.message());
      s.set_option(tcp::no_delay(true), ec);
      s.non_blocking(true, ec);
      co_return;
    }
    auto& s = stream_.emplace<TlsStream>(strand_, *tls_ctx_);
    co_await asio::async_connect(s.lowest_layer(), endpoints,
                                 asio::redirect_error(use_awaitable, ec));
    if (ec) throw ConnectionError("cannot connect to " + where + ": " + ec.message());
    s.lowest_layer().set_option(tcp::no_delay(true), ec);
    const std::string& name = cfg_.tls.server_name.empty() ? cfg_.host : cfg_.tls.server_name;
    SSL_set_tlsext_host_name(s.native_handle(), name.c_str());
    if (cfg_.tls.verify_peer && cfg_.tls.verify_host)
      s.set_verify_callback(ssl::host_name_verification(name));
    co_await s.async_handshake(ssl::stream_base::client, asio::redirect_error(use_awaitable, ec));
    if (ec) throw ConnectionError("TLS handshake with " + where + " failed: " + ec.message());
  }

  // AUTH, SELECT and CLIENT SETNAME, pipelined, before any user request.
  asio::awaitable<void> handshake() {
    Pipeline p;
    std::vector<std::string> what;
    if (!cfg_.password.empty()) {
      if (cfg_.username.empty())
        p.add("AUTH", cfg_.password);
      else
        p.add("AUTH", cfg_.username, cfg_.password);
      what.push_back(cfg_.username.empty() ? "AUTH" : "AUTH as user '" + cfg_.username + "'");
    }
    if (cfg_.db != 0) {
      p.add("SELECT", cfg_.db);
      what.push_back("SELECT " + std::to_string(cfg_.db));
    }
    if (!cfg_.client_name.empty()) {
      p.add("CLIENT", "SETNAME", cfg_.client_name);
      what.push_back("CLIENT SETNAME");
    }
    if (p.empty()) co_return;
    co_await write_all(p.wire());
    std::size_t got = 0;
    std::string failure;
    while (got < p.size()) {
      const auto n = co_await read_some();
      reader_.feed(read_buf_.data(), n);
      while (auto r = reader_.next()) {
        if (r->is_error() && failure.empty())
          failure = what[got] + " failed: " + scrub(r->str(), cfg_.password);
        ++got;
      }
    }
    if (!failure.empty()) throw ConnectionError(failure);
  }

  // Marks the matching of one read's replies, during which resumed callers queue directly.
  struct ReplyBatch {
    explicit ReplyBatch(Impl& impl) : impl_(impl) { impl_.in_reply_batch_ = true; }
    ~ReplyBatch() { impl_.in_reply_batch_ = false; }
    ReplyBatch(const ReplyBatch&) = delete;
    ReplyBatch& operator=(const ReplyBatch&) = delete;
    Impl& impl_;
  };

  // Parses what arrived and completes the requests it answers.
  void on_bytes(std::size_t n) {
    last_read_ = Clock::now();
    counters_->batch_time = last_read_;
    reader_.feed(read_buf_.data(), n);
    {
      ReplyBatch batch(*this);
      while (auto r = reader_.next())
        mux_.on_reply(std::move(*r));
    }
    kick_writer();  // what the resumed callers queued
    if (stopping_ && mux_.idle()) drained_waiters_.notify_all();
  }

  // Reads and parses until the link fails. After a batch of replies the next read is tried at
  // once (the server may have answered while the batch was matched); when nothing is there,
  // the read waits in the reactor without re-registering the socket.
  template <class Stream>
  asio::awaitable<void> read_stream(Stream& s) {
    for (;;)
      on_bytes(co_await s.async_read_some(asio::buffer(read_buf_), use_awaitable));
  }

  asio::awaitable<void> read_loop() {
    try {
      if (auto* tcp_socket = std::get_if<tcp::socket>(&stream_)) {
        co_await read_stream(*tcp_socket);
      } else if (auto* unix_socket = std::get_if<unix_stream::socket>(&stream_)) {
        co_await read_stream(*unix_socket);
      } else {
        co_await read_stream(std::get<TlsStream>(stream_));
      }
    } catch (const std::exception& e) {
      note_drop(e);
    }
    close_stream();
  }

  // Writes everything queued in one write, if no write is in flight; called whenever requests
  // are queued and whenever a write completes.
  void kick_writer() {
    if (writing_ || !link_up_) return;
    write_buf_.clear();
    if (mux_.prepare_write(write_buf_) == 0) {
      if (stopping_ && mux_.idle()) drained_waiters_.notify_all();
      return;
    }
    Counters::bump(counters_->writes);
    // Plain sockets first try a non-blocking send: when the kernel takes everything (the usual
    // case) the write is over at once, and another can follow within the same batch of replies.
    std::size_t sent = 0;
    error_code ec;
    if (auto* t = std::get_if<tcp::socket>(&stream_)) {
      sent = t->write_some(asio::buffer(write_buf_), ec);
    } else if (auto* u = std::get_if<unix_stream::socket>(&stream_)) {
      sent = u->write_some(asio::buffer(write_buf_), ec);
    }
    if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
    if (ec) {
      note_drop(boost::system::system_error(ec));
      close_stream();
      return;
    }
    if (sent == write_buf_.size()) {
      if (write_buf_.capacity() > (1u << 20)) std::string().swap(write_buf_);
      return;
    }
    writing_ = true;
    auto done = [self = shared_from_this(), gen = link_gen_](error_code ec, std::size_t) {
      self->on_written(ec, gen);
    };
    std::visit(
        [&](auto& s) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(s)>, std::monostate>)
            asio::async_write(s, asio::buffer(write_buf_.data() + sent, write_buf_.size() - sent),
                              std::move(done));
        },
        stream_);
  }

  void on_written(error_code ec, std::uint64_t gen) {
    writing_ = false;
    if (write_buf_.capacity() > (1u << 20)) std::string().swap(write_buf_);
    if (ec && gen == link_gen_ && link_up_) {
      note_drop(boost::system::system_error(ec));
      close_stream();
      return;
    }
    kick_writer();
  }

  asio::awaitable<void> health_loop() {
    try {
      for (;;) {
        health_timer_.expires_after(cfg_.health_interval);
        co_await health_timer_.async_wait(use_awaitable);
        if (Clock::now() - last_read_ < cfg_.health_interval) continue;
        const auto sent = Clock::now();
        mux_.add(std::make_shared<InternalRequest>(Command("PING"), sent + cfg_.health_timeout));
        kick_writer();
        health_timer_.expires_after(cfg_.health_timeout);
        co_await health_timer_.async_wait(use_awaitable);
        if (last_read_ < sent)
          throw ConnectionError("no reply to PING within " +
                                std::to_string(cfg_.health_timeout.count()) + " ms");
      }
    } catch (const std::exception& e) {
      note_drop(e);
    }
    close_stream();
  }

  void note_drop(const std::exception& e) {
    if (!link_up_) return;  // another loop already recorded why the link went down
    if (auto* se = dynamic_cast<const boost::system::system_error*>(&e)) {
      if (se->code() == asio::error::eof) return set_last_error("the server closed the connection");
      return set_last_error(se->code().message());
    }
    set_last_error(e.what());
  }

  std::optional<ssl::context> tls_ctx_;
  Stream stream_;
  asio::steady_timer deadline_timer_;
  asio::steady_timer health_timer_;
  asio::steady_timer backoff_timer_;
  asio::steady_timer connect_timer_;
  tcp::resolver resolver_;
  detail::ReplyReader reader_;
  detail::Multiplexer mux_;
  std::string write_buf_;
  std::vector<char> read_buf_;
  Waiters connected_waiters_, drained_waiters_, stopped_waiters_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<Counters> counters_;
  std::minstd_rand rng_;
  mutable std::mutex error_mutex_;
  std::string last_error_;
  Clock::time_point last_read_{};
  std::atomic<bool> started_{false};
  bool stopping_ = false;
  bool link_up_ = false;
  bool writing_ = false;         // a write is in flight
  bool in_reply_batch_ = false;  // on_bytes is matching replies (callers resume inside it)
  std::mutex inbox_mutex_;
  std::vector<std::shared_ptr<detail::Request>> inbox_;     // submitted, not yet on the strand
  std::vector<std::shared_ptr<detail::Request>> draining_;  // strand only
  std::uint64_t link_gen_ = 0;  // bumped per established link; stale write completions ignore
  bool connect_timed_out_ = false;
  std::uint64_t connect_gen_ = 0;
};

// ---- Connection ---------------------------------------------------------------------------------

Connection::Connection(asio::any_io_executor executor, Config config)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(config))) {}

Connection::~Connection() {
  close();
}

void Connection::start() {
  impl_->start();
}

void Connection::close() noexcept {
  impl_->close();
}

asio::awaitable<bool> Connection::wait_connected(Duration timeout) {
  const std::shared_ptr<Impl> impl = impl_;
  auto on_strand = impl->wait_connected(timeout);
  const bool up = co_await asio::co_spawn(impl->strand_, std::move(on_strand), use_awaitable);
  co_return up;
}

asio::awaitable<void> Connection::disconnect() {
  const std::shared_ptr<Impl> impl = impl_;
  auto on_strand = impl->disconnect();
  co_await asio::co_spawn(impl->strand_, std::move(on_strand), use_awaitable);
}

namespace {
// The initiation of exec(): a named type, not a lambda (g++ 12 destroys a capturing lambda that
// shares a full-expression with co_await twice).
template <class T>
struct ExecInitiation {
  std::shared_ptr<Connection::Impl> impl;
  Clock::time_point deadline;
  Clock::time_point created;
  T (*convert)(Reply&&) = nullptr;

  template <class Handler>
  void operator()(Handler&& h, Command c) const {
    using Req = AsyncRequest<std::decay_t<Handler>, T>;
    impl->submit(std::make_shared<Req>(std::forward<Handler>(h), impl->counters().get(), convert,
                                       std::move(c), deadline, created));
  }
  template <class Handler>
  void operator()(Handler&& h, std::string wire, std::size_t n) const {
    using Req = AsyncRequest<std::decay_t<Handler>, T>;
    impl->submit(std::make_shared<Req>(std::forward<Handler>(h), impl->counters().get(), convert,
                                       std::move(wire), n, deadline, created));
  }
};

template <class T>
struct CompletionOf {
  using type = void(std::exception_ptr, T);
};
template <>
struct CompletionOf<void> {
  using type = void(std::exception_ptr);
};

asio::awaitable<std::vector<Reply>> no_replies() {
  co_return std::vector<Reply>{};
}

asio::awaitable<std::vector<Reply>> split_replies(asio::awaitable<Reply> one, std::size_t n) {
  Reply r = co_await std::move(one);
  std::vector<Reply> out;
  if (n == 1) {
    out.push_back(std::move(r));
  } else {
    out = std::move(r).as_array();
  }
  co_return out;
}
}  // namespace

asio::awaitable<Reply> Connection::exec(Command command, CallOptions options) {
  return exec_as<Reply>(std::move(command), options, nullptr);
}

template <class T>
asio::awaitable<T> Connection::exec_as(Command command, CallOptions options,
                                       T (*convert)(Reply&&)) {
  const auto now = Clock::now();
  const auto deadline = now + options.timeout.value_or(impl_->cfg_.command_timeout);
  return asio::async_initiate<const asio::use_awaitable_t<>&, typename CompletionOf<T>::type>(
      ExecInitiation<T>{impl_, deadline, now, convert}, use_awaitable, std::move(command));
}

template asio::awaitable<Reply> Connection::exec_as(Command, CallOptions, Reply (*)(Reply&&));
template asio::awaitable<void> Connection::exec_as(Command, CallOptions, void (*)(Reply&&));
template asio::awaitable<bool> Connection::exec_as(Command, CallOptions, bool (*)(Reply&&));
template asio::awaitable<long long> Connection::exec_as(Command, CallOptions,
                                                        long long (*)(Reply&&));
template asio::awaitable<std::string> Connection::exec_as(Command, CallOptions,
                                                          std::string (*)(Reply&&));
template asio::awaitable<std::optional<std::string>> Connection::exec_as(
    Command, CallOptions, std::optional<std::string> (*)(Reply&&));
template asio::awaitable<std::vector<std::string>> Connection::exec_as(
    Command, CallOptions, std::vector<std::string> (*)(Reply&&));
template asio::awaitable<std::vector<std::optional<std::string>>> Connection::exec_as(
    Command, CallOptions, std::vector<std::optional<std::string>> (*)(Reply&&));

asio::awaitable<std::vector<Reply>> Connection::exec(const Pipeline& pipeline,
                                                     CallOptions options) {
  const auto now = Clock::now();
  const auto deadline = now + options.timeout.value_or(impl_->cfg_.command_timeout);
  const std::size_t n = pipeline.size();
  if (n == 0) return no_replies();
  return split_replies(
      asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, Reply)>(
          ExecInitiation<Reply>{impl_, deadline, now}, use_awaitable, pipeline.wire(), n),
      n);
}

ConnectionState Connection::state() const noexcept {
  return impl_->state_.load();
}

ConnectionStats Connection::stats() const noexcept {
  const auto& c = *impl_->counters();
  ConnectionStats s;
  s.commands = c.commands.load();
  s.errors = c.errors.load();
  s.timeouts = c.timeouts.load();
  s.reconnects = c.reconnects.load();
  s.connects = c.connects.load();
  s.writes = c.writes.load();
  for (std::size_t i = 0; i < s.latency_buckets.size(); ++i)
    s.latency_buckets[i] = c.latency[i].load();
  s.latency_seconds_sum = static_cast<double>(c.latency_nanos.load()) / 1e9;
  return s;
}

const Config& Connection::config() const noexcept {
  return impl_->cfg_;
}

std::string Connection::last_error() const {
  return impl_->last_error();
}

}  // namespace tempest::redis
