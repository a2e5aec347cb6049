// Pub/sub: tempest::redis::Subscriber against a redis-server each test starts.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/subscriber.hpp"

namespace asio = boost::asio;
using namespace tempest::redis;
using namespace std::chrono_literals;
using tempest::test::RedisServer;
using tempest::test::run;
using tempest::test::sleep_for;

TEST(PubSub, MessagesArriveInOrderAndUnsubscribeStopsThem) {
  RedisServer server;
  asio::io_context io;
  Client pub(io.get_executor(), server.url());
  Subscriber sub(io.get_executor(), server.url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await pub.connect();
    co_await sub.connect();
    const std::vector<std::string> channels = {"news", "sports"};
    co_await sub.subscribe(channels);
    co_await sub.psubscribe("ch:*");
    for (int i = 0; i < 100; ++i)
      EXPECT_EQ(co_await pub.publish("news", "n" + std::to_string(i)), 1);
    EXPECT_EQ(co_await pub.publish("ch:1", "x"), 1);
    for (int i = 0; i < 100; ++i) {
      const Message m = co_await sub.next();
      EXPECT_EQ(m.kind, Message::Kind::message);
      EXPECT_EQ(m.channel, "news");
      EXPECT_EQ(m.payload, "n" + std::to_string(i));
    }
    const Message p = co_await sub.next();
    EXPECT_EQ(p.kind, Message::Kind::pattern_message);
    EXPECT_EQ(p.pattern, "ch:*");
    EXPECT_EQ(p.channel, "ch:1");
    EXPECT_EQ(p.payload, "x");
    co_await sub.unsubscribe("news");
    EXPECT_EQ(co_await pub.publish("news", "unheard"), 0);
    EXPECT_EQ(co_await pub.publish("sports", "s"), 1);
    const Message s = co_await sub.next();
    EXPECT_EQ(s.channel, "sports");
    EXPECT_EQ(s.payload, "s");
    EXPECT_EQ(sub.dropped(), 0u);
    co_await sub.disconnect();
    EXPECT_THROW((void)co_await sub.next(), ConnectionError);
    co_await pub.disconnect();
  });
}

TEST(PubSub, AReplacedConnectionSubscribesAgainAndReportsAGap) {
  RedisServer server;
  asio::io_context io;
  Client pub(io.get_executor(), server.url());
  Subscriber sub(io.get_executor(), server.url("?reconnect_min=10ms&reconnect_max=50ms"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await pub.connect();
    co_await sub.connect();
    co_await sub.subscribe("news");
    co_await sub.psubscribe("ch:*");
    EXPECT_EQ((co_await pub.command(cmd("CLIENT", "KILL", "TYPE", "pubsub"))).integer(), 1);
    const Message gap = co_await sub.next();
    EXPECT_EQ(gap.kind, Message::Kind::gap);
    // Subscribed again: both the channel and the pattern reach it.
    for (int i = 0; i < 200 && co_await pub.publish("news", "back") == 0; ++i)
      co_await sleep_for(10ms);
    const Message m = co_await sub.next();
    EXPECT_EQ(m.channel, "news");
    EXPECT_EQ(m.payload, "back");
    EXPECT_EQ(co_await pub.publish("ch:2", "p"), 1);
    const Message p = co_await sub.next();
    EXPECT_EQ(p.kind, Message::Kind::pattern_message);
    EXPECT_EQ(p.payload, "p");
    co_await sub.disconnect();
    co_await pub.disconnect();
  });
}

TEST(PubSub, ASlowReaderLosesMessagesAsAGapNotMemory) {
  RedisServer server;
  asio::io_context io;
  Client pub(io.get_executor(), server.url());
  Subscriber sub(io.get_executor(), server.url(), /*backlog=*/10);
  run(io, [&]() -> asio::awaitable<void> {
    co_await pub.connect();
    co_await sub.connect();
    co_await sub.subscribe("firehose");
    for (int i = 0; i < 100; ++i)
      (void)co_await pub.publish("firehose", std::to_string(i));
    co_await sleep_for(100ms);  // all delivered to the subscriber's link by now
    for (int i = 0; i < 10; ++i)
      EXPECT_EQ((co_await sub.next()).payload, std::to_string(i));
    EXPECT_EQ(sub.dropped(), 90u);
    (void)co_await pub.publish("firehose", "later");
    const Message gap = co_await sub.next();
    EXPECT_EQ(gap.kind, Message::Kind::gap);  // what was dropped is reported before it
    EXPECT_EQ((co_await sub.next()).payload, "later");
    co_await sub.disconnect();
    co_await pub.disconnect();
  });
}
