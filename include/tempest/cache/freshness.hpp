/// @file
/// Reading the freshness times that CachedOptions::early_refresh and fail_safe_max store with an
/// entry, for tools that look at entries from outside a cached function (`tempest inspect`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tempest::cache {

/// The times stored with an entry written with early_refresh or fail_safe_max. They follow the
/// value as a suffix of JSON whitespace, which every JSON reader (the Python SDK's json.loads
/// too) skips.
struct EntryFreshness {
  std::int64_t fresh_until_ms = 0;  ///< Unix ms: the entry is stale from then on
  std::int64_t refresh_at_ms = 0;   ///< Unix ms: an early refresh is due from then on
  std::size_t suffix_bytes = 0;     ///< bytes of the suffix: the value is what comes before
};

/// The freshness times at the end of a stored entry, or nullopt for a plain value (the Python
/// SDK's, or one written without those options).
std::optional<EntryFreshness> read_freshness(std::string_view stored);

}  // namespace tempest::cache
