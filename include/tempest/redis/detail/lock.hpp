// A small lock for short critical sections (a connection's step, a routed request's link).
// Uncontended it is one compare-and-swap to take and one exchange to give back, where a pthread
// mutex costs about 50 instructions a round; contended, waiters sleep on a futex
// (std::atomic::wait) after a short spin.
#pragma once

#include <atomic>

namespace tempest::redis::detail {

class Lock {
 public:
  void lock() noexcept {
    int expected = 0;
    if (!state_.compare_exchange_strong(expected, 1, std::memory_order_acquire)) contended();
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  void contended() noexcept;
  std::atomic<int> state_{0};  // 0 free, 1 taken, 2 taken with waiters
};

}  // namespace tempest::redis::detail
