// What `tempest inspect` needs to read a cache entry as the library stores it: the names of the
// namespace/tag registry sets (and their invalidation "pending" sets), the freshness suffix that
// early_refresh / fail_safe_max append to a value, and a readable rendering of the value.
//
// These restate rules of src/cache (core.cpp: CacheCore::store and with_freshness;
// invalidator.cpp: pending_key) for a reader outside the library; candidates to move into the
// library next to the code that writes them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tempest::cli {

// ---- registry sets --------------------------------------------------------------------------
// A cached function with a namespace / tags registers each entry's key in the sets
// "{key_prefix}__ns__:{namespace}" and "{key_prefix}__tag__:{tag}" (the Python SDK's names too).
// An invalidation moves members into the set's pending set before unlinking them.
std::string namespace_set(std::string_view key_prefix, std::string_view ns);
std::string tag_set(std::string_view key_prefix, std::string_view tag);
// "{set}:pending" or "{" + set + "}:pending", whichever is in the set's cluster slot; "" when
// neither is (braces in the name that are not a hash tag).
std::string pending_set(std::string_view set);

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

// ---- the freshness suffix -------------------------------------------------------------------
// With early_refresh or fail_safe_max a stored value is followed by a 46-byte suffix of JSON
// whitespace: a mark, then two Unix-ms times (fresh until, refresh due at), 21 base-4 digits
// each written as ' ', '\t', '\n', '\r'.
struct Freshness {
  std::int64_t fresh_until_ms = 0;
  std::int64_t refresh_at_ms = 0;
  std::size_t suffix_bytes = 0;
};
// The freshness times at the end of `stored`, or nullopt for a plain value.
std::optional<Freshness> read_freshness(std::string_view stored);

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
