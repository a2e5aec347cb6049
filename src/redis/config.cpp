#include "tempest/redis/config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

#include "tempest/redis/error.hpp"

namespace tempest::redis {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw ConfigError("invalid Redis URL: " + what);
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in`; `what` names the part for the error (the text itself is never echoed,
// since it may be a password).
std::string percent_decode(std::string_view in, const char* what) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) fail(std::string("bad percent-encoding in ") + what);
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) fail(std::string("bad percent-encoding in ") + what);
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int parse_db(std::string_view s) {
  int db = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), db);
  if (!all_digits(s) || ec != std::errc{} || p != s.data() + s.size())
    fail("bad db '" + std::string(s) + "': expected a non-negative integer");
  return db;
}

std::uint16_t parse_port(std::string_view s) {
  // Text that is not a number is not echoed: redis://user:secret (the host forgotten) puts the
  // password where the port goes.
  if (!all_digits(s))
    fail(s.empty() ? "bad port '': expected an integer in 1..65535"
                   : "bad port: not a number (the text is not shown, as it may be a password: "
                     "credentials go before '@', as in redis://user:password@host:port)");
  unsigned port = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  if (ec != std::errc{} || p != s.data() + s.size() || port == 0 || port > 65535)
    fail("bad port '" + std::string(s) + "': expected an integer in 1..65535");
  return static_cast<std::uint16_t>(port);
}

Duration parse_duration(std::string_view name, std::string_view v) {
  std::string_view num = v;
  double scale = 1000.0;  // bare numbers are seconds, as in redis-py's socket_timeout
  if (num.ends_with("ms")) {
    num.remove_suffix(2);
    scale = 1.0;
  } else if (num.ends_with("s")) {
    num.remove_suffix(1);
  }
  double value = 0;
  const auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), value);
  if (num.empty() || ec != std::errc{} || p != num.data() + num.size() || !std::isfinite(value) ||
      value <= 0 || value * scale > 1e9)
    fail("bad value '" + std::string(v) + "' for parameter '" + std::string(name) +
         "': expected a positive duration such as 250ms, 1.5s or 2");
  return Duration(std::max<long long>(1, std::llround(value * scale)));
}

std::size_t parse_count(std::string_view name, std::string_view v) {
  std::size_t n = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (!all_digits(v) || ec != std::errc{} || p != v.data() + v.size() || n == 0)
    fail("bad value '" + std::string(v) + "' for parameter '" + std::string(name) +
         "': expected a positive integer");
  return n;
}

bool parse_bool(std::string_view name, std::string_view v) {
  const std::string l = lower(v);
  if (l == "1" || l == "true" || l == "yes" || l == "on" || l == "required") return true;
  if (l == "0" || l == "false" || l == "no" || l == "off" || l == "none") return false;
  fail("bad value '" + std::string(v) + "' for parameter '" + std::string(name) +
       "': expected true or false");
}

void parse_host_port(std::string_view hp, Config& c) {
  if (hp.empty()) fail("missing host");
  std::string_view host = hp;
  std::string_view port;
  if (hp.front() == '[') {
    const auto close = hp.find(']');
    if (close == std::string_view::npos) fail("bad host: '[' without ']'");
    host = hp.substr(1, close - 1);
    const auto after = hp.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') fail("bad host: unexpected text after ']'");
      port = after.substr(1);
      if (port.empty()) fail("bad port '': expected an integer in 1..65535");
    }
    if (host.empty() ||
        host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
      fail("bad host '" + std::string(host) + "': not an IPv6 address");
  } else {
    const auto colon = hp.rfind(':');
    if (colon != std::string_view::npos) {
      host = hp.substr(0, colon);
      port = hp.substr(colon + 1);
      if (port.empty()) fail("bad port '': expected an integer in 1..65535");
    }
    if (host.empty()) fail("missing host");
    const bool ok = std::all_of(host.begin(), host.end(), [](unsigned char ch) {
      return std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_';
    });
    if (!ok) fail("bad host '" + std::string(host) + "'");
  }
  c.host = std::string(host);
  if (!port.empty()) c.port = parse_port(port);
}

void apply_param(Config& c, std::string_view key, std::string_view raw) {
  const std::string k = lower(key);
  const std::string v = percent_decode(raw, "a query parameter");
  auto need_value = [&] {
    if (v.empty()) fail("empty value for parameter '" + k + "'");
  };
  if (k == "connect_timeout" || k == "socket_connect_timeout") {
    c.connect_timeout = parse_duration(k, v);
  } else if (k == "command_timeout" || k == "timeout" || k == "socket_timeout") {
    c.command_timeout = parse_duration(k, v);
  } else if (k == "health_interval" || k == "health_check_interval") {
    c.health_interval = parse_duration(k, v);
  } else if (k == "health_timeout") {
    c.health_timeout = parse_duration(k, v);
  } else if (k == "reconnect_min") {
    c.reconnect_min = parse_duration(k, v);
  } else if (k == "reconnect_max") {
    c.reconnect_max = parse_duration(k, v);
  } else if (k == "disconnect_timeout") {
    c.disconnect_timeout = parse_duration(k, v);
  } else if (k == "stable_after") {
    c.stable_after = parse_duration(k, v);
  } else if (k == "max_pending") {
    c.max_pending = parse_count(k, v);
  } else if (k == "max_reply_size") {
    c.max_reply_size = parse_count(k, v);
  } else if (k == "when_disconnected") {
    const std::string l = lower(v);
    if (l == "queue") {
      c.when_disconnected = Config::WhenDisconnected::queue;
    } else if (l == "fail") {
      c.when_disconnected = Config::WhenDisconnected::fail;
    } else {
      fail("bad value '" + v + "' for parameter 'when_disconnected': expected queue or fail");
    }
  } else if (k == "client_name" || k == "name") {
    need_value();
    if (v.find_first_of(" \r\n\t") != std::string::npos)
      fail("bad value for parameter '" + k + "': a client name cannot contain spaces");
    c.client_name = v;
  } else if (k == "db") {
    c.db = parse_db(v);
  } else if (k == "tls_ca" || k == "ssl_ca_certs") {
    need_value();
    c.tls.ca_file = v;
  } else if (k == "tls_cert" || k == "ssl_certfile") {
    need_value();
    c.tls.cert_file = v;
  } else if (k == "tls_key" || k == "ssl_keyfile") {
    need_value();
    c.tls.key_file = v;
  } else if (k == "tls_verify" || k == "ssl_cert_reqs") {
    c.tls.verify_peer = parse_bool(k, v);
  } else if (k == "tls_verify_host" || k == "ssl_check_hostname") {
    c.tls.verify_host = parse_bool(k, v);
  } else if (k == "cluster") {
    c.cluster.enabled = parse_bool(k, v);
  } else if (k == "seed") {
    Config node;
    parse_host_port(v, node);
    c.cluster.seeds.push_back(Endpoint{node.host, node.port});
  } else if (k == "read_from_replicas") {
    (c.sentinel.enabled ? c.sentinel.read_from_replicas : c.cluster.read_from_replicas) =
        parse_bool(k, v);
  } else if (k == "replica_refresh") {
    if (!c.sentinel.enabled)
      fail(
          "parameter 'replica_refresh' is for redis+sentinel:// URLs (a cluster reads its "
          "replicas from the slot map: cluster_refresh)");
    c.sentinel.replica_refresh = parse_duration(k, v);
  } else if (k == "cluster_refresh") {
    c.cluster.refresh_interval = parse_duration(k, v);
  } else if (k == "max_redirects") {
    const std::size_t n = parse_count(k, v);
    if (n > 255) fail("bad value '" + v + "' for parameter 'max_redirects': at most 255");
    c.cluster.max_redirects = static_cast<int>(n);
  } else if (k == "sentinel_username") {
    need_value();
    c.sentinel.username = v;
  } else if (k == "sentinel_password") {
    need_value();
    c.sentinel.password = v;
  } else if (k == "tls_server_name") {
    need_value();
    c.tls.server_name = v;
  } else {
    fail("unknown parameter '" + std::string(key) + "'");
  }
}

void parse_userinfo(std::string_view ui, Config& c) {
  const auto colon = ui.find(':');
  if (colon == std::string_view::npos) {
    // Never echo it: it may be a password written without the leading ':'.
    fail("credentials without ':' (use redis://:password@host or redis://user:password@host)");
  }
  c.username = percent_decode(ui.substr(0, colon), "the user name");
  c.password = percent_decode(ui.substr(colon + 1), "the password");
  if (c.password.empty()) fail("empty password after ':'");
}

}  // namespace

Config Config::from_url(std::string_view url) {
  Config c;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos)
    fail("missing scheme (expected redis://, rediss://, redis+sentinel:// or unix://)");
  std::string scheme = lower(url.substr(0, sep));
  if (scheme.ends_with("+sentinel")) {
    scheme.resize(scheme.size() - 9);
    if (scheme != "redis" && scheme != "rediss")
      fail("unsupported scheme '" + scheme +
           "+sentinel' (expected redis+sentinel:// or rediss+sentinel://)");
    c.sentinel.enabled = true;
  } else if (scheme.ends_with("+cluster")) {
    scheme.resize(scheme.size() - 8);
    if (scheme != "redis" && scheme != "rediss")
      fail("unsupported scheme '" + scheme +
           "+cluster' (expected redis+cluster:// or rediss+cluster://)");
    c.cluster.enabled = true;
  }
  if (scheme == "rediss") {
    c.tls.enabled = true;
  } else if (scheme == "unix") {
    c.transport = Transport::unix_socket;
  } else if (scheme != "redis") {
    fail("unsupported scheme '" + scheme + "' (expected redis://, rediss:// or unix://)");
  }
  std::string_view rest = url.substr(sep + 3);

  // Credentials end at the last '@' so that unencoded '/', '?' or '@' in a password still parse.
  const auto at = rest.rfind('@');
  std::string_view userinfo;
  if (at != std::string_view::npos) {
    userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
  }
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest.find('#') != std::string_view::npos) fail("unexpected '#' fragment");
  if (at != std::string_view::npos) parse_userinfo(userinfo, c);

  if (c.transport == Transport::unix_socket) {
    if (rest.empty() || rest == "/")
      fail("missing socket path (expected unix:///path/to/redis.sock)");
    if (rest.front() != '/')
      fail("socket path must be absolute (expected unix:///path/to/redis.sock)");
    c.path = percent_decode(rest, "the socket path");
  } else if (c.sentinel.enabled) {
    // host:port[,host:port...]/service[/db]
    const auto slash = rest.find('/');
    std::string_view hosts = rest.substr(0, slash);
    while (true) {
      const auto comma = hosts.find(',');
      Config node;
      node.port = 26379;
      parse_host_port(hosts.substr(0, comma), node);
      c.sentinel.sentinels.push_back(Endpoint{node.host, node.port});
      if (comma == std::string_view::npos) break;
      hosts.remove_prefix(comma + 1);
    }
    std::string_view path =
        slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    const auto next = path.find('/');
    c.sentinel.service = percent_decode(path.substr(0, next), "the service name");
    if (c.sentinel.service.empty())
      fail("missing service name (expected redis+sentinel://host:port/service_name)");
    if (next != std::string_view::npos && next + 1 < path.size())
      c.db = parse_db(path.substr(next + 1));
    // Until discovery: the first sentinel, so that a Config is complete (never connected to as
    // a data node: the handshake checks ROLE).
    c.host = c.sentinel.sentinels.front().host;
    c.port = c.sentinel.sentinels.front().port;
  } else {
    const auto slash = rest.find('/');
    parse_host_port(rest.substr(0, slash), c);
    if (slash != std::string_view::npos) {
      std::string_view db = rest.substr(slash + 1);
      if (!db.empty()) c.db = parse_db(db);
    }
  }

  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0)
      fail("bad query parameter '" + std::string(item.substr(0, eq)) + "': expected name=value");
    apply_param(c, item.substr(0, eq), item.substr(eq + 1));
  }
  try {
    c.validate();
  } catch (const ConfigError& e) {
    std::string what = e.what();
    const std::string_view prefix = "invalid Redis config: ";
    if (what.starts_with(prefix)) what.erase(0, prefix.size());
    fail(what);
  }
  return c;
}

void Config::validate() const {
  const auto bad = [](const std::string& what) {
    throw ConfigError("invalid Redis config: " + what);
  };
  if (transport == Transport::tcp) {
    if (host.empty()) bad("missing host");
    if (port == 0) bad("bad port '0': expected an integer in 1..65535");
    if (!path.empty()) bad("a Unix socket path is set but the transport is TCP");
  } else {
    if (path.empty()) bad("missing socket path (expected unix:///path/to/redis.sock)");
    if (path.front() != '/') bad("socket path must be absolute");
    if (tls.enabled) bad("TLS over a Unix socket is not supported");
  }
  if (db < 0) bad("bad db '" + std::to_string(db) + "': expected a non-negative integer");
  if (cluster.enabled) {
    if (transport != Transport::tcp) bad("Redis Cluster needs TCP nodes, not a Unix socket");
    if (db != 0)
      bad("Redis Cluster serves database 0 only, not db " + std::to_string(db) +
          " (separate data with key prefixes instead)");
    for (const auto& s : cluster.seeds)
      if (s.host.empty() || s.port == 0) bad("a cluster seed without host or port");
    if (cluster.max_redirects < 1 || cluster.max_redirects > 255)
      bad("cluster max_redirects must be in 1..255");
    if (cluster.refresh_interval.count() <= 0) bad("cluster refresh_interval must be positive");
  } else if (!cluster.seeds.empty()) {
    bad("cluster seeds given without cluster=true");
  }
  if (sentinel.enabled) {
    if (cluster.enabled) bad("Sentinel and Redis Cluster cannot be combined");
    if (transport != Transport::tcp) bad("Sentinel needs TCP, not a Unix socket");
    if (sentinel.service.empty()) bad("Sentinel needs the master's service name");
    if (sentinel.sentinels.empty()) bad("Sentinel needs at least one sentinel address");
    for (const auto& s : sentinel.sentinels)
      if (s.host.empty() || s.port == 0) bad("a sentinel without host or port");
    if (!sentinel.username.empty() && sentinel.password.empty())
      bad("a sentinel user name without a sentinel password");
    // Each refresh opens a connection to a sentinel: not a busy loop.
    if (sentinel.replica_refresh < Duration(100))
      bad("sentinel replica_refresh must be at least 100ms");
  } else if (!sentinel.sentinels.empty() || !sentinel.password.empty() ||
             sentinel.read_from_replicas) {
    bad("sentinel settings given without redis+sentinel://");
  }
  if (!username.empty() && password.empty()) bad("a user name without a password");
  if (client_name.find_first_of(" \r\n\t") != std::string::npos)
    bad("a client name cannot contain spaces");
  const std::pair<const char*, Duration> durations[] = {
      {"connect_timeout", connect_timeout}, {"command_timeout", command_timeout},
      {"health_interval", health_interval}, {"health_timeout", health_timeout},
      {"reconnect_min", reconnect_min},     {"reconnect_max", reconnect_max},
      {"stable_after", stable_after},       {"disconnect_timeout", disconnect_timeout}};
  for (const auto& [name, d] : durations)
    if (d.count() <= 0) bad(std::string(name) + " must be positive");
  if (reconnect_min > reconnect_max) bad("reconnect_min is larger than reconnect_max");
  if (max_pending == 0) bad("max_pending must be at least 1");
  if (max_reply_size < 1024) bad("max_reply_size must be at least 1024 bytes");
  if (!tls.enabled && (!tls.ca_file.empty() || !tls.cert_file.empty() || !tls.key_file.empty() ||
                       !tls.server_name.empty()))
    bad(transport == Transport::tcp
            ? "TLS parameters given with redis:// (use rediss:// for TLS, or set tls.enabled)"
            : "TLS parameters given for a Unix socket (TLS over a Unix socket is not supported)");
  if (tls.cert_file.empty() != tls.key_file.empty())
    bad("a TLS client certificate needs both tls_cert and tls_key");
}

std::string Config::redacted() const {
  std::string out;
  if (sentinel.enabled) {
    out = tls.enabled ? "rediss+sentinel://" : "redis+sentinel://";
    if (!password.empty()) out += username + ":***@";
    for (std::size_t i = 0; i < sentinel.sentinels.size(); ++i) {
      if (i > 0) out += ',';
      const auto& s = sentinel.sentinels[i];
      out += s.host.find(':') != std::string::npos ? "[" + s.host + "]" : s.host;
      out += ':';
      out += std::to_string(s.port);
    }
    out += '/';
    out += sentinel.service;
    out += '/';
    out += std::to_string(db);
    return out;
  }
  if (transport == Transport::unix_socket) {
    out = "unix://";
  } else {
    out = tls.enabled ? "rediss://" : "redis://";
  }
  if (!password.empty()) out += username + ":***@";
  if (transport == Transport::unix_socket) {
    out += path;
    out += "?db=" + std::to_string(db);
    return out;
  }
  if (host.find(':') != std::string::npos) {
    out += '[';
    out += host;
    out += ']';
  } else {
    out += host;
  }
  // Appended piece by piece: g++ 12 -O3 warns (-Wrestrict, a false positive) on "x" + string.
  out += ':';
  out += std::to_string(port);
  out += '/';
  out += std::to_string(db);
  if (cluster.enabled) out += "?cluster=true";
  return out;
}

}  // namespace tempest::redis
