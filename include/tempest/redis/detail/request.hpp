// One request on a connection: its command bytes, deadline, result, and the caller's completion
// handler, in one allocation. The session (socket-free) moves requests between its queue and
// in-flight list and records their results; the connection delivers each result to its handler
// after the session's step, on the handler's executor.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tempest/redis/command.hpp"
#include "tempest/redis/detail/lock.hpp"
#include "tempest/redis/reply.hpp"

namespace tempest::redis::detail {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

class Request;
class Backend;

// Completes a request: converts its result, releases the request, then invokes the handler
// (inline when `inline_ok` and the handler's executor allows it, otherwise posted to it).
using DeliverFn = void (*)(Request* r, const boost::asio::any_io_executor& fallback,
                           bool inline_ok);
// Destroys a stored handler that will never be invoked (the connection is being destroyed).
using DestroyFn = void (*)(Request* r) noexcept;

enum class RequestKind : std::uint8_t {
  user,          // a caller's command or pipeline
  handshake,     // AUTH / SELECT / CLIENT SETNAME / PING after a connect (the library's own)
  health,        // the health check's PING (the library's own)
  tracking,      // CLIENT TRACKING on REDIRECT <id> on a ready link (the library's own)
  wait_ready,    // completes when the connection is up (or stopped, or at its deadline)
  wait_stopped,  // completes when the connection has stopped
};

// Request::flags of a wait_ready request: it ends with the first connect attempt's outcome.
constexpr std::uint8_t kWaitFirstAttempt = 1;
// Request::flags of a blocking command on a dedicated connection: if its deadline passes while
// Redis still blocks on it, the connection is closed (a reply nobody waits for would take data).
constexpr std::uint8_t kBlockingCommand = 2;
// Request::flags set by the session when the request's bytes were handed to the transport: a
// request failed without it was never sent, so a cluster may send it elsewhere.
constexpr std::uint8_t kWritten = 4;
// Request::flags of a request a cluster routes: its deadline was set when the cluster took it and
// stays the same whichever node it is sent to.
constexpr std::uint8_t kRouted = 8;

// How a cluster routes a request (Request::route.mode).
enum class RouteMode : std::uint8_t {
  keys,               // by the slot of its keys (none: any master)
  node,               // to one node (Request::route.node)
  every_master,       // to every master: an array of their replies
  every_master_same,  // to every master: one reply when all gave it (a health check's PING)
};

// What a cluster keeps on a request it routes (src/redis/cluster.cpp). `lock` guards `link`
// and `fanout` against a cancellation from another thread.
struct Route {
  std::shared_ptr<Backend> router;  // the cluster, kept alive while the request is routed
  Lock lock;
  Backend* link = nullptr;       // the node connection the request is on now
  std::weak_ptr<void> fanout;    // the parts a request was split into, when it was
  std::shared_ptr<void> parked;  // the timer of a request waiting to be sent again (under lock)
  const void* node = nullptr;    // RouteMode::node: the node
  std::uint32_t slot = 0;        // the slot of its keys (kNoSlot: none)
  RouteMode mode = RouteMode::keys;
  std::uint8_t redirects = 0;  // redirects and retries so far
  bool asking = false;         // sent with ASKING in front (the reply of ASKING is dropped)
  bool readonly = false;       // the command only reads (a replica may serve it)
  bool transaction = false;    // MULTI ... EXEC: the replies are one unit
  bool slot_known = false;     // `slot` was set by the client that built the request (one key)
  bool used = false;           // set when anything above was set (reset() then clears it all)
};

class Request {
 public:
  Request() = default;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  // ---- building (before submit) ---------------------------------------------------------------
  Command& command() noexcept { return command_; }
  const Command& command() const noexcept { return command_; }
  // A pipeline: pre-encoded commands that get `replies` replies, delivered as one array.
  void set_pipeline(std::string wire, std::size_t replies) {
    wire_ = std::move(wire);
    expected_ = static_cast<std::uint32_t>(replies);
  }
  // The same, built in place: append the commands to the returned buffer (empty, its storage
  // kept from the request's earlier uses).
  std::string& build_pipeline(std::size_t replies) {
    wire_.clear();
    expected_ = static_cast<std::uint32_t>(replies);
    return wire_;
  }
  void set_kind(RequestKind k) noexcept { kind_ = k; }
  // The deadline, counted from submission; zero: the connection's Config::command_timeout.
  void set_timeout(std::chrono::milliseconds t) noexcept { timeout_ = t; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  // Set by the session when the request is submitted.
  void set_times(TimePoint created, TimePoint deadline) noexcept {
    created_ = created;
    deadline_ = deadline;
  }

  // Stores the caller's handler (inline when small), with `convert` turning the Reply into the
  // T of the handler's signature void(std::exception_ptr, T) (void: void(std::exception_ptr)).
  template <class T, class Handler>
  void set_handler(Handler&& h, T (*convert)(Reply&&));

  // ---- reading ----------------------------------------------------------------------------------
  RequestKind kind() const noexcept { return kind_; }
  TimePoint created() const noexcept { return created_; }
  TimePoint deadline() const noexcept { return deadline_; }
  bool is_pipeline() const noexcept { return !wire_.empty(); }
  // A pipeline's bytes (empty for a single command).
  const std::string& wire() const noexcept { return wire_; }
  std::size_t expected_replies() const noexcept { return expected_; }
  // Appends the request's bytes to `out`.
  void append_to(std::string& out) const {
    if (wire_.empty())
      command_.append_to(out);
    else
      out += wire_;
  }
  // Name of the (first) command, for error messages.
  std::string_view name() const noexcept {
    if (wire_.empty()) return command_.name();
    return "pipeline";
  }
  // The result has been decided (reply or error); it may not have been delivered yet.
  bool completed() const noexcept { return completed_; }
  const std::exception_ptr& error() const noexcept { return error_; }
  Reply& reply() noexcept { return reply_; }

  // ---- results (the session) --------------------------------------------------------------------
  void set_result(std::exception_ptr e, Reply&& r) noexcept {
    completed_ = true;
    error_ = std::move(e);
    reply_ = std::move(r);
  }
  // The reply was parsed straight into reply().
  void set_result_in_place() noexcept { completed_ = true; }
  // Delivers the result (see DeliverFn); the request may be gone afterwards.
  void deliver(const boost::asio::any_io_executor& fallback, bool inline_ok) {
    deliver_(this, fallback, inline_ok);
  }
  bool has_handler() const noexcept { return deliver_ != nullptr; }

  // ---- references ------------------------------------------------------------------------------
  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }

  // Intrusive links, owned by the session (and the connection's delivery list).
  Request* prev = nullptr;  // the write queue or the in-flight list
  Request* next = nullptr;
  Request* deadline_prev = nullptr;  // the deadline list (while not completed)
  Request* deadline_next = nullptr;
  Request* done_next = nullptr;  // the list of completed requests to deliver
  std::uint32_t replies_seen = 0;
  enum class Where : std::uint8_t { none, queued, in_flight, waiting } where = Where::none;
  bool in_deadlines = false;
  std::uint8_t deadline_lane = 0;
  std::uint8_t flags = 0;        // kind-specific (e.g. a wait_ready that ends at the first failure)
  std::vector<Reply> collected;  // replies of a pipeline so far
  std::string rejection;         // a reply of a pipeline that the parser refused
  // Set (from any thread) when the caller cancelled; read when the request enters the session.
  std::atomic<bool> cancel_requested{false};
  Route route;  // used only by a cluster

  // Clears the result of an attempt so that the request can be sent again (a cluster's retry).
  void prepare_retry() noexcept;

  // A request from this thread's pool of released ones, or a new one.
  static Request* create();

 private:
  template <class Handler, class T>
  friend struct HandlerOps;

  // Destroys a handler never invoked, then returns the request to this thread's pool.
  void destroy() noexcept;
  // Back to the state of a new request, keeping small buffers for reuse.
  void reset() noexcept;
  void drop_leftovers() noexcept;  // the rare part of reset(): buffers too large to keep
  void reset_route() noexcept;     // what a cluster (or a client marking a request) set
  friend struct RequestPool;
  ~Request() = default;
  void* handler_storage() noexcept { return storage_; }

  static constexpr std::size_t kInlineHandler = 48;

  Command command_;
  std::string wire_;
  std::uint32_t expected_ = 1;
  std::chrono::milliseconds timeout_{0};
  RequestKind kind_ = RequestKind::user;
  bool completed_ = false;
  std::atomic<std::uint32_t> refs_{1};
  TimePoint created_{};
  TimePoint deadline_{};
  std::exception_ptr error_;
  Reply reply_;
  DeliverFn deliver_ = nullptr;
  DestroyFn destroy_ = nullptr;
  void (*convert_)() = nullptr;  // T (*)(Reply&&), cast back by HandlerOps
  void* heap_handler_ = nullptr;
  alignas(std::max_align_t) unsigned char storage_[kInlineHandler];
};

// An owning reference to a Request.
class RequestRef {
 public:
  RequestRef() = default;
  static RequestRef make() { return RequestRef(Request::create()); }
  // Adopts one reference already counted.
  static RequestRef adopt(Request* r) noexcept { return RequestRef(r); }
  RequestRef(const RequestRef& o) noexcept : p_(o.p_) {
    if (p_) p_->add_ref();
  }
  RequestRef(RequestRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  RequestRef& operator=(RequestRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~RequestRef() {
    if (p_) p_->release();
  }
  Request* get() const noexcept { return p_; }
  Request* operator->() const noexcept { return p_; }
  Request& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  // Gives up ownership of the reference without releasing it.
  Request* detach() noexcept { return std::exchange(p_, nullptr); }

 private:
  explicit RequestRef(Request* p) noexcept : p_(p) {}
  Request* p_ = nullptr;
};

}  // namespace tempest::redis::detail
