// tempest against a real Redis Cluster: the one `make test` started (TEMPEST_CLUSTER_URL, 3
// masters with a replica each) for what only reads and writes, and clusters of their own for
// what moves slots or kills nodes.
#include <gtest/gtest.h>

#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe.hpp>

#include <atomic>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "support/redis_cluster.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/cache/invalidator.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
using namespace tempest::redis;
using namespace std::chrono_literals;
using tempest::test::all_workers;
using tempest::test::Clock;
using tempest::test::keys_in_slots;
using tempest::test::ms_since;
using tempest::test::RedisCluster;
using tempest::test::run;
using tempest::test::shared_cluster_url;
using tempest::test::shell;
using tempest::test::sleep_for;

struct Profile {
  std::string id;
  std::string name;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (id, name))

namespace {

class ClusterTest : public ::testing::Test {
 protected:
  asio::io_context io;
  std::string url = shared_cluster_url();
  Client client{io.get_executor(), url};
  std::string p = tempest::test::unique_prefix("c");
};

}  // namespace

// ---- routing against the server's own answers --------------------------------------------------

TEST_F(ClusterTest, KeySlotsMatchTheServersKeyslotForThousandsOfKeys) {
  std::vector<std::string> keys = {"somekey",
                                   "foo{hash_tag}",
                                   "bar{hash_tag}",
                                   "foo{}{bar}",
                                   "foo{{bar}}zap",
                                   "foo{bar}{zap}",
                                   "{}",
                                   "{",
                                   "}",
                                   "{a",
                                   "a}",
                                   "{{}}",
                                   "x{ }y",
                                   "{user1000}.following",
                                   ""};
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> len(0, 24), byte(0, 255), brace(0, 9);
  while (keys.size() < 4000) {
    std::string k;
    for (int i = len(rng); i > 0; --i) {
      const int b = brace(rng);
      k.push_back(b == 0 ? '{' : b == 1 ? '}' : static_cast<char>(byte(rng)));
    }
    keys.push_back(std::move(k));
  }
  EXPECT_EQ(detail::key_slot("somekey"), 11058);
  EXPECT_EQ(detail::key_slot("foo{hash_tag}"), 2515);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Pipeline asked;
    for (const auto& k : keys)
      asked.add("CLUSTER", "KEYSLOT", k);
    auto replies = co_await client.exec(asked, {.timeout = 30s});
    CO_ASSERT_EQ(replies.size(), keys.size());
    int differ = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (replies[i].integer() != detail::key_slot(keys[i]) && ++differ <= 5)
        ADD_FAILURE() << "key #" << i << ": server " << replies[i].integer() << ", ours "
                      << detail::key_slot(keys[i]);
    }
    EXPECT_EQ(differ, 0);
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, CommandKeysMatchTheServersCommandGetkeys) {
  const std::vector<std::vector<std::string>> commands = {
      {"GET", "a"},
      {"SET", "a", "1", "EX", "10"},
      {"MSET", "a", "1", "b", "2", "c", "3"},
      {"MGET", "a", "b", "c"},
      {"DEL", "a", "b"},
      {"EVAL", "return 1", "2", "k1", "k2", "arg"},
      {"EVALSHA", "0123456789012345678901234567890123456789", "1", "k1", "arg"},
      {"FCALL", "f", "1", "k1", "a"},
      {"ZUNIONSTORE", "dest", "2", "z1", "z2", "WEIGHTS", "1", "2"},
      {"ZINTERCARD", "2", "z1", "z2", "LIMIT", "3"},
      {"ZUNION", "2", "z1", "z2"},
      {"XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"},
      {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", ">"},
      {"SORT", "list", "BY", "w_*", "STORE", "dest"},
      {"GEORADIUS", "g", "1", "2", "3", "km", "STORE", "dest"},
      {"LMOVE", "l1", "l2", "LEFT", "RIGHT"},
      {"BLMPOP", "1", "2", "l1", "l2", "LEFT"},
      {"LMPOP", "2", "l1", "l2", "LEFT"},
      {"OBJECT", "ENCODING", "a"},
      {"MEMORY", "USAGE", "a"},
      {"XINFO", "STREAM", "s1"},
      {"XGROUP", "CREATE", "s1", "g", "$"},
      {"RENAME", "a", "b"},
      {"SMOVE", "s1", "s2", "m"},
      {"BITOP", "AND", "dest", "a", "b"},
      {"PFMERGE", "dest", "h1", "h2"},
      {"SINTERSTORE", "dest", "s1", "s2"},
      {"COPY", "a", "b"},
      {"GETEX", "a", "PERSIST"},
      {"HSET", "h", "f", "v"},
      {"SUNIONSTORE", "d", "a", "b", "c"},
      {"MIGRATE", "h", "1", "", "0", "10", "KEYS", "a", "b"},
  };
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    for (const auto& c : commands) {
      Command getkeys("COMMAND");
      getkeys.arg("GETKEYS");
      for (const auto& a : c)
        getkeys.arg(a);
      std::vector<std::string> server;
      const Reply got = co_await client.command(getkeys);
      for (const auto& k : got.elements())
        server.push_back(k.str());
      std::vector<std::string_view> args(c.begin(), c.end());
      detail::CommandKeys ours;
      detail::command_keys(args, ours);
      std::vector<std::string> mine;
      for (auto i : ours.keys)
        mine.push_back(c.at(i));
      EXPECT_EQ(mine, server) << c.front();
    }
    co_await client.disconnect();
  });
}

// ---- the client's commands
// -----------------------------------------------------------------------

TEST_F(ClusterTest, TypedHelpersReachEveryMaster) {
  const auto keys = keys_in_slots(p + "k", 300);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    EXPECT_TRUE(client.is_cluster());
    EXPECT_EQ(client.masters().size(), 3u);
    EXPECT_EQ(co_await client.ping(), "PONG");
    for (const auto& k : keys)
      EXPECT_TRUE(co_await client.set(k, "v:" + k, SetOptions{.expire_seconds = 60s}));
    for (const auto& k : keys)
      EXPECT_EQ((co_await client.get(k)).value_or("<nil>"), "v:" + k);
    EXPECT_EQ(co_await client.incr(p + "counter"), 1);
    EXPECT_TRUE(co_await client.expire(p + "counter", 30s));
    EXPECT_GT(co_await client.ttl(p + "counter"), 0);
    // Multi-key commands over many slots are split per slot and summed / reassembled in order.
    Keys all(keys.begin(), keys.end());
    all.push_back(p + "missing");
    const auto values = co_await client.mget(all);
    CO_ASSERT_EQ(values.size(), all.size());
    for (std::size_t i = 0; i < keys.size(); ++i)
      EXPECT_EQ(values[i].value_or("<nil>"), "v:" + keys[i]);
    EXPECT_FALSE(values.back().has_value());
    EXPECT_EQ(co_await client.exists(all), static_cast<long long>(keys.size()));
    const Keys half(keys.begin(), keys.begin() + 150);
    EXPECT_EQ(co_await client.unlink(half), 150);
    EXPECT_EQ(co_await client.del(all), static_cast<long long>(keys.size() - 150));
    EXPECT_EQ(co_await client.exists(all), 0);
    // MSET over many slots.
    Command mset("MSET");
    for (const auto& k : keys)
      mset.arg(k).arg("m:" + k);
    (void)co_await client.command(mset);
    EXPECT_EQ((co_await client.get(keys[123])).value_or(""), "m:" + keys[123]);
    EXPECT_EQ(co_await client.del(all), static_cast<long long>(keys.size()));
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, PipelineRepliesComeBackInTheCallersOrderAcrossNodes) {
  const auto keys = keys_in_slots(p + "pipe", 2000);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Pipeline writes;
    for (const auto& k : keys)
      writes.add("SET", k, k);
    (void)co_await client.exec(writes);
    Pipeline mixed;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i % 3 == 0)
        mixed.add("GET", keys[i]);
      else if (i % 3 == 1)
        mixed.add("STRLEN", keys[i]);
      else
        mixed.add("ECHO", std::to_string(i));  // keyless: any node
    }
    mixed.add("INCR", keys[0]);  // an error reply, as a value in its place
    // A command whose keys hash to two slots: refused before sending, an error in its place too.
    mixed.add("RENAME", keys[1], keys[2]);
    const auto replies = co_await client.exec(mixed);
    CO_ASSERT_EQ(replies.size(), keys.size() + 2);
    EXPECT_TRUE(replies[keys.size()].is_error());
    EXPECT_NE(replies.back().str().find("CROSSSLOT"), std::string::npos) << replies.back().str();
    EXPECT_EQ((co_await client.get(keys[1])).value_or(""), keys[1]);  // not renamed
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (i % 3 == 0)
        EXPECT_EQ(replies[i].str(), keys[i]);
      else if (i % 3 == 1)
        EXPECT_EQ(replies[i].integer(), static_cast<long long>(keys[i].size()));
      else
        EXPECT_EQ(replies[i].str(), std::to_string(i));
    }
    Keys all(keys.begin(), keys.end());
    (void)co_await client.del(all);
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, TransactionsNeedOneSlotAndSaySoClearly) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Pipeline same;
    same.add("SET", p + "{user:1}:a", "1")
        .add("INCR", p + "{user:1}:n")
        .add("GET", p + "{user:1}:a");
    const auto replies = co_await client.transaction(same);
    CO_ASSERT_EQ(replies.size(), 3u);
    EXPECT_EQ(replies[1].integer(), 1);
    EXPECT_EQ(replies[2].str(), "1");
    Pipeline cross;
    cross.add("SET", p + "a", "1").add("SET", p + "b", "2");
    try {
      (void)co_await client.transaction(cross);
      ADD_FAILURE() << "a cross-slot transaction ran";
    } catch (const ServerError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("CROSSSLOT"), std::string::npos) << what;
      EXPECT_NE(what.find("hash tag"), std::string::npos) << what;
    }
    EXPECT_EQ(co_await client.exists(p + "a"), 0);  // nothing of it ran
    // A single command whose keys span slots gets the same explanation before anything is sent.
    try {
      (void)co_await client.command(cmd("RENAME", p + "a", p + "b"));
      ADD_FAILURE() << "a cross-slot RENAME was sent";
    } catch (const ServerError& e) {
      EXPECT_NE(std::string(e.what()).find("CROSSSLOT"), std::string::npos) << e.what();
    }
    (void)co_await client.del(p + "{user:1}:a", p + "{user:1}:n");
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, DedicatedConnectionsReachTheMasterOfTheirKey) {
  const std::string balance = p + "{acct:1}:balance";
  const std::string queue = p + "{acct:1}:queue";
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    try {
      (void)co_await client.dedicated();
      ADD_FAILURE() << "dedicated() on a cluster gave a connection to some node";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("dedicated_for(key)"), std::string::npos) << e.what();
    }
    (void)co_await client.set(balance, "10");
    // A WATCH-guarded transaction on the node of the key's slot.
    Client tx = co_await client.dedicated_for(balance);
    EXPECT_TRUE(tx.is_dedicated());
    (void)co_await tx.command(cmd("WATCH", balance));
    const auto v = std::stoll((co_await tx.get(balance)).value_or("0"));
    Pipeline update;
    update.add("SET", balance, std::to_string(v + 5)).add("INCR", p + "{acct:1}:ops");
    EXPECT_EQ((co_await tx.transaction(update)).size(), 2u);
    EXPECT_EQ((co_await client.get(balance)).value_or(""), "15");
    // A blocking command there, fed through the shared client.
    (void)co_await client.command(cmd("RPUSH", queue, "job"));
    const Reply popped = co_await tx.command(cmd("BLPOP", queue, "1"));
    CO_ASSERT_TRUE(popped.is_array() && popped.elements().size() == 2);
    EXPECT_EQ(popped.elements()[1].str(), "job");
    co_await tx.disconnect();
    (void)co_await client.del(balance, p + "{acct:1}:ops");
    co_await client.disconnect();
  });
}

// Requests are pooled per thread: what a client on one server marks on a request (a PING for
// every master, a transaction) must not reach the cluster client that reuses it.
TEST_F(ClusterTest, RequestsReusedFromAClientOnOneServerCarryNothingOver) {
  Client single(io.get_executor(), tempest::test::shared_redis_url());
  const auto keys = keys_in_slots(p + "pool", 64);
  run(io, [&]() -> asio::awaitable<void> {
    co_await single.connect();
    co_await client.connect();
    for (int round = 0; round < 20; ++round) {
      (void)co_await single.ping();
      Pipeline t;
      t.add("INCR", p + "single");
      (void)co_await single.transaction(t);
      for (const auto& k : keys) {
        (void)co_await client.set(k, k);
        EXPECT_EQ((co_await client.get(k)).value_or(""), k);
      }
    }
    (void)co_await client.del(Keys(keys.begin(), keys.end()));
    (void)co_await single.del(p + "single");
    co_await single.disconnect();
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, KeylessCommandsGoToEveryMasterAndScanWalksThemAll) {
  const auto keys = keys_in_slots(p + "scan:", 500);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    Pipeline writes;
    for (const auto& k : keys)
      writes.add("SET", k, "1");
    (void)co_await client.exec(writes);
    const auto masters = client.masters();
    CO_ASSERT_EQ(masters.size(), 3u);
    // One reply per master, in masters() order, each from that master: its own id and port.
    const auto ids = co_await client.for_each_master(cmd("CLUSTER", "MYID"));
    const auto ports = co_await client.for_each_master(cmd("CONFIG", "GET", "port"));
    CO_ASSERT_EQ(ids.size(), 3u);
    CO_ASSERT_EQ(ports.size(), 3u);
    std::set<std::string> distinct;
    for (std::size_t i = 0; i < 3; ++i) {
      distinct.insert(ids[i].str());
      EXPECT_EQ((co_await client.command_at(masters[i], cmd("CLUSTER", "MYID"))).str(),
                ids[i].str());
      EXPECT_EQ(masters[i], "127.0.0.1:" + ports[i].elements().at(1).str());
    }
    EXPECT_EQ(distinct.size(), 3u);
    // Each master holds the keys of its slots: command_at counts them where they are.
    std::map<std::string, long long> expected_per_master;
    for (std::size_t i = 0; i < 3; ++i) {
      long long mine = 0;
      for (const auto& k : keys) {
        try {
          mine += (co_await client.command_at(masters[i], cmd("EXISTS", k))).integer();
        } catch (const ServerError& e) {  // another master's key: MOVED, not followed
          EXPECT_EQ(std::string(e.what()).rfind("MOVED", 0), 0u) << e.what();
        }
      }
      expected_per_master[masters[i]] = mine;
    }
    long long total = 0;
    for (const auto& [m, n] : expected_per_master) {
      EXPECT_GT(n, 100) << m;  // 500 keys over 3 masters
      total += n;
    }
    EXPECT_EQ(total, 500);
    EXPECT_THROW((void)co_await client.command_at("127.0.0.1:1", cmd("PING")),
                 std::invalid_argument);
    auto found = co_await client.scan_all(ScanOptions(p + "scan:*", 100));
    std::vector<std::string> expected = keys;
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(found, expected);
    Keys all(keys.begin(), keys.end());
    EXPECT_EQ(co_await client.del(all), 500);
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, RepliesNeverCrossCallersUnderConcurrency) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    std::atomic<int> wrong{0};
    const auto failed = co_await all_workers(64, [&](int w) -> asio::awaitable<void> {
      for (int i = 0; i < 200; ++i) {
        const std::string k = p + std::to_string(w) + ":" + std::to_string(i % 20);
        const std::string v = k + "=" + std::to_string(i);
        (void)co_await client.set(k, v);
        if ((co_await client.get(k)).value_or("") != v) ++wrong;
      }
    });
    EXPECT_EQ(failed, 0);
    EXPECT_EQ(wrong.load(), 0);
    const auto keys = co_await client.scan_all(ScanOptions(p + "*", 1000));
    EXPECT_EQ(keys.size(), 64u * 20u);
    (void)co_await client.del(Keys(keys.begin(), keys.end()));
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, ReadsFromReplicasGoToReplicasAndWritesToMasters) {
  Client reader(io.get_executor(), url + "&read_from_replicas=true");
  const auto keys = keys_in_slots(p + "r", 200);
  // GET calls counted by each node (INFO commandstats), asked of the node itself.
  const auto get_calls = [&](const std::vector<std::string>& nodes) -> asio::awaitable<long long> {
    long long total = 0;
    for (const auto& n : nodes) {
      const std::string info = (co_await reader.command_at(n, cmd("INFO", "commandstats"))).str();
      const auto at = info.find("cmdstat_get:calls=");
      if (at != std::string::npos) total += std::stoll(info.substr(at + 18));
    }
    co_return total;
  };
  run(io, [&]() -> asio::awaitable<void> {
    // CLUSTER SLOTS lists a replica only once the node asked has heard (by gossip) of its
    // replication offset: after a write, on a new cluster. The reader reads its map when it
    // connects, so it waits until every master lists both nodes of every range.
    co_await client.connect();
    (void)co_await client.set(p + "warm", "1");
    for (int attempt = 0;; ++attempt) {
      bool all = true;
      for (const auto& view : co_await client.for_each_master(cmd("CLUSTER", "SLOTS"))) {
        std::size_t endpoints = 0;
        for (const auto& range : view.elements())
          endpoints += range.elements().size() - 2;
        all = all && endpoints == 6;
      }
      if (all) break;
      CO_ASSERT_TRUE(attempt < 1200);  // 60 s
      co_await sleep_for(50ms);
    }
    co_await reader.connect();
    std::vector<std::string> replicas;
    const std::string nodes = (co_await reader.command(cmd("CLUSTER", "NODES"))).str();
    std::istringstream lines(nodes);
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream f(line);
      std::string id, addr, flags;
      f >> id >> addr >> flags;
      if (flags.find("slave") != std::string::npos && flags.find("fail") == std::string::npos)
        replicas.push_back(addr.substr(0, addr.find('@')));
    }
    CO_ASSERT_EQ(replicas.size(), 3u);
    const auto masters = reader.masters();
    for (const auto& k : keys)
      (void)co_await reader.set(k, "x" + k);  // writes always go to masters
    // Replication is asynchronous: wait until each master's replica has acknowledged its
    // master's offset (INFO replication: master_repl_offset, slave0:...,offset=N,...).
    for (const auto& m : masters) {
      for (int attempt = 0;; ++attempt) {
        const std::string info = (co_await reader.command_at(m, cmd("INFO", "replication"))).str();
        const auto own = std::stoll(info.substr(info.find("master_repl_offset:") + 19));
        const auto at = info.find(",offset=");
        if (at != std::string::npos && std::stoll(info.substr(at + 8)) >= own) break;
        CO_ASSERT_TRUE(attempt < 1000);  // 10 s: a new replica may still be syncing
        co_await sleep_for(10ms);
      }
    }
    const long long replica_before = co_await get_calls(replicas);
    const long long master_before = co_await get_calls(masters);
    int seen = 0;
    for (const auto& k : keys)
      if ((co_await reader.get(k)).value_or("") == "x" + k) ++seen;
    EXPECT_EQ(seen, 200);
    EXPECT_EQ(co_await get_calls(replicas) - replica_before, 200);
    EXPECT_EQ(co_await get_calls(masters) - master_before, 0);
    Keys all(keys.begin(), keys.end());
    EXPECT_EQ(co_await reader.del(all), 200);
    co_await reader.disconnect();
  });
}

// ---- the cache on a cluster ---------------------------------------------------------------------

TEST_F(ClusterTest, CachedInvalidationAndHealthWorkUnchanged) {
  tc::RedisManager redis(io.get_executor(), url);
  int calls = 0;
  const std::string kp = p + "app:";
  auto profile =
      tc::cached(redis, {.name = "profile", .key_prefix = kp, .ns = "users", .tags = {"profiles"}},
                 [&calls](int id) -> asio::awaitable<Profile> {
                   ++calls;
                   co_return Profile{std::to_string(id), "Ana"};
                 })
          .tags(
              [](const int& id) { return std::vector<std::string>{"user:" + std::to_string(id)}; });
  tc::CacheInvalidator inv(redis, kp);
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_TRUE(co_await redis.health_check());
    auto c = redis.client();
    for (int id = 1; id <= 50; ++id)
      (void)co_await profile(id);
    for (int id = 1; id <= 50; ++id)
      EXPECT_EQ((co_await profile(id)).id, std::to_string(id));
    EXPECT_EQ(calls, 50);
    EXPECT_EQ(profile.stats().hits, 50u);
    // The registry sets and the entries live on different slots, so on different masters.
    std::set<std::uint16_t> slots;
    for (int id = 1; id <= 50; ++id)
      slots.insert(detail::key_slot(profile.key(id)));
    EXPECT_GT(slots.size(), 10u);
    EXPECT_EQ((co_await c.smembers(kp + "__ns__:users")).size(), 50u);
    EXPECT_EQ(co_await inv.invalidate_tag("user:1"), 1u);
    EXPECT_EQ(co_await c.exists(profile.key(1)), 0);
    EXPECT_EQ(co_await c.exists(profile.key(2)), 1);
    EXPECT_EQ(co_await inv.invalidate_tag("profiles"), 50u);
    EXPECT_EQ(co_await c.exists(profile.key(2)), 0);
    for (int id = 1; id <= 10; ++id)
      (void)co_await profile(id);
    EXPECT_EQ(co_await inv.invalidate_namespace("users"), 50u);
    for (int id = 1; id <= 20; ++id)
      (void)co_await profile(id);
    EXPECT_EQ(co_await inv.invalidate_prefix(kp + "profile:"), 20u);
    const std::vector<std::string> gone = {profile.key(3), kp + "missing"};
    EXPECT_EQ(co_await inv.invalidate_keys(gone), 0u);
    (void)co_await inv.invalidate_prefix(kp);
    co_await redis.disconnect();
  });
}

// Early refresh (under the lock) and fail-safe on keys spread over every master.
TEST_F(ClusterTest, EarlyRefreshAndFailSafeWorkOnEveryMaster) {
  tc::RedisManager redis(io.get_executor(), url);
  int runs = 0;
  bool failing = false;
  tc::CachedOptions o{.name = "rate", .ttl = 1s, .key_prefix = p + "fresh:"};
  o.early_refresh = 0.5;
  o.fail_safe_max = 30s;
  o.fail_safe_throttle = 10s;
  o.lock.enabled = true;
  auto rate = tc::cached(redis, o, [&](int id) -> asio::awaitable<int> {
    ++runs;
    if (failing) throw std::runtime_error("upstream down");
    co_return id * 2;
  });
  constexpr int kKeys = 30;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    std::set<std::uint16_t> slots;
    for (int id = 0; id < kKeys; ++id) {
      EXPECT_EQ(co_await rate(id), id * 2);
      slots.insert(detail::key_slot(rate.key(id)));
    }
    EXPECT_EQ(runs, kKeys);
    EXPECT_GT(slots.size(), 10u);  // spread over the slots, so over the three masters
    co_await sleep_for(600ms);     // past half the TTL: each read starts one refresh
    for (int id = 0; id < kKeys; ++id)
      EXPECT_EQ(co_await rate(id), id * 2);
    for (int i = 0; i < 100 && runs < 2 * kKeys; ++i)
      co_await sleep_for(10ms);
    EXPECT_EQ(runs, 2 * kKeys);
    EXPECT_EQ(rate.stats().refreshes, static_cast<std::uint64_t>(kKeys));
    failing = true;
    co_await sleep_for(1100ms);  // the refreshed entries expire too: stale now
    for (int id = 0; id < kKeys; ++id)
      EXPECT_EQ(co_await rate(id), id * 2);
    EXPECT_EQ(rate.stats().stale_served, static_cast<std::uint64_t>(kKeys));
    EXPECT_EQ(runs, 3 * kKeys);
    co_await redis.disconnect();
  });
}

// The near cache on a cluster: one invalidation connection per master the reader uses, each
// data connection redirected to its own node's; writes on every master reach it.
TEST_F(ClusterTest, NearCacheIsCoherentOnEveryMaster) {
  tc::ManagerOptions o;
  o.near.enabled = true;
  const std::string name = "near" + std::to_string(::getpid());
  tc::RedisManager redis(io.get_executor(), url + "&client_name=" + name, o);
  const std::string kp = p + "near:";
  auto read = tc::cached(
                  redis, {.name = "read"},
                  [](int) -> asio::awaitable<std::string> { co_return std::string("computed"); },
                  tc::RawCodec{})
                  .key_builder([kp](std::string_view, const int& i) {
                    return kp + "{" + std::to_string(i) + "}";
                  });
  constexpr int kKeys = 300;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await redis.connect();
    for (int i = 0; i < kKeys; ++i)
      (void)co_await client.set(kp + "{" + std::to_string(i) + "}", "old");
    // Every master holds some of the keys, and every master the reader reads from gets one
    // invalidation connection of its own.
    for (int round = 0; round < 100 && redis.near_stats().entries < kKeys; ++round) {
      for (int i = 0; i < kKeys; ++i)
        (void)co_await read(i);
      co_await sleep_for(2ms);
    }
    EXPECT_EQ(redis.near_stats().entries, static_cast<std::size_t>(kKeys));
    std::size_t masters = 0;
    for (const auto& r : co_await client.for_each_master(cmd("CLIENT", "LIST", "TYPE", "pubsub"))) {
      ++masters;
      std::size_t ours = 0;
      for (std::size_t at = r.str().find("name=" + name + " "); at != std::string::npos;
           at = r.str().find("name=" + name + " ", at + 1))
        ++ours;
      EXPECT_EQ(ours, 1u) << r.str();
    }
    EXPECT_EQ(masters, 3u);
    const auto invalidations = redis.near_stats().invalidations;
    for (int i = 0; i < kKeys; ++i)
      (void)co_await client.set(kp + "{" + std::to_string(i) + "}", "new");
    const auto until = Clock::now() + 5s;
    while (redis.near_stats().invalidations < invalidations + kKeys && Clock::now() < until)
      co_await sleep_for(1ms);
    EXPECT_GE(redis.near_stats().invalidations, invalidations + kKeys);
    int stale = 0;
    for (int i = 0; i < kKeys; ++i)
      if (co_await read(i) == "old") ++stale;
    EXPECT_EQ(stale, 0);
    co_await redis.disconnect();
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, PythonEntriesAreHitsHereAndTheReverse) {
  tc::RedisManager redis(io.get_executor(), url);
  int calls = 0;
  const std::string kp = p + "users:";
  auto get_user_profile = tc::cached(redis, {.name = "get_user_profile", .key_prefix = kp},
                                     [&calls](std::string id) -> asio::awaitable<Profile> {
                                       ++calls;
                                       co_return Profile{id, "Ana"};
                                     });
  const std::string peer =
      std::string("/usr/bin/python3 ") + TEMPEST_SOURCE_DIR "/tests/interop/python_peer.py ";
  // Python (redis.cluster.RedisCluster) writes entries whose keys land on every master.
  std::vector<std::string> py_keys;
  for (int i = 0; i < 12; ++i) {
    py_keys.push_back(shell(peer + "write '" + url + "' get_user_profile " + kp + " '[\"" +
                            std::to_string(i) + "\"]' '{\"id\": \"" + std::to_string(i) +
                            "\", \"name\": \"Py\"}'"));
    EXPECT_EQ(py_keys.back(), get_user_profile.key(std::to_string(i)));
  }
  std::vector<std::string> cpp_keys;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    for (int i = 0; i < 12; ++i)
      EXPECT_EQ((co_await get_user_profile(std::to_string(i))).name, "Py");
    EXPECT_EQ(calls, 0);
    for (int i = 100; i < 112; ++i) {
      (void)co_await get_user_profile(std::to_string(i));
      cpp_keys.push_back(get_user_profile.key(std::to_string(i)));
    }
    co_await redis.disconnect();
  });
  for (std::size_t i = 0; i < cpp_keys.size(); ++i)
    EXPECT_EQ(shell(peer + "read '" + url + "' " + cpp_keys[i]),
              "{\"id\": \"" + std::to_string(100 + i) + "\", \"name\": \"Ana\"}");
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    std::vector<std::string> all = py_keys;
    all.insert(all.end(), cpp_keys.begin(), cpp_keys.end());
    EXPECT_EQ(co_await client.del(Keys(all.begin(), all.end())), 24);
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, DistributedLockTwoProcessesComputeOnce) {
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    // A value cached by an earlier run would be a hit without any lock.
    auto stale = co_await client.scan_all(ScanOptions("lock_peer_value:*", 100));
    stale.push_back("lock_peer:runs");
    (void)co_await client.del(Keys(stale.begin(), stale.end()));
  });
  const auto start_at = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch() + 700ms)
                            .count();
  const std::string cmd_line =
      std::string(TEMPEST_LOCK_PEER) + " '" + url + "' 50 " + std::to_string(start_at);
  std::string out1, out2;
  std::thread a([&] { out1 = shell(cmd_line); });
  std::thread b([&] { out2 = shell(cmd_line); });
  a.join();
  b.join();
  EXPECT_EQ(out1.substr(0, 8), "50/50 ok") << out1;
  EXPECT_EQ(out2.substr(0, 8), "50/50 ok") << out2;
  run(io, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await client.get("lock_peer:runs")).value_or(""), "1");
    (void)co_await client.del("lock_peer:runs");
    co_await client.disconnect();
  });
}

TEST_F(ClusterTest, PrefixInvalidationOfHundredThousandKeysOverThreeMastersIsExact) {
  tc::RedisManager redis(io.get_executor(), url);
  tc::CacheInvalidator inv(redis);
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    for (int base = 0; base < 100'000; base += 10'000) {
      Pipeline fill;
      for (int i = base; i < base + 10'000; ++i)
        fill.add("SET", p + "bulk:" + std::to_string(i), "x");
      (void)co_await c.exec(fill, {.timeout = 30s});
    }
    Pipeline others;
    for (int i = 0; i < 1000; ++i)
      others.add("SET", p + "bulkier" + std::to_string(i), "x");
    (void)co_await c.exec(others, {.timeout = 30s});
    // The keys are spread over every master.
    const auto sizes = co_await c.for_each_master(cmd("DBSIZE"));
    for (const auto& s : sizes)
      EXPECT_GT(s.integer(), 30'000);
    const auto t = Clock::now();
    const auto removed = co_await inv.invalidate_prefix(p + "bulk:");
    std::printf("cluster prefix invalidation: 100000 keys over %zu masters in %.0f ms\n",
                sizes.size(), ms_since(t));
    EXPECT_EQ(removed, 100'000u);
    EXPECT_EQ((co_await c.scan_all(ScanOptions(p + "bulk:*", 1000))).size(), 0u);
    EXPECT_EQ(co_await inv.invalidate_prefix(p + "bulkier"), 1000u);
    co_await redis.disconnect();
  });
}
