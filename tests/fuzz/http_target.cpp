#include "fuzz/http_target.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "support/served_app.hpp"
#include "tempest/http/app.hpp"
#include "tempest/log.hpp"

namespace tempest::fuzz {

namespace asio = boost::asio;
namespace th = tempest::http;
using Clock = std::chrono::steady_clock;

namespace {

// Bytes for a failure message: printable ASCII as is, the rest as \xNN, at most `limit` of them.
std::string shown(std::string_view s, std::size_t limit = 400) {
  std::string out;
  for (const char c : s.substr(0, limit)) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u >= 0x7F || c == '\\') {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[u >> 4];
      out += digits[u & 15];
    } else {
      out += c;
    }
  }
  if (s.size() > limit) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(c); });
}

// A control character other than HTAB (CR, LF and NUL among them).
bool is_ctl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7F;
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool has_token(std::string_view list, std::string_view token) {
  for (;;) {
    const auto comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) return false;
    list.remove_prefix(comma + 1);
  }
}

// One response's status line and header, as far as the checks need them.
struct Head {
  unsigned status = 0;
  char minor = '1';
  std::optional<std::size_t> content_length;
  bool closes = false;
  std::size_t body_at = 0;  // where the header ended
};

enum class Parse { ok, incomplete, bad };

// The status line and header of the response at `at`.
Parse parse_head(std::string_view wire, std::size_t at, Head& head, std::string& why) {
  const auto fail = [&](std::string what) {
    why = std::move(what) + " at byte " + std::to_string(at);
    return Parse::bad;
  };
  auto eol = wire.find("\r\n", at);
  if (eol == std::string_view::npos) {
    // Not all here: what is must still be the start of a status line.
    const std::string_view part = wire.substr(at, 9);
    if (std::string_view("HTTP/1.1 ").substr(0, part.size()) != part &&
        std::string_view("HTTP/1.0 ").substr(0, part.size()) != part)
      return fail("a response does not start with \"HTTP/1.x \": \"" + shown(part) + "\"");
    return Parse::incomplete;
  }
  const std::string_view line = wire.substr(at, eol - at);
  if (line.size() < 13 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ' || line[12] != ' ')
    return fail("malformed status line \"" + shown(line) + "\"");
  head.minor = line[7];
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return fail("malformed status \"" + shown(line) + "\"");
    head.status = head.status * 10 + static_cast<unsigned>(line[i] - '0');
  }
  if (head.status < 100) return fail("status below 100: \"" + shown(line) + "\"");
  if (std::any_of(line.begin() + 13, line.end(), is_ctl))
    return fail("control character in the reason phrase \"" + shown(line) + "\"");
  bool date = false;
  std::string_view connection;
  for (std::size_t from = eol + 2;;) {
    eol = wire.find("\r\n", from);
    if (eol == std::string_view::npos) return Parse::incomplete;
    const std::string_view field = wire.substr(from, eol - from);
    from = eol + 2;
    if (field.empty()) {
      head.body_at = from;
      break;
    }
    const auto colon = field.find(':');
    if (colon == std::string_view::npos || !is_token(field.substr(0, colon)))
      return fail("malformed header line \"" + shown(field) + "\"");
    const std::string_view name = field.substr(0, colon);
    const std::string_view value = trim(field.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), is_ctl))
      return fail("control character in header line \"" + shown(field) + "\"");
    if (iequals(name, "content-length")) {
      if (head.content_length) return fail("a second Content-Length");
      if (value.empty() || value.size() > 9 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return fail("malformed Content-Length \"" + shown(value) + "\"");
      std::size_t n = 0;
      for (const char c : value)
        n = n * 10 + static_cast<std::size_t>(c - '0');
      head.content_length = n;
    } else if (iequals(name, "transfer-encoding")) {
      return fail("a Transfer-Encoding (\"" + shown(value) + "\") in a response");
    } else if (iequals(name, "date")) {
      date = true;
    } else if (iequals(name, "connection")) {
      if (!connection.empty()) return fail("a second Connection field");
      connection = value;
    }
  }
  const bool interim = head.status < 200;
  if (!interim && !date) return fail("a final response without Date");
  if ((interim || head.status == 204 || head.status == 304) && head.content_length)
    return fail("a Content-Length on a " + std::to_string(head.status));
  if (!interim && head.status != 204 && head.status != 304 && !head.content_length)
    return fail("a " + std::to_string(head.status) + " without Content-Length");
  head.closes = !interim && (head.minor == '1' ? has_token(connection, "close")
                                               : !has_token(connection, "keep-alive"));
  return Parse::ok;
}

struct WireParser {
  std::string_view wire;
  const WireRules& rules;
  std::set<std::pair<std::size_t, std::size_t>> failed;  // (position, 500s so far) known bad
  std::string why;                                       // the furthest failure
  std::size_t why_at = 0;

  bool note(std::size_t at, std::string what) {
    if (why.empty() || at >= why_at) {
      why = std::move(what);
      why_at = at;
    }
    return false;
  }

  // Whether wire[at..] is a sequence of responses, given `errors` 500s before it.
  bool rest(std::size_t at, std::size_t errors) {
    if (at == wire.size()) return true;
    if (failed.count({at, errors}) != 0) return false;
    const bool ok = one(at, errors);
    if (!ok) failed.insert({at, errors});
    return ok;
  }

  bool one(std::size_t at, std::size_t errors) {
    Head head;
    std::string what;
    switch (parse_head(wire, at, head, what)) {
      case Parse::bad:
        return note(at, what);
      case Parse::incomplete:
        return rules.cut_short_ok || note(at, "a response cut short at byte " + std::to_string(at) +
                                                  " of " + std::to_string(wire.size()));
      case Parse::ok:
        break;
    }
    if (head.status >= 500) {
      if (head.status == 500) ++errors;
      if ((head.status != 500 && head.status != 501) || errors > rules.refusals)
        return note(at, "status " + std::to_string(head.status) + " at byte " + std::to_string(at) +
                            " (" + std::to_string(rules.refusals) + " refusal(s) expected)");
    }
    const std::size_t length = head.content_length.value_or(0);
    // A HEAD's response: the header only. Tried second, as a GET's body could look like a
    // response too.
    std::size_t ends[2] = {head.body_at + length, head.body_at};
    const std::size_t readings = rules.head_possible && length > 0 ? 2 : 1;
    for (std::size_t i = 0; i < readings; ++i) {
      const std::size_t end = ends[i];
      if (end > wire.size()) {
        if (rules.cut_short_ok) return true;
        note(at, "a body cut short: Content-Length " + std::to_string(length) + " at byte " +
                     std::to_string(at) + ", " + std::to_string(wire.size() - head.body_at) +
                     " byte(s) followed");
        continue;
      }
      if (head.closes && end != wire.size()) {
        note(end, std::to_string(wire.size() - end) + " byte(s) after the response at byte " +
                      std::to_string(at) + ", which closes the connection");
        continue;
      }
      if (rest(end, errors)) return true;
    }
    return false;
  }
};

struct Received {
  std::string bytes;
  bool closed = false;  // the server closed (EOF)
  bool reset = false;   // the connection was reset
  std::string error;    // connect() failed, or the deadline passed
};

// One connection: `bytes` written (the replies read meanwhile), the sending side shut down, then
// everything read until the server closes or `timeout` passes.
Received exchange(std::uint16_t port, std::string_view bytes, std::chrono::milliseconds timeout) {
  Received r;
  const auto deadline = Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r.error = std::string("socket(): ") + std::strerror(errno);
    return r;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Non-blocking from the start: a signal (libFuzzer's timer) cannot interrupt the connect.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int failure = errno;
    if (failure == EINPROGRESS || failure == EINTR) {
      pollfd p{fd, POLLOUT, 0};
      int ready;
      do {
        ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
      } while (ready < 0 && errno == EINTR);
      socklen_t size = sizeof failure;
      if (ready <= 0)
        failure = ready == 0 ? ETIMEDOUT : errno;
      else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &size) != 0)
        failure = errno;
    }
    if (failure != 0) {
      r.error = std::string("connect(): ") + std::strerror(failure);
      ::close(fd);
      return r;
    }
  }
  std::size_t sent = 0;
  bool sending = true;
  if (bytes.empty()) {
    ::shutdown(fd, SHUT_WR);
    sending = false;
  }
  char buffer[16384];
  while (!r.closed && !r.reset) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      r.error = "the server neither closed nor answered within " + std::to_string(timeout.count()) +
                " ms (" + std::to_string(sent) + " of " + std::to_string(bytes.size()) +
                " byte(s) sent)";
      break;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, static_cast<int>(left)) < 0) {
      if (errno == EINTR) continue;
      r.error = std::string("poll(): ") + std::strerror(errno);
      break;
    }
    if (sending && (p.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        if (sent == bytes.size()) {
          ::shutdown(fd, SHUT_WR);
          sending = false;
        }
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        sending = false;  // the server closed before reading it all (EPIPE, ECONNRESET)
      }
    }
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
      const auto n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n > 0) {
        r.bytes.append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0) {
        r.closed = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        r.reset = true;
      }
    }
  }
  ::close(fd);
  return r;
}

constexpr std::chrono::milliseconds kDeadline{2000};

}  // namespace

std::string check_wire(std::string_view wire, const WireRules& rules) {
  WireParser parser{wire, rules, {}, {}, 0};
  if (parser.rest(0, 0)) return {};
  return parser.why.empty() ? std::string("not a sequence of responses") : parser.why;
}

struct HttpTarget::State {
  explicit State(th::ServerOptions options) : served(std::move(options)) {}
  tempest::test::Served served;
  std::atomic<std::size_t> refusals{0};  // responses the server must refuse, handed to it so far
  unsigned probe_every = 1;
  unsigned runs = 0;
  std::string received;
  std::optional<spdlog::level::level_enum> log_level;  // tempest.http's, restored at the end
};

namespace {

th::ServerOptions options() {
  th::ServerOptions o;
  o.port = 0;
  o.max_header_bytes = 1024;
  o.max_body_bytes = 4096;
  o.read_timeout = std::chrono::milliseconds(200);
  o.idle_timeout = std::chrono::milliseconds(200);
  o.max_connections = 8;
  o.max_connections_per_address = 4;
  o.shutdown_timeout = std::chrono::milliseconds(1000);
  return o;
}

}  // namespace

HttpTarget::HttpTarget(unsigned probe_every) : state_(std::make_unique<State>(options())) {
  state_->probe_every = std::max(probe_every, 1U);
  // Handlers' refused headers are logged as errors: quiet while the fuzzer makes thousands.
  auto log = tempest::logger("tempest.http");
  state_->log_level = log->level();
  log->set_level(spdlog::level::off);
  auto& router = state_->served.app.router();
  router.get("/items/{id}", [](th::Request& r) -> asio::awaitable<th::Response> {
    co_return th::Response::text(200, r.param("id"));
  });
  router.del("/items/{id}", [](th::Request&) -> asio::awaitable<th::Response> {
    th::Response r;
    r.status = 204;
    co_return r;
  });
  router.post("/echo", [](th::Request& r) -> asio::awaitable<th::Response> {
    co_return th::Response::text(200, r.body, "application/octet-stream");
  });
  // Response headers from the query, as a careless handler would set them: the server must
  // refuse (500) the ones that would split the response. Counted here, so the check knows how
  // many 500s to expect.
  router.get("/headers", [state = state_.get()](th::Request& r) -> asio::awaitable<th::Response> {
    th::Response res = th::Response::text(200, "headers");
    for (const auto& [name, value] : r.query_items)
      res.headers[name] = value;
    const bool refused = std::any_of(res.headers.begin(), res.headers.end(), [](const auto& h) {
      return !is_token(h.first) || std::any_of(h.second.begin(), h.second.end(), is_ctl);
    });
    if (refused) ++state->refusals;
    co_return res;
  });
  state_->served.start();
}

HttpTarget::~HttpTarget() {
  state_->served.stop();
  if (state_->log_level) tempest::logger("tempest.http")->set_level(*state_->log_level);
}

const std::string& HttpTarget::received() const {
  return state_->received;
}

std::uint16_t HttpTarget::port() const {
  return state_->served.port();
}

std::string HttpTarget::run(std::string_view bytes) {
  if (!state_->served.app.accepting()) return "the server is not accepting connections";
  const std::size_t refusals_before = state_->refusals.load();
  Received got = exchange(port(), bytes, kDeadline);
  state_->received = std::move(got.bytes);
  if (!got.error.empty()) return got.error + "; received \"" + shown(state_->received) + "\"";
  WireRules rules;
  rules.head_possible = bytes.find("HEAD") != std::string_view::npos;
  rules.refusals = state_->refusals.load() - refusals_before;
  rules.cut_short_ok = got.reset;
  if (std::string why = check_wire(state_->received, rules); !why.empty())
    return why + "; received \"" + shown(state_->received, 1200) + "\"";
  if (++state_->runs % state_->probe_every == 0) {
    static constexpr std::string_view probe =
        "GET /items/probe HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n";
    const Received answer = exchange(port(), probe, kDeadline);
    if (!answer.error.empty() || !answer.closed || answer.bytes.substr(0, 13) != "HTTP/1.1 200 " ||
        !answer.bytes.ends_with("\r\n\r\nprobe") || !check_wire(answer.bytes, {}).empty())
      return "after it, a well-formed GET was not answered 200: " +
             (answer.error.empty() ? std::string() : answer.error + "; ") + "received \"" +
             shown(answer.bytes) + "\"";
  }
  return {};
}

}  // namespace tempest::fuzz
