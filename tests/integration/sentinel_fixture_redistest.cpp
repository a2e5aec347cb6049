// The SentinelGroup fixture itself, with redis-cli only (no tempest client): it starts, fails
// over when its master dies, takes the old master back as a replica, and leaves nothing behind.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "support/redis_sentinel.hpp"
#include "support/run.hpp"

namespace tempest::test {
namespace {

using namespace std::chrono_literals;

// The value of "name:value" in INFO output (which starts with a "# Section" line), or "".
std::string info_field(const std::string& info, const std::string& name) {
  const auto at = info.find("\n" + name + ":");
  if (at == std::string::npos) return "";
  const auto from = at + name.size() + 2;
  const auto end = info.find_first_of("\r\n", from);
  return info.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

std::string address(std::uint16_t port) {
  return "127.0.0.1\n" + std::to_string(port) + "\n";
}

// Waits up to `limit` until `node` is a replica of `master` with its link up.
bool wait_replica_of(SentinelGroup& g, std::uint16_t node, std::uint16_t master,
                     std::chrono::milliseconds limit, std::string& last) {
  const auto until = Clock::now() + limit;
  for (;;) {
    last = g.cli(node, "INFO replication");
    if (info_field(last, "role") == "slave" &&
        info_field(last, "master_port") == std::to_string(master) &&
        info_field(last, "master_link_status") == "up")
      return true;
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(50ms);
  }
}

TEST(SentinelFixture, StartsFailsOverAndTakesTheOldMasterBack) {
  std::uint16_t ports[5] = {};
  {
    const auto t0 = Clock::now();
    SentinelGroup g;
    const double start_ms = ms_since(t0);
    const auto master = g.master_port();
    const auto replica = g.replica_port();
    ASSERT_NE(master, replica);
    ports[0] = master;
    ports[1] = replica;
    for (int i = 0; i < 3; ++i)
      ports[2 + i] = g.sentinel_port(i);
    EXPECT_EQ(g.url("?db=1"), "redis+sentinel://127.0.0.1:" + std::to_string(ports[2]) +
                                  ",127.0.0.1:" + std::to_string(ports[3]) +
                                  ",127.0.0.1:" + std::to_string(ports[4]) + "/mymaster?db=1");

    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(g.cli(g.sentinel_port(i), "SENTINEL get-master-addr-by-name mymaster"),
                address(master));
    EXPECT_EQ(info_field(g.cli(master, "INFO replication"), "role"), "master");
    std::string info;
    EXPECT_TRUE(wait_replica_of(g, replica, master, 0ms, info)) << info;

    // A write on the master reaches the replica (WAIT: acknowledged by 1 replica).
    EXPECT_EQ(g.cli(master, "SET fixture:key before-failover"), "OK\n");
    EXPECT_EQ(g.cli(master, "WAIT 1 2000"), "1\n");

    const auto t1 = Clock::now();
    EXPECT_EQ(g.kill_master(), master);
    const auto promoted = g.wait_for_new_master(master, 10s);
    const double failover_ms = ms_since(t1);
    EXPECT_EQ(promoted, replica);
    EXPECT_EQ(g.master_port(), replica);
    EXPECT_EQ(g.replica_port(), master);
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(g.cli(g.sentinel_port(i), "SENTINEL get-master-addr-by-name mymaster"),
                address(replica));
    EXPECT_EQ(g.cli(replica, "GET fixture:key"), "before-failover\n");

    const auto t2 = Clock::now();
    g.restart(master);
    EXPECT_TRUE(wait_replica_of(g, master, replica, 10s, info)) << info;
    EXPECT_EQ(g.cli(master, "GET fixture:key"), "before-failover\n");
    // ... and the sentinels see it up again, as the new master's one replica.
    const auto until = Clock::now() + 10s;
    std::string seen;
    for (;;) {
      bool ok = true;
      for (int i = 0; i < 3; ++i) {
        seen = g.cli(g.sentinel_port(i), "SENTINEL replicas mymaster");
        if (seen.find("\nport\n" + std::to_string(master) + "\n") == std::string::npos ||
            seen.find("\nflags\nslave\n") == std::string::npos)
          ok = false;
      }
      if (ok || Clock::now() > until) break;
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_NE(seen.find("\nflags\nslave\n"), std::string::npos) << seen;
    const double back_ms = ms_since(t2);
    std::cout << "[ timing   ] group up in " << start_ms << " ms, new master " << failover_ms
              << " ms after the kill (down-after 1000 ms), old master back as a replica in "
              << back_ms << " ms\n";
  }
  // Nothing is left listening.
  for (const auto port : ports)
    EXPECT_FALSE(can_connect(port)) << port;
}

TEST(SentinelFixture, ManualFailoverWithOneSentinelDown) {
  SentinelGroup g("fixture-svc");
  EXPECT_EQ(g.service(), "fixture-svc");
  const auto master = g.master_port();
  const auto replica = g.replica_port();

  g.stop_sentinel(2);
  EXPECT_FALSE(g.sentinel_running(2));
  EXPECT_NE(g.cli(g.sentinel_port(2), "PING").find("Connection refused"), std::string::npos);

  const auto t0 = Clock::now();
  EXPECT_EQ(g.failover(), "OK\n");
  EXPECT_EQ(g.wait_for_new_master(master, 10s), replica);
  const double failover_ms = ms_since(t0);

  // The stopped sentinel comes back with its rewritten config and learns the new master.
  g.start_sentinel(2);
  EXPECT_TRUE(g.sentinel_running(2));
  EXPECT_EQ(g.wait_for_new_master(master, 10s), replica);
  EXPECT_EQ(g.cli(g.sentinel_port(2), "SENTINEL get-master-addr-by-name fixture-svc"),
            address(replica));

  // The old master, still running, is turned into a replica by the sentinels.
  const auto t1 = Clock::now();
  std::string info;
  EXPECT_TRUE(wait_replica_of(g, master, replica, 30s, info)) << info;
  std::cout << "[ timing   ] SENTINEL FAILOVER done in " << failover_ms
            << " ms, the old master a replica " << ms_since(t1) << " ms later\n";

  g.stop_all_sentinels();
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(g.sentinel_running(i));
  EXPECT_THROW(g.master_port(), std::runtime_error);
  EXPECT_THROW(g.failover(), std::runtime_error);
}

// Data nodes and sentinels behind passwords: the group's own waits authenticate.
TEST(SentinelFixture, WithPasswords) {
  SentinelGroup g("mymaster", 1000, {"requirepass data-pw", "masterauth data-pw"},
                  // sentinel-pass: what the sentinels use with each other.
                  {"sentinel auth-pass mymaster data-pw", "requirepass sentinel-pw",
                   "sentinel sentinel-pass sentinel-pw"});
  const auto master = g.master_port();
  EXPECT_NE(g.cli(master, "PING").find("NOAUTH"), std::string::npos);
  EXPECT_NE(g.cli(g.sentinel_port(0), "PING").find("NOAUTH"), std::string::npos);
  EXPECT_EQ(g.cli(master, "-a data-pw --no-auth-warning PING"), "PONG\n");
  const auto replica = g.replica_port();
  g.kill_master();
  EXPECT_EQ(g.wait_for_new_master(master, 10s), replica);
}

}  // namespace
}  // namespace tempest::test
