// Raw bytes through tempest::http's request path: an App with a few routes, served on 127.0.0.1
// (a free port, its own thread, short timeouts, small limits), one fresh connection per input;
// what the server sent back is then checked. Shared by the libFuzzer target fuzz_http (which
// aborts on a failure) and the test that replays its corpus in the normal build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tempest::fuzz {

// What may be in the bytes a connection received, beyond well-formed responses.
struct WireRules {
  // The input could hold a HEAD request: a response may then omit the body its Content-Length
  // announces (which one answered the HEAD is not known here, so both readings are tried).
  bool head_possible = false;
  // How many 500s are expected: the responses whose handler set a header the server must refuse
  // (a name that is not a token, a value with a control character). Any other status >= 500 but
  // 501 (a transfer coding the server does not implement) is a failure.
  std::size_t refusals = 0;
  // The connection ended in a reset rather than a close: the last response may be cut short.
  bool cut_short_ok = false;
};

// "" when `wire` is a sequence of well-formed HTTP/1.x responses under `rules`: a status line
// "HTTP/1.x NNN reason", header lines "name: value" (a token name; no CR, LF, NUL or other
// control character but HTAB in the value), a Date on every final response, a Content-Length
// matching the body that follows (no Content-Length and no body for 1xx, 204 and 304; no body
// after a HEAD), no Transfer-Encoding, and nothing after a response that closes the connection.
// Otherwise what is wrong, and where.
std::string check_wire(std::string_view wire, const WireRules& rules);

class HttpTarget {
 public:
  // probe_every: every this many inputs, a fresh well-formed GET must still be answered 200 (1:
  // after every input). The server's connection limits are small (8, 4 per address), so a
  // connection whose count leaked shows within a few probes.
  explicit HttpTarget(unsigned probe_every = 1);
  ~HttpTarget();
  HttpTarget(const HttpTarget&) = delete;
  HttpTarget& operator=(const HttpTarget&) = delete;

  // Opens a connection, writes `bytes`, shuts down its sending side, reads until the server
  // closes (2 s at most), checks what came back (check_wire) and, when due, the probe. "" when
  // every invariant holds, else a description of the failure.
  std::string run(std::string_view bytes);

  // What the server sent on the last run()'s connection.
  const std::string& received() const;
  std::uint16_t port() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tempest::fuzz
