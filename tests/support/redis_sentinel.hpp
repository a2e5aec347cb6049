// A real Redis Sentinel deployment for tests: a master, one replica and three sentinels on free
// 127.0.0.1 ports, everything stopped (SIGKILL) on destruction.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/redis_server.hpp"

namespace tempest::test {

// The data nodes are RedisServer processes (each with its own throwaway directory); the sentinels
// (redis-sentinel, or redis-server --sentinel where that is missing) run from config files of
// their own in dir(), which they rewrite as they learn. Every wait is bounded.
class SentinelGroup {
 public:
  // service: the master's name the sentinels monitor. down_after_ms: down-after-milliseconds.
  // extra_server: more config lines for both data nodes, e.g. {"requirepass x", "masterauth x"}
  // (split on blanks, no quoting). extra_sentinel: more lines for the sentinels' config files,
  // e.g. {"sentinel auth-pass mymaster x"}. A "requirepass" line in either is used by the group's
  // own queries (not by cli()).
  // Returns once the replica's link is up and every sentinel knows the master, the replica and
  // the two other sentinels; throws std::runtime_error (with what it saw) after 15 s.
  explicit SentinelGroup(std::string service = "mymaster", int down_after_ms = 1000,
                         std::vector<std::string> extra_server = {},
                         std::vector<std::string> extra_sentinel = {});
  ~SentinelGroup();
  SentinelGroup(const SentinelGroup&) = delete;
  SentinelGroup& operator=(const SentinelGroup&) = delete;

  const std::string& service() const { return service_; }
  // The directory of the sentinels' config files and logs (sentinel-<port>.conf / .log).
  const std::string& dir() const { return dir_; }
  // redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/<service> + suffix ("?db=1", "/2").
  std::string url(const std::string& suffix = "") const;
  std::uint16_t sentinel_port(int i) const;  // i = 0..2
  bool sentinel_running(int i) const;
  // The master as the sentinels see it now (SENTINEL get-master-addr-by-name on the first live
  // sentinel that answers).
  std::uint16_t master_port() const;
  // The other data node.
  std::uint16_t replica_port() const;
  // The data node on `port` (its dir() has redis.log).
  RedisServer& data_node(std::uint16_t port);

  // SIGKILLs the current master's process; returns its port.
  std::uint16_t kill_master();
  // Starts a killed data node again on its port: as a replica of the master the sentinels name
  // when that is another node, else as a master. A node still running is left as it is.
  void restart(std::uint16_t data_port);
  // SIGKILLs / restarts one sentinel (same port, same config file).
  void stop_sentinel(int i);
  void start_sentinel(int i);
  void stop_all_sentinels();

  // Runs `SENTINEL FAILOVER <service>` on a live sentinel; returns its output.
  std::string failover();
  // Waits up to `limit` until every live sentinel names the same master, not `old_port`, and
  // that node says role:master; returns its port. Throws std::runtime_error with what it saw.
  std::uint16_t wait_for_new_master(std::uint16_t old_port, std::chrono::milliseconds limit);

  // redis-cli -h 127.0.0.1 -p port args (stdout and stderr; no password added).
  std::string cli(std::uint16_t port, const std::string& args) const;

 private:
  struct Sentinel {
    std::uint16_t port = 0;
    std::string conf;
    pid_t pid = -1;
  };

  // cli() with the group's password for that port, if any, and a short timeout.
  std::string query(std::uint16_t port, const std::string& args) const;
  bool is_sentinel(std::uint16_t port) const;
  std::vector<std::string> data_args(std::uint16_t replica_of) const;
  void wait_ready(std::chrono::seconds limit);
  // The last lines of every process's log, for error messages (the directories go with the group).
  std::string log_tails(std::size_t lines) const;
  void shutdown() noexcept;

  std::string service_;
  int down_after_ms_;
  std::vector<std::string> extra_server_;  // as redis-server arguments
  std::string server_auth_;                // redis-cli arguments for the data nodes' password
  std::string sentinel_auth_;              // ... and the sentinels'
  std::string dir_;
  std::vector<std::unique_ptr<RedisServer>> data_;  // [0]: the first master, [1]: its replica
  std::array<Sentinel, 3> sentinels_;
};

}  // namespace tempest::test
