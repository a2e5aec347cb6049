// What `tempest inspect` needs to read a cache entry as the library stores it: the names of the
// namespace/tag registry sets (and their invalidation "pending" sets), the freshness suffix that
// early_refresh / fail_safe_max append to a value, and a readable rendering of the value.
//
// The rules themselves are the library's (namespace_set / tag_set / pending_set in
// tempest/cache/invalidator.hpp, read_freshness in tempest/cache/freshness.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tempest/cache/invalidator.hpp"

namespace tempest::cli {

using cache::namespace_set;
using cache::pending_set;
using cache::tag_set;

// ---- registry sets --------------------------------------------------------------------------
// The set names are the library's (tempest/cache/invalidator.hpp: namespace_set, tag_set,
// pending_set); this reads them back.
struct RegistrySetName {
  enum class Kind { ns, tag };
  Kind kind = Kind::ns;
  std::string key_prefix;  // what comes before "__ns__:" / "__tag__:"
  std::string label;       // the namespace or the tag
  std::string registry;    // the registry set's own name (for a pending set: the one it drains)
  bool pending = false;    // this is the registry set's invalidation pending set
};
// What a Redis key is as a registry set name, or nullopt when it is not one.
std::optional<RegistrySetName> parse_registry_set(std::string_view redis_key);

// A SCAN MATCH pattern every registry and pending set name matches (so do a few other names:
// parse_registry_set sorts them out).
inline constexpr const char* kRegistryScanPattern = "*__[nt][sa]*__:*";

// ---- rendering ------------------------------------------------------------------------------
// `text` re-indented by `indent` spaces per level when it is one valid JSON value (numbers and
// strings kept exactly as written); nullopt when it is not JSON.
std::optional<std::string> pretty_json(std::string_view text, int indent = 2);
// The first `max_bytes` of `bytes`, printable ASCII as is, the rest escaped (\n, \t, \xNN).
std::string escaped_preview(std::string_view bytes, std::size_t max_bytes);
// A Unix time in ms as "2025-01-31T12:34:56.789Z".
std::string utc_time(std::int64_t unix_ms);
// A duration in ms as "287.412 s" (or "12 ms" below a second).
std::string seconds_text(std::int64_t ms);

}  // namespace tempest::cli
