#include "tempest/redis/detail/request.hpp"

#include <vector>

namespace tempest::redis::detail {

// Released requests, kept per thread for the next ones (a request is about 500 bytes; a busy
// connection makes and releases one per call).
struct RequestPool {
  static constexpr std::size_t kKeep = 1024;
  std::vector<Request*> free;
  ~RequestPool() {
    for (Request* r : free)
      delete r;
  }
};

namespace {
thread_local RequestPool t_pool;
}  // namespace

Request* Request::create() {
  if (!t_pool.free.empty()) {
    Request* r = t_pool.free.back();
    t_pool.free.pop_back();
    return r;
  }
  return new Request();
}

void Request::destroy() noexcept {
  if (destroy_ != nullptr) destroy_(this);
  if (t_pool.free.size() >= RequestPool::kKeep) {
    delete this;
    return;
  }
  reset();
  try {
    t_pool.free.push_back(this);
  } catch (...) {
    delete this;
  }
}

void Request::reset() noexcept {
  constexpr std::size_t kKeepBytes = 4096;  // larger buffers are released, not pooled
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
  expected_ = 1;
  timeout_ = std::chrono::milliseconds(0);
  kind_ = RequestKind::user;
  completed_ = false;
  refs_.store(1, std::memory_order_relaxed);
  error_ = nullptr;
  // Whatever the last reply left is overwritten by the next one; only large leftovers go.
  if (reply_.str().capacity() > kKeepBytes || !reply_.elements().empty()) reply_ = Reply{};
  deliver_ = nullptr;
  destroy_ = nullptr;
  convert_ = nullptr;
  heap_handler_ = nullptr;
  prev = next = deadline_prev = deadline_next = done_next = nullptr;
  replies_seen = 0;
  where = Where::none;
  in_deadlines = false;
  deadline_lane = 0;
  flags = 0;
  if (!collected.empty()) collected = {};
  if (!rejection.empty()) rejection.clear();
  cancel_requested.store(false, std::memory_order_relaxed);
}

}  // namespace tempest::redis::detail
