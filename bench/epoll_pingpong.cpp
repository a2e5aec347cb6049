// A floor below bench/asio_pingpong: a GET round trip with nothing but Linux system calls. One
// non-blocking socket, one epoll set, level-triggered: send `depth` GETs of one key in one send,
// epoll_wait and recv until their replies' bytes are in, repeat. No library at all.
//
//   epoll_pingpong PORT DEPTH REQUESTS VALUE_SIZE [--epoll-ctl]   ->   prints ops/s
//
// --epoll-ctl adds one thing per round trip: an unrelated eventfd is added to and removed from
// the epoll set (two epoll_ctl calls), which is what redis-benchmark's event loop does to its own
// socket on every request (it swaps the socket between EPOLLIN and EPOLLOUT with DEL and ADD).
// The client does strictly more work; on a machine where a vCPU's way out of idle is slow, the
// round trip still gets faster (removing an epoll item queues an RCU callback, and a CPU with one
// pending keeps its scheduler tick through the next idle, which makes that idle cheaper to
// leave). make bench prints both, so a gap at C=1 between any client and redis-benchmark can be
// told apart from the cost of the client's own code.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pingpong_args.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

constexpr int kWaitMs = 5000;  // a server that stops answering ends the run, it does not hang it

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "epoll_pingpong: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct Link {
  int fd = -1;
  int epoll = -1;
  int spare = -1;  // the eventfd --epoll-ctl adds and removes
  epoll_event in{};

  void send_all(std::string_view bytes) const {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EAGAIN) {
        wait_for(EPOLLOUT);
      } else {
        fail("send");
      }
    }
  }

  // Waits until the socket is ready for `events`. It is registered for EPOLLIN; a wait for
  // anything else switches the registration for that wait and back.
  void wait_for(std::uint32_t events) const {
    epoll_event want = in;
    want.events = events;
    if (events != EPOLLIN && ::epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &want) != 0) fail("epoll_ctl");
    epoll_event got[4];
    int n;
    do {
      n = ::epoll_wait(epoll, got, 4, kWaitMs);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      errno = ETIMEDOUT;
      fail("no reply within 5 s");
    }
    if (n < 0) fail("epoll_wait");
    want = in;
    if (events != EPOLLIN && ::epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &want) != 0) fail("epoll_ctl");
  }

  // Receives until `size` bytes are in; appends them to `keep` when given.
  void receive(std::size_t size, std::string* keep = nullptr) const {
    char buf[1 << 16];
    std::size_t got = 0;
    while (got < size) {
      const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, size - got), 0);
      if (n > 0) {
        got += static_cast<std::size_t>(n);
        if (keep) keep->append(buf, static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EAGAIN) {
        wait_for(EPOLLIN);
      } else {
        if (n == 0) errno = ECONNRESET;
        fail("recv");
      }
    }
  }

  void churn() const {
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (::epoll_ctl(epoll, EPOLL_CTL_ADD, spare, &ev) != 0 ||
        ::epoll_ctl(epoll, EPOLL_CTL_DEL, spare, &ev) != 0)
      fail("epoll_ctl (eventfd)");
  }
};

Link connect_to(int port) {
  Link l;
  l.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (l.fd < 0) fail("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  l.epoll = ::epoll_create1(EPOLL_CLOEXEC);
  l.spare = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l.epoll < 0 || l.spare < 0) fail("epoll_create1/eventfd");
  l.in.events = EPOLLIN;
  l.in.data.fd = l.fd;
  if (::epoll_ctl(l.epoll, EPOLL_CTL_ADD, l.fd, &l.in) != 0) fail("epoll_ctl");
  if (::connect(l.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) fail("connect");
    l.wait_for(EPOLLOUT);
    int error = 0;
    socklen_t len = sizeof error;
    ::getsockopt(l.fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      errno = error;
      fail("connect");
    }
  }
  const int one = 1;
  ::setsockopt(l.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  const bool churn = argc == 6 && std::string_view(argv[5]) == "--epoll-ctl";
  const auto args = pingpong_args("epoll_pingpong", "[--epoll-ctl]", argc == 5 || churn, argv);
  if (!args) return 2;
  const long long depth = args->depth, size = args->value_size;
  const Link link = connect_to(args->port);
  const std::string key = "key:__rand_int__", value(static_cast<std::size_t>(size), 'x');
  const std::string get = "*2\r\n$3\r\nGET\r\n$16\r\n" + key + "\r\n";
  const std::string reply = "$" + std::to_string(size) + "\r\n" + value + "\r\n";
  // The key redis-benchmark reads, then one GET checked byte for byte: every later reply must
  // have the length counted on.
  link.send_all("*3\r\n$3\r\nSET\r\n$16\r\n" + key + "\r\n$" + std::to_string(size) + "\r\n" +
                value + "\r\n" + get);
  const std::string expected = "+OK\r\n" + reply;
  std::string first;
  link.receive(expected.size(), &first);
  if (first != expected) {
    std::fprintf(stderr, "epoll_pingpong: unexpected reply to SET and GET %s\n", key.c_str());
    return 1;
  }
  std::string batch;
  for (long long i = 0; i < depth; ++i)
    batch += get;
  const long long rounds = args->requests / depth;
  const auto start = std::chrono::steady_clock::now();
  for (long long r = 0; r < rounds; ++r) {
    link.send_all(batch);
    if (churn) link.churn();
    link.receive(reply.size() * static_cast<std::size_t>(depth));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.1f\n", static_cast<double>(rounds * depth) / seconds);
  return 0;
}
