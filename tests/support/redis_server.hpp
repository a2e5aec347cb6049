// A real redis-server process for tests: free port, throwaway directory, stopped on destruction.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tempest::test {

// Returns a TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port();

// True when something accepts TCP connections on 127.0.0.1:port now.
bool can_connect(std::uint16_t port);

// Starts args[0] (looked up in PATH) with `args`, its standard streams on /dev/null and none of
// this process's other descriptors; returns its pid (the caller reaps it).
pid_t spawn(std::vector<std::string> args);

// Runs `redis-cli -h 127.0.0.1 -p port args` (killed after `timeout_s`) and returns its stdout and
// stderr.
std::string redis_cli_at(std::uint16_t port, const std::string& args, int timeout_s = 20);

class RedisServer {
 public:
  // `extra` are redis-server options such as {"--requirepass", "secret"}. A port of 0 picks one.
  explicit RedisServer(std::vector<std::string> extra = {}, std::uint16_t port = 0,
                       bool tls = false);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start();   // starts (again) on the same port and waits until it accepts connections
  void stop();    // SIGTERM and wait
  void kill();    // SIGKILL and wait
  void pause();   // SIGSTOP: the server is frozen, connections stay open
  void resume();  // SIGCONT
  bool running() const { return pid_ > 0; }
  bool paused() const { return paused_; }

  std::uint16_t port() const { return port_; }
  const std::string& dir() const { return dir_; }
  std::string url(const std::string& path_and_query = "") const;

  // Runs redis-cli against this server and returns its stdout (for setup steps such as ACL).
  std::string cli(const std::string& args) const;

 private:
  void wait_ready();
  std::vector<std::string> extra_;
  std::uint16_t port_;
  bool tls_;
  std::string dir_;
  pid_t pid_ = -1;
  bool paused_ = false;
};

// The server started by `make test` (TEMPEST_REDIS_URL) when set, otherwise one started here.
const std::string& shared_redis_url();

}  // namespace tempest::test
