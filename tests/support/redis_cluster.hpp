// A real Redis Cluster for tests: redis-server processes in cluster mode on free ports, joined
// by `redis-cli --cluster create`, removed on destruction.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/redis_server.hpp"
#include "support/tls_certs.hpp"

namespace tempest::test {

class RedisCluster {
 public:
  // `masters` masters with `replicas` replicas each; a small node timeout so that failovers
  // happen within a test's time.
  explicit RedisCluster(int masters = 3, int replicas = 1,
                        std::chrono::milliseconds node_timeout = std::chrono::milliseconds(1000),
                        std::string password = "", const Certs* tls = nullptr);
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // redis://127.0.0.1:<first node>?cluster=true&<query> (rediss://...&tls_ca=... with TLS)
  std::string url(const std::string& query = "") const;
  std::size_t size() const { return nodes_.size(); }
  RedisServer& node(std::size_t i) { return *nodes_[i]; }
  // The node index listening on `port`.
  std::size_t index_of(std::uint16_t port) const;

  // Waits until every running node reports cluster_state:ok and they agree on the slot map.
  void wait_ok(std::chrono::seconds limit = std::chrono::seconds(60));
  // Indices of the nodes that are masters serving slots now (asked of a running node).
  std::vector<std::size_t> masters();
  // The index of the master serving `slot` now.
  std::size_t master_of(std::uint16_t slot);
  // The index of a running replica of the master at `master` (throws when it has none).
  std::size_t replica_of(std::size_t master);
  // The node's cluster id (CLUSTER MYID).
  std::string node_id(std::size_t i);
  // Runs redis-cli with `args` (e.g. "--cluster reshard ...") and returns its output.
  static std::string redis_cli(const std::string& args);

 private:
  std::size_t any_running() const;
  std::string auth_;  // redis-cli arguments for the password and TLS, if any
  std::string tls_ca_;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
};

// Keys "<base>{<n>}" (n = 0, 1, ...) whose slots fall in [lo, hi], `count` of them.
std::vector<std::string> keys_in_slots(const std::string& base, std::size_t count,
                                       std::uint16_t lo = 0, std::uint16_t hi = 16383);

// The cluster started by `make test` (TEMPEST_CLUSTER_URL) when set, otherwise one started here.
const std::string& shared_cluster_url();

}  // namespace tempest::test
