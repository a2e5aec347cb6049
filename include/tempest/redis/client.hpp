/// @file
/// The Redis client: a cheap, copyable handle to one shared, self-healing, automatically pipelined
/// connection, with a generic command call and typed helpers for what a cache needs.
///
/// Every asynchronous operation follows Asio's completion-token convention. The token comes last
/// and defaults to asio::use_awaitable, so `co_await client.get(k)` works in a coroutine; it may
/// also be asio::use_future (`client.get(k, asio::use_future).get()` from a thread of your own
/// while an io_context runs elsewhere), a callback `void(std::exception_ptr, T)`, or
/// asio::deferred. Handlers run on their associated executor (the client's executor for plain
/// callbacks), never inside the connection's own processing.
///
/// Cancellation: an operation whose cancellation slot is emitted (e.g. `client.get(k) ||
/// timer.async_wait(...)`) fails with TimeoutError at once, from any thread; a request already
/// written has its reply read and dropped, so the connection stays in sync.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "tempest/redis/command.hpp"
#include "tempest/redis/config.hpp"
#include "tempest/redis/connection.hpp"
#include "tempest/redis/detail/async.hpp"
#include "tempest/redis/error.hpp"
#include "tempest/redis/reply.hpp"
#include "tempest/redis/tracking.hpp"

namespace tempest::redis {

namespace asio = boost::asio;

/// Something that is passed as one binary-safe string argument.
template <class T>
concept StringLike = std::convertible_to<const T&, std::string_view>;

/// The completion token used when none is given: operations return asio::awaitable<T>.
using DefaultToken = asio::use_awaitable_t<>;

/// A completion token, i.e. not one of the option structs that may take its place.
template <class T, class Options>
concept TokenNot = !std::is_convertible_v<std::decay_t<T>, Options>;

/// Multi-key helpers take keys either as separate arguments, client.del(k1, k2) (coroutines
/// only), or as one std::vector<std::string> (with optional CallOptions and a token). There are
/// no braced-list overloads: GCC 12 cannot compile a braced list inside a co_await expression.
using Keys = std::vector<std::string>;

/// When SET writes: always, only if the key does not exist (NX), only if it exists (XX).
enum class SetCondition { always, if_not_exists /* NX */, if_exists /* XX */ };

/// The options of set() and set_get(): expiry, condition, KEEPTTL, deadline.
struct SetOptions {
  std::optional<std::chrono::seconds> expire_seconds = std::nullopt;      ///< EX
  std::optional<std::chrono::milliseconds> expire_millis = std::nullopt;  ///< PX
  SetCondition condition = SetCondition::always;                          ///< NX / XX
  bool keep_ttl = false;                                                  ///< KEEPTTL
  std::optional<Duration> timeout = std::nullopt;  ///< per-call deadline override
};
/// g++ 12 destroys an aggregate temporary inside a co_await expression twice (so
/// `co_await client.set(k, v, SetOptions{...})` is only safe while the destructor does nothing):
/// the option aggregates taken by awaited calls stay trivially destructible.
static_assert(std::is_trivially_destructible_v<SetOptions>);
static_assert(std::is_trivially_destructible_v<CallOptions>);

/// SET expiry as named types: client.set(k, v, ex{300s}) or client.set(k, v, px{1500ms}).
struct ex {
  std::chrono::seconds value;  ///< the time to live (EX)
  /// SetOptions with only the expiry set.
  operator SetOptions() const { return SetOptions{.expire_seconds = value}; }
};
/// SET expiry in milliseconds (PX): client.set(k, v, px{1500ms}).
struct px {
  std::chrono::milliseconds value;  ///< the time to live (PX)
  /// SetOptions with only the expiry set.
  operator SetOptions() const { return SetOptions{.expire_millis = value}; }
};

/// Not an aggregate on purpose: g++ 12 miscompiles a braced aggregate temporary holding a short
/// std::string inside a co_await expression (it relocates the string bitwise), so options with
/// strings are built with constructors: client.scan_all(ScanOptions("user:*", 500)).
struct ScanOptions {
  ScanOptions() = default;  ///< Every key, COUNT 1000.
  /// Keys matching `match_pattern` (SCAN MATCH glob), `count_hint` keys per round trip.
  explicit ScanOptions(std::string match_pattern, std::size_t count_hint = 1000)
      : match(std::move(match_pattern)), count(count_hint) {}

  std::string match = "*";                         ///< MATCH glob pattern
  std::size_t count = 1000;                        ///< COUNT hint per round trip
  std::string type;                                ///< TYPE filter; empty: any
  std::optional<Duration> timeout = std::nullopt;  ///< deadline of each round trip
};

/// A Lua script run with EVALSHA, falling back to EVAL when the server does not know it (NOSCRIPT).
class Script {
 public:
  /// Computes the script's SHA-1 once; nothing is sent until Client::run().
  explicit Script(std::string source);
  /// The Lua source.
  const std::string& source() const noexcept { return source_; }
  /// Its SHA-1 in lowercase hex, as EVALSHA and SCRIPT LOAD use it.
  const std::string& sha1() const noexcept { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

/// EXEC answered nil: a key WATCHed on the dedicated connection changed, so nothing was applied.
class WatchError : public Error {
 public:
  using Error::Error;
};

class Client;

/// Iterates over every key matching a pattern with SCAN (never KEYS). A key may be returned more
/// than once if the keyspace changes during the iteration, as SCAN guarantees nothing stronger.
class Scanner {
 public:
  /// The next batch (possibly empty), or nullopt when the iteration is complete.
  asio::awaitable<std::optional<std::vector<std::string>>> next();

  struct State;

 private:
  friend class Client;
  explicit Scanner(std::shared_ptr<State> s) : state_(std::move(s)) {}
  std::shared_ptr<State> state_;  ///< shared, so a Scanner is a cheap handle
};

/// What get_with_ttl() reads: the value (nullopt: no such key) and its remaining time to live in
/// ms, as PTTL gives it (-1: no expiry; -2: gone by the time PTTL ran).
struct ValueWithTtl {
  std::optional<std::string> value;  ///< nullopt: no such key
  long long pttl = -2;               ///< ms to live; -1: no expiry; -2: no key
};

namespace detail {
/// Reply conversions, run as the reply is delivered; what they throw reaches that caller only.
Reply to_checked(Reply&& r);
Reply to_reply(Reply&& r);
bool to_not_nil(Reply&& r);
void to_ok(Reply&& r);
std::string to_string(Reply&& r);
long long to_integer(Reply&& r);
bool to_boolean(Reply&& r);
std::optional<std::string> to_optional_string(Reply&& r);
/// The same, leaving a spare buffer (see recycle_string in reply.hpp) in the reply for the next.
std::optional<std::string> to_optional_string_reusing(Reply&& r);
std::vector<std::string> to_strings(Reply&& r);
std::vector<std::optional<std::string>> to_optional_strings(Reply&& r);
std::vector<Reply> to_replies(Reply&& r);
std::vector<Reply> to_transaction(Reply&& r);
ValueWithTtl to_value_with_ttl(Reply&& r);
void to_connected(Reply&& r);
bool to_is_up(Reply&& r);
void to_nothing(Reply&& r);
}  // namespace detail

/// A handle to Redis: one server, a Redis Cluster or a Sentinel-managed master, chosen by its
/// Config. See the file's description for the completion-token and cancellation rules.
class Client {
 public:
  /// Nothing is opened until connect() or start(). Throws ConfigError for an invalid config (it is
  /// validated like a URL) or TLS files that cannot be loaded.
  Client(asio::any_io_executor executor, Config config);
  /// The same from a URL (see Config::from_url()).
  Client(asio::any_io_executor executor, std::string_view url)
      : Client(std::move(executor), Config::from_url(url)) {}
  /// Copies share the connection; it closes (failing what is pending) when the last copy goes.
  ///@{
  Client(const Client& other) noexcept;
  Client(Client&& other) noexcept;
  Client& operator=(const Client& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  ~Client();
  ///@}

  // ---- lifecycle
  // ---------------------------------------------------------------------------------

  /// Starts the connection and completes when the first attempt has connected (AUTH, SELECT and a
  /// PING answered); fails with ConnectionError naming the reason (never the password) when that
  /// attempt fails or Config::connect_timeout passes. The connection keeps retrying in the
  /// background either way.
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto connect(Token&& token = {}) {
    start();
    return launch(wait_request(RequestKindWait::first_attempt, config().connect_timeout),
                  &detail::to_connected, std::forward<Token>(token));
  }
  /// Starts connecting in the background without waiting.
  void start();
  /// Client-side caching (before connect() or start(); see tempest/redis/tracking.hpp): Redis
  /// tracks the keys this client reads on its shared connection(s) and reports what changes them
  /// to `sink`, through one more connection per server. Throws std::logic_error once started.
  void track(std::shared_ptr<InvalidationSink> sink);
  /// Completes with true once connected, false when `timeout` passes (or the client stops).
  template <class Token = DefaultToken>
  auto wait_connected(Duration timeout, Token&& token = {}) {
    return launch(wait_request(RequestKindWait::ready, timeout), &detail::to_is_up,
                  std::forward<Token>(token));
  }
  /// Stops taking requests, lets those in flight finish within Config::disconnect_timeout, closes
  /// the connection and fails whatever is left with ConnectionError. Idempotent.
  template <class Token = DefaultToken>
  auto disconnect(Token&& token = {}) {
    return launch(wait_request(RequestKindWait::stopped,
                               config().disconnect_timeout + std::chrono::seconds(1)),
                  &detail::to_nothing, std::forward<Token>(token));
  }
  /// Like disconnect() without waiting: everything pending fails at once.
  void close() noexcept;

  /// A connection of the caller's own, connected, with the same configuration: for WATCH-guarded
  /// transactions, blocking commands (BLPOP, XREAD BLOCK...) and very large values, which must not
  /// hold up the shared connection. It closes when the returned Client (and its copies) goes.
  /// On a Redis Cluster a connection reaches one node: use dedicated_for(key) (this one throws
  /// std::invalid_argument saying so).
  template <class Token = DefaultToken>
  auto dedicated(Token&& token = {}) const {
    return run_coroutine(make_dedicated(get_executor(), dedicated_config(nullptr)),
                         std::forward<Token>(token));
  }
  /// A dedicated connection to the master serving `key`'s slot now (on one server: dedicated()).
  /// Its commands must stay on that slot (hash tags: "{user:1}:a", "{user:1}:b"); a slot that
  /// moves away answers MOVED, as a ServerError.
  template <class Token = DefaultToken>
  auto dedicated_for(std::string_view key, Token&& token = {}) const {
    return run_coroutine(make_dedicated(get_executor(), dedicated_config(&key)),
                         std::forward<Token>(token));
  }
  /// Whether this client is a dedicated connection (see dedicated()).
  bool is_dedicated() const noexcept;

  /// Whether the shared connection is up now.
  bool is_connected() const noexcept { return state() == ConnectionState::connected; }
  /// The shared connection's state.
  ConnectionState state() const noexcept;
  /// The configuration this client was made with.
  const Config& config() const noexcept;
  /// Counters of the shared connection(s), summed over a cluster's nodes.
  ConnectionStats stats() const noexcept;
  /// Per server: this client's one server, or each node of a cluster's map (masters first; at
  /// most 32, the rest summed as "other").
  std::vector<NodeStats> node_stats() const;
  /// The last connection error (empty when none), e.g. "connection refused"; never a password.
  std::string last_error() const;
  /// The executor given at construction; plain callbacks run on it.
  const asio::any_io_executor& get_executor() const noexcept;

  // ---- any command
  // -------------------------------------------------------------------------------

  /// Any command; completes with its Reply. An error reply completes with ServerError carrying
  /// Redis's text. Commands that would break one-reply-per-request or change the connection for
  /// every caller (SUBSCRIBE, MONITOR, CLIENT REPLY, SELECT, WATCH / MULTI / EXEC on the shared
  /// connection, blocking commands...) are refused with std::invalid_argument before anything is
  /// sent (detail/commands.hpp has the table). Blocking commands on a dedicated connection get
  /// their blocking time added to the default deadline.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto command(Command c, Token&& token = {}) {
    return command(std::move(c), CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto command(Command c, CallOptions o, Token&& token = {}) {
    return launch(command_request(std::move(c), o), &detail::to_checked,
                  std::forward<Token>(token));
  }
  ///@}
  /// Commands written together in one write; one reply per command (error replies as values).
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto exec(const Pipeline& p, Token&& token = {}) {
    return exec(p, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto exec(const Pipeline& p, CallOptions o, Token&& token = {}) {
    return launch(pipeline_request(p, o), &detail::to_replies, std::forward<Token>(token));
  }
  ///@}
  /// MULTI, the commands, EXEC, written as one unit; the replies of EXEC (errors as values).
  /// Fails with ServerError when Redis refuses the transaction (EXECABORT), WatchError when a
  /// WATCHed key changed (WATCH runs on a dedicated connection).
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto transaction(const Pipeline& p, Token&& token = {}) {
    return transaction(p, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto transaction(const Pipeline& p, CallOptions o, Token&& token = {}) {
    return launch(transaction_request(p, o), &detail::to_transaction, std::forward<Token>(token));
  }
  ///@}

  // ---- typed helpers
  // -----------------------------------------------------------------------------
  /// GET: the value, nullopt when the key does not exist.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto get(std::string_view key, Token&& token = {}) {
    return get(key, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto get(std::string_view key, CallOptions o, Token&& token = {}) {
    return launch(key_request("GET", key, o), &detail::to_optional_string_reusing,
                  std::forward<Token>(token));
  }
  ///@}
  /// GET and PTTL of one key in one round trip (a cache's read: the value and how long it lives).
  /// A Redis error on either (a key of another type) fails it with ServerError.
  template <class Token = DefaultToken>
  auto get_with_ttl(std::string_view key, CallOptions o, Token&& token = {}) {
    return launch(get_with_ttl_request(key, o), &detail::to_value_with_ttl,
                  std::forward<Token>(token));
  }
  /// SET; completes with false when NX / XX prevented the write.
  ///@{
  template <TokenNot<SetOptions> Token = DefaultToken>
  auto set(std::string_view key, std::string_view value, Token&& token = {}) {
    return set(key, value, SetOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto set(std::string_view key, std::string_view value, SetOptions o, Token&& token = {}) {
    return launch(set_request(key, value, o, false), &detail::to_not_nil,
                  std::forward<Token>(token));
  }
  ///@}
  /// SET ... GET: the previous value (nullopt: there was none).
  ///@{
  template <TokenNot<SetOptions> Token = DefaultToken>
  auto set_get(std::string_view key, std::string_view value, Token&& token = {}) {
    return set_get(key, value, SetOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto set_get(std::string_view key, std::string_view value, SetOptions o, Token&& token = {}) {
    return launch(set_request(key, value, o, true), &detail::to_optional_string,
                  std::forward<Token>(token));
  }
  ///@}
  /// DEL: how many of the keys existed and were removed.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto del(const Keys& keys, Token&& token = {}) {
    return del(keys, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto del(const Keys& keys, CallOptions o, Token&& token = {}) {
    return launch(keys_request("DEL", keys, o), &detail::to_integer, std::forward<Token>(token));
  }
  ///@}
  /// UNLINK: like del(), the memory reclaimed by Redis in the background.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto unlink(const Keys& keys, Token&& token = {}) {
    return unlink(keys, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto unlink(const Keys& keys, CallOptions o, Token&& token = {}) {
    return launch(keys_request("UNLINK", keys, o), &detail::to_integer, std::forward<Token>(token));
  }
  ///@}
  /// EXISTS: how many of the keys exist (a key named twice counts twice).
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto exists(const Keys& keys, Token&& token = {}) {
    return exists(keys, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto exists(const Keys& keys, CallOptions o, Token&& token = {}) {
    return launch(keys_request("EXISTS", keys, o), &detail::to_integer, std::forward<Token>(token));
  }
  ///@}
  /// del(), unlink() and exists() with the keys as arguments: `co_await client.del(k1, k2)`.
  ///@{
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<long long> del(const K&... keys) {
    return command_as(cmd("DEL", keys...), &detail::to_integer);
  }
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<long long> unlink(const K&... keys) {
    return command_as(cmd("UNLINK", keys...), &detail::to_integer);
  }
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<long long> exists(const K&... keys) {
    return command_as(cmd("EXISTS", keys...), &detail::to_integer);
  }
  ///@}
  /// EXPIRE: true when the key exists and now expires after `ttl`.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto expire(std::string_view key, std::chrono::seconds ttl, Token&& token = {}) {
    return expire(key, ttl, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto expire(std::string_view key, std::chrono::seconds ttl, CallOptions o, Token&& token = {}) {
    return launch(expire_request(key, ttl, o), &detail::to_boolean, std::forward<Token>(token));
  }
  ///@}
  /// Seconds to live; -1 without expiry, -2 when the key does not exist (Redis's TTL).
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto ttl(std::string_view key, Token&& token = {}) {
    return ttl(key, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto ttl(std::string_view key, CallOptions o, Token&& token = {}) {
    return launch(key_request("TTL", key, o), &detail::to_integer, std::forward<Token>(token));
  }
  ///@}
  /// INCR: the value after the increment (a missing key counts as 0).
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto incr(std::string_view key, Token&& token = {}) {
    return incr(key, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto incr(std::string_view key, CallOptions o, Token&& token = {}) {
    return launch(key_request("INCR", key, o), &detail::to_integer, std::forward<Token>(token));
  }
  ///@}
  /// MGET: one value per key, nullopt where the key does not exist. On a cluster the keys may
  /// span slots: the client splits the call per node and puts the replies back in order.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto mget(const Keys& keys, Token&& token = {}) {
    return mget(keys, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto mget(const Keys& keys, CallOptions o, Token&& token = {}) {
    return launch(keys_request("MGET", keys, o), &detail::to_optional_strings,
                  std::forward<Token>(token));
  }
  ///@}
  /// mget() with the keys as arguments: `co_await client.mget(k1, k2)`.
  template <StringLike... K>
  requires(sizeof...(K) >
           0) asio::awaitable<std::vector<std::optional<std::string>>> mget(const K&... keys) {
    return command_as(cmd("MGET", keys...), &detail::to_optional_strings);
  }
  /// MSET of key/value pairs.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto mset(const std::vector<std::pair<std::string, std::string>>& kv, Token&& token = {}) {
    return mset(kv, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto mset(const std::vector<std::pair<std::string, std::string>>& kv, CallOptions o,
            Token&& token = {}) {
    return launch(mset_request(kv, o), &detail::to_ok, std::forward<Token>(token));
  }
  ///@}
  /// SADD: how many members were new.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto sadd(std::string_view key, const Keys& members, Token&& token = {}) {
    return sadd(key, members, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto sadd(std::string_view key, const Keys& members, CallOptions o, Token&& token = {}) {
    return launch(sadd_request(key, members, o), &detail::to_integer, std::forward<Token>(token));
  }
  ///@}
  /// sadd() with the members as arguments: `co_await client.sadd(set, m1, m2)`.
  template <StringLike... M>
  requires(sizeof...(M) > 0) asio::awaitable<long long> sadd(std::string_view key,
                                                             const M&... members) {
    return command_as(cmd("SADD", key, members...), &detail::to_integer);
  }
  /// SMEMBERS: the members of a set (empty when the key does not exist).
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto smembers(std::string_view key, Token&& token = {}) {
    return smembers(key, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto smembers(std::string_view key, CallOptions o, Token&& token = {}) {
    return launch(key_request("SMEMBERS", key, o), &detail::to_strings, std::forward<Token>(token));
  }
  ///@}
  /// SUNION: the members of the union of the sets.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto sunion(const Keys& keys, Token&& token = {}) {
    return sunion(keys, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto sunion(const Keys& keys, CallOptions o, Token&& token = {}) {
    return launch(keys_request("SUNION", keys, o), &detail::to_strings, std::forward<Token>(token));
  }
  ///@}
  /// sunion() with the keys as arguments: `co_await client.sunion(s1, s2)`.
  template <StringLike... K>
  requires(sizeof...(K) > 0) asio::awaitable<std::vector<std::string>> sunion(const K&... keys) {
    return command_as(cmd("SUNION", keys...), &detail::to_strings);
  }
  /// PING; on a cluster, every master is pinged and the call fails unless every slot has a
  /// master that answered (what a health check needs).
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto ping(Token&& token = {}) {
    return ping(CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto ping(CallOptions o, Token&& token = {}) {
    return launch(ping_request(o), &detail::to_string, std::forward<Token>(token));
  }
  ///@}
  /// PUBLISH: how many subscribers received the message.
  ///@{
  template <TokenNot<CallOptions> Token = DefaultToken>
  auto publish(std::string_view channel, std::string_view message, Token&& token = {}) {
    return publish(channel, message, CallOptions{}, std::forward<Token>(token));
  }
  template <class Token = DefaultToken>
  auto publish(std::string_view channel, std::string_view message, CallOptions o,
               Token&& token = {}) {
    return launch(plain_request(cmd("PUBLISH", channel, message), o), &detail::to_integer,
                  std::forward<Token>(token));
  }
  ///@}
  /// EVAL of a script's source with its KEYS and ARGV; the script's reply (errors fail the call).
  template <class Token = DefaultToken>
  auto eval(std::string_view script, const Keys& keys = {}, const Keys& args = {},
            CallOptions o = {}, Token&& token = {}) {
    return launch(script_request("EVAL", script, keys, args, o), &detail::to_checked,
                  std::forward<Token>(token));
  }
  /// EVALSHA of a loaded script's SHA-1; fails with ServerError NOSCRIPT when it is not loaded.
  template <class Token = DefaultToken>
  auto evalsha(std::string_view sha1, const Keys& keys = {}, const Keys& args = {},
               CallOptions o = {}, Token&& token = {}) {
    return launch(script_request("EVALSHA", sha1, keys, args, o), &detail::to_checked,
                  std::forward<Token>(token));
  }
  /// EVALSHA, and EVAL when the script is not loaded yet (NOSCRIPT).
  template <class Token = DefaultToken>
  auto run(const Script& script, const Keys& keys = {}, const Keys& args = {}, CallOptions o = {},
           Token&& token = {}) {
    return run_coroutine(run_script(*this, script, keys, args, o), std::forward<Token>(token));
  }

  // ---- Redis Cluster
  // -----------------------------------------------------------------------------
  /// Whether this client talks to a Redis Cluster (Config::cluster).
  bool is_cluster() const noexcept;
  /// The masters' addresses ("host:port"), sorted: on a cluster, those of the slot map now; on a
  /// single connection, its own address.
  std::vector<std::string> masters() const;
  /// Runs `c` on the node at `address` (one of masters(), or another node of the cluster's map),
  /// whatever its keys; redirects are not followed. Throws std::invalid_argument for an unknown
  /// address.
  template <class Token = DefaultToken>
  auto command_at(std::string_view address, Command c, CallOptions o = {}, Token&& token = {}) {
    return launch(node_request(address, std::move(c), o), &detail::to_checked,
                  std::forward<Token>(token));
  }
  /// Runs `c` on every master (on a single connection: on it); one reply per master in the order
  /// of masters(), error replies as values.
  template <class Token = DefaultToken>
  auto for_each_master(Command c, CallOptions o = {}, Token&& token = {}) {
    return launch(every_master_request(std::move(c), o), &detail::to_replies,
                  std::forward<Token>(token));
  }

  /// SCAN, on a cluster on every master in turn (a node's cursor starts again when the slot map
  /// changed during the iteration, so keys may come twice).
  Scanner scan(ScanOptions o = {}) const;
  /// Every matching key (for modest key counts; use scan() to stream large ones).
  template <class Token = DefaultToken>
  auto scan_all(ScanOptions o = {}, Token&& token = {}) {
    return run_coroutine(scan_everything(*this, std::move(o)), std::forward<Token>(token));
  }

 private:
  enum class RequestKindWait { first_attempt, ready, stopped };
  explicit Client(std::shared_ptr<detail::Backend> backend);

  template <class T, class Token>
  auto launch(detail::RequestRef r, T (*convert)(Reply&&), Token&& token) const {
    return asio::async_initiate<Token, typename detail::CompletionSignature<T>::type>(
        detail::Initiation<T>{backend_, convert}, token, detail::NewRequest(std::move(r)));
  }
  template <class T>
  asio::awaitable<T> command_as(Command c, T (*convert)(Reply&&)) {
    return launch(plain_request(std::move(c), {}), convert, DefaultToken{});
  }
  /// Runs a coroutine of the client's own: returned as is for use_awaitable, spawned on the
  /// client's executor with the token otherwise.
  template <class T, class Token>
  auto run_coroutine(asio::awaitable<T> a, Token&& token) const {
    if constexpr (std::is_same_v<std::decay_t<Token>, DefaultToken>) {
      return a;
    } else {
      return asio::co_spawn(get_executor(), std::move(a), std::forward<Token>(token));
    }
  }

  detail::RequestRef wait_request(RequestKindWait kind, Duration timeout) const;
  detail::RequestRef plain_request(Command c, const CallOptions& o) const;
  detail::RequestRef ping_request(const CallOptions& o) const;
  detail::RequestRef node_request(std::string_view address, Command c, const CallOptions& o) const;
  detail::RequestRef every_master_request(Command c, const CallOptions& o) const;
  friend struct Scanner::State;
  detail::RequestRef command_request(Command c, const CallOptions& o) const;
  detail::RequestRef pipeline_request(const Pipeline& p, const CallOptions& o) const;
  detail::RequestRef transaction_request(const Pipeline& p, const CallOptions& o) const;
  detail::RequestRef get_with_ttl_request(std::string_view key, const CallOptions& o) const;
  detail::RequestRef key_request(std::string_view name, std::string_view key,
                                 const CallOptions& o) const;
  void note_slot(detail::Request& r, std::string_view key) const noexcept;
  detail::RequestRef keys_request(std::string_view name, const Keys& keys,
                                  const CallOptions& o) const;
  detail::RequestRef set_request(std::string_view key, std::string_view value, const SetOptions& o,
                                 bool get) const;
  detail::RequestRef expire_request(std::string_view key, std::chrono::seconds ttl,
                                    const CallOptions& o) const;
  detail::RequestRef mset_request(const std::vector<std::pair<std::string, std::string>>& kv,
                                  const CallOptions& o) const;
  detail::RequestRef sadd_request(std::string_view key, const Keys& members,
                                  const CallOptions& o) const;
  detail::RequestRef script_request(std::string_view name, std::string_view body, const Keys& keys,
                                    const Keys& args, const CallOptions& o) const;
  /// Coroutines take what they use by value: with a token other than use_awaitable they run after
  /// the call has returned.
  static asio::awaitable<Client> make_dedicated(asio::any_io_executor ex, Config config);
  Config dedicated_config(const std::string_view* key) const;
  static asio::awaitable<Reply> run_script(Client self, Script script, Keys keys, Keys args,
                                           CallOptions o);
  static asio::awaitable<std::vector<std::string>> scan_everything(Client self, ScanOptions o);

  std::shared_ptr<detail::Backend> backend_;
};

}  // namespace tempest::redis
