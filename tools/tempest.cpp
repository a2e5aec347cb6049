// tempest: the ops command-line tool.
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "bench_profile.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/cache/invalidator.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/redis/client.hpp"

namespace asio = boost::asio;
namespace tr = tempest::redis;
namespace tc = tempest::cache;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* kUsage =
    "usage:\n"
    "  tempest bench --url URL --mode get|cached|stampede|invalidation --concurrency C --requests "
    "N\n"
    "                [--near] [--writes-per-sec W]   (cached: the near cache; a writer meanwhile)\n"
    "                [--freshness]   (cached: early_refresh 0.8 and fail_safe_max 60 s on)\n"
    "                [--value-size B]\n"
    "                [--keys K]\n"
    "  tempest key --name NAME [--prefix KEY_PREFIX] [--args '<JSON array>'] [--kwargs '<JSON "
    "object>']\n"
    "  tempest invalidate --url URL (--prefix P | --namespace NS | --tag T | --key K)\n"
    "                [--key-prefix KEY_PREFIX]   (the cached functions' key_prefix, for NS/T)\n";

using Flags = std::map<std::string, std::string>;

// --name value (or --name=value) pairs after the subcommand.
Flags parse_flags(int argc, char** argv, const std::vector<std::string>& known) {
  Flags out;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (!a.starts_with("--")) throw UsageError("unexpected argument '" + a + "'");
    a = a.substr(2);
    std::string value;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (a == "near" || a == "freshness") {
      value = "1";  // a switch: --near, --freshness
    } else {
      if (i + 1 >= argc) throw UsageError("--" + a + " needs a value");
      value = argv[++i];
    }
    if (std::find(known.begin(), known.end(), a) == known.end())
      throw UsageError("unknown option --" + a);
    if (out.contains(a)) throw UsageError("--" + a + " given twice");
    out[a] = value;
  }
  return out;
}

std::string flag(const Flags& f, const std::string& name, const std::string& fallback) {
  const auto it = f.find(name);
  return it == f.end() ? fallback : it->second;
}

std::string required(const Flags& f, const std::string& name) {
  const auto it = f.find(name);
  if (it == f.end()) throw UsageError("--" + name + " is required");
  return it->second;
}

long long to_count(const Flags& f, const std::string& name, long long fallback, long long min,
                   long long max) {
  const auto it = f.find(name);
  if (it == f.end()) return fallback;
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(it->second, &used);
  } catch (...) {
    used = 0;
  }
  if (used != it->second.size() || v < min || v > max)
    throw UsageError("--" + name + " must be an integer in " + std::to_string(min) + ".." +
                     std::to_string(max) + ", got '" + it->second + "'");
  return v;
}

// The peak resident set of this process (VmHWM), in MiB.
double peak_rss_mib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  double kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %lf kB", &kib) == 1) break;
  std::fclose(f);
  return kib / 1024.0;
}

// Runs `body` on a fresh single-threaded io_context; rethrows what it threw.
void run(asio::io_context& io, std::function<asio::awaitable<void>()> body) {
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
    failure = e;
    io.stop();
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
}

// Runs `requests` operations from `concurrency` coroutines; returns the seconds it took. Each
// worker(w, share) coroutine performs its `share` of the operations in a loop of its own, so the
// harness adds nothing per operation.
using Worker = std::function<asio::awaitable<void>(long long worker, long long share)>;
asio::awaitable<double> drive(asio::io_context& io, long long concurrency, long long requests,
                              Worker worker) {
  long long running = concurrency;
  std::exception_ptr failure;
  asio::steady_timer finished(io, std::chrono::steady_clock::time_point::max());
  const auto start = std::chrono::steady_clock::now();
  for (long long w = 0; w < concurrency; ++w) {
    const long long share = requests / concurrency + (w < requests % concurrency ? 1 : 0);
    asio::co_spawn(io, worker(w, share), [&](std::exception_ptr e) {
      if (e && !failure) failure = e;
      if (--running == 0) finished.cancel();
    });
  }
  boost::system::error_code ec;
  co_await finished.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (failure) std::rethrow_exception(failure);
  co_return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// What `--mode cached` returns: a 5-field described struct.
using tempest::bench::Profile;

// Records when each key's invalidation arrives.
struct ArrivalSink : tr::InvalidationSink {
  std::mutex mu;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> seen;
  bool is_armed = false;
  void invalidate(std::string_view key) noexcept override {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu);
    seen.emplace(std::string(key), now);
  }
  void invalidate_all() noexcept override {}
  void reset() noexcept override {
    std::lock_guard lock(mu);
    is_armed = false;
  }
  void armed() noexcept override {
    std::lock_guard lock(mu);
    is_armed = true;
  }
};

int invalidation_delays(asio::io_context& io, const std::string& url, long long n) {
  tr::Client reader(io.get_executor(), url);
  tr::Client writer(io.get_executor(), url);
  auto sink = std::make_shared<ArrivalSink>();
  reader.track(sink);
  std::vector<double> us;
  run(io, [&]() -> asio::awaitable<void> {
    co_await reader.connect();
    co_await writer.connect();
    const auto wait = [&](auto done) -> asio::awaitable<bool> {
      for (int i = 0; i < 10000; ++i) {
        {
          std::lock_guard lock(sink->mu);
          if (done()) co_return true;
        }
        asio::steady_timer t(io, std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
      }
      co_return false;
    };
    if (!co_await wait([&] { return sink->is_armed; }))
      throw std::runtime_error("Redis never tracked the reads (CLIENT TRACKING refused?)");
    const auto name = [](long long i) { return "tempest:bench:inv:" + std::to_string(i); };
    for (long long i = 0; i < n; i += 500) {
      tr::Pipeline p;
      for (long long j = i; j < std::min(n, i + 500); ++j)
        p.add("GET", name(j));
      (void)co_await reader.exec(p);
    }
    std::vector<std::chrono::steady_clock::time_point> returned;
    for (long long i = 0; i < n; ++i) {
      (void)co_await writer.set(name(i), "v");
      returned.push_back(std::chrono::steady_clock::now());
    }
    (void)co_await wait([&] { return sink->seen.size() >= static_cast<std::size_t>(n); });
    std::lock_guard lock(sink->mu);
    for (long long i = 0; i < n; ++i)
      if (auto it = sink->seen.find(name(i)); it != sink->seen.end())
        us.push_back(std::max(0.0, std::chrono::duration<double, std::micro>(
                                       it->second - returned[static_cast<std::size_t>(i)])
                                       .count()));
  });
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) {
    return us.empty() ? 0.0 : us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))];
  };
  std::printf(
      "{\"mode\":\"invalidation\",\"writes\":%lld,\"arrived\":%zu,\"p50_us\":%.1f,"
      "\"p99_us\":%.1f,\"max_us\":%.1f}\n",
      n, us.size(), at(0.5), at(0.99), us.empty() ? 0.0 : us.back());
  return us.size() == static_cast<std::size_t>(n) ? 0 : 1;
}

int bench(int argc, char** argv) {
  const auto f = parse_flags(argc, argv,
                             {"url", "mode", "concurrency", "requests", "value-size", "keys",
                              "near", "writes-per-sec", "freshness"});
  const std::string url = required(f, "url");
  const std::string mode = flag(f, "mode", "get");
  if (mode != "get" && mode != "cached" && mode != "stampede" && mode != "invalidation")
    throw UsageError("--mode must be 'get', 'cached', 'stampede' or 'invalidation', got '" + mode +
                     "'");
  const auto concurrency = to_count(f, "concurrency", 1, 1, 100000);
  const auto requests = to_count(f, "requests", 100000, 1, 1'000'000'000);
  const auto value_size = to_count(f, "value-size", 3, 0, 512LL << 20);
  const auto keys = to_count(f, "keys", std::min<long long>(requests, 1000), 1, 10'000'000);
  const bool near = flag(f, "near", "0") == "1";
  const bool freshness = flag(f, "freshness", "0") == "1";
  const auto writes_per_sec = to_count(f, "writes-per-sec", 0, 0, 1'000'000);
  if ((near || freshness || writes_per_sec > 0) && mode != "cached")
    throw UsageError("--near, --freshness and --writes-per-sec go with --mode cached");

  asio::io_context io(1);
  double seconds = 0;
  long long errors = 0;
  tc::CacheStats stats;
  tc::NearCacheStats near_stats;
  long long writes = 0;
  const auto key_of = [&](long long w, long long i) { return (w + i * concurrency) % keys; };
  if (mode == "get") {
    tr::Client client(io.get_executor(), url);
    std::vector<std::string> names;
    for (long long i = 0; i < keys; ++i)
      names.push_back("tempest:bench:" + std::to_string(i));
    run(io, [&]() -> asio::awaitable<void> {
      co_await client.connect();
      const std::string value(static_cast<std::size_t>(value_size), 'x');
      for (long long k = 0; k < keys; k += 1000) {
        tr::Pipeline p;
        for (long long i = k; i < std::min(keys, k + 1000); ++i)
          p.add("SET", names[i], value);
        co_await client.exec(p, {.timeout = std::chrono::seconds(30)});
      }
      Worker worker = [&](long long w, long long share) -> asio::awaitable<void> {
        for (long long i = 0; i < share; ++i) {
          auto v = co_await client.get(names[static_cast<std::size_t>(key_of(w, i))],
                                       {.timeout = std::chrono::seconds(10)});
          if (!v || v->size() != static_cast<std::size_t>(value_size)) ++errors;
        }
      };
      seconds = co_await drive(io, concurrency, requests, worker);
      co_await client.disconnect();
    });
  } else if (mode == "invalidation") {
    // `requests` keys read through a tracking client, then written once each by another
    // connection: the delay from each write's return to its invalidation's arrival.
    return invalidation_delays(io, url, requests);
  } else if (mode == "stampede") {
    // `concurrency` concurrent calls on one cold key of a 50 ms function: how often does it run?
    tc::RedisManager redis(io.get_executor(), url);
    tc::CachedOptions options;
    options.name = "tempest_bench_stampede";
    options.ttl = std::chrono::seconds(60);
    long long runs = 0;
    auto slow = tc::cached(redis, options, [&runs](long long x) -> asio::awaitable<long long> {
      ++runs;
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await t.async_wait(asio::use_awaitable);
      co_return x;
    });
    const long long cold = std::chrono::steady_clock::now().time_since_epoch().count();
    run(io, [&]() -> asio::awaitable<void> {
      co_await redis.connect();
      Worker worker = [&](long long, long long) -> asio::awaitable<void> {
        if (co_await slow(cold) != cold) ++errors;
      };
      seconds = co_await drive(io, concurrency, concurrency, worker);
      co_await redis.disconnect();
    });
    std::printf(
        "{\"mode\":\"stampede\",\"concurrency\":%lld,\"function_runs\":%lld,\"seconds\":%.6f,"
        "\"errors\":%lld}\n",
        concurrency, runs, seconds, errors);
    return errors == 0 ? 0 : 1;
  } else {
    tc::ManagerOptions manager_options;
    manager_options.near.enabled = near;
    tc::RedisManager redis(io.get_executor(), url, manager_options);
    tr::Client writer(io.get_executor(), url);
    tc::CachedOptions options;
    options.name = "tempest_bench_profile";
    options.deadline = std::chrono::seconds(10);
    if (freshness) {  // the TTL (300 s) is far from both: hits stay hits
      options.early_refresh = 0.8;
      options.fail_safe_max = std::chrono::seconds(60);
    }
    // --value-size B (when given) pads the email field so the stored JSON grows with B.
    const std::string email = f.contains("value-size")
                                  ? std::string(static_cast<std::size_t>(value_size), 'e')
                                  : std::string("ana@example.com");
    auto profile = tc::cached(redis, options, [&email](long long id) -> asio::awaitable<Profile> {
      Profile p{std::to_string(id), "Ana", email, 37, 9.5};
      co_return p;
    });
    run(io, [&]() -> asio::awaitable<void> {
      co_await redis.connect();
      // Warm every key exactly once, from up to `concurrency` callers.
      const long long warmers = std::min(concurrency, keys);
      Worker warm = [&](long long w, long long share) -> asio::awaitable<void> {
        for (long long i = 0; i < share; ++i)
          (void)co_await profile(w + i * warmers);
      };
      (void)co_await drive(io, warmers, keys, warm);
      // The near cache fills from reads of what Redis holds (a value this process wrote is read
      // back once first): warm until every key is in it.
      for (int pass = 0; near && pass < 20 && redis.near_stats().entries < std::size_t(keys);
           ++pass) {
        asio::steady_timer t(io, std::chrono::milliseconds(5));
        co_await t.async_wait(asio::use_awaitable);
        (void)co_await drive(io, warmers, keys, warm);
      }
      // --writes-per-sec: another connection rewrites random keys meanwhile (the same value, so
      // results stay checkable), each write invalidating that key in the near cache.
      bool done = false;
      long long written = 0;
      if (writes_per_sec > 0) {
        co_await writer.connect();
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
              std::minstd_rand rng(7);
              const auto period = std::chrono::nanoseconds(1'000'000'000 / writes_per_sec);
              auto next = std::chrono::steady_clock::now();
              while (!done) {
                next += period;
                asio::steady_timer t(io, next);
                co_await t.async_wait(asio::use_awaitable);
                const long long id = static_cast<long long>(rng() % static_cast<unsigned>(keys));
                const Profile p{std::to_string(id), "Ana", email, 37, 9.5};
                (void)co_await writer.set(profile.key(id), tc::JsonCodec<Profile>::encode(p));
                ++written;
              }
            },
            asio::detached);
      }
      // Each result is checked against its id's text, made beforehand (as --mode get makes its
      // key names): the measured loop holds the calls, not the check's formatting.
      std::vector<std::string> ids;
      for (long long i = 0; i < keys; ++i)
        ids.push_back(std::to_string(i));
      Worker worker = [&](long long w, long long share) -> asio::awaitable<void> {
        for (long long i = 0; i < share; ++i) {
          const long long id = key_of(w, i);
          const Profile p = co_await profile(id);
          if (p.age != 37 || p.id != ids[static_cast<std::size_t>(id)]) ++errors;
          // A near hit completes without suspending: let the connections (invalidations, the
          // writer) run now and then, as a server's own I/O would.
          if (near && (i & 63) == 63) co_await asio::post(io, asio::use_awaitable);
        }
      };
      seconds = co_await drive(io, concurrency, requests, worker);
      done = true;
      stats = profile.stats();
      near_stats = redis.near_stats();
      writes = written;
      co_await redis.disconnect();
      if (writes_per_sec > 0) co_await writer.disconnect();
    });
    if (stats.hits < static_cast<std::uint64_t>(requests) - stats.joins) ++errors;  // not all hits
  }
  std::printf(
      "{\"mode\":\"%s\",\"concurrency\":%lld,\"requests\":%lld,\"value_size\":%lld,"
      "\"seconds\":%.6f,\"ops_per_sec\":%.1f,\"errors\":%lld",
      mode.c_str(), concurrency, requests, mode == "get" ? value_size : 0LL, seconds,
      static_cast<double>(requests) / seconds, errors);
  std::printf(",\"peak_rss_mib\":%.1f", peak_rss_mib());
  if (mode == "cached")
    std::printf(",\"hits\":%llu,\"misses\":%llu,\"joins\":%llu",
                static_cast<unsigned long long>(stats.hits),
                static_cast<unsigned long long>(stats.misses),
                static_cast<unsigned long long>(stats.joins));
  if (near)
    std::printf(",\"near\":true,\"near_hits\":%llu,\"invalidations\":%llu,\"writes\":%lld",
                static_cast<unsigned long long>(stats.near_hits),
                static_cast<unsigned long long>(near_stats.invalidations), writes);
  std::printf("}\n");
  return errors == 0 ? 0 : 1;
}

int key(int argc, char** argv) {
  const auto f = parse_flags(argc, argv, {"name", "prefix", "args", "kwargs"});
  const std::string name = required(f, "name");
  if (name.empty()) throw UsageError("--name must not be empty");
  try {
    std::printf("%s\n", tc::key_from_json_args(flag(f, "prefix", ""), name, flag(f, "args", "[]"),
                                               flag(f, "kwargs", "{}"))
                            .c_str());
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return 0;
}

int invalidate(int argc, char** argv) {
  const auto f =
      parse_flags(argc, argv, {"url", "prefix", "namespace", "tag", "key", "key-prefix"});
  const std::string url = required(f, "url");
  int targets = 0;
  for (const char* t : {"prefix", "namespace", "tag", "key"})
    targets += f.contains(t) ? 1 : 0;
  if (targets != 1) throw UsageError("give exactly one of --prefix, --namespace, --tag, --key");
  asio::io_context io(1);
  tc::ManagerOptions options;
  options.require_connection = true;
  tc::RedisManager redis(io.get_executor(), url, options);
  tc::CacheInvalidator inv(redis, flag(f, "key-prefix", ""));
  std::size_t count = 0;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    if (f.contains("prefix")) {
      count = co_await inv.invalidate_prefix(f.at("prefix"));
    } else if (f.contains("namespace")) {
      count = co_await inv.invalidate_namespace(f.at("namespace"));
    } else if (f.contains("tag")) {
      count = co_await inv.invalidate_tag(f.at("tag"));
    } else {
      const std::vector<std::string> keys{f.at("key")};
      count = co_await inv.invalidate_keys(keys);
    }
    co_await redis.disconnect();
  });
  std::printf("%zu\n", count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Only warnings and errors from the library's loggers: stdout carries the command's result.
  spdlog::set_level(spdlog::level::warn);
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string sub = argv[1];
  try {
    if (sub == "bench") return bench(argc, argv);
    if (sub == "key") return key(argc, argv);
    if (sub == "invalidate") return invalidate(argc, argv);
    throw UsageError("unknown command '" + sub + "'");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "tempest: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tempest: %s\n", e.what());
    return 1;
  }
}
