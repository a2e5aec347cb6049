// tempest key, tempest invalidate and tempest inspect: cache entries as the library (and the
// Python SDK) store them.
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "entry_format.hpp"
#include "run.hpp"
#include "tempest/cache/freshness.hpp"
#include "tempest/cache/invalidator.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/redis/client.hpp"

namespace tempest::cli {

namespace asio = boost::asio;
namespace tr = tempest::redis;
namespace tc = tempest::cache;

int run_key(const KeyOptions& o) {
  if (o.name.empty()) throw UsageError("--name must not be empty");
  try {
    std::printf("%s\n", tc::key_from_json_args(o.prefix, o.name, o.args, o.kwargs).c_str());
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return kOk;
}

int run_invalidate(const InvalidateOptions& o) {
  asio::io_context io(1);
  tc::ManagerOptions options;
  options.require_connection = true;
  tc::RedisManager redis(io.get_executor(), o.url, options);
  tc::CacheInvalidator inv(redis, o.key_prefix);
  std::size_t count = 0;
  // Every command has a deadline (5 s); the whole run is not limited: a prefix may cover
  // millions of keys.
  run_bounded(
      io,
      [&]() -> asio::awaitable<void> {
        co_await redis.connect();
        if (o.prefix) {
          count = co_await inv.invalidate_prefix(*o.prefix);
        } else if (o.ns) {
          count = co_await inv.invalidate_namespace(*o.ns);
        } else if (o.tag) {
          count = co_await inv.invalidate_tag(*o.tag);
        } else {
          const std::vector<std::string> keys{*o.key};
          count = co_await inv.invalidate_keys(keys);
        }
        co_await redis.disconnect();
      },
      std::chrono::hours(24), "invalidate");
  std::printf("%zu\n", count);
  return kOk;
}

// ---- inspect --------------------------------------------------------------------------------
namespace {

// What Redis says about the entry and the registry sets that list it.
struct Entry {
  std::string type;  // "none": no such key
  long long pttl = -2;
  long long strlen = -1;
  std::optional<long long> memory_usage;
  std::optional<std::string> value;
  struct Listed {
    RegistrySetName name;
    long long members = 0;
    long long pttl = -2;
  };
  std::vector<Listed> listed;
  std::size_t scan_calls = 0;
  std::size_t candidates = 0;
  bool scan_complete = false;
};

long long integer_or(const tr::Reply& r, long long fallback) {
  return r.is_integer() ? r.as_integer() : fallback;
}

asio::awaitable<void> read_entry(tr::Client& client, const std::string& key,
                                 const InspectOptions& o, Entry& e) {
  const tr::CallOptions call{to_ms(o.timeout_s)};
  {
    tr::Pipeline p;
    p.add("TYPE", key);
    p.add("PTTL", key);
    auto r = co_await client.exec(p, call);
    e.type = std::move(r.at(0)).checked().as_string();
    e.pttl = integer_or(r.at(1), -2);
  }
  if (e.type != "none") {
    tr::Pipeline p;
    p.add("MEMORY", "USAGE", key);
    if (e.type == "string") {
      p.add("STRLEN", key);
      p.add("GET", key);
    }
    auto r = co_await client.exec(p, call);
    if (r.at(0).is_integer()) e.memory_usage = r.at(0).as_integer();
    if (e.type == "string") {
      e.strlen = integer_or(r.at(1), -1);
      if (r.at(2).is_string()) e.value = std::move(r.at(2)).as_string();
    }
  }
  // The registry sets: SCAN for their names (bounded), then SISMEMBER in each.
  tr::ScanOptions scan_options(kRegistryScanPattern, 1000);
  scan_options.type = "set";
  scan_options.timeout = to_ms(o.timeout_s);
  auto scanner = client.scan(std::move(scan_options));
  const std::size_t max_calls = std::max<std::size_t>(1, o.max_scan / 1000);
  std::map<std::string, RegistrySetName> candidates;
  for (;;) {
    if (e.scan_calls >= max_calls) break;
    auto batch = co_await scanner.next();
    ++e.scan_calls;
    if (!batch) {
      e.scan_complete = true;
      break;
    }
    for (auto& name : *batch)
      if (auto parsed = parse_registry_set(name)) candidates.emplace(name, std::move(*parsed));
  }
  e.candidates = candidates.size();
  std::vector<std::pair<std::string, RegistrySetName>> all(candidates.begin(), candidates.end());
  for (std::size_t i = 0; i < all.size(); i += 500) {
    tr::Pipeline p;
    const std::size_t end = std::min(all.size(), i + 500);
    for (std::size_t j = i; j < end; ++j) {
      p.add("SISMEMBER", all[j].first, key);
      p.add("SCARD", all[j].first);
      p.add("PTTL", all[j].first);
    }
    auto r = co_await client.exec(p, call);
    for (std::size_t j = i; j < end; ++j) {
      const std::size_t at = 3 * (j - i);
      if (integer_or(r.at(at), 0) != 1) continue;
      e.listed.push_back(
          {all[j].second, integer_or(r.at(at + 1), 0), integer_or(r.at(at + 2), -2)});
    }
  }
}

std::string ttl_text(long long pttl) {
  if (pttl == -1) return "none (no expiry)";
  if (pttl < 0) return "gone";
  return seconds_text(pttl) + " (PTTL " + std::to_string(pttl) + " ms)";
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string relative(std::int64_t at_ms, std::int64_t now) {
  return at_ms >= now ? "in " + seconds_text(at_ms - now) : seconds_text(now - at_ms) + " ago";
}

std::string set_line(const Entry::Listed& l) {
  const bool ns = l.name.kind == RegistrySetName::Kind::ns;
  std::string out = std::string(ns ? "namespace" : "tag") + " \"" + l.name.label + "\"";
  if (!l.name.key_prefix.empty()) out += " (key_prefix \"" + l.name.key_prefix + "\")";
  out += ": " + (l.name.pending ? pending_set(l.name.registry) : l.name.registry);
  out += " (" + std::to_string(l.members) + (l.members == 1 ? " member" : " members");
  out += l.pttl == -1 ? ", no expiry)" : l.pttl >= 0 ? ", ttl " + seconds_text(l.pttl) + ")" : ")";
  return out;
}

void print_entry(const std::string& key, const std::string& where, const Entry& e,
                 const InspectOptions& o) {
  std::printf("key:        %s\n", key.c_str());
  std::printf("redis:      %s\n", where.c_str());
  if (e.type == "none") {
    std::printf("exists:     no\n");
  } else {
    std::printf("exists:     yes (type %s)\n", e.type.c_str());
    std::printf("ttl:        %s\n", ttl_text(e.pttl).c_str());
    std::string size;
    if (e.type == "string") size = std::to_string(e.strlen) + " bytes (STRLEN of the stored value)";
    if (e.memory_usage) {
      if (!size.empty()) size += "; ";
      size += "MEMORY USAGE " + std::to_string(*e.memory_usage) +
              " bytes (Redis's estimate: key, value and overhead)";
    }
    std::printf("size:       %s\n", size.c_str());
  }
  if (e.type != "none" && e.type != "string")
    std::printf("value:      not a string: not a cache entry of tempest or the Python SDK\n");
  if (e.value) {
    std::string_view logical = *e.value;
    const auto fresh = cache::read_freshness(logical);
    if (fresh) {
      logical.remove_suffix(fresh->suffix_bytes);
      const auto now = now_ms();
      const char* state = now >= fresh->fresh_until_ms  ? "stale (kept by fail_safe_max)"
                          : now >= fresh->refresh_at_ms ? "fresh, refresh due"
                                                        : "fresh";
      std::printf(
          "freshness:  %s; fresh until %s (%s), refresh due at %s (%s)\n", state,
          utc_time(fresh->fresh_until_ms).c_str(), relative(fresh->fresh_until_ms, now).c_str(),
          utc_time(fresh->refresh_at_ms).c_str(), relative(fresh->refresh_at_ms, now).c_str());
    } else {
      std::printf(
          "freshness:  none (a plain value: no early_refresh/fail_safe_max times, as the "
          "Python SDK writes)\n");
    }
    const std::string suffix_note = fresh ? " (the logical value; the stored one adds a " +
                                                std::to_string(fresh->suffix_bytes) +
                                                "-byte freshness suffix)"
                                          : "";
    if (auto pretty = pretty_json(logical)) {
      std::printf("value:      JSON, %zu bytes%s\n%s\n", logical.size(), suffix_note.c_str(),
                  pretty->c_str());
    } else {
      const bool cut = logical.size() > o.preview_bytes;
      std::printf("value:      not JSON, %zu bytes%s%s\n%s%s\n", logical.size(),
                  suffix_note.c_str(),
                  cut ? (", the first " + std::to_string(o.preview_bytes) + " escaped").c_str()
                      : ", escaped",
                  escaped_preview(logical, o.preview_bytes).c_str(), cut ? "..." : "");
    }
  }
  std::vector<const Entry::Listed*> registry, pending;
  for (const auto& l : e.listed)
    (l.name.pending ? pending : registry).push_back(&l);
  std::printf("registry sets listing the key:%s\n", registry.empty() ? " none" : "");
  for (const auto* l : registry)
    std::printf("  %s\n", set_line(*l).c_str());
  std::printf("pending invalidation sets listing the key:%s\n", pending.empty() ? " none" : "");
  for (const auto* l : pending)
    std::printf("  %s\n", set_line(*l).c_str());
  if (e.scan_complete) {
    std::printf(
        "registry scan: complete (SCAN MATCH %s TYPE set COUNT 1000: %zu calls, %zu sets)\n",
        kRegistryScanPattern, e.scan_calls, e.candidates);
  } else {
    std::printf(
        "registry scan: CUT OFF after %zu SCAN calls (about %zu keys examined, --max-scan): sets "
        "not reached are not listed above\n",
        e.scan_calls, e.scan_calls * 1000);
  }
}

}  // namespace

int run_inspect(const InspectOptions& o) {
  std::string key;
  if (o.key) {
    key = *o.key;
  } else {
    if (o.name->empty()) throw UsageError("--name must not be empty");
    try {
      key = tc::key_from_json_args(o.prefix, *o.name, o.args, o.kwargs);
    } catch (const std::invalid_argument& e) {
      throw UsageError(e.what());
    }
  }
  asio::io_context io(1);
  tr::Client client(io.get_executor(), tool_config(o.url, o.timeout_s));
  Entry e;
  // Each call has its timeout; the whole run gets a generous bound as well.
  run_bounded(
      io,
      [&]() -> asio::awaitable<void> {
        co_await connect_or_explain(client);
        co_await read_entry(client, key, o, e);
        co_await client.disconnect();
      },
      to_ms(o.timeout_s) * 4 + to_ms(o.timeout_s) * (o.max_scan / 1000), "inspect");
  print_entry(key, client.config().redacted(), e, o);
  return e.type == "none" ? kFailure : kOk;
}

}  // namespace tempest::cli
