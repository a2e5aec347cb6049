// make chaos, over HTTP: the example users_service, its Redis behind the fault proxy, under a
// wrk-like load of keep-alive connections, with its readiness probed like an orchestrator would.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tempest::chaos {

using Clock = std::chrono::steady_clock;

// Milliseconds from a to b.
long long ms_between(Clock::time_point a, Clock::time_point b);
// `s` as the inside of a JSON string: quotes and backslashes escaped, control characters blanked.
std::string json_escape(std::string_view s);

// One injected fault as its scheduler saw it: from just before it was applied (`begin`), held
// for sure until `cleared` (when the scheduler began to take it away), over at `end` (for a
// SIGKILL, once the restarted server answered).
struct FaultWindow {
  std::string kind;
  Clock::time_point begin, cleared, end;
};

class HttpLoad {
 public:
  struct Options {
    std::string service;    // users_service's path
    std::string redis_url;  // the URL it is given (through the fault proxy)
    std::chrono::milliseconds readiness_timeout{1000};  // the health router's own bound
    std::chrono::milliseconds margin{250};
    int connections = 4;  // keep-alive connections reading
  };
  // Starts the service and waits until it answers (throws when it does not within 30 s).
  explicit HttpLoad(Options o);
  ~HttpLoad();  // stops the load and the service
  HttpLoad(const HttpLoad&) = delete;
  HttpLoad& operator=(const HttpLoad&) = delete;

  void start();  // the readers, the writer and the readiness prober begin
  void stop();   // they end; the service is stopped

  // A JSON object: requests, statuses, wrong answers, readiness probes judged against `faults`
  // (the ones on the service's Redis). `ok` is false when anything was wrong.
  std::string report(const std::vector<FaultWindow>& faults, bool& ok) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace tempest::chaos
