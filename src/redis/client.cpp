#include "tempest/redis/client.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

namespace tempest::redis {
namespace {

using Conn = std::shared_ptr<Connection>;

// Reply conversions, run by the connection as the reply arrives (Connection::exec_as). Each public
// helper builds its Command eagerly (copying the caller's views) and hands it to exec_as with one
// of these, so no view is read after the caller's expression ends.
Reply to_checked(Reply&& r) {
  return std::move(r).checked();
}
bool to_not_nil(Reply&& r) {
  return !std::move(r).checked().is_nil();
}
void to_ok(Reply&& r) {
  (void)std::move(r).checked();
}
std::string to_string(Reply&& r) {
  return std::move(r).as_string();
}
long long to_integer(Reply&& r) {
  return r.as_integer();
}
bool to_boolean(Reply&& r) {
  return r.as_integer() != 0;
}
std::optional<std::string> to_optional_string(Reply&& r) {
  return std::move(r).as_optional_string();
}
std::vector<std::string> to_strings(Reply&& r) {
  std::vector<std::string> out;
  for (auto& e : std::move(r).as_array())
    out.push_back(std::move(e).as_string());
  return out;
}
std::vector<std::optional<std::string>> to_optional_strings(Reply&& r) {
  std::vector<std::optional<std::string>> out;
  for (auto& e : std::move(r).as_array())
    out.push_back(std::move(e).as_optional_string());
  return out;
}

Command with_args(std::string_view name, const Keys& a) {
  if (a.empty()) throw std::invalid_argument(std::string(name) + " needs at least one key");
  Command c(name);
  for (const auto& s : a)
    c.arg(s);
  return c;
}

Command script_command(std::string_view name, std::string_view body, const Keys& keys,
                       const Keys& args) {
  Command c(name);
  c.arg(body).arg(keys.size());
  for (const auto& k : keys)
    c.arg(k);
  for (const auto& v : args)
    c.arg(v);
  return c;
}

Command set_command(std::string_view key, std::string_view value, const SetOptions& o) {
  Command c("SET");
  c.arg(key).arg(value);
  const int expiries =
      (o.expire_seconds ? 1 : 0) + (o.expire_millis ? 1 : 0) + (o.keep_ttl ? 1 : 0);
  if (expiries > 1) throw std::invalid_argument("SET: EX, PX and KEEPTTL are mutually exclusive");
  if (o.expire_seconds) {
    if (o.expire_seconds->count() <= 0) throw std::invalid_argument("SET: EX must be positive");
    c.arg("EX").arg(o.expire_seconds->count());
  }
  if (o.expire_millis) {
    if (o.expire_millis->count() <= 0) throw std::invalid_argument("SET: PX must be positive");
    c.arg("PX").arg(o.expire_millis->count());
  }
  if (o.keep_ttl) c.arg("KEEPTTL");
  if (o.condition == SetCondition::if_not_exists) c.arg("NX");
  if (o.condition == SetCondition::if_exists) c.arg("XX");
  return c;
}

bool equals_ci(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

asio::awaitable<std::vector<Reply>> transaction_impl(Conn c, Pipeline p, CallOptions o) {
  auto replies = co_await c->exec(p, o);
  Reply exec = std::move(replies.back());
  if (exec.is_error()) throw ServerError(exec.str());
  if (exec.is_nil()) throw Error("transaction aborted: a WATCHed key changed");
  co_return std::move(exec).as_array();
}

asio::awaitable<Reply> run_script(Conn c, Command evalsha, Command eval, CallOptions o) {
  Reply r = co_await c->exec(std::move(evalsha), o);
  if (r.is_error() && r.str().starts_with("NOSCRIPT")) r = co_await c->exec(std::move(eval), o);
  co_return std::move(r).checked();
}

asio::awaitable<void> connect_impl(Conn c) {
  c->start();
  if (!co_await c->wait_connected(c->config().connect_timeout)) {
    std::string why = c->last_error();
    throw ConnectionError("cannot connect to " + c->config().redacted() +
                          (why.empty() ? std::string(": timed out") : ": " + why));
  }
}

std::string sha1_hex(std::string_view s) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

}  // namespace

asio::awaitable<std::vector<std::string>> scan_everything(Client client, ScanOptions o) {
  Scanner s = client.scan(std::move(o));
  std::vector<std::string> all;
  for (;;) {
    auto batch = co_await s.next();
    if (!batch) break;
    for (auto& k : *batch)
      all.push_back(std::move(k));
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  co_return all;
}

Script::Script(std::string source) : source_(std::move(source)), sha1_(sha1_hex(source_)) {}

Client::Client(asio::any_io_executor executor, Config config)
    : conn_(std::make_shared<Connection>(std::move(executor), std::move(config))) {}

asio::awaitable<void> Client::connect() {
  return connect_impl(conn_);
}

asio::awaitable<Reply> Client::command(Command c, CallOptions o) {
  const auto name = c.name();
  for (std::string_view refused : {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR"})
    if (equals_ci(name, refused))
      throw std::invalid_argument(std::string(refused) +
                                  " needs a dedicated connection; it is not supported on the "
                                  "shared, pipelined connection");
  if (c.empty()) throw std::invalid_argument("empty command");
  return conn_->exec_as(std::move(c), o, &to_checked);
}

asio::awaitable<std::vector<Reply>> Client::exec(const Pipeline& p, CallOptions o) {
  return conn_->exec(p, o);
}

asio::awaitable<std::vector<Reply>> Client::transaction(const Pipeline& p, CallOptions o) {
  Pipeline all;
  all.add("MULTI");
  // Re-encode: the pipeline's wire is already RESP, so splice it between MULTI and EXEC.
  Pipeline tail;
  tail.add("EXEC");
  std::string wire = all.wire() + p.wire() + tail.wire();
  Pipeline whole = Pipeline::from_wire(std::move(wire), p.size() + 2);
  return transaction_impl(conn_, std::move(whole), o);
}

asio::awaitable<std::optional<std::string>> Client::get(std::string_view key, CallOptions o) {
  return conn_->exec_as(cmd("GET", key), o, &to_optional_string);
}

asio::awaitable<bool> Client::set(std::string_view key, std::string_view value, SetOptions o) {
  Command c = set_command(key, value, o);
  return conn_->exec_as(std::move(c), CallOptions{o.timeout}, &to_not_nil);
}

asio::awaitable<std::optional<std::string>> Client::set_get(std::string_view key,
                                                            std::string_view value, SetOptions o) {
  Command c = set_command(key, value, o);
  c.arg("GET");
  return conn_->exec_as(std::move(c), CallOptions{o.timeout}, &to_optional_string);
}

asio::awaitable<long long> Client::integer_reply(Command c, CallOptions o) {
  return conn_->exec_as(std::move(c), o, &to_integer);
}

asio::awaitable<std::vector<std::string>> Client::strings_reply(Command c, CallOptions o) {
  return conn_->exec_as(std::move(c), o, &to_strings);
}

asio::awaitable<std::vector<std::optional<std::string>>> Client::optional_strings_reply(
    Command c, CallOptions o) {
  return conn_->exec_as(std::move(c), o, &to_optional_strings);
}

asio::awaitable<long long> Client::del(const Keys& keys, CallOptions o) {
  return conn_->exec_as(with_args("DEL", keys), o, &to_integer);
}

asio::awaitable<long long> Client::unlink(const Keys& keys, CallOptions o) {
  return conn_->exec_as(with_args("UNLINK", keys), o, &to_integer);
}

asio::awaitable<long long> Client::exists(const Keys& keys, CallOptions o) {
  return conn_->exec_as(with_args("EXISTS", keys), o, &to_integer);
}

asio::awaitable<bool> Client::expire(std::string_view key, std::chrono::seconds ttl,
                                     CallOptions o) {
  return conn_->exec_as(cmd("EXPIRE", key, ttl.count()), o, &to_boolean);
}

asio::awaitable<long long> Client::ttl(std::string_view key, CallOptions o) {
  return conn_->exec_as(cmd("TTL", key), o, &to_integer);
}

asio::awaitable<long long> Client::incr(std::string_view key, CallOptions o) {
  return conn_->exec_as(cmd("INCR", key), o, &to_integer);
}

asio::awaitable<std::vector<std::optional<std::string>>> Client::mget(const Keys& keys,
                                                                      CallOptions o) {
  return conn_->exec_as(with_args("MGET", keys), o, &to_optional_strings);
}

asio::awaitable<void> Client::mset(const std::vector<std::pair<std::string, std::string>>& kv,
                                   CallOptions o) {
  if (kv.empty()) throw std::invalid_argument("MSET needs at least one key");
  Command c("MSET");
  for (const auto& [k, v] : kv)
    c.arg(k).arg(v);
  return conn_->exec_as(std::move(c), o, &to_ok);
}

asio::awaitable<long long> Client::sadd(std::string_view key, const Keys& members, CallOptions o) {
  if (members.empty()) throw std::invalid_argument("SADD needs at least one member");
  Command c("SADD");
  c.arg(key);
  for (const auto& m : members)
    c.arg(m);
  return conn_->exec_as(std::move(c), o, &to_integer);
}

asio::awaitable<std::vector<std::string>> Client::smembers(std::string_view key, CallOptions o) {
  return conn_->exec_as(cmd("SMEMBERS", key), o, &to_strings);
}

asio::awaitable<std::vector<std::string>> Client::sunion(const Keys& keys, CallOptions o) {
  return conn_->exec_as(with_args("SUNION", keys), o, &to_strings);
}

asio::awaitable<std::string> Client::ping(CallOptions o) {
  return conn_->exec_as(Command("PING"), o, &to_string);
}

asio::awaitable<long long> Client::publish(std::string_view channel, std::string_view message,
                                           CallOptions o) {
  return conn_->exec_as(cmd("PUBLISH", channel, message), o, &to_integer);
}

asio::awaitable<Reply> Client::eval(std::string_view script, const Keys& keys, const Keys& args,
                                    CallOptions o) {
  return conn_->exec_as(script_command("EVAL", script, keys, args), o, &to_checked);
}

asio::awaitable<Reply> Client::evalsha(std::string_view sha1, const Keys& keys, const Keys& args,
                                       CallOptions o) {
  return conn_->exec_as(script_command("EVALSHA", sha1, keys, args), o, &to_checked);
}

asio::awaitable<Reply> Client::run(const Script& script, const Keys& keys, const Keys& args,
                                   CallOptions o) {
  return run_script(conn_, script_command("EVALSHA", script.sha1(), keys, args),
                    script_command("EVAL", script.source(), keys, args), o);
}

struct Scanner::State {
  Conn conn;
  ScanOptions opts;
  std::string cursor = "0";
  bool done = false;
};

namespace {
asio::awaitable<std::optional<std::vector<std::string>>> scan_next(
    std::shared_ptr<Scanner::State> st) {
  if (st->done) co_return std::nullopt;
  Command c("SCAN");
  c.arg(st->cursor).arg("MATCH").arg(st->opts.match).arg("COUNT");
  c.arg(std::max<std::size_t>(1, st->opts.count));
  if (!st->opts.type.empty()) c.arg("TYPE").arg(st->opts.type);
  Reply reply = co_await st->conn->exec(std::move(c), CallOptions{st->opts.timeout});
  auto parts = std::move(reply).as_array();
  if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_array())
    throw ProtocolError("unexpected SCAN reply shape");
  st->cursor = std::move(parts[0]).as_string();
  if (st->cursor == "0") st->done = true;
  std::vector<std::string> keys;
  keys.reserve(parts[1].elements().size());
  for (auto& k : parts[1].elements())
    keys.push_back(std::move(k).as_string());
  co_return keys;
}
}  // namespace

asio::awaitable<std::optional<std::vector<std::string>>> Scanner::next() {
  return scan_next(state_);
}

Scanner Client::scan(ScanOptions o) const {
  return Scanner(std::make_shared<Scanner::State>(Scanner::State{conn_, std::move(o)}));
}

asio::awaitable<std::vector<std::string>> Client::scan_all(ScanOptions o) {
  return scan_everything(*this, std::move(o));
}

}  // namespace tempest::redis
