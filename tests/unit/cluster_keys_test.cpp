// Cluster slots and command keys without a server (the server's own CLUSTER KEYSLOT and COMMAND
// GETKEYS are compared in the cluster tests).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tempest/redis/command.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"

using namespace tempest::redis;
using namespace tempest::redis::detail;

namespace {

// The textbook bit-at-a-time CRC16/XMODEM, to check the table-driven one against.
std::uint16_t crc16_bitwise(std::string_view s) {
  unsigned crc = 0;
  for (unsigned char c : s) {
    crc ^= static_cast<unsigned>(c) << 8;
    for (int i = 0; i < 8; ++i)
      crc = (crc & 0x8000) != 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return static_cast<std::uint16_t>(crc);
}

std::vector<std::uint32_t> keys_of(std::vector<std::string_view> args) {
  CommandKeys k;
  command_keys(args, k);
  return k.keys;
}

bool readonly(std::vector<std::string_view> args) {
  CommandKeys k;
  command_keys(args, k);
  return k.readonly;
}

}  // namespace

TEST(ClusterKeys, Crc16MatchesTheSpecAndTheBitwiseDefinition) {
  EXPECT_EQ(crc16("123456789"), 0x31C3);
  EXPECT_EQ(crc16(""), 0);
  std::mt19937 rng(1);
  for (int i = 0; i < 5000; ++i) {
    std::string s(rng() % 100, '\0');
    for (auto& c : s)
      c = static_cast<char>(rng());
    ASSERT_EQ(crc16(s), crc16_bitwise(s)) << "length " << s.size();
  }
}

TEST(ClusterKeys, SlotsOfTheSpecsExamplesAndHashTags) {
  EXPECT_EQ(key_slot("somekey"), 11058);
  EXPECT_EQ(key_slot("foo{hash_tag}"), 2515);
  EXPECT_EQ(key_slot("bar{hash_tag}"), 2515);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(hash_tag("foo{}{bar}"), "foo{}{bar}");  // empty tag: the whole key
  EXPECT_EQ(hash_tag("foo{{bar}}zap"), "{bar");
  EXPECT_EQ(hash_tag("foo{bar}{zap}"), "bar");
  EXPECT_EQ(hash_tag("foo{bar"), "foo{bar");
  EXPECT_EQ(hash_tag("}{x}"), "x");
  EXPECT_EQ(key_slot(""), 0);
}

TEST(ClusterKeys, KeysAtFixedPositions) {
  EXPECT_EQ(keys_of({"GET", "k"}), (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(keys_of({"get", "k"}), (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(keys_of({"MSET", "a", "1", "b", "2"}), (std::vector<std::uint32_t>{1, 3}));
  EXPECT_EQ(keys_of({"BLPOP", "a", "b", "0"}), (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(keys_of({"DEL", "a", "b", "c"}), (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_EQ(keys_of({"BITOP", "AND", "d", "a", "b"}), (std::vector<std::uint32_t>{2, 3, 4}));
  EXPECT_TRUE(keys_of({"PING"}).empty());
  EXPECT_TRUE(keys_of({"PUBLISH", "ch", "m"}).empty());
  EXPECT_TRUE(keys_of({"NOSUCHCOMMAND", "x"}).empty());
  EXPECT_TRUE(readonly({"GET", "k"}));
  EXPECT_FALSE(readonly({"SET", "k", "v"}));
}

TEST(ClusterKeys, KeysThatMoveWithTheArguments) {
  EXPECT_EQ(keys_of({"EVAL", "return 1", "2", "a", "b", "x"}), (std::vector<std::uint32_t>{3, 4}));
  EXPECT_TRUE(keys_of({"EVALSHA", "abc", "0", "x"}).empty());
  EXPECT_EQ(keys_of({"ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"}),
            (std::vector<std::uint32_t>{1, 3, 4}));
  EXPECT_EQ(keys_of({"ZUNION", "2", "a", "b"}), (std::vector<std::uint32_t>{2, 3}));
  EXPECT_EQ(keys_of({"BLMPOP", "1", "2", "a", "b", "LEFT"}), (std::vector<std::uint32_t>{3, 4}));
  EXPECT_EQ(keys_of({"XREAD", "COUNT", "2", "streams", "a", "b", "0", "0"}),
            (std::vector<std::uint32_t>{4, 5}));
  EXPECT_EQ(keys_of({"SORT", "k", "LIMIT", "0", "5", "STORE", "d"}),
            (std::vector<std::uint32_t>{1, 6}));
  EXPECT_FALSE(readonly({"SORT", "k", "STORE", "d"}));
  EXPECT_EQ(keys_of({"GEORADIUS", "g", "0", "0", "1", "km", "STOREDIST", "d"}),
            (std::vector<std::uint32_t>{1, 7}));
  EXPECT_EQ(keys_of({"MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b"}),
            (std::vector<std::uint32_t>{7, 8}));
  EXPECT_EQ(keys_of({"MIGRATE", "h", "6379", "k", "0", "5000"}), (std::vector<std::uint32_t>{3}));
  EXPECT_EQ(keys_of({"OBJECT", "ENCODING", "k"}), (std::vector<std::uint32_t>{2}));
  EXPECT_TRUE(keys_of({"OBJECT", "HELP"}).empty());
  EXPECT_EQ(keys_of({"MEMORY", "USAGE", "k"}), (std::vector<std::uint32_t>{2}));
  EXPECT_TRUE(keys_of({"MEMORY", "STATS"}).empty());
  EXPECT_EQ(keys_of({"XINFO", "STREAM", "s"}), (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(keys_of({"XGROUP", "CREATE", "s", "g", "$"}), (std::vector<std::uint32_t>{2}));
  // A numkeys that is not a number, or larger than what follows, takes what is there.
  EXPECT_TRUE(keys_of({"EVAL", "s", "x", "a"}).empty());
  EXPECT_EQ(keys_of({"EVAL", "s", "5", "a"}), (std::vector<std::uint32_t>{3}));
}

TEST(ClusterKeys, OneSlotOrCrossSlot) {
  const std::vector<std::string_view> same{"MGET", "{u1}:a", "{u1}:b"};
  const SlotOf s = command_slot(same);
  EXPECT_EQ(s.slot, key_slot("u1"));
  EXPECT_TRUE(s.readonly);
  const std::vector<std::string_view> cross{"MGET", "a", "b"};
  const SlotOf c = command_slot(cross);
  ASSERT_EQ(c.slot, kCrossSlot);
  EXPECT_EQ(c.first, "a");
  EXPECT_EQ(c.second, "b");
  const std::vector<std::string_view> none{"PING"};
  EXPECT_EQ(command_slot(none).slot, kNoSlot);
}

TEST(ClusterKeys, ReaderSplitsEncodedCommands) {
  Pipeline p;
  p.add(cmd("SET", "k", "v\r\n1")).add(cmd("GET", "")).add(cmd("PING"));
  CommandReader r(p.wire());
  std::vector<std::vector<std::string>> got;
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  for (Args a = r.next(); !a.empty(); a = r.next()) {
    got.emplace_back(a.begin(), a.end());
    spans.emplace_back(r.begin(), r.end());
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], (std::vector<std::string>{"SET", "k", "v\r\n1"}));
  EXPECT_EQ(got[1], (std::vector<std::string>{"GET", ""}));
  EXPECT_EQ(got[2], (std::vector<std::string>{"PING"}));
  EXPECT_EQ(p.wire().substr(spans[1].first, spans[1].second - spans[1].first),
            cmd("GET", "").wire());
}
