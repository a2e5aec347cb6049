// Finding a Sentinel service's master: the sentinels are asked in turn (the one that answered
// last first), each over a short-lived connection of its own with the sentinels' credentials,
// and the node one names is asked its ROLE before it is believed (a sentinel can be stale).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tempest/redis/config.hpp"

namespace tempest::redis {
class Subscriber;
}

namespace tempest::redis::detail {

class SentinelDiscovery : public std::enable_shared_from_this<SentinelDiscovery> {
 public:
  // master: the address the first sentinel to answer gave; else `error` says what each did.
  using Done = std::function<void(std::optional<Endpoint> master, std::string error)>;

  SentinelDiscovery(boost::asio::any_io_executor executor, const Config& config);
  // Asks the sentinels in turn. retry: the last master a sentinel named could not be used (it
  // was down, or its ROLE was not master): start with the next sentinel, as that one may be
  // stale. `done` runs on the executor, never inside this call.
  void find_master(bool retry, Done done);
  // The replicas a sentinel lists as up and in sync with the master (asked in turn, the last
  // sentinel that named the master first); nullopt with `error` saying what each did. `done`
  // runs on the executor, never inside this call.
  using ReplicasDone =
      std::function<void(std::optional<std::vector<Endpoint>> replicas, std::string error)>;
  void find_replicas(ReplicasDone done);
  // From the first call on, a subscription to +switch-master on a sentinel (the one that
  // answered last; the next one when it fails) calls every `on_switch` given when this
  // service's master moves, on the executor.
  void watch(std::function<void()> on_switch);
  // Ends the subscription (the link is going away).
  void stop();

 private:
  void switched();
  // The sentinels in the order to ask them (a copy, taken under the lock).
  std::vector<Endpoint> order();
  // The connection to one sentinel.
  Config sentinel_at(const Endpoint& sentinel) const;

  boost::asio::any_io_executor executor_;
  Config sentinel_config_;  // the connection to a sentinel, host and port set per ask
  Config probe_config_;     // the connection to a named master, for its ROLE
  std::string service_;
  std::mutex mutex_;
  std::vector<Endpoint> order_;  // the sentinels, the last that answered first
  std::vector<std::function<void()>> watchers_;
  bool watching_ = false;
  bool stopped_ = false;
  std::shared_ptr<Subscriber> subscriber_;  // the current subscription, closed by stop()
};

}  // namespace tempest::redis::detail
