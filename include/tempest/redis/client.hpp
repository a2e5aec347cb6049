// The Redis client: a cheap, copyable handle to one shared, self-healing connection, with a
// generic command call and typed helpers for what a cache needs.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tempest/redis/command.hpp"
#include "tempest/redis/config.hpp"
#include "tempest/redis/connection.hpp"
#include "tempest/redis/error.hpp"
#include "tempest/redis/reply.hpp"

namespace tempest::redis {

// Something that is passed as one binary-safe string argument.
template <class T>
concept StringLike = std::convertible_to<const T&, std::string_view>;

// Multi-key helpers take keys either as separate arguments, client.del(k1, k2), or as one
// std::vector<std::string> (with an optional CallOptions). There are no braced-list overloads:
// GCC 12 cannot compile a braced list inside a co_await expression ("array used as initializer").
using Keys = std::vector<std::string>;

enum class SetCondition { always, if_not_exists /* NX */, if_exists /* XX */ };

struct SetOptions {
  std::optional<std::chrono::seconds> expire_seconds = std::nullopt;      // EX
  std::optional<std::chrono::milliseconds> expire_millis = std::nullopt;  // PX
  SetCondition condition = SetCondition::always;
  bool keep_ttl = false;                           // KEEPTTL
  std::optional<Duration> timeout = std::nullopt;  // per-call deadline override
};

// SET expiry as named types: client.set(k, v, ex{300s}) or client.set(k, v, px{1500ms}).
struct ex {
  std::chrono::seconds value;
  operator SetOptions() const { return SetOptions{.expire_seconds = value}; }
};
struct px {
  std::chrono::milliseconds value;
  operator SetOptions() const { return SetOptions{.expire_millis = value}; }
};

// Not an aggregate on purpose: g++ 12 miscompiles a braced aggregate temporary holding a short
// std::string inside a co_await expression (it relocates the string bitwise), so options with
// strings are built with constructors: client.scan_all(ScanOptions("user:*", 500)).
struct ScanOptions {
  ScanOptions() = default;
  explicit ScanOptions(std::string match_pattern, std::size_t count_hint = 1000)
      : match(std::move(match_pattern)), count(count_hint) {}

  std::string match = "*";
  std::size_t count = 1000;  // COUNT hint per round trip
  std::string type;          // TYPE filter; empty: any
  std::optional<Duration> timeout = std::nullopt;
};

// A Lua script run with EVALSHA, falling back to EVAL when the server does not know it (NOSCRIPT).
class Script {
 public:
  explicit Script(std::string source);
  const std::string& source() const noexcept { return source_; }
  const std::string& sha1() const noexcept { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

class Client;

// Iterates over every key matching a pattern with SCAN (never KEYS). A key may be returned more
// than once if the keyspace changes during the iteration, as SCAN guarantees nothing stronger.
class Scanner {
 public:
  // The next batch (possibly empty), or nullopt when the iteration is complete.
  asio::awaitable<std::optional<std::vector<std::string>>> next();

  struct State;

 private:
  friend class Client;
  explicit Scanner(std::shared_ptr<State> s) : state_(std::move(s)) {}
  std::shared_ptr<State> state_;  // shared, so a Scanner is a cheap handle
};

class Client {
 public:
  // Nothing is opened until connect() or start().
  Client(asio::any_io_executor executor, Config config);
  Client(asio::any_io_executor executor, std::string_view url)
      : Client(std::move(executor), Config::from_url(url)) {}

  // Starts the connection and waits up to Config::connect_timeout for the first handshake;
  // throws ConnectionError (with the reason, never the password) when it does not come up. The
  // connection keeps retrying in the background either way.
  asio::awaitable<void> connect();
  // Starts connecting in the background without waiting.
  void start() { conn_->start(); }
  asio::awaitable<bool> wait_connected(Duration timeout) { return conn_->wait_connected(timeout); }
  asio::awaitable<void> disconnect() { return conn_->disconnect(); }

  bool is_connected() const noexcept { return conn_->is_connected(); }
  ConnectionState state() const noexcept { return conn_->state(); }
  const Config& config() const noexcept { return conn_->config(); }
  const std::shared_ptr<Connection>& connection() const noexcept { return conn_; }

  // Any command. An error reply throws ServerError with Redis's text. SUBSCRIBE-family and
  // MONITOR commands need a dedicated connection and are refused with std::invalid_argument.
  asio::awaitable<Reply> command(Command c, CallOptions o = {});
  // Commands written together in one write; one reply per command (error replies as values).
  asio::awaitable<std::vector<Reply>> exec(const Pipeline& p, CallOptions o = {});
  // MULTI, the commands, EXEC, written as one unit; the replies of EXEC (errors as values).
  // Throws ServerError when Redis refuses the transaction (EXECABORT).
  asio::awaitable<std::vector<Reply>> transaction(const Pipeline& p, CallOptions o = {});

  asio::awaitable<std::optional<std::string>> get(std::string_view key, CallOptions o = {});
  // False when NX / XX prevented the write.
  asio::awaitable<bool> set(std::string_view key, std::string_view value, SetOptions o = {});
  // SET ... GET: the previous value.
  asio::awaitable<std::optional<std::string>> set_get(std::string_view key, std::string_view value,
                                                      SetOptions o = {});
  asio::awaitable<long long> del(const Keys& keys, CallOptions o = {});
  asio::awaitable<long long> unlink(const Keys& keys, CallOptions o = {});
  asio::awaitable<long long> exists(const Keys& keys, CallOptions o = {});
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<long long> del(const K&... keys) {
    return integer_reply(cmd("DEL", keys...), {});
  }
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<long long> unlink(const K&... keys) {
    return integer_reply(cmd("UNLINK", keys...), {});
  }
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<long long> exists(const K&... keys) {
    return integer_reply(cmd("EXISTS", keys...), {});
  }
  asio::awaitable<bool> expire(std::string_view key, std::chrono::seconds ttl, CallOptions o = {});
  // Seconds to live; -1 without expiry, -2 when the key does not exist (Redis's TTL).
  asio::awaitable<long long> ttl(std::string_view key, CallOptions o = {});
  asio::awaitable<long long> incr(std::string_view key, CallOptions o = {});
  asio::awaitable<std::vector<std::optional<std::string>>> mget(const Keys& keys,
                                                                CallOptions o = {});
  template <StringLike... K>
  requires(sizeof...(K) >
           0) asio::awaitable<std::vector<std::optional<std::string>>> mget(const K&... keys) {
    return optional_strings_reply(cmd("MGET", keys...), {});
  }
  asio::awaitable<void> mset(const std::vector<std::pair<std::string, std::string>>& kv,
                             CallOptions o = {});
  asio::awaitable<long long> sadd(std::string_view key, const Keys& members, CallOptions o = {});
  template <StringLike... M>
  requires(sizeof...(M) > 0) asio::awaitable<long long> sadd(std::string_view key,
                                                             const M&... members) {
    return integer_reply(cmd("SADD", key, members...), {});
  }
  asio::awaitable<std::vector<std::string>> smembers(std::string_view key, CallOptions o = {});
  asio::awaitable<std::vector<std::string>> sunion(const Keys& keys, CallOptions o = {});
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<std::vector<std::string>> sunion(const K&... keys) {
    return strings_reply(cmd("SUNION", keys...), {});
  }
  asio::awaitable<std::string> ping(CallOptions o = {});
  asio::awaitable<long long> publish(std::string_view channel, std::string_view message,
                                     CallOptions o = {});
  asio::awaitable<Reply> eval(std::string_view script, const Keys& keys = {}, const Keys& args = {},
                              CallOptions o = {});
  asio::awaitable<Reply> evalsha(std::string_view sha1, const Keys& keys = {},
                                 const Keys& args = {}, CallOptions o = {});
  // EVALSHA, and EVAL when the script is not loaded yet (NOSCRIPT).
  asio::awaitable<Reply> run(const Script& script, const Keys& keys = {}, const Keys& args = {},
                             CallOptions o = {});

  Scanner scan(ScanOptions o = {}) const;
  // Every matching key (for modest key counts; use scan() to stream large ones).
  asio::awaitable<std::vector<std::string>> scan_all(ScanOptions o = {});

 private:
  asio::awaitable<long long> integer_reply(Command c, CallOptions o);
  asio::awaitable<std::vector<std::string>> strings_reply(Command c, CallOptions o);
  asio::awaitable<std::vector<std::optional<std::string>>> optional_strings_reply(Command c,
                                                                                  CallOptions o);

  std::shared_ptr<Connection> conn_;
};

}  // namespace tempest::redis
