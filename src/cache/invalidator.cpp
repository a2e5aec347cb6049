#include "tempest/cache/invalidator.hpp"

#include <map>
#include <set>

#include "tempest/cache/detail/manager_state.hpp"
#include "tempest/cache/detail/near_store.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"

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

std::string namespace_set(std::string_view key_prefix, std::string_view ns) {
  std::string s;
  s.reserve(key_prefix.size() + 7 + ns.size());
  return s.append(key_prefix).append("__ns__:").append(ns);
}

std::string tag_set(std::string_view key_prefix, std::string_view tag) {
  std::string s;
  s.reserve(key_prefix.size() + 8 + tag.size());
  return s.append(key_prefix).append("__tag__:").append(tag);
}

// A key in the registry set's cluster slot (the move script touches both), or "" when neither
// form lands there (braces in the name that are not a hash tag).
std::string pending_set(std::string_view registry_set) {
  const std::string set(registry_set);
  const auto slot = redis::detail::key_slot(set);
  for (std::string k : {set + ":pending", "{" + set + "}:pending"})
    if (redis::detail::key_slot(k) == slot) return k;
  return "";
}

CacheInvalidator::CacheInvalidator(RedisManager& manager, std::string key_prefix)
    : manager_(&manager), key_prefix_(std::move(key_prefix)) {}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_namespace(std::string_view ns) {
  return invalidate_sets({namespace_set(key_prefix_, ns)});
}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_tag(std::string_view tag) {
  return invalidate_sets({tag_set(key_prefix_, tag)});
}

asio::awaitable<std::size_t> CacheInvalidator::invalidate_tags(
    const std::vector<std::string>& tags) {
  std::vector<std::string> sets;
  for (const auto& t : tags)
    sets.push_back(tag_set(key_prefix_, t));
  return invalidate_sets(std::move(sets));
}

namespace {

// Moves up to ARGV[1] members of the registry set KEYS[1] into its pending set KEYS[2] (same
// slot), which lives as long as the registry set would have. Returns {moved, pending}: the
// members moved, and everything now pending (also what concurrent invalidations moved and have
// not unlinked yet). Atomic: a member is in one of the two sets until its entry is unlinked, so
// a reply lost on the way (the connection cut after Redis ran this) loses no registration.
const std::string& move_script() {
  static const std::string script =
      "local ttl = redis.call('PTTL', KEYS[1]) "
      "local m = redis.call('SPOP', KEYS[1], ARGV[1]) "
      "if #m > 0 then "
      "  local existed = redis.call('EXISTS', KEYS[2]) "
      "  for i = 1, #m, 100 do "
      "    redis.call('SADD', KEYS[2], unpack(m, i, math.min(i + 99, #m))) "
      "  end "
      "  if ttl < 0 then redis.call('PERSIST', KEYS[2]) "
      "  elseif existed == 0 then redis.call('PEXPIRE', KEYS[2], ttl) "
      "  else redis.call('PEXPIRE', KEYS[2], ttl, 'GT') end "
      "end "
      "return {m, redis.call('SMEMBERS', KEYS[2])}";
  return script;
}

}  // namespace

// Each set is drained batch_size members at a time, until it is empty (and so gone): the move
// script takes members out of the set into its pending set, and everything pending is unlinked,
// then removed from the pending set. A member added to the registry set while this runs is moved
// too, or stays in its set: never lost (as it was with SMEMBERS then DEL of the set). A member
// leaves the pending set only once its entry is gone, so whatever fails on the way is unlinked by
// the next invalidation of that set, and an invalidation never returns before the entries that
// a concurrent one moved out of its way are gone. Bounded: at most what the sets held at the
// start plus two batches are moved (writers adding meanwhile leave their members registered).
asio::awaitable<std::size_t> CacheInvalidator::invalidate_sets(std::vector<std::string> sets) {
  if (sets.empty()) co_return 0;
  redis::Client client = manager_->client();
  const std::size_t batch = std::max<std::size_t>(1, batch_size);
  std::size_t budget = 2 * batch;
  std::map<std::string, std::string> pending;  // registry set -> its pending set
  for (const auto& s : sets)
    pending[s] = pending_set(s);
  {
    redis::Pipeline count;
    for (const auto& s : sets)
      count.add("SCARD", s);
    for (auto& r : co_await client.exec(count, redis::CallOptions{kTimeout}))
      budget += static_cast<std::size_t>(std::move(r).checked().as_integer());
  }
  std::set<std::string> members;
  // Entries of these sets that a store of this process may have left unregistered: unlinked
  // first, or this invalidation fails.
  const auto state = manager_->state();
  if (auto doubtful = state->doubtful.under(sets); !doubtful.empty()) {
    (void)co_await unlink_all(doubtful);
    for (const auto& k : doubtful)
      state->doubtful.remove(k);
    members.insert(doubtful.begin(), doubtful.end());
  }
  std::size_t moved_total = 0;
  while (!sets.empty() && moved_total < budget) {
    redis::Pipeline move;
    for (const auto& s : sets) {
      if (pending[s].empty()) {
        move.add("SPOP", s, batch);
      } else {
        move.add("EVAL", move_script(), 2, s, pending[s], batch);
      }
    }
    auto replies = co_await client.exec(move, redis::CallOptions{kTimeout});
    std::vector<std::pair<std::string, std::string>> taken;  // set, member
    std::vector<std::string> more;
    for (std::size_t i = 0; i < sets.size(); ++i) {
      auto got = std::move(replies[i]).checked().as_array();
      std::size_t moved = got.size();
      if (!pending[sets[i]].empty()) {
        moved = std::move(got.at(0)).as_array().size();
        auto all = std::move(got.at(1)).as_array();
        got = std::move(all);
      }
      for (auto& m : got)
        taken.emplace_back(sets[i], std::move(m).as_string());
      moved_total += moved;
      if (moved >= batch) more.push_back(sets[i]);  // may hold more
    }
    // Every member taken in this round is unlinked, even one unlinked in an earlier round (its
    // entry may have been written again since).
    std::set<std::string> round;
    for (const auto& [set, member] : taken)
      round.insert(member);
    std::vector<std::string> doomed(round.begin(), round.end());
    (void)co_await unlink_all(doomed);
    members.insert(round.begin(), round.end());
    // Gone: out of the pending sets (best effort: a member left there is unlinked once more by a
    // later invalidation, which is harmless).
    redis::Pipeline forget;
    for (const auto& [set, member] : taken)
      if (!pending[set].empty()) forget.add("SREM", pending[set], member);
    if (!forget.empty()) {
      try {
        (void)co_await client.exec(forget, redis::CallOptions{kTimeout});
      } catch (const redis::Error&) {
      }
    }
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
