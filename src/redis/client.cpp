#include "tempest/redis/client.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "cluster.hpp"
#include "link.hpp"
#include "replica_reads.hpp"
#include "tempest/redis/detail/commands.hpp"

namespace tempest::redis {

// ---- reply conversions ------------------------------------------------------------------------

namespace detail {

Reply to_checked(Reply&& r) {
  return std::move(r).checked();
}
Reply to_reply(Reply&& r) {
  return std::move(r);
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
std::vector<Reply> to_replies(Reply&& r) {
  return std::move(r).as_array();
}
std::vector<Reply> to_transaction(Reply&& r) {
  auto replies = std::move(r).as_array();
  if (replies.empty()) throw ProtocolError("a transaction without replies");
  if (replies.front().is_error()) throw ServerError("MULTI failed: " + replies.front().str());
  Reply exec = std::move(replies.back());
  if (exec.is_error()) throw ServerError(exec.str());
  if (exec.is_nil())
    throw WatchError("transaction aborted: a WATCHed key changed, so nothing was applied");
  return std::move(exec).as_array();
}
ValueWithTtl to_value_with_ttl(Reply&& r) {
  auto replies = std::move(r).as_array();
  if (replies.size() != 2) throw ProtocolError("GET + PTTL: not two replies");
  for (const auto& e : replies)
    if (e.is_error()) throw ServerError(e.str());
  ValueWithTtl out;
  out.value = std::move(replies[0]).as_optional_string();
  out.pttl = replies[1].is_integer() ? replies[1].integer() : -2;
  return out;
}
void to_connected(Reply&& r) {
  if (r.is_error()) throw ConnectionError(r.str());
}
bool to_is_up(Reply&& r) {
  return r.is_integer() && r.integer() == 1;
}
void to_nothing(Reply&&) {}

}  // namespace detail

namespace {

detail::RequestRef new_request(const std::optional<Duration>& timeout) {
  auto r = detail::RequestRef::make();
  if (timeout) {
    if (timeout->count() <= 0)
      throw std::invalid_argument("CallOptions::timeout must be positive, not " +
                                  std::to_string(timeout->count()) + " ms");
    r->set_timeout(*timeout);
  }
  return r;
}

void need_keys(std::string_view name, std::size_t n, const char* what = "key") {
  if (n == 0) throw std::invalid_argument(std::string(name) + " needs at least one " + what);
}

bool equals_ci(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

// How long a blocking command may block, from its own arguments (nullopt: forever, or unknown).
std::optional<Duration> blocking_time(const Command& c) {
  const auto seconds = [](std::string_view s) -> std::optional<Duration> {
    double v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || v <= 0) return std::nullopt;
    return Duration(static_cast<long long>(v * 1000.0 + 0.5));
  };
  const auto millis = [](std::string_view s) -> std::optional<Duration> {
    long long v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || v <= 0) return std::nullopt;
    return Duration(v);
  };
  const std::string_view name = c.name();
  const std::size_t n = c.argc();
  if (equals_ci(name, "BLMPOP") || equals_ci(name, "BZMPOP")) return seconds(c.argument(1));
  if (equals_ci(name, "WAIT")) return millis(c.argument(2));
  if (equals_ci(name, "WAITAOF")) return millis(c.argument(3));
  if (equals_ci(name, "XREAD") || equals_ci(name, "XREADGROUP")) {
    for (std::size_t i = 1; i + 1 < n; ++i)
      if (equals_ci(c.argument(i), "BLOCK")) return millis(c.argument(i + 1));
    return std::nullopt;
  }
  return seconds(c.argument(n - 1));  // BLPOP, BRPOP, BRPOPLPUSH, BLMOVE, BZPOPMIN, BZPOPMAX
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

Script::Script(std::string source) : source_(std::move(source)), sha1_(sha1_hex(source_)) {}

// ---- the handle -------------------------------------------------------------------------------

namespace {
std::shared_ptr<detail::Backend> make_backend(asio::any_io_executor executor, Config config) {
  if (config.cluster.enabled) return detail::make_cluster(std::move(executor), std::move(config));
  if (config.sentinel.enabled && config.sentinel.read_from_replicas)
    return std::make_shared<detail::ReplicaReads>(std::move(executor), std::move(config));
  return std::make_shared<detail::Link>(std::move(executor), std::move(config),
                                        detail::Venue::shared);
}
}  // namespace

Client::Client(asio::any_io_executor executor, Config config)
    : Client(make_backend(std::move(executor), std::move(config))) {}

Client::Client(std::shared_ptr<detail::Backend> backend) : backend_(std::move(backend)) {
  backend_->enroll();
  backend_->retain_user();
}

Client::Client(const Client& other) noexcept : backend_(other.backend_) {
  if (backend_) backend_->retain_user();
}

Client::Client(Client&& other) noexcept : backend_(std::move(other.backend_)) {}

Client& Client::operator=(const Client& other) noexcept {
  if (this != &other) {
    Client copy(other);
    std::swap(backend_, copy.backend_);
  }
  return *this;
}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (backend_) backend_->release_user();
    backend_ = std::move(other.backend_);
  }
  return *this;
}

Client::~Client() {
  if (backend_) backend_->release_user();
}

void Client::start() {
  backend_->start();
}

void Client::track(std::shared_ptr<InvalidationSink> sink) {
  if (!sink) throw std::invalid_argument("Client::track(): the sink is null");
  if (state() != ConnectionState::idle)
    throw std::logic_error("Client::track() must be called before connect() or start()");
  if (is_dedicated())
    throw std::invalid_argument("Client::track(): a dedicated connection is not tracked");
  backend_->track(std::move(sink));
}

void Client::close() noexcept {
  backend_->close();
}

bool Client::is_dedicated() const noexcept {
  return backend_->venue() == detail::Venue::dedicated;
}

ConnectionState Client::state() const noexcept {
  return backend_->state();
}

const Config& Client::config() const noexcept {
  return backend_->config();
}

ConnectionStats Client::stats() const noexcept {
  return backend_->stats();
}

std::string Client::last_error() const {
  return backend_->last_error();
}

const asio::any_io_executor& Client::get_executor() const noexcept {
  return backend_->executor();
}

// ---- requests ---------------------------------------------------------------------------------

detail::RequestRef Client::wait_request(RequestKindWait kind, Duration timeout) const {
  auto r = detail::RequestRef::make();
  r->set_kind(kind == RequestKindWait::stopped ? detail::RequestKind::wait_stopped
                                               : detail::RequestKind::wait_ready);
  if (kind == RequestKindWait::first_attempt) r->flags = detail::kWaitFirstAttempt;
  r->set_timeout(timeout);
  return r;
}

detail::RequestRef Client::plain_request(Command c, const CallOptions& o) const {
  auto r = new_request(o.timeout);
  r->command() = std::move(c);
  return r;
}

detail::RequestRef Client::ping_request(const CallOptions& o) const {
  auto r = plain_request(Command("PING"), o);
  r->route.mode = detail::RouteMode::every_master_same;
  r->route.used = true;  // cleared when the pooled request is reused, whatever the backend
  return r;
}

namespace {
detail::Cluster* cluster_of(const std::shared_ptr<detail::Backend>& b) {
  return dynamic_cast<detail::Cluster*>(b.get());
}
std::string own_address(const Config& c) {
  return c.host + ":" + std::to_string(c.port);
}
}  // namespace

ConnectionStats& ConnectionStats::operator+=(const ConnectionStats& o) noexcept {
  for (std::size_t i = 0; i < latency_buckets.size(); ++i)
    latency_buckets[i] += o.latency_buckets[i];
  latency_seconds_sum += o.latency_seconds_sum;
  commands += o.commands;
  errors += o.errors;
  timeouts += o.timeouts;
  reconnects += o.reconnects;
  connects += o.connects;
  writes += o.writes;
  rejected += o.rejected;
  pending += o.pending;
  return *this;
}

std::vector<NodeStats> Client::node_stats() const {
  return backend_->node_stats();
}

bool Client::is_cluster() const noexcept {
  return cluster_of(backend_) != nullptr;
}

std::vector<std::string> Client::masters() const {
  if (const auto* c = cluster_of(backend_)) return c->masters();
  return {own_address(config())};
}

detail::RequestRef Client::node_request(std::string_view address, Command c,
                                        const CallOptions& o) const {
  detail::check_command(c, backend_->venue());
  const void* node = nullptr;
  if (const auto* cl = cluster_of(backend_)) {
    node = cl->node_at(address);
    if (node == nullptr)
      throw std::invalid_argument("command_at: '" + std::string(address) +
                                  "' is not a node of the cluster's map (see masters())");
  } else if (address != own_address(config())) {
    throw std::invalid_argument("command_at: '" + std::string(address) +
                                "' is not this client's server (" + own_address(config()) + ")");
  }
  auto r = plain_request(std::move(c), o);
  if (node != nullptr) {
    r->route.mode = detail::RouteMode::node;
    r->route.node = node;
    r->route.used = true;
  }
  return r;
}

detail::RequestRef Client::every_master_request(Command c, const CallOptions& o) const {
  detail::check_command(c, backend_->venue());
  if (cluster_of(backend_) == nullptr) {
    // One "master": the reply as an array of one, like a one-command pipeline.
    Pipeline p;
    p.add(c);
    return pipeline_request(p, o);
  }
  auto r = plain_request(std::move(c), o);
  r->route.mode = detail::RouteMode::every_master;
  r->route.used = true;
  return r;
}

detail::RequestRef Client::command_request(Command c, const CallOptions& o) const {
  const auto venue = backend_->venue();
  detail::check_command(c, venue);
  CallOptions opts = o;
  const bool blocking = detail::command_traits(c).use == detail::CommandUse::blocking;
  if (blocking && !opts.timeout) {
    // Its default deadline is the command's own blocking time plus the usual command timeout.
    const auto blocks = blocking_time(c);
    if (!blocks)
      throw std::invalid_argument(
          std::string(c.name()) +
          " without a timeout of its own blocks until data arrives: give it one, or pass "
          "CallOptions::timeout (when that passes, the connection is closed, so that no data is "
          "taken for a caller that has given up)");
    opts.timeout = config().command_timeout + *blocks;
  }
  auto r = plain_request(std::move(c), opts);
  if (blocking) r->flags = detail::kBlockingCommand;
  return r;
}

detail::RequestRef Client::pipeline_request(const Pipeline& p, const CallOptions& o) const {
  detail::check_pipeline(p, backend_->venue());
  auto r = new_request(o.timeout);
  r->set_pipeline(p.wire(), p.size());
  return r;
}

detail::RequestRef Client::transaction_request(const Pipeline& p, const CallOptions& o) const {
  detail::check_pipeline(p, detail::Venue::transaction);
  auto r = new_request(o.timeout);
  std::string wire = Command("MULTI").wire();
  wire += p.wire();
  Command("EXEC").append_to(wire);
  r->set_pipeline(std::move(wire), p.size() + 2);
  r->route.transaction = true;
  r->route.used = true;
  return r;
}

// On a cluster, a request whose one key the client knows carries that key's slot.
void Client::note_slot(detail::Request& r, std::string_view key) const noexcept {
  if (!backend_->routes_by_slot()) return;
  r.route.slot = detail::key_slot(key);
  r.route.slot_known = true;
  r.route.used = true;
}

detail::RequestRef Client::get_with_ttl_request(std::string_view key, const CallOptions& o) const {
  auto r = new_request(o.timeout);
  // Two commands on one key, read-only and allowed everywhere: no pipeline checks to run. On a
  // cluster the pipeline is routed command by command, each with its redirects.
  std::string& wire = r->build_pipeline(2);
  Command("GET").arg(key).append_to(wire);
  Command("PTTL").arg(key).append_to(wire);
  return r;
}

detail::RequestRef Client::key_request(std::string_view name, std::string_view key,
                                       const CallOptions& o) const {
  auto r = new_request(o.timeout);
  r->command().arg(name).arg(key);
  note_slot(*r, key);
  return r;
}

detail::RequestRef Client::keys_request(std::string_view name, const Keys& keys,
                                        const CallOptions& o) const {
  need_keys(name, keys.size());
  auto r = new_request(o.timeout);
  Command& c = r->command();
  c.arg(name);
  for (const auto& k : keys)
    c.arg(k);
  return r;
}

detail::RequestRef Client::set_request(std::string_view key, std::string_view value,
                                       const SetOptions& o, bool get) const {
  const int expiries =
      (o.expire_seconds ? 1 : 0) + (o.expire_millis ? 1 : 0) + (o.keep_ttl ? 1 : 0);
  if (expiries > 1) throw std::invalid_argument("SET: EX, PX and KEEPTTL are mutually exclusive");
  if (o.expire_seconds && o.expire_seconds->count() <= 0)
    throw std::invalid_argument("SET: EX must be positive");
  if (o.expire_millis && o.expire_millis->count() <= 0)
    throw std::invalid_argument("SET: PX must be positive");
  auto r = new_request(o.timeout);
  Command& c = r->command();
  c.arg("SET").arg(key).arg(value);
  if (o.expire_seconds) c.arg("EX").arg(o.expire_seconds->count());
  if (o.expire_millis) c.arg("PX").arg(o.expire_millis->count());
  if (o.keep_ttl) c.arg("KEEPTTL");
  if (o.condition == SetCondition::if_not_exists) c.arg("NX");
  if (o.condition == SetCondition::if_exists) c.arg("XX");
  if (get) c.arg("GET");
  note_slot(*r, key);
  return r;
}

detail::RequestRef Client::expire_request(std::string_view key, std::chrono::seconds ttl,
                                          const CallOptions& o) const {
  auto r = new_request(o.timeout);
  r->command().arg("EXPIRE").arg(key).arg(ttl.count());
  note_slot(*r, key);
  return r;
}

detail::RequestRef Client::mset_request(const std::vector<std::pair<std::string, std::string>>& kv,
                                        const CallOptions& o) const {
  need_keys("MSET", kv.size());
  auto r = new_request(o.timeout);
  Command& c = r->command();
  c.arg("MSET");
  for (const auto& [k, v] : kv)
    c.arg(k).arg(v);
  return r;
}

detail::RequestRef Client::sadd_request(std::string_view key, const Keys& members,
                                        const CallOptions& o) const {
  need_keys("SADD", members.size(), "member");
  auto r = new_request(o.timeout);
  Command& c = r->command();
  c.arg("SADD").arg(key);
  for (const auto& m : members)
    c.arg(m);
  return r;
}

detail::RequestRef Client::script_request(std::string_view name, std::string_view body,
                                          const Keys& keys, const Keys& args,
                                          const CallOptions& o) const {
  auto r = new_request(o.timeout);
  Command& c = r->command();
  c.arg(name).arg(body).arg(keys.size());
  for (const auto& k : keys)
    c.arg(k);
  for (const auto& v : args)
    c.arg(v);
  return r;
}

// ---- coroutines -------------------------------------------------------------------------------

Config Client::dedicated_config(const std::string_view* key) const {
  const auto* cluster = cluster_of(backend_);
  if (cluster == nullptr) return config();
  if (key == nullptr)
    throw std::invalid_argument(
        "dedicated() on a Redis Cluster: a dedicated connection reaches one node; use "
        "dedicated_for(key) for the master of that key's slot");
  const auto slot = detail::key_slot(*key);
  const std::string address = cluster->master_address(slot);
  if (address.empty())
    throw ConnectionError("dedicated_for: no master of the cluster serves slot " +
                          std::to_string(slot) + " yet (connect() first)");
  Config c = config();
  c.cluster = ClusterOptions{};
  const auto colon = address.rfind(':');
  c.host = address.substr(0, colon);
  c.port = static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)));
  return c;
}

asio::awaitable<Client> Client::make_dedicated(asio::any_io_executor ex, Config config) {
  Client c(
      std::make_shared<detail::Link>(std::move(ex), std::move(config), detail::Venue::dedicated));
  co_await c.connect();
  co_return c;
}

asio::awaitable<Reply> Client::run_script(Client self, Script script, Keys keys, Keys args,
                                          CallOptions o) {
  Reply r = co_await self.launch(self.script_request("EVALSHA", script.sha1(), keys, args, o),
                                 &detail::to_reply, DefaultToken{});
  if (r.is_error() && r.str().starts_with("NOSCRIPT"))
    r = co_await self.launch(self.script_request("EVAL", script.source(), keys, args, o),
                             &detail::to_reply, DefaultToken{});
  co_return std::move(r).checked();
}

struct Scanner::State {
  explicit State(Client c) : client(std::move(c)) {}
  Client client;
  ScanOptions opts;
  std::string cursor = "0";
  bool done = false;
  // On a cluster: the masters still to scan (the first is being scanned), the slot map's epoch
  // when this round began, and how often the map changed under the scan.
  std::vector<std::string> nodes;
  std::uint64_t epoch = 0;
  int restarts = 0;
  bool started = false;

  std::uint64_t topology_epoch() const {
    const auto* c = cluster_of(client.backend_);
    return c != nullptr ? c->epoch() : 0;
  }
};

namespace {

// Slot maps changing more often than this during one scan stop restarting it (resharding
// under way); keys may then be missed, as SCAN itself may miss keys moved during a scan.
constexpr int kMaxScanRestarts = 16;

asio::awaitable<std::optional<std::vector<std::string>>> scan_next(
    std::shared_ptr<Scanner::State> st) {
  if (st->done) co_return std::nullopt;
  const bool cluster = st->client.is_cluster();
  if (cluster) {
    const std::uint64_t epoch = st->topology_epoch();
    if (!st->started || (epoch != st->epoch && st->restarts < kMaxScanRestarts)) {
      // Every master of the map now, from the start: a slot may have moved to a master that
      // was already scanned.
      if (st->started) ++st->restarts;
      st->started = true;
      st->epoch = epoch;
      st->nodes = st->client.masters();
      st->cursor = "0";
    }
    if (st->nodes.empty()) {
      st->done = true;
      co_return std::nullopt;
    }
  }
  Command c("SCAN");
  c.arg(st->cursor).arg("MATCH").arg(st->opts.match).arg("COUNT");
  c.arg(std::max<std::size_t>(1, st->opts.count));
  if (!st->opts.type.empty()) c.arg("TYPE").arg(st->opts.type);
  // Not one conditional expression with a co_await in each branch: g++ 12 destroys the
  // temporaries of such an expression twice.
  Reply reply;
  if (cluster)
    reply = co_await st->client.command_at(st->nodes.front(), std::move(c),
                                           CallOptions{st->opts.timeout});
  else
    reply = co_await st->client.command(std::move(c), CallOptions{st->opts.timeout});
  auto parts = std::move(reply).as_array();
  if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_array())
    throw ProtocolError("unexpected SCAN reply shape");
  st->cursor = std::move(parts[0]).as_string();
  if (st->cursor == "0") {
    if (cluster && st->nodes.size() > 1) {
      st->nodes.erase(st->nodes.begin());
    } else if (cluster && st->topology_epoch() != st->epoch && st->restarts < kMaxScanRestarts) {
      // The map changed during the last page: the next call starts again on every master.
    } else {
      st->done = true;
    }
  }
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
  auto st = std::make_shared<Scanner::State>(*this);
  st->opts = std::move(o);
  return Scanner(std::move(st));
}

asio::awaitable<std::vector<std::string>> Client::scan_everything(Client self, ScanOptions o) {
  Scanner s = self.scan(std::move(o));
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

}  // namespace tempest::redis
