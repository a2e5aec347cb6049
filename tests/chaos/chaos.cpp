// tempest_chaos: faults under load, measured (`make chaos`).
//
//   tempest_chaos [--duration 180s] [--seed N] [--callers 64] [--faults kind,kind...]
//                 [--margin 250ms] [--service path|none] [--each 1]
//
// Two deployments, each with two load processes (this program, `load`), one of them with the
// near cache on: a redis-server (append-only file, so a SIGKILL loses nothing it acknowledged)
// behind a fault-injecting proxy, and a Redis Cluster of three masters with a replica each. Each
// load runs `callers` coroutines doing verifiable work through the public API: SET/GET of values
// that name their key and version, cached() calls whose results are checkable, and
// invalidations. The example users_service runs on the proxied server under HTTP load (readers,
// a writer whose renames must be seen once acknowledged, a readiness probe every 100 ms).
// Meanwhile faults are injected at random (seeded: the seed is printed, and the same seed
// replays the same schedule), one at a time per deployment: Redis SIGSTOP/SIGCONT, SIGKILL and
// restart, CLIENT KILL, DEBUG SLEEP, maxmemory with noeviction (OOM errors), and the proxy's
// black hole, delay, reset mid-reply, slow drip and accept-then-close; on the cluster, a
// failover, a master SIGKILLed, slots migrating. The kinds given with --faults choose the
// deployments: only the cluster's, and no redis-server is started (nor users_service).
//
// Checked continuously: no read returns another key's value or a version older than the last
// write acknowledged before the read began; no call outlives its deadline by more than the
// margin; after the run, every acknowledged write is still there; RSS stays bounded; over HTTP,
// every read is answered 200 with the right user, a rename is seen once acknowledged, and
// readiness says 503 while Redis is unreachable and 200 while it is up. The last line is JSON;
// the exit status is 1 when anything went wrong.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "http_load.hpp"
#include "support/fault_proxy.hpp"
#include "support/redis_cluster.hpp"
#include "support/redis_server.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/cache/invalidator.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/log.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/detail/cluster_keys.hpp"
#include "tempest/redis/error.hpp"

extern char** environ;

namespace asio = boost::asio;
namespace tc = tempest::cache;
namespace tr = tempest::redis;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using tempest::chaos::FaultWindow;
using tempest::chaos::json_escape;
using tempest::chaos::ms_between;

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "tempest_chaos: %s\n"
               "usage: tempest_chaos [--duration 180s] [--seed N] [--callers 64] "
               "[--faults kind,kind...] [--margin 250ms] [--service path|none] [--each 1]\n",
               why.c_str());
  std::exit(2);
}

// "250ms", "1.5s", "3m" or bare seconds.
milliseconds parse_duration(const std::string& name, const std::string& v) {
  try {
    std::size_t used = 0;
    const double n = std::stod(v, &used);
    const std::string unit = v.substr(used);
    double ms = 0;
    if (unit == "ms") {
      ms = n;
    } else if (unit == "s" || unit.empty()) {
      ms = n * 1000;
    } else if (unit == "m") {
      ms = n * 60000;
    } else {
      throw std::invalid_argument(unit);
    }
    if (ms <= 0) throw std::invalid_argument("not positive");
    return milliseconds(static_cast<long long>(ms));
  } catch (const std::exception&) {
    usage("bad value '" + v + "' for " + name + " (expected e.g. 250ms, 1.5s, 3m)");
  }
}

long long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  return 0;
}

// ---- the load process ---------------------------------------------------------------------------

struct Item {
  int id = 0;
  long long check = 0;  // a function of id: what a cached result must carry
  long long gen = 0;    // the id's generation (a Redis counter) when the function ran
};
BOOST_DESCRIBE_STRUCT(Item, (), (id, check, gen))

long long check_of(int id) {
  return static_cast<long long>(id) * 7919 + 13;
}

struct LoadArgs {
  std::string url;
  std::string name;
  milliseconds duration{60000};
  milliseconds timeout{300};  // each Redis call's deadline
  milliseconds margin{250};
  int callers = 64;
  bool near = false;
  std::uint64_t seed = 1;
};

// What one load process saw.
struct Tally {
  long long calls = 0, ok = 0;
  std::map<std::string, long long> errors;  // by type
  long long wrong = 0, lost = 0, verified = 0;
  long long max_overrun_ms = 0;  // past the call's deadline
  std::string worst;             // what that call was, and when (ms after the start)
  long long max_overrun_kv_ms = 0, max_overrun_cached_ms = 0, max_overrun_invalidate_ms = 0;
  long long cached_calls = 0, cached_wrong = 0, cached_stale = 0, invalidations = 0;
  long long floors_raised = 0;  // invalidations a later read was held to
  long long health_true = 0, health_false = 0;
  long long rss_start = 0, rss_mid = 0, rss_end = 0;
  std::vector<std::string> samples;  // the first few wrong values, for the report

  void error(const std::string& type) { ++errors[type]; }
  void note(std::string what) {
    if (samples.size() < 5) samples.push_back(std::move(what));
  }
};

std::string error_type(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const tr::TimeoutError&) {
    return "timeout";
  } catch (const tr::ConnectionError&) {
    return "connection";
  } catch (const tr::ServerError& s) {
    // The reply's first word: OOM, LOADING, BUSY...
    const std::string w = s.what();
    const auto space = w.find(' ');
    return "server_" + w.substr(0, space == std::string::npos ? w.size() : space);
  } catch (const tr::ProtocolError&) {
    return "protocol";
  } catch (const tr::Error&) {
    return "redis_other";
  } catch (const std::exception&) {
    return "untyped";
  }
}

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

asio::awaitable<void> pause(milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// One key's history as its only writer knows it.
struct KeyState {
  std::string key;
  long long acked = 0;      // the newest version a SET was acknowledged for
  long long attempted = 0;  // the newest version a SET was sent for (it may have landed)
};

// "key#version" -> version, or -1 when the value does not name `key`.
long long version_in(const std::string& value, const std::string& key) {
  if (value.size() <= key.size() + 1 || value.compare(0, key.size(), key) != 0 ||
      value[key.size()] != '#')
    return -1;
  try {
    std::size_t used = 0;
    const std::string digits = value.substr(key.size() + 1);
    const long long v = std::stoll(digits, &used);
    return used == digits.size() ? v : -1;  // "key#5junk" is not a version
  } catch (const std::exception&) {
    return -1;
  }
}

int run_load(const LoadArgs& a) {
  asio::io_context io(1);
  tc::ManagerOptions mo;
  mo.near.enabled = a.near;
  tc::RedisManager redis(io.get_executor(), a.url, mo);
  Tally t;
  const auto started = Clock::now();
  const auto end = started + a.duration;
  std::mt19937_64 rng(a.seed);

  tc::CachedOptions co;
  co.name = "chaos_item";
  co.ttl = 30s;
  co.key_prefix = "chaos:" + a.name + ":c:";
  co.deadline = a.timeout;
  // Each id has a generation, a counter in Redis that an invalidation raises first: a result
  // computed after an invalidation carries its generation or a later one.
  const std::string gen_prefix = "chaos:" + a.name + ":gen:";
  auto item =
      tc::cached(redis, co, [&redis, &gen_prefix](int id) -> asio::awaitable<Item> {
        auto client = redis.client();
        const auto g = co_await client.get(gen_prefix + std::to_string(id));
        Item i{id, check_of(id), g ? std::atoll(g->c_str()) : 0};
        co_return i;
      }).tags([](int id) { return std::vector<std::string>{"i:" + std::to_string(id % 16)}; });
  tc::CacheInvalidator invalidator(redis, co.key_prefix);
  // What a read of each id must see: the generation of the last invalidation acknowledged before
  // it began, unless that invalidation had reason to miss an entry (see cached_caller).
  constexpr int kIds = 64;
  std::vector<long long> gen_floor(kIds, 0);
  std::vector<int> in_flight(kIds, 0);
  std::vector<long long> calls_begun(kIds, 0);
  std::vector<Clock::time_point> last_failure(kIds, Clock::time_point{});
  std::vector<long long> floor_at(kIds, 0);  // ms after the start, when the floor was raised

  const int kv_callers = std::max(1, a.callers * 2 / 3);
  std::vector<std::vector<KeyState>> keys(static_cast<std::size_t>(kv_callers));
  for (int c = 0; c < kv_callers; ++c)
    for (int k = 0; k < 4; ++k)
      keys[static_cast<std::size_t>(c)].push_back(
          KeyState{"chaos:" + a.name + ":" + std::to_string(c) + ":" + std::to_string(k)});

  // A call's time past its deadline (`bound`), the worst kept.
  const auto overrun = [&](Clock::time_point began, milliseconds bound, const char* what,
                           const std::exception_ptr& failed) {
    const long long over = ms_between(began, Clock::now()) - bound.count();
    auto& kind = what[0] == 'c'   ? t.max_overrun_cached_ms
                 : what[0] == 'i' ? t.max_overrun_invalidate_ms
                                  : t.max_overrun_kv_ms;
    kind = std::max(kind, over);
    // An invalidation's rounds are many by design (SCARD, then SPOP and UNLINK per batch): its
    // time is reported, not judged.
    if (what[0] == 'i' || over <= t.max_overrun_ms) return;
    t.max_overrun_ms = over;
    t.worst = std::string(what) + " began at " + std::to_string(ms_between(started, began)) +
              " ms, " + (failed ? error_type(failed) : "ok");
  };

  auto kv_caller = [&](int c, std::uint64_t seed) -> asio::awaitable<void> {
    std::mt19937_64 r(seed);
    auto client = redis.client();
    auto& mine = keys[static_cast<std::size_t>(c)];
    while (Clock::now() < end) {
      KeyState& k = mine[r() % mine.size()];
      const bool write = r() % 2 == 0;
      const auto began = Clock::now();
      ++t.calls;
      std::exception_ptr failed;
      try {
        if (write) {
          const long long v = ++k.attempted;
          co_await client.set(k.key, k.key + "#" + std::to_string(v));
          k.acked = std::max(k.acked, v);
        } else {
          const long long floor = k.acked;
          const auto got = co_await client.get(k.key);
          const long long v = got ? version_in(*got, k.key) : 0;
          if (v < floor || v > k.attempted) {
            ++t.wrong;
            t.note("GET " + k.key + " -> " + got.value_or("(nil)") + " after version " +
                   std::to_string(floor) + " was acknowledged");
          }
        }
        ++t.ok;
      } catch (...) {
        failed = std::current_exception();
      }
      overrun(began, a.timeout, write ? "SET" : "GET", failed);
      if (failed) {
        const std::string type = error_type(failed);
        t.error(type);
        // A defect: its message goes in the report.
        if (type == "protocol" || type == "untyped") t.note(type + ": " + what_of(failed));
        co_await pause(5ms);  // as a service would: no hot loop against a dead server
      }
    }
  };

  auto cached_caller = [&](std::uint64_t seed) -> asio::awaitable<void> {
    std::mt19937_64 r(seed);
    while (Clock::now() < end) {
      const int id = static_cast<int>(r() % kIds);
      const auto i = static_cast<std::size_t>(id);
      const auto began = Clock::now();
      const bool invalidate = r() % 50 == 0;
      ++t.calls;
      ++t.cached_calls;
      std::exception_ptr failed;
      try {
        if (invalidate) {
          // An entry the invalidation may rightly miss: one stored by a call still running (it
          // read the old generation), by a call that began before the INCR returned (its GET of
          // the generation was concurrent with the INCR: on a cluster a request parked during a
          // failover can overtake an earlier one), or by a call that failed lately (its SET may
          // sit on a connection the client gave up, which Redis still executes once it wakes up).
          const bool quiet = in_flight[i] == 0 && began - last_failure[i] > 3s;
          const long long begun = calls_begun[i];
          auto client = redis.client();
          const long long g = co_await client.incr(gen_prefix + std::to_string(id));
          const bool binding = quiet && calls_begun[i] == begun;
          co_await invalidator.invalidate_tag("i:" + std::to_string(id % 16));
          ++t.invalidations;
          if (binding && g > gen_floor[i]) {
            gen_floor[i] = g;
            floor_at[i] = ms_between(started, Clock::now());
            ++t.floors_raised;
          }
        } else {
          const long long floor = gen_floor[i];
          ++in_flight[i];
          ++calls_begun[i];
          Item got;
          try {
            got = co_await item(id);
          } catch (...) {
            --in_flight[i];
            throw;
          }
          --in_flight[i];
          if (got.id != id || got.check != check_of(id)) {
            ++t.wrong;
            ++t.cached_wrong;
            t.note("cached item(" + std::to_string(id) + ") -> {" + std::to_string(got.id) + ", " +
                   std::to_string(got.check) + "}");
          } else if (got.gen < floor) {
            ++t.wrong;
            ++t.cached_stale;
            std::string diag;
            if (t.cached_stale <= 3) {
              try {
                auto c = redis.client();
                const std::string k = item.key(id);
                const std::string set = tc::tag_set(co.key_prefix, "i:" + std::to_string(id % 16));
                auto v = co_await c.get(k);
                auto in_set = co_await c.command(tr::cmd("SISMEMBER", set, k));
                auto in_pending = co_await c.command(tr::cmd("SISMEMBER", tc::pending_set(set), k));
                diag = " [redis: " + v.value_or("(nil)") + ", registered " +
                       std::to_string(std::move(in_set).as_integer()) + ", pending " +
                       std::to_string(std::move(in_pending).as_integer()) + "]";
              } catch (const std::exception& e) {
                diag = std::string(" [diag failed: ") + e.what() + "]";
              }
            }
            t.note("cached item(" + std::to_string(id) + ") -> generation " +
                   std::to_string(got.gen) + " at " + std::to_string(ms_between(started, began)) +
                   " ms, after the invalidation of generation " + std::to_string(floor) +
                   " was acknowledged at " + std::to_string(floor_at[i]) + " ms" + diag);
          }
        }
        ++t.ok;
      } catch (...) {
        failed = std::current_exception();
        last_failure[i] = Clock::now();
      }
      if (invalidate) {
        // SMEMBERS, then UNLINK of what it named: two round trips, each within the timeout.
        overrun(began, 2 * a.timeout, "invalidate", failed);
      } else {
        // A cached call: its GET, the leader's second GET, the function's GET, the registration
        // and the SET, each bounded by the deadline (fail-open between), or a joiner's GET and
        // its wait for the leader's last four.
        overrun(began, 5 * a.timeout, "cached", failed);
      }
      if (failed) {
        const std::string type = error_type(failed);
        t.error(type);
        // A defect: its message goes in the report.
        if (type == "protocol" || type == "untyped") t.note(type + ": " + what_of(failed));
        co_await pause(5ms);
      }
    }
  };

  auto health = [&]() -> asio::awaitable<void> {
    while (Clock::now() < end) {
      if (co_await redis.health_check())
        ++t.health_true;
      else
        ++t.health_false;
      co_await pause(100ms);
    }
  };

  auto rss_probe = [&]() -> asio::awaitable<void> {
    // After the warm-up (a quarter of the run, at most 20 s), and halfway through the rest.
    const milliseconds warm_up = std::min<milliseconds>(a.duration / 4, 20s);
    co_await pause(warm_up);
    t.rss_start = rss_kib();
    co_await pause((a.duration - warm_up) / 2);
    t.rss_mid = rss_kib();
  };

  auto main_task = [&]() -> asio::awaitable<void> {
    // The first connect may meet a fault: retried until it works.
    for (;;) {
      try {
        co_await redis.connect();
        break;
      } catch (const std::exception& e) {
        if (Clock::now() >= end) throw;
      }
      co_await pause(100ms);
    }
    auto ex = co_await asio::this_coro::executor;
    for (int c = 0; c < kv_callers; ++c)
      asio::co_spawn(ex, kv_caller(c, rng()), asio::detached);
    for (int c = kv_callers; c < a.callers; ++c)
      asio::co_spawn(ex, cached_caller(rng()), asio::detached);
    asio::co_spawn(ex, health(), asio::detached);
    asio::co_spawn(ex, rss_probe(), asio::detached);
    co_await pause(a.duration + 1s);  // the callers stop at `end`; their last calls finish
    t.rss_end = rss_kib();
    // Every acknowledged write is still there (the faults are over: retried for up to 20 s).
    auto client = redis.client();
    const auto verify_until = Clock::now() + 20s;
    for (auto& mine : keys) {
      for (auto& k : mine) {
        for (;;) {
          std::optional<std::string> got;
          bool read = false;
          try {
            got = co_await client.get(k.key);
            read = true;
          } catch (const std::exception&) {
          }
          if (!read) {
            if (Clock::now() > verify_until) {
              ++t.lost;
              t.note("could not read " + k.key + " back after the run");
              break;
            }
            co_await pause(100ms);
            continue;
          }
          const long long v = got ? version_in(*got, k.key) : 0;
          ++t.verified;
          if (v < k.acked || v > k.attempted) {
            ++t.lost;
            t.note(k.key + " = " + got.value_or("(nil)") + " after the run, but version " +
                   std::to_string(k.acked) + " was acknowledged");
          }
          break;
        }
      }
    }
    co_await redis.disconnect();
  };

  std::exception_ptr failure;
  asio::co_spawn(io, main_task(), [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "load %s failed: %s\n", a.name.c_str(), e.what());
      return 1;
    }
  }
  std::ostringstream out;
  out << "{\"name\":\"" << a.name << "\",\"near_cache\":" << (a.near ? "true" : "false")
      << ",\"calls\":" << t.calls << ",\"ok\":" << t.ok << ",\"errors\":{";
  bool first = true;
  for (const auto& [type, n] : t.errors) {
    out << (first ? "" : ",") << "\"" << type << "\":" << n;
    first = false;
  }
  out << "},\"wrong\":" << t.wrong << ",\"cached_calls\":" << t.cached_calls
      << ",\"cached_stale\":" << t.cached_stale << ",\"invalidations\":" << t.invalidations
      << ",\"floors_raised\":" << t.floors_raised << ",\"lost\":" << t.lost
      << ",\"verified_keys\":" << t.verified << ",\"max_overrun_ms\":" << t.max_overrun_ms
      << ",\"max_overrun_kv_ms\":" << t.max_overrun_kv_ms
      << ",\"max_overrun_cached_ms\":" << t.max_overrun_cached_ms
      << ",\"max_overrun_invalidate_ms\":" << t.max_overrun_invalidate_ms << ",\"worst_call\":\""
      << json_escape(t.worst) << "\""
      << ",\"health_true\":" << t.health_true << ",\"health_false\":" << t.health_false
      << ",\"rss_start_kib\":" << t.rss_start << ",\"rss_mid_kib\":" << t.rss_mid
      << ",\"rss_end_kib\":" << t.rss_end << ",\"near_hits\":" << redis.near_stats().hits
      << ",\"samples\":[";
  for (std::size_t i = 0; i < t.samples.size(); ++i)
    out << (i ? "," : "") << "\"" << json_escape(t.samples[i]) << "\"";
  out << "]}";
  std::printf("%s\n", out.str().c_str());
  return 0;
}

// ---- the orchestrator ---------------------------------------------------------------------------

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssJudged = false;
#else
constexpr bool kRssJudged = true;
#endif

// On the redis-server behind the proxy, then on the cluster.
const std::vector<std::string> kAllFaults = {
    "sigstop",    "sigkill",     "client_kill",     "debug_sleep", "oom",
    "black_hole", "delay",       "reset_mid_reply", "slow_drip",   "accept_then_close",
    "failover",   "master_kill", "slot_migration"};
const std::vector<std::string> kClusterFaults = {"failover", "master_kill", "slot_migration"};

// A child running this program, its stdout read through a pipe.
struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child spawn_self(const std::string& self, const std::vector<std::string>& args) {
  int fds[2];
  // Close-on-exec: no other child holds this pipe open (the dup2 onto stdout clears it there).
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  std::vector<std::string> all = {self};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : all)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  Child c;
  const int rc = posix_spawn(&c.pid, self.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw std::runtime_error("cannot start " + self);
  }
  c.out = fds[0];
  return c;
}

// Everything the child wrote, once it ended; its exit status in `status`. A child still running
// at `deadline` is hung: it is killed (SIGABRT, so that a core or a sanitizer can say where) and
// `hung` is set.
std::string collect(Child& c, Clock::time_point deadline, int& status, bool& hung) {
  std::string out;
  char buf[4096];
  hung = false;
  for (;;) {
    const long long left = ms_between(Clock::now(), deadline);
    pollfd p{c.out, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::max(0LL, left)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      hung = true;
      ::kill(c.pid, SIGABRT);
      std::this_thread::sleep_for(2s);
      ::kill(c.pid, SIGKILL);
      break;
    }
    const ssize_t n = ::read(c.out, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(c.out);
  c.out = -1;
  ::waitpid(c.pid, &status, 0);
  c.pid = -1;
  return out;
}

// The loads, killed and reaped whatever happens to the orchestrator.
struct Loads {
  std::vector<Child> children;
  ~Loads() {
    for (auto& c : children) {
      if (c.out >= 0) ::close(c.out);
      if (c.pid > 0) {
        ::kill(c.pid, SIGKILL);
        ::waitpid(c.pid, nullptr, 0);
      }
    }
  }
};

// SIGINT / SIGTERM: the faults stop, the servers and loads are stopped, the run fails.
std::atomic<bool> g_interrupted{false};
extern "C" void on_interrupt(int) {
  g_interrupted.store(true);
}

// The last line of `out` that looks like a JSON object.
std::string last_json(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty() && line.front() == '{') last = line;
  return last;
}

long long json_number(const std::string& json, const std::string& field) {
  const std::string tag = "\"" + field + "\":";
  const auto at = json.find(tag);
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + tag.size());
}

// Faults on one deployment, injected one at a time.
class Faults {
 public:
  explicit Faults(std::uint64_t seed) : rng_(seed) {}
  virtual ~Faults() = default;
  Faults(const Faults&) = delete;
  Faults& operator=(const Faults&) = delete;

  milliseconds between(int lo, int hi) {
    return milliseconds(lo + static_cast<int>(rng_() % static_cast<std::uint64_t>(hi - lo + 1)));
  }

  // Injects `kind` for a random while, then takes it away. Its window is recorded; it is counted
  // only when it really happened (a fault whose command failed is not).
  void inject(const std::string& kind) {
    prepare();
    const auto begin = Clock::now();
    cleared_.reset();
    const std::string failed = apply(kind);
    const auto end = Clock::now();
    windows_.push_back(
        {failed.empty() ? kind : "failed " + kind, begin, cleared_.value_or(end), end});
    if (failed.empty()) {
      ++count_[kind];
    } else {
      std::fprintf(stderr, "          (%s: %s; not counted)\n", kind.c_str(), failed.c_str());
    }
  }

  // Whatever is still on is taken away, and the deployment is whole again.
  virtual void clear() = 0;

  const std::map<std::string, long long>& count() const { return count_; }
  const std::vector<FaultWindow>& windows() const { return windows_; }

 protected:
  // Before the fault's window opens: the deployment is ready for it.
  virtual void prepare() {}
  // The fault is being taken away now (a restart, a resume, the proxy back to pass): until
  // then it held for sure. Without a call, the window's end counts.
  void clearing(Clock::time_point at = Clock::now()) { cleared_ = at; }
  // Empty when the fault happened, otherwise why it did not.
  virtual std::string apply(const std::string& kind) = 0;

  std::mt19937_64 rng_;

 private:
  std::map<std::string, long long> count_;
  std::vector<FaultWindow> windows_;
  std::optional<Clock::time_point> cleared_;
};

// redis-cli's answer holds no error.
bool cli_ok(const std::string& out) {
  return !out.empty() && out.find("ERR") == std::string::npos &&
         out.find("rror") == std::string::npos && out.find("Could not") == std::string::npos;
}

// One redis-server behind the fault proxy.
class ServerFaults final : public Faults {
 public:
  ServerFaults(tempest::test::RedisServer& redis, tempest::test::FaultProxy& proxy,
               std::uint64_t seed)
      : Faults(seed), redis_(redis), proxy_(proxy) {}

  void clear() override {
    if (redis_.paused()) redis_.resume();
    if (!redis_.running()) redis_.start();
    proxy_.set_mode(tempest::test::FaultProxy::Mode::pass);
    cli("CONFIG SET maxmemory 0");
  }

 private:
  std::string apply(const std::string& kind) override {
    using Mode = tempest::test::FaultProxy::Mode;
    const milliseconds hold = between(300, 1500);
    if (kind == "sigstop") {
      redis_.pause();
      std::this_thread::sleep_for(hold);
      clearing();
      redis_.resume();
    } else if (kind == "sigkill") {
      redis_.kill();
      std::this_thread::sleep_for(between(100, 800));
      clearing();  // start() returns once it answers, a moment after it could
      redis_.start();
    } else if (kind == "client_kill") {
      if (!cli("CLIENT KILL TYPE normal")) return "CLIENT KILL failed";
    } else if (kind == "debug_sleep") {
      const auto from = Clock::now();  // it sleeps from a moment later
      if (!cli("DEBUG SLEEP " + std::to_string(static_cast<double>(hold.count()) / 1000.0)))
        return "DEBUG SLEEP failed";
      clearing(from + hold);
    } else if (kind == "oom") {
      const bool ok = cli("CONFIG SET maxmemory-policy noeviction") &&
                      cli("CONFIG SET maxmemory 1");  // every write that needs memory: -OOM
      std::this_thread::sleep_for(hold);
      cli("CONFIG SET maxmemory 0");
      if (!ok) return "CONFIG SET maxmemory failed";
    } else {
      Mode m = Mode::pass;
      milliseconds param{0};
      if (kind == "black_hole") {
        m = Mode::black_hole;
      } else if (kind == "delay") {
        m = Mode::delay;
        param = between(20, 400);
      } else if (kind == "reset_mid_reply") {
        m = Mode::reset_mid_reply;
      } else if (kind == "slow_drip") {
        m = Mode::slow_drip;
        param = milliseconds(1);
      } else if (kind == "accept_then_close") {
        m = Mode::accept_then_close;
      } else {
        usage("unknown fault '" + kind + "'");
      }
      proxy_.set_mode(m, param);
      std::this_thread::sleep_for(hold);
      clearing();
      proxy_.set_mode(Mode::pass);
    }
    return "";
  }

  bool cli(const std::string& args) {
    return cli_ok(tempest::test::redis_cli_at(redis_.port(), args, 10));
  }

  tempest::test::RedisServer& redis_;
  tempest::test::FaultProxy& proxy_;
};

// A Redis Cluster of three masters with a replica each (no proxy: the faults are the cluster's).
class ClusterFaults final : public Faults {
 public:
  // `keys`: keys the loads use; the slots that migrate are theirs.
  ClusterFaults(tempest::test::RedisCluster& cluster, std::vector<std::string> keys,
                std::uint64_t seed)
      : Faults(seed), cluster_(cluster), keys_(std::move(keys)) {}

  void clear() override {
    for (std::size_t i = 0; i < cluster_.size(); ++i) {
      if (cluster_.node(i).paused()) cluster_.node(i).resume();
      if (!cluster_.node(i).running()) cluster_.node(i).start();
    }
    settle();
  }

 private:
  // Every slot served, and every master with a replica in sync: a failover or a killed master
  // then loses nothing that was acknowledged.
  void prepare() override { settle(); }

  void settle() {
    const auto until = Clock::now() + 60s;
    cluster_.wait_ok(60s);
    for (;;) {
      bool all = true;
      for (const auto m : cluster_.masters()) {
        try {
          const auto r = cluster_.replica_of(m);
          if (cluster_.node(r).cli("INFO replication").find("master_link_status:up") ==
              std::string::npos)
            all = false;
        } catch (const std::exception&) {
          all = false;  // its replica has not joined yet
        }
      }
      if (all) return;
      if (Clock::now() > until)
        throw std::runtime_error("the cluster's replicas were not in sync within 60 s");
      std::this_thread::sleep_for(100ms);
    }
  }

  std::size_t any_master() {
    const auto masters = cluster_.masters();
    return masters.at(rng_() % masters.size());
  }

  bool is_master(std::size_t i) { return cluster_.node(i).cli("ROLE").rfind("master", 0) == 0; }

  // Waits until node `i` is a master; false after `limit`.
  bool promoted(std::size_t i, milliseconds limit) {
    const auto until = Clock::now() + limit;
    while (!is_master(i)) {
      if (Clock::now() > until) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  static long long field(const std::string& info, const std::string& name) {
    const auto at = info.find(name + ":");
    return at == std::string::npos ? -1 : std::atoll(info.c_str() + at + name.size() + 1);
  }

  std::string apply(const std::string& kind) override {
    if (kind == "failover") {
      // A replica takes over by agreement with its master (CLUSTER FAILOVER).
      const auto m = any_master();
      const auto r = cluster_.replica_of(m);
      if (!cli_ok(cluster_.node(r).cli("CLUSTER FAILOVER"))) return "CLUSTER FAILOVER failed";
      if (!promoted(r, 15s)) throw std::runtime_error("CLUSTER FAILOVER: no promotion in 15 s");
    } else if (kind == "master_kill") {
      // A master SIGKILLed; its replica is promoted after the node timeout. Writes are paused a
      // moment first until the replica holds everything the master acknowledged: what Redis
      // itself keeps through the kill, so that a write the library lost is seen as lost.
      const auto m = any_master();
      const auto r = cluster_.replica_of(m);
      auto& master = cluster_.node(m);
      if (!cli_ok(master.cli("CLIENT PAUSE 3000 WRITE"))) return "CLIENT PAUSE failed";
      const long long want = field(master.cli("INFO replication"), "master_repl_offset");
      const auto until = Clock::now() + 2s;
      while (field(cluster_.node(r).cli("INFO replication"), "slave_repl_offset") < want) {
        if (Clock::now() > until) {
          master.cli("CLIENT UNPAUSE");
          return "the replica did not catch up within 2 s";
        }
        std::this_thread::sleep_for(5ms);
      }
      master.kill();
      if (!promoted(r, 20s)) throw std::runtime_error("a killed master's replica was not promoted");
      std::this_thread::sleep_for(between(100, 800));
      master.start();  // it rejoins as its replica's replica
    } else if (kind == "slot_migration") {
      // One to three slots of the loads' keys move to another master while the loads run:
      // IMPORTING / MIGRATING, the keys a few at a time (ASK meanwhile), then SETSLOT NODE (MOVED).
      const int slots = 1 + static_cast<int>(rng_() % 3);
      for (int n = 0; n < slots; ++n) {
        const auto slot = tempest::redis::detail::key_slot(keys_[rng_() % keys_.size()]);
        const auto from = cluster_.master_of(slot);
        auto masters = cluster_.masters();
        masters.erase(std::remove(masters.begin(), masters.end(), from), masters.end());
        const auto to = masters.at(rng_() % masters.size());
        const std::string s = std::to_string(slot), from_id = cluster_.node_id(from),
                          to_id = cluster_.node_id(to);
        auto& source = cluster_.node(from);
        if (!cli_ok(cluster_.node(to).cli("CLUSTER SETSLOT " + s + " IMPORTING " + from_id)) ||
            !cli_ok(source.cli("CLUSTER SETSLOT " + s + " MIGRATING " + to_id)))
          throw std::runtime_error("CLUSTER SETSLOT " + s + " IMPORTING/MIGRATING failed");
        for (;;) {
          std::istringstream got(source.cli("CLUSTER GETKEYSINSLOT " + s + " 3"));
          std::string keys, k;
          while (std::getline(got, k))
            if (!k.empty()) keys += " '" + k + "'";
          if (keys.empty()) break;
          const std::string r =
              source.cli("MIGRATE 127.0.0.1 " + std::to_string(cluster_.node(to).port()) +
                         " \"\" 0 5000 KEYS" + keys);
          if (r.find("OK") == std::string::npos && r.find("NOKEY") == std::string::npos)
            throw std::runtime_error("MIGRATE of slot " + s + ": " + r);
          std::this_thread::sleep_for(15ms);  // half-moved for a while: ASK
        }
        for (const auto m : cluster_.masters())
          cluster_.node(m).cli("CLUSTER SETSLOT " + s + " NODE " + to_id);
      }
    } else {
      usage("unknown fault '" + kind + "'");
    }
    return "";
  }

  tempest::test::RedisCluster& cluster_;
  std::vector<std::string> keys_;
};

// Deals `kinds` to `f` from a shuffled deck, shuffled again when it runs out (random order, and
// every kind as often as the others within one, however short the run), until `stop_at`.
void deal(Faults& f, const std::vector<std::string>& kinds, std::uint64_t seed,
          Clock::time_point started, Clock::time_point stop_at) {
  std::mt19937_64 pick(seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<std::string> deck;
  while (!g_interrupted && Clock::now() < stop_at) {
    if (deck.empty()) {
      deck = kinds;
      std::shuffle(deck.begin(), deck.end(), pick);
    }
    const std::string kind = deck.back();
    deck.pop_back();
    std::fprintf(stderr, "%8.1f s  %s\n",
                 static_cast<double>(ms_between(started, Clock::now())) / 1000.0, kind.c_str());
    f.inject(kind);
    std::this_thread::sleep_for(f.between(300, 1500));
  }
}

bool is_cluster_fault(const std::string& kind) {
  return std::find(kClusterFaults.begin(), kClusterFaults.end(), kind) != kClusterFaults.end();
}

// One run; its JSON report is printed and kept in `report`.
int run_orchestrator(const std::string& self, milliseconds duration, std::uint64_t seed,
                     int callers, const std::vector<std::string>& faults, milliseconds margin,
                     const std::string& service, std::string& report) {
  std::vector<std::string> server_kinds, cluster_kinds;
  for (const auto& k : faults)
    (is_cluster_fault(k) ? cluster_kinds : server_kinds).push_back(k);
  std::printf("tempest_chaos: seed %llu, duration %llds, %d callers per process, faults: ",
              static_cast<unsigned long long>(seed),
              static_cast<long long>(duration.count() / 1000), callers);
  for (std::size_t i = 0; i < faults.size(); ++i)
    std::printf("%s%s", i ? "," : "", faults[i].c_str());
  std::printf("\n");
  std::fflush(stdout);
  // The loads' calls and the URLs' command_timeout are one figure (the deadline judged).
  const std::string timeout = "300ms";
  const std::string query = "command_timeout=" + timeout +
                            "&connect_timeout=500ms&health_interval=200ms"
                            "&health_timeout=300ms&reconnect_max=300ms";
  const int kv_callers = std::max(1, callers * 2 / 3);  // as run_load splits them

  // The deployments: a redis-server behind the proxy for its faults, a cluster for its own.
  std::unique_ptr<tempest::test::RedisServer> redis;
  std::unique_ptr<tempest::test::FaultProxy> proxy;
  std::unique_ptr<tempest::test::RedisCluster> cluster;
  struct Source {
    std::unique_ptr<Faults> faults;
    std::vector<std::string> kinds;
    std::uint64_t seed;
    std::string error;
  };
  std::vector<Source> sources;
  std::vector<std::pair<std::string, std::string>> load_urls;  // name, URL
  if (!server_kinds.empty()) {
    // An append-only file written before each reply: a SIGKILL loses nothing acknowledged.
    redis = std::make_unique<tempest::test::RedisServer>(std::vector<std::string>{
        "--appendonly", "yes", "--appendfsync", "always", "--enable-debug-command", "yes"});
    proxy = std::make_unique<tempest::test::FaultProxy>(redis->port());
    const std::string url = proxy->url("/0?" + query);
    load_urls.emplace_back("p0", url);
    load_urls.emplace_back("p1", url);
    sources.push_back(
        {std::make_unique<ServerFaults>(*redis, *proxy, seed), server_kinds, seed, ""});
  }
  if (!cluster_kinds.empty()) {
    cluster = std::make_unique<tempest::test::RedisCluster>(3, 1, 1500ms);
    load_urls.emplace_back("c0", cluster->url(query));
    load_urls.emplace_back("c1", cluster->url(query));
    std::vector<std::string> keys;
    for (const char* name : {"c0", "c1"})
      for (int c = 0; c < kv_callers; ++c)
        for (int k = 0; k < 4; ++k)
          keys.push_back(std::string("chaos:") + name + ":" + std::to_string(c) + ":" +
                         std::to_string(k));
    sources.push_back({std::make_unique<ClusterFaults>(*cluster, std::move(keys), seed + 7),
                       cluster_kinds, seed + 7, ""});
  }
  // users_service on the proxied redis-server, under HTTP load while it faults.
  std::unique_ptr<tempest::chaos::HttpLoad> http;
  if (redis && !service.empty()) {
    tempest::chaos::HttpLoad::Options o;
    o.service = service;
    o.redis_url = proxy->url("/0?" + query);
    o.margin = margin;
    http = std::make_unique<tempest::chaos::HttpLoad>(o);
  }
  Loads loads;
  for (std::size_t i = 0; i < load_urls.size(); ++i) {
    const auto& [name, url] = load_urls[i];
    // The second load of each deployment has the near cache on.
    loads.children.push_back(
        spawn_self(self, {"load", "--url", url, "--name", name, "--duration",
                          std::to_string(duration.count()) + "ms", "--seed",
                          std::to_string(seed + 1 + i), "--callers", std::to_string(callers),
                          "--near", i % 2 == 1 ? "1" : "0", "--timeout", timeout}));
  }
  const auto started = Clock::now();
  if (http) http->start();
  std::this_thread::sleep_for(std::min<milliseconds>(duration / 10, 3s));  // warm up first
  // Faults until a little before the end: the loads' last seconds and their check run clean.
  const auto stop_at = started + duration - std::min<milliseconds>(duration / 10, 3s);
  std::vector<std::thread> dealers;
  for (auto& s : sources)
    dealers.emplace_back([&s, started, stop_at] {
      try {
        deal(*s.faults, s.kinds, s.seed, started, stop_at);
      } catch (const std::exception& e) {
        s.error = e.what();
      }
      try {
        s.faults->clear();
      } catch (const std::exception& e) {
        if (s.error.empty()) s.error = std::string("after the faults: ") + e.what();
      }
    });
  for (auto& d : dealers)
    d.join();
  if (g_interrupted) {
    std::fprintf(stderr, "tempest_chaos: interrupted\n");
    return 130;  // the loads, the service, the proxy and the servers are stopped on the way out
  }
  int bad = 0;
  for (const auto& s : sources) {
    if (!s.error.empty()) {
      std::fprintf(stderr, "the fault injection failed: %s\n", s.error.c_str());
      ++bad;
    }
  }
  std::string http_report = "null";
  if (http) {
    // The service runs on until the loads end: readiness must be back to 200 by then.
    std::this_thread::sleep_until(started + duration);
    http->stop();
    bool ok = false;
    http_report = http->report(sources.front().faults->windows(), ok);
    if (!ok) {
      std::fprintf(stderr, "users_service under HTTP load: something went wrong (see \"http\")\n");
      ++bad;
    }
  }
  std::vector<std::string> reports;
  // A load ends at duration + 1 s, then reads its keys back (at most 20 s) and disconnects.
  const auto deadline = started + duration + 60s;
  for (auto& c : loads.children) {
    int status = 0;
    bool hung = false;
    const std::string json = last_json(collect(c, deadline, status, hung));
    if (hung) {
      std::fprintf(stderr, "a load process was still running 60 s after its end: hung\n");
      ++bad;
      reports.push_back("null");
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || json.empty()) {
      std::fprintf(stderr, "a load process failed (status %d)\n", status);
      ++bad;
      reports.push_back("null");
    } else {
      reports.push_back(json);
    }
  }
  long long calls = 0, wrong = 0, lost = 0, overrun = 0;
  for (const auto& r : reports) {
    if (r == "null") continue;
    calls += json_number(r, "calls");
    // Only the library's typed errors: anything else escaping a call is a defect.
    if (r.find("\"untyped\":") != std::string::npos) {
      std::fprintf(stderr, "a call failed with an exception that is not a tempest error\n");
      ++bad;
    }
    // A reply the client could not read: the stream is out of step somewhere.
    if (r.find("\"protocol\":") != std::string::npos) {
      std::fprintf(stderr, "a call failed with ProtocolError\n");
      ++bad;
    }
    wrong += json_number(r, "wrong");
    lost += json_number(r, "lost");
    overrun = std::max(overrun, json_number(r, "max_overrun_ms"));
    const long long start = json_number(r, "rss_start_kib"), end = json_number(r, "rss_end_kib");
    // Bounded: no more than half again the warmed-up size, plus 16 MiB of slack. (Not under
    // ASan, whose quarantine of freed memory grows to 256 MiB by design.)
    if (kRssJudged && end > start + start / 2 + 16 * 1024) {
      std::fprintf(stderr, "RSS grew from %lld KiB to %lld KiB\n", start, end);
      ++bad;
    }
    // And flat: no trend in the second half (a leak per failover grew about 6 MiB there in 10
    // minutes while staying under the bound above).
    const long long mid = json_number(r, "rss_mid_kib");
    if (kRssJudged && end > mid + std::max(2048LL, mid / 10)) {
      std::fprintf(stderr, "RSS still grows: %lld KiB halfway, %lld KiB at the end\n", mid, end);
      ++bad;
    }
  }
  if (wrong != 0 || lost != 0 || overrun > margin.count()) ++bad;
  std::ostringstream out;
  out << "{\"seed\":" << seed << ",\"duration_s\":" << duration.count() / 1000 << ",\"faults\":{";
  bool first = true;
  long long total_faults = 0;
  for (const auto& s : sources) {
    for (const auto& [kind, n] : s.faults->count()) {
      out << (first ? "" : ",") << "\"" << kind << "\":" << n;
      first = false;
      total_faults += n;
    }
  }
  out << "},\"faults_total\":" << total_faults << ",\"calls\":" << calls << ",\"wrong\":" << wrong
      << ",\"lost_writes\":" << lost << ",\"max_overrun_ms\":" << overrun
      << ",\"margin_ms\":" << margin.count() << ",\"processes\":[";
  for (std::size_t i = 0; i < reports.size(); ++i)
    out << (i ? "," : "") << reports[i];
  out << "],\"http\":" << http_report << ",\"ok\":" << (bad == 0 ? "true" : "false") << "}";
  report = out.str();
  std::printf("%s\n", report.c_str());
  return bad == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool load = !args.empty() && args.front() == "load";
  if (load) args.erase(args.begin());
  std::map<std::string, std::string> opt;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("--", 0) != 0 || i + 1 >= args.size())
      usage("expected --name value, got '" + args[i] + "'");
    opt[args[i].substr(2)] = args[i + 1];
    ++i;
  }
  const auto get = [&](const std::string& k, const std::string& d) {
    auto it = opt.find(k);
    if (it == opt.end()) return d;
    std::string v = it->second;
    opt.erase(it);
    return v;
  };
  const auto number = [&](const std::string& k, const std::string& d) -> std::uint64_t {
    const std::string v = get(k, d);
    try {
      std::size_t used = 0;
      const auto n = std::stoull(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
      return n;
    } catch (const std::exception&) {
      usage("bad value '" + v + "' for --" + k + " (expected a non-negative integer)");
    }
  };
  spdlog::set_level(spdlog::level::warn);
  if (load) {
    LoadArgs a;
    a.url = get("url", "");
    a.name = get("name", "p0");
    a.duration = parse_duration("--duration", get("duration", "60s"));
    a.seed = number("seed", "1");
    a.callers = static_cast<int>(number("callers", "64"));
    a.near = get("near", "0") == "1";
    a.timeout = parse_duration("--timeout", get("timeout", "300ms"));
    // Ends with the orchestrator, whatever becomes of it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() == 1) return 1;
    if (a.url.empty()) usage("load needs --url");
    if (!opt.empty()) usage("unknown option --" + opt.begin()->first);
    // Faults are expected here: the library's warnings would drown the report.
    spdlog::set_level(spdlog::level::err);
    return run_load(a);
  }
  const milliseconds duration = parse_duration("--duration", get("duration", "180s"));
  const std::uint64_t seed =
      opt.count("seed") ? number("seed", "0") : std::random_device{}() % 1000000;
  const int callers = static_cast<int>(number("callers", "64"));
  const milliseconds margin = parse_duration("--margin", get("margin", "250ms"));
  std::vector<std::string> faults;
  {
    std::string list = get("faults", "all");
    if (list == "all") {
      faults = kAllFaults;
    } else {
      std::istringstream in(list);
      for (std::string f; std::getline(in, f, ',');) {
        if (std::find(kAllFaults.begin(), kAllFaults.end(), f) == kAllFaults.end())
          usage("unknown fault '" + f +
                "' (known: sigstop, sigkill, client_kill, debug_sleep, oom, black_hole, delay, "
                "reset_mid_reply, slow_drip, accept_then_close; on the cluster: failover, "
                "master_kill, slot_migration)");
        faults.push_back(f);
      }
    }
  }
  // --each 1: every kind alone, one run after the other, each of --duration.
  const bool each = get("each", "0") == "1";
  // users_service under HTTP load ("none": without it).
  std::string service = get("service", TEMPEST_USERS_SERVICE);
  if (service == "none") service.clear();
  if (!opt.empty()) usage("unknown option --" + opt.begin()->first);
  if (duration < 10s) usage("--duration must be at least 10s");
  if (callers < 3) usage("--callers must be at least 3");
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) usage("cannot find this program's path");
  self[n] = '\0';
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  if (!each) {
    try {
      std::string report;
      return run_orchestrator(self, duration, seed, callers, faults, margin, service, report);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tempest_chaos: %s\n", e.what());
      return 1;
    }
  }
  // Each kind in a run of its own, so that a failure names its cause; the last line sums up.
  std::map<std::string, std::string> results;
  bool all_ok = true;
  for (const auto& kind : faults) {
    std::fprintf(stderr, "== %s alone\n", kind.c_str());
    std::string report;
    int rc = 1;
    try {
      rc = run_orchestrator(self, duration, seed, callers, {kind}, margin, service, report);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tempest_chaos: %s\n", e.what());
    }
    if (rc == 130) return rc;
    all_ok = all_ok && rc == 0;
    std::ostringstream r;
    r << "{\"ok\":" << (rc == 0 ? "true" : "false");
    if (!report.empty()) {
      for (const char* f : {"faults_total", "calls", "wrong", "lost_writes", "max_overrun_ms"})
        r << ",\"" << f << "\":" << json_number(report, f);
    }
    r << "}";
    results[kind] = r.str();
  }
  std::ostringstream out;
  out << "{\"seed\":" << seed << ",\"duration_s_each\":" << duration.count() / 1000
      << ",\"each\":{";
  bool first = true;
  for (const auto& kind : faults) {
    out << (first ? "" : ",") << "\"" << kind << "\":" << results[kind];
    first = false;
  }
  out << "},\"ok\":" << (all_ok ? "true" : "false") << "}";
  std::printf("%s\n", out.str().c_str());
  return all_ok ? 0 : 1;
}
