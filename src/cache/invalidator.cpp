#include "tempest/cache/invalidator.hpp"

#include <set>

#include "tempest/cache/detail/near_store.hpp"

namespace tempest::cache {

namespace {
constexpr redis::Duration kTimeout{5000};
}

std::string escape_glob(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

CacheInvalidator::CacheInvalidator(RedisManager& manager, std::string key_prefix)
    : manager_(&manager), key_prefix_(std::move(key_prefix)) {}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_namespace(std::string_view ns) {
  return invalidate_sets({key_prefix_ + "__ns__:" + std::string(ns)});
}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_tag(std::string_view tag) {
  return invalidate_sets({key_prefix_ + "__tag__:" + std::string(tag)});
}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_tags(
    const std::vector<std::string>& tags) {
  std::vector<std::string> sets;
  for (const auto& t : tags)
    sets.push_back(key_prefix_ + "__tag__:" + t);
  return invalidate_sets(std::move(sets));
}

// Each set is drained with SPOP (batch_size members at a time) and what comes out is unlinked,
// until the sets are empty (and so gone). A member added while this runs is popped too, or stays
// in its set: never lost, as it was with SMEMBERS then DEL of the set.
asio::awaitable<std::size_t> CacheInvalidator::invalidate_sets(std::vector<std::string> sets) {
  if (sets.empty()) co_return 0;
  redis::Client client = manager_->client();
  const std::size_t batch = std::max<std::size_t>(1, batch_size);
  std::set<std::string> members;
  while (!sets.empty()) {
    redis::Pipeline pop;
    for (const auto& s : sets)
      pop.add("SPOP", s, batch);
    auto replies = co_await client.exec(pop, redis::CallOptions{kTimeout});
    std::vector<std::string> doomed;
    std::vector<std::string> more;
    for (std::size_t i = 0; i < sets.size(); ++i) {
      auto popped = std::move(replies[i]).checked().as_array();
      for (auto& m : popped) {
        std::string k = std::move(m).as_string();
        if (members.insert(k).second) doomed.push_back(std::move(k));
      }
      if (popped.size() >= batch) more.push_back(sets[i]);  // may hold more
    }
    (void)co_await unlink_all(doomed);
    sets = std::move(more);
  }
  co_return members.size();
}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_keys(
    const std::vector<std::string>& keys) {
  return unlink_all(keys);
}

// One single-key UNLINK per key, pipelined batch_size at a time.
asio::awaitable<std::size_t> CacheInvalidator::unlink_all(const std::vector<std::string>& keys) {
  redis::Client client = manager_->client();
  std::size_t removed = 0;
  const std::size_t batch = std::max<std::size_t>(1, batch_size);
  for (std::size_t i = 0; i < keys.size(); i += batch) {
    redis::Pipeline p;
    for (std::size_t j = i; j < std::min(keys.size(), i + batch); ++j)
      p.add("UNLINK", keys[j]);
    for (auto& r : co_await client.exec(p, redis::CallOptions{kTimeout}))
      removed += static_cast<std::size_t>(std::move(r).checked().as_integer());
    // This process reads its own invalidation at once: its near cache does not wait for Redis's
    // report (which other processes' near caches get).
    if (auto* near = manager_->near_store())
      for (std::size_t j = i; j < std::min(keys.size(), i + batch); ++j)
        near->invalidate(keys[j]);
  }
  co_return removed;
}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_prefix(std::string_view prefix) {
  if (prefix.empty())
    throw std::invalid_argument("invalidate_prefix: an empty prefix would delete every key");
  redis::Client client = manager_->client();
  redis::ScanOptions scan_options(escape_glob(prefix) + "*", batch_size);
  scan_options.timeout = kTimeout;
  auto scanner = client.scan(std::move(scan_options));
  std::size_t removed = 0;
  for (;;) {
    auto batch = co_await scanner.next();
    if (!batch) break;
    if (!batch->empty()) removed += co_await unlink_all(*batch);
  }
  co_return removed;
}

}  // namespace tempest::cache
