#include "http_load.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/redis_server.hpp"

namespace tempest::chaos {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

long long ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<milliseconds>(b - a).count();
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// One keep-alive HTTP/1.1 connection, opened again when the server closed it.
class Conn {
 public:
  struct Answer {
    int status = 0;  // 0: no answer
    std::string body;
    std::string failure;  // why there was no answer
  };

  explicit Conn(std::uint16_t port) : port_(port) {}
  ~Conn() { close(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  Answer request(const std::string& method, const std::string& target, const std::string& body,
                 milliseconds timeout) {
    const bool reused = fd_ >= 0;
    Answer a = once(method, target, body, timeout);
    // A kept-alive connection the server had closed meanwhile: nothing was read, so nothing was
    // done; a client sends a GET again on a new connection.
    if (a.status == 0 && reused && a.failure == "closed before the response" && method == "GET")
      a = once(method, target, body, timeout);
    return a;
  }

 private:
  Answer once(const std::string& method, const std::string& target, const std::string& body,
              milliseconds timeout) {
    Answer a;
    const auto until = Clock::now() + timeout;
    if (fd_ < 0 && !open()) {
      a.failure = "connect failed";
      return a;
    }
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (method == "POST")
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n";
    req += "\r\n" + body;
    for (std::size_t sent = 0; sent < req.size();) {
      const auto n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        close();
        a.failure = "closed before the response";
        return a;
      }
      sent += static_cast<std::size_t>(n);
    }
    std::string in;
    std::size_t header_end = std::string::npos, length = 0;
    bool close_after = false;
    char buf[16384];
    for (;;) {
      if (header_end == std::string::npos) {
        header_end = in.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          std::string head = in.substr(0, header_end);
          for (auto& c : head)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          const auto cl = head.find("content-length:");
          length = cl == std::string::npos ? 0 : std::stoul(head.substr(cl + 15));
          close_after = head.find("connection: close") != std::string::npos;
          if (in.rfind("HTTP/1.", 0) == 0 && in.size() > 12) a.status = std::atoi(in.c_str() + 9);
        }
      }
      if (header_end != std::string::npos && in.size() >= header_end + 4 + length) break;
      const long long left = ms_between(Clock::now(), until);
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
        close();
        a.status = 0;
        a.failure = "no response within " + std::to_string(timeout.count()) + " ms";
        return a;
      }
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        close();
        a.status = 0;
        a.failure = in.empty() ? "closed before the response" : "closed mid-response";
        return a;
      }
      in.append(buf, static_cast<std::size_t>(n));
    }
    a.body = in.substr(header_end + 4, length);
    if (a.status == 0) a.failure = "not an HTTP response";
    if (close_after) close();
    return a;
  }

  bool open() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close();
      return false;
    }
    return true;
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::uint16_t port_;
  int fd_ = -1;
};

// The kinds that make Redis unreachable for as long as they last: readiness must say so.
bool unreachable(const std::string& kind) {
  return kind == "sigkill" || kind == "sigstop" || kind == "black_hole" || kind == "debug_sleep";
}

}  // namespace

struct HttpLoad::State {
  Options o;
  std::uint16_t port = 0;
  pid_t pid = -1;
  int exit_status = -1;
  std::atomic<bool> running{false};
  std::vector<std::thread> threads;

  mutable std::mutex m;  // guards what follows
  long long requests = 0, no_answer = 0, bad_status = 0, wrong = 0, stale = 0;
  long long posts_acked = 0, posts_refused = 0;
  long long max_ms = 0;
  std::map<int, long long> statuses;
  std::vector<std::string> samples;
  struct Probe {
    Clock::time_point begin, end;
    int status;
  };
  std::vector<Probe> probes;

  void note(const std::string& what) {
    if (samples.size() < 5) samples.push_back(what);
  }

  // One request's outcome; `check` says whether a 200's body is right (empty: it is).
  void count(const Conn::Answer& a, const std::string& what, Clock::time_point began,
             bool must_be_200, const std::string& wrong_why) {
    std::lock_guard lock(m);
    ++requests;
    max_ms = std::max(max_ms, ms_between(began, Clock::now()));
    ++statuses[a.status];
    if (a.status == 0) {
      ++no_answer;
      note(what + ": " + a.failure);
    } else if (must_be_200 && a.status != 200) {
      ++bad_status;
      note(what + " -> " + std::to_string(a.status) + " " + a.body.substr(0, 200));
    } else if (!wrong_why.empty()) {
      ++wrong;
      note(what + ": " + wrong_why);
    }
  }
};

HttpLoad::HttpLoad(Options o) : s_(std::make_unique<State>()) {
  s_->o = std::move(o);
  s_->port = test::free_port();
  ::setenv("REDIS_URL", s_->o.redis_url.c_str(), 1);
  ::setenv("PORT", std::to_string(s_->port).c_str(), 1);
  ::setenv("HOST", "127.0.0.1", 1);
  ::setenv("THREADS", "1", 1);  // two cores: the loads and the servers need the rest
  s_->pid = test::spawn({s_->o.service});
  const auto until = Clock::now() + 30s;
  for (;;) {
    Conn c(s_->port);
    if (c.request("GET", "/health/liveness", "", 1s).status == 200) break;
    int status = 0;
    if (::waitpid(s_->pid, &status, WNOHANG) == s_->pid) {
      s_->pid = -1;
      throw std::runtime_error(s_->o.service + " exited at start (status " +
                               std::to_string(status) + ")");
    }
    if (Clock::now() > until)
      throw std::runtime_error(s_->o.service + " did not answer /health/liveness in 30 s");
    std::this_thread::sleep_for(50ms);
  }
}

HttpLoad::~HttpLoad() {
  stop();
}

void HttpLoad::start() {
  State& s = *s_;
  s.running = true;
  for (int c = 0; c < s.o.connections; ++c) {
    s.threads.emplace_back([&s, c] {
      // Readers: users 1000..1063, never written, so a profile and its orders are known exactly.
      Conn conn(s.port);
      std::mt19937_64 r(static_cast<std::uint64_t>(c) + 77);
      for (std::uint64_t n = 0; s.running; ++n) {
        const std::string id = std::to_string(1000 + r() % 64);
        const bool orders = n % 2 == 1;
        const std::string target = "/users/" + id + (orders ? "/orders" : "");
        const auto began = Clock::now();
        const auto a = conn.request("GET", target, "", 10s);
        std::string why;
        if (a.status == 200) {
          if (orders) {
            const auto ids = std::count(a.body.begin(), a.body.end(), '{');
            if (ids != 2 || a.body.find("\"" + id + "-1\"") == std::string::npos ||
                a.body.find("\"" + id + "-2\"") == std::string::npos)
              why = "another user's orders: " + a.body.substr(0, 200);
          } else if (a.body.find("\"id\":\"" + id + "\"") == std::string::npos ||
                     a.body.find("\"name\":\"User " + id + "\"") == std::string::npos) {
            why = "another user's profile: " + a.body.substr(0, 200);
          }
        }
        s.count(a, "GET " + target, began, true, why);
        if (a.status != 200) std::this_thread::sleep_for(5ms);
      }
    });
  }
  s.threads.emplace_back([&s] {
    // The writer: users 2000..2007 renamed "v<n>", each rename (POST, which invalidates the
    // user's tag) followed by a read that must see it once acknowledged.
    Conn conn(s.port);
    std::map<std::string, std::pair<long long, long long>> versions;  // acked, attempted
    std::mt19937_64 r(5);
    while (s.running) {
      const std::string id = std::to_string(2000 + r() % 8);
      auto& [acked, attempted] = versions[id];
      const long long v = ++attempted;
      auto began = Clock::now();
      const auto post =
          conn.request("POST", "/users/" + id, "{\"name\":\"v" + std::to_string(v) + "\"}", 10s);
      s.count(post, "POST /users/" + id, began, false, "");
      {
        std::lock_guard lock(s.m);
        if (post.status == 200) {
          acked = v;
          ++s.posts_acked;
        } else {
          ++s.posts_refused;  // the rename may or may not have been invalidated
        }
      }
      began = Clock::now();
      const auto got = conn.request("GET", "/users/" + id, "", 10s);
      std::string why;
      if (got.status == 200) {
        const auto at = got.body.find("\"name\":\"");
        long long seen = -1;
        if (at != std::string::npos) {
          const std::string name = got.body.substr(at + 8, got.body.find('"', at + 8) - at - 8);
          if (name == "User " + id)
            seen = 0;
          else if (name.size() > 1 && name[0] == 'v')
            seen = std::atoll(name.c_str() + 1);
        }
        if (got.body.find("\"id\":\"" + id + "\"") == std::string::npos || seen < 0) {
          why = "another user's profile: " + got.body.substr(0, 200);
        } else if (seen < acked || seen > attempted) {
          std::lock_guard lock(s.m);
          ++s.stale;
          s.note("GET /users/" + id + " -> v" + std::to_string(seen) + " after the rename to v" +
                 std::to_string(acked) + " was acknowledged");
        }
      }
      s.count(got, "GET /users/" + id, began, true, why);
      std::this_thread::sleep_for(got.status == 200 ? 2ms : 5ms);
    }
  });
  s.threads.emplace_back([&s] {
    // The readiness probe: a new connection every 100 ms, as a kubelet does.
    while (s.running) {
      const auto began = Clock::now();
      Conn c(s.port);
      const auto a = c.request("GET", "/health/readiness", "", 10s);
      {
        std::lock_guard lock(s.m);
        s.probes.push_back({began, Clock::now(), a.status});
      }
      std::this_thread::sleep_for(100ms);
    }
  });
}

void HttpLoad::stop() {
  State& s = *s_;
  s.running = false;
  for (auto& t : s.threads)
    t.join();
  s.threads.clear();
  if (s.pid > 0) {
    // It shuts down gracefully on SIGTERM: a crash or a hang at exit is reported.
    ::kill(s.pid, SIGTERM);
    const auto until = Clock::now() + 15s;
    int status = 0;
    while (::waitpid(s.pid, &status, WNOHANG) == 0) {
      if (Clock::now() > until) {
        ::kill(s.pid, SIGKILL);
        ::waitpid(s.pid, &status, 0);
        status = -1;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    s.exit_status = status;
    s.pid = -1;
  }
}

std::string HttpLoad::report(const std::vector<FaultWindow>& faults, bool& ok) const {
  const State& s = *s_;
  std::lock_guard lock(s.m);
  // Readiness, judged where the truth is known: a probe made entirely while Redis was
  // unreachable must say 503; one made entirely in calm (2 s after a fault was taken away, to
  // reconnect and reload, until the next began) must say 200. Every probe answers within the
  // router's timeout plus the margin.
  long long said_down = 0, said_up = 0, lies = 0, slow = 0, unanswered = 0, max_probe = 0;
  std::vector<std::string> lie_samples;
  const auto started = s.probes.empty() ? Clock::now() : s.probes.front().begin;
  for (const auto& p : s.probes) {
    const long long took = ms_between(p.begin, p.end);
    max_probe = std::max(max_probe, took);
    if (p.status == 0) {
      ++unanswered;
      continue;
    }
    if (took > (s.o.readiness_timeout + s.o.margin).count()) ++slow;
    bool during = false, calm = true;
    for (const auto& w : faults) {
      if (unreachable(w.kind) && p.begin >= w.begin + 50ms && p.end <= w.cleared) during = true;
      if (p.end >= w.begin && p.begin <= w.end + 2s) calm = false;
    }
    std::string lie;
    if (during && p.status != 503) {
      lie = "said " + std::to_string(p.status) + " while Redis was unreachable";
    } else if (calm && p.status != 200) {
      lie = "said " + std::to_string(p.status) + " while Redis was up";
    }
    if (during && lie.empty()) ++said_down;
    if (calm && lie.empty()) ++said_up;
    if (!lie.empty()) {
      ++lies;
      if (lie_samples.size() < 5)
        lie_samples.push_back(lie + " (probe at " + std::to_string(ms_between(started, p.begin)) +
                              " ms, " + std::to_string(took) + " ms)");
    }
  }
  const bool exited_cleanly = WIFEXITED(s.exit_status) && WEXITSTATUS(s.exit_status) == 0;
  ok = s.no_answer == 0 && s.bad_status == 0 && s.wrong == 0 && s.stale == 0 && lies == 0 &&
       slow == 0 && unanswered == 0 && exited_cleanly;
  std::ostringstream out;
  out << "{\"requests\":" << s.requests << ",\"statuses\":{";
  bool first = true;
  for (const auto& [status, n] : s.statuses) {
    out << (first ? "" : ",") << "\"" << status << "\":" << n;
    first = false;
  }
  out << "},\"no_answer\":" << s.no_answer << ",\"bad_status\":" << s.bad_status
      << ",\"wrong\":" << s.wrong << ",\"stale\":" << s.stale
      << ",\"renames_acked\":" << s.posts_acked << ",\"renames_refused\":" << s.posts_refused
      << ",\"max_ms\":" << s.max_ms << ",\"readiness\":{\"probes\":" << s.probes.size()
      << ",\"said_down_while_down\":" << said_down << ",\"said_up_while_up\":" << said_up
      << ",\"lies\":" << lies << ",\"slow\":" << slow << ",\"unanswered\":" << unanswered
      << ",\"max_ms\":" << max_probe
      << "},\"service_exited_cleanly\":" << (exited_cleanly ? "true" : "false") << ",\"samples\":[";
  std::vector<std::string> all = s.samples;
  all.insert(all.end(), lie_samples.begin(), lie_samples.end());
  for (std::size_t i = 0; i < all.size(); ++i)
    out << (i ? "," : "") << "\"" << json_escape(all[i]) << "\"";
  out << "]}";
  return out.str();
}

}  // namespace tempest::chaos
