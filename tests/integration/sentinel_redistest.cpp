// Redis Sentinel: a master, a replica and three sentinels started by the test (SentinelGroup).
// The cache through Sentinel, failover under load (SIGKILL, then SENTINEL FAILOVER), a stale
// sentinel that names a replica, and every sentinel down.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/describe/class.hpp>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/redis_sentinel.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "support/served_app.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/cache/invalidator.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/http/health.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/error.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
namespace tr = tempest::redis;
using namespace std::chrono_literals;
using tempest::test::Clock;
using tempest::test::http_get;
using tempest::test::ms_since;
using tempest::test::run;
using tempest::test::SentinelGroup;
using tempest::test::sleep_for;

namespace {

struct Profile {
  std::string id;
  std::string name;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (id, name))

// A "sentinel" that names whatever it is told as the master (a stale one, for the ROLE check):
// answers SENTINEL get-master-addr-by-name with [host, port], PING with PONG, the rest +OK.
class FakeSentinel {
 public:
  FakeSentinel(std::string host, std::uint16_t port) : host_(std::move(host)), named_(port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0)
      throw std::runtime_error("fake sentinel: cannot listen");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeSentinel() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  int asked() const { return asked_; }

 private:
  void serve() {
    std::vector<int> clients;
    std::vector<std::string> inbox;
    while (!stop_) {
      std::vector<pollfd> fds{{fd_, POLLIN, 0}};
      for (int c : clients)
        fds.push_back({c, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        clients.push_back(::accept(fd_, nullptr, nullptr));
        inbox.emplace_back();
        continue;
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        char buf[4096];
        const auto n = ::read(clients[i - 1], buf, sizeof buf);
        if (n <= 0) {
          ::close(clients[i - 1]);
          clients.erase(clients.begin() + static_cast<long>(i - 1));
          inbox.erase(inbox.begin() + static_cast<long>(i - 1));
          break;
        }
        inbox[i - 1].append(buf, static_cast<std::size_t>(n));
        answer(clients[i - 1], inbox[i - 1]);
      }
    }
    for (int c : clients)
      ::close(c);
  }
  // Answers each complete command (an array of bulk strings) in `in`.
  void answer(int fd, std::string& in) {
    for (;;) {
      std::size_t at = 0;
      std::vector<std::string> args;
      if (in.empty() || in[0] != '*') return;
      auto line_end = in.find("\r\n");
      if (line_end == std::string::npos) return;
      const int count = std::stoi(in.substr(1, line_end - 1));
      at = line_end + 2;
      for (int k = 0; k < count; ++k) {
        line_end = in.find("\r\n", at);
        if (line_end == std::string::npos) return;
        const auto size = std::stoul(in.substr(at + 1, line_end - at - 1));
        if (in.size() < line_end + 2 + size + 2) return;
        args.push_back(in.substr(line_end + 2, size));
        at = line_end + 2 + size + 2;
      }
      in.erase(0, at);
      std::string out = "+OK\r\n";
      if (!args.empty() && args[0] == "PING") out = "+PONG\r\n";
      if (!args.empty() && args[0] == "SENTINEL") {
        ++asked_;
        const std::string port = std::to_string(named_);
        out = "*2\r\n$" + std::to_string(host_.size()) + "\r\n" + host_ + "\r\n$" +
              std::to_string(port.size()) + "\r\n" + port + "\r\n";
      }
      (void)::write(fd, out.data(), out.size());
    }
  }

  std::string host_;
  std::uint16_t named_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> asked_{0};
  std::thread thread_;
};

}  // namespace

// Everything the cache does, through Sentinel: a cached function (miss, then hit), invalidation
// by tag, the health check, and plain commands, on the database the URL names.
TEST(Sentinel, TheCacheWorksThroughSentinel) {
  SentinelGroup group;
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), group.url("/3"));
  int runs = 0;
  auto profile =
      tc::cached(redis, {.name = "profile", .ttl = 60s, .key_prefix = "s:"},
                 [&runs](std::string id) -> asio::awaitable<Profile> {
                   ++runs;
                   Profile p{id, "Ana"};
                   co_return p;
                 })
          .tags([](const std::string& id) { return std::vector<std::string>{"u:" + id}; });
  tc::CacheInvalidator invalidator(redis, "s:");
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    EXPECT_TRUE(co_await redis.health_check());
    EXPECT_EQ((co_await profile("7")).name, "Ana");
    EXPECT_EQ((co_await profile("7")).name, "Ana");
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(co_await invalidator.invalidate_tag("u:7"), 1u);
    (void)co_await profile("7");
    EXPECT_EQ(runs, 2);
    auto client = redis.client();
    co_await client.set("plain", "v");
    EXPECT_EQ(co_await client.get("plain"), std::optional<std::string>("v"));
    co_await redis.disconnect();
  });
  // On the master, in database 3.
  EXPECT_EQ(group.cli(group.master_port(), "-n 3 get plain"), "v\n");
}

// A sentinel that names a replica is not trusted: ROLE says slave, and the next sentinel is
// asked; the writes land on the real master.
TEST(Sentinel, AStaleSentinelNamingAReplicaIsNotTrusted) {
  SentinelGroup group;
  FakeSentinel stale("127.0.0.1", group.replica_port());
  const std::string url = "redis+sentinel://127.0.0.1:" + std::to_string(stale.port()) +
                          ",127.0.0.1:" + std::to_string(group.sentinel_port(0)) + "/" +
                          group.service() + "?reconnect_min=20ms";
  asio::io_context io;
  tr::Client client(io.get_executor(), url);
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();  // the replica it names is not believed: the next sentinel is
    co_await client.set("where", "master");
    co_await client.disconnect();
  });
  EXPECT_GE(stale.asked(), 1);
  EXPECT_EQ(group.cli(group.master_port(), "get where"), "master\n");
}

// Every sentinel down: a clear error naming the service and each sentinel, in bounded time.
TEST(Sentinel, AllSentinelsDownIsAClearErrorNeverAHang) {
  const auto p1 = tempest::test::free_port();
  const auto p2 = tempest::test::free_port();
  asio::io_context io;
  tr::Client client(io.get_executor(), "redis+sentinel://127.0.0.1:" + std::to_string(p1) +
                                           ",127.0.0.1:" + std::to_string(p2) +
                                           "/payments?connect_timeout=500ms");
  std::string error;
  const auto started = Clock::now();
  run(io, [&]() -> asio::awaitable<void> {
    try {
      co_await client.connect();
    } catch (const tr::Error& e) {
      error = e.what();
    }
    try {
      co_await client.get("k");
      ADD_FAILURE() << "a GET without a master succeeded";
    } catch (const tr::Error& e) {
      EXPECT_NE(std::string(e.what()).find("payments"), std::string::npos) << e.what();
    }
    co_await client.disconnect();
  });
  EXPECT_NE(error.find("no sentinel named the master of 'payments'"), std::string::npos) << error;
  EXPECT_NE(error.find("127.0.0.1:" + std::to_string(p1)), std::string::npos) << error;
  EXPECT_NE(error.find("127.0.0.1:" + std::to_string(p2)), std::string::npos) << error;
  EXPECT_LT(ms_since(started), 10000);
}

// Failover under load: 64 callers each write and read back values of their own key. SIGKILL of
// the master (the sentinels promote the replica), then the old master back, then SENTINEL
// FAILOVER. Only typed errors during the windows, no wrong value ever, the health check false
// during the window and true after; the recovery times are printed.
static void failover_under_load(const std::string& params) {
  const bool replicas = params.find("read_from_replicas=true") != std::string::npos;
  SentinelGroup group;
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), group.url("?reconnect_max=200ms" + params));
  std::atomic<bool> stop{false};
  std::atomic<long long> ok{0}, typed_errors{0}, other_errors{0}, wrong{0};
  std::atomic<long long> last_ok_ms{0};
  std::atomic<long long> max_gap_ms{0};  // the longest time without a successful operation
  std::mutex mutex;
  std::vector<std::string> odd;
  const auto t0 = Clock::now();
  const auto now_ms = [&] { return static_cast<long long>(ms_since(t0)); };
  std::atomic<bool> saw_unhealthy{false};
  std::vector<double> recoveries;
  // A service's readiness probe, as an orchestrator polls it: the health router of an App with
  // its own manager through the same sentinels, asked over HTTP every 50 ms from another thread.
  tempest::test::Served service;
  tc::RedisManager& probe_redis = service.manager(group.url("?reconnect_max=200ms"));
  service.app.on_startup([&]() -> asio::awaitable<void> { co_await probe_redis.connect(); });
  service.app.on_shutdown([&]() -> asio::awaitable<void> { co_await probe_redis.disconnect(); });
  service.app.include(tempest::http::make_health_router(
      {.checks = {{"redis", [&] { return probe_redis.health_check(); }}}, .timeout = 500ms}));
  service.start();
  std::atomic<bool> saw_503{false}, probing{true};
  std::atomic<int> last_status{0};
  std::thread prober([&] {
    while (probing) {
      const int status = http_get(service.port(), "/health/readiness").status;
      last_status = status;
      if (status == 503) saw_503 = true;
      std::this_thread::sleep_for(50ms);
    }
  });

  run(
      io,
      [&]() -> asio::awaitable<void> {
        co_await redis.connect();
        auto worker = [&](int id) -> asio::awaitable<void> {
          auto client = redis.client();
          const std::string key = "failover:" + std::to_string(id);
          for (long long seq = 1; !stop; ++seq) {
            bool failed = false;
            const std::string value = std::to_string(id) + ":" + std::to_string(seq);
            try {
              co_await client.set(key, value);
              const auto got = co_await client.get(key);
              // Ours (this one, or an earlier one of this caller's if the write was lost with the
              // old master), never another caller's or another request's reply.
              // (From a replica, the first read may come before the first write reached it.)
              const bool not_yet = replicas && seq == 1 && !got;
              if (!not_yet && (!got || !got->starts_with(std::to_string(id) + ":"))) {
                ++wrong;
                std::lock_guard lock(mutex);
                odd.push_back(key + " -> " + got.value_or("(nil)"));
              }
              ++ok;
              const long long at = now_ms();
              const long long gap = at - last_ok_ms.exchange(at);
              for (long long m = max_gap_ms; gap > m && !max_gap_ms.compare_exchange_weak(m, gap);)
                ;
            } catch (const tr::Error&) {
              ++typed_errors;
              failed = true;
            } catch (const std::exception& e) {
              ++other_errors;
              std::lock_guard lock(mutex);
              odd.push_back(e.what());
            }
            if (failed) co_await sleep_for(5ms);
          }
        };
        for (int i = 0; i < 64; ++i)
          asio::co_spawn(io, worker(i), asio::detached);
        auto health = [&]() -> asio::awaitable<void> {
          while (!stop) {
            if (!co_await redis.health_check()) saw_unhealthy = true;
            co_await sleep_for(50ms);
          }
        };
        asio::co_spawn(io, health(), asio::detached);
        co_await sleep_for(1s);
        if (replicas) {
          // The reads do go to the replica (its link's own counters). After a failover the
          // sentinels list the demoted master as a replica only once they see its link to the
          // new master up (they poll INFO every 10 s), so reads may stay on the master until then.
          std::uint64_t on_replicas = 0;
          for (const auto& n : redis.client().node_stats())
            if (!n.master) on_replicas += n.stats.commands;
          EXPECT_GT(on_replicas, 1000u);
        }

        for (int round = 0; round < 2; ++round) {
          const auto old_master = group.master_port();
          const long long before = ok;
          max_gap_ms = 0;
          if (round == 0) {
            group.kill_master();
          } else {
            std::printf("SENTINEL FAILOVER: %s\n", group.failover().c_str());
          }
          // Recovered: a new master, and operations flowing again for a second.
          saw_unhealthy = false;
          for (int i = 0; i < 300; ++i) {
            co_await sleep_for(100ms);
            if (ok > before && group.master_port() != old_master) break;
          }
          co_await sleep_for(1s);
          const double took = static_cast<double>(max_gap_ms.load());
          recoveries.push_back(took);
          std::printf("round %d (%s): master %u -> %u, no operation succeeded for %.0f ms\n", round,
                      round == 0 ? "SIGKILL" : "SENTINEL FAILOVER", old_master, group.master_port(),
                      took);
          EXPECT_NE(group.master_port(), old_master);
          if (round == 0) {
            EXPECT_TRUE(saw_unhealthy.load());
            EXPECT_TRUE(saw_503.load());  // the readiness probe said so over HTTP
            group.restart(old_master);    // back, as a replica of the new master
            co_await sleep_for(3s);       // replicated before the manual failover
          }
          EXPECT_TRUE(co_await redis.health_check());
          // Readiness back to 200 within 3 s of the operations flowing again.
          for (int i = 0; i < 60 && last_status != 200; ++i)
            co_await sleep_for(50ms);
          EXPECT_EQ(last_status.load(), 200) << "readiness after round " << round;
        }
        const long long after = ok;
        co_await sleep_for(500ms);
        EXPECT_GT(ok.load(), after);  // still going

        stop = true;
        co_await sleep_for(300ms);
        co_await redis.disconnect();
      },
      std::chrono::seconds(90));
  probing = false;
  prober.join();
  service.stop();
  std::printf("operations %lld, typed errors %lld, other errors %lld, wrong values %lld\n",
              ok.load(), typed_errors.load(), other_errors.load(), wrong.load());
  EXPECT_EQ(wrong, 0) << (odd.empty() ? "" : odd.front());
  EXPECT_EQ(other_errors, 0) << (odd.empty() ? "" : odd.front());
  EXPECT_GT(typed_errors, 0);  // there was a window
  ASSERT_EQ(recoveries.size(), 2u);
  // The sentinels need down-after (1 s) plus their election and promotion: goal + 2 s.
  EXPECT_LT(recoveries[0], 12000);
  EXPECT_LT(recoveries[1], 12000);
}

TEST(Sentinel, FailoverUnderLoadLosesNothingItConfirmedAndNeverAnswersWrong) {
  failover_under_load("");
}

// The same with the reads on the replicas: a read may come from before the caller's last write
// (replication lags), never from another caller; the promoted replica and the old master coming
// back as a replica are followed.
TEST(Sentinel, FailoverUnderLoadReadingFromReplicas) {
  failover_under_load("&read_from_replicas=true&replica_refresh=500ms");
}

namespace {

// How many times `port`'s server ran `command` (INFO commandstats), 0 when never.
long long calls_of(const SentinelGroup& group, std::uint16_t port, const std::string& command) {
  const std::string info = group.cli(port, "info commandstats");
  const std::string tag = "cmdstat_" + command + ":calls=";
  const auto at = info.find(tag);
  return at == std::string::npos ? 0 : std::stoll(info.substr(at + tag.size()));
}

// Waits (up to 5 s) until the replica on `port` has `key` = `value` (replicated).
bool replicated(const SentinelGroup& group, std::uint16_t port, const std::string& key,
                const std::string& value) {
  for (int i = 0; i < 100; ++i) {
    if (group.cli(port, "get " + key) == value + "\n") return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// Waits (up to 10 s) until `client` has a connected replica link.
asio::awaitable<bool> replica_connected(tr::Client& client) {
  for (int i = 0; i < 200; ++i) {
    for (const auto& n : client.node_stats())
      if (!n.master && n.connected) co_return true;
    co_await sleep_for(50ms);
  }
  co_return false;
}

}  // namespace

// read_from_replicas: the commands that only read go to the replica the sentinels list, the
// rest (writes, a transaction) to the master; the replica's own counters show it.
TEST(Sentinel, ReadsGoToTheReplicasWritesToTheMaster) {
  SentinelGroup group;
  const auto master = group.master_port();
  const auto replica = group.replica_port();
  asio::io_context io;
  tr::Client client(io.get_executor(), group.url("?read_from_replicas=true"));
  long long gets_before = 0;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    EXPECT_TRUE(co_await replica_connected(client));
    co_await client.set("rr:k", "v1");
    // Replicated before it is read back from the replica.
    EXPECT_TRUE(replicated(group, replica, "rr:k", "v1"));
    gets_before = calls_of(group, replica, "get");  // after replicated()'s own GETs there
    for (int i = 0; i < 200; ++i)
      EXPECT_EQ(co_await client.get("rr:k"), std::optional<std::string>("v1"));
    // A pipeline of reads is a read; one with a write is not.
    tr::Pipeline reads;
    reads.add("GET", "rr:k").add("EXISTS", "rr:k");
    auto both = co_await client.exec(reads);
    EXPECT_EQ(both.size(), 2u);
    tr::Pipeline mixed;
    mixed.add("SET", "rr:m", "x").add("GET", "rr:m");
    auto replies = co_await client.exec(mixed);
    EXPECT_EQ(replies.size(), 2u);
    if (replies.size() == 2) {
      EXPECT_EQ(replies[1].str(), "x");  // the master read its own write
    }
    co_await client.disconnect();
  });
  EXPECT_GE(calls_of(group, replica, "get") - gets_before, 201);
  EXPECT_EQ(calls_of(group, replica, "exists"), 1);  // the pipeline of reads went there too
  // (A write sent to the replica would have failed: -READONLY.)
  EXPECT_GE(calls_of(group, master, "set"), 2);
  EXPECT_LT(calls_of(group, master, "get"), 5);  // only the mixed pipeline's
}

// The replica dies under 32 readers: reads go to the master (those in flight on the replica are
// read again there), no read fails and none answers wrong; the replica back, it serves again.
TEST(Sentinel, AReplicaGoingDownSendsItsReadsToTheMaster) {
  SentinelGroup group;
  const auto replica = group.replica_port();
  asio::io_context io;
  tr::Client client(io.get_executor(), group.url("?read_from_replicas=true&replica_refresh=300ms"
                                                 "&reconnect_max=200ms"));
  std::atomic<long long> reads{0}, failed{0}, wrong{0};
  std::atomic<bool> stop{false};
  std::string first_failure;
  run(
      io,
      [&]() -> asio::awaitable<void> {
        co_await client.connect();
        EXPECT_TRUE(co_await replica_connected(client));
        for (int i = 0; i < 32; ++i)
          co_await client.set("rd:" + std::to_string(i), "value-" + std::to_string(i));
        EXPECT_TRUE(replicated(group, replica, "rd:31", "value-31"));
        auto reader = [&](int id) -> asio::awaitable<void> {
          const std::string key = "rd:" + std::to_string(id);
          while (!stop) {
            bool ok = true;
            try {
              const auto v = co_await client.get(key);
              if (v != std::optional<std::string>("value-" + std::to_string(id))) ++wrong;
              ++reads;
            } catch (const tr::Error& e) {
              if (failed++ == 0) first_failure = e.what();
              ok = false;
            }
            if (!ok) co_await sleep_for(5ms);
          }
        };
        for (int i = 0; i < 32; ++i)
          asio::co_spawn(io, reader(i), asio::detached);
        co_await sleep_for(500ms);
        const long long on_replica = calls_of(group, replica, "get");
        EXPECT_GT(on_replica, 100);
        group.data_node(replica).kill();
        const long long at_kill = reads;
        co_await sleep_for(1s);
        EXPECT_GT(reads - at_kill, 1000);  // the master answers them
        group.data_node(replica).start();
        // Back (it resyncs from the master first): its reads resume within a few refreshes.
        long long resumed = 0;
        for (int i = 0; i < 100 && resumed <= 100; ++i) {
          co_await sleep_for(100ms);
          resumed = calls_of(group, replica, "get");
        }
        EXPECT_GT(resumed, 100) << "the restarted replica serves reads again";
        stop = true;
        co_await sleep_for(100ms);
        co_await client.disconnect();
      },
      std::chrono::seconds(60));
  std::printf("reads %lld, failed %lld, wrong %lld\n", reads.load(), failed.load(), wrong.load());
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(failed, 0) << first_failure;
}

// A read waiting on a frozen replica is cancelled by its caller (a timeout of the caller's own):
// the call returns at once, and the client goes on working.
TEST(Sentinel, CancellingAReadOnAReplicaReturnsAtOnce) {
  SentinelGroup group;
  const auto replica = group.replica_port();
  asio::io_context io;
  tr::Client client(io.get_executor(), group.url("?read_from_replicas=true&command_timeout=5s"));
  double waited = 0;
  run(
      io,
      [&]() -> asio::awaitable<void> {
        co_await client.connect();
        EXPECT_TRUE(co_await replica_connected(client));
        co_await client.set("cx:k", "v");
        EXPECT_TRUE(replicated(group, replica, "cx:k", "v"));
        group.data_node(replica).pause();
        using namespace asio::experimental::awaitable_operators;
        const auto t = Clock::now();
        asio::steady_timer give_up(io, 100ms);
        const auto first = co_await (client.get("cx:k", asio::use_awaitable) ||
                                     give_up.async_wait(asio::use_awaitable));
        waited = ms_since(t);
        EXPECT_EQ(first.index(), 1u);  // the timer: the GET was cancelled
        group.data_node(replica).resume();
        co_await client.set("cx:k", "after");  // still working
        co_await client.disconnect();
      },
      std::chrono::seconds(30));
  EXPECT_LT(waited, 1000.0);
}

// disconnect() stops the replicas' links too: no read is answered after it, and nothing keeps
// the io_context busy.
TEST(Sentinel, DisconnectStopsTheReplicaLinksToo) {
  SentinelGroup group;
  asio::io_context io;
  tr::Client client(io.get_executor(), group.url("?read_from_replicas=true&replica_refresh=200ms"));
  bool refused = false;
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    EXPECT_TRUE(co_await replica_connected(client));
    co_await client.set("dc:k", "v");
    co_await client.disconnect();
    try {
      (void)co_await client.get("dc:k");
    } catch (const tr::Error&) {
      refused = true;
    }
  });
  EXPECT_TRUE(refused) << "a read was answered after disconnect()";
  for (const auto& n : client.node_stats())
    EXPECT_FALSE(n.connected) << n.address << " still connected after disconnect()";
  // Nothing left running: no refresh timer, no replica link reconnecting.
  const auto t = Clock::now();
  io.restart();
  io.run_for(std::chrono::seconds(5));
  EXPECT_LT(ms_since(t), 3000.0);
}
