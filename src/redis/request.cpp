#include "tempest/redis/detail/request.hpp"

#include "backend.hpp"
#include "tempest/redis/error.hpp"

namespace tempest::redis::detail {

// Released requests, kept per thread for the next ones (a request is about 500 bytes; a busy
// connection makes and releases one per call), linked through Request::next.
struct RequestPool {
  static constexpr std::size_t kKeep = 1024;
  Request* head = nullptr;
  std::size_t size = 0;
  ~RequestPool() {
    while (Request* r = head) {
      head = r->next;
      delete r;
    }
  }
};

namespace {

// Trivially destructible, so they can be read at any time, also while the thread's other
// thread_local objects are being destroyed (a request released then is simply deleted).
thread_local RequestPool* t_pool = nullptr;
thread_local bool t_pool_gone = false;

struct PoolOwner {
  RequestPool pool;
  PoolOwner() { t_pool = &pool; }
  ~PoolOwner() {
    t_pool = nullptr;
    t_pool_gone = true;
  }
};

RequestPool* pool() {
  if (t_pool == nullptr && !t_pool_gone) {
    thread_local PoolOwner owner;  // made on the thread's first request, destroyed at its exit
  }
  return t_pool;
}

}  // namespace

Request* Request::create() {
  RequestPool* p = pool();
  if (p != nullptr && p->head != nullptr) {
    Request* r = p->head;
    p->head = r->next;
    --p->size;
    r->next = nullptr;
    return r;
  }
  return new Request();
}

void Request::destroy() noexcept {
  if (destroy_ != nullptr) destroy_(this);
  RequestPool* p = t_pool;
  if (p == nullptr || p->size >= RequestPool::kKeep) {
    delete this;
    return;
  }
  reset();
  next = p->head;
  p->head = this;
  ++p->size;
}

// The intrusive links are back to null by the time a request is released (unlinking resets
// them), so only what a use changes is reset here.
namespace {
constexpr std::size_t kKeepBytes = 4096;  // larger buffers are released, not pooled
}  // namespace

void Request::reset() noexcept {
  // Whatever the last reply left is overwritten by the next one; only large leftovers go.
  if (command_.capacity() > kKeepBytes || !wire_.empty() || reply_.str().capacity() > kKeepBytes ||
      !reply_.elements().empty() || !collected.empty() || !rejection.empty()) {
    drop_leftovers();
  } else {
    command_.clear();
  }
  if (route.used) reset_route();
  expected_ = 1;
  timeout_ = std::chrono::milliseconds(0);
  kind_ = RequestKind::user;
  completed_ = false;
  refs_.store(1, std::memory_order_relaxed);
  error_ = nullptr;
  convert_ = nullptr;
  replies_seen = 0;
  where = Where::none;
  in_deadlines = false;
  flags = 0;
  cancel_requested.store(false, std::memory_order_relaxed);
}

void Request::drop_leftovers() noexcept {
  if (command_.capacity() > kKeepBytes) {
    command_ = Command();
  } else {
    command_.clear();
  }
  if (wire_.capacity() > kKeepBytes) {
    std::string().swap(wire_);
  } else {
    wire_.clear();
  }
  if (reply_.str().capacity() > kKeepBytes || !reply_.elements().empty()) reply_ = Reply{};
  if (!collected.empty()) collected = {};
  rejection.clear();
}

void Request::reset_route() noexcept {
  route.used = false;
  route.router.reset();
  route.link = nullptr;
  route.fanout.reset();
  route.parked.reset();
  route.node = nullptr;
  route.slot = 0;
  route.mode = RouteMode::keys;
  route.redirects = 0;
  route.asking = false;
  route.readonly = false;
  route.transaction = false;
  route.slot_known = false;
}

void Request::prepare_retry() noexcept {
  completed_ = false;
  error_ = nullptr;
  reply_ = Reply{};
  replies_seen = 0;
  collected.clear();
  rejection.clear();
  done_next = nullptr;
  flags = static_cast<std::uint8_t>(flags & ~kWritten);
}

namespace {
// Whether `e` holds an E (or a class derived from it).
template <class E>
bool holds(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace

bool is_connection_error(const std::exception_ptr& e) noexcept {
  return holds<ConnectionError>(e);
}

bool is_timeout(const std::exception_ptr& e) noexcept {
  return holds<TimeoutError>(e);
}

void deliver_routed(RequestRef ref, const boost::asio::any_io_executor& fallback,
                    bool inline_ok) noexcept {
  Request* r = ref.detach();
  const std::shared_ptr<Backend> keep = std::move(r->route.router);
  if (r->has_handler()) {
    r->deliver(fallback, inline_ok);
  } else {
    r->release();
  }
}

}  // namespace tempest::redis::detail
