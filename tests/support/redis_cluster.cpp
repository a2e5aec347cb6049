#include "support/redis_cluster.hpp"

#include "tempest/redis/detail/cluster_keys.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace tempest::test {

RedisCluster::RedisCluster(int masters, int replicas, std::chrono::milliseconds node_timeout,
                           std::string password, const Certs* tls) {
  const int n = masters * (1 + replicas);
  if (!password.empty()) auth_ = "-a " + password + " --no-auth-warning ";
  if (tls != nullptr) {
    auth_ += "--tls --cacert " + tls->ca + " ";
    tls_ca_ = tls->ca;
  }
  std::string create = auth_ + "--cluster create";
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> args = {
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
        std::to_string(node_timeout.count()),
        // The bus port is chosen, not port + 10000: that is above 65535 for high free ports.
        "--cluster-port", std::to_string(free_port())};
    if (!password.empty())
      args.insert(args.end(), {"--requirepass", password, "--masterauth", password});
    if (tls != nullptr)
      args.insert(args.end(), {"--tls-cert-file", tls->cert, "--tls-key-file", tls->key,
                               "--tls-ca-cert-file", tls->ca, "--tls-auth-clients", "no",
                               "--tls-cluster", "yes", "--tls-replication", "yes"});
    nodes_.push_back(std::make_unique<RedisServer>(std::move(args), 0, tls != nullptr));
    create += " 127.0.0.1:" + std::to_string(nodes_.back()->port());
  }
  create += " --cluster-replicas " + std::to_string(replicas) + " --cluster-yes";
  const std::string out = redis_cli(create);
  if (out.find("[OK] All 16384 slots covered") == std::string::npos)
    throw std::runtime_error("redis-cli --cluster create failed:\n" + out);
  wait_ok();
  // Every node also knows every replica as one (a new replica shows as a master without slots
  // for a moment, and CLUSTER SLOTS lists it only after).
  const auto expected = static_cast<std::size_t>(masters * replicas);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    bool all = true;
    for (const auto& node : nodes_) {
      const std::string nodes = node->cli(auth_ + "CLUSTER NODES");
      std::size_t n = 0;
      for (std::size_t at = nodes.find(" slave "); at != std::string::npos;
           at = nodes.find(" slave ", at + 1))
        ++n;
      for (std::size_t at = nodes.find(",slave "); at != std::string::npos;
           at = nodes.find(",slave ", at + 1))
        ++n;
      if (n != expected) all = false;
    }
    if (all) break;
    if (std::chrono::steady_clock::now() > until)
      throw std::runtime_error("the cluster's replicas were not known to every node in 30 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string RedisCluster::redis_cli(const std::string& args) {
  const std::string command = "timeout 60 redis-cli " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("popen failed");
  std::string out;
  std::array<char, 4096> buf{};
  while (auto got = std::fread(buf.data(), 1, buf.size(), pipe.get()))
    out.append(buf.data(), got);
  return out;
}

std::string RedisCluster::url(const std::string& query) const {
  return std::string(tls_ca_.empty() ? "redis" : "rediss") +
         "://127.0.0.1:" + std::to_string(nodes_.front()->port()) + "?cluster=true" +
         (tls_ca_.empty() ? "" : "&tls_ca=" + tls_ca_) + (query.empty() ? "" : "&" + query);
}

std::size_t RedisCluster::index_of(std::uint16_t port) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i]->port() == port) return i;
  throw std::runtime_error("no cluster node on port " + std::to_string(port));
}

std::size_t RedisCluster::any_running() const {
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i]->running() && !nodes_[i]->paused()) return i;
  throw std::runtime_error("no cluster node is running");
}

void RedisCluster::wait_ok(std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  std::string last;
  while (std::chrono::steady_clock::now() < until) {
    bool ok = true;
    for (const auto& n : nodes_) {
      if (!n->running() || n->paused()) continue;
      last = n->cli(auth_ + "CLUSTER INFO");
      if (last.find("cluster_state:ok") == std::string::npos) {
        ok = false;
        break;
      }
    }
    if (ok) {
      const auto& any = nodes_[any_running()];
      last = redis_cli(auth_ + "--cluster check 127.0.0.1:" + std::to_string(any->port()));
      if (last.find("[OK] All nodes agree about slots configuration.") != std::string::npos &&
          last.find("[OK] All 16384 slots covered.") != std::string::npos &&
          last.find("[ERR]") == std::string::npos && last.find("[WARNING]") == std::string::npos)
        return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("the cluster did not become ok:\n" + last);
}

std::vector<std::size_t> RedisCluster::masters() {
  std::vector<std::size_t> out;
  const std::string nodes = nodes_[any_running()]->cli(auth_ + "CLUSTER NODES");
  std::istringstream lines(nodes);
  std::string line;
  while (std::getline(lines, line)) {
    // <id> <ip:port@cport> <flags> ...
    std::istringstream f(line);
    std::string id, addr, flags, master, ping, pong, epoch, link, slots;
    f >> id >> addr >> flags >> master >> ping >> pong >> epoch >> link >> slots;
    // A master serving slots (a new replica shows as a master without any for a moment).
    if (flags.find("master") == std::string::npos || flags.find("fail") != std::string::npos ||
        slots.empty())
      continue;
    const auto colon = addr.rfind(':');
    const auto at = addr.find('@');
    if (colon == std::string::npos) continue;
    out.push_back(index_of(static_cast<std::uint16_t>(std::stoi(
        addr.substr(colon + 1, at == std::string::npos ? std::string::npos : at - colon - 1)))));
  }
  return out;
}

std::size_t RedisCluster::master_of(std::uint16_t slot) {
  const std::string nodes = nodes_[any_running()]->cli(auth_ + "CLUSTER NODES");
  std::istringstream lines(nodes);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string id, addr, flags, master, ping, pong, epoch, link;
    f >> id >> addr >> flags >> master >> ping >> pong >> epoch >> link;
    if (flags.find("master") == std::string::npos) continue;
    std::string range;
    while (f >> range) {
      if (range.front() == '[') continue;  // a slot being migrated or imported
      const auto dash = range.find('-');
      const int lo = std::stoi(range.substr(0, dash));
      const int hi = dash == std::string::npos ? lo : std::stoi(range.substr(dash + 1));
      if (slot >= lo && slot <= hi) {
        const auto colon = addr.rfind(':');
        const auto at = addr.find('@');
        return index_of(
            static_cast<std::uint16_t>(std::stoi(addr.substr(colon + 1, at - colon - 1))));
      }
    }
  }
  throw std::runtime_error("no master serves slot " + std::to_string(slot));
}

std::string RedisCluster::node_id(std::size_t i) {
  std::string id = nodes_.at(i)->cli(auth_ + "CLUSTER MYID");
  while (!id.empty() && (id.back() == '\n' || id.back() == '\r'))
    id.pop_back();
  return id;
}

std::size_t RedisCluster::replica_of(std::size_t master) {
  const std::string master_id = node_id(master);
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (i == master || !nodes_[i]->running() || nodes_[i]->paused()) continue;
    // CLUSTER NODES of the node itself: "<id> <addr> myself,slave <master id> ..."
    std::istringstream lines(nodes_[i]->cli(auth_ + "CLUSTER NODES"));
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream f(line);
      std::string id, addr, flags, of;
      f >> id >> addr >> flags >> of;
      if (flags.find("myself") != std::string::npos && flags.find("slave") != std::string::npos &&
          of == master_id)
        return i;
    }
  }
  throw std::runtime_error("the master at index " + std::to_string(master) + " has no replica");
}

std::vector<std::string> keys_in_slots(const std::string& base, std::size_t count, std::uint16_t lo,
                                       std::uint16_t hi) {
  std::vector<std::string> out;
  for (std::size_t n = 0; out.size() < count; ++n) {
    std::string k = base + "{" + std::to_string(n) + "}";
    const auto slot = redis::detail::key_slot(k);
    if (slot >= lo && slot <= hi) out.push_back(std::move(k));
  }
  return out;
}

const std::string& shared_cluster_url() {
  static const std::string url = [] {
    if (const char* env = std::getenv("TEMPEST_CLUSTER_URL"); env && *env) return std::string(env);
    static RedisCluster cluster;
    return cluster.url();
  }();
  return url;
}

}  // namespace tempest::test
