// tempest: the ops command-line tool. Each subcommand's options as a plain struct, filled in by
// tools/main.cpp (the only file that includes CLI11), and the function that runs it.
//
// Exit codes: 0 ok, 1 failure (Redis unreachable, a failed command, `inspect` of a missing key),
// 2 usage (what CLI11 refuses, or a UsageError thrown by a command).
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

namespace tempest::cli {

inline constexpr int kOk = 0;
inline constexpr int kFailure = 1;
inline constexpr int kUsage = 2;

// Arguments that parse but do not make sense together or cannot be read (bad JSON): printed with
// the subcommand's usage, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct BenchOptions {
  std::string url;
  std::string mode = "get";
  long long concurrency = 1;
  long long requests = 100000;
  long long value_size = 3;
  bool value_size_given = false;
  std::optional<long long> keys;  // default: min(requests, 1000)
  bool near = false;
  long long writes_per_sec = 0;
  bool freshness = false;
};
int run_bench(const BenchOptions& o);

struct KeyOptions {
  std::string name;
  std::string prefix;
  std::string args = "[]";
  std::string kwargs = "{}";
};
int run_key(const KeyOptions& o);

struct InvalidateOptions {
  std::string url;
  std::optional<std::string> prefix, ns, tag, key;
  std::string key_prefix;
};
int run_invalidate(const InvalidateOptions& o);

struct InspectOptions {
  std::string url;
  std::optional<std::string> key;  // or computed from name/args/kwargs/prefix as `tempest key`
  std::optional<std::string> name;
  std::string args = "[]";
  std::string kwargs = "{}";
  std::string prefix;
  std::size_t max_scan = 1'000'000;  // SCAN stops after about this many keys examined
  std::size_t preview_bytes = 256;   // a value that is not JSON: this much of it, escaped
  double timeout_s = 5;              // connect and each command
};
int run_inspect(const InspectOptions& o);

struct StatsOptions {
  std::string url;
  double timeout_s = 5;
};
int run_stats(const StatsOptions& o);

}  // namespace tempest::cli
