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
// in its set: never lost, as it was with SMEMBERS then DEL of the set. If unlinking fails, what
// was popped goes back into its set. Bounded: at most what the sets held at the start plus two
// batches are popped (writers adding meanwhile leave their members registered).
asio::awaitable<std::size_t> CacheInvalidator::invalidate_sets(std::vector<std::string> sets) {
  if (sets.empty()) co_return 0;
  redis::Client client = manager_->client();
  const std::size_t batch = std::max<std::size_t>(1, batch_size);
  std::size_t budget = 2 * batch;
  {
    redis::Pipeline count;
    for (const auto& s : sets)
      count.add("SCARD", s);
    for (auto& r : co_await client.exec(count, redis::CallOptions{kTimeout}))
      budget += static_cast<std::size_t>(std::move(r).checked().as_integer());
  }
  std::set<std::string> members;
  std::size_t popped_total = 0;
  while (!sets.empty() && popped_total < budget) {
    redis::Pipeline pop;
    for (const auto& s : sets)
      pop.add("SPOP", s, batch);
    auto replies = co_await client.exec(pop, redis::CallOptions{kTimeout});
    std::vector<std::pair<std::string, std::string>> popped;  // set, member
    std::vector<std::string> more;
    for (std::size_t i = 0; i < sets.size(); ++i) {
      auto got = std::move(replies[i]).checked().as_array();
      for (auto& m : got)
        popped.emplace_back(sets[i], std::move(m).as_string());
      if (got.size() >= batch) more.push_back(sets[i]);  // may hold more
    }
    popped_total += popped.size();
    // Every member popped in this round is unlinked, even one unlinked in an earlier round (its
    // entry may have been written again since).
    std::set<std::string> round;
    for (const auto& [set, member] : popped)
      round.insert(member);
    std::vector<std::string> doomed(round.begin(), round.end());
    try {
      (void)co_await unlink_all(doomed);
    } catch (const redis::Error&) {
      restore(client, popped);
      throw;
    }
    members.insert(round.begin(), round.end());
    sets = std::move(more);
  }
  co_return members.size();
}

// Best effort, not awaited by anyone: the members go back into their sets.
void CacheInvalidator::restore(redis::Client& client,
                               const std::vector<std::pair<std::string, std::string>>& popped) {
  redis::Pipeline back;
  for (const auto& [set, member] : popped)
    back.add("SADD", set, member);
  client.exec(back, redis::CallOptions{kTimeout},
              [](std::exception_ptr, std::vector<redis::Reply>) {});
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
