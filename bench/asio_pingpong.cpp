// A floor for `tempest bench --mode get`: the least an Asio client can do per round trip. One
// socket on a single-threaded io_context, plain callbacks, no strand, no coroutines, no reply
// parsing: write `depth` GETs of one key in one send, read until their replies' bytes are in,
// repeat. It first SETs the key redis-benchmark reads, "key:__rand_int__", to VALUE_SIZE bytes and
// checks one GET, so that every reply has the length it counts on.
//
//   asio_pingpong PORT DEPTH REQUESTS VALUE_SIZE   ->   prints ops/s
//
// make bench-client prints it beside tempest and redis-benchmark, so the part of a gap that
// Asio itself accounts for is visible.
#include "pingpong_args.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

struct PingPong {
  tcp::socket socket;
  std::string request;     // `depth` GETs, encoded once
  std::size_t reply_size;  // bytes of `depth` replies
  long long rounds_left;
  asio::steady_timer* watchdog = nullptr;  // cancelled when the last round is done
  bool stalled = false;                    // the watchdog cancelled the read
  std::vector<char> buf = std::vector<char>(1 << 16);
  std::size_t got = 0;

  void send() {
    boost::system::error_code ec;
    asio::write(socket, asio::buffer(request), ec);
    if (ec) throw boost::system::system_error(ec);
    got = 0;
    receive();
  }
  void receive() {
    socket.async_read_some(asio::buffer(buf), [this](boost::system::error_code ec, std::size_t n) {
      if (stalled) throw std::runtime_error("no reply for a second (is the server stopped?)");
      if (ec) throw boost::system::system_error(ec);
      got += n;
      if (got < reply_size) return receive();
      if (--rounds_left > 0) return send();
      if (watchdog) watchdog->cancel();
    });
  }
};

int run(const PingPongArgs& args) {
  const long long depth = args.depth, requests = args.requests, size = args.value_size;
  asio::io_context io(1);
  tcp::resolver resolver(io);
  tcp::socket socket(io);
  asio::connect(socket, resolver.resolve("127.0.0.1", std::to_string(args.port)));
  socket.set_option(tcp::no_delay(true));
  const std::string one = "*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n";
  const std::string reply = "$" + std::to_string(size) + "\r\n" + std::string(size, 'x') + "\r\n";
  PingPong p{
      std::move(socket), {}, reply.size() * static_cast<std::size_t>(depth), requests / depth};
  for (long long i = 0; i < depth; ++i)
    p.request += one;
  // The key, then one GET checked byte for byte, within 5 s (a server that answers something
  // else, e.g. -NOAUTH, must not leave this waiting for bytes that never come).
  const std::string value(static_cast<std::size_t>(size), 'x');
  const std::string set = "*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$" + std::to_string(size) +
                          "\r\n" + value + "\r\n";
  asio::write(p.socket, asio::buffer(set + one));
  std::string first(5 + reply.size(), '\0');  // "+OK\r\n" and the reply
  asio::steady_timer limit(io, std::chrono::seconds(5));
  limit.async_wait([&](boost::system::error_code ec) {
    if (!ec) p.socket.cancel();
  });
  boost::system::error_code read_error;
  asio::async_read(p.socket, asio::buffer(first), [&](boost::system::error_code ec, std::size_t) {
    read_error = ec;
    limit.cancel();
  });
  io.run();
  io.restart();
  if (read_error || first != "+OK\r\n" + reply) {
    std::fprintf(stderr, "asio_pingpong: unexpected reply to SET and GET key:__rand_int__\n");
    return 1;
  }
  p.socket.non_blocking(true);
  // A server that stops answering mid-run ends it: once a second, no round done since the last
  // look cancels the read (which then throws operation_aborted out of io.run()).
  long long seen = p.rounds_left;
  std::function<void(boost::system::error_code)> watch = [&](boost::system::error_code ec) {
    if (ec || p.rounds_left == 0) return;
    if (p.rounds_left == seen) {
      p.stalled = true;
      return p.socket.cancel();
    }
    seen = p.rounds_left;
    limit.expires_after(std::chrono::seconds(1));
    limit.async_wait(watch);
  };
  limit.expires_after(std::chrono::seconds(1));
  limit.async_wait(watch);
  p.watchdog = &limit;
  const auto start = std::chrono::steady_clock::now();
  p.send();
  io.run();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.1f\n", static_cast<double>(requests / depth * depth) / seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = pingpong_args("asio_pingpong", "", argc == 5, argv);
  if (!args) return 2;
  try {
    return run(*args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_pingpong: %s\n", e.what());
    return 1;
  }
}
