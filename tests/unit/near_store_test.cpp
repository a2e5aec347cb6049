// The near cache's store, without Redis: bounds, expiry, invalidation and the read race.
#include <gtest/gtest.h>

#include <string>
#include <typeinfo>

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
  s.armed();
  ASSERT_TRUE(s.put("k", s.begin_read("k"), value(7), typeid(int), 4, t0 + 10s));
  ASSERT_TRUE(s.get("k", t0 + 9s, typeid(int)));
  EXPECT_EQ(as_int(s.get("k", t0 + 9s, typeid(int))), 7);
  EXPECT_FALSE(s.get("k", t0 + 10s, typeid(int)));  // expired with the Redis entry
  EXPECT_EQ(s.stats().entries, 0u);
  EXPECT_EQ(s.stats().hits, 2u);
  EXPECT_EQ(s.stats().misses, 1u);
}

TEST(NearStore, AnInvalidationDuringAReadStoresNothing) {
  NearStore s(100, 1 << 20, 1);
  s.armed();
  const auto ticket = s.begin_read("k");  // GET k sent
  s.invalidate("k");                      // another process wrote k before the reply came
  EXPECT_FALSE(s.put("k", ticket, value(1), typeid(int), 4, t0 + 10s));
  EXPECT_FALSE(s.get("k", t0, typeid(int)));
  EXPECT_EQ(s.stats().stale_drops, 1u);
  // The next read stores.
  EXPECT_TRUE(s.put("k", s.begin_read("k"), value(2), typeid(int), 4, t0 + 10s));
  EXPECT_EQ(as_int(s.get("k", t0, typeid(int))), 2);
  // An invalidation after the store removes it.
  s.invalidate("k");
  EXPECT_FALSE(s.get("k", t0, typeid(int)));
  EXPECT_EQ(s.stats().invalidations, 2u);
}

TEST(NearStore, ClearDropsEverythingAndReadsUnderWay) {
  NearStore s(100, 1 << 20, 4);
  s.armed();
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(s.put("k" + std::to_string(i), s.begin_read("k" + std::to_string(i)), value(i),
                      typeid(int), 4, t0 + 10s));
  const auto ticket = s.begin_read("late");
  s.clear();  // FLUSHALL, or the invalidation connection was lost
  EXPECT_EQ(s.stats().entries, 0u);
  EXPECT_EQ(s.stats().bytes, 0u);
  EXPECT_FALSE(s.put("late", ticket, value(1), typeid(int), 4, t0 + 10s));
  EXPECT_EQ(s.stats().flushes, 1u);
}

TEST(NearStore, BoundedByEntriesAndBytesLeastRecentlyUsedFirst) {
  NearStore by_entries(3, 1 << 20, 1);
  by_entries.armed();
  for (int i = 0; i < 3; ++i)
    by_entries.put(std::to_string(i), by_entries.begin_read(std::to_string(i)), value(i),
                   typeid(int), 4, t0 + 10s);
  ASSERT_TRUE(by_entries.get("0", t0, typeid(int)));  // "0" is now the most recently used
  by_entries.put("3", by_entries.begin_read("3"), value(3), typeid(int), 4, t0 + 10s);
  EXPECT_TRUE(by_entries.get("0", t0, typeid(int)));
  EXPECT_FALSE(by_entries.get("1", t0, typeid(int)));  // the least recently used went
  EXPECT_EQ(by_entries.stats().entries, 3u);
  EXPECT_EQ(by_entries.stats().evictions, 1u);

  NearStore by_bytes(1'000'000, 64 * 1024, 4);
  by_bytes.armed();
  for (int i = 0; i < 10'000; ++i) {
    const std::string k = "key:" + std::to_string(i);
    by_bytes.put(k, by_bytes.begin_read(k), value(i), typeid(int), 1000, t0 + 10s);
  }
  EXPECT_LE(by_bytes.stats().bytes, 64u * 1024);
  EXPECT_GT(by_bytes.stats().entries, 20u);
  EXPECT_FALSE(
      by_bytes.put("huge", by_bytes.begin_read("huge"), value(0), typeid(int), 1 << 20, t0 + 10s));
}

TEST(NearStore, BadBoundsAreNamed) {
  EXPECT_THROW(NearStore(0, 1, 1), std::invalid_argument);
  EXPECT_THROW(NearStore(1, 1, 3), std::invalid_argument);
}

TEST(NearStore, NothingIsStoredUntilReadsAreTrackedNorAfterAReset) {
  NearStore s(100, 1 << 20, 1);
  // Not armed yet: Redis may not be tracking this read.
  EXPECT_FALSE(s.put("k", s.begin_read("k"), value(1), typeid(int), 4, t0 + 10s));
  s.armed();
  const auto before = s.begin_read("k");
  ASSERT_TRUE(s.put("j", s.begin_read("j"), value(2), typeid(int), 4, t0 + 10s));
  s.reset();  // a connection was lost: changes may go unreported
  EXPECT_FALSE(s.get("j", t0, typeid(int)));
  EXPECT_FALSE(s.tracked());
  EXPECT_FALSE(s.put("k", before, value(1), typeid(int), 4, t0 + 10s));             // read before
  EXPECT_FALSE(s.put("k", s.begin_read("k"), value(1), typeid(int), 4, t0 + 10s));  // after
  // A read begun while tracking was off stays unstored even once it is back.
  const auto between = s.begin_read("k");
  s.armed();
  EXPECT_FALSE(s.put("k", between, value(1), typeid(int), 4, t0 + 10s));
  EXPECT_TRUE(s.put("k", s.begin_read("k"), value(3), typeid(int), 4, t0 + 10s));
  EXPECT_EQ(s.stats().resets, 1u);
}

TEST(NearStore, AnEntryOfAnotherTypeIsAMiss) {
  NearStore s(100, 1 << 20, 1);
  s.armed();
  ASSERT_TRUE(s.put("k", s.begin_read("k"), value(1), typeid(int), 4, t0 + 10s));
  EXPECT_FALSE(s.get("k", t0, typeid(long)));
  EXPECT_TRUE(s.get("k", t0, typeid(int)));
}

TEST(NearStore, AMillionDistinctKeysStayWithinTheBounds) {
  NearStore s(50'000, 8u << 20, 16);
  s.armed();
  std::size_t max_entries = 0, max_bytes = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    const std::string k = "users:get_user_profile:" + std::to_string(i);
    s.put(k, s.begin_read(k), value(i), typeid(int), 120, t0 + 10s);
    if (i % 100'000 == 99'999) {
      const auto st = s.stats();
      max_entries = std::max<std::size_t>(max_entries, st.entries);
      max_bytes = std::max<std::size_t>(max_bytes, st.bytes);
    }
  }
  EXPECT_LE(max_entries, 50'000u);
  EXPECT_LE(max_bytes, 8u << 20);
  EXPECT_GT(max_entries, 25'000u);  // the bounds are used, not undershot
  EXPECT_EQ(s.stats().evictions, 1'000'000u - s.stats().entries);
}
