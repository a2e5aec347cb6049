/// @file
/// Pub/sub on a connection of its own: SUBSCRIBE / PSUBSCRIBE and their opposites, messages
/// received as an awaitable stream. The channels and patterns are subscribed again after every
/// reconnect, and the stream then carries a `gap` (what was published meanwhile is lost: Redis
/// pub/sub keeps nothing). Publish with Client::publish.
///
///   tempest::redis::Subscriber sub(executor, "redis://127.0.0.1:6379");
///   co_await sub.connect();
///   co_await sub.subscribe("orders");
///   for (;;) {
///     Message m = co_await sub.next();
///     if (m.kind == Message::Kind::gap) resync();  // messages may have been missed
///     else handle(m.channel, m.payload);
///   }
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tempest/redis/config.hpp"

namespace tempest::redis {

/// What Subscriber::next() delivers: a message, or a notice that messages may have been missed.
struct Message {
  /// What this is.
  enum class Kind : std::uint8_t {
    message,          ///< published to a subscribed channel
    pattern_message,  ///< published to a channel matching a subscribed pattern
    gap,              ///< the connection was replaced: messages may have been missed
  };
  Kind kind = Kind::message;  ///< message, pattern_message or gap
  std::string channel;        ///< the channel it was published to (empty for a gap)
  std::string pattern;        ///< pattern_message: the pattern that matched
  std::string payload;        ///< the published bytes
};

/// A pub/sub connection of its own (see the file's description).
class Subscriber {
 public:
  /// Messages waiting to be taken by next() at most; more are dropped (counted by dropped()) and
  /// a gap is reported in their place.
  static constexpr std::size_t kDefaultBacklog = 100000;

  /// Throws ConfigError for an invalid config.
  Subscriber(boost::asio::any_io_executor executor, Config config,
             std::size_t backlog = kDefaultBacklog);
  /// The same from a URL (see Config::from_url()).
  Subscriber(boost::asio::any_io_executor executor, std::string_view url,
             std::size_t backlog = kDefaultBacklog);
  ~Subscriber();  ///< closes
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  /// Connects (the handshake included); fails with ConnectionError as Client::connect() does.
  boost::asio::awaitable<void> connect();
  /// Each completes when Redis confirmed every name; ServerError when it refused.
  ///@{
  boost::asio::awaitable<void> subscribe(std::vector<std::string> channels);
  boost::asio::awaitable<void> psubscribe(std::vector<std::string> patterns);
  boost::asio::awaitable<void> unsubscribe(std::vector<std::string> channels);
  boost::asio::awaitable<void> punsubscribe(std::vector<std::string> patterns);
  ///@}
  /// One name (g++ 12 cannot take a braced list inside a co_await expression: name a vector).
  ///@{
  boost::asio::awaitable<void> subscribe(std::string_view channel);
  boost::asio::awaitable<void> psubscribe(std::string_view pattern);
  boost::asio::awaitable<void> unsubscribe(std::string_view channel);
  boost::asio::awaitable<void> punsubscribe(std::string_view pattern);
  ///@}
  /// The next message, or a gap notice; waits for one. ConnectionError once closed.
  boost::asio::awaitable<Message> next();
  /// Messages dropped because `backlog` were waiting.
  std::uint64_t dropped() const noexcept;
  /// Stops: next() and pending calls fail with ConnectionError. Idempotent.
  boost::asio::awaitable<void> disconnect();
  /// disconnect() without waiting.
  void close() noexcept;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace tempest::redis
