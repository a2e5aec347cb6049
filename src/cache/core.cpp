#include "tempest/cache/detail/core.hpp"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <random>
#include <set>

#include "tempest/cache/detail/manager_state.hpp"
#include "tempest/cache/freshness.hpp"
#include "tempest/cache/invalidator.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/log.hpp"

namespace tempest::cache::detail {

using Clock = std::chrono::steady_clock;
using Handler = asio::any_completion_handler<void(std::exception_ptr, std::shared_ptr<const void>)>;
// A waiting caller: its handler and its executor (taken before type erasure, since Asio 1.81's
// any_completion_executor cannot be posted to).
struct Waiter {
  Handler handler;
  asio::any_io_executor executor;
};

struct Flight::State {
  std::mutex mutex;
  bool done = false;
  std::exception_ptr error;
  std::shared_ptr<const void> value;
  std::vector<Waiter> waiters;
};

namespace {
// Completes a waiter on its own executor, never inline (the leader must not run joiners).
void deliver(Waiter w, std::exception_ptr e, std::shared_ptr<const void> v) {
  asio::post(w.executor, [h = std::move(w.handler), e = std::move(e), v = std::move(v)]() mutable {
    std::move(h)(std::move(e), std::move(v));
  });
}

struct WaitInitiation {
  std::shared_ptr<Flight::State> state;
  template <class H>
  void operator()(H&& h) const {
    asio::any_io_executor ex = asio::get_associated_executor(h);
    Waiter w{Handler(std::forward<H>(h)), std::move(ex)};
    std::unique_lock lock(state->mutex);
    if (!state->done) {
      state->waiters.push_back(std::move(w));
      return;
    }
    auto e = state->error;
    auto v = state->value;
    lock.unlock();
    deliver(std::move(w), std::move(e), std::move(v));
  }
};

std::string random_token() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("RAND_bytes failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

const redis::Script& release_script() {
  static const redis::Script script(
      "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
      "else return 0 end");
  return script;
}

const std::string& registry_script() {
  static const std::string script =
      "local existed = redis.call('EXISTS', KEYS[1]) "
      "redis.call('SADD', KEYS[1], ARGV[1]) "
      "if tonumber(ARGV[2]) <= 0 then redis.call('PERSIST', KEYS[1]) "
      "elseif existed == 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) "
      "else redis.call('EXPIRE', KEYS[1], ARGV[2], 'GT') end "
      "return 1";
  return script;
}

bool usable(const std::optional<redis::Client>& c) {
  return c && c->is_connected();
}
}  // namespace

std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(std::move(e));
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception of unknown type";
  }
}

Flight::Flight() : state_(std::make_shared<State>()) {}

asio::awaitable<std::shared_ptr<const void>> Flight::wait() {
  return asio::async_initiate<const asio::use_awaitable_t<>&,
                              void(std::exception_ptr, std::shared_ptr<const void>)>(
      WaitInitiation{state_}, asio::use_awaitable);
}

namespace {
using TimedHandler =
    asio::any_completion_handler<void(std::exception_ptr, bool, std::shared_ptr<const void>)>;

// A wait with a limit: whichever of the flight and the timer comes first completes the handler.
// Both report on one strand, so the flight's win can cancel the timer safely (a pending timer
// would keep io_context::run() from returning until the limit). The strand and the timer keep
// their concrete executor type: wrapped in an any_io_executor, a strand becomes a shared target
// whose reference count relies on a fence ThreadSanitizer does not follow.
using Strand = asio::strand<asio::any_io_executor>;
struct TimedWait {
  explicit TimedWait(asio::any_io_executor ex)
      : executor(ex), strand(asio::make_strand(ex)), timer(strand) {}
  std::optional<TimedHandler> handler;  // touched on the strand only (after the initiation)
  asio::any_io_executor executor;
  Strand strand;
  asio::basic_waitable_timer<std::chrono::steady_clock,
                             asio::wait_traits<std::chrono::steady_clock>, Strand>
      timer;

  void finish(std::exception_ptr e, bool timed_out, std::shared_ptr<const void> v) {
    if (!handler) return;
    if (!timed_out) timer.cancel();
    asio::post(executor, [h = std::move(*handler), e = std::move(e), timed_out,
                          v = std::move(v)]() mutable { std::move(h)(e, timed_out, v); });
    handler.reset();
  }
};

struct TimedWaitInitiation {
  Flight* flight;
  std::chrono::milliseconds limit;
  template <class H>
  void operator()(H&& h) const {
    asio::any_io_executor ex = asio::get_associated_executor(h);
    auto wait = std::make_shared<TimedWait>(ex);
    wait->handler.emplace(std::forward<H>(h));
    wait->timer.expires_after(limit);
    wait->timer.async_wait([wait](boost::system::error_code ec) {
      if (!ec) wait->finish(nullptr, true, nullptr);
    });
    flight->on_done(ex, [wait](std::exception_ptr e, std::shared_ptr<const void> v) {
      asio::post(wait->strand, [wait, e = std::move(e), v = std::move(v)]() mutable {
        wait->finish(std::move(e), false, std::move(v));
      });
    });
  }
};
}  // namespace

void Flight::on_done(asio::any_io_executor ex,
                     std::function<void(std::exception_ptr, std::shared_ptr<const void>)> fn) {
  WaitInitiation{state_}(asio::bind_executor(
      ex, [fn = std::move(fn)](std::exception_ptr e, std::shared_ptr<const void> v) {
        fn(std::move(e), std::move(v));
      }));
}

asio::awaitable<std::optional<std::shared_ptr<const void>>> Flight::wait_for(
    std::chrono::milliseconds limit) {
  // The flight's exception is rethrown here.
  auto [timed_out, value] =
      co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                    void(std::exception_ptr, bool, std::shared_ptr<const void>)>(
          TimedWaitInitiation{this, limit}, asio::use_awaitable);
  if (timed_out) co_return std::nullopt;
  co_return std::optional<std::shared_ptr<const void>>(std::move(value));
}

void Flight::complete(std::exception_ptr error, std::shared_ptr<const void> value) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(state_->mutex);
    state_->done = true;
    state_->error = error;
    state_->value = value;
    waiters.swap(state_->waiters);
  }
  for (auto& w : waiters)
    deliver(std::move(w), error, value);
}

namespace {
struct Registry {
  std::mutex mutex;
  std::set<const CacheCore*> cores;
};
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

CacheCore::CacheCore(RedisManager& manager, CachedOptions options)
    : manager_(manager.state()), options_(std::move(options)) {
  if (options_.name.empty())
    throw std::invalid_argument("cached(): options.name is required (C++ has no __qualname__)");
  if (options_.ttl.count() < 0)
    throw std::invalid_argument("cached(" + options_.name + "): ttl must be >= 0 (0 = no expiry)");
  if (options_.ttl_jitter.count() < 0)
    throw std::invalid_argument("cached(" + options_.name + "): ttl_jitter must be >= 0");
  if (options_.deadline.count() <= 0)
    throw std::invalid_argument("cached(" + options_.name + "): deadline must be positive");
  const auto bad = [this](const std::string& what) {
    return std::invalid_argument("cached(" + options_.name + "): " + what);
  };
  const double r = options_.early_refresh;
  if (!(r >= 0 && r < 1))  // NaN too
    throw bad("early_refresh must be 0 (off) or a fraction of the TTL in (0, 1), got " +
              std::to_string(r));
  if (options_.fail_safe_max.count() < 0) throw bad("fail_safe_max must be >= 0");
  if (options_.fail_safe_throttle.count() < 0) throw bad("fail_safe_throttle must be >= 0");
  if (options_.soft_timeout.count() < 0 || options_.hard_timeout.count() < 0)
    throw bad("soft_timeout and hard_timeout must be >= 0 (0: none)");
  if ((r > 0 || options_.fail_safe_max.count() > 0) && options_.ttl == no_expiry)
    throw bad("early_refresh and fail_safe_max need a TTL (ttl is no_expiry)");
  if (options_.soft_timeout.count() > 0 && options_.fail_safe_max.count() == 0)
    throw bad(
        "soft_timeout needs fail_safe_max > 0 (without it there is no stale value to return)");
  if (options_.soft_timeout.count() > 0 && options_.hard_timeout.count() > 0 &&
      options_.soft_timeout >= options_.hard_timeout)
    throw bad("soft_timeout must be shorter than hard_timeout");
  const bool manager_has = manager.near_store() != nullptr;
  switch (options_.near) {
    case NearCache::on:
      if (!manager_has)
        throw std::invalid_argument("cached(" + options_.name +
                                    "): near = NearCache::on needs a RedisManager whose "
                                    "ManagerOptions::near.enabled is true");
      near_ = manager.near_store();
      break;
    case NearCache::manager_default:
      if (manager_has && manager.options().near.default_on) near_ = manager.near_store();
      break;
    case NearCache::off:
      break;
  }
  std::lock_guard lock(registry().mutex);
  registry().cores.insert(this);
}

CacheCore::~CacheCore() {
  std::lock_guard lock(registry().mutex);
  registry().cores.erase(this);
}

void CacheCore::key_for_args(KeyBuffer& out, std::string_view args_json,
                             std::string_view kwargs_json) const {
  make_key(out, options_.key_prefix, options_.name, args_json, kwargs_json);
}

std::string CacheCore::key_with_prefix(std::string_view built) const {
  return options_.key_prefix + std::string(built);
}

CacheCore::Joined CacheCore::join(const std::string& key) {
  if (!options_.single_flight) return {nullptr, true};
  std::lock_guard lock(flights_mutex_);
  auto [it, inserted] = flights_.try_emplace(key, nullptr);
  if (inserted) return {nullptr, true};  // the Flight is made only when someone joins
  if (!it->second) it->second = std::make_shared<Flight>();
  joins_.fetch_add(1, std::memory_order_relaxed);
  return {it->second, false};
}

void CacheCore::finish(const std::string& key, std::exception_ptr error,
                       const std::function<std::shared_ptr<const void>()>& value) {
  if (!options_.single_flight) return;
  std::shared_ptr<Flight> flight;
  {
    std::lock_guard lock(flights_mutex_);
    auto it = flights_.find(key);
    if (it == flights_.end()) return;
    flight = std::move(it->second);
    flights_.erase(it);
  }
  if (flight) flight->complete(error, error ? nullptr : value());
}

void CacheCore::redis_error(const std::string& what) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  // At most one warning per 5 s per cached function, with the number held back.
  const auto now = Clock::now().time_since_epoch().count();
  auto last = last_warning_ns_.load(std::memory_order_relaxed);
  const std::int64_t period =
      std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(5)).count();
  if (last != 0 && now - last < period) {
    suppressed_warnings_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (!last_warning_ns_.compare_exchange_strong(last, now)) {
    suppressed_warnings_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto held_back = suppressed_warnings_.exchange(0);
  tempest::logger("tempest.cache")
      ->warn("cached({}): Redis unavailable, serving uncached results: {}{}", options_.name, what,
             held_back ? " (" + std::to_string(held_back) + " similar warnings held back)" : "");
}

void CacheCore::serve_stale(const std::string& key, const std::string& why) {
  stale_served_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(freshness_mutex_);
    const auto now = Clock::now();
    if (throttled_.size() >= 10000)  // keep the map bounded: forget expired throttles
      std::erase_if(throttled_, [now](const auto& kv) { return kv.second <= now; });
    throttled_.insert_or_assign(key, now + options_.fail_safe_throttle);
  }
  tempest::logger("tempest.cache")
      ->warn("cached({}) key={}: serving the stale value ({}); trying again in {} ms",
             options_.name, key, why, options_.fail_safe_throttle.count());
}

bool CacheCore::throttled(std::string_view key) {
  std::lock_guard lock(freshness_mutex_);
  auto it = throttled_.find(key);
  if (it == throttled_.end()) return false;
  if (it->second > Clock::now()) return true;
  throttled_.erase(it);
  return false;
}

bool CacheCore::claim_refresh(std::string_view key) {
  std::lock_guard lock(freshness_mutex_);
  const auto now = Clock::now();
  if (auto it = throttled_.find(key); it != throttled_.end() && it->second > now)
    return false;  // it failed a moment ago
  auto [it, inserted] = refreshing_.try_emplace(std::string(key), Clock::time_point::max());
  if (inserted) return true;
  if (it->second > now) return false;  // under way, or another process holds the lock
  it->second = Clock::time_point::max();
  return true;
}

void CacheCore::end_refresh(const std::string& key, std::exception_ptr error, bool lost_lock) {
  std::lock_guard lock(freshness_mutex_);
  const auto now = Clock::now();
  if (lost_lock) {
    // Another process refreshes it: leave the key alone for as long as it may take.
    refreshing_.insert_or_assign(key, now + options_.lock.wait);
  } else {
    refreshing_.erase(key);
  }
  if (refreshing_.size() >= 10000)  // keep the map bounded: forget ended hold-offs
    std::erase_if(refreshing_, [now](const auto& kv) { return kv.second <= now; });
  if (!error) return;
  refresh_failures_.fetch_add(1, std::memory_order_relaxed);
  throttled_.insert_or_assign(key, now + options_.fail_safe_throttle);
  tempest::logger("tempest.cache")
      ->warn(
          "cached({}) key={}: the early refresh failed ({}); the current value stays, "
          "trying again in {} ms",
          options_.name, key, what_of(error), options_.fail_safe_throttle.count());
}

std::shared_ptr<Flight> CacheCore::running(const std::string& key) {
  std::lock_guard lock(freshness_mutex_);
  auto it = running_.find(key);
  return it == running_.end() ? nullptr : it->second;
}

std::shared_ptr<Flight> CacheCore::start_running(const std::string& key) {
  auto flight = std::make_shared<Flight>();
  std::lock_guard lock(freshness_mutex_);
  running_.insert_or_assign(key, flight);
  return flight;
}

void CacheCore::stop_running(const std::string& key, const std::shared_ptr<Flight>& flight) {
  std::lock_guard lock(freshness_mutex_);
  if (auto it = running_.find(key); it != running_.end() && it->second == flight)
    running_.erase(it);
}

bool CacheCore::propagates(std::exception_ptr e) const {
  if (options_.on_redis_error != OnRedisError::propagate || !e) return false;
  try {
    std::rethrow_exception(std::move(e));
  } catch (const redis::Error&) {
    return true;
  } catch (...) {
    return false;
  }
}

void CacheCore::corrupt_value(std::string_view key, const std::string& problem) {
  corrupt_.fetch_add(1, std::memory_order_relaxed);
  tempest::logger("tempest.cache")
      ->warn(
          "cached_deserialization_failed: cached({}) key={} error={}; recomputing and overwriting",
          options_.name, key, problem);
}

void CacheCore::unserializable(const std::string& key, const std::string& problem) {
  unserializable_.fetch_add(1, std::memory_order_relaxed);
  tempest::logger("tempest.cache")
      ->warn("cached_serialization_failed: cached({}) key={} error={}; result returned uncached",
             options_.name, key, problem);
}

CacheStats CacheCore::stats() const {
  return CacheStats{hits_.load(),         misses_.load(),    errors_.load(),
                    corrupt_.load(),      joins_.load(),     unserializable_.load(),
                    lock_waits_.load(),   near_hits_.load(), breaker_skips_.load(),
                    stale_served_.load(), refreshes_.load(), refresh_failures_.load(),
                    timeouts_.load()};
}

// ---- freshness metadata ---------------------------------------------------------------------
// With early_refresh or fail_safe_max, a stored value is followed by a suffix of JSON whitespace
// (which json.loads, Boost.JSON and every JSON reader skip): a 4-character mark, then the times
// the entry is fresh until and due for a refresh at, in Unix ms, 21 base-4 digits each written
// as ' ', '\t', '\n', '\r'. A JSON value never ends in whitespace, so a plain entry (the Python
// SDK's, or one written without these options) is never mistaken for one with the suffix.
namespace {
constexpr std::string_view kMark = "\t\r\t\r";
constexpr std::size_t kTimeDigits = 21;  // 42 bits of ms: until the year 2109
constexpr std::size_t kSuffix = kMark.size() + 2 * kTimeDigits;
constexpr char kDigits[4] = {' ', '\t', '\n', '\r'};

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void append_time(std::string& out, std::int64_t ms) {
  const auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(ms, 0));
  for (std::size_t i = kTimeDigits; i-- > 0;)
    out += kDigits[(v >> (2 * i)) & 3];
}

// 8 digits at p as a 16-bit number, the first the most significant; false when a byte is not
// one of ours. A digit is its character's low two bits plus 2 for bit 2 (' ' 0x20 is 0, '\t'
// 0x09 1, '\n' 0x0A 2, '\r' 0x0D 3). The check writes the digits back as characters (0 to
// 0x20, others to 8 + d, plus 2 for 3: no byte carries into the next) and compares; then the
// digits are packed pairwise: 8 digits in two dozen operations.
constexpr std::uint64_t kOnes = 0x0101010101010101ull;
[[gnu::always_inline]] inline bool eight_digits(const char* p, std::uint64_t& out) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  const std::uint64_t d = (w & (kOnes * 3)) | ((w >> 1) & (kOnes * 2));
  const std::uint64_t b0 = d & kOnes, b1 = (d >> 1) & kOnes, nonzero = b0 | b1;
  if ((((nonzero << 3) + d + ((b0 & b1) << 1)) | ((nonzero ^ kOnes) << 5)) != w) return false;
  std::uint64_t x = __builtin_bswap64(d);  // the first digit in the top byte
  x = (x & 0x0003000300030003ull) | ((x >> 6) & 0x000C000C000C000Cull);
  x = (x & 0x0000000F0000000Full) | ((x >> 12) & 0x000000F0000000F0ull);
  out = (x & 0xFF) | ((x >> 24) & 0xFF00);
  return true;
}

// The two times after the mark, 21 digits each (8, 8, and the last 5 of the 8 that end them),
// every byte checked; false when one is not a digit.
bool read_times(const char* p, std::int64_t& first, std::int64_t& second) {
  static_assert(kTimeDigits == 21);
  std::uint64_t a, b, c, d, e, f;
  if (!eight_digits(p, a) || !eight_digits(p + 8, b) || !eight_digits(p + 13, c) ||
      !eight_digits(p + 21, d) || !eight_digits(p + 29, e) || !eight_digits(p + 34, f))
    return false;
  first = static_cast<std::int64_t>((a << 26) | (b << 10) | (c & 0x3FF));
  second = static_cast<std::int64_t>((d << 26) | (e << 10) | (f & 0x3FF));
  return true;
}
}  // namespace

}  // namespace tempest::cache::detail

namespace tempest::cache {
std::optional<EntryFreshness> read_freshness(std::string_view stored) {
  using namespace detail;
  if (stored.size() < kSuffix) return std::nullopt;
  const char* tail = stored.data() + stored.size() - kSuffix;
  EntryFreshness f;
  if (std::string_view(tail, kMark.size()) != kMark ||
      !read_times(tail + kMark.size(), f.fresh_until_ms, f.refresh_at_ms))
    return std::nullopt;
  f.suffix_bytes = kSuffix;
  return f;
}
}  // namespace tempest::cache

namespace tempest::cache::detail {

void CacheCore::settle(Lookup& found, std::chrono::steady_clock::time_point sent) const {
  std::string& v = *found.value;
  if (v.empty()) return;
  const char last = v.back();
  if (last != ' ' && last != '\t' && last != '\n' && last != '\r') return;  // a plain entry
  if (v.size() < kSuffix) return;
  const char* tail = v.data() + v.size() - kSuffix;
  std::int64_t fresh_until = 0, refresh_at = 0;
  if (std::string_view(tail, kMark.size()) != kMark ||
      !read_times(tail + kMark.size(), fresh_until, refresh_at))
    return;
  v.resize(v.size() - kSuffix);
  const std::int64_t now = wall_ms();
  if (now >= fresh_until) {
    // Expired, kept by another writer's (or our) fail_safe_max: a fallback for us only if we
    // have fail-safe on; otherwise a miss.
    if (options_.fail_safe_max.count() > 0) {
      found.freshness = Freshness::stale;
    } else {
      found.value.reset();
    }
    found.expires = sent;
    return;
  }
  if (near_ == nullptr) {
    if (options_.early_refresh > 0 && now >= refresh_at) found.freshness = Freshness::refresh_due;
    return;
  }
  std::int64_t fresh_for = fresh_until - now;
  if (options_.early_refresh > 0) {
    if (now >= refresh_at) {
      found.freshness = Freshness::refresh_due;
      found.expires = sent;
      return;
    }
    fresh_for = std::min(fresh_for, refresh_at - now);
  }
  found.expires = std::min(found.expires, sent + std::chrono::milliseconds(fresh_for));
}

std::string CacheCore::with_freshness(std::string payload, long long ttl_seconds) const {
  const bool meta = options_.early_refresh > 0 || options_.fail_safe_max.count() > 0;
  if (!meta || ttl_seconds <= 0) return payload;
  const std::int64_t now = wall_ms();
  const std::int64_t life = ttl_seconds * 1000;
  payload.reserve(payload.size() + kSuffix);
  payload += kMark;
  append_time(payload, now + life);
  append_time(payload, now + static_cast<std::int64_t>(options_.early_refresh > 0
                                                           ? options_.early_refresh *
                                                                 static_cast<double>(life)
                                                           : static_cast<double>(life)));
  return payload;
}

CacheCore::LookupStart CacheCore::begin_lookup(std::string_view key) {
  LookupStart start;
  CircuitBreaker* breaker = manager_->breaker.get();
  start.breaker_open = breaker != nullptr && !breaker->allow();
  if (start.breaker_open) {
    breaker_skips_.fetch_add(1, std::memory_order_relaxed);
    return start;
  }
  // The GET is made under the manager's lock from its client itself, not from a copy: the
  // awaitable holds the client's connection (a reference of its own, as every call's does), and
  // with use_awaitable nothing is sent, and no handler runs, before it is awaited (outside the
  // lock), so nothing can call back into the manager while the lock is held.
  manager_->with_client([&](const redis::Client* client) {
    start.has_client = client != nullptr;
    if (client == nullptr || !client->is_connected()) return;
    try {
      start.get =
          const_cast<redis::Client*>(client)->get(key, redis::CallOptions{options_.deadline});
    } catch (...) {
      start.failure = std::current_exception();
    }
  });
  return start;
}

void CacheCore::recycle(Lookup& found) noexcept {
  if (found.value) redis::detail::recycle_string(std::move(*found.value));
}

Lookup CacheCore::unavailable(const LookupStart& start) {
  // Known to be down (or the breaker is open): do not wait for Redis at all, and make the
  // exception only for callers that asked for it (fail-open calls pay nothing but the
  // rate-limited warning).
  std::string what;
  if (start.breaker_open) {
    what = "the circuit breaker is open (" + std::to_string(manager_->options.breaker.failures) +
           " Redis failures in a row)";
  } else {
    what = start.has_client ? "not connected" : "RedisManager::connect() was not called";
  }
  redis_error(what);
  if (options_.on_redis_error == OnRedisError::propagate)
    throw redis::ConnectionError("Redis " + (start.has_client && !start.breaker_open
                                                 ? what + " to " + manager_->config.redacted()
                                                 : what));
  return Lookup{std::nullopt, false};
}

void CacheCore::looked_up(Lookup& found) {
  if (CircuitBreaker* breaker = manager_->breaker.get()) breaker->record(true);
  found.redis_ok = true;
  if (found.value) settle(found, Clock::time_point{});
}

Lookup CacheCore::lookup_failed(const std::string& key, std::exception_ptr e) {
  CircuitBreaker* breaker = manager_->breaker.get();
  std::string what;
  try {
    std::rethrow_exception(e);
  } catch (const redis::ServerError& x) {
    const std::string_view m = x.what();
    if (!(m.starts_with("LOADING") || m.starts_with("MASTERDOWN") || m.starts_with("CLUSTERDOWN") ||
          m.starts_with("TRYAGAIN") || m.starts_with("BUSY"))) {
      // The key holds something GET cannot read (another type): a corrupt entry to overwrite.
      if (breaker != nullptr) breaker->record(true);  // Redis answered
      corrupt_value(key, x.what());
      return Lookup{std::nullopt, true, true};
    }
    // Redis cannot serve now (loading, no master, busy script): a failure, not a corrupt entry.
    what = x.what();
  } catch (const redis::Error& x) {
    what = x.what();
  }  // anything else is not Redis's: it propagates
  if (breaker != nullptr) breaker->record(false);
  redis_error(what);
  if (options_.on_redis_error == OnRedisError::propagate) std::rethrow_exception(e);
  return Lookup{std::nullopt, false};
}

asio::awaitable<Lookup> CacheCore::lookup(const std::string& key) {
  std::exception_ptr failure;
  if (near_ == nullptr) {
    LookupStart start = begin_lookup(key);
    if (start.failure) co_return lookup_failed(key, start.failure);
    if (!start.get.valid()) co_return unavailable(start);
    try {
      Lookup found;
      found.value = co_await std::move(start.get);
      looked_up(found);
      co_return found;
    } catch (...) {
      failure = std::current_exception();
    }
    co_return lookup_failed(key, failure);
  }
  std::optional<redis::Client> client;
  {
    CircuitBreaker* breaker = manager_->breaker.get();
    LookupStart start;
    start.breaker_open = breaker != nullptr && !breaker->allow();
    if (start.breaker_open) {
      breaker_skips_.fetch_add(1, std::memory_order_relaxed);
      co_return unavailable(start);
    }
    client = manager_->client();
    start.has_client = client.has_value();
    if (!usable(client)) co_return unavailable(start);
  }
  try {
    // The near cache keeps an entry no longer than Redis does: PTTL with the GET.
    const auto sent = Clock::now();
    auto r = co_await client->get_with_ttl(key, redis::CallOptions{options_.deadline});
    if (CircuitBreaker* breaker = manager_->breaker.get()) breaker->record(true);
    Lookup found{std::move(r.value), true};
    if (r.pttl >= 0) {
      found.expires = sent + std::chrono::milliseconds(r.pttl);
    } else if (r.pttl == -2) {
      found.expires = sent;  // gone by the time PTTL ran: not for the near cache
    }
    if (found.value) settle(found, sent);
    co_return found;
  } catch (...) {
    failure = std::current_exception();
  }
  co_return lookup_failed(key, failure);
}

asio::awaitable<void> unlink_doubtful(std::shared_ptr<const ManagerState> manager, std::string key,
                                      DoubtfulEntries::Clock::time_point until,
                                      std::chrono::milliseconds deadline);

asio::awaitable<void> CacheCore::store(const std::string& key, std::string payload,
                                       std::vector<std::string> tags,
                                       std::optional<std::chrono::seconds> ttl_for_this,
                                       bool only_if_exists) {
  auto client = manager_->client();
  CircuitBreaker* breaker = manager_->breaker.get();
  if (!usable(client) || (breaker != nullptr && breaker->open())) co_return;
  auto ttl = ttl_for_this.value_or(options_.ttl).count();
  // A TTL from ttl_for (a token's own expiry) is kept exact; the configured one is spread.
  if (ttl > 0 && !ttl_for_this && options_.ttl_jitter.count() > 0) {
    // Spread expiries: + a uniform 0..ttl_jitter seconds, per entry.
    thread_local std::minstd_rand rng(std::random_device{}());
    std::uniform_int_distribution<long long> extra(0, options_.ttl_jitter.count());
    ttl += extra(rng);
  }
  // The freshness times after the value; fail-safe: the entry stays this much longer, stale.
  payload = with_freshness(std::move(payload), ttl);
  if (ttl > 0) ttl += options_.fail_safe_max.count();
  redis::Pipeline p;
  if (ttl > 0 && only_if_exists) {
    p.add("SET", key, payload, "EX", ttl, "XX");
  } else if (ttl > 0) {
    p.add("SET", key, payload, "EX", ttl);
  } else if (only_if_exists) {
    p.add("SET", key, payload, "XX");
  } else {
    p.add("SET", key, payload);
  }
  // A registry set lives at least as long as every entry it indexes (the Python SDK's SADD +
  // EXPIRE can shorten it under a longer-lived entry, which then escapes invalidation): a new set
  // gets the entry's TTL, an existing one is only extended (EXPIRE GT: a set without expiry keeps
  // none), and an entry without expiry makes its sets persistent. One key per script: cluster-safe.
  // The entry first, then its registrations: an invalidation that takes a registration out
  // afterwards unlinks the entry too (registering first would let one run between the two and
  // leave the entry unregistered).
  std::vector<std::string> sets;
  auto registry = [&](const std::string& set) {
    p.add("EVAL", registry_script(), 1, set, key, ttl);
    sets.push_back(set);
  };
  if (!options_.ns.empty()) registry(namespace_set(options_.key_prefix, options_.ns));
  for (const auto& t : options_.tags)
    registry(tag_set(options_.key_prefix, t));
  for (const auto& t : tags)
    registry(tag_set(options_.key_prefix, t));
  const bool registered = p.size() > 1;
  std::exception_ptr failure;
  std::string what;
  bool set_refused = false;  // Redis answered the SET with an error: nothing was stored
  try {
    auto replies = co_await client->exec(p, redis::CallOptions{options_.deadline});
    if (breaker != nullptr) breaker->record(true);
    if (replies[0].is_error()) {
      set_refused = true;
      throw redis::ServerError(replies[0].str());
    }
    for (const auto& r : replies)
      if (r.is_error()) throw redis::ServerError(r.str());
    co_return;
  } catch (const redis::ServerError& e) {
    what = e.what();
    failure = std::current_exception();
  } catch (const redis::Error& e) {
    if (breaker != nullptr) breaker->record(false);
    what = e.what();
    failure = std::current_exception();
  }
  // Anything but a refused SET (a failed registration, the call cut off or given up midway, a
  // cluster that answered part of it) may leave the entry in Redis without its registrations.
  const bool maybe_unregistered = registered && !set_refused;
  if (maybe_unregistered) {
    // A registration failed where the SET may have held (on a cluster the sets live on other
    // nodes): the entry is taken out again rather than left where no invalidation can find it.
    bool removed = false;
    try {
      const redis::Keys doomed{key};
      (void)co_await client->unlink(doomed, redis::CallOptions{options_.deadline});
      removed = true;
    } catch (const redis::Error& e) {
      what += std::string("; the entry, which may be unregistered, could not be removed yet: ") +
              e.what();
    }
    if (!removed) {
      // Doubtful until Redis answers: this process's invalidations of its sets unlink it first,
      // and a background task keeps trying.
      const auto until = ttl > 0 ? DoubtfulEntries::Clock::now() + std::chrono::seconds(ttl)
                                 : DoubtfulEntries::Clock::time_point::max();
      if (manager_->doubtful.add(key, std::move(sets), until)) {
        asio::co_spawn(co_await asio::this_coro::executor,
                       unlink_doubtful(manager_, key, until, options_.deadline), asio::detached);
      } else {
        what += " (too many doubtful entries to track: it stays until its TTL ends)";
      }
    }
  }
  redis_error(what);
  if (options_.on_redis_error == OnRedisError::propagate) std::rethrow_exception(failure);
}

// Keeps trying to unlink a doubtful entry (after 100 ms, then twice as long each time, up to
// 2 s) until Redis answers, the entry's TTL has ended, or the manager has no client any more.
asio::awaitable<void> unlink_doubtful(std::shared_ptr<const ManagerState> manager, std::string key,
                                      DoubtfulEntries::Clock::time_point until,
                                      std::chrono::milliseconds deadline) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::chrono::milliseconds wait{100};
  while (DoubtfulEntries::Clock::now() < until && manager->doubtful.contains(key)) {
    timer.expires_after(wait);
    co_await timer.async_wait(asio::use_awaitable);
    auto client = manager->client();
    if (!client) break;
    try {
      const redis::Keys doomed{key};
      (void)co_await client->unlink(doomed, redis::CallOptions{deadline});
      break;
    } catch (const redis::Error&) {
    }
    wait = std::min(2 * wait, std::chrono::milliseconds(2000));
  }
  manager->doubtful.remove(key);
}

asio::awaitable<bool> CacheCore::still_there(const std::string& key) {
  auto client = manager_->client();
  if (!usable(client)) co_return true;  // cannot tell: the stale value answers
  try {
    const redis::Keys keys{key};
    co_return co_await client->exists(keys, redis::CallOptions{options_.deadline}) > 0;
  } catch (const redis::Error& e) {
    redis_error(e.what());
  }
  co_return true;
}

asio::awaitable<Lock> CacheCore::acquire_lock(const std::string& key) {
  Lock lock{key + ":lock", random_token(), false};
  auto client = manager_->client();
  if (!usable(client)) co_return lock;
  redis::SetOptions nx;
  nx.expire_millis = options_.lock.ttl;
  nx.condition = redis::SetCondition::if_not_exists;
  nx.timeout = options_.deadline;
  try {
    lock.acquired = co_await client->set(lock.key, lock.token, nx);
  } catch (const redis::Error& e) {
    redis_error(e.what());
    lock.acquired = false;
    lock.token.clear();  // no lock: compute without one
  }
  co_return lock;
}

asio::awaitable<std::optional<std::string>> CacheCore::wait_for_value(const std::string& key,
                                                                      const Lock& lock) {
  if (lock.token.empty()) co_return std::nullopt;  // could not even ask for the lock
  lock_waits_.fetch_add(1, std::memory_order_relaxed);
  const auto until = Clock::now() + options_.lock.wait;
  while (Clock::now() < until) {
    co_await sleep_for(options_.lock.poll);
    auto client = manager_->client();
    if (!usable(client)) co_return std::nullopt;
    try {
      redis::Pipeline p;
      p.add("GET", key).add("EXISTS", lock.key);
      auto r = co_await client->exec(p, redis::CallOptions{options_.deadline});
      if (r[0].is_string()) {
        Lookup found{std::move(r[0].str()), true};
        settle(found, Clock::now());
        if (found.value) co_return std::move(found.value);
      }
      if (r[1].is_integer() && r[1].integer() == 0) co_return std::nullopt;  // holder gave up
    } catch (const redis::Error& e) {
      redis_error(e.what());
      co_return std::nullopt;
    }
  }
  co_return std::nullopt;
}

asio::awaitable<void> CacheCore::release_lock(const Lock& lock) {
  if (!lock.acquired) co_return;
  auto client = manager_->client();
  if (!usable(client)) co_return;
  const redis::Keys keys{lock.key};
  const redis::Keys args{lock.token};
  try {
    (void)co_await client->run(release_script(), keys, args, redis::CallOptions{options_.deadline});
  } catch (const redis::Error& e) {
    redis_error(e.what());  // the lock expires by itself
  }
}

}  // namespace tempest::cache::detail

namespace tempest::cache {

std::vector<std::pair<std::string, CacheStats>> all_cache_stats() {
  std::map<std::string, CacheStats> by_name;
  {
    std::lock_guard lock(detail::registry().mutex);
    for (const auto* core : detail::registry().cores) {
      const auto s = core->stats();
      auto& t = by_name[core->options().name];
      t.hits += s.hits;
      t.misses += s.misses;
      t.errors += s.errors;
      t.corrupt += s.corrupt;
      t.joins += s.joins;
      t.unserializable += s.unserializable;
      t.lock_waits += s.lock_waits;
      t.near_hits += s.near_hits;
      t.breaker_skips += s.breaker_skips;
      t.stale_served += s.stale_served;
      t.refreshes += s.refreshes;
      t.refresh_failures += s.refresh_failures;
      t.timeouts += s.timeouts;
    }
  }
  return {by_name.begin(), by_name.end()};
}

}  // namespace tempest::cache
