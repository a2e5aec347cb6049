// tempest on a Redis Cluster whose slots move and whose nodes fail, under load: each test starts
// a cluster of its own (3 masters, a replica each, node timeout 1000 ms). Values name their key
// and version, so a reply meant for another caller or a lost write cannot pass unnoticed.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include "support/redis_cluster.hpp"
#include "support/run.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"
#include "tempest/redis/subscriber.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
using namespace tempest::redis;
using namespace std::chrono_literals;
using tempest::test::Clock;
using tempest::test::keys_in_slots;
using tempest::test::ms_since;
using tempest::test::RedisCluster;
using tempest::test::run;
using tempest::test::sleep_for;

namespace {

std::string value_of(const std::string& key, long long version) {
  return key + "#" + std::to_string(version);
}

// What the callers saw, by kind; filled on the io_context's thread, read after it stopped.
struct Outcome {
  long long calls = 0;
  long long wrong = 0;  // a value naming another key, or a version never written
  long long stale = 0;  // an older version than the last acknowledged one
  long long timeouts = 0;
  long long connection = 0;
  long long server = 0;
  long long untyped = 0;  // anything that is not one of tempest's error types
  long long late = 0;     // completed later than its deadline plus 250 ms
  double worst_ms = 0;
  std::vector<std::pair<Clock::time_point, std::string>> errors;
  long long error_count() const { return timeouts + connection + server + untyped; }
};

// 64 callers, each owning `per_caller` keys: SET a new version, then GET it back, until `stop`.
// `acked` holds each key's last acknowledged version.
struct Load {
  Client& client;
  std::vector<std::vector<std::string>> keys;
  std::map<std::string, long long> acked;
  Outcome out;
  std::atomic<bool> stop{false};
  Duration timeout;

  asio::awaitable<void> caller(int w) {
    std::map<std::string, long long> written;  // the last version sent, acknowledged or not
    for (std::size_t i = 0; !stop.load(); ++i) {
      const std::string& k = keys[w][i % keys[w].size()];
      const long long v = ++written[k];
      const auto t = Clock::now();
      const auto account = [&] {
        const double took = ms_since(t);
        out.worst_ms = std::max(out.worst_ms, took);
        if (took > std::chrono::duration<double, std::milli>(timeout).count() + 250) ++out.late;
      };
      try {
        ++out.calls;
        (void)co_await client.set(k, value_of(k, v), SetOptions{.timeout = timeout});
        acked[k] = v;
        account();
        const auto t2 = Clock::now();
        ++out.calls;
        const auto got = co_await client.get(k, CallOptions{timeout});
        (void)t2;
        account();
        const std::string expected = value_of(k, v);
        if (got != expected) {
          const std::string s = got.value_or("<nil>");
          const auto hash = s.rfind('#');
          if (hash == std::string::npos || s.substr(0, hash) != k ||
              std::stoll(s.substr(hash + 1)) > v) {
            ++out.wrong;
            ADD_FAILURE() << "GET " << k << " answered " << s << ", expected " << expected;
          } else {
            ++out.stale;
          }
        }
      } catch (const TimeoutError& e) {
        account();
        ++out.timeouts;
        out.errors.emplace_back(Clock::now(), e.what());
      } catch (const ConnectionError& e) {
        account();
        ++out.connection;
        out.errors.emplace_back(Clock::now(), e.what());
      } catch (const ServerError& e) {
        account();
        ++out.server;
        out.errors.emplace_back(Clock::now(), e.what());
      } catch (const std::exception& e) {
        account();
        ++out.untyped;
        out.errors.emplace_back(Clock::now(), std::string("untyped: ") + e.what());
      }
      if (out.errors.size() > 0 && out.errors.size() % 64 == 0) co_await sleep_for(1ms);
    }
  }

  // Runs the callers until `stop`; returns when all have returned.
  asio::awaitable<void> run_callers() {
    (void)co_await tempest::test::all_workers(static_cast<int>(keys.size()),
                                              [this](int w) { return caller(w); });
  }

  // Every key's stored value is its last acknowledged version (or a later one whose
  // acknowledgement was lost with a timeout).
  asio::awaitable<long long> lost_writes() {
    long long lost = 0;
    for (const auto& [k, v] : acked) {
      const std::string s = (co_await client.get(k, CallOptions{5s})).value_or("<nil>");
      const auto hash = s.rfind('#');
      if (hash == std::string::npos || s.substr(0, hash) != k ||
          std::stoll(s.substr(hash + 1)) < v) {
        ++lost;
        ADD_FAILURE() << k << " holds " << s << " after version " << v << " was acknowledged";
      }
    }
    co_return lost;
  }
};

// Whether node `i` calls itself a master now.
bool is_master(RedisCluster& cluster, std::size_t i) {
  std::istringstream lines(cluster.node(i).cli("CLUSTER NODES"));
  std::string line;
  while (std::getline(lines, line))
    if (line.find("myself") != std::string::npos) return line.find("master") != std::string::npos;
  return false;
}

// Writes each key (its own name as value) and reads it back.
asio::awaitable<void> write_and_read_back(Client& client, const std::vector<std::string>& keys) {
  for (const auto& k : keys)
    (void)co_await client.set(k, k);
  for (const auto& k : keys)
    EXPECT_EQ((co_await client.get(k)).value_or(""), k);
}

}  // namespace

TEST(ClusterFaults, ReshardingUnderLoadWithAskLosesNothingAndEveryCallEndsInTime) {
  RedisCluster cluster;
  asio::io_context io;
  Client client(io.get_executor(), cluster.url());
  // 64 callers on keys in slots 0..23, which move from their master to another one by hand:
  // SETSLOT IMPORTING / MIGRATING, MIGRATE a few keys at a time (so that a slot stays half-moved
  // while the callers run: ASK), then SETSLOT NODE everywhere (MOVED).
  constexpr std::uint16_t kLast = 23;
  Load load{client, {}, {}, {}, {}, 2s};
  for (int w = 0; w < 64; ++w)
    load.keys.push_back(keys_in_slots("rs:" + std::to_string(w) + ":", 6, 0, kLast));
  const std::size_t from = cluster.master_of(0);
  std::size_t to = from;
  for (auto m : cluster.masters())
    if (m != from) to = m;
  ASSERT_NE(to, from);
  const std::string from_id = cluster.node_id(from);
  const std::string to_id = cluster.node_id(to);
  const std::string to_port = std::to_string(cluster.node(to).port());
  std::atomic<bool> moved{false};
  std::string mover_error;
  long long migrated = 0;
  std::thread mover([&] {
    try {
      std::this_thread::sleep_for(500ms);  // the callers are running
      for (std::uint16_t s = 0; s <= kLast; ++s) {
        const std::string slot = std::to_string(s);
        cluster.node(to).cli("CLUSTER SETSLOT " + slot + " IMPORTING " + from_id);
        cluster.node(from).cli("CLUSTER SETSLOT " + slot + " MIGRATING " + to_id);
        for (;;) {
          std::istringstream got(cluster.node(from).cli("CLUSTER GETKEYSINSLOT " + slot + " 3"));
          std::string keys, k;
          while (std::getline(got, k))
            if (!k.empty()) keys += " '" + k + "'";
          if (keys.empty()) break;
          const std::string r =
              cluster.node(from).cli("MIGRATE 127.0.0.1 " + to_port + " \"\" 0 5000 KEYS" + keys);
          if (r.find("OK") == std::string::npos && r.find("NOKEY") == std::string::npos)
            throw std::runtime_error("MIGRATE: " + r);
          migrated += std::count(keys.begin(), keys.end(), '\'') / 2;
          std::this_thread::sleep_for(15ms);  // half-moved for a while: ASK
        }
        for (std::size_t m : cluster.masters())
          cluster.node(m).cli("CLUSTER SETSLOT " + slot + " NODE " + to_id);
      }
      std::this_thread::sleep_for(500ms);  // the callers run on the new owner
    } catch (const std::exception& e) {
      mover_error = e.what();
    }
    moved = true;
  });
  const auto asking_before = [&] {
    const std::string s = cluster.node(to).cli("INFO commandstats");
    const auto at = s.find("cmdstat_asking:calls=");
    return at == std::string::npos ? 0LL : std::stoll(s.substr(at + 21));
  };
  const long long asked_before = asking_before();
  long long lost = -1;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          while (!moved)
            co_await sleep_for(20ms);
          load.stop = true;
        },
        asio::detached);
    co_await load.run_callers();
    lost = co_await load.lost_writes();
    co_await client.disconnect();
  });
  mover.join();
  const long long asked = asking_before() - asked_before;
  const auto& o = load.out;
  std::printf(
      "resharding: %u slots, %lld keys migrated, %lld calls, %lld ASKING on the target, "
      "%lld errors, %lld wrong, %lld lost, worst call %.0f ms\n",
      kLast + 1, migrated, o.calls, asked, o.error_count(), o.wrong, lost, o.worst_ms);
  EXPECT_EQ(mover_error, "");
  EXPECT_EQ(cluster.master_of(kLast), to);
  EXPECT_GT(migrated, 0);
  EXPECT_GT(asked, 0) << "no request was redirected with ASK";
  EXPECT_EQ(o.wrong, 0);
  EXPECT_EQ(o.stale, 0);
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(o.error_count(), 0) << (o.errors.empty() ? "" : o.errors.front().second);
  EXPECT_EQ(o.late, 0);
  EXPECT_GT(o.calls, 1000);
}

TEST(ClusterFaults, FailoversUnderLoadGiveOnlyTypedErrorsAndRecover) {
  RedisCluster cluster;
  asio::io_context io;
  // Short deadlines: a call towards a frozen master gives up after 500 ms.
  Client client(io.get_executor(), cluster.url("command_timeout=500ms&connect_timeout=500ms"));
  tc::RedisManager manager(io.get_executor(), cluster.url("command_timeout=500ms"));
  Load load{client, {}, {}, {}, {}, 500ms};
  for (int w = 0; w < 64; ++w)
    load.keys.push_back(keys_in_slots("fo:" + std::to_string(w) + ":", 8));
  const auto masters = cluster.masters();
  ASSERT_EQ(masters.size(), 3u);
  struct Phase {
    std::string name;
    Clock::time_point fault, promoted;
    long long errors_before = 0;
  };
  std::vector<Phase> phases;
  std::atomic<bool> done{false};
  std::string orchestrator_error;
  // The fault injections run on a thread of their own (redis-cli blocks).
  const auto promote_wait = [&](std::size_t replica) {
    for (int i = 0; i < 300 && !is_master(cluster, replica); ++i)
      std::this_thread::sleep_for(20ms);
    if (!is_master(cluster, replica))
      throw std::runtime_error("node " + std::to_string(replica) + " was not promoted in 6 s");
    return Clock::now();
  };
  std::thread orchestrator([&] {
    try {
      std::this_thread::sleep_for(1s);
      // 1. A graceful failover: CLUSTER FAILOVER on a replica of the first master.
      {
        const auto r = cluster.replica_of(masters[0]);
        Phase p{"CLUSTER FAILOVER", Clock::now(), {}};
        cluster.node(r).cli("CLUSTER FAILOVER");
        p.promoted = promote_wait(r);
        phases.push_back(p);
        cluster.wait_ok();
        std::this_thread::sleep_for(2s);
      }
      // 2. SIGKILL of the second master: its replica is promoted after the node timeout.
      std::size_t orphan = 0;
      {
        const auto r = cluster.replica_of(masters[1]);
        Phase p{"SIGKILL of a master", Clock::now(), {}};
        cluster.node(masters[1]).kill();
        p.promoted = promote_wait(r);
        phases.push_back(p);
        orphan = r;  // a master without a replica from now on
        std::this_thread::sleep_for(3s);
      }
      // 3. SIGSTOP of the third master: a black hole until its replica is promoted.
      {
        const auto r = cluster.replica_of(masters[2]);
        Phase p{"SIGSTOP of a master", Clock::now(), {}};
        cluster.node(masters[2]).pause();
        p.promoted = promote_wait(r);
        phases.push_back(p);
        std::this_thread::sleep_for(3s);
        cluster.node(masters[2]).resume();  // it rejoins as a replica
        std::this_thread::sleep_for(2s);
      }
      // 4. Settled: the last phase records nothing but must see no error.
      phases.push_back(Phase{"settled", Clock::now(), Clock::now()});
      std::this_thread::sleep_for(2s);
      // 5. A slot range without any reachable node: the health check turns false.
      load.stop = true;
      std::this_thread::sleep_for(1s);
      cluster.node(orphan).kill();
    } catch (const std::exception& e) {
      orchestrator_error = e.what();
      load.stop = true;
    }
    done = true;
  });
  bool healthy_at_start = false;
  bool healthy_after_loss = true;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await manager.connect();
    healthy_at_start = co_await manager.health_check();
    co_await load.run_callers();
    while (!done)
      co_await sleep_for(20ms);
    // The orphaned master is gone and nothing took over its slots.
    for (int i = 0; i < 50 && healthy_after_loss; ++i) {
      healthy_after_loss = co_await manager.health_check();
      co_await sleep_for(100ms);
    }
    co_await manager.disconnect();
    co_await client.disconnect();
  });
  orchestrator.join();
  ASSERT_EQ(orchestrator_error, "");
  ASSERT_EQ(phases.size(), 4u);
  const auto& o = load.out;
  std::printf(
      "failover load: %lld calls, %lld typed errors (%lld timeouts, %lld connection, "
      "%lld server), %lld untyped, %lld wrong, %lld stale, %lld late, worst %.0f ms\n",
      o.calls, o.error_count(), o.timeouts, o.connection, o.server, o.untyped, o.wrong, o.stale,
      o.late, o.worst_ms);
  for (std::size_t i = 0; i + 1 < phases.size(); ++i) {
    const auto& p = phases[i];
    long long n = 0;
    Clock::time_point last = p.fault;
    for (const auto& [t, what] : o.errors)
      if (t >= p.fault && t < phases[i + 1].fault) {
        ++n;
        last = std::max(last, t);
      }
    const double promotion =
        std::chrono::duration<double, std::milli>(p.promoted - p.fault).count();
    const double recovered = std::chrono::duration<double, std::milli>(last - p.fault).count();
    const double after_promotion = std::max(0.0, recovered - promotion);
    std::printf(
        "failover %-20s: promoted after %5.0f ms, last error %5.0f ms after the fault "
        "(%4.0f ms after the promotion; goal <= node timeout + 2 s = 3000 ms), %lld "
        "errors\n",
        p.name.c_str(), promotion, n == 0 ? 0.0 : recovered, after_promotion, n);
    EXPECT_LT(after_promotion, 10'000.0) << p.name;
  }
  for (const auto& [t, what] : o.errors)
    if (t >= phases.back().fault) ADD_FAILURE() << "error after the cluster settled: " << what;
  if (!o.errors.empty()) std::printf("first error: %s\n", o.errors.front().second.c_str());
  EXPECT_TRUE(healthy_at_start);
  EXPECT_FALSE(healthy_after_loss) << "health_check stayed true with a slot range unserved";
  EXPECT_EQ(o.untyped, 0);
  EXPECT_EQ(o.wrong, 0);
  EXPECT_EQ(o.late, 0) << "calls completed more than 250 ms after their deadline";
  EXPECT_GT(o.calls, 10'000);
}

// The near cache while a slot moves: entries read from the old owner must not outlive the move
// (MIGRATE deletes them there, which Redis reports; the new slot map clears the near cache), and
// writes at the new owner reach it.
TEST(ClusterFaults, NearCacheStaysCoherentWhenItsSlotMoves) {
  RedisCluster cluster;
  asio::io_context io;
  tc::ManagerOptions o;
  o.near.enabled = true;
  tc::RedisManager redis(io.get_executor(), cluster.url(), o);
  Client writer(io.get_executor(), cluster.url());
  const auto keys = keys_in_slots("near:", 20, 0, 0);
  auto read = tc::cached(
                  redis, {.name = "read"},
                  [](int) -> asio::awaitable<std::string> { co_return std::string("computed"); },
                  tc::RawCodec{})
                  .key_builder([&keys](std::string_view, const int& i) {
                    return keys[static_cast<std::size_t>(i)];
                  });
  const int n = static_cast<int>(keys.size());
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    co_await writer.connect();
    for (const auto& k : keys)
      (void)co_await writer.set(k, "old");
    for (int round = 0; round < 100 && redis.near_stats().entries < keys.size(); ++round) {
      for (int i = 0; i < n; ++i)
        (void)co_await read(i);
      co_await sleep_for(2ms);
    }
    EXPECT_EQ(redis.near_stats().entries, keys.size());
    const std::size_t from = cluster.master_of(0);
    std::size_t to = from;
    for (auto m : cluster.masters())
      if (m != from) to = m;
    const std::string from_id = cluster.node_id(from);
    const std::string to_id = cluster.node_id(to);
    cluster.node(to).cli("CLUSTER SETSLOT 0 IMPORTING " + from_id);
    cluster.node(from).cli("CLUSTER SETSLOT 0 MIGRATING " + to_id);
    std::string list;
    for (const auto& k : keys)
      list += " '" + k + "'";
    const std::string r =
        cluster.node(from).cli("MIGRATE 127.0.0.1 " + std::to_string(cluster.node(to).port()) +
                               " \"\" 0 5000 KEYS" + list);
    EXPECT_NE(r.find("OK"), std::string::npos) << r;
    for (std::size_t m : cluster.masters())
      cluster.node(m).cli("CLUSTER SETSLOT 0 NODE " + to_id);
    for (const auto& k : keys)
      (void)co_await writer.set(k, "new");
    // From here on nothing old may be served; what is new comes within a bounded time.
    const auto start = Clock::now();
    int old_after = 0;
    bool all_new = false;
    while (!all_new && Clock::now() < start + 3s) {
      all_new = true;
      for (int i = 0; i < n; ++i) {
        const std::string v = co_await read(i);
        if (v != "new") all_new = false;
        if (v == "old") ++old_after;
      }
    }
    EXPECT_TRUE(all_new);
    EXPECT_EQ(old_after, 0);
    std::printf("near cache across a slot move: all %d keys new after %.1f ms\n", n,
                ms_since(start));
    // Cached again from the new owner, whose writes reach the near cache too.
    for (int round = 0; round < 100 && redis.near_stats().entries < keys.size(); ++round) {
      for (int i = 0; i < n; ++i)
        (void)co_await read(i);
      co_await sleep_for(2ms);
    }
    EXPECT_EQ(redis.near_stats().entries, keys.size());
    const auto invalidations = redis.near_stats().invalidations;
    for (const auto& k : keys)
      (void)co_await writer.set(k, "newer");
    for (int i = 0; i < 3000 && redis.near_stats().invalidations < invalidations + keys.size(); ++i)
      co_await sleep_for(1ms);
    int stale = 0;
    for (int i = 0; i < n; ++i)
      if (co_await read(i) != "newer") ++stale;
    EXPECT_EQ(stale, 0);
    co_await redis.disconnect();
    co_await writer.disconnect();
  });
}

// Pub/sub on a cluster: every node hears every PUBLISH, so a subscriber whose node dies moves to
// another node, subscribes again there and reports the gap.
TEST(ClusterFaults, ASubscriberWhoseNodeDiesMovesToAnotherNode) {
  RedisCluster cluster;
  asio::io_context io;
  Client publisher(io.get_executor(), cluster.url());
  // Connected to the URL's node (node 0) first.
  Subscriber sub(io.get_executor(), cluster.url("reconnect_min=10ms&reconnect_max=100ms"));
  int gaps = 0;
  std::vector<std::string> heard;
  run(io, [&]() -> asio::awaitable<void> {
    co_await publisher.connect();
    co_await sub.connect();
    co_await sub.subscribe("news");
    (void)co_await publisher.publish("news", "before");
    EXPECT_EQ((co_await sub.next()).payload, "before");
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          try {
            for (;;) {
              Message m = co_await sub.next();
              if (m.kind == Message::Kind::gap) {
                ++gaps;
              } else {
                heard.push_back(m.payload);
              }
            }
          } catch (const ConnectionError&) {
          }
        },
        asio::detached);
    cluster.node(0).kill();
    const auto start = Clock::now();
    while (heard.empty() && Clock::now() < start + 20s) {
      try {
        (void)co_await publisher.publish("news", "after");
      } catch (const Error&) {
        // the publisher's PUBLISH may go to the dead node too
      }
      co_await sleep_for(50ms);
    }
    CO_ASSERT_TRUE(!heard.empty());
    EXPECT_EQ(heard.front(), "after");
    EXPECT_GE(gaps, 1);
    std::printf("subscriber heard the channel again %.0f ms after its node died\n",
                ms_since(start));
    co_await sub.disconnect();
    co_await publisher.disconnect();
  });
}

// A request sent with ASKING in front whose deadline passes while the importing node does not
// answer stays in that link's session until both replies came: the requests behind it on the
// same connection still get their own replies.
TEST(ClusterFaults, AskThatTimesOutLeavesTheOtherRepliesInOrder) {
  RedisCluster cluster(3, 0);
  asio::io_context io;
  Client client(io.get_executor(), cluster.url());
  const std::string asked = "ask:{x}";
  const auto slot = detail::key_slot(asked);
  const std::size_t from = cluster.master_of(slot);
  std::size_t to = from;
  for (auto m : cluster.masters())
    if (m != from) to = m;
  // A key on the importing node, to use its connection before and after.
  std::string other;
  for (int n = 0; other.empty(); ++n) {
    const std::string k = "ask:" + std::to_string(n);
    if (cluster.master_of(detail::key_slot(k)) == to) other = k;
  }
  cluster.node(to).cli("CLUSTER SETSLOT " + std::to_string(slot) + " IMPORTING " +
                       cluster.node_id(from));
  cluster.node(from).cli("CLUSTER SETSLOT " + std::to_string(slot) + " MIGRATING " +
                         cluster.node_id(to));
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    (void)co_await client.set(other, "other-value");  // the link to `to` is up
    cluster.node(to).pause();
    try {
      // The source answers ASK (the key is not there); ASKING + GET go to the frozen node.
      (void)co_await client.get(asked, CallOptions{150ms});
      ADD_FAILURE() << "the frozen node answered";
    } catch (const TimeoutError&) {
    }
    // Written behind the timed-out pair on the same connection.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await sleep_for(100ms);
          cluster.node(to).resume();
        },
        asio::detached);
    EXPECT_EQ((co_await client.get(other, CallOptions{3s})).value_or("<nil>"), "other-value");
    EXPECT_EQ((co_await client.get(other, CallOptions{3s})).value_or("<nil>"), "other-value");
    co_await client.disconnect();
  });
}

// The client shared by the threads of a pool: splits, redirects and cancellations race with
// deliveries on other threads (run under ThreadSanitizer by make test).
TEST(ClusterFaults, OneClientOnFourThreadsKeepsEveryReplyWithItsCaller) {
  RedisCluster cluster(3, 0);
  asio::thread_pool pool(4);
  Client client(pool.get_executor(), cluster.url());
  std::atomic<long long> wrong{0}, ok{0}, timeouts{0}, other{0};
  std::atomic<int> running{32};
  std::promise<void> connected, workers_done, disconnected;
  asio::co_spawn(
      pool, [&]() -> asio::awaitable<void> { co_await client.connect(); },
      [&](std::exception_ptr) { connected.set_value(); });
  ASSERT_EQ(connected.get_future().wait_for(30s), std::future_status::ready);
  for (int w = 0; w < 32; ++w) {
    asio::co_spawn(
        pool,
        [&, w]() -> asio::awaitable<void> {
          const auto keys = keys_in_slots("mt:" + std::to_string(w) + ":", 8);
          for (int i = 0; i < 300; ++i) {
            const std::string& k = keys[static_cast<std::size_t>(i) % keys.size()];
            try {
              (void)co_await client.set(k, value_of(k, i));
              if ((co_await client.get(k)).value_or("") != value_of(k, i)) ++wrong;
              // A multi-slot MGET, split per slot, checked value by value.
              const auto values = co_await client.mget(Keys(keys.begin(), keys.end()));
              for (std::size_t j = 0; j < values.size(); ++j)
                if (values[j] && values[j]->rfind(keys[j] + "#", 0) != 0) ++wrong;
              ++ok;
              // Deadlines too short to be met now and then: cancellation on the way.
              (void)co_await client.get(k, CallOptions{std::chrono::milliseconds(1 + i % 3)});
            } catch (const TimeoutError&) {
              ++timeouts;
            } catch (const std::exception&) {
              ++other;
            }
          }
        },
        [&](std::exception_ptr) {
          if (--running == 0) workers_done.set_value();
        });
  }
  ASSERT_EQ(workers_done.get_future().wait_for(120s), std::future_status::ready);
  asio::co_spawn(
      pool, [&]() -> asio::awaitable<void> { co_await client.disconnect(); },
      [&](std::exception_ptr) { disconnected.set_value(); });
  ASSERT_EQ(disconnected.get_future().wait_for(30s), std::future_status::ready);
  pool.join();
  std::printf("four threads: %lld ok, %lld timeouts, %lld other errors, %lld wrong\n", ok.load(),
              timeouts.load(), other.load(), wrong.load());
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 1000);
}

TEST(ClusterSecurity, PasswordReachesEveryNodeAndNeverShows) {
  RedisCluster cluster(3, 0, 1000ms, "s3cr3t-pw");
  asio::io_context io;
  const std::string where = cluster.url().substr(std::string("redis://").size());
  Client client(io.get_executor(), "redis://:s3cr3t-pw@" + where);
  Client wrong(io.get_executor(), "redis://:wrong-pw@" + where + "&connect_timeout=500ms");
  const auto keys = keys_in_slots("auth:", 60);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    EXPECT_EQ(client.masters().size(), 3u);
    co_await write_and_read_back(client, keys);
    try {
      co_await wrong.connect();
      ADD_FAILURE() << "connected with a wrong password";
    } catch (const ConnectionError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find("wrong-pw"), std::string::npos) << what;
      EXPECT_NE(what.find("WRONGPASS"), std::string::npos) << what;
    }
    co_await wrong.disconnect();
    co_await client.disconnect();
  });
}

TEST(ClusterSecurity, TlsReachesEveryNodeAndItsCertificateIsVerified) {
  tempest::test::RedisServer scratch;
  const auto certs = tempest::test::make_certs(scratch.dir());
  RedisCluster cluster(3, 0, 1000ms, "", &certs);
  asio::io_context io;
  Client client(io.get_executor(), cluster.url());
  std::string wrong_url = cluster.url("connect_timeout=500ms");
  wrong_url.replace(wrong_url.find(certs.ca), certs.ca.size(), certs.other_ca);
  Client wrong_ca(io.get_executor(), wrong_url);
  const auto keys = keys_in_slots("tls:", 60);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    EXPECT_EQ(client.masters().size(), 3u);
    co_await write_and_read_back(client, keys);
    // Every master was reached, over TLS (the nodes serve nothing else).
    for (const auto& n : client.node_stats())
      EXPECT_TRUE(n.connected) << n.address;
    EXPECT_EQ(client.node_stats().size(), 3u);
    try {
      co_await wrong_ca.connect();
      ADD_FAILURE() << "connected with the wrong CA";
    } catch (const ConnectionError& e) {
      EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos)
          << e.what();
    }
    co_await wrong_ca.disconnect();
    co_await client.disconnect();
  });
}

// Reads from replicas: when a replica cannot be reached, its reads go to the master (at once,
// not when the cluster has noticed and a new map says so).
TEST(ClusterFaults, ReadsOfALostReplicaGoToItsMaster) {
  // The cluster itself takes 5 s to notice a dead node (and gossips replicas' offsets, which
  // CLUSTER SLOTS waits for before it lists them, more often than with a longer timeout).
  RedisCluster cluster(3, 1, 5000ms);
  asio::io_context io;
  Client writer(io.get_executor(), cluster.url());
  Client client(io.get_executor(), cluster.url("read_from_replicas=true"));
  const auto keys = keys_in_slots("replica:", 60);
  run(io, [&]() -> asio::awaitable<void> {
    co_await writer.connect();
    for (const auto& k : keys)
      (void)co_await writer.set(k, k);
    co_await writer.disconnect();
  });
  // CLUSTER SLOTS lists a replica once the node asked has heard of its replication offset
  // (after the writes, by gossip): wait until every node would (the client asks any of them).
  for (int i = 0;; ++i) {
    bool all = true;
    for (std::size_t node = 0; node < cluster.size(); ++node) {
      std::istringstream slots(cluster.node(node).cli("CLUSTER SLOTS"));
      std::string line;
      int ports = 0;
      while (std::getline(slots, line))
        if (line.find("127.0.0.1") != std::string::npos) ++ports;
      all = all && ports == 6;
    }
    if (all) break;
    ASSERT_LT(i, 1200) << "CLUSTER SLOTS did not list the replicas within 60 s";
    std::this_thread::sleep_for(50ms);
  }
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    // Commands completed by the masters and by the replicas so far.
    const auto by_role = [&] {
      std::pair<std::uint64_t, std::uint64_t> n{0, 0};
      for (const auto& s : client.node_stats())
        (s.master ? n.first : n.second) += s.stats.commands;
      return n;
    };
    // The first reads open the replicas' connections (reads meanwhile go to the masters).
    for (const auto& k : keys)
      (void)co_await client.get(k);
    for (int i = 0; i < 100; ++i) {
      bool all = true;
      for (const auto& s : client.node_stats())
        all = all && s.connected;
      if (all && client.node_stats().size() == 6) break;
      co_await sleep_for(20ms);
    }
    const auto before = by_role();
    int seen = 0;
    for (const auto& k : keys)
      if ((co_await client.get(k)).value_or("") == k) ++seen;
    EXPECT_EQ(seen, 60);
    const auto read = by_role();
    EXPECT_EQ(read.second - before.second, 60u) << "the reads went to the replicas";
    EXPECT_EQ(read.first, before.first);
    for (std::size_t m : cluster.masters())
      cluster.node(cluster.replica_of(m)).kill();
    co_await sleep_for(100ms);
    const auto t = Clock::now();
    int after = 0;
    for (const auto& k : keys)
      if ((co_await client.get(k, CallOptions{1s})).value_or("") == k) ++after;
    std::printf("60 reads with every replica gone: %d answered in %.0f ms\n", after, ms_since(t));
    EXPECT_EQ(after, 60);
    EXPECT_GE(by_role().first - read.first, 60u) << "the masters answered them";
    co_await client.disconnect();
  });
}

// connect() on a cluster whose seed never answers (a frozen server) can be cancelled: it
// returns at once, and nothing of it keeps the I/O context busy afterwards.
TEST(ClusterFaults, CancelledConnectLeavesNothingBehind) {
  tempest::test::RedisServer frozen;
  frozen.pause();
  asio::io_context io;
  Client client(io.get_executor(), "redis://127.0.0.1:" + std::to_string(frozen.port()) +
                                       "?cluster=true&connect_timeout=5s");
  double waited = 0;
  run(io, [&]() -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    const auto t = Clock::now();
    asio::steady_timer give_up(io, 100ms);
    const auto first =
        co_await (client.connect(asio::use_awaitable) || give_up.async_wait(asio::use_awaitable));
    waited = ms_since(t);
    EXPECT_EQ(first.index(), 1u);
    client.close();
  });
  EXPECT_LT(waited, 1000.0);
  const auto t = Clock::now();
  io.restart();
  io.run();  // what is left: nothing that waits for the 5 s connect timeout
  EXPECT_LT(ms_since(t), 2000.0);
  frozen.resume();
}

// A store whose SET lands on one master while its registration cannot be made (the master of
// the tag's registry set is frozen) takes the entry out again: an entry in no registry set would
// escape every invalidation of its tag. (It stayed behind, unregistered, before.)
TEST(ClusterFaults, AnEntryWhoseRegistrationFailedIsNotLeftBehind) {
  RedisCluster cluster;
  const auto masters = cluster.masters();
  ASSERT_GE(masters.size(), 2u);
  const auto on = [&](const std::string& k) { return cluster.master_of(detail::key_slot(k)); };
  std::string key, tag;
  for (int n = 0; key.empty(); ++n)
    if (on("entry:" + std::to_string(n)) == masters[0]) key = "entry:" + std::to_string(n);
  for (int n = 0; tag.empty(); ++n)
    if (on("__tag__:t" + std::to_string(n)) == masters[1]) tag = "t" + std::to_string(n);
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), cluster.url());
  tc::CachedOptions o;
  o.name = "registered";
  o.deadline = 200ms;
  o.lock.enabled = false;
  int runs = 0;
  auto item = tc::cached(redis, o, [&runs](int) -> asio::awaitable<std::string> {
                ++runs;
                co_return std::string("value");
              }).key_builder([&key](std::string_view, const int&) {
                  return key;
                }).tags([&tag](int) { return std::vector<std::string>{tag}; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    cluster.node(masters[1]).pause();
    const std::string got = co_await item(1);
    cluster.node(masters[1]).resume();
    EXPECT_EQ(got, "value");
    EXPECT_EQ(runs, 1);
    co_await sleep_for(300ms);  // the frozen master ran the registration once it woke up
    auto c = redis.client();
    const Keys k{key};
    EXPECT_EQ(co_await c.exists(k), 0) << "the entry stayed without its registration";
    co_await redis.disconnect();
  });
}
