// tempest: the ops command-line tool. The command line is read here, with CLI11 (the only file
// that includes it, to keep compile times low); each subcommand runs in a file of its own.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "tempest/redis/error.hpp"

#ifndef TEMPEST_VERSION
#error "TEMPEST_VERSION (the project's version) must be defined by the build"
#endif

namespace {

namespace cli = tempest::cli;

constexpr const char* kExitCodes =
    "Exit codes: 0 ok, 1 failure (Redis or the service unreachable, a command failed, inspect: "
    "no such key), 2 usage error.";

// The subcommand being run (the deepest one selected), or the app itself.
const CLI::App* selected(const CLI::App& app) {
  const CLI::App* at = &app;
  while (!at->get_subcommands().empty())
    at = at->get_subcommands().front();
  return at;
}

std::string command_name(const CLI::App& app, const CLI::App* at) {
  return at == &app ? "tempest" : "tempest " + at->get_name();
}

// A usage error: what went wrong, then the usage of the subcommand it concerns.
int usage_error(const CLI::App& app, const std::string& what) {
  const CLI::App* at = selected(app);
  std::cerr << command_name(app, at) << ": " << what << "\n\n"
            << (at == &app ? app.help() : at->help(app.get_name()));
  return cli::kUsage;
}

CLI::App* add_subcommand(CLI::App& app, const char* name, const char* description) {
  CLI::App* sub = app.add_subcommand(name, description);
  sub->footer(kExitCodes);
  return sub;
}

}  // namespace

int main(int argc, char** argv) {
  // Only warnings and errors from the library's loggers (on stderr): stdout carries the result.
  spdlog::set_level(spdlog::level::warn);

  CLI::App app("tempest: the ops tool of the tempest Redis cache library.", "tempest");
  app.set_version_flag("--version", "tempest " TEMPEST_VERSION, "Print the version and exit");
  app.require_subcommand(1);
  app.footer(kExitCodes);
  app.get_formatter()->column_width(34);

  // ---- bench
  cli::BenchOptions bench;
  CLI::App* bench_cmd = add_subcommand(
      app, "bench", "Measure the client or a cached function against Redis; prints one JSON line.");
  bench_cmd->add_option("--url", bench.url, "Redis URL (redis://, rediss://, ?cluster=true...)")
      ->required();
  bench_cmd
      ->add_option("--mode", bench.mode,
                   "get: plain GETs; cached: warm hits of a cached function; stampede: concurrent "
                   "calls on one cold key; invalidation: delay of client-side invalidations")
      ->check(CLI::IsMember({"get", "cached", "stampede", "invalidation"}))
      ->capture_default_str();
  bench_cmd->add_option("--concurrency", bench.concurrency, "Coroutines running the calls")
      ->check(CLI::Range(1LL, 100000LL))
      ->capture_default_str();
  bench_cmd->add_option("--requests", bench.requests, "Calls in all")
      ->check(CLI::Range(1LL, 1'000'000'000LL))
      ->capture_default_str();
  CLI::Option* value_size =
      bench_cmd
          ->add_option("--value-size", bench.value_size,
                       "Bytes per value (get); cached: pads a field of the struct to this size")
          ->check(CLI::Range(0LL, 512LL << 20))
          ->capture_default_str();
  long long keys = 0;
  CLI::Option* keys_opt =
      bench_cmd->add_option("--keys", keys, "Distinct keys (default: min(requests, 1000))")
          ->check(CLI::Range(1LL, 10'000'000LL));
  bench_cmd->add_flag("--near", bench.near, "cached: through the near cache");
  bench_cmd
      ->add_option("--writes-per-sec", bench.writes_per_sec,
                   "cached: another connection rewrites this many random keys a second")
      ->check(CLI::Range(0LL, 1'000'000LL))
      ->capture_default_str();
  bench_cmd->add_flag("--freshness", bench.freshness,
                      "cached: early_refresh 0.8 and fail_safe_max 60 s on");

  // ---- key
  cli::KeyOptions key;
  CLI::App* key_cmd = add_subcommand(
      app, "key", "Print the cache key of a call, as the Python SDK's @cached computes it.");
  key_cmd->add_option("--name", key.name, "The function's name (its __qualname__ in Python)")
      ->required();
  key_cmd->add_option("--prefix", key.prefix, "The cached function's key_prefix");
  key_cmd->add_option("--args", key.args, "Positional arguments, a JSON array")
      ->capture_default_str();
  key_cmd->add_option("--kwargs", key.kwargs, "Keyword arguments, a JSON object")
      ->capture_default_str();

  // ---- invalidate
  cli::InvalidateOptions inv;
  std::string inv_prefix, inv_ns, inv_tag, inv_key;
  CLI::App* inv_cmd = add_subcommand(
      app, "invalidate",
      "Delete cache entries by key prefix, namespace, tag or key; prints how many were deleted.");
  inv_cmd->add_option("--url", inv.url, "Redis URL")->required();
  CLI::Option* by_prefix =
      inv_cmd->add_option("--prefix", inv_prefix, "Every key starting with this (SCAN)");
  CLI::Option* by_ns =
      inv_cmd->add_option("--namespace", inv_ns, "Every entry registered under this namespace");
  CLI::Option* by_tag = inv_cmd->add_option("--tag", inv_tag, "Every entry tagged with this");
  CLI::Option* by_key = inv_cmd->add_option("--key", inv_key, "This one key");
  inv_cmd->add_option("--key-prefix", inv.key_prefix,
                      "The cached functions' key_prefix (with --namespace or --tag)");
  for (CLI::Option* a : {by_prefix, by_ns, by_tag, by_key})
    for (CLI::Option* b : {by_prefix, by_ns, by_tag, by_key})
      if (a != b) a->excludes(b);

  // ---- inspect
  cli::InspectOptions ins;
  std::string ins_key, ins_name;
  CLI::App* ins_cmd = add_subcommand(
      app, "inspect",
      "Show a cache entry: whether it exists, its TTL, size, value (pretty JSON), freshness "
      "times, and the namespace/tag registry sets that list it.");
  ins_cmd->add_option("--url", ins.url, "Redis URL")->required();
  CLI::Option* ins_key_opt = ins_cmd->add_option("--key", ins_key, "The entry's key");
  CLI::Option* ins_name_opt = ins_cmd->add_option(
      "--name", ins_name, "Or the function's name: the key is computed as `tempest key` does");
  CLI::Option* ins_args =
      ins_cmd->add_option("--args", ins.args, "With --name: positional arguments, a JSON array");
  CLI::Option* ins_kwargs =
      ins_cmd->add_option("--kwargs", ins.kwargs, "With --name: keyword arguments, a JSON object");
  CLI::Option* ins_prefix =
      ins_cmd->add_option("--prefix", ins.prefix, "With --name: the cached function's key_prefix");
  for (CLI::Option* o : {ins_args, ins_kwargs, ins_prefix})
    o->needs(ins_name_opt);
  ins_key_opt->excludes(ins_name_opt);
  ins_cmd
      ->add_option("--max-scan", ins.max_scan,
                   "Registry sets: SCAN examines about this many keys at most")
      ->check(CLI::Range(std::size_t{1000}, std::size_t{1} << 40))
      ->capture_default_str();
  ins_cmd
      ->add_option("--preview-bytes", ins.preview_bytes,
                   "A value that is not JSON: show this many bytes of it, escaped")
      ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 20))
      ->capture_default_str();
  ins_cmd->add_option("--timeout", ins.timeout_s, "Seconds for the connection and each command")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();

  // ---- stats
  cli::StatsOptions stats;
  CLI::App* stats_cmd = add_subcommand(app, "stats",
                                       "Hit/miss counters: a service's /metrics (http:// or "
                                       "https:// URL) or Redis INFO (redis://).");
  stats_cmd
      ->add_option("--url", stats.url,
                   "http(s)://host:port[/path] (path: /metrics by default) or a Redis URL")
      ->required();
  stats_cmd->add_option("--timeout", stats.timeout_s, "Seconds for the connection and each request")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 checks required options before unexpected ones: name those first, they are the
    // likelier mistake (a misspelt option, an unknown subcommand).
    std::string what = e.what();
    const CLI::App* at = selected(app);
    if (const auto rest = at->remaining(); !rest.empty() && e.get_name() == "RequiredError") {
      if (at == &app && !rest.front().starts_with("-")) {
        what = "unknown subcommand '" + rest.front() + "'";
      } else {
        std::string list;
        for (const auto& r : rest)
          list += (list.empty() ? "" : " ") + r;
        what = "unexpected argument(s): " + list + " (and " + what + ")";
      }
    }
    return usage_error(app, what);
  }

  const CLI::App* at = selected(app);
  // inspect and stats explain a failure themselves: the library's own warnings (a connection
  // retried...) would only repeat it.
  if (at == ins_cmd || at == stats_cmd) spdlog::set_level(spdlog::level::err);
  try {
    if (at == bench_cmd) {
      bench.value_size_given = value_size->count() > 0;
      if (keys_opt->count() > 0) bench.keys = keys;
      return cli::run_bench(bench);
    }
    if (at == key_cmd) return cli::run_key(key);
    if (at == inv_cmd) {
      if (by_prefix->count() > 0) inv.prefix = inv_prefix;
      if (by_ns->count() > 0) inv.ns = inv_ns;
      if (by_tag->count() > 0) inv.tag = inv_tag;
      if (by_key->count() > 0) inv.key = inv_key;
      if (!inv.prefix && !inv.ns && !inv.tag && !inv.key)
        throw cli::UsageError("one of --prefix, --namespace, --tag, --key is required");
      return cli::run_invalidate(inv);
    }
    if (at == ins_cmd) {
      if (ins_key_opt->count() > 0) ins.key = ins_key;
      if (ins_name_opt->count() > 0) ins.name = ins_name;
      if (!ins.key && !ins.name)
        throw cli::UsageError("--key or --name is required (the entry's key, or the call's)");
      return cli::run_inspect(ins);
    }
    if (at == stats_cmd) return cli::run_stats(stats);
    return usage_error(app, "no subcommand");  // require_subcommand(1) makes this unreachable
  } catch (const cli::UsageError& e) {
    return usage_error(app, e.what());
  } catch (const tempest::redis::ConfigError& e) {  // a bad --url (never shows the password)
    return usage_error(app, e.what());
  } catch (const std::exception& e) {
    std::cerr << command_name(app, at) << ": " << e.what() << "\n";
    return cli::kFailure;
  }
}
