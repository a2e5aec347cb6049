// tempest bench: the client's GETs, a cached function's warm hits, a stampede on one cold key,
// and the delay of client-side invalidations, each printed as one JSON line.
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
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench_profile.hpp"
#include "commands.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/redis/client.hpp"

namespace tempest::cli {

namespace asio = boost::asio;
namespace tr = tempest::redis;
namespace tc = tempest::cache;

namespace {

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

}  // namespace

int run_bench(const BenchOptions& o) {
  const std::string& url = o.url;
  const std::string& mode = o.mode;
  const long long concurrency = o.concurrency;
  const long long requests = o.requests;
  const long long value_size = o.value_size;
  const long long keys = o.keys.value_or(std::min<long long>(requests, 1000));
  const bool near = o.near;
  const bool freshness = o.freshness;
  const long long writes_per_sec = o.writes_per_sec;
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
    tc::ManagerOptions manager_options;
    manager_options.require_connection = true;  // a benchmark without Redis measures nothing
    tc::RedisManager redis(io.get_executor(), url, manager_options);
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
    manager_options.require_connection = true;
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
    const std::string email = o.value_size_given
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

}  // namespace tempest::cli
