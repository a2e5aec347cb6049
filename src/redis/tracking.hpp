// The Tracker (private to src/redis): client-side caching for one Client. For each server its
// data links read from, an invalidation link (subscribed to __redis__:invalidate, CLIENT ID known)
// to which those data links redirect their tracking. It follows every link's events and tells the
// InvalidationSink when the reports can be trusted (armed) and when they cannot (reset).
//
// Locks: the hook runs under a link's lock and takes the Tracker's mutex; the sink is called under
// both; a data link is told to redirect through the executor (no link's lock held).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "link.hpp"
#include "tempest/redis/config.hpp"
#include "tempest/redis/tracking.hpp"

namespace tempest::redis::detail {

class Tracker final : public TrackingHook, public std::enable_shared_from_this<Tracker> {
 public:
  Tracker(asio::any_io_executor executor, Config config, std::shared_ptr<InvalidationSink> sink);
  ~Tracker();

  // A data link about to start: its reads are reported to its server's invalidation link
  // (opened now if it is the first link to that server).
  void attach(const std::shared_ptr<Link>& data);
  // A data link that is going away (a cluster node that left the map).
  void detach(const Link& data);
  // A cluster's slots moved: entries read from the old owners may change unreported.
  void topology_changed();
  // Closes the invalidation links; reads are no longer trusted.
  void close() noexcept;

  long long on_link_events(const Link& link, std::vector<Session::TrackingEvent>& events,
                           std::vector<Session::Pushed>& messages) override;
  long long redirect_for(const Link& link) override;

 private:
  struct Server {
    std::shared_ptr<Link> invalidations;
    long long id = 0;  // the invalidation link's client id while it is ready; 0 otherwise
  };
  struct Data {
    std::weak_ptr<Link> link;
    Server* server = nullptr;
    bool ok = false;  // tracking on, redirected to server->id
  };
  long long on_data_events(Data& d, std::vector<Session::TrackingEvent>& events);
  void on_invalidation_events(Server& s, std::vector<Session::TrackingEvent>& events,
                              std::vector<Session::Pushed>& messages,
                              std::vector<std::shared_ptr<Link>>& redirect);
  // Arms or resets the sink as the state now says.
  void settle_locked();
  void refused_locked(const std::string& why);

  asio::any_io_executor executor_;
  Config config_;
  std::shared_ptr<InvalidationSink> sink_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Server>> servers_;
  std::unordered_map<const Link*, Data> data_;
  std::unordered_map<const Link*, Server*> by_invalidation_link_;
  bool armed_ = false;
  bool closed_ = false;
  bool warned_ = false;
};

}  // namespace tempest::redis::detail
