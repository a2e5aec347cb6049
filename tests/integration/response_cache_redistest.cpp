// The response-cache middleware: ETag and 304, the memory and Redis stores, what is never stored,
// credentials, Vary, invalidation by prefix, Redis down, and both ways with the Python SDK's own
// middleware and store on one Redis.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "support/served_app.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/http/app.hpp"
#include "tempest/http/response_cache.hpp"
#include "tempest/redis/client.hpp"

namespace asio = boost::asio;
namespace th = tempest::http;
namespace tc = tempest::cache;
using namespace std::chrono_literals;
using tempest::test::RawResponse;
using tempest::test::Served;
using tempest::test::shell;

namespace {

// The value of a response header (names compared without case), or "" when absent.
std::string header_of(const RawResponse& r, std::string name) {
  std::string lower_text = r.text.substr(0, r.text.find("\r\n\r\n") + 2);
  for (auto& c : lower_text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& c : name)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto at = lower_text.find("\r\n" + name + ": ");
  if (at == std::string::npos) return "";
  const auto start = at + name.size() + 4;
  return r.text.substr(start, r.text.find("\r\n", start) - start);
}
bool has_header(const RawResponse& r, const std::string& name) {
  std::string lower_text = r.text.substr(0, r.text.find("\r\n\r\n") + 2);
  for (auto& c : lower_text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower_text.find("\r\n" + name + ":") != std::string::npos;
}

RawResponse request(std::uint16_t port, const std::string& method, const std::string& target,
                    const std::vector<std::string>& headers = {}) {
  std::string text = method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  for (const auto& h : headers)
    text += h + "\r\n";
  return tempest::test::raw_http(port, text + "\r\n");
}

// An app with GET /items/{id} ({"id": ..., "from": "cpp"}) and routes that opt out of caching,
// counting the handler runs, behind response_cache(options).
struct CachedApp {
  explicit CachedApp(th::ResponseCacheOptions options, const std::string& redis_url = "")
      : served() {
    if (!redis_url.empty()) manager = &served.manager(redis_url);
    if (manager && !options.store) {
      store = std::make_shared<th::RedisResponseCacheStore>(*manager);
      options.store = store;
    }
    served.app.use(th::response_cache(std::move(options)));
    served.app.router()
        .get("/items/{id}",
             [this](th::Request& r) -> asio::awaitable<th::Response> {
               ++runs;
               co_return th::Response::json(200,
                                            "{\"id\":\"" + r.param("id") + "\",\"from\":\"cpp\"}");
             })
        .post("/items/{id}",
              [this](th::Request&) -> asio::awaitable<th::Response> {
                ++runs;
                co_return th::Response::json(200, "{}");
              })
        .get("/cookie",
             [this](th::Request&) -> asio::awaitable<th::Response> {
               ++runs;
               th::Response r = th::Response::json(200, "{}");
               r.headers["Set-Cookie"] = "session=1";
               co_return r;
             })
        .get("/no-store",
             [this](th::Request&) -> asio::awaitable<th::Response> {
               ++runs;
               th::Response r = th::Response::json(200, "{}");
               r.headers["Cache-Control"] = "No-Store";
               co_return r;
             })
        .get("/private",
             [this](th::Request&) -> asio::awaitable<th::Response> {
               ++runs;
               th::Response r = th::Response::json(200, "{}");
               r.headers["cache-control"] = "private";
               co_return r;
             })
        .get("/public",
             [this](th::Request&) -> asio::awaitable<th::Response> {
               ++runs;
               th::Response r = th::Response::json(200, "{\"p\":1}");
               r.headers["Cache-Control"] = "public, max-age=5";
               co_return r;
             })
        .get("/missing", [this](th::Request&) -> asio::awaitable<th::Response> {
          ++runs;
          co_return th::Response::error(404, "no such thing");
        });
    if (manager)
      served.app.on_startup([this]() -> asio::awaitable<void> { co_await manager->connect(); });
    if (manager)
      served.app.on_shutdown([this]() -> asio::awaitable<void> { co_await manager->disconnect(); });
    served.start();
  }
  std::uint16_t port() const { return served.port(); }
  RawResponse get(const std::string& target, const std::vector<std::string>& headers = {}) {
    return request(port(), "GET", target, headers);
  }

  Served served;
  tc::RedisManager* manager = nullptr;
  std::shared_ptr<th::RedisResponseCacheStore> store;
  std::atomic<int> runs{0};
};

std::string redis_url() {
  const char* url = std::getenv("TEMPEST_REDIS_URL");
  return url ? url : "redis://127.0.0.1:6379";
}

// An id no other test run has used, so keys from earlier runs never answer.
std::string fresh_id() {
  static std::mt19937_64 rng(std::random_device{}());
  return std::to_string(rng() % 1000000000000ULL);
}

}  // namespace

TEST(ResponseCacheUnit, EtagIsTheQuotedSha256OfTheBody) {
  EXPECT_EQ(th::detail::strong_etag("hello"),
            "\"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"");
  EXPECT_EQ(th::detail::strong_etag(""),
            "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"");
}

TEST(ResponseCacheUnit, IfNoneMatchTakesStarListsAndWeakTags) {
  const std::string etag = "\"abc\"";
  EXPECT_TRUE(th::detail::etag_matches("*", etag));
  EXPECT_TRUE(th::detail::etag_matches("  *  ", etag));
  EXPECT_TRUE(th::detail::etag_matches("\"abc\"", etag));
  EXPECT_TRUE(th::detail::etag_matches("W/\"abc\"", etag));
  EXPECT_TRUE(th::detail::etag_matches("\"x\", W/\"abc\" ,\"y\"", etag));
  EXPECT_TRUE(th::detail::etag_matches("\"x\",\"abc\"", etag));
  EXPECT_FALSE(th::detail::etag_matches("\"abcd\"", etag));
  EXPECT_FALSE(th::detail::etag_matches("abc", etag));
  EXPECT_FALSE(th::detail::etag_matches("\"x\", \"y\"", etag));
  EXPECT_FALSE(th::detail::etag_matches("*, \"x\"", etag));  // '*' only alone, as in Python
  EXPECT_FALSE(th::detail::etag_matches("", etag));
}

TEST(ResponseCacheUnit, Base64RoundTripsEveryLengthAndRefusesWhatIsNotBase64) {
  EXPECT_EQ(th::detail::base64_encode(""), "");
  EXPECT_EQ(th::detail::base64_encode("f"), "Zg==");
  EXPECT_EQ(th::detail::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(th::detail::base64_encode("foo"), "Zm9v");
  EXPECT_EQ(th::detail::base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(th::detail::base64_encode(std::string("\xff\xfe\x00", 3)), "//4A");
  std::mt19937 rng(7);
  for (std::size_t n = 0; n < 300; ++n) {
    std::string bytes(n, '\0');
    for (auto& c : bytes)
      c = static_cast<char>(rng());
    const auto decoded = th::detail::base64_decode(th::detail::base64_encode(bytes));
    ASSERT_TRUE(decoded) << n;
    EXPECT_EQ(*decoded, bytes) << n;
  }
  for (const char* bad : {"Zg=", "Z===", "Zg=a", "Zm9v!A==", "=Zm9", "Zg==Zg==", "Zm 9"})
    EXPECT_FALSE(th::detail::base64_decode(bad)) << bad;
}

TEST(ResponseCacheUnit, StoredValuesReadBackAndBadOnesAreRefused) {
  th::CachedResponse r;
  r.status_code = 203;
  r.headers = {{"content-type", "text/plain; charset=\"x\""}, {"x-name", "caf\xe9\t\x01\x7f"}};
  r.body = std::string("\x00\x01binary\xff", 9);
  const auto text = th::detail::encode_cached_response(r);
  EXPECT_NE(text.find("\"caf\\u00e9\\t\\u0001\\u007f\""), std::string::npos) << text;
  const auto back = th::detail::decode_cached_response(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->status_code, 203u);
  EXPECT_EQ(back->headers, r.headers);
  EXPECT_EQ(back->body, r.body);
  EXPECT_FALSE(back->media_type);
  for (const char* bad :
       {"", "[]", "{\"status_code\": 200}",
        "{\"status_code\": \"200\", \"headers\": [], \"body\": \"\"}",
        "{\"status_code\": 200, \"headers\": [[\"a\"]], \"body\": \"\"}",
        "{\"status_code\": 200, \"headers\": [], \"body\": \"***\"}",
        "{\"status_code\": 200, \"headers\": [[\"a\", \"\\u20ac\"]], \"body\": \"\"}",
        "{\"status_code\": 200, \"headers\": [], \"body\": \"\", \"media_type\": 5}"})
    EXPECT_FALSE(th::detail::decode_cached_response(bad)) << bad;
}

TEST(ResponseCacheUnit, BadOptionsAreNamed) {
  const auto message = [](th::ResponseCacheOptions o) -> std::string {
    try {
      (void)th::response_cache(std::move(o));
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  th::ResponseCacheOptions zero;
  zero.ttl = 0s;
  EXPECT_NE(message(zero).find("ttl must be positive"), std::string::npos);
  th::ResponseCacheOptions vary;
  vary.vary = {"Accept Encoding"};
  EXPECT_NE(message(vary).find("vary"), std::string::npos);
  th::ResponseCacheOptions split;
  split.cache_control = "public\r\nX-Evil: 1";
  EXPECT_NE(message(split).find("cache_control"), std::string::npos);
  EXPECT_EQ(message({}), "accepted");
}

// Without a store: every cacheable response gets the ETag and Cache-Control, and a matching
// If-None-Match a 304 without a body (the handler still runs).
TEST(ResponseCache, EtagAnd304WithoutAStore) {
  CachedApp a({});
  auto r = a.get("/items/1");
  ASSERT_EQ(r.status, 200);
  const std::string etag = header_of(r, "etag");
  EXPECT_EQ(etag, th::detail::strong_etag(r.body()));
  EXPECT_EQ(header_of(r, "cache-control"), "private, max-age=60");
  EXPECT_FALSE(has_header(r, "x-cache"));
  EXPECT_FALSE(has_header(r, "vary"));
  for (const std::string& inm : {etag, "W/" + etag, std::string("*"), "\"x\", " + etag}) {
    r = a.get("/items/1", {"If-None-Match: " + inm});
    EXPECT_EQ(r.status, 304) << inm;
    EXPECT_EQ(r.body(), "");
    EXPECT_EQ(header_of(r, "etag"), etag);
    EXPECT_EQ(header_of(r, "cache-control"), "private, max-age=60");
    EXPECT_FALSE(has_header(r, "content-length")) << r.text;
    EXPECT_FALSE(has_header(r, "content-type")) << r.text;
  }
  r = a.get("/items/1", {"If-None-Match: \"other\""});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(a.runs, 6);  // no store: the handler always ran
  // What opts out, and statuses not listed, pass through untouched.
  for (const char* path : {"/cookie", "/no-store", "/private", "/missing"})
    EXPECT_FALSE(has_header(a.get(path), "etag")) << path;
  r = request(a.port(), "POST", "/items/1");
  EXPECT_FALSE(has_header(r, "etag"));
  // A handler's own Cache-Control (without private / no-store) is kept.
  EXPECT_EQ(header_of(a.get("/public"), "cache-control"), "public, max-age=5");
}

TEST(ResponseCache, MemoryStoreServesHitsWithoutTheHandler) {
  auto store = std::make_shared<th::MemoryResponseCacheStore>();
  th::ResponseCacheOptions o;
  o.store = store;
  o.ttl = 30s;
  CachedApp a(o);
  auto first = a.get("/items/1?a=1");
  EXPECT_EQ(header_of(first, "x-cache"), "MISS");
  EXPECT_EQ(header_of(first, "cache-control"), "private, max-age=30");
  auto second = a.get("/items/1?a=1");
  EXPECT_EQ(header_of(second, "x-cache"), "HIT");
  EXPECT_EQ(second.body(), first.body());
  EXPECT_EQ(header_of(second, "etag"), header_of(first, "etag"));
  EXPECT_EQ(header_of(second, "content-type"), "application/json");
  EXPECT_EQ(header_of(second, "content-length"), std::to_string(first.body().size()));
  EXPECT_EQ(a.runs, 1);
  // A 304 from the store: the handler does not run either.
  auto not_modified = a.get("/items/1?a=1", {"If-None-Match: " + header_of(first, "etag")});
  EXPECT_EQ(not_modified.status, 304);
  EXPECT_EQ(a.runs, 1);
  // Another query, another method: other entries.
  EXPECT_EQ(header_of(a.get("/items/1?a=2"), "x-cache"), "MISS");
  auto head = request(a.port(), "HEAD", "/items/1?a=1");
  EXPECT_EQ(header_of(head, "x-cache"), "MISS");
  EXPECT_EQ(header_of(head, "etag"), header_of(first, "etag"));  // the body's, though not sent
  EXPECT_EQ(header_of(request(a.port(), "HEAD", "/items/1?a=1"), "x-cache"), "HIT");
  EXPECT_EQ(a.runs, 3);
  // Never stored: Set-Cookie, no-store, private, other statuses, unsafe methods.
  for (const char* path : {"/cookie", "/no-store", "/private", "/missing"}) {
    (void)a.get(path);
    EXPECT_FALSE(has_header(a.get(path), "x-cache")) << path;
  }
  (void)request(a.port(), "POST", "/items/1");
  (void)request(a.port(), "POST", "/items/1");
  EXPECT_EQ(a.runs, 3 + 8 + 2);
  EXPECT_EQ(store->size(), 3u);
  // Invalidation by prefix: both queries of GET /items/1, not the HEAD entry.
  size_t removed = 0;
  asio::io_context io;
  tempest::test::run(io, [&]() -> asio::awaitable<void> {
    removed = co_await store->invalidate_prefix("GET|/items/1|");
  });
  EXPECT_EQ(removed, 2u);
  EXPECT_EQ(header_of(a.get("/items/1?a=1"), "x-cache"), "MISS");
  EXPECT_EQ(header_of(request(a.port(), "HEAD", "/items/1?a=1"), "x-cache"), "HIT");
}

TEST(ResponseCache, CredentialedRequestsNeverShareAnEntry) {
  {
    th::ResponseCacheOptions o;
    o.store = std::make_shared<th::MemoryResponseCacheStore>();
    CachedApp a(o);
    (void)a.get("/items/1");  // stored for everyone
    for (const char* cred : {"Authorization: Bearer alice", "Cookie: session=alice"}) {
      for (int i = 0; i < 2; ++i) {
        auto r = a.get("/items/1", {cred});
        EXPECT_FALSE(has_header(r, "x-cache")) << cred;  // the store is not used at all
        EXPECT_FALSE(header_of(r, "etag").empty());      // the ETag still is
      }
    }
    EXPECT_EQ(a.runs, 5);
  }
  // Opted in: each set of credentials has its own entry.
  th::ResponseCacheOptions o;
  o.store = std::make_shared<th::MemoryResponseCacheStore>();
  o.cache_credentialed = true;
  CachedApp a(o);
  EXPECT_EQ(header_of(a.get("/items/1", {"Authorization: Bearer alice"}), "x-cache"), "MISS");
  EXPECT_EQ(header_of(a.get("/items/1", {"Authorization: Bearer alice"}), "x-cache"), "HIT");
  EXPECT_EQ(header_of(a.get("/items/1", {"Authorization: Bearer bob"}), "x-cache"), "MISS");
  EXPECT_EQ(header_of(a.get("/items/1"), "x-cache"), "MISS");
  EXPECT_EQ(header_of(a.get("/items/1", {"Cookie: s=bob"}), "x-cache"), "MISS");
  EXPECT_EQ(a.runs, 4);
}

TEST(ResponseCache, VaryExemptPathsAndThePredicate) {
  th::ResponseCacheOptions o;
  o.store = std::make_shared<th::MemoryResponseCacheStore>();
  o.vary = {"Accept-Encoding", "X-Tenant"};
  o.exempt_paths = {"/items/exempt"};
  o.cacheable = [](const th::Request& r) {
    return r.route == "/items/{id}" && r.param("id") != "never";
  };
  CachedApp a(o);
  auto gzip = a.get("/items/1", {"Accept-Encoding: gzip"});
  EXPECT_EQ(header_of(gzip, "vary"), "Accept-Encoding, X-Tenant");
  EXPECT_EQ(header_of(gzip, "x-cache"), "MISS");
  EXPECT_EQ(header_of(a.get("/items/1", {"accept-encoding: gzip"}), "x-cache"), "HIT");
  EXPECT_EQ(header_of(a.get("/items/1", {"Accept-Encoding: br"}), "x-cache"), "MISS");
  EXPECT_EQ(header_of(a.get("/items/1", {"Accept-Encoding: gzip", "X-Tenant: t2"}), "x-cache"),
            "MISS");
  EXPECT_EQ(header_of(a.get("/items/1"), "x-cache"), "MISS");
  EXPECT_EQ(a.runs, 4);
  for (const char* path : {"/items/exempt", "/items/never"})
    for (int i = 0; i < 2; ++i) {
      auto r = a.get(path);
      EXPECT_FALSE(has_header(r, "x-cache")) << path;
      EXPECT_FALSE(has_header(r, "etag")) << path;
    }
  EXPECT_EQ(a.runs, 8);
}

TEST(ResponseCache, MemoryStoreStaysWithinItsBound) {
  th::MemoryResponseCacheStore store(3);
  asio::io_context io;
  tempest::test::run(io, [&]() -> asio::awaitable<void> {
    th::CachedResponse r;
    for (int i = 0; i < 5; ++i)
      co_await store.set("k" + std::to_string(i), r, 60s);
    EXPECT_EQ(store.size(), 3u);
    EXPECT_TRUE(co_await store.get("k2"));
    EXPECT_FALSE(co_await store.get("k3"));  // full: not stored
    co_await store.set("k0", r, 60s);        // a key it holds is replaced
    co_await store.set("short", r, 1s);
    EXPECT_FALSE(co_await store.get("short"));
    EXPECT_THROW(co_await store.invalidate_prefix(""), std::invalid_argument);
  });
}

// The Redis store: shared by two apps (a hit in the second without its handler), written with EX
// ttl, invalidated by prefix across every query.
TEST(ResponseCache, RedisStoreIsSharedAndInvalidatedByPrefix) {
  th::ResponseCacheOptions o;
  o.ttl = 45s;
  CachedApp one(o, redis_url());
  CachedApp two(o, redis_url());
  const std::string id = fresh_id();
  auto miss = one.get("/items/" + id + "?v=1");
  EXPECT_EQ(header_of(miss, "x-cache"), "MISS");
  auto hit = two.get("/items/" + id + "?v=1");
  EXPECT_EQ(header_of(hit, "x-cache"), "HIT");
  EXPECT_EQ(hit.body(), miss.body());
  EXPECT_EQ(header_of(hit, "etag"), header_of(miss, "etag"));
  EXPECT_EQ(two.runs, 0);
  (void)one.get("/items/" + id + "?v=2");
  (void)one.get("/items/" + id + "7");  // another item that starts with the same characters
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), redis_url());
  th::RedisResponseCacheStore store(redis);
  tempest::test::run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto client = redis.client();
    const auto ttl = co_await client.ttl("respcache:GET|/items/" + id + "|v=1");
    EXPECT_GT(ttl, 40);
    EXPECT_LE(ttl, 45);
    EXPECT_EQ(co_await store.invalidate_prefix("GET|/items/" + id + "|"), 2u);
    const std::vector<std::string> other_item = {"respcache:GET|/items/" + id + "7|"};
    EXPECT_EQ(co_await client.exists(other_item), 1);
    // A value that is not a cached response is a miss, never a failure.
    co_await client.set("respcache:GET|/items/" + id + "|v=3", "not json", tempest::redis::ex{60s});
    co_await redis.disconnect();
  });
  EXPECT_EQ(header_of(two.get("/items/" + id + "?v=1"), "x-cache"), "MISS");
  auto garbage = two.get("/items/" + id + "?v=3");
  EXPECT_EQ(garbage.status, 200);
  EXPECT_EQ(header_of(garbage, "x-cache"), "MISS");
  EXPECT_EQ(header_of(two.get("/items/" + id + "?v=3"), "x-cache"), "HIT");  // overwritten
}

// Redis down: the requests are answered by their handler, in bounded time.
TEST(ResponseCache, RedisDownServesFromTheHandler) {
  tempest::test::RedisServer server;
  th::ResponseCacheOptions o;
  CachedApp a(o, server.url());
  EXPECT_EQ(header_of(a.get("/items/1"), "x-cache"), "MISS");
  EXPECT_EQ(header_of(a.get("/items/1"), "x-cache"), "HIT");
  server.kill();
  // Once the manager knows the link is down, the store is skipped at once: no request waits
  // for a command timeout (1 s each for the GET and the SET) while Redis stays down.
  for (int i = 0; i < 50 && a.manager->is_up(); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(a.manager->is_up());
  for (int i = 0; i < 3; ++i) {
    const auto started = tempest::test::Clock::now();
    auto r = a.get("/items/1");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body(), "{\"id\":\"1\",\"from\":\"cpp\"}");
    EXPECT_LT(tempest::test::ms_since(started), 500);
  }
  EXPECT_EQ(a.runs, 4);
}

// Both ways with the Python SDK's own middleware and RedisResponseCacheStore on one Redis: the
// same keys (method, path, query, Vary headers, credential digest) and the same values. (The
// SDK's source is outside this repository: skipped where it is not; see python_sdk_dir().)
TEST(ResponseCache, SharedWithThePythonMiddleware) {
  const std::string sdk = tempest::test::python_sdk_dir();
  if (sdk.empty()) GTEST_SKIP() << "the Python SDK's source is not here (TEMPEST_PYTHON_SDK)";
  th::ResponseCacheOptions o;
  o.vary = {"Accept-Encoding"};
  o.cache_credentialed = true;
  CachedApp a(o, redis_url());
  const std::string python = "/usr/bin/python3 " TEMPEST_SOURCE_DIR
                             "/tests/interop/python_response_cache.py " +
                             sdk + " " + redis_url() + " ";
  const auto py = [&](const std::string& args) {
    return boost::json::parse(shell(python + args + " --vary Accept-Encoding --credentialed"))
        .as_object();
  };
  const std::string id = fresh_id();
  // Python first: C++ answers from Python's entry.
  auto written = py("GET '/items/" + id + "?x=1' --header 'Accept-Encoding: gzip'");
  EXPECT_TRUE(written["ran"].as_bool());
  EXPECT_EQ(written["headers"].as_object()["x-cache"].as_string(), "MISS");
  auto hit = a.get("/items/" + id + "?x=1", {"Accept-Encoding: gzip"});
  EXPECT_EQ(header_of(hit, "x-cache"), "HIT");
  EXPECT_EQ(hit.body(), "{\"id\":\"" + id + "\",\"from\":\"python\"}");
  EXPECT_EQ(header_of(hit, "etag"), written["headers"].as_object()["etag"].as_string());
  EXPECT_EQ(header_of(hit, "content-type"), "application/json");
  EXPECT_EQ(header_of(hit, "vary"), "Accept-Encoding");
  EXPECT_EQ(a.runs, 0);
  // C++ first: Python answers from C++'s entry, and a 304 for its ETag.
  auto mine = a.get("/items/" + id + "?x=2", {"Accept-Encoding: br", "Authorization: Bearer t1"});
  EXPECT_EQ(header_of(mine, "x-cache"), "MISS");
  auto from_cpp = py("GET '/items/" + id +
                     "?x=2' --header 'Accept-Encoding: br' --header 'Authorization: Bearer t1'");
  EXPECT_FALSE(from_cpp["ran"].as_bool());
  EXPECT_EQ(from_cpp["headers"].as_object()["x-cache"].as_string(), "HIT");
  EXPECT_EQ(from_cpp["body"].as_string(), "{\"id\":\"" + id + "\",\"from\":\"cpp\"}");
  EXPECT_EQ(from_cpp["headers"].as_object()["etag"].as_string(), header_of(mine, "etag"));
  auto conditional =
      py("GET '/items/" + id + "?x=2' --header 'Accept-Encoding: br' " +
         "--header 'Authorization: Bearer t1' --header 'If-None-Match: " + header_of(mine, "etag") +
         "'");
  EXPECT_EQ(conditional["status"].as_int64(), 304);
  EXPECT_FALSE(conditional["ran"].as_bool());
  // Other credentials: another entry on both sides.
  auto other = py("GET '/items/" + id + "?x=2' --header 'Accept-Encoding: br' " +
                  "--header 'Authorization: Bearer t2'");
  EXPECT_TRUE(other["ran"].as_bool());
  // The value C++ wrote is what Python's json.dumps writes, byte for byte.
  asio::io_context io;
  tc::RedisManager redis(io.get_executor(), redis_url());
  std::string value;
  tempest::test::run(io, [&]() -> asio::awaitable<void> {
    co_await redis.connect();
    auto client = redis.client();
    th::Request mine_request;
    mine_request.method = "GET";
    mine_request.target = "/items/" + id + "?x=2";
    mine_request.path = "/items/" + id;
    mine_request.headers = {{"accept-encoding", "br"}, {"authorization", "Bearer t1"}};
    const auto key = th::detail::response_cache_key(mine_request, o.vary, true);
    EXPECT_TRUE(key.starts_with("GET|/items/" + id + "|x=2|Accept-Encoding=br|cred=")) << key;
    value = (co_await client.get("respcache:" + key)).value_or("");
    co_await redis.disconnect();
  });
  ASSERT_FALSE(value.empty());
  const std::string file = ::testing::TempDir() + "respcache_value.json";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(value.c_str(), f);
  std::fclose(f);
  EXPECT_EQ(shell("/usr/bin/python3 " TEMPEST_SOURCE_DIR
                  "/tests/interop/python_response_cache.py --roundtrip < " +
                  file),
            "same");
}

// App::use: the first added is the outermost, each sees the route, and one that throws is a 500.
TEST(AppMiddleware, OrderRouteAndFailures) {
  Served s;
  std::vector<std::string> seen;
  s.app.use([&](th::Request& r, th::Next next) -> asio::awaitable<th::Response> {
    seen.push_back("outer " + r.route);
    auto response = co_await next(r);
    response.headers["x-outer"] = "1";
    co_return response;
  });
  s.app.use([&](th::Request& r, th::Next next) -> asio::awaitable<th::Response> {
    seen.push_back("inner " + r.route);
    if (r.query_param("fail")) throw std::runtime_error("middleware failure");
    co_return co_await next(r);
  });
  s.app.router().get("/items/{id}", [&](th::Request& r) -> asio::awaitable<th::Response> {
    seen.push_back("handler " + r.param("id"));
    co_return th::Response::json(200, "{}");
  });
  s.start();
  auto r = tempest::test::http_get(s.port(), "/items/5");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(header_of(r, "x-outer"), "1");
  r = tempest::test::http_get(s.port(), "/nowhere");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(header_of(r, "x-outer"), "1");  // routing answers pass through the chain too
  r = tempest::test::http_get(s.port(), "/items/6?fail=1");
  EXPECT_EQ(r.status, 500);
  s.stop();
  EXPECT_EQ(seen, (std::vector<std::string>{"outer /items/{id}", "inner /items/{id}", "handler 5",
                                            "outer (unmatched)", "inner (unmatched)",
                                            "outer /items/{id}", "inner /items/{id}"}));
  EXPECT_THROW(s.app.use(th::Middleware()), std::invalid_argument);
}
