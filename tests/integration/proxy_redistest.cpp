// The fault-injecting proxy against a real redis-server, with raw sockets and hand-written RESP
// (not the library's Client), so that these tests check the proxy alone.
#include <gtest/gtest.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "support/fault_proxy.hpp"
#include "support/redis_server.hpp"
#include "support/run.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using tempest::test::Clock;
using tempest::test::FaultProxy;
using tempest::test::free_port;
using tempest::test::ms_since;
using tempest::test::RedisServer;
using Mode = FaultProxy::Mode;

namespace {

constexpr std::string_view kPing = "*1\r\n$4\r\nPING\r\n";
constexpr std::string_view kPong = "+PONG\r\n";

struct ReadResult {
  std::string data;
  boost::system::error_code ec;  // eof, connection_reset, ... when the connection ended
  bool timed_out = false;        // neither `want` bytes nor an end arrived in time

  bool ended() const {
    return !timed_out && (ec == asio::error::eof || ec == asio::error::connection_reset);
  }
};

// A client connection with its own io_context: blocking writes, reads with a deadline.
class Conn {
 public:
  explicit Conn(std::uint16_t port) {
    socket_.connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port));
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }

  void send(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }

  // Reads until `want` bytes arrived in total, the connection ended, or `limit` passed.
  ReadResult read(std::size_t want, std::chrono::milliseconds limit) {
    ReadResult r;
    bool done = false;
    std::array<char, 4096> buf{};
    std::function<void()> next = [&] {
      socket_.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
        r.data.append(buf.data(), n);
        if (ec || r.data.size() >= want) {
          r.ec = ec;
          done = true;
          return;
        }
        next();
      });
    };
    next();
    io_.restart();
    io_.run_for(limit);
    if (!done) {
      r.timed_out = true;
      socket_.cancel();
      io_.restart();
      io_.run();
    }
    return r;
  }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_{io_};
};

// Polls `cond` until it holds or `limit` passed.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = 2000ms) {
  const auto until = Clock::now() + limit;
  while (!cond()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

TEST(FaultProxy, PassForwardsBothWaysAndCounts) {
  RedisServer server;
  FaultProxy proxy(server.port());
  EXPECT_EQ(proxy.url("/0?x=y"), "redis://127.0.0.1:" + std::to_string(proxy.port()) + "/0?x=y");
  EXPECT_EQ(proxy.mode(), Mode::pass);
  {
    Conn c(proxy.port());
    for (int i = 0; i < 3; ++i) {
      c.send(kPing);
      EXPECT_EQ(c.read(kPong.size(), 2000ms).data, kPong);
    }
    EXPECT_EQ(proxy.connections_accepted(), 1u);
    EXPECT_EQ(proxy.open_connections(), 1u);
  }
  // The client closed: its session ends once redis-server closed its side too.
  EXPECT_TRUE(eventually([&] { return proxy.open_connections() == 0; }));
  EXPECT_EQ(proxy.connections_accepted(), 1u);
}

TEST(FaultProxy, AcceptThenCloseEndsNewAndExistingConnections) {
  RedisServer server;
  FaultProxy proxy(server.port());
  Conn existing(proxy.port());
  existing.send(kPing);
  ASSERT_EQ(existing.read(kPong.size(), 2000ms).data, kPong);

  proxy.set_mode(Mode::accept_then_close);
  EXPECT_EQ(proxy.mode(), Mode::accept_then_close);
  const auto r0 = existing.read(1, 1000ms);
  EXPECT_TRUE(r0.ended()) << r0.ec.message();
  EXPECT_EQ(r0.data, "");

  Conn fresh(proxy.port());
  const auto start = Clock::now();
  const auto r1 = fresh.read(1, 2000ms);
  EXPECT_LT(ms_since(start), 1000);
  EXPECT_TRUE(r1.ended()) << r1.ec.message();
  EXPECT_EQ(r1.data, "");
  EXPECT_EQ(proxy.connections_accepted(), 2u);
  EXPECT_EQ(proxy.open_connections(), 0u);

  // Back to pass: new connections work again.
  proxy.set_mode(Mode::pass);
  Conn again(proxy.port());
  again.send(kPing);
  EXPECT_EQ(again.read(kPong.size(), 2000ms).data, kPong);
}

TEST(FaultProxy, BlackHoleHoldsEverythingUntilItHeals) {
  RedisServer server;
  FaultProxy proxy(server.port());
  proxy.set_mode(Mode::black_hole);
  Conn c(proxy.port());
  c.send(kPing);
  const auto r0 = c.read(1, 300ms);
  EXPECT_TRUE(r0.timed_out);
  EXPECT_EQ(r0.data, "");
  EXPECT_EQ(proxy.open_connections(), 1u);

  // Healed: the held PING arrives, then the second one; two PONGs, in order, nothing lost.
  proxy.set_mode(Mode::pass);
  c.send(kPing);
  EXPECT_EQ(c.read(2 * kPong.size(), 2000ms).data, std::string(kPong) + std::string(kPong));
  const auto r1 = c.read(1, 300ms);
  EXPECT_TRUE(r1.timed_out);
  EXPECT_EQ(r1.data, "");
}

TEST(FaultProxy, DelayHoldsEveryChunkInOrder) {
  RedisServer server;
  FaultProxy proxy(server.port());
  proxy.set_mode(Mode::delay, 200ms);
  EXPECT_EQ(proxy.param(), 200ms);
  Conn c(proxy.port());
  auto start = Clock::now();
  c.send(kPing);
  EXPECT_EQ(c.read(kPong.size(), 3000ms).data, kPong);
  // 200 ms on the way there and 200 ms on the way back.
  EXPECT_GE(ms_since(start), 400);

  // Two commands 50 ms apart, as two chunks: both delayed, the replies in order.
  start = Clock::now();
  c.send("*2\r\n$4\r\nECHO\r\n$1\r\na\r\n");
  std::this_thread::sleep_for(50ms);
  c.send("*2\r\n$4\r\nECHO\r\n$1\r\nb\r\n");
  const std::string want = "$1\r\na\r\n$1\r\nb\r\n";
  EXPECT_EQ(c.read(want.size(), 3000ms).data, want);
  EXPECT_GE(ms_since(start), 450);
}

TEST(FaultProxy, ResetMidReplyCutsTheReplyThenResets) {
  RedisServer server;
  FaultProxy proxy(server.port());
  proxy.set_mode(Mode::reset_mid_reply);
  Conn c(proxy.port());
  c.send("*2\r\n$4\r\nECHO\r\n$20\r\n01234567890123456789\r\n");
  const std::string full = "$20\r\n01234567890123456789\r\n";
  const auto r = c.read(full.size(), 2000ms);
  EXPECT_EQ(r.ec, asio::error::connection_reset) << r.ec.message();
  // redis-server writes the reply at once, so the proxy reads it as one chunk and forwards 13 of
  // its 27 bytes.
  EXPECT_GT(r.data.size(), 0u);
  EXPECT_LT(r.data.size(), full.size());
  EXPECT_EQ(r.data, full.substr(0, r.data.size()));
  EXPECT_TRUE(eventually([&] { return proxy.open_connections() == 0; }));
}

TEST(FaultProxy, SlowDripSendsOneByteAtATime) {
  RedisServer server;
  FaultProxy proxy(server.port());
  proxy.set_mode(Mode::slow_drip, 20ms);
  Conn c(proxy.port());
  const auto start = Clock::now();
  c.send(kPing);
  EXPECT_EQ(c.read(kPong.size(), 3000ms).data, kPong);
  EXPECT_GE(ms_since(start), 100);  // 7 bytes, 20 ms before each
}

TEST(FaultProxy, DropConnectionsResetsOpenConnections) {
  RedisServer server;
  FaultProxy proxy(server.port());
  Conn c(proxy.port());
  c.send(kPing);
  ASSERT_EQ(c.read(kPong.size(), 2000ms).data, kPong);
  proxy.drop_connections();
  EXPECT_EQ(proxy.open_connections(), 0u);
  const auto r = c.read(1, 1000ms);
  EXPECT_EQ(r.ec, asio::error::connection_reset) << r.ec.message();

  Conn again(proxy.port());
  again.send(kPing);
  EXPECT_EQ(again.read(kPong.size(), 2000ms).data, kPong);
}

TEST(FaultProxy, UpstreamConnectFailureClosesTheClient) {
  FaultProxy proxy(free_port());  // nothing listens there
  Conn c(proxy.port());
  const auto r = c.read(1, 2000ms);
  EXPECT_TRUE(r.ended()) << r.ec.message();
  EXPECT_TRUE(eventually([&] { return proxy.open_connections() == 0; }));
}

TEST(FaultProxy, DestructorReturnsPromptlyWithStuckConnections) {
  RedisServer server;
  auto proxy = std::make_unique<FaultProxy>(server.port());
  proxy->set_mode(Mode::black_hole);
  Conn held(proxy->port());
  held.send(kPing);  // read and dropped
  std::this_thread::sleep_for(100ms);

  proxy->set_mode(Mode::slow_drip, 1000ms);
  Conn dripping(proxy->port());
  dripping.send("*2\r\n$4\r\nECHO\r\n$20\r\n01234567890123456789\r\n");
  ASSERT_TRUE(eventually([&] { return proxy->open_connections() == 2; }));
  std::this_thread::sleep_for(100ms);  // the reply is queued, dripping

  const auto start = Clock::now();
  proxy.reset();
  // Closing ends every pending operation at once: well under a second, and under the 500 ms
  // after which the destructor would stop the io_context instead.
  EXPECT_LT(ms_since(start), 400);
  EXPECT_TRUE(held.read(1, 1000ms).ended());
  EXPECT_TRUE(dripping.read(1000, 1000ms).ended());
}
