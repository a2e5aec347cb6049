// The `tempest` command-line tool, run as a process: its help, version, usage errors and exit
// codes, and inspect / stats against real Redis servers (and a served /metrics).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "support/served_app.hpp"
#include "tempest/cache/cached.hpp"
#include "tempest/http/metrics.hpp"

namespace asio = boost::asio;
namespace tc = tempest::cache;
namespace th = tempest::http;
namespace tr = tempest::redis;
using namespace std::chrono_literals;
using tempest::test::RedisServer;
using tempest::test::run;
using tempest::test::shell;

struct CliProfile {
  std::string id;
  std::string name;
  std::vector<std::string> roles;
};
BOOST_DESCRIBE_STRUCT(CliProfile, (), (id, name, roles))

namespace {

struct Result {
  int code = -1;
  std::string out;
  std::string err;
  std::string all() const { return out + err; }
};

std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the built CLI with `args` (already shell-quoted where needed); stdout, stderr, exit code.
Result cli(const std::string& args) {
  char out_path[] = "/tmp/tempest-cli-out-XXXXXX";
  char err_path[] = "/tmp/tempest-cli-err-XXXXXX";
  const int out_fd = ::mkstemp(out_path);
  const int err_fd = ::mkstemp(err_path);
  ::close(out_fd);
  ::close(err_fd);
  const std::string command = std::string("timeout 60 ") + TEMPEST_CLI + " " + args + " >" +
                              out_path + " 2>" + err_path + " </dev/null";
  const int status = std::system(command.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  ::unlink(out_path);
  ::unlink(err_path);
  return r;
}

bool has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// Every subcommand and the options its --help must list.
const std::vector<std::pair<std::string, std::vector<std::string>>> kSubcommands = {
    {"bench",
     {"--url", "--mode", "--concurrency", "--requests", "--value-size", "--keys", "--near",
      "--writes-per-sec", "--freshness"}},
    {"key", {"--name", "--prefix", "--args", "--kwargs"}},
    {"invalidate", {"--url", "--prefix", "--namespace", "--tag", "--key", "--key-prefix"}},
    {"inspect",
     {"--url", "--key", "--name", "--args", "--kwargs", "--prefix", "--max-scan", "--preview-bytes",
      "--timeout"}},
    {"stats", {"--url", "--timeout"}},
};

}  // namespace

// ---- help, version, usage errors -------------------------------------------------------------

TEST(CliHelp, TopLevelHelpAndVersion) {
  const auto help = cli("--help");
  EXPECT_EQ(help.code, 0) << help.all();
  EXPECT_TRUE(has(help.out, "Usage: tempest [OPTIONS] SUBCOMMAND")) << help.out;
  for (const auto& [sub, options] : kSubcommands)
    EXPECT_TRUE(has(help.out, "\n  " + sub + " ")) << sub << " missing in\n" << help.out;
  EXPECT_TRUE(has(help.out, "Exit codes: 0 ok, 1 failure")) << help.out;
  EXPECT_EQ(help.err, "");
  EXPECT_EQ(cli("-h").out, help.out);

  const auto version = cli("--version");
  EXPECT_EQ(version.code, 0) << version.all();
  EXPECT_EQ(version.out, "tempest " TEMPEST_VERSION "\n");
  EXPECT_EQ(version.err, "");
}

// `tempest bench --help` used to answer "--help needs a value".
TEST(CliHelp, EachSubcommandsHelpListsItsOptions) {
  for (const auto& [sub, options] : kSubcommands) {
    SCOPED_TRACE(sub);
    const auto r = cli(sub + " --help");
    EXPECT_EQ(r.code, 0) << r.all();
    EXPECT_EQ(r.err, "");
    EXPECT_TRUE(has(r.out, "Usage: tempest " + sub + " [OPTIONS]")) << r.out;
    for (const auto& o : options)
      EXPECT_TRUE(has(r.out, "  " + o + " ") || has(r.out, "  " + o + "\n")) << o << " in\n"
                                                                             << r.out;
  }
}

TEST(CliUsage, MissingRequiredOptionExits2WithTheSubcommandsUsage) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bench", "--url is required"},
      {"bench --mode get", "--url is required"},
      {"key --prefix p:", "--name is required"},
      {"invalidate --tag t", "--url is required"},
      {"invalidate --url redis://127.0.0.1:1", "one of --prefix, --namespace, --tag, --key"},
      {"inspect --key k", "--url is required"},
      {"inspect --url redis://127.0.0.1:1", "--key or --name is required"},
      {"stats", "--url is required"},
  };
  for (const auto& [args, error] : cases) {
    SCOPED_TRACE(args);
    const auto r = cli(args);
    const std::string sub = args.substr(0, args.find(' '));
    EXPECT_EQ(r.code, 2) << r.all();
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(has(r.err, "tempest " + sub + ": " + error)) << r.err;
    EXPECT_TRUE(has(r.err, "Usage: tempest " + sub + " [OPTIONS]")) << r.err;
  }
}

TEST(CliUsage, UnknownSubcommandOptionOrValueExits2) {
  struct Case {
    std::string args, error, usage;
  };
  const std::vector<Case> cases = {
      {"frob", "tempest: unknown subcommand 'frob'", "Usage: tempest [OPTIONS] SUBCOMMAND"},
      {"", "tempest: A subcommand is required", "Usage: tempest [OPTIONS] SUBCOMMAND"},
      {"--frob", "--frob", "Usage: tempest [OPTIONS] SUBCOMMAND"},
      {"bench --url redis://x --frob 1", "tempest bench: ", "Usage: tempest bench [OPTIONS]"},
      {"bench --frob", "unexpected argument(s): --frob", "Usage: tempest bench [OPTIONS]"},
      {"bench --url redis://x --concurrency zero", "--concurrency", "Usage: tempest bench"},
      {"bench --url redis://x --mode fast", "--mode", "Usage: tempest bench"},
      {"bench --url redis://x --near",
       "--near, --freshness and --writes-per-sec go with --mode "
       "cached",
       "Usage: tempest bench"},
      {"key --name f --args '[1,'", "bad --args JSON at offset 3", "Usage: tempest key"},
      {"invalidate --url redis://x --tag a --key b", "--tag excludes --key",
       "Usage: tempest invalidate"},
      {"inspect --url redis://x --key k --name f", "--key excludes --name",
       "Usage: tempest inspect"},
      {"inspect --url redis://x --key k --args '[1]'", "--args requires --name",
       "Usage: tempest inspect"},
      {"stats --url ftp://x", "unsupported scheme 'ftp'", "Usage: tempest stats"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    const auto r = cli(c.args);
    EXPECT_EQ(r.code, 2) << r.all();
    EXPECT_TRUE(has(r.err, c.error)) << r.err;
    EXPECT_TRUE(has(r.err, c.usage)) << r.err;
  }
  // A bad URL is a usage error too, and its password is never shown.
  const auto r = cli("bench --url 'redis://:hunter2@h:99999'");
  EXPECT_EQ(r.code, 2) << r.all();
  EXPECT_TRUE(has(r.err, "bad port '99999'")) << r.err;
  EXPECT_FALSE(has(r.all(), "hunter2")) << r.all();
}

TEST(CliRedis, UnreachableRedisExits1ClearlyWithoutThePassword) {
  const std::string url =
      "redis://ops:hunter2@127.0.0.1:" + std::to_string(tempest::test::free_port()) + "/0";
  for (const std::string sub : {"inspect --key k", "stats", "invalidate --tag t",
                                "bench --requests 10", "bench --mode cached --requests 10"}) {
    SCOPED_TRACE(sub);
    const auto r = cli(sub + " --url " + sh_quote(url));
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_FALSE(has(r.all(), "hunter2")) << r.all();
    EXPECT_TRUE(has(r.err, "Connection refused") || has(r.err, "unreachable")) << r.err;
    EXPECT_TRUE(has(r.err, "tempest " + sub.substr(0, sub.find(' ')) + ": ")) << r.err;
  }
  const auto r = cli("inspect --key k --url " + sh_quote(url));
  EXPECT_TRUE(has(r.err, "Redis unreachable: ")) << r.err;
  EXPECT_TRUE(has(r.err, "redis://ops:***@127.0.0.1:")) << r.err;
}

// A server that accepts connections and never answers: every wait is bounded by --timeout.
TEST(CliRedis, ASilentServerTimesOut) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);  // the kernel completes the handshakes; nobody reads
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  for (const std::string& args :
       {"inspect --key k --url redis://127.0.0.1:" + port, "stats --url redis://127.0.0.1:" + port,
        "stats --url http://127.0.0.1:" + port + "/metrics"}) {
    SCOPED_TRACE(args);
    const auto start = tempest::test::Clock::now();
    const auto r = cli(args + " --timeout 1");
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_TRUE(has(r.err, "timed out") || has(r.err, "timeout")) << r.err;
    EXPECT_LT(tempest::test::ms_since(start), 8000.0);
  }
  ::close(fd);
}

// ---- inspect ---------------------------------------------------------------------------------

class CliInspect : public ::testing::Test {
 protected:
  std::string url = tempest::test::shared_redis_url();
  asio::io_context io;
  tc::RedisManager redis{io.get_executor(), url};
  std::string prefix = tempest::test::unique_prefix("cli");
};

TEST_F(CliInspect, NamesTheRegistrySetsTtlSizeAndPrettyJsonOfATempestEntry) {
  auto profile =
      tc::cached(redis,
                 {.name = "get_profile",
                  .ttl = 300s,
                  .key_prefix = prefix,
                  .ns = "profiles",
                  .tags = {"team:ops"}},
                 [](std::string id) -> asio::awaitable<CliProfile> {
                   co_return CliProfile{id, "Ana", {"admin", "ops"}};
                 })
          .tags([](const std::string& id) { return std::vector<std::string>{"user:" + id}; });
  std::string key;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    (void)co_await profile("7");
    key = profile.key("7");
    co_await redis.disconnect();
  });
  // The key computed from the call, as `tempest key` does.
  const auto r = cli("inspect --url " + sh_quote(url) + " --name get_profile --prefix " +
                     sh_quote(prefix) + " --args '[\"7\"]'");
  EXPECT_EQ(r.code, 0) << r.all();
  EXPECT_EQ(r.err, "");
  const std::string& out = r.out;
  EXPECT_TRUE(has(out, "key:        " + key + "\n")) << out;
  EXPECT_TRUE(has(out, "exists:     yes (type string)\n")) << out;
  EXPECT_TRUE(
      std::regex_search(out, std::regex(R"(\nttl: +(29\d|300)\.\d{3} s \(PTTL \d+ ms\)\n)")))
      << out;
  const std::string stored = R"({"id": "7", "name": "Ana", "roles": ["admin", "ops"]})";
  EXPECT_TRUE(has(out, "size:       " + std::to_string(stored.size()) +
                           " bytes (STRLEN of the stored value); MEMORY USAGE "))
      << out;
  EXPECT_TRUE(has(out, "freshness:  none")) << out;
  EXPECT_TRUE(has(out, "value:      JSON, " + std::to_string(stored.size()) +
                           " bytes\n{\n  \"id\": \"7\",\n  \"name\": \"Ana\",\n  \"roles\": [\n"
                           "    \"admin\",\n    \"ops\"\n  ]\n}\n"))
      << out;
  EXPECT_TRUE(has(out, "registry sets listing the key:\n")) << out;
  EXPECT_TRUE(has(out, "  namespace \"profiles\" (key_prefix \"" + prefix + "\"): " + prefix +
                           "__ns__:profiles (1 member, ttl "))
      << out;
  EXPECT_TRUE(has(out, "  tag \"team:ops\" (key_prefix \"" + prefix + "\"): " + prefix +
                           "__tag__:team:ops (1 member, ttl "))
      << out;
  EXPECT_TRUE(has(out, "  tag \"user:7\" (key_prefix \"" + prefix + "\"): " + prefix +
                           "__tag__:user:7 (1 member, ttl "))
      << out;
  EXPECT_TRUE(has(out, "pending invalidation sets listing the key: none\n")) << out;
  EXPECT_TRUE(has(out, "registry scan: complete")) << out;

  // The same entry by --key; another entry's sets are not listed.
  const auto by_key = cli("inspect --url " + sh_quote(url) + " --key " + sh_quote(key));
  EXPECT_EQ(by_key.code, 0) << by_key.all();
  EXPECT_TRUE(has(by_key.out, prefix + "__tag__:user:7 ")) << by_key.out;
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    (void)co_await profile("8");
    co_await redis.disconnect();
  });
  const auto other = cli("inspect --url " + sh_quote(url) + " --key " + sh_quote(key));
  EXPECT_FALSE(has(other.out, prefix + "__tag__:user:8")) << other.out;
  EXPECT_TRUE(has(other.out, prefix + "__ns__:profiles (2 members")) << other.out;
}

// An invalidation that moved the key into a set's pending set (and has not unlinked it yet).
TEST_F(CliInspect, NamesPendingInvalidationSets) {
  const std::string key = prefix + "entry";
  const std::string pending = "{" + prefix + "__tag__:t}:pending";
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto c = redis.client();
    (void)co_await c.set(key, "[1, 2]");
    (void)co_await c.sadd(pending, key);
    co_await redis.disconnect();
  });
  const auto r = cli("inspect --url " + sh_quote(url) + " --key " + sh_quote(key));
  EXPECT_EQ(r.code, 0) << r.all();
  EXPECT_TRUE(has(r.out, "registry sets listing the key: none\n")) << r.out;
  EXPECT_TRUE(has(r.out, "pending invalidation sets listing the key:\n  tag \"t\" (key_prefix \"" +
                             prefix + "\"): " + pending + " (1 member, no expiry)\n"))
      << r.out;
  EXPECT_TRUE(has(r.out, "value:      JSON, 6 bytes\n[\n  1,\n  2\n]\n")) << r.out;
}

// The freshness suffix (early_refresh / fail_safe_max) is read: the logical value and its times.
TEST_F(CliInspect, ShowsTheFreshnessTimesAndTheLogicalValue) {
  auto f = tc::cached(redis,
                      {.name = "fresh_fn",
                       .ttl = 100s,
                       .key_prefix = prefix,
                       .early_refresh = 0.5,
                       .fail_safe_max = 60s},
                      [](int x) -> asio::awaitable<int> { co_return x * 1000; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    (void)co_await f(42);
    co_await redis.disconnect();
  });
  const auto r = cli("inspect --url " + sh_quote(url) + " --key " + sh_quote(f.key(42)));
  EXPECT_EQ(r.code, 0) << r.all();
  // Stored: "42000" and the 46-byte suffix; Redis keeps it 100 + 60 s.
  EXPECT_TRUE(has(r.out, "size:       51 bytes (STRLEN")) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\nttl: +1[56]\d\.\d{3} s)"))) << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out,
      std::regex(
          R"(freshness:  fresh; fresh until \d{4}-\d\d-\d\dT[0-9:.]+Z \(in (99|100)\.\d{3} s\), refresh due at [0-9T:.Z-]+ \(in (49|50)\.\d{3} s\))")))
      << r.out;
  EXPECT_TRUE(has(r.out,
                  "value:      JSON, 5 bytes (the logical value; the stored one adds a 46-byte "
                  "freshness suffix)\n42000\n"))
      << r.out;
}

TEST_F(CliInspect, AMissingKeySaysSoAndExits1) {
  const auto r = cli("inspect --url " + sh_quote(url) + " --key " + sh_quote(prefix + "nothing"));
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(has(r.out, "exists:     no\n")) << r.out;
  EXPECT_FALSE(has(r.out, "ttl:")) << r.out;
}

TEST_F(CliInspect, AValueThatIsNotJsonIsShownEscapedAndCut) {
  const std::string key = prefix + "binary";
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    (void)co_await redis.client().set(key, std::string("a\x01\n\"b\\", 6) + std::string(100, 'z'));
    co_await redis.disconnect();
  });
  const auto r =
      cli("inspect --url " + sh_quote(url) + " --key " + sh_quote(key) + " --preview-bytes 16");
  EXPECT_EQ(r.code, 0) << r.all();
  EXPECT_TRUE(has(r.out,
                  "value:      not JSON, 106 bytes, the first 16 escaped\n"
                  "a\\x01\\n\"b\\\\zzzzzzzzzz...\n"))
      << r.out;
}

// SCAN is bounded: with more keys than --max-scan lets it examine, the output says it was cut.
TEST(CliInspectScan, ACutOffScanIsReported) {
  RedisServer server;
  asio::io_context io;
  tr::Client client(io.get_executor(), server.url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    tr::Pipeline p;
    for (int i = 0; i < 20000; ++i)
      p.add("SET", "filler:" + std::to_string(i), "1");
    (void)co_await client.exec(p, tr::CallOptions{10s});
    co_await client.disconnect();
  });
  const auto cut = cli("inspect --url " + server.url() + " --key filler:1 --max-scan 1000");
  EXPECT_EQ(cut.code, 0) << cut.all();
  EXPECT_TRUE(has(cut.out, "registry scan: CUT OFF after 1 SCAN calls")) << cut.out;
  const auto full = cli("inspect --url " + server.url() + " --key filler:1");
  EXPECT_TRUE(has(full.out, "registry scan: complete")) << full.out;
}

// ---- stats -----------------------------------------------------------------------------------

TEST(CliStats, RedisInfoHitsMissesAndKeyspace) {
  RedisServer server;
  asio::io_context io;
  tr::Client client(io.get_executor(), server.url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    (void)co_await client.set("a", "1");
    (void)co_await client.get("a");
    (void)co_await client.get("a");
    (void)co_await client.get("missing");
    co_await client.disconnect();
  });
  const auto r = cli("stats --url " + server.url());
  EXPECT_EQ(r.code, 0) << r.all();
  EXPECT_TRUE(has(r.out, "keyspace_hits:   2\n")) << r.out;
  EXPECT_TRUE(has(r.out, "keyspace_misses: 1\n")) << r.out;
  EXPECT_TRUE(has(r.out, "hit ratio:       66.7%")) << r.out;
  EXPECT_TRUE(has(r.out, "keyspace:\n  db0: keys=1,expires=0")) << r.out;
}

TEST(CliStats, ServiceMetricsHitsMissesAndRatio) {
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), tempest::test::shared_redis_url());
  const std::string prefix = tempest::test::unique_prefix("cli");
  auto f = tc::cached(redis, {.name = "cli_stats_fn", .key_prefix = prefix},
                      [](int x) -> asio::awaitable<int> { co_return x; });
  run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    for (int i = 0; i < 3; ++i)
      (void)co_await f(1);  // a miss, then two hits
    co_await redis.disconnect();
  });
  tempest::test::Served s;
  s.app.include(th::make_metrics_router(s.app.metrics(), {}));
  s.start();
  const std::string base = "http://127.0.0.1:" + std::to_string(s.port());
  for (const std::string& target : {base + "/metrics", base, base + "/"}) {
    SCOPED_TRACE(target);
    const auto r = cli("stats --url " + target);
    EXPECT_EQ(r.code, 0) << r.all();
    EXPECT_TRUE(has(r.out, "source: " + base + "/metrics")) << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\ncli_stats_fn +2 +1 +66\.7% +0 +0 +0\n)")))
        << r.out;
  }
  const auto missing = cli("stats --url " + base + "/nothing");
  EXPECT_EQ(missing.code, 1) << missing.all();
  EXPECT_TRUE(has(missing.err, "answered 404")) << missing.err;
  s.stop();
  const auto down = cli("stats --url " + base + "/metrics --timeout 2");
  EXPECT_EQ(down.code, 1) << down.all();
  EXPECT_TRUE(has(down.err, "cannot GET " + base + "/metrics: ")) << down.err;
}

// ---- interop: an entry the Python SDK wrote with tags ----------------------------------------

TEST(CliInterop, InspectNamesTheTagSetsOfAnEntryThePythonSdkWrote) {
  const std::string sdk = tempest::test::python_sdk_dir();
  if (sdk.empty()) GTEST_SKIP() << "the Python SDK's source is not here (TEMPEST_PYTHON_SDK)";
  const std::string url = tempest::test::shared_redis_url();
  const std::string prefix = tempest::test::unique_prefix("py");
  // The SDK's @cached(namespace="profiles", tags=[user:42, profiles-all]) wrote it; the script
  // prints its key and the registry sets the SDK itself names for it.
  const std::string written =
      shell("/usr/bin/python3 " TEMPEST_SOURCE_DIR "/tests/interop/python_sdk_tagged.py " +
            sh_quote(sdk) + " " + sh_quote(url) + " " + sh_quote(prefix) + " 42");
  std::vector<std::string> lines;
  std::istringstream in(written);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << written;
  const std::string& key = lines[0];
  EXPECT_EQ(lines[2], prefix + "__tag__:user:42");

  const auto r = cli("inspect --url " + sh_quote(url) + " --key " + sh_quote(key));
  std::printf("%s", r.out.c_str());  // what an operator sees (the report quotes it)
  EXPECT_EQ(r.code, 0) << r.all();
  EXPECT_TRUE(has(r.out, "exists:     yes (type string)\n")) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\nttl: +1[01]\d\.\d{3} s)"))) << r.out;
  EXPECT_TRUE(has(r.out, "freshness:  none")) << r.out;
  EXPECT_TRUE(has(r.out, "{\n  \"id\": \"42\",\n  \"name\": \"Py\",\n  \"roles\": [\n")) << r.out;
  EXPECT_TRUE(has(r.out, "  namespace \"profiles\" (key_prefix \"" + prefix + "\"): " + lines[1] +
                             " (1 member, ttl "))
      << r.out;
  EXPECT_TRUE(has(
      r.out, "  tag \"user:42\" (key_prefix \"" + prefix + "\"): " + lines[2] + " (1 member, ttl "))
      << r.out;
  EXPECT_TRUE(has(r.out, "  tag \"profiles-all\" (key_prefix \"" + prefix + "\"): " + lines[3] +
                             " (1 member, ttl "))
      << r.out;
  // The key tempest computes for the call is the SDK's: the same entry by --name/--args.
  const auto by_call = cli("inspect --url " + sh_quote(url) + " --name get_user_profile --prefix " +
                           sh_quote(prefix) + " --args '[\"42\"]'");
  EXPECT_EQ(by_call.code, 0) << by_call.all();
  EXPECT_TRUE(has(by_call.out, "key:        " + key + "\n")) << by_call.out;
}
