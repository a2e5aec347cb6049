// tempest: the ops command-line tool.
//   tempest bench --url URL --mode get --concurrency C --requests N [--value-size B] [--keys K]
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "tempest/redis/client.hpp"

namespace asio = boost::asio;
namespace tr = tempest::redis;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* kUsage =
    "usage:\n"
    "  tempest bench --url URL --mode get --concurrency C --requests N [--value-size B] "
    "[--keys K]\n";

// --name value pairs after the subcommand.
std::map<std::string, std::string> parse_flags(int argc, char** argv, int first,
                                               const std::vector<std::string>& known) {
  std::map<std::string, std::string> out;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (!a.starts_with("--")) throw UsageError("unexpected argument '" + a + "'");
    a = a.substr(2);
    std::string value;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      if (i + 1 >= argc) throw UsageError("--" + a + " needs a value");
      value = argv[++i];
    }
    if (std::find(known.begin(), known.end(), a) == known.end())
      throw UsageError("unknown option --" + a);
    out[a] = value;
  }
  return out;
}

long long to_count(const std::map<std::string, std::string>& f, const std::string& name,
                   long long fallback, long long min, long long max) {
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

int bench(int argc, char** argv) {
  const auto f =
      parse_flags(argc, argv, 2, {"url", "mode", "concurrency", "requests", "value-size", "keys"});
  if (!f.contains("url")) throw UsageError("--url is required");
  const std::string mode = f.contains("mode") ? f.at("mode") : "get";
  if (mode != "get") throw UsageError("--mode must be 'get', got '" + mode + "'");
  const auto concurrency = to_count(f, "concurrency", 1, 1, 100000);
  const auto requests = to_count(f, "requests", 100000, 1, 1'000'000'000);
  const auto value_size = to_count(f, "value-size", 3, 0, 512LL << 20);
  const auto keys = to_count(f, "keys", std::min<long long>(requests, 1000), 1, 10'000'000);

  asio::io_context io(1);
  tr::Client client(io.get_executor(), f.at("url"));
  double seconds = 0;
  long long errors = 0;
  std::exception_ptr failure;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await client.connect();
        const std::string value(static_cast<std::size_t>(value_size), 'x');
        for (long long k = 0; k < keys; k += 1000) {
          tr::Pipeline p;
          for (long long i = k; i < std::min(keys, k + 1000); ++i)
            p.add("SET", "tempest:bench:" + std::to_string(i), value);
          co_await client.exec(p, {.timeout = std::chrono::seconds(30)});
        }
        std::vector<std::string> names;
        for (long long i = 0; i < keys; ++i)
          names.push_back("tempest:bench:" + std::to_string(i));
        long long done = 0;
        int running = 0;
        asio::steady_timer finished(io, std::chrono::steady_clock::time_point::max());
        const auto start = std::chrono::steady_clock::now();
        for (long long w = 0; w < concurrency; ++w) {
          const long long share = requests / concurrency + (w < requests % concurrency ? 1 : 0);
          ++running;
          asio::co_spawn(
              io,
              [&, w, share]() -> asio::awaitable<void> {
                for (long long i = 0; i < share; ++i) {
                  const auto& key = names[static_cast<std::size_t>((w + i * concurrency) % keys)];
                  auto v = co_await client.get(key, {.timeout = std::chrono::seconds(10)});
                  if (!v || v->size() != static_cast<std::size_t>(value_size)) ++errors;
                  ++done;
                }
              },
              [&](std::exception_ptr e) {
                if (e && !failure) failure = e;
                if (--running == 0) finished.cancel();
              });
        }
        boost::system::error_code ec;
        co_await finished.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        co_await client.disconnect();
      },
      [&](std::exception_ptr e) {
        if (e && !failure) failure = e;
        io.stop();
      });
  io.run();
  if (failure) std::rethrow_exception(failure);
  std::printf(
      "{\"mode\":\"%s\",\"concurrency\":%lld,\"requests\":%lld,\"value_size\":%lld,"
      "\"seconds\":%.6f,\"ops_per_sec\":%.1f,\"errors\":%lld}\n",
      mode.c_str(), concurrency, requests, value_size, seconds,
      static_cast<double>(requests) / seconds, errors);
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string sub = argv[1];
  try {
    if (sub == "bench") return bench(argc, argv);
    throw UsageError("unknown command '" + sub + "'");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "tempest: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tempest: %s\n", e.what());
    return 1;
  }
}
