#include "support/redis_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <thread>

namespace tempest::test {

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("free_port: bind failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool can_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

pid_t spawn(std::vector<std::string> args) {
  if (args.empty()) throw std::invalid_argument("spawn: no program");
  // Built before fork(): the child of a threaded process should not allocate.
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // The server holds none of the test's descriptors: a server left behind by a crashed test
    // must not hold ctest's output pipe, or ctest waits for it forever. (No PR_SET_PDEATHSIG:
    // it fires when the forking *thread* ends, and tests start servers from short threads.)
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    ::close_range(3, ~0U, 0);
    ::execvp(argv[0], argv.data());
    std::_Exit(127);
  }
  return pid;
}

std::string redis_cli_at(std::uint16_t port, const std::string& args, int timeout_s) {
  const std::string command =
      // Bounded: a frozen server would keep redis-cli waiting forever.
      "timeout " + std::to_string(timeout_s) + " redis-cli -h 127.0.0.1 -p " +
      std::to_string(port) + " " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("popen failed");
  std::string out;
  std::array<char, 4096> buf{};
  while (auto n = std::fread(buf.data(), 1, buf.size(), pipe.get()))
    out.append(buf.data(), n);
  return out;
}

RedisServer::RedisServer(std::vector<std::string> extra, std::uint16_t port, bool tls)
    : extra_(std::move(extra)), port_(port == 0 ? free_port() : port), tls_(tls) {
  char tmpl[] = "/tmp/tempest-redis-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  start();
}

RedisServer::~RedisServer() {
  try {
    if (pid_ > 0) {
      ::kill(pid_, SIGCONT);
      kill();
    }
    std::filesystem::remove_all(dir_);
  } catch (...) {
  }
}

void RedisServer::start() {
  if (pid_ > 0) return;
  std::vector<std::string> args = {"redis-server",
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--logfile",
                                   dir_ + "/redis.log",
                                   "--enable-debug-command",
                                   "yes"};
  if (tls_) {
    args.insert(args.end(), {"--port", "0", "--tls-port", std::to_string(port_)});
  } else {
    args.insert(args.end(), {"--port", std::to_string(port_)});
  }
  args.insert(args.end(), extra_.begin(), extra_.end());
  pid_ = spawn(std::move(args));
  wait_ready();
}

void RedisServer::wait_ready() {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("redis-server exited at start; see " + dir_ + "/redis.log");
    }
    if (can_connect(port_)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("redis-server did not accept connections within 10 s");
}

void RedisServer::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  paused_ = false;
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  paused_ = false;
}

void RedisServer::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
  paused_ = pid_ > 0;
}

void RedisServer::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
  paused_ = false;
}

std::string RedisServer::url(const std::string& path_and_query) const {
  return std::string(tls_ ? "rediss" : "redis") + "://127.0.0.1:" + std::to_string(port_) +
         path_and_query;
}

std::string RedisServer::cli(const std::string& args) const {
  return redis_cli_at(port_, args);
}

const std::string& shared_redis_url() {
  static const std::string url = [] {
    if (const char* env = std::getenv("TEMPEST_REDIS_URL"); env && *env) return std::string(env);
    static RedisServer server;
    return server.url();
  }();
  return url;
}

}  // namespace tempest::test
