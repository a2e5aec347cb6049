// tempest::http against hostile or careless input: request smuggling through Transfer-Encoding,
// response splitting through handler headers, responses that cannot be written.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/log_capture.hpp"
#include "support/run.hpp"
#include "support/served_app.hpp"
#include "tempest/http/app.hpp"
#include "tempest/http/metrics.hpp"

namespace asio = boost::asio;
namespace th = tempest::http;
using namespace std::chrono_literals;
using tempest::test::Clock;
using tempest::test::http_get;
using tempest::test::ms_since;
using tempest::test::raw_http;
using tempest::test::Served;

namespace {

int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++n;
  return n;
}

// /echo answers its body; /smuggled counts the requests that reached it.
struct EchoApp {
  explicit EchoApp(th::ServerOptions o = {}) : served(std::move(o)) {
    served.app.router()
        .post("/echo",
              [](th::Request& r) -> asio::awaitable<th::Response> {
                co_return th::Response::text(200, r.body);
              })
        .get("/smuggled", [this](th::Request&) -> asio::awaitable<th::Response> {
          ++smuggled;
          co_return th::Response::text(200, "smuggled");
        });
    served.start();
  }
  Served served;
  std::atomic<int> smuggled{0};
};

}  // namespace

// RFC 9112 6.3: a request whose Transfer-Encoding does not end in chunked has no knowable length;
// a server that guessed one would read the rest as the next request. Each variant carries a
// second request in its body on a keep-alive connection: it is answered 400 (501 for a coding
// this server does not implement before the chunked one) and the connection closed, and the
// second request never runs.
TEST(HttpHostile, TransferEncodingOtherThanChunkedIsRefusedAndNothingIsSmuggled) {
  th::ServerOptions o;
  o.idle_timeout = 300ms;  // the last connection, kept alive, closes soon after its answers
  EchoApp a(o);
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
  struct Case {
    std::string headers;
    int status;
  };
  const std::vector<Case> cases = {
      {"Transfer-Encoding: gzip\r\n", 400},
      {"Transfer-Encoding: identity\r\n", 400},
      {"Transfer-Encoding: chunked, identity\r\n", 400},
      {"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", 400},
      {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400},
      {"Transfer-Encoding: chunked, chunked\r\n", 400},
      {"Transfer-Encoding: xchunked\r\n", 400},
      {"Transfer-Encoding: chunked;q=1\r\n", 400},
      {"Transfer-Encoding: \"chunked\"\r\n", 400},
      {"Transfer-Encoding:\r\n", 400},
      {"Transfer-Encoding: gzip, chunked\r\n", 501},
      {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400},
      {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400},
      {"Transfer-Encoding: \r\n chunked\r\n", 400},  // obs-fold
  };
  for (const auto& c : cases) {
    const std::string body = "0\r\n\r\n" + smuggled;
    const auto r = raw_http(
        a.served.port(),
        "POST /echo HTTP/1.1\r\nHost: x\r\n" + c.headers + "\r\n" + body + smuggled, 1500ms, false);
    EXPECT_EQ(r.status, c.status) << c.headers << r.text;
    EXPECT_TRUE(r.closed) << c.headers;
    EXPECT_EQ(count_of(r.text, "HTTP/1.1 "), 1) << c.headers << r.text;
    EXPECT_EQ(r.text.find("smuggled\r\n"), std::string::npos) << c.headers << r.text;
  }
  EXPECT_EQ(a.smuggled.load(), 0);
  // Exactly "chunked" (any case) still frames a body, and the connection goes on.
  const auto ok = raw_http(a.served.port(),
                           "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
                           "5\r\nhello\r\n0\r\n\r\n" +
                               smuggled,
                           1500ms, false);
  EXPECT_EQ(ok.status, 200) << ok.text;
  EXPECT_EQ(count_of(ok.text, "HTTP/1.1 200"), 2) << ok.text;
  EXPECT_NE(ok.text.find("hello"), std::string::npos) << ok.text;
  EXPECT_EQ(a.smuggled.load(), 1);  // sent after the body, as its own request: served
}

// A header a handler set with CR, LF or NUL in its name or value would split the response (or
// let a client's input write headers of its own): the response is a 500 instead, nothing of the
// header is written, and the connection goes on serving.
TEST(HttpHostile, HandlerHeadersWithCrLfOrNulAreNeverWritten) {
  Served s;
  s.app.router().get("/header/{which}", [](th::Request& r) -> asio::awaitable<th::Response> {
    th::Response res = th::Response::text(200, "body");
    const std::string which = r.param("which");
    if (which == "value-crlf") res.headers["x-name"] = "a\r\nset-cookie: pwned=1";
    if (which == "value-lf") res.headers["x-name"] = "a\nset-cookie: pwned=1";
    if (which == "value-nul") res.headers["x-name"] = std::string("a\0set-cookie: pwned=1", 21);
    if (which == "name-crlf") res.headers["set-cookie: pwned=1\r\nx"] = "1";
    if (which == "name-space") res.headers["x name"] = "1";
    if (which == "content-type") res.content_type = "text/plain\r\nset-cookie: pwned=1";
    if (which == "fine") res.headers["x-name"] = "a value, with: punctuation";
    co_return res;
  });
  s.start();
  for (const std::string which :
       {"value-crlf", "value-lf", "value-nul", "name-crlf", "name-space", "content-type"}) {
    const auto r = http_get(s.port(), "/header/" + which);
    EXPECT_EQ(r.status, 500) << which << r.text;
    EXPECT_EQ(r.text.find("pwned"), std::string::npos) << which << r.text;
  }
  const auto fine = http_get(s.port(), "/header/fine");
  EXPECT_EQ(fine.status, 200);
  EXPECT_NE(fine.text.find("x-name: a value, with: punctuation\r\n"), std::string::npos)
      << fine.text;
}

// A response the serializer refuses (a body on a 204 or 304) or that throws while it is built:
// the client gets a 500, the connection and in-flight counts are released (more such requests
// than max_connections still leave room), and shutdown does not wait for them.
TEST(HttpHostile, ResponsesThatCannotBeWrittenGive500AndReleaseTheirConnection) {
  th::ServerOptions o;
  o.max_connections = 2;
  o.shutdown_timeout = 5s;
  Served s(o);
  s.app.router()
      .get("/no-content-with-body",
           [](th::Request&) -> asio::awaitable<th::Response> {
             co_return th::Response::text(204, "a body a 204 cannot have");
           })
      .get("/not-modified-with-body",
           [](th::Request&) -> asio::awaitable<th::Response> {
             co_return th::Response::text(304, "a body a 304 cannot have");
           })
      .get("/huge-header",
           [](th::Request&) -> asio::awaitable<th::Response> {
             th::Response r = th::Response::text(200, "x");
             r.headers["x-huge"] = std::string(100'000, 'h');
             co_return r;
           })
      .get("/ok", [](th::Request&) -> asio::awaitable<th::Response> {
        co_return th::Response::text(200, "ok");
      });
  s.start();
  for (int i = 0; i < 5; ++i) {
    for (const std::string path : {"/no-content-with-body", "/not-modified-with-body"}) {
      const auto r = http_get(s.port(), path);
      EXPECT_EQ(r.status, 500) << path << r.text;
      EXPECT_EQ(r.text.find("cannot have"), std::string::npos) << r.text;
    }
    const auto big = http_get(s.port(), "/huge-header");
    EXPECT_EQ(big.status, 500) << big.text.substr(0, 200);  // over what a header may hold
  }
  EXPECT_EQ(http_get(s.port(), "/ok").status, 200);
  const auto t = Clock::now();
  s.stop();
  EXPECT_TRUE(s.finished);
  EXPECT_LT(ms_since(t), 2000.0);  // no connection left counted: no wait for the timeout
}

// Labels come from the route patterns, methods outside RFC 9110's nine count as "other", paths
// no route matches as "(unmatched)": 100,000 requests with random paths and method tokens leave
// /metrics with as many series as the first pass over every kind of request left it.
TEST(HttpHostile, RandomPathsAndMethodsLeaveTheMetricsBounded) {
  Served s;
  s.app.router().get("/users/{id}", [](th::Request&) -> asio::awaitable<th::Response> {
    co_return th::Response::text(200, "user");
  });
  s.app.include(th::make_metrics_router(s.app.metrics(), {}));
  s.start();
  std::mt19937 rng(11);
  const auto token = [&](std::size_t n) {
    static constexpr char chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
    std::string t;
    for (std::size_t i = 0; i < n; ++i)
      t += chars[rng() % (sizeof chars - 1)];
    return t;
  };
  // Requests on keep-alive connections, 1,000 a connection; the last closes it.
  const auto batch = [&](int n) {
    std::string wire;
    for (int i = 0; i < n; ++i) {
      std::string method, path;
      switch (rng() % 4) {
        case 0:  // a known route, a known method
          method = "GET", path = "/users/" + token(8);
          break;
        case 1:  // a known route, a method it lacks (405) or nobody knows
          method = rng() % 2 ? "DELETE" : token(6), path = "/users/" + token(8);
          break;
        default:  // nothing matches
          method = rng() % 2 ? "GET" : token(7), path = "/" + token(10) + "/" + token(5);
      }
      wire += method + " " + path + " HTTP/1.1\r\nHost: x\r\n" +
              (i + 1 == n ? "Connection: close\r\n" : "") + "\r\n";
    }
    const auto r = raw_http(s.port(), wire, 20s, false);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(count_of(r.text, "HTTP/1.1 "), n);
  };
  // Its size in series (lines): counts and sums grow digits, the set of series must not.
  const auto metrics_size = [&] { return count_of(http_get(s.port(), "/metrics").body(), "\n"); };
  batch(1000);
  (void)metrics_size();  // the /metrics route's own series
  const int before = metrics_size();
  for (int i = 0; i < 100; ++i)
    batch(1000);
  EXPECT_EQ(metrics_size(), before);
  const std::string text = http_get(s.port(), "/metrics").body();
  EXPECT_NE(text.find("route=\"/users/{id}\",method=\"other\",status=\"405\""), std::string::npos)
      << text;
  EXPECT_NE(text.find("route=\"(unmatched)\",method=\"other\",status=\"404\""), std::string::npos);
}

// A path is split on '/' as sent, then each segment is percent-decoded: "%2F" stays inside its
// segment, "//" and a trailing '/' are empty segments that no pattern segment matches (no
// silent folding into another route), and a segment decoding to NUL or to invalid UTF-8 is a
// 400, before any handler runs.
TEST(HttpHostile, PathsAreSplitBeforeDecodingAndBadSegmentsAre400) {
  Served s;
  s.app.router()
      .get("/files/{name}",
           [](th::Request& r) -> asio::awaitable<th::Response> {
             co_return th::Response::text(200, "file:" + r.param("name"));
           })
      .get("/a/b",
           [](th::Request&) -> asio::awaitable<th::Response> {
             co_return th::Response::text(200, "ab");
           })
      .get("/users/{id}/orders", [](th::Request& r) -> asio::awaitable<th::Response> {
        co_return th::Response::text(200, "orders:" + r.param("id"));
      });
  s.start();
  const auto get = [&](const std::string& target) { return http_get(s.port(), target); };
  EXPECT_EQ(get("/files/a%2Fb").body(), "file:a/b");
  EXPECT_EQ(get("/files/caf%C3%A9?x=1").body(), "file:caf\xC3\xA9");
  EXPECT_EQ(get("/%61/b").body(), "ab");
  EXPECT_EQ(get("/a/b").body(), "ab");
  for (const std::string folded : {"/a%2Fb", "/a//b", "//a/b", "/a/b/", "/users//orders"})
    EXPECT_EQ(get(folded).status, 404) << folded;
  for (const std::string bad : {"/files/%00", "/files/a%00b", "/files/%FF", "/files/%C3",
                                "/files/%ED%A0%80", "/files/%C0%AF", "/%FF/b"}) {
    const auto r = get(bad);
    EXPECT_EQ(r.status, 400) << bad << r.text;
    EXPECT_EQ(r.text.find("file:"), std::string::npos) << bad;
  }
  EXPECT_EQ(get("/users/u-1/orders").body(), "orders:u-1");
}

// Protocol details: a Date on every response; Expect: 100-continue answered before the body is
// read (another expectation: 417); an error answer is read by a client still sending its body
// (the server drains it before closing); 204 and 304 carry no Content-Length; repeated header
// fields and query parameters all reach the handler.
TEST(HttpHostile, ProtocolDetails) {
  th::ServerOptions o;
  o.max_body_bytes = 100;
  Served s(o);
  s.app.router()
      .post("/echo",
            [](th::Request& r) -> asio::awaitable<th::Response> {
              co_return th::Response::text(200, "echo:" + r.body);
            })
      .get("/repeated",
           [](th::Request& r) -> asio::awaitable<th::Response> {
             std::string qs;
             for (const auto& v : r.query_values("q"))
               qs += "[" + v + "]";
             co_return th::Response::text(
                 200, r.headers["x-a"] + "|" + r.headers["cookie"] + "|" + qs + "|" + r.query["q"]);
           })
      .get("/status/{code}", [](th::Request& r) -> asio::awaitable<th::Response> {
        co_return th::Response::text(static_cast<unsigned>(std::stoi(r.param("code"))), "");
      });
  s.start();
  const std::regex date(
      R"(\r\nDate: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n)");
  EXPECT_TRUE(std::regex_search(http_get(s.port(), "/status/200").text, date));
  EXPECT_TRUE(std::regex_search(http_get(s.port(), "/nowhere").text, date));
  {
    tempest::test::RawConnection c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_EQ(c.read_until("\r\n\r\n", 2000ms), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send("hello");
    EXPECT_NE(c.read_until("echo:hello", 2000ms).find("HTTP/1.1 200 OK"), std::string::npos);
  }
  {
    tempest::test::RawConnection c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\n");
    EXPECT_TRUE(c.read_until("never", 2000ms).starts_with("HTTP/1.1 417"));
    EXPECT_TRUE(c.closed());
  }
  {  // over the limit before any 100 Continue: 413 at once
    tempest::test::RawConnection c(s.port());
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_TRUE(c.read_until("never", 2000ms).starts_with("HTTP/1.1 413")) << c.read_until("");
  }
  // A client that sends its whole 200 KB body anyway still reads its 413.
  for (int i = 0; i < 5; ++i) {
    const auto r = raw_http(s.port(),
                            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" +
                                std::string(200000, 'b'),
                            3000ms, false);
    EXPECT_EQ(r.status, 413) << r.text;
  }
  for (const std::string code : {"204", "304"}) {
    const auto r = raw_http(s.port(), "GET /status/" + code + " HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.status, std::stoi(code));
    EXPECT_EQ(r.text.find("Content-Length"), std::string::npos) << r.text;
  }
  const auto r = raw_http(s.port(),
                          "GET /repeated?q=1&q=two&q=3 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n"
                          "X-A: 2\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.body(), "1, 2|a=1; b=2|[1][two][3]|3");
}

// One address holding 1,100 slow connections (more than max_connections, 1,024) gets at most
// max_connections_per_address (768) of them: a health probe from another address (127.0.0.2)
// still gets its 200, while a new connection from the crowded address is refused.
TEST(HttpHostile, OneAddressCannotTakeEveryConnection) {
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  const rlim_t saved = files.rlim_cur;
  if (files.rlim_cur < 4096) {  // the test's 1,100 ends plus the server's 768
    files.rlim_cur = std::min<rlim_t>(4096, files.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  ASSERT_GE(files.rlim_cur, 2500u) << "the hard limit on open files is too low for this test";
  Served s;
  s.app.router().get("/ok", [](th::Request&) -> asio::awaitable<th::Response> {
    co_return th::Response::text(200, "ok");
  });
  s.start();
  {
    std::vector<std::unique_ptr<tempest::test::RawConnection>> slow;
    for (int i = 0; i < 1100; ++i) {
      slow.push_back(std::make_unique<tempest::test::RawConnection>(s.port()));
      slow.back()->send("GET /ok HTTP/1.1\r\nHo");
    }
    std::this_thread::sleep_for(300ms);  // the server has accepted (or refused) them all
    tempest::test::RawConnection probe(s.port(), "127.0.0.2");
    probe.send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(probe.read_until("\r\n\r\nok", 3000ms).starts_with("HTTP/1.1 200")) << "probe";
    tempest::test::RawConnection crowded(s.port());
    crowded.send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string got = crowded.read_until("\r\n\r\nok", 3000ms);
    EXPECT_TRUE(got.empty() && crowded.closed()) << got;
    int refused = 0;
    for (auto& c : slow) {
      c->read_until("never", 5ms);
      refused += c->closed();
    }
    EXPECT_EQ(refused, 1100 - 768);
  }
  // The crowd gone, the address is welcome again.
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    status = http_get(s.port(), "/ok").status;
    if (status != 200) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(status, 200);
  s.stop();
  files.rlim_cur = saved;
  ::setrlimit(RLIMIT_NOFILE, &files);
}

// Out of file descriptors, accept() fails with EMFILE while a connection waits in the backlog:
// the server backs off (10 ms doubling to 1 s) instead of spinning on the error, says so once,
// and accepts the connection once descriptors are free again.
TEST(HttpHostile, AcceptOutOfFileDescriptorsBacksOffAndRecovers) {
  tempest::test::LogCapture log("tempest.http");
  Served s;
  s.app.router().get("/ok", [](th::Request&) -> asio::awaitable<th::Response> {
    co_return th::Response::text(200, "ok");
  });
  s.start();
  // The log is read only with descriptors to spare: UBSan's check of a virtual call opens a pipe
  // (a false "invalid vptr" report without one); reading it once before warms that check too.
  EXPECT_EQ(log.count("accept failed"), 0u);
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  const rlim_t saved = files.rlim_cur;
  const auto open_now = std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                      std::filesystem::directory_iterator());
  files.rlim_cur = static_cast<rlim_t>(open_now) + 16;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &files), 0);
  std::vector<int> spare;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY)) >= 0;)
    spare.push_back(fd);
  ASSERT_EQ(errno, EMFILE);
  ::close(spare.back());  // room for the client's socket, none for the server's end of it
  spare.pop_back();
  auto client = std::make_unique<tempest::test::RawConnection>(s.port());
  client->send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  std::this_thread::sleep_for(1500ms);
  ::getrusage(RUSAGE_SELF, &after);
  const auto cpu_ms = [](const rusage& u) {
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000.0 +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000.0;
  };
  // A loop retrying accept() at once would burn the whole 1.5 s; backing off costs a few ms.
  EXPECT_LT(cpu_ms(after) - cpu_ms(before), 500.0);

  for (const int fd : spare)
    ::close(fd);
  files.rlim_cur = saved;
  ::setrlimit(RLIMIT_NOFILE, &files);
  EXPECT_EQ(log.count("accept failed"), 1u);
  const std::string got = client->read_until("\r\n\r\nok", 3000ms);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200")) << got;
  EXPECT_EQ(log.count("accepting again after"), 1u);
  EXPECT_EQ(http_get(s.port(), "/ok").status, 200);
}
