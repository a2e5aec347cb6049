#include "support/redis_sentinel.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace tempest::test {

namespace {

using Clock = std::chrono::steady_clock;
using Record = std::map<std::string, std::string>;

std::vector<std::string> split_blanks(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  std::string word;
  while (in >> word)
    out.push_back(word);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(line);
  }
  return out;
}

// A shell word for popen's sh.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (const char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// redis-cli arguments for the password of a "requirepass <password>" line among `lines`.
std::string auth_from(const std::vector<std::string>& lines) {
  for (const auto& line : lines) {
    const auto words = split_blanks(line);
    if (words.size() == 2 && words[0] == "requirepass")
      return "-a " + quoted(words[1]) + " --no-auth-warning ";
  }
  return "";
}

// redis-cli's raw output of a map or an array of maps (SENTINEL master / replicas): one line per
// key and per value; a record starts at its "name" key.
std::vector<Record> records_of(const std::string& text) {
  const auto lines = lines_of(text);
  std::vector<Record> out;
  for (std::size_t i = 0; i + 1 < lines.size(); i += 2) {
    if (lines[i] == "name" || out.empty()) out.emplace_back();
    out.back()[lines[i]] = lines[i + 1];
  }
  return out;
}

std::string field_of(const Record& r, const std::string& key) {
  const auto it = r.find(key);
  return it == r.end() ? std::string() : it->second;
}

// The port in "127.0.0.1\n<port>\n" (SENTINEL get-master-addr-by-name), or 0.
std::uint16_t port_of_address(const std::string& text) {
  const auto lines = lines_of(text);
  if (lines.size() != 2 || lines[1].empty() ||
      !std::all_of(lines[1].begin(), lines[1].end(), [](char c) { return c >= '0' && c <= '9'; }))
    return 0;
  const long port = std::strtol(lines[1].c_str(), nullptr, 10);
  return port > 0 && port < 65536 ? static_cast<std::uint16_t>(port) : 0;
}

bool in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':'))
    if (!d.empty() && ::access((d + "/" + program).c_str(), X_OK) == 0) return true;
  return false;
}

void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// The last `n` lines of the file at `path` ("" when it cannot be read).
std::string tail_of(const std::string& path, std::size_t n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line))
    lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += lines[i] + "\n";
  return out;
}

}  // namespace

SentinelGroup::SentinelGroup(std::string service, int down_after_ms,
                             std::vector<std::string> extra_server,
                             std::vector<std::string> extra_sentinel)
    : service_(std::move(service)),
      down_after_ms_(down_after_ms),
      server_auth_(auth_from(extra_server)),
      sentinel_auth_(auth_from(extra_sentinel)) {
  for (const auto& line : extra_server) {
    auto words = split_blanks(line);
    if (words.empty()) continue;
    words.front() = "--" + words.front();
    extra_server_.insert(extra_server_.end(), words.begin(), words.end());
  }
  char tmpl[] = "/tmp/tempest-sentinel-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  try {
    const auto until = Clock::now() + std::chrono::seconds(15);
    data_.push_back(std::make_unique<RedisServer>(data_args(0)));
    data_.push_back(std::make_unique<RedisServer>(data_args(data_[0]->port())));
    // The replica's link first: a sentinel's first INFO of the master then lists it (the next
    // one is 10 s later).
    std::string info;
    for (;;) {
      info = query(data_[1]->port(), "INFO replication");
      if (info.find("master_link_status:up") != std::string::npos) break;
      if (Clock::now() > until)
        throw std::runtime_error("the replica's link did not come up in 15 s:\n" + info +
                                 log_tails(20));
      sleep_ms(20);
    }
    std::vector<std::uint16_t> taken = {data_[0]->port(), data_[1]->port()};
    for (auto& s : sentinels_) {
      do {
        s.port = free_port();
      } while (std::find(taken.begin(), taken.end(), s.port) != taken.end());
      taken.push_back(s.port);
      const std::string name = dir_ + "/sentinel-" + std::to_string(s.port);
      s.conf = name + ".conf";
      std::ofstream conf(s.conf);
      conf << "port " << s.port << "\n"
           << "bind 127.0.0.1\n"
           << "daemonize no\n"
           << "dir " << dir_ << "\n"
           << "logfile " << name << ".log\n"
           << "sentinel monitor " << service_ << " 127.0.0.1 " << data_[0]->port() << " 2\n"
           << "sentinel down-after-milliseconds " << service_ << " " << down_after_ms_ << "\n"
           << "sentinel failover-timeout " << service_ << " 5000\n"
           << "sentinel parallel-syncs " << service_ << " 1\n";
      for (const auto& line : extra_sentinel)
        conf << line << "\n";
      if (!conf.flush()) throw std::runtime_error("cannot write " + s.conf);
    }
    for (int i = 0; i < 3; ++i)
      start_sentinel(i);
    wait_ready(std::chrono::duration_cast<std::chrono::seconds>(until - Clock::now()) +
               std::chrono::seconds(1));
  } catch (...) {
    shutdown();
    throw;
  }
}

SentinelGroup::~SentinelGroup() {
  shutdown();
}

void SentinelGroup::shutdown() noexcept {
  for (auto& s : sentinels_) {
    if (s.pid > 0) {
      ::kill(s.pid, SIGKILL);
      ::waitpid(s.pid, nullptr, 0);
      s.pid = -1;
    }
  }
  try {
    data_.clear();  // RedisServer's destructor: SIGKILL, and its directory removed
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  } catch (...) {
  }
}

std::string SentinelGroup::log_tails(std::size_t lines) const {
  std::string out;
  for (const auto& s : sentinels_) {
    if (s.port == 0) continue;
    out += "--- sentinel " + std::to_string(s.port) + " log:\n" +
           tail_of(dir_ + "/sentinel-" + std::to_string(s.port) + ".log", lines);
  }
  for (const auto& node : data_)
    out += "--- redis " + std::to_string(node->port()) + " log:\n" +
           tail_of(node->dir() + "/redis.log", lines);
  return out;
}

std::vector<std::string> SentinelGroup::data_args(std::uint16_t replica_of) const {
  // No 5 s wait before a diskless full sync: replicas (and a restarted old master) catch up at
  // once.
  std::vector<std::string> args = {"--repl-diskless-sync-delay", "0"};
  if (replica_of != 0)
    args.insert(args.end(), {"--replicaof", "127.0.0.1", std::to_string(replica_of)});
  args.insert(args.end(), extra_server_.begin(), extra_server_.end());
  return args;
}

void SentinelGroup::wait_ready(std::chrono::seconds limit) {
  const auto until = Clock::now() + limit;
  const std::string master = std::to_string(data_[0]->port());
  std::string seen;
  for (;;) {
    bool ok = true;
    seen.clear();
    for (const auto& s : sentinels_) {
      const std::string out = query(s.port, "SENTINEL master " + service_);
      const auto records = records_of(out);
      const Record r = records.empty() ? Record{} : records.front();
      const std::string replicas = query(s.port, "SENTINEL replicas " + service_);
      const auto rs = records_of(replicas);
      const bool replica_ok = rs.size() == 1 && field_of(rs[0], "flags") == "slave" &&
                              field_of(rs[0], "port") == std::to_string(data_[1]->port());
      if (field_of(r, "port") != master || field_of(r, "flags") != "master" ||
          field_of(r, "num-slaves") != "1" || field_of(r, "num-other-sentinels") != "2" ||
          !replica_ok) {
        ok = false;
        seen += "sentinel " + std::to_string(s.port) + ": SENTINEL master -> " +
                (r.empty() ? out
                           : "port=" + field_of(r, "port") + " flags=" + field_of(r, "flags") +
                                 " num-slaves=" + field_of(r, "num-slaves") +
                                 " num-other-sentinels=" + field_of(r, "num-other-sentinels")) +
                "; replica flags=" + (rs.empty() ? replicas : field_of(rs[0], "flags")) + "\n";
      }
    }
    if (ok) return;
    if (Clock::now() > until)
      throw std::runtime_error("the sentinels did not all see master " + master + ", replica " +
                               std::to_string(data_[1]->port()) + " and each other in time:\n" +
                               seen + log_tails(20));
    sleep_ms(50);
  }
}

std::string SentinelGroup::url(const std::string& suffix) const {
  std::string out = "redis+sentinel://";
  for (std::size_t i = 0; i < sentinels_.size(); ++i)
    out += (i == 0 ? "" : ",") + std::string("127.0.0.1:") + std::to_string(sentinels_[i].port);
  return out + "/" + service_ + suffix;
}

std::uint16_t SentinelGroup::sentinel_port(int i) const {
  return sentinels_.at(static_cast<std::size_t>(i)).port;
}

bool SentinelGroup::sentinel_running(int i) const {
  return sentinels_.at(static_cast<std::size_t>(i)).pid > 0;
}

bool SentinelGroup::is_sentinel(std::uint16_t port) const {
  return std::any_of(sentinels_.begin(), sentinels_.end(),
                     [port](const Sentinel& s) { return s.port == port; });
}

std::string SentinelGroup::cli(std::uint16_t port, const std::string& args) const {
  return redis_cli_at(port, args);
}

std::string SentinelGroup::query(std::uint16_t port, const std::string& args) const {
  return redis_cli_at(port, (is_sentinel(port) ? sentinel_auth_ : server_auth_) + args, 5);
}

std::uint16_t SentinelGroup::master_port() const {
  std::string seen;
  for (const auto& s : sentinels_) {
    if (s.pid <= 0) continue;
    const std::string out = query(s.port, "SENTINEL get-master-addr-by-name " + service_);
    if (const auto port = port_of_address(out); port != 0) return port;
    seen += "sentinel " + std::to_string(s.port) + ": " + out + "\n";
  }
  throw std::runtime_error("no live sentinel named the master of " + service_ + "\n" + seen);
}

std::uint16_t SentinelGroup::replica_port() const {
  const auto master = master_port();
  for (const auto& node : data_)
    if (node->port() != master) return node->port();
  throw std::runtime_error("the sentinels name no data node of the group as master");
}

RedisServer& SentinelGroup::data_node(std::uint16_t port) {
  for (auto& node : data_)
    if (node->port() == port) return *node;
  throw std::runtime_error("no data node of the group on port " + std::to_string(port));
}

std::uint16_t SentinelGroup::kill_master() {
  const auto port = master_port();
  data_node(port).kill();
  return port;
}

void SentinelGroup::restart(std::uint16_t data_port) {
  const auto it = std::find_if(data_.begin(), data_.end(),
                               [data_port](const auto& n) { return n->port() == data_port; });
  if (it == data_.end())
    throw std::runtime_error("no data node of the group on port " + std::to_string(data_port));
  if ((*it)->running()) return;
  std::uint16_t master = 0;
  try {
    master = master_port();
  } catch (const std::runtime_error&) {
    // No sentinel to ask: it comes back as a master.
  }
  it->reset();  // its old directory goes
  *it = std::make_unique<RedisServer>(data_args(master == data_port ? 0 : master), data_port);
}

void SentinelGroup::stop_sentinel(int i) {
  auto& s = sentinels_.at(static_cast<std::size_t>(i));
  if (s.pid <= 0) return;
  ::kill(s.pid, SIGKILL);
  ::waitpid(s.pid, nullptr, 0);
  s.pid = -1;
}

void SentinelGroup::start_sentinel(int i) {
  auto& s = sentinels_.at(static_cast<std::size_t>(i));
  if (s.pid > 0) return;
  static const bool has_sentinel_binary = in_path("redis-sentinel");
  s.pid = has_sentinel_binary ? spawn({"redis-sentinel", s.conf})
                              : spawn({"redis-server", s.conf, "--sentinel"});
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (!can_connect(s.port)) {
    int status = 0;
    if (::waitpid(s.pid, &status, WNOHANG) == s.pid) {
      s.pid = -1;
      throw std::runtime_error("sentinel on port " + std::to_string(s.port) +
                               " exited at start:\n" + log_tails(20));
    }
    if (Clock::now() > until) {
      stop_sentinel(i);
      throw std::runtime_error("sentinel on port " + std::to_string(s.port) +
                               " did not accept connections within 10 s");
    }
    sleep_ms(10);
  }
}

void SentinelGroup::stop_all_sentinels() {
  for (int i = 0; i < 3; ++i)
    stop_sentinel(i);
}

std::string SentinelGroup::failover() {
  for (const auto& s : sentinels_)
    if (s.pid > 0) return query(s.port, "SENTINEL FAILOVER " + service_);
  throw std::runtime_error("failover: no sentinel is running");
}

std::uint16_t SentinelGroup::wait_for_new_master(std::uint16_t old_port,
                                                 std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  std::string seen;
  for (;;) {
    seen.clear();
    std::uint16_t agreed = 0;
    bool ok = true;
    int live = 0;
    for (const auto& s : sentinels_) {
      if (s.pid <= 0) continue;
      ++live;
      const std::string out = query(s.port, "SENTINEL get-master-addr-by-name " + service_);
      const auto port = port_of_address(out);
      seen += "sentinel " + std::to_string(s.port) + " names " +
              (port != 0 ? std::to_string(port) : out) + "\n";
      if (port == 0 || port == old_port || (agreed != 0 && port != agreed)) ok = false;
      if (agreed == 0) agreed = port;
    }
    if (live == 0) throw std::runtime_error("wait_for_new_master: no sentinel is running");
    if (ok && agreed != 0) {
      const std::string info = query(agreed, "INFO replication");
      if (info.find("role:master") != std::string::npos) return agreed;
      seen += std::to_string(agreed) + " INFO replication:\n" + info;
    }
    if (Clock::now() > until)
      throw std::runtime_error("no new master in place of " + std::to_string(old_port) + " in " +
                               std::to_string(limit.count()) + " ms:\n" + seen + log_tails(20));
    sleep_ms(50);
  }
}

}  // namespace tempest::test
