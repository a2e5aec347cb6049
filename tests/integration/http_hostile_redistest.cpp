// tempest::http against hostile or careless input: request smuggling through Transfer-Encoding,
// response splitting through handler headers, responses that cannot be written.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "support/http_client.hpp"
#include "support/run.hpp"
#include "support/served_app.hpp"
#include "tempest/http/app.hpp"

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
