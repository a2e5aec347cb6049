// The HTTP fuzzer's corpus (tests/fuzz/seeds/fuzz_http) replayed in the normal build, through the
// same target as fuzz_http (tests/fuzz/http_target.hpp): each file on a fresh connection to a
// served App, what came back checked, and a fresh GET answered after each. No Redis needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/http_target.hpp"

namespace fs = std::filesystem;
using namespace std::string_literals;
using tempest::fuzz::check_wire;
using tempest::fuzz::HttpTarget;
using tempest::fuzz::WireRules;

namespace {

const fs::path kSeeds = fs::path(TEMPEST_SOURCE_DIR) / "tests/fuzz/seeds/fuzz_http";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string seed(const std::string& name) {
  return read_file(kSeeds / name);
}

int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++n;
  return n;
}

const std::string kDate = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

}  // namespace

TEST(HttpCorpus, EverySeedGoesThroughWithTheInvariantsHolding) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kSeeds))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 15U) << "the corpus at " << kSeeds << " is missing or thin";
  HttpTarget target;  // a probe GET after every file
  for (const auto& file : files)
    EXPECT_EQ(target.run(read_file(file)), "") << file.filename();
}

// A few seeds' answers in detail: the checks above are about form; these say the corpus reaches
// what it was written for.
TEST(HttpCorpus, SeedsReachWhatTheyAreFor) {
  HttpTarget target;
  ASSERT_EQ(target.run(seed("pipelined_two")), "");
  EXPECT_EQ(count_of(target.received(), "HTTP/1.1 200 OK\r\n"), 3) << target.received();
  EXPECT_TRUE(target.received().ends_with("\r\n\r\n2")) << target.received();

  // Three handlers' headers that would split the response (CR LF, a space in the name, NUL):
  // three 500s, and no injected line.
  ASSERT_EQ(target.run(seed("headers_split_attempt")), "");
  EXPECT_EQ(count_of(target.received(), "HTTP/1.1 500 "), 3) << target.received();
  EXPECT_EQ(target.received().find("Injected"), std::string::npos) << target.received();

  // Content-Length beside Transfer-Encoding: a 400, and the request in the body never runs.
  ASSERT_EQ(target.run(seed("cl_and_te")), "");
  EXPECT_EQ(count_of(target.received(), "HTTP/1.1 "), 1) << target.received();
  EXPECT_TRUE(target.received().starts_with("HTTP/1.1 400 ")) << target.received();

  ASSERT_EQ(target.run(seed("expect_continue")), "");
  EXPECT_TRUE(target.received().starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"))
      << target.received();
  EXPECT_TRUE(target.received().ends_with("\r\n\r\nbody")) << target.received();

  ASSERT_EQ(target.run(seed("oversized_header")), "");
  EXPECT_TRUE(target.received().starts_with("HTTP/1.1 431 ")) << target.received();
}

// The checks themselves: each kind of malformed output is caught.
TEST(HttpCorpus, TheWireChecksCatchMalformedResponses) {
  const std::string ok = "HTTP/1.1 200 OK\r\n" + kDate + "Content-Length: 2\r\n\r\nhi";
  EXPECT_EQ(check_wire("", {}), "");
  EXPECT_EQ(check_wire(ok, {}), "");
  EXPECT_EQ(check_wire(ok + ok, {}), "");
  EXPECT_EQ(check_wire("HTTP/1.1 100 Continue\r\n\r\n" + ok, {}), "");
  EXPECT_EQ(check_wire("HTTP/1.1 204 No Content\r\n" + kDate + "\r\n" + ok, {}), "");

  const auto fails = [](const std::string& wire, WireRules rules = {}) {
    return !check_wire(wire, rules).empty();
  };
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\n" + kDate + "Content-Length: 2\r\n\r\nhi"));
  EXPECT_TRUE(fails("HTTP/2 200 OK\r\n" + kDate + "Content-Length: 2\r\n\r\nhi"));
  EXPECT_TRUE(fails("HTTP/1.1 20 OK\r\n" + kDate + "Content-Length: 2\r\n\r\nhi"));
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"));  // no Date
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\r\n" + kDate + "\r\nhi"));          // no Content-Length
  EXPECT_TRUE(fails(ok + "x"));                                          // stray bytes
  EXPECT_TRUE(fails(ok.substr(0, ok.size() - 1)));                       // body cut short
  EXPECT_TRUE(fails(ok.substr(0, 20)));                                  // header cut short
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\r\n" + kDate + "Content-Length: 2\r\nX: a\rb\r\n\r\nhi"));
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\r\n" + kDate + "Content-Length: 2\r\nX: a\0b\r\n\r\nhi"s));
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\r\n" + kDate + "Content-Length: 2\r\nX y: a\r\n\r\nhi"));
  EXPECT_TRUE(
      fails("HTTP/1.1 200 OK\r\n" + kDate + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi"));
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\r\n" + kDate +
                    "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi"));
  EXPECT_TRUE(fails("HTTP/1.1 204 No Content\r\n" + kDate + "Content-Length: 0\r\n\r\n"));
  EXPECT_TRUE(fails("HTTP/1.1 200 OK\r\n" + kDate +
                    "Connection: close\r\nContent-Length: 2\r\n\r\nhi" +
                    ok));  // a response after the one that closes
  EXPECT_TRUE(fails("HTTP/1.0 200 OK\r\n" + kDate + "Content-Length: 2\r\n\r\nhi" + ok));

  // A HEAD's response has no body: accepted only when the input could hold a HEAD.
  const std::string head = "HTTP/1.1 200 OK\r\n" + kDate + "Content-Length: 5\r\n\r\n";
  EXPECT_TRUE(fails(head + ok));
  WireRules head_rules;
  head_rules.head_possible = true;
  EXPECT_EQ(check_wire(head + ok, head_rules), "");
  EXPECT_EQ(check_wire(head, head_rules), "");

  // 5xx: a 500 only for each refusal expected, a 501 always, nothing else.
  const std::string e500 =
      "HTTP/1.1 500 Internal Server Error\r\n" + kDate + "Content-Length: 2\r\n\r\n{}";
  EXPECT_TRUE(fails(e500));
  WireRules one_refusal;
  one_refusal.refusals = 1;
  EXPECT_EQ(check_wire(e500, one_refusal), "");
  EXPECT_TRUE(fails(e500 + e500, one_refusal));
  EXPECT_EQ(
      check_wire("HTTP/1.1 501 Not Implemented\r\n" + kDate + "Content-Length: 2\r\n\r\n{}", {}),
      "");
  EXPECT_TRUE(
      fails("HTTP/1.1 503 Service Unavailable\r\n" + kDate + "Content-Length: 2\r\n\r\n{}"));

  // After a reset, the last response may be cut short.
  WireRules reset;
  reset.cut_short_ok = true;
  EXPECT_EQ(check_wire(ok + ok.substr(0, 30), reset), "");
}
