/// @file
/// The Python SDK's ResponseCacheMiddleware in C++: a strong ETag on every cacheable response,
/// If-None-Match answered with 304, Cache-Control, and an opt-in store of whole responses that
/// answers later requests without running the handler (X-Cache: HIT). The Redis store reads and
/// writes the Python store's keys and values, so C++ and Python services share cached responses.
///
///   auto store = std::make_shared<th::RedisResponseCacheStore>(redis);
///   app.use(th::response_cache({.store = store, .ttl = 30s}));
///   ...
///   co_await store->invalidate_prefix("GET|/users/7|");   // after a write to user 7
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tempest/http/types.hpp"

namespace tempest::cache {
class RedisManager;
}

namespace tempest::http {

/// A whole response as a store keeps it (the Python SDK's CachedResponse).
struct CachedResponse {
  unsigned status_code = 200;  ///< the status
  /// Lower-case names, in order: content-length, content-type, the handler's own, then etag,
  /// cache-control and vary as the middleware set them.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                       ///< the body bytes
  std::optional<std::string> media_type;  ///< the Content-Type, as Starlette's media_type
};

/// Where whole responses live. Keys are the middleware's: METHOD|path|query|vary...|cred=...
/// A store that cannot answer (Redis down) returns nullopt from get() and drops set(): the request
/// is then served by its handler, never failed by the cache.
class ResponseCacheStore {
 public:
  virtual ~ResponseCacheStore() = default;
  /// The entry stored under `key`; nullopt when there is none (or the store cannot answer).
  virtual asio::awaitable<std::optional<CachedResponse>> get(std::string key) = 0;
  /// Stores `response` under `key` for `ttl`.
  virtual asio::awaitable<void> set(std::string key, CachedResponse response,
                                    std::chrono::seconds ttl) = 0;
  /// Drops every entry whose key starts with key_prefix ("GET|/users/7|": every cached GET of
  /// /users/7, whatever its query); returns how many. An empty prefix is refused
  /// (std::invalid_argument): it would drop everything.
  virtual asio::awaitable<std::size_t> invalidate_prefix(std::string key_prefix) = 0;
};

/// In this process only (one App; not shared with other processes or services). At most
/// max_entries live entries: when full, expired ones are dropped, and a new response is not
/// stored while it stays full.
class MemoryResponseCacheStore : public ResponseCacheStore {
 public:
  /// An empty store holding at most `max_entries` entries.
  explicit MemoryResponseCacheStore(std::size_t max_entries = 10000);
  ~MemoryResponseCacheStore() override;
  /// See ResponseCacheStore.
  ///@{
  asio::awaitable<std::optional<CachedResponse>> get(std::string key) override;
  asio::awaitable<void> set(std::string key, CachedResponse response,
                            std::chrono::seconds ttl) override;
  asio::awaitable<std::size_t> invalidate_prefix(std::string key_prefix) override;
  ///@}
  /// Entries held now (expired ones included until they are dropped).
  std::size_t size() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// In Redis, as the Python SDK's RedisResponseCacheStore: key prefix + key, value the JSON
/// `{"status_code": ..., "headers": [[name, value], ...], "body": "<base64>", "media_type": ...}`,
/// SET with EX ttl. Works on a standalone Redis and on a Cluster (invalidation scans every master).
class RedisResponseCacheStore : public ResponseCacheStore {
 public:
  /// Entries go to `manager`'s Redis under `prefix` + key (the Python store's default prefix).
  explicit RedisResponseCacheStore(cache::RedisManager& manager, std::string prefix = "respcache:");
  /// See ResponseCacheStore.
  ///@{
  asio::awaitable<std::optional<CachedResponse>> get(std::string key) override;
  asio::awaitable<void> set(std::string key, CachedResponse response,
                            std::chrono::seconds ttl) override;
  asio::awaitable<std::size_t> invalidate_prefix(std::string key_prefix) override;
  ///@}

 private:
  cache::RedisManager* manager_;
  std::string prefix_;
};

/// The Python middleware's options, with its defaults.
struct ResponseCacheOptions {
  /// Whole responses are kept here and served without running the handler; without a store only
  /// the ETag / 304 handling applies (the handler always runs).
  std::shared_ptr<ResponseCacheStore> store{};
  std::chrono::seconds ttl{60};  ///< the store's TTL and the default max-age; must be positive
  std::optional<std::chrono::seconds> max_age{};  ///< Cache-Control max-age (default: ttl)
  /// The Cache-Control sent; default "private, max-age=<max_age>" (a shared proxy must not keep
  /// a response the middleware cannot know to be the same for everyone).
  std::optional<std::string> cache_control{};
  std::vector<std::string> methods = {"GET", "HEAD"};  ///< only these (safe) methods are cached
  std::vector<unsigned> cacheable_status = {200};      ///< only responses with these are stored
  /// Request headers that are part of the key, and sent as Vary.
  std::vector<std::string> vary{};
  std::vector<std::string> exempt_paths{};  ///< exact paths left alone
  /// Requests for which it returns false are left alone (request.route and params are set).
  std::function<bool(const Request&)> cacheable{};
  /// A request with Authorization or Cookie never reads or writes the store unless this is true;
  /// then a SHA-256 of those headers is part of the key, so each caller has its own entry.
  bool cache_credentialed = false;
};

/// The middleware, for App::use(). Throws std::invalid_argument naming a bad option.
Middleware response_cache(ResponseCacheOptions options);

namespace detail {
/// The pieces the Python middleware computes, exposed for tests.
std::string strong_etag(std::string_view body);  // "\"<sha256 hex>\""
bool etag_matches(std::string_view if_none_match, std::string_view etag);
std::string response_cache_key(const Request& request, const std::vector<std::string>& vary,
                               bool with_credentials);
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);  // nullopt: not base64
/// The store's value, as Python's json.dumps writes it (header bytes as Latin-1 code points).
std::string encode_cached_response(const CachedResponse& response);
std::optional<CachedResponse> decode_cached_response(std::string_view json);  // nullopt: invalid
}  // namespace detail

}  // namespace tempest::http
