#include "cluster.hpp"
#include "tracking.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <map>

#include "link.hpp"
#include "tempest/log.hpp"
#include "tempest/redis/client.hpp"
#include "tempest/redis/detail/async.hpp"
#include "tempest/redis/error.hpp"

namespace tempest::redis::detail {

using boost::system::error_code;

namespace {

// A refresh is never started less than this after the previous one (MOVED storms coalesce).
constexpr Duration kMinRefreshGap{100};
// Retries of TRYAGAIN, CLUSTERDOWN and unreachable nodes wait this long, doubling up to the cap.
constexpr Duration kFirstBackoff{10};
constexpr Duration kMaxBackoff{200};

Duration backoff(const Request& r) {
  const int shift = std::min<int>(r.route.redirects, 5);
  return std::min(kMaxBackoff, Duration(kFirstBackoff.count() << shift));
}

std::string millis(Clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

std::string crossslot_message(std::string_view first, std::string_view second) {
  std::string m = "CROSSSLOT Keys in request don't hash to the same slot: '";
  m += first;
  m += "' is in slot " + std::to_string(key_slot(first)) + " and '";
  m += second;
  m += "' in slot " + std::to_string(key_slot(second)) +
       "; on a cluster, keys used together (a transaction, a multi-key command, a script) need "
       "one hash tag, e.g. {user:42}:cart and {user:42}:profile";
  return m;
}

// "host:port" (the host may be an IPv6 address without brackets, as Redis writes it).
bool split_address(std::string_view a, std::string& host, std::uint16_t& port) {
  const auto colon = a.rfind(':');
  if (colon == std::string_view::npos) return false;
  unsigned p = 0;
  const auto digits = a.substr(colon + 1);
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), p);
  if (r.ec != std::errc() || r.ptr != digits.data() + digits.size() || p == 0 || p > 65535)
    return false;
  host = std::string(a.substr(0, colon));
  port = static_cast<std::uint16_t>(p);
  return true;
}

std::string address_of(const std::string& host, std::uint16_t port) {
  return host + ":" + std::to_string(port);
}

}  // namespace

// ---- the parts --------------------------------------------------------------------------------

struct Cluster::Node {
  std::string host;
  std::uint16_t port = 0;
  std::string address;
  std::shared_ptr<Link> link;        // under Cluster::mu_; opened on first use
  std::atomic<Link*> live{nullptr};  // the same, readable without the lock
  bool in_map = false;               // under Cluster::mu_
};

struct Cluster::Shard {
  Node* master = nullptr;
  std::vector<Node*> replicas;
  mutable std::atomic<std::uint32_t> next{0};  // the replica that serves the next read
};

struct Cluster::Redirect {
  enum class Kind : std::uint8_t { none, moved, ask, retry, refresh_retry } kind = Kind::none;
  std::uint32_t slot = 0;
  std::string address;
};

// A request split into parts routed on their own; the caller's result is put together when the
// last part is done.
struct Cluster::Fanout {
  enum class Combine : std::uint8_t {
    replies,          // one reply per part, in order (a pipeline, every master)
    values_in_order,  // MGET: the parts' values back in the caller's key order
    sum,              // DEL, UNLINK, EXISTS, TOUCH: the parts' counts added
    all_ok,           // MSET
    same,             // PING of every master: one reply when all answered
  };

  RequestRef user;
  Combine how = Combine::replies;
  std::shared_ptr<Cluster> cluster;
  std::vector<RequestRef> parts;
  std::vector<std::vector<std::uint32_t>> positions;  // values_in_order: each part's keys
  std::vector<Reply> results;                         // one per part (or per key)
  std::atomic<std::size_t> pending{0};
  Lock lock;  // error, and parts once the fanout is under way
  std::exception_ptr error;

  void part_done(std::size_t index, std::exception_ptr e, Reply r) {
    if (e && how == Combine::replies) {
      // A pipeline's command refused on its own (CROSSSLOT, found before sending) is an error
      // reply in its place, as on one server; a lost connection or a timeout fails the whole.
      try {
        std::rethrow_exception(e);
      } catch (const ServerError& refused) {
        e = nullptr;
        r = Reply::error(refused.what());
      } catch (...) {
      }
    }
    if (e) {
      std::lock_guard g(lock);
      if (!error) error = std::move(e);
    } else if (how == Combine::values_in_order && r.is_array()) {
      auto& values = r.elements();
      const auto& where = positions[index];
      for (std::size_t i = 0; i < where.size() && i < values.size(); ++i)
        results[where[i]] = std::move(values[i]);
    } else if (how == Combine::values_in_order) {
      std::lock_guard g(lock);  // an error reply of one part answers for all
      if (!error) error = std::make_exception_ptr(ServerError(r.is_error() ? r.str() : "MGET"));
    } else {
      results[index] = std::move(r);
    }
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) finish();
  }

  void finish() {
    Request* u = user.get();
    std::exception_ptr e;
    {
      std::lock_guard g(lock);
      e = error;
    }
    Reply out;
    if (!e) {
      switch (how) {
        case Combine::replies:
        case Combine::values_in_order:
          out = Reply::array(std::move(results));
          break;
        case Combine::sum: {
          long long total = 0;
          for (auto& r : results) {
            if (!r.is_integer()) {
              out = std::move(r);
              break;
            }
            total += r.integer();
          }
          if (out.is_nil()) out = Reply::integer(total);
          break;
        }
        case Combine::all_ok:
        case Combine::same:
          out = results.empty() ? Reply::status("OK") : results.front();
          for (auto& r : results)
            if (r.is_error()) {
              out = std::move(r);
              break;
            }
          break;
      }
    }
    u->set_result(std::move(e), std::move(out));
    std::shared_ptr<Cluster> c = std::move(cluster);
    RequestRef done = std::move(user);
    std::vector<RequestRef> gone;
    {
      std::lock_guard g(lock);  // Cluster::cancel copies the parts under it
      gone.swap(parts);
    }
    gone.clear();
    c->deliver(std::move(done), true);
  }
};

struct Cluster::PartDone {
  std::shared_ptr<Fanout> fanout;
  std::size_t index;
  void operator()(std::exception_ptr e, Reply r) const {
    fanout->part_done(index, std::move(e), std::move(r));
  }
};

Cluster::Redirect Cluster::parse_redirect(const Reply& e) {
  using Kind = Redirect::Kind;
  Redirect d;
  if (!e.is_error()) return d;
  const std::string& s = e.str();
  const bool moved = s.starts_with("MOVED ");
  if (moved || s.starts_with("ASK ")) {
    // "MOVED <slot> <host>:<port>"
    const auto sp1 = s.find(' ');
    const auto sp2 = s.find(' ', sp1 + 1);
    if (sp2 == std::string::npos) return d;
    unsigned slot = 0;
    const auto r = std::from_chars(s.data() + sp1 + 1, s.data() + sp2, slot);
    if (r.ec != std::errc() || slot >= kSlots) return d;
    d.kind = moved ? Kind::moved : Kind::ask;
    d.slot = slot;
    d.address = s.substr(sp2 + 1);
    return d;
  }
  if (s.starts_with("TRYAGAIN")) d.kind = Kind::retry;
  // The cluster is failing over, or a write reached a node that is a replica now.
  if (s.starts_with("CLUSTERDOWN") || s.starts_with("READONLY") || s.starts_with("MASTERDOWN"))
    d.kind = Kind::refresh_retry;
  return d;
}

// ---- construction -----------------------------------------------------------------------------

std::shared_ptr<Backend> make_cluster(asio::any_io_executor executor, Config config) {
  return std::make_shared<Cluster>(std::move(executor), std::move(config));
}

Cluster::Cluster(asio::any_io_executor executor, Config config)
    : executor_(std::move(executor)),
      strand_(asio::make_strand(executor_)),
      cfg_(std::move(config)),
      slots_(new std::atomic<const Shard*>[kSlots]),
      wake_(strand_) {
  cfg_.validate();
  // Replica reads need to know whether a command only reads: the cluster reads it then.
  routes_by_slot_ = !cfg_.cluster.read_from_replicas;
  if (!cfg_.cluster.enabled)
    throw ConfigError("invalid Redis config: a cluster client needs cluster.enabled");
  node_cfg_ = cfg_;
  node_cfg_.cluster = ClusterOptions{};
  // A node that cannot be reached fails its requests at once: they are sent elsewhere.
  node_cfg_.when_disconnected = Config::WhenDisconnected::fail;
  for (std::size_t i = 0; i < kSlots; ++i)
    slots_[i].store(nullptr, std::memory_order_relaxed);
  // TLS files are loaded now, so that a bad one fails here and not at the first node.
  if (cfg_.tls.enabled) Link probe(executor_, node_cfg_, Venue::shared);
  std::lock_guard lock(mu_);
  (void)node_locked(cfg_.host, cfg_.port);
  for (const auto& s : cfg_.cluster.seeds)
    (void)node_locked(s.host, s.port);
}

Cluster::~Cluster() {
  for (auto& [address, node] : nodes_)
    if (node->link) node->link->close();
  for (auto& r : retired_)
    r.link->close();
  if (tracker_) tracker_->close();
}

Cluster::Node& Cluster::node_locked(const std::string& host, std::uint16_t port) {
  std::string address = address_of(host, port);
  auto& slot = nodes_[address];
  if (!slot) {
    slot = std::make_unique<Node>();
    slot->host = host;
    slot->port = port;
    slot->address = std::move(address);
  }
  return *slot;
}

void Cluster::track(std::shared_ptr<InvalidationSink> sink) {
  std::lock_guard lock(mu_);
  tracker_ = std::make_shared<Tracker>(executor_, node_cfg_, std::move(sink));
}

Link* Cluster::link_of(Node& n) {
  if (Link* l = n.live.load(std::memory_order_acquire)) return l;
  std::lock_guard lock(mu_);
  if (!n.link) {
    if (stopped_) return nullptr;
    Config c = node_cfg_;
    c.host = n.host;
    c.port = n.port;
    auto link = std::make_shared<Link>(executor_, std::move(c), Venue::shared);
    link->enroll();
    link->set_cluster_node();
    if (cfg_.cluster.read_from_replicas) link->set_readonly();
    if (tracker_) tracker_->attach(link);
    link->start();
    n.link = std::move(link);
    n.live.store(n.link.get(), std::memory_order_release);
  }
  return n.link.get();
}

// ---- lifecycle --------------------------------------------------------------------------------

void Cluster::start() {
  {
    std::lock_guard lock(mu_);
    if (started_ || stopped_) return;
    started_ = true;
    started_flag_.store(true, std::memory_order_release);
    refresh_wanted_ = true;
  }
  asio::co_spawn(strand_, refresh_loop(shared_from_this()), asio::detached);
}

void Cluster::close() noexcept {
  std::vector<std::shared_ptr<Link>> links;
  std::vector<RequestRef> waiters;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    stopped_ = true;
    stopped_flag_.store(true, std::memory_order_release);
    for (auto& [address, node] : nodes_)
      if (node->link) links.push_back(node->link);
    waiters = take_waiters_locked();
  }
  for (auto& l : links)
    l->close();
  if (tracker_) tracker_->close();
  for (auto& w : waiters)
    finish(std::move(w), Reply::error("the Redis cluster client was closed"));
  wake_loop();
}

void Cluster::wake_loop() noexcept {
  try {
    asio::post(strand_, [self = shared_from_this()] {
      {
        std::lock_guard lock(self->mu_);
        self->wake_posted_ = false;
      }
      self->wake_.cancel();
    });
  } catch (...) {
  }
}

void Cluster::finish(RequestRef ref, Reply reply) noexcept {
  Request* r = ref.detach();
  r->set_result(nullptr, std::move(reply));
  if (r->has_handler()) {
    r->deliver(executor_, false);
  } else {
    r->release();
  }
}

ConnectionState Cluster::state() const noexcept {
  std::lock_guard lock(mu_);
  if (stopped_) return ConnectionState::stopped;
  if (!started_) return ConnectionState::idle;
  if (map_ok_) return ConnectionState::connected;
  if (refresh_failed_ || !last_error_.empty()) return ConnectionState::disconnected;
  return ConnectionState::connecting;
}

ConnectionStats Cluster::stats() const noexcept {
  ConnectionStats total;
  std::lock_guard lock(mu_);
  for (const auto& [address, node] : nodes_)
    if (node->link) total += node->link->stats();
  for (const auto& r : retired_)
    total += r.link->stats();
  total += retired_stats_;
  return total;
}

std::vector<NodeStats> Cluster::node_stats() const {
  // The nodes of the map this client has a connection to (masters first, by address), at most
  // kNodeLabels of them: a metrics label per node stays bounded whatever the cluster's size; the
  // rest, and nodes that left the map, are summed as "other".
  std::vector<NodeStats> out;
  NodeStats other;
  other.address = "other";
  other.connected = true;
  bool any_other = false;
  std::lock_guard lock(mu_);
  std::vector<const Node*> nodes;
  for (const auto& [address, node] : nodes_)
    if (node->in_map && node->link) nodes.push_back(node.get());  // the nodes this client uses
  const auto is_master = [&](const Node* n) {
    return std::find(masters_.begin(), masters_.end(), n) != masters_.end();
  };
  std::sort(nodes.begin(), nodes.end(), [&](const Node* a, const Node* b) {
    const bool ma = is_master(a), mb = is_master(b);
    return ma != mb ? ma : a->address < b->address;
  });
  for (const Node* n : nodes) {
    NodeStats s;
    s.address = n->address;
    s.master = is_master(n);
    s.connected = n->link->state() == ConnectionState::connected;
    s.stats = n->link->stats();
    if (out.size() < kNodeLabels) {
      out.push_back(std::move(s));
    } else {
      any_other = true;
      other.connected = other.connected && s.connected;
      other.stats += s.stats;
    }
  }
  for (const auto& [address, node] : nodes_)
    if (!node->in_map && node->link) {
      any_other = true;
      other.stats += node->link->stats();
    }
  for (const auto& r : retired_) {
    any_other = true;
    other.stats += r.link->stats();
  }
  if (!retired_.empty() || retired_stats_.commands > 0) {
    any_other = true;
    other.stats += retired_stats_;
  }
  if (any_other) out.push_back(std::move(other));
  return out;
}

std::string Cluster::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

std::vector<std::string> Cluster::masters() const {
  std::vector<std::string> out;
  std::lock_guard lock(mu_);
  for (const Node* m : masters_)
    out.push_back(m->address);
  std::sort(out.begin(), out.end());
  return out;
}

std::string Cluster::master_address(std::uint32_t slot) const {
  if (slot >= kSlots) return {};
  const Shard* s = slots_[slot].load(std::memory_order_acquire);
  if (s == nullptr || s->master == nullptr) return {};
  std::lock_guard lock(mu_);
  return s->master->address;
}

const void* Cluster::node_at(std::string_view address) const {
  std::lock_guard lock(mu_);
  const auto it = nodes_.find(std::string(address));
  return it == nodes_.end() ? nullptr : it->second.get();
}

// ---- requests ---------------------------------------------------------------------------------

void Cluster::submit(RequestRef ref) {
  Request* r = ref.get();
  if (r->kind() != RequestKind::user) return submit_wait(std::move(ref));
  const TimePoint now = Clock::now();
  const Duration timeout = r->timeout().count() > 0 ? r->timeout() : cfg_.command_timeout;
  r->set_times(now, now + timeout);
  r->flags |= kRouted;
  r->route.used = true;
  if (stopped_flag_.load(std::memory_order_acquire))
    return fail(std::move(ref),
                std::make_exception_ptr(ConnectionError("the Redis cluster client was closed")),
                false);
  if (!started_flag_.load(std::memory_order_acquire))
    return fail(std::move(ref),
                std::make_exception_ptr(
                    ConnectionError("the Redis connection was not started: call connect() first")),
                false);
  try {
    route(ref);
  } catch (...) {
    if (ref) fail(std::move(ref), std::current_exception(), false);
  }
}

// Decides how `ref` goes: to the node of its keys' slot, or split into parts. Takes `ref` when
// it sends it; leaves it when it throws.
void Cluster::route(RequestRef& ref) {
  Request* r = ref.get();
  thread_local CommandReader reader;
  if (r->route.mode == RouteMode::every_master || r->route.mode == RouteMode::every_master_same)
    return to_all_masters(std::move(ref));
  if (r->route.mode == RouteMode::keys && r->route.slot_known) {
    // A typed helper's one key: the client computed its slot.
  } else if (r->route.mode == RouteMode::keys) {
    if (r->route.transaction) {
      // MULTI ... EXEC: one slot for all its keys.
      reader.reset(r->wire());
      SlotOf one;
      for (Args a = reader.next(); !a.empty(); a = reader.next()) {
        const SlotOf s = command_slot(a);
        if (s.slot == kCrossSlot)
          return fail(std::move(ref),
                      std::make_exception_ptr(ServerError(crossslot_message(s.first, s.second))),
                      false);
        if (s.slot == kNoSlot) continue;
        if (one.slot == kNoSlot) {
          one = s;
        } else if (s.slot != one.slot) {
          return fail(std::move(ref),
                      std::make_exception_ptr(ServerError(crossslot_message(one.first, s.first))),
                      false);
        }
      }
      r->route.slot = one.slot;
    } else if (r->is_pipeline()) {
      return split_pipeline(std::move(ref));
    } else {
      reader.reset(r->command().encoded());
      const Args args = reader.next();
      const SlotOf s = command_slot(args);
      if (s.slot == kCrossSlot) {
        for (std::string_view name : {"MGET", "DEL", "UNLINK", "EXISTS", "TOUCH", "MSET"})
          if (equals_upper(args[0], name)) return split_keys(std::move(ref), args);
        return fail(std::move(ref),
                    std::make_exception_ptr(ServerError(crossslot_message(s.first, s.second))),
                    false);
      }
      r->route.slot = s.slot;
      r->route.readonly = s.readonly;
    }
  }
  r->route.router = shared_from_this();
  send(std::move(ref));
}

Cluster::Node* Cluster::node_for(const Request& r) const noexcept {
  // A pinned node (RouteMode::node), or the target of an ASK for this attempt.
  if (r.route.node != nullptr) return const_cast<Node*>(static_cast<const Node*>(r.route.node));
  std::uint32_t slot = r.route.slot;
  if (slot >= kSlots) {
    // No key: any master, spread over the slots' owners.
    slot = (spread_.fetch_add(1, std::memory_order_relaxed) * 4099u) & (kSlots - 1);
  }
  const Shard* s = slots_[slot].load(std::memory_order_acquire);
  if (s == nullptr) return nullptr;
  if (r.route.readonly && cfg_.cluster.read_from_replicas && !s->replicas.empty()) {
    // The replicas in turn, passing over those whose connection is down (their reads would
    // only fail and come back); none left: the master.
    const std::size_t n = s->replicas.size();
    const std::size_t first = s->next.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      Node* replica = s->replicas[(first + i) % n];
      const Link* l = replica->live.load(std::memory_order_acquire);
      if (l == nullptr || l->state() != ConnectionState::disconnected) return replica;
    }
  }
  return s->master;
}

void Cluster::send(RequestRef ref) {
  Request* r = ref.get();
  Node* n = node_for(*r);
  Link* l = n != nullptr ? link_of(*n) : nullptr;
  if (l == nullptr) {
    if (stopped_flag_.load(std::memory_order_acquire))
      return fail(std::move(ref),
                  std::make_exception_ptr(ConnectionError("the Redis cluster client was closed")),
                  false);
    // No node serves the slot yet (the map is being read, or the cluster is failing over).
    request_refresh();
    return park(std::move(ref), backoff(*r));
  }
  {
    std::lock_guard g(r->route.lock);
    r->route.link = l;
  }
  l->submit(std::move(ref));
}

void Cluster::park(RequestRef ref, Duration delay) {
  auto timer = std::make_shared<asio::steady_timer>(executor_);
  timer->expires_at(std::min(Clock::now() + delay, ref->deadline()));
  ++ref->route.redirects;
  {
    // Where cancel() finds it: a cancelled request leaves at once, not when the wait is over.
    std::lock_guard g(ref->route.lock);
    ref->route.link = nullptr;
    ref->route.parked = timer;
  }
  if (ref->cancel_requested.load(std::memory_order_acquire)) drop_timer(timer);
  timer->async_wait([self = shared_from_this(), timer, ref = std::move(ref)](error_code) mutable {
    {
      std::lock_guard g(ref->route.lock);
      ref->route.parked.reset();
    }
    self->resend(std::move(ref));
  });
}

void Cluster::resend(RequestRef ref) {
  Request* r = ref.get();
  if (r->cancel_requested.load(std::memory_order_acquire))
    return fail(
        std::move(ref),
        std::make_exception_ptr(TimeoutError("Redis " + std::string(r->name()) + " was cancelled")),
        false);
  if (stopped_flag_.load(std::memory_order_acquire))
    return fail(std::move(ref),
                std::make_exception_ptr(ConnectionError("the Redis cluster client was closed")),
                false);
  const TimePoint now = Clock::now();
  if (now >= r->deadline() || r->route.redirects > cfg_.cluster.max_redirects) {
    std::string why;
    {
      std::lock_guard lock(mu_);
      why = last_error_;
    }
    std::string m = "Redis " + std::string(r->name()) + " timed out after " +
                    millis(r->deadline() - r->created());
    if (r->route.slot < kSlots && slots_[r->route.slot].load(std::memory_order_acquire) == nullptr)
      m += ": no node of the cluster serves slot " + std::to_string(r->route.slot);
    else
      m += " while the cluster was unreachable or failing over";
    if (!why.empty()) m += " (last error: " + why + ")";
    return fail(std::move(ref), std::make_exception_ptr(TimeoutError(m)), false);
  }
  r->prepare_retry();
  send(std::move(ref));
}

void Cluster::deliver(RequestRef ref, bool inline_ok) noexcept {
  deliver_routed(std::move(ref), executor_, inline_ok);
}

void Cluster::fail(RequestRef ref, std::exception_ptr e, bool inline_ok) noexcept {
  ref->set_result(std::move(e), Reply{});
  deliver(std::move(ref), inline_ok);
}

void Cluster::set_asking(Request& r, bool on) {
  static const std::string kAsking = Command("ASKING").wire();
  if (on == r.route.asking) return;
  r.route.asking = on;
  if (r.route.transaction) {
    std::string wire = r.wire();
    const std::size_t n = r.expected_replies();
    if (on) {
      r.set_pipeline(kAsking + wire, n + 1);
    } else {
      r.set_pipeline(wire.substr(kAsking.size()), n - 1);
    }
  } else if (on) {
    std::string wire = kAsking;
    wire += r.command().encoded();
    r.set_pipeline(std::move(wire), 2);
  } else {
    r.set_pipeline(std::string(), 1);
  }
}

void Cluster::routed_done(Request* raw, bool inline_ok) noexcept {
  RequestRef ref = RequestRef::adopt(raw);
  Request* r = raw;
  try {
    // A request that failed (a timeout, a cancellation) after it was written may still be in
    // its link's session, which waits for its replies to keep the others in order: it must stay
    // exactly as written (ASKING in front, two replies expected). It is not sent again either.
    const bool maybe_in_session = r->error() && (r->flags & kWritten) != 0;
    if (r->route.asking && !maybe_in_session) {
      // The reply of ASKING comes first: drop it.
      Reply& rep = r->reply();
      if (!r->error() && rep.is_array() && !rep.elements().empty()) {
        if (r->route.transaction) {
          rep.elements().erase(rep.elements().begin());
        } else {
          Reply inner = std::move(rep.elements().back());
          rep = std::move(inner);
        }
      }
      set_asking(*r, false);
      if (r->route.mode == RouteMode::keys) r->route.node = nullptr;
    }
    if (r->cancel_requested.load(std::memory_order_acquire))
      return deliver(std::move(ref), inline_ok);
    if (r->error()) {
      const bool lost = is_connection_error(r->error());
      if (lost || is_timeout(r->error())) request_refresh();
      // Never written (the node could not be reached, or its link was closed): it can go
      // elsewhere, or to the same node once it is back, within its deadline.
      if (lost && (r->flags & kWritten) == 0 && !stopped_flag_.load(std::memory_order_acquire) &&
          Clock::now() < r->deadline()) {
        r->prepare_retry();
        // A read whose replica could not be reached goes to the master from now on.
        r->route.readonly = false;
        return park(std::move(ref), backoff(*r));
      }
      return deliver(std::move(ref), inline_ok);
    }
    Redirect d;
    if (r->route.transaction) {
      const Reply& rep = r->reply();
      if (rep.is_array() && !rep.elements().empty() && rep.elements().back().is_error())
        for (const auto& e : rep.elements())
          if (d = parse_redirect(e); d.kind != Redirect::Kind::none) break;
    } else if (r->reply().is_error()) {
      d = parse_redirect(r->reply());
    }
    if (d.kind != Redirect::Kind::none && r->route.mode == RouteMode::keys &&
        retry_after_redirect(ref, d))
      return;
    deliver(std::move(ref), inline_ok);
  } catch (...) {
    if (ref) {
      r->set_result(std::current_exception(), Reply{});
      deliver(std::move(ref), inline_ok);
    }
  }
}

// Sends `ref` again as a redirect says; false (leaving `ref`) when it is to be delivered as it is.
bool Cluster::retry_after_redirect(RequestRef& ref, const Redirect& d) {
  Request* r = ref.get();
  if (r->route.redirects >= cfg_.cluster.max_redirects || Clock::now() >= r->deadline()) {
    r->set_result(std::make_exception_ptr(ConnectionError(
                      "Redis " + std::string(r->name()) + " was redirected " +
                      std::to_string(r->route.redirects + 1) + " times without an answer (last: " +
                      r->reply().str() + "); the cluster is resharding or its nodes disagree")),
                  Reply{});
    return false;
  }
  using Kind = Redirect::Kind;
  switch (d.kind) {
    case Kind::none:
      return false;
    case Kind::moved:
      // The slot has a new owner for good: note it now, read the whole map again soon.
      moved(d.slot, d.address);
      request_refresh();
      r->prepare_retry();
      redirect(std::move(ref));
      return true;
    case Kind::ask: {
      // The slot is being migrated and this key is already there: ASKING, then the command,
      // on the target's connection; the map stays as it is.
      std::string host;
      std::uint16_t port = 0;
      if (!split_address(d.address, host, port)) return false;
      {
        std::lock_guard lock(mu_);
        r->route.node = &node_locked(host, port);
      }
      r->prepare_retry();
      set_asking(*r, true);
      redirect(std::move(ref));
      return true;
    }
    case Kind::refresh_retry:
      request_refresh();
      [[fallthrough]];
    case Kind::retry:
      r->prepare_retry();
      park(std::move(ref), backoff(*r));
      return true;
  }
  return false;
}

void Cluster::redirect(RequestRef ref) {
  // The first redirects go at once. Nodes that disagree for a moment (a slot's new owner told
  // before its old one, while a resharding tool goes from node to node) would bounce a request
  // between them many times a millisecond: later ones wait, longer each time, so that the
  // bounded number of redirects spans the moment.
  const std::uint8_t n = ref->route.redirects;
  if (n < 2) {
    ++ref->route.redirects;
    return send(std::move(ref));
  }
  // 1, 2, 4 ... ms: nodes disagree for the few milliseconds a tool takes between them.
  park(std::move(ref), std::min(kMaxBackoff, Duration(Duration(1).count() << std::min(n - 2, 8))));
}

void Cluster::cancel(Request* r) noexcept {
  r->cancel_requested.store(true, std::memory_order_release);
  if (r->kind() != RequestKind::user) {
    // connect() / wait_connected(): answered at once.
    RequestRef waiter;
    {
      std::lock_guard lock(mu_);
      auto it = std::find_if(waiters_.begin(), waiters_.end(),
                             [&](const Waiter& w) { return w.ref.get() == r; });
      if (it == waiters_.end()) return;
      waiter = std::move(it->ref);
      drop_timer(std::move(it->timer));
      waiters_.erase(it);
    }
    return fail(
        std::move(waiter),
        std::make_exception_ptr(TimeoutError("waiting for the Redis cluster was cancelled")),
        false);
  }
  std::shared_ptr<void> parked;
  {
    std::lock_guard g(r->route.lock);
    parked = r->route.parked;
  }
  if (parked) drop_timer(std::static_pointer_cast<asio::steady_timer>(parked));
  std::shared_ptr<void> parts;
  {
    // Under the request's lock, so that it cannot move to another link meanwhile (the link's
    // delivery of a cancelled request does not take this lock).
    std::lock_guard g(r->route.lock);
    if (r->route.link != nullptr) r->route.link->cancel(r);
    parts = r->route.fanout.lock();
  }
  if (parts) {
    auto* f = static_cast<Fanout*>(parts.get());
    std::vector<RequestRef> copy;
    {
      std::lock_guard g(f->lock);
      copy = f->parts;
    }
    for (auto& p : copy)
      cancel(p.get());
  }
}

// ---- split requests ---------------------------------------------------------------------------

void Cluster::start_fanout(const std::shared_ptr<Fanout>& f) {
  Request* u = f->user.get();
  {
    std::lock_guard g(u->route.lock);
    u->route.fanout = f;
  }
  const auto left = u->deadline() - Clock::now();
  const Duration remaining = std::max(
      Duration(1), std::chrono::duration_cast<Duration>(left + std::chrono::microseconds(999)));
  const std::size_t n = f->parts.size();
  f->pending.store(n, std::memory_order_release);
  if (n == 0) {
    f->finish();
    return;
  }
  // A copy: a part may finish (and the fanout clear its list) before the loop is over.
  const std::vector<RequestRef> parts = f->parts;
  for (std::size_t i = 0; i < n; ++i) {
    RequestRef p = parts[i];
    p->set_timeout(remaining);
    p->set_handler<Reply>(PartDone{f, i}, &to_reply);
    submit(std::move(p));
  }
}

void Cluster::split_pipeline(RequestRef user) {
  auto f = std::make_shared<Fanout>();
  f->how = Fanout::Combine::replies;
  f->cluster = shared_from_this();
  CommandReader reader(user->wire());
  for (Args a = reader.next(); !a.empty(); a = reader.next()) {
    RequestRef p = RequestRef::make();
    Command& c = p->command();
    for (std::string_view arg : a)
      c.arg(arg);
    f->parts.push_back(std::move(p));
  }
  f->results.resize(f->parts.size());
  f->user = std::move(user);
  start_fanout(f);
}

void Cluster::split_keys(RequestRef user, Args args) {
  auto f = std::make_shared<Fanout>();
  f->cluster = shared_from_this();
  const bool mset = equals_upper(args[0], "MSET");
  const bool mget = equals_upper(args[0], "MGET");
  f->how = mset ? Fanout::Combine::all_ok
                : (mget ? Fanout::Combine::values_in_order : Fanout::Combine::sum);
  const std::size_t step = mset ? 2 : 1;
  std::map<std::uint32_t, std::size_t> part_of_slot;
  std::uint32_t key_index = 0;
  for (std::size_t i = 1; i + step - 1 < args.size(); i += step, ++key_index) {
    const std::uint32_t slot = key_slot(args[i]);
    auto [it, fresh] = part_of_slot.emplace(slot, f->parts.size());
    if (fresh) {
      RequestRef p = RequestRef::make();
      p->command().arg(args[0]);
      f->parts.push_back(std::move(p));
      f->positions.emplace_back();
    }
    Command& c = f->parts[it->second]->command();
    c.arg(args[i]);
    if (mset) c.arg(args[i + 1]);
    f->positions[it->second].push_back(key_index);
  }
  f->results.resize(mget ? key_index : f->parts.size());
  f->user = std::move(user);
  start_fanout(f);
}

void Cluster::to_all_masters(RequestRef user) {
  auto f = std::make_shared<Fanout>();
  f->cluster = shared_from_this();
  const bool same = user->route.mode == RouteMode::every_master_same;
  f->how = same ? Fanout::Combine::same : Fanout::Combine::replies;
  std::vector<Node*> masters;
  bool complete = false;
  std::string why;
  {
    std::lock_guard lock(mu_);
    masters = masters_;
    complete = map_ok_;
    why = last_error_;
  }
  std::sort(masters.begin(), masters.end(),
            [](const Node* a, const Node* b) { return a->address < b->address; });
  if (same && (!complete || masters.empty()))
    return fail(std::move(user),
                std::make_exception_ptr(
                    ConnectionError("the Redis cluster does not have a master for every slot" +
                                    (why.empty() ? std::string() : " (" + why + ")"))),
                false);
  for (Node* m : masters) {
    RequestRef p = RequestRef::make();
    p->command() = user->command();
    p->route.mode = RouteMode::node;
    p->route.node = m;
    f->parts.push_back(std::move(p));
  }
  f->results.resize(f->parts.size());
  f->user = std::move(user);
  start_fanout(f);
}

// ---- topology ---------------------------------------------------------------------------------

void Cluster::request_refresh() noexcept {
  bool post = false;
  {
    std::lock_guard lock(mu_);
    if (stopped_ || !started_) return;
    refresh_wanted_ = true;
    post = !std::exchange(wake_posted_, true);
  }
  if (post) wake_loop();
}

asio::awaitable<void> Cluster::refresh_loop(std::shared_ptr<Cluster> self) {
  Cluster& c = *self;
  TimePoint last{};
  const auto wanted = [&] {
    std::lock_guard lock(c.mu_);
    return c.stopped_ ? std::optional<bool>()
                      : std::optional<bool>(std::exchange(c.refresh_wanted_, false));
  };
  for (;;) {
    auto want = wanted();
    if (!want) co_return;
    if (!*want) {
      c.wake_.expires_after(c.cfg_.cluster.refresh_interval);
      error_code ec;
      co_await c.wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      want = wanted();
      if (!want) co_return;
      if (!*want && ec) continue;  // woken for nothing
    }
    const TimePoint earliest = last + kMinRefreshGap;
    if (Clock::now() < earliest) {
      c.wake_.expires_at(earliest);
      error_code ec;
      co_await c.wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      {
        std::lock_guard lock(c.mu_);
        if (c.stopped_) co_return;
        c.refresh_wanted_ = false;
      }
    }
    last = Clock::now();
    try {
      (void)co_await c.refresh_once();
    } catch (const std::exception& e) {
      tempest::logger("tempest.redis")->warn("reading the cluster's slot map failed: {}", e.what());
    }
  }
}

asio::awaitable<Reply> Cluster::ask(Node& n, Command c, Duration timeout) {
  (void)link_of(n);
  std::shared_ptr<Link> link;
  {
    std::lock_guard lock(mu_);
    link = n.link;
  }
  if (!link) throw ConnectionError("the Redis cluster client was closed");
  RequestRef r = RequestRef::make();
  r->command() = std::move(c);
  r->set_timeout(timeout);
  // Named, not temporaries of the co_await expression: g++ 12 destroys those twice (here that
  // released the node's link one time too many).
  Initiation<Reply> initiation{std::move(link), &to_reply};
  NewRequest request(std::move(r));
  Reply reply = co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                              void(std::exception_ptr, Reply)>(
      std::move(initiation), asio::use_awaitable, std::move(request));
  co_return reply;
}

asio::awaitable<bool> Cluster::refresh_once() {
  // Whom to ask: the map's masters, the other nodes known, the seeds (known from the start);
  // starting at a different one each time, so that a node that hangs is not always first.
  std::vector<Node*> order;
  {
    std::lock_guard lock(mu_);
    order = masters_;
    std::vector<Node*> rest;
    for (auto& [address, node] : nodes_)
      if (std::find(order.begin(), order.end(), node.get()) == order.end())
        rest.push_back(node.get());
    std::sort(rest.begin(), rest.end(), [](const Node* a, const Node* b) {
      return a->in_map != b->in_map ? a->in_map : a->address < b->address;
    });
    if (!order.empty())
      std::rotate(order.begin(), order.begin() + (rounds_++ % order.size()), order.end());
    order.insert(order.end(), rest.begin(), rest.end());
  }
  std::string failures;
  for (Node* n : order) {
    std::string failure;
    try {
      Reply r = co_await ask(*n, cmd("CLUSTER", "SLOTS"), cfg_.connect_timeout);
      if (!r.is_error() && apply_slots(r, n->host)) co_return true;
      failure = r.is_error() ? "answered " + r.str() : "sent a CLUSTER SLOTS reply not understood";
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!failures.empty()) failures += "; ";
    failures += n->address + ": " + failure;
  }
  std::vector<RequestRef> failed;
  {
    std::lock_guard lock(mu_);
    if (stopped_) co_return false;
    const bool first = !refresh_failed_;
    refresh_failed_ = true;
    last_error_ = "no node of the cluster answered CLUSTER SLOTS (" + failures + ")";
    finish_waiters_locked(failed, false);
    if (first) tempest::logger("tempest.redis")->warn("{}: {}", cfg_.redacted(), last_error_);
  }
  for (auto& w : failed)
    finish(std::move(w), Reply::error("cannot connect to the Redis cluster at " + cfg_.redacted() +
                                      ": " + last_error()));
  co_return false;
}

const Cluster::Shard* Cluster::shard_locked(Node* master, std::vector<Node*> replicas) {
  std::sort(replicas.begin(), replicas.end());
  for (const auto& s : shards_)
    if (s->master == master && s->replicas == replicas) return s.get();
  auto s = std::make_unique<Shard>();
  s->master = master;
  s->replicas = std::move(replicas);
  shards_.push_back(std::move(s));
  return shards_.back().get();
}

bool Cluster::apply_slots(const Reply& reply, const std::string& asked_host) {
  if (!reply.is_array()) return false;
  // [[start, end, [host, port, id, ...], replica...], ...]
  const auto endpoint = [&](const Reply& e, std::string& host, std::uint16_t& port) {
    if (!e.is_array() || e.elements().size() < 2 || !e.elements()[1].is_integer()) return false;
    const auto& h = e.elements()[0];
    host = h.is_nil() || h.str().empty() ? asked_host : h.str();
    if (host == "?") return false;  // the node's address is unknown to the one we asked
    const long long p = e.elements()[1].integer();
    if (p <= 0 || p > 65535) return false;
    port = static_cast<std::uint16_t>(p);
    return true;
  };
  std::vector<const Shard*> map(kSlots, nullptr);
  std::vector<RequestRef> ready;
  std::vector<std::shared_ptr<Link>> leaving;
  std::size_t covered = 0;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return true;
    std::vector<Node*> masters;
    std::vector<Node*> present;
    for (const Reply& range : reply.elements()) {
      const auto& e = range.elements();
      if (!range.is_array() || e.size() < 3 || !e[0].is_integer() || !e[1].is_integer())
        return false;
      const long long from = e[0].integer();
      const long long to = e[1].integer();
      if (from < 0 || to >= static_cast<long long>(kSlots) || from > to) return false;
      std::string host;
      std::uint16_t port = 0;
      if (!endpoint(e[2], host, port)) continue;
      Node* master = &node_locked(host, port);
      std::vector<Node*> replicas;
      for (std::size_t i = 3; i < e.size(); ++i)
        if (endpoint(e[i], host, port)) replicas.push_back(&node_locked(host, port));
      const Shard* shard = shard_locked(master, replicas);
      for (long long s = from; s <= to; ++s) {
        if (map[static_cast<std::size_t>(s)] == nullptr) ++covered;
        map[static_cast<std::size_t>(s)] = shard;
      }
      if (std::find(masters.begin(), masters.end(), master) == masters.end())
        masters.push_back(master);
      present.push_back(master);
      present.insert(present.end(), replicas.begin(), replicas.end());
    }
    bool changed = false;
    for (std::size_t s = 0; s < kSlots; ++s)
      if (slots_[s].load(std::memory_order_relaxed) != map[s]) {
        slots_[s].store(map[s], std::memory_order_release);
        changed = true;
      }
    if (changed) {
      epoch_.fetch_add(1, std::memory_order_acq_rel);
      if (tracker_) tracker_->topology_changed();
    }
    masters_ = std::move(masters);
    // Links retired long enough ago are let go: everything pending on them failed when they
    // closed, and its delivery is long over.
    const TimePoint long_ago = Clock::now() - std::chrono::seconds(10);
    std::erase_if(retired_, [&](const Retired& r) {
      if (r.at > long_ago) return false;
      ConnectionStats last = r.link->stats();
      last.pending = 0;  // a gauge: nothing waits on a closed link
      retired_stats_ += last;
      return true;
    });
    // Nodes not in the map (they left it, or were only a seed under another name): their
    // links close (a request still on its way there fails without being written, and goes to
    // the new owner); one is opened again if a node is asked for by address.
    for (auto& [address, node] : nodes_) {
      const bool now_in = std::find(present.begin(), present.end(), node.get()) != present.end();
      if (!now_in && node->link) {
        if (tracker_) tracker_->detach(*node->link);
        leaving.push_back(node->link);
        retired_.push_back({std::move(node->link), Clock::now()});
        node->live.store(nullptr, std::memory_order_release);
      }
      node->in_map = now_in;
    }
    refresh_failed_ = false;
    map_ok_ = covered == kSlots;
    if (map_ok_) {
      last_error_.clear();
      finish_waiters_locked(ready, true);
    } else {
      last_error_ = std::to_string(kSlots - covered) + " of the cluster's " +
                    std::to_string(kSlots) + " slots have no master";
      std::vector<RequestRef> failed;
      finish_waiters_locked(failed, false);
      ready.insert(ready.end(), failed.begin(), failed.end());
    }
  }
  for (auto& l : leaving)
    l->close();
  const bool ok = covered == kSlots;
  const std::string why = ok ? std::string() : last_error();
  for (auto& w : ready)
    finish(std::move(w),
           ok ? Reply::integer(1)
              : Reply::error("cannot use the Redis cluster at " + cfg_.redacted() + ": " + why));
  return true;
}

void Cluster::moved(std::uint32_t slot, const std::string& address) {
  std::string host;
  std::uint16_t port = 0;
  if (slot >= kSlots || !split_address(address, host, port)) return;
  std::lock_guard lock(mu_);
  Node* owner = &node_locked(host, port);
  // The shard the node already masters (for its replicas), or one of its own.
  const Shard* shard = nullptr;
  for (const auto& s : shards_)
    if (s->master == owner) shard = s.get();
  if (shard == nullptr) shard = shard_locked(owner, {});
  if (slots_[slot].exchange(shard, std::memory_order_acq_rel) != shard)
    epoch_.fetch_add(1, std::memory_order_acq_rel);
  if (std::find(masters_.begin(), masters_.end(), owner) == masters_.end())
    masters_.push_back(owner);
}

// ---- connect() and disconnect() ---------------------------------------------------------------

// Completes the waiting connect() calls: all of them when `ok`, otherwise those that end with
// the first attempt.
void Cluster::drop_timer(std::shared_ptr<asio::steady_timer> t) noexcept {
  // On the timer's executor: a timer is not to be cancelled from another thread.
  if (!t) return;
  try {
    asio::post(executor_, [t = std::move(t)] { t->cancel(); });
  } catch (...) {
  }
}

void Cluster::finish_waiters_locked(std::vector<RequestRef>& out, bool ok) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (ok || (it->ref->flags & kWaitFirstAttempt) != 0) {
      out.push_back(std::move(it->ref));
      drop_timer(std::move(it->timer));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<RequestRef> Cluster::take_waiters_locked() {
  std::vector<RequestRef> out;
  for (auto& w : waiters_) {
    out.push_back(std::move(w.ref));
    drop_timer(std::move(w.timer));
  }
  waiters_.clear();
  return out;
}

void Cluster::submit_wait(RequestRef ref) {
  Request* r = ref.get();
  const TimePoint now = Clock::now();
  r->set_times(now, now + r->timeout());
  if (r->kind() == RequestKind::wait_stopped) return stop_all(std::move(ref));
  std::unique_lock lock(mu_);
  std::optional<Reply> answer;
  if (stopped_) {
    answer = Reply::error("the Redis cluster client was closed");
  } else if (!started_) {
    answer = Reply::error("the Redis connection was not started: call connect() first");
  } else if (map_ok_) {
    answer = Reply::integer(1);
  } else if ((r->flags & kWaitFirstAttempt) != 0 && refresh_failed_) {
    answer = Reply::error("cannot connect to the Redis cluster at " + cfg_.redacted() + ": " +
                          last_error_);
  }
  if (answer) {
    lock.unlock();
    return finish(std::move(ref), std::move(*answer));
  }
  // Its deadline (the timer is cancelled when the waiter is answered first).
  auto timer = std::make_shared<asio::steady_timer>(executor_, r->deadline());
  waiters_.push_back(Waiter{ref, timer});
  lock.unlock();
  timer->async_wait([self = shared_from_this(), ref](error_code) mutable {
    std::string why;
    {
      std::lock_guard lock(self->mu_);
      auto it = std::find_if(self->waiters_.begin(), self->waiters_.end(),
                             [&](const Waiter& w) { return w.ref.get() == ref.get(); });
      if (it == self->waiters_.end()) return;  // answered already
      self->waiters_.erase(it);
      why = self->last_error_;
    }
    self->finish(std::move(ref),
                 Reply::error("could not connect to the Redis cluster at " + self->cfg_.redacted() +
                              " within " + millis(ref->deadline() - ref->created()) +
                              (why.empty() ? std::string() : ": " + why)));
  });
}

void Cluster::stop_all(RequestRef waiter) {
  // Each node's link stops gracefully (what is in flight finishes within disconnect_timeout);
  // the waiter completes when all have.
  struct Stopping {
    std::atomic<std::size_t> left{0};
    RequestRef waiter;
    std::shared_ptr<Cluster> cluster;
  };
  auto state = std::make_shared<Stopping>();
  state->waiter = std::move(waiter);
  state->cluster = shared_from_this();
  std::vector<std::shared_ptr<Link>> links;
  std::vector<RequestRef> waiters;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    stopped_flag_.store(true, std::memory_order_release);
    for (auto& [address, node] : nodes_)
      if (node->link) links.push_back(node->link);
    waiters = take_waiters_locked();
  }
  for (auto& w : waiters)
    finish(std::move(w), Reply::error("the Redis cluster client was stopped"));
  wake_loop();
  state->left.store(links.size() + 1, std::memory_order_release);
  const auto one_done = [state] {
    if (state->left.fetch_sub(1, std::memory_order_acq_rel) == 1)
      state->cluster->finish(std::move(state->waiter), Reply::nil());
  };
  for (auto& l : links) {
    RequestRef r = RequestRef::make();
    r->set_kind(RequestKind::wait_stopped);
    r->set_timeout(cfg_.disconnect_timeout + std::chrono::seconds(1));
    r->set_handler<void>([one_done](std::exception_ptr) { one_done(); }, &to_nothing);
    l->submit(std::move(r));
  }
  one_done();
}

}  // namespace tempest::redis::detail
