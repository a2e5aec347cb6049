// cached(manager, options, fn): memoizes a coroutine function in Redis, with keys that the
// Python SDK's @cached computes for the same name and arguments.
//
//   auto get_user_profile = tempest::cache::cached(
//       redis, {.name = "get_user_profile", .ttl = 300s, .key_prefix = "users:"},
//       [](std::string user_id) -> asio::awaitable<UserProfile> { ... });
//   UserProfile p = co_await get_user_profile("123");
//
// Fails open (Redis down or slow: the function runs), shares concurrent misses of one key
// (single-flight), never caches exceptions, and recovers from corrupt entries.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tempest/cache/codec.hpp"
#include "tempest/cache/detail/core.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/cache/options.hpp"

namespace tempest::cache {

namespace detail {
template <class T>
struct awaitable_value;
template <class T, class E>
struct awaitable_value<asio::awaitable<T, E>> {
  using type = T;
};

// The parameter list and result of a callable with one non-template call operator.
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

template <class F, class Codec, class T, class ArgsTuple>
class Cached;

template <class F, class Codec, class T, class... A>
class Cached<F, Codec, T, std::tuple<A...>> {
 public:
  using value_type = T;

  Cached(RedisManager& manager, CachedOptions options, F fn, Codec codec)
      : core_(std::make_shared<detail::CacheCore>(manager, std::move(options))),
        fn_(std::make_shared<F>(std::move(fn))),
        codec_(std::move(codec)) {}

  // Same parameters as the wrapped function (taken by value: they live across suspensions).
  asio::awaitable<T> operator()(A... args) const {
    return call(core_, fn_, codec_, skip_, tags_, key_builder_, std::move(args)...);
  }

  // A predicate over the arguments; true means no read and no write for that call.
  Cached skip_cache(std::function<bool(const A&...)> predicate) const {
    Cached copy = *this;
    copy.skip_ = std::make_shared<std::function<bool(const A&...)>>(std::move(predicate));
    return copy;
  }
  // Tags computed per call from the arguments (added to the static CachedOptions::tags).
  Cached tags(std::function<std::vector<std::string>(const A&...)> fn) const {
    Cached copy = *this;
    copy.tags_ =
        std::make_shared<std::function<std::vector<std::string>(const A&...)>>(std::move(fn));
    return copy;
  }
  // Like Python's key_builder: builds the key (before key_prefix) from the name and arguments.
  Cached key_builder(std::function<std::string(std::string_view name, const A&...)> fn) const {
    Cached copy = *this;
    copy.key_builder_ =
        std::make_shared<std::function<std::string(std::string_view, const A&...)>>(std::move(fn));
    return copy;
  }

  // The Redis key of a call with these arguments.
  std::string key(const A&... args) const { return key_of(*core_, key_builder_, args...); }
  CacheStats stats() const { return core_->stats(); }
  const CachedOptions& options() const { return core_->options(); }

 private:
  using Skip = std::shared_ptr<std::function<bool(const A&...)>>;
  using Tags = std::shared_ptr<std::function<std::vector<std::string>(const A&...)>>;
  using KeyBuilder = std::shared_ptr<std::function<std::string(std::string_view, const A&...)>>;

  static std::string key_of(const detail::CacheCore& core, const KeyBuilder& kb, const A&... args) {
    if (kb) return core.key_with_prefix((*kb)(core.options().name, args...));
    return core.key_for_args(encode_args(args...));
  }

  // Everything is passed by value: the Cached object may be gone before the call finishes.
  static asio::awaitable<T> call(std::shared_ptr<detail::CacheCore> core, std::shared_ptr<F> fn,
                                 Codec codec, Skip skip, Tags tags, KeyBuilder kb, A... args) {
    if (skip && (*skip)(args...)) co_return co_await (*fn)(args...);
    const std::string key = key_of(*core, kb, args...);
    const auto joined = core->join(key);
    if (!joined.leader) {
      std::shared_ptr<const void> shared = co_await joined.flight->wait();
      co_return *std::static_pointer_cast<const T>(shared);
    }
    std::vector<std::string> call_tags;
    if (tags) call_tags = (*tags)(args...);
    std::optional<T> result;
    std::exception_ptr error;
    try {
      result.emplace(co_await lead(core, fn, codec, key, std::move(call_tags), args...));
    } catch (...) {
      error = std::current_exception();
    }
    if (error) {
      core->finish(key, joined.flight, error, nullptr);  // exceptions are shared, never cached
      std::rethrow_exception(error);
    }
    if (joined.flight)
      core->finish(key, joined.flight, nullptr, std::make_shared<const T>(*result));
    co_return std::move(*result);
  }

  static std::optional<T> try_decode(detail::CacheCore& core, const Codec& codec,
                                     const std::string& key, const std::string& payload) {
    try {
      return std::optional<T>(codec.decode(payload));
    } catch (const std::exception& e) {
      core.corrupt_value(key, e.what());
    }
    return std::nullopt;
  }

  static asio::awaitable<T> lead(std::shared_ptr<detail::CacheCore> core, std::shared_ptr<F> fn,
                                 Codec codec, std::string key, std::vector<std::string> tags,
                                 A... args) {
    detail::Lookup found = co_await core->lookup(key);
    if (found.value) {
      if (auto hit = try_decode(*core, codec, key, *found.value)) {
        core->count_hit();
        co_return std::move(*hit);
      }
    } else if (found.redis_ok && !found.corrupt) {
      core->count_miss();
    }
    detail::Lock lock;
    if (found.redis_ok && core->options().lock.enabled) {
      lock = co_await core->acquire_lock(key);
      if (!lock.acquired) {
        auto theirs = co_await core->wait_for_value(key, lock);
        if (theirs) {
          if (auto value = try_decode(*core, codec, key, *theirs)) co_return std::move(*value);
        }
      }
    }
    std::optional<T> value;
    std::exception_ptr error;
    try {
      value.emplace(co_await (*fn)(args...));
    } catch (...) {
      error = std::current_exception();
    }
    if (!error) {
      std::optional<std::string> payload;
      try {
        payload = codec.encode(*value);
      } catch (const std::exception& e) {
        core->unserializable(key, e.what());
      }
      if (payload && found.redis_ok)
        co_await core->store(key, std::move(*payload), std::move(tags));
    }
    co_await core->release_lock(lock);
    if (error) std::rethrow_exception(error);
    co_return std::move(*value);
  }

  std::shared_ptr<detail::CacheCore> core_;
  std::shared_ptr<F> fn_;
  Codec codec_;
  Skip skip_;
  Tags tags_;
  KeyBuilder key_builder_;
};

// The result type of fn, which must return asio::awaitable<T>.
template <class F>
using cached_value_t =
    typename detail::awaitable_value<typename detail::signature<std::decay_t<F>>::result>::type;

template <class F, class Codec = JsonCodec<cached_value_t<F>>>
auto cached(RedisManager& manager, CachedOptions options, F fn, Codec codec = {}) {
  using Sig = detail::signature<std::decay_t<F>>;
  return Cached<std::decay_t<F>, Codec, cached_value_t<F>, typename Sig::args>(
      manager, std::move(options), std::move(fn), std::move(codec));
}

}  // namespace tempest::cache
