// The near cache's store, without Redis: bounds, expiry, invalidation and the read race.
#include <gtest/gtest.h>

#include <string>

#include "tempest/cache/detail/near_store.hpp"

using tempest::cache::detail::NearStore;
using namespace std::chrono_literals;

namespace {
NearStore::Value value(int v) {
  return std::make_shared<const int>(v);
}
int as_int(const NearStore::Value& v) {
  return *static_cast<const int*>(v.get());
}
const auto t0 = NearStore::Clock::time_point{} + 1000h;
}  // namespace

TEST(NearStore, HitUntilItsRedisEntryExpires) {
  NearStore s(100, 1 << 20, 1);
  ASSERT_TRUE(s.put("k", s.begin_read("k"), value(7), 4, t0 + 10s));
  ASSERT_TRUE(s.get("k", t0 + 9s));
  EXPECT_EQ(as_int(s.get("k", t0 + 9s)), 7);
  EXPECT_FALSE(s.get("k", t0 + 10s));  // expired with the Redis entry
  EXPECT_EQ(s.stats().entries, 0u);
  EXPECT_EQ(s.stats().hits, 2u);
  EXPECT_EQ(s.stats().misses, 1u);
}

TEST(NearStore, AnInvalidationDuringAReadStoresNothing) {
  NearStore s(100, 1 << 20, 1);
  const auto ticket = s.begin_read("k");  // GET k sent
  s.invalidate("k");                      // another process wrote k before the reply came
  EXPECT_FALSE(s.put("k", ticket, value(1), 4, t0 + 10s));
  EXPECT_FALSE(s.get("k", t0));
  EXPECT_EQ(s.stats().stale_drops, 1u);
  // The next read stores.
  EXPECT_TRUE(s.put("k", s.begin_read("k"), value(2), 4, t0 + 10s));
  EXPECT_EQ(as_int(s.get("k", t0)), 2);
  // An invalidation after the store removes it.
  s.invalidate("k");
  EXPECT_FALSE(s.get("k", t0));
  EXPECT_EQ(s.stats().invalidations, 2u);
}

TEST(NearStore, ClearDropsEverythingAndReadsUnderWay) {
  NearStore s(100, 1 << 20, 4);
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(s.put("k" + std::to_string(i), s.begin_read("k" + std::to_string(i)), value(i), 4,
                      t0 + 10s));
  const auto ticket = s.begin_read("late");
  s.clear();  // FLUSHALL, or the invalidation connection was lost
  EXPECT_EQ(s.stats().entries, 0u);
  EXPECT_EQ(s.stats().bytes, 0u);
  EXPECT_FALSE(s.put("late", ticket, value(1), 4, t0 + 10s));
  EXPECT_EQ(s.stats().flushes, 1u);
}

TEST(NearStore, BoundedByEntriesAndBytesLeastRecentlyUsedFirst) {
  NearStore by_entries(3, 1 << 20, 1);
  for (int i = 0; i < 3; ++i)
    by_entries.put(std::to_string(i), by_entries.begin_read(std::to_string(i)), value(i), 4,
                   t0 + 10s);
  ASSERT_TRUE(by_entries.get("0", t0));  // "0" is now the most recently used
  by_entries.put("3", by_entries.begin_read("3"), value(3), 4, t0 + 10s);
  EXPECT_TRUE(by_entries.get("0", t0));
  EXPECT_FALSE(by_entries.get("1", t0));  // the least recently used went
  EXPECT_EQ(by_entries.stats().entries, 3u);
  EXPECT_EQ(by_entries.stats().evictions, 1u);

  NearStore by_bytes(1'000'000, 64 * 1024, 4);
  for (int i = 0; i < 10'000; ++i) {
    const std::string k = "key:" + std::to_string(i);
    by_bytes.put(k, by_bytes.begin_read(k), value(i), 1000, t0 + 10s);
  }
  EXPECT_LE(by_bytes.stats().bytes, 64u * 1024);
  EXPECT_GT(by_bytes.stats().entries, 20u);
  EXPECT_FALSE(by_bytes.put("huge", by_bytes.begin_read("huge"), value(0), 1 << 20, t0 + 10s));
}

TEST(NearStore, BadBoundsAreNamed) {
  EXPECT_THROW(NearStore(0, 1, 1), std::invalid_argument);
  EXPECT_THROW(NearStore(1, 1, 3), std::invalid_argument);
}
