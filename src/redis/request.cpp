#include "tempest/redis/detail/request.hpp"

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
thread_local RequestPool t_pool;
}  // namespace

Request* Request::create() {
  if (Request* r = t_pool.head) {
    t_pool.head = r->next;
    --t_pool.size;
    r->next = nullptr;
    return r;
  }
  return new Request();
}

void Request::destroy() noexcept {
  if (destroy_ != nullptr) destroy_(this);
  if (t_pool.size >= RequestPool::kKeep) {
    delete this;
    return;
  }
  reset();
  next = t_pool.head;
  t_pool.head = this;
  ++t_pool.size;
}

// The intrusive links are back to null by the time a request is released (unlinking resets
// them), so only what a use changes is reset here.
void Request::reset() noexcept {
  constexpr std::size_t kKeepBytes = 4096;  // larger buffers are released, not pooled
  if (command_.capacity() > kKeepBytes) {
    command_ = Command();
  } else {
    command_.clear();
  }
  if (!wire_.empty()) {
    if (wire_.capacity() > kKeepBytes) {
      std::string().swap(wire_);
    } else {
      wire_.clear();
    }
  }
  expected_ = 1;
  timeout_ = std::chrono::milliseconds(0);
  kind_ = RequestKind::user;
  completed_ = false;
  refs_.store(1, std::memory_order_relaxed);
  error_ = nullptr;
  // Whatever the last reply left is overwritten by the next one; only large leftovers go.
  if (reply_.str().capacity() > kKeepBytes || !reply_.elements().empty()) reply_ = Reply{};
  convert_ = nullptr;
  replies_seen = 0;
  where = Where::none;
  in_deadlines = false;
  flags = 0;
  if (!collected.empty()) collected = {};
  if (!rejection.empty()) rejection.clear();
  cancel_requested.store(false, std::memory_order_relaxed);
}

}  // namespace tempest::redis::detail
