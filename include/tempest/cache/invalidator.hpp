/// @file
/// CacheInvalidator: the Python SDK's methods and counts, plus invalidation by key prefix.
/// Every command touches one key, so it keeps working when keys live on different cluster slots
/// (the Python original's SUNION and multi-key DEL fail there with CROSSSLOT).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tempest/cache/manager.hpp"

namespace tempest::cache {

/// Removes cached entries by namespace, tag, key or key prefix (the Python SDK's
/// CacheInvalidator, plus prefixes). Thread-safe; cheap to construct.
class CacheInvalidator {
 public:
  /// `key_prefix` is the cached functions' CachedOptions::key_prefix, which names their registry
  /// sets ({key_prefix}__ns__:{ns}, {key_prefix}__tag__:{tag}).
  explicit CacheInvalidator(RedisManager& manager, std::string key_prefix = "");

  /// Deletes every entry registered under the namespace / tag(s) and the registry sets; returns
  /// the number of distinct entry keys that were registered (as the Python SDK does).
  ///@{
  asio::awaitable<std::size_t> invalidate_namespace(std::string_view ns);
  asio::awaitable<std::size_t> invalidate_tag(std::string_view tag);
  asio::awaitable<std::size_t> invalidate_tags(const std::vector<std::string>& tags);
  ///@}
  /// Deletes these keys; returns how many existed.
  asio::awaitable<std::size_t> invalidate_keys(const std::vector<std::string>& keys);
  /// Deletes every key that starts with `prefix` (SCAN MATCH in batches + UNLINK, never KEYS);
  /// returns how many were deleted. Glob characters in the prefix match literally.
  asio::awaitable<std::size_t> invalidate_prefix(std::string_view prefix);

  /// Keys per SCAN round trip and per UNLINK pipeline.
  std::size_t batch_size = 1000;

 private:
  asio::awaitable<std::size_t> invalidate_sets(std::vector<std::string> sets);
  asio::awaitable<std::size_t> unlink_all(const std::vector<std::string>& keys);

  RedisManager* manager_;
  std::string key_prefix_;
};

/// The registry sets: the Redis set listing the entry keys of namespace `ns`
/// ({key_prefix}__ns__:{ns}) and of tag `tag` ({key_prefix}__tag__:{tag}), as the Python SDK
/// names them; `key_prefix` is the cached functions' CachedOptions::key_prefix.
///@{
std::string namespace_set(std::string_view key_prefix, std::string_view ns);
std::string tag_set(std::string_view key_prefix, std::string_view tag);
///@}
/// Where an invalidation of `registry_set` parks the entry keys it took out of the set until
/// they are unlinked ({set}:pending, or {{set}}:pending when only that lands in the set's cluster
/// slot); empty when neither form does (the invalidation then pops members instead). A key listed
/// there is being, or was about to be, invalidated.
std::string pending_set(std::string_view registry_set);

/// Escapes the glob characters of a SCAN MATCH pattern (* ? [ ] \) so they match literally.
std::string escape_glob(std::string_view literal);

}  // namespace tempest::cache
