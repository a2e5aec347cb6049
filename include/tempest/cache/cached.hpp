/// @file
/// cached(manager, options, fn): memoizes a coroutine function in Redis, with keys that the
/// Python SDK's \@cached computes for the same name and arguments.
///
///   auto get_user_profile = tempest::cache::cached(
///       redis, {.name = "get_user_profile", .ttl = 300s, .key_prefix = "users:"},
///       [](std::string user_id) -> asio::awaitable<UserProfile> { ... });
///   UserProfile p = co_await get_user_profile("123");
///
/// Fails open (Redis down or slow: the function runs), shares concurrent misses of one key
/// (single-flight), never caches exceptions, and recovers from corrupt entries.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "tempest/cache/codec.hpp"
#include "tempest/cache/detail/core.hpp"
#include "tempest/cache/detail/near_store.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/cache/options.hpp"

namespace tempest::cache {

/// A cached function ran longer than CachedOptions::hard_timeout (and no stale value could answer).
class FactoryTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @cond INTERNAL
namespace detail {
/// The message of an exception of any type.
std::string what_of(std::exception_ptr e);

/// Arguments that refer to data they do not own.
template <class T>
struct non_owning : std::is_pointer<T> {};
template <class C, class Tr>
struct non_owning<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T, std::size_t N>
struct non_owning<std::span<T, N>> : std::true_type {};
template <class T>
struct non_owning<std::reference_wrapper<T>> : std::true_type {};

template <class T>
struct awaitable_value;
template <class T, class E>
struct awaitable_value<asio::awaitable<T, E>> {
  using type = T;
};

/// The parameter list and result of a callable with one non-template call operator.
template <class F>
struct signature : signature<decltype(&F::operator())> {};
template <class R, class... A>
struct signature<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};
template <class C, class R, class... A>
struct signature<R (C::*)(A...)> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...) const> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...) noexcept> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...) const noexcept> : signature<R (*)(A...)> {};
}  // namespace detail
/// @endcond

template <class F, class Codec, class T, class ArgsTuple>
class Cached;

/// A function memoized in Redis: what cached() returns. Call it like the function it wraps;
/// copies are cheap and share the function, its options and its counters. Thread-safe.
template <class F, class Codec, class T, class... A>
class Cached<F, Codec, T, std::tuple<A...>> {
 public:
  using value_type = T;  ///< the wrapped function's result (of its awaitable)

  /// Use cached(). Throws std::invalid_argument for inconsistent options.
  Cached(RedisManager& manager, CachedOptions options, F fn, Codec codec)
      : state_(std::make_shared<const State>(
            State{std::make_shared<detail::CacheCore>(manager, std::move(options)),
                  std::move(fn),
                  std::move(codec),
                  {},
                  {},
                  {},
                  {},
                  {},
                  {}})) {
    const CachedOptions& o = state_->core->options();
    if (!copyable_args &&
        (o.early_refresh > 0 || o.soft_timeout.count() > 0 || o.hard_timeout.count() > 0))
      throw std::invalid_argument("cached(" + o.name +
                                  "): early_refresh and timeouts run the function in the "
                                  "background, with copies of its arguments: these must be "
                                  "copyable and own their data (not std::string_view, "
                                  "std::span or pointers)");
  }

  /// Same parameters as the wrapped function (taken by value: they live across suspensions).
  asio::awaitable<T> operator()(A... args) const { return call(state_, std::move(args)...); }

  /// A predicate over the arguments; true means no read and no write for that call.
  Cached skip_cache(std::function<bool(const A&...)> predicate) const {
    return with([&](State& s) { s.skip = std::move(predicate); });
  }
  /// Tags computed per call from the arguments (added to the static CachedOptions::tags).
  Cached tags(std::function<std::vector<std::string>(const A&...)> fn) const {
    return with([&](State& s) { s.tags = std::move(fn); });
  }
  /// Like Python's key_builder: builds the key (before key_prefix) from the name and arguments.
  Cached key_builder(std::function<std::string(std::string_view name, const A&...)> fn) const {
    return with([&](State& s) { s.key_builder = std::move(fn); });
  }

  /// The last names.size() parameters are keyword arguments with these names (in parameter
  /// order), as in the Python original's `def f(user_id, *, fresh=False)`: a call's key then holds
  /// them under "kwargs", and an empty std::optional among them counts as not passed. Throws
  /// std::invalid_argument for more names than parameters, or an empty or repeated name.
  Cached kwargs(std::vector<std::string> names) const {
    if (names.size() > sizeof...(A))
      throw std::invalid_argument("cached(" + options().name +
                                  ").kwargs(): " + std::to_string(names.size()) + " names for " +
                                  std::to_string(sizeof...(A)) + " parameters");
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i].empty())
        throw std::invalid_argument("cached(" + options().name + ").kwargs(): an empty name");
      for (std::size_t j = 0; j < i; ++j)
        if (names[j] == names[i])
          throw std::invalid_argument("cached(" + options().name + ").kwargs(): \"" + names[i] +
                                      "\" given twice");
    }
    return with([&](State& s) { s.keyword_names = std::move(names); });
  }

  /// Whether a result is stored (false: returned uncached), e.g. not an empty list.
  Cached cache_if(std::function<bool(const T&)> predicate) const {
    return with([&](State& s) { s.cache_if = std::move(predicate); });
  }
  /// The TTL of a result's entry (instead of CachedOptions::ttl; no_expiry: none; negative: the
  /// result is not stored), e.g. from a token's own expiry.
  Cached ttl_for(std::function<std::chrono::seconds(const T&)> fn) const {
    return with([&](State& s) { s.ttl_for = std::move(fn); });
  }

  /// The Redis key of a call with these arguments.
  std::string key(const A&... args) const { return key_of(*state_, args...); }
  /// This function's counters.
  CacheStats stats() const { return state_->core->stats(); }
  /// The options it was made with.
  const CachedOptions& options() const { return state_->core->options(); }

 private:
  /// Everything a call needs, shared by the copies of this Cached and by calls in progress.
  struct State {
    std::shared_ptr<detail::CacheCore> core;
    F fn;
    Codec codec;
    std::function<bool(const A&...)> skip;
    std::function<std::vector<std::string>(const A&...)> tags;
    std::function<std::string(std::string_view, const A&...)> key_builder;
    std::vector<std::string> keyword_names;
    std::function<bool(const T&)> cache_if;
    std::function<std::chrono::seconds(const T&)> ttl_for;
  };

  template <class Change>
  Cached with(Change change) const {
    auto s = std::make_shared<State>(*state_);
    change(*s);
    Cached copy = *this;
    copy.state_ = std::move(s);
    return copy;
  }

  static std::string key_of(const State& s, const A&... args) {
    detail::KeyBuffer key;
    key_into(s, key, args...);
    return key.str();
  }

  /// The key of a call, built in place (a hit allocates nothing for it).
  static void key_into(const State& s, detail::KeyBuffer& out, const A&... args) {
    if (s.key_builder) {
      out.assign(s.core->key_with_prefix(s.key_builder(s.core->options().name, args...)));
    } else if (!s.keyword_names.empty()) {
      const auto [a, kw] = encode_call(s.keyword_names, args...);
      s.core->key_for_args(out, a, kw);
    } else if constexpr (detail::plain_integer_args<A...>) {
      // Integer arguments: their JSON written on the stack (encode_args' own fast path, without
      // the std::string).
      char json[detail::plain_integer_args_room(sizeof...(A))];
      s.core->key_for_args(out,
                           std::string_view(json, detail::write_plain_integer_args(json, args...)));
    } else {
      s.core->key_for_args(out, encode_args(args...));
    }
  }

  static std::optional<T> try_decode(const State& s, std::string_view key,
                                     const std::string& payload) {
    std::optional<T> out;
    decode_into(s, key, payload, out);
    return out;
  }
  /// Decodes into `out` (left empty when the payload is unreadable: counted, logged): the value
  /// is moved once fewer than through a returned optional.
  static void decode_into(const State& s, std::string_view key, const std::string& payload,
                          std::optional<T>& out) {
    try {
      if constexpr (requires { s.codec.decode_into(std::string_view(payload), out); })
        s.codec.decode_into(std::string_view(payload), out);
      else
        out.emplace(s.codec.decode(payload));
    } catch (const std::exception& e) {
      out.reset();
      s.core->corrupt_value(key, e.what());
    }
  }

  /// Background work (early refresh, a computation that outlives its timeout) takes copies of
  /// the arguments: they must own what they hold (not a std::string_view, std::span or pointer
  /// into the caller's data, which may be gone by then).
  static constexpr bool copyable_args =
      ((std::is_copy_constructible_v<A> && !detail::non_owning<A>::value) && ...);

  /// A hit costs one GET and no coordination. A miss joins the key's flight: the first caller
  /// computes (after one more GET, in case a flight just ended), the others wait for its result.
  /// Everything but a plain hit goes on in a coroutine of its own (`rest`): asio reuses coroutine
  /// frames only up to 1 KiB, so a hit's frame stays under that and costs no allocation.
  static asio::awaitable<T> call(std::shared_ptr<const State> st, A... args) {
    detail::CacheCore& core = *st->core;
    asio::awaitable<T> rest;
    detail::KeyBuffer key;  // inline: a hit allocates nothing for its key
    if (st->skip && st->skip(args...)) {
      rest = st->fn(args...);
    } else if (detail::NearStore* near = core.near()) {
      // A near hit is answered here: its key built in place, no coroutine frame of its own.
      key_into(*st, key, args...);
      if (auto v = near->get(key.view(), detail::NearStore::Clock::now(), typeid(T))) {
        core.count_near_hit();
        co_return *static_cast<const T*>(v.get());
      }
      rest = near_call(st, key.str(), args...);
    } else {
      key_into(*st, key, args...);
      detail::Lookup found;
      // core.lookup(key) in steps: the GET is awaited here, one coroutine frame less per call.
      auto start = core.begin_lookup(key.view());
      if (start.get.valid()) {
        std::exception_ptr failure;
        try {
          found.value = co_await std::move(start.get);
          core.looked_up(found);
        } catch (...) {
          failure = std::current_exception();
        }
        if (failure) found = core.lookup_failed(key.str(), failure);
      } else if (start.failure) {
        found = core.lookup_failed(key.str(), start.failure);
      } else {
        found = core.unavailable(start);
      }
      Judged j = judge(*st, key.view(), found);
      if (j.answer && !j.refresh) {
        detail::CacheCore::recycle(found);  // decoded: the reply's buffer serves a later one
        co_return std::move(*j.value);
      }
      rest = j.answer ? refreshed(st, key.str(), std::move(*j.value), args...)
                      : miss(st, key.str(), std::move(found), std::move(j.value), args...);
    }
    co_return co_await std::move(rest);
  }

  /// What a lookup means for the call: `answer`: `value` is it (`refresh`: after starting an early
  /// refresh); otherwise the call computes, with `value` (when set) its stale fallback.
  struct Judged {
    std::optional<T> value;
    bool answer = false;
    bool refresh = false;
  };
  static Judged judge(const State& st, std::string_view key, const detail::Lookup& found) {
    Judged j;
    if (!found.value) return j;
    decode_into(st, key, *found.value, j.value);
    if (!j.value) return j;
    detail::CacheCore& core = *st.core;
    if (found.freshness != detail::Freshness::stale) {
      core.count_hit();
      j.answer = true;
      j.refresh = found.freshness == detail::Freshness::refresh_due && copyable_args &&
                  core.claim_refresh(key);
    } else if (core.throttled(key)) {  // the function failed a moment ago: the stale value
      core.count_stale();
      j.answer = true;
    }
    return j;
  }

  /// A call with a near cache that missed it (call() serves a near hit, with no Redis round trip
  /// at all): reads Redis and fills the near cache.
  static asio::awaitable<T> near_call(std::shared_ptr<const State> st, std::string key, A... args) {
    detail::CacheCore& core = *st->core;
    detail::NearStore& near = *core.near();
    const detail::NearStore::Ticket ticket = near.begin_read(key);  // before the GET: see put()
    detail::Lookup found = co_await core.lookup(key);
    Judged j = judge(*st, key, found);
    if (j.answer && found.freshness == detail::Freshness::fresh && ticket.tracked)
      near.put(key, ticket, std::make_shared<const T>(*j.value), typeid(T), found.value->size(),
               found.expires);
    if (j.answer && !j.refresh) co_return std::move(*j.value);
    if (j.answer) co_return co_await refreshed(st, std::move(key), std::move(*j.value), args...);
    co_return co_await miss(st, std::move(key), std::move(found), std::move(j.value), args...);
  }

  /// Early refresh: starts the background recomputation, answers with the current value.
  static asio::awaitable<T> refreshed(std::shared_ptr<const State> st, std::string key, T value,
                                      A... args) {
    if constexpr (copyable_args) {
      auto ex = co_await asio::this_coro::executor;
      asio::co_spawn(ex, refresh(st, std::move(key), args...), asio::detached);
    }
    co_return std::move(value);
  }

  /// No fresh value: join the key's flight, or lead it.
  static asio::awaitable<T> miss(std::shared_ptr<const State> st, std::string key,
                                 detail::Lookup found, std::optional<T> stale, A... args) {
    detail::CacheCore& core = *st->core;
    const auto joined = core.join(key);
    if (!joined.leader) {
      std::shared_ptr<const void> shared = co_await joined.flight->wait();
      co_return *std::static_pointer_cast<const T>(shared);
    }
    std::optional<T> result;
    std::exception_ptr error;
    try {
      result.emplace(co_await lead(st, key, std::move(found), std::move(stale), args...));
    } catch (...) {
      error = std::current_exception();
    }
    // Exceptions are shared with the joiners, never cached.
    core.finish(key, error, [&result] { return std::make_shared<const T>(*result); });
    if (error) std::rethrow_exception(error);
    co_return std::move(*result);
  }

  /// The leader of a miss (or of an expired entry's recomputation); `key` outlives it.
  static asio::awaitable<T> lead(const std::shared_ptr<const State>& sp, const std::string& key,
                                 detail::Lookup found, std::optional<T> stale, const A&... args) {
    const State& st = *sp;
    detail::CacheCore& core = *st.core;
    if (found.redis_ok && !found.corrupt && (!found.value || stale) &&
        core.options().single_flight) {
      // Another flight may have stored the value since our GET.
      detail::Lookup again = co_await core.lookup(key);
      if (again.value) {
        if (auto hit = try_decode(st, key, *again.value)) {
          if (again.freshness != detail::Freshness::stale) {
            core.count_hit();
            co_return std::move(*hit);
          }
          stale = std::move(hit);
        }
      } else if (again.redis_ok) {
        stale.reset();  // gone (invalidated): not to be served
      }
      if (again.redis_ok) {
        found = std::move(again);
      } else {
        found.redis_ok = false;  // Redis just failed: no lock, no write (each would wait too)
      }
    }
    if (found.redis_ok && !found.corrupt) core.count_miss();
    detail::Lock lock;
    if (found.redis_ok && core.options().lock.enabled) {
      lock = co_await core.acquire_lock(key);
      if (!lock.acquired) {
        if (stale && !lock.token.empty()) {  // another process recomputes it
          core.count_stale();
          co_return std::move(*stale);
        }
        auto theirs = co_await core.wait_for_value(key, lock);
        if (theirs) {
          if (auto value = try_decode(st, key, *theirs)) co_return std::move(*value);
        }
      }
    }
    // An expired entry is replaced only if it is still there: an invalidation meanwhile wins.
    const Store store = !found.redis_ok ? Store::no : stale ? Store::replace : Store::set;
    std::optional<T> value;
    std::exception_ptr error;
    try {
      value = co_await run(sp, key, store, std::move(lock), stale.has_value(), args...);
    } catch (...) {
      error = std::current_exception();
    }
    // Fail-safe: the function threw or took too long (a Redis error that is to propagate is not
    // the function's).
    if (stale && (!value || (error && !core.propagates(error)))) {
      // Unless it was invalidated meanwhile.
      if (!found.redis_ok || co_await core.still_there(key)) {
        core.serve_stale(key, error ? detail::what_of(error) : std::string("a timeout"));
        co_return std::move(*stale);
      }
      if (!error)
        throw FactoryTimeout("cached(" + core.options().name +
                             "): the function took longer than the timeout, and the expired "
                             "entry was invalidated meanwhile");
    }
    if (error) std::rethrow_exception(error);
    co_return std::move(*value);
  }

  /// Whether and how compute() stores its result.
  enum class Store : std::uint8_t {
    no,       // Redis failed: do not write
    set,      // SET
    replace,  // SET XX: only over the entry it recomputes (an invalidation meanwhile wins)
  };

  /// Runs the function under the timeouts, if any: nullopt when it gave up waiting and a stale
  /// value can answer (the computation goes on in the background and stores its result). A key's
  /// computation that outlived an earlier caller's timeout is waited for, not started again.
  static asio::awaitable<std::optional<T>> run(const std::shared_ptr<const State>& sp,
                                               const std::string& key, Store store,
                                               detail::Lock lock, bool has_stale,
                                               const A&... args) {
    detail::CacheCore& core = *sp->core;
    const CachedOptions& o = core.options();
    const auto limit = has_stale && o.soft_timeout.count() > 0 ? o.soft_timeout : o.hard_timeout;
    if constexpr (copyable_args) {
      if (limit.count() > 0) {
        auto outcome = core.running(key);
        if (outcome) {
          co_await core.release_lock(lock);
        } else {
          outcome = core.start_running(key);
          auto ex = co_await asio::this_coro::executor;
          asio::co_spawn(ex, compute_to(sp, key, store, std::move(lock), outcome, args...),
                         asio::detached);
        }
        auto done = co_await outcome->wait_for(limit);
        if (done) co_return *std::static_pointer_cast<const T>(*done);
        core.count_timeout();
        if (has_stale) co_return std::nullopt;
        throw FactoryTimeout("cached(" + o.name + "): the function took longer than " +
                             std::to_string(o.hard_timeout.count()) +
                             " ms (hard_timeout); it goes on in the background, and its result "
                             "is stored if it can be");
      }
    }
    co_return co_await compute(*sp, key, store, std::move(lock), args...);
  }

  static asio::awaitable<void> compute_to(std::shared_ptr<const State> sp, std::string key,
                                          Store store, detail::Lock lock,
                                          std::shared_ptr<detail::Flight> outcome, A... args) {
    std::shared_ptr<const void> value;
    std::exception_ptr error;
    try {
      T result = co_await compute(*sp, key, store, std::move(lock), args...);
      value = std::make_shared<const T>(std::move(result));
    } catch (...) {
      error = std::current_exception();
    }
    sp->core->stop_running(key, outcome);
    outcome->complete(error, std::move(value));
  }

  /// Early refresh, in the background: recomputes the key and replaces its entry (if it is still
  /// there) unless it turns out fresh (another caller or process refreshed it) or, with the lock,
  /// another process holds it (then this process leaves the key alone for lock.wait).
  static asio::awaitable<void> refresh(std::shared_ptr<const State> sp, std::string key,
                                       A... args) {
    detail::CacheCore& core = *sp->core;
    std::exception_ptr error;
    detail::Lock lock;
    bool computed = false;
    bool lost = false;
    try {
      bool go = true;
      if (core.options().lock.enabled) {
        lock = co_await core.acquire_lock(key);
        go = lock.acquired;
        lost = !go;
      }
      if (go) {
        const detail::Lookup now = co_await core.lookup(key);
        go = now.redis_ok && now.value && now.freshness != detail::Freshness::fresh;
      }
      if (go) {
        core.count_refresh();
        computed = true;  // compute() releases the lock
        (void)co_await compute(*sp, key, Store::replace, std::move(lock), args...);
      }
    } catch (...) {
      error = std::current_exception();
    }
    if (!computed) co_await core.release_lock(lock);
    core.end_refresh(key, error, lost);
  }

  /// Runs the function and stores its result (as `store` says, unless the codec or a callback
  /// refuses), then releases the lock, also when storing throws (OnRedisError::propagate). The
  /// result, or the exception of the function (or of storing).
  static asio::awaitable<T> compute(const State& st, const std::string& key, Store store,
                                    detail::Lock lock, const A&... args) {
    detail::CacheCore& core = *st.core;
    std::optional<T> value;
    std::exception_ptr error;
    try {
      value.emplace(co_await st.fn(args...));
    } catch (...) {
      error = std::current_exception();
    }
    if (!error) {
      std::optional<std::string> payload;
      try {
        payload = st.codec.encode(*value);
      } catch (const std::exception& e) {
        core.unserializable(key, e.what());
      }
      std::vector<std::string> call_tags;
      std::optional<std::chrono::seconds> ttl;
      try {
        if (payload && st.cache_if && !st.cache_if(*value)) payload.reset();
        if (payload && st.ttl_for) {
          ttl = st.ttl_for(*value);
          if (ttl->count() < 0) payload.reset();
        }
        if (st.tags) call_tags = st.tags(args...);
      } catch (...) {
        // Returned uncached (an entry outside its registry sets could not be invalidated), and
        // the lock is still released below.
        core.unserializable(key, std::string("a cache_if / ttl_for / tags callback threw: ") +
                                     detail::what_of(std::current_exception()));
        payload.reset();
      }
      if (payload && store != Store::no) {
        try {
          co_await core.store(key, std::move(*payload), std::move(call_tags), ttl,
                              store == Store::replace);
        } catch (...) {
          error = std::current_exception();
        }
      }
    }
    co_await core.release_lock(lock);
    if (error) std::rethrow_exception(error);
    co_return std::move(*value);
  }

  std::shared_ptr<const State> state_;
};

/// The result type of fn, which must return asio::awaitable<T>.
template <class F>
using cached_value_t =
    typename detail::awaitable_value<typename detail::signature<std::decay_t<F>>::result>::type;

/// Memoizes the coroutine function `fn` (a lambda or function returning asio::awaitable<T>) in
/// `manager`'s Redis, under the Python SDK's key for CachedOptions::name and the arguments:
///
///     auto get_user = tc::cached(manager, {.name = "get_user", .ttl = 300s},
///                                [](int id) -> asio::awaitable<User> { co_return load(id); });
///     User u = co_await get_user(7);
///
/// A hit returns the stored value; a miss runs `fn`, stores its result (encoded by `codec`, JSON
/// by default) and registers the key in its namespace and tag sets. Redis down: `fn` runs (see
/// OnRedisError). Throws std::invalid_argument for inconsistent options.
template <class F, class Codec = JsonCodec<cached_value_t<F>>>
auto cached(RedisManager& manager, CachedOptions options, F fn, Codec codec = {}) {
  using Sig = detail::signature<std::decay_t<F>>;
  return Cached<std::decay_t<F>, Codec, cached_value_t<F>, typename Sig::args>(
      manager, std::move(options), std::move(fn), std::move(codec));
}

}  // namespace tempest::cache
