#include "tracking.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "tempest/log.hpp"

namespace tempest::redis::detail {

Tracker::Tracker(asio::any_io_executor executor, Config config,
                 std::shared_ptr<InvalidationSink> sink)
    : executor_(std::move(executor)), config_(std::move(config)), sink_(std::move(sink)) {}

Tracker::~Tracker() {
  close();
}

void Tracker::attach(const std::shared_ptr<Link>& data) {
  // The links' own locks are taken before this one's (as their steps do), never under it.
  data->set_tracking(weak_from_this(), false);
  const std::string name = where_of(data->config());
  std::shared_ptr<Link> opened;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (servers_.find(name) == servers_.end()) {
      Config c = data->config();
      c.when_disconnected = Config::WhenDisconnected::queue;
      opened = std::make_shared<Link>(executor_, std::move(c), Venue::shared);
    }
  }
  if (opened) {
    opened->enroll();
    opened->set_tracking(weak_from_this(), true);
  }
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    auto& server = servers_[name];
    if (!server) {
      server = std::make_unique<Server>();
      server->invalidations = opened;
      by_invalidation_link_[opened.get()] = server.get();
    } else {
      opened.reset();  // another attach opened it meanwhile
    }
    data_[data.get()] = Data{data, server.get(), false};
    settle_locked();  // a new link's reads are not tracked yet
  }
  if (opened) opened->start();
}

void Tracker::detach(const Link& data) {
  std::lock_guard lock(mu_);
  data_.erase(&data);
  settle_locked();
}

void Tracker::topology_changed() {
  std::lock_guard lock(mu_);
  if (armed_) sink_->invalidate_all();
}

void Tracker::close() noexcept {
  std::vector<std::shared_ptr<Link>> links;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& [name, server] : servers_)
      links.push_back(server->invalidations);
    if (armed_) {
      armed_ = false;
      sink_->reset();
    }
  }
  for (auto& l : links)
    l->close();
}

long long Tracker::redirect_for(const Link& link) {
  std::lock_guard lock(mu_);
  auto it = data_.find(&link);
  return it == data_.end() ? 0 : it->second.server->id;
}

long long Tracker::on_link_events(const Link& link, std::vector<Session::TrackingEvent>& events,
                                  std::vector<Session::Pushed>& messages) {
  std::vector<std::shared_ptr<Link>> redirect;
  long long now = 0;
  long long id = 0;
  {
    std::lock_guard lock(mu_);
    if (auto it = data_.find(&link); it != data_.end()) {
      now = on_data_events(it->second, events);
    } else if (auto s = by_invalidation_link_.find(&link); s != by_invalidation_link_.end()) {
      on_invalidation_events(*s->second, events, messages, redirect);
      id = s->second->id;
    }
    settle_locked();
  }
  // The links of a server whose invalidation link is new: redirect them, from the executor (not
  // under this link's lock: a data link's step may deliver to a cluster, which takes its own).
  for (auto& l : redirect)
    asio::post(executor_, [l = std::move(l), id] { l->redirect(id); });
  return now;
}

long long Tracker::on_data_events(Data& d, std::vector<Session::TrackingEvent>& events) {
  using Kind = Session::TrackingEvent::Kind;
  long long redirect_now = 0;
  for (const auto& e : events) {
    switch (e.kind) {
      case Kind::lost:
        d.ok = false;
        redirect_now = 0;
        break;
      case Kind::redirecting:
        d.ok = e.id != 0 && e.id == d.server->id;
        // Redirected to an invalidation link that has been replaced since: to the new one.
        redirect_now = d.ok ? 0 : d.server->id;
        break;
      case Kind::refused:
        d.ok = false;
        if (d.server->id != 0 && e.id != d.server->id) {
          // It named an invalidation link replaced since: redirect to the current one.
          redirect_now = d.server->id;
        } else if (e.why.find("does not exist") == std::string::npos) {
          // Not a link that just died (its replacement will redirect this one again): an ACL,
          // a server without tracking. Logged once; the near cache stays off.
          refused_locked(e.why);
        }
        break;
      case Kind::identified:
        break;
    }
  }
  return redirect_now;
}

void Tracker::on_invalidation_events(Server& s, std::vector<Session::TrackingEvent>& events,
                                     std::vector<Session::Pushed>& messages,
                                     std::vector<std::shared_ptr<Link>>& redirect) {
  using Kind = Session::TrackingEvent::Kind;
  // Messages first: they were read before any event of this step that replaced the link.
  for (auto& m : messages) {
    if (m.gap || !m.reply.is_array()) continue;
    const auto& e = m.reply.elements();
    if (e.size() != 3 || !e[1].is_string() || e[1].str() != "__redis__:invalidate") continue;
    const Reply& keys = e[2];
    if (keys.is_array()) {
      for (const auto& k : keys.elements())
        if (k.is_string()) sink_->invalidate(k.str());
    } else if (armed_) {
      sink_->invalidate_all();  // a null list: FLUSHDB / FLUSHALL
    }
  }
  for (const auto& e : events) {
    if (e.kind == Kind::lost) {
      s.id = 0;
      for (auto& [link, d] : data_)
        if (d.server == &s) d.ok = false;
    } else if (e.kind == Kind::identified) {
      s.id = e.id;
      for (auto& [link, d] : data_) {
        if (d.server != &s) continue;
        d.ok = false;
        if (auto l = d.link.lock()) redirect.push_back(std::move(l));
      }
    }
  }
}

void Tracker::settle_locked() {
  bool ok = !closed_ && !data_.empty();
  for (const auto& [link, d] : data_)
    ok = ok && d.ok && d.server->id != 0;
  if (ok == armed_) return;
  armed_ = ok;
  if (ok) {
    sink_->armed();
  } else {
    sink_->reset();
  }
}

void Tracker::refused_locked(const std::string& why) {
  if (warned_) return;
  warned_ = true;
  tempest::logger("tempest.redis")
      ->warn("{} refused CLIENT TRACKING ({}): keys read are not tracked, the near cache stays off",
             config_.redacted(), why);
}

}  // namespace tempest::redis::detail
