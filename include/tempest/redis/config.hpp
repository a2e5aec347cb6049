/// @file
/// Connection configuration: a plain struct with documented defaults, usually parsed from a URL.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tempest::redis {

/// Timeouts and intervals, in milliseconds.
using Duration = std::chrono::milliseconds;

/// TLS to Redis (rediss://): verification, client certificate, SNI.
struct TlsOptions {
  TlsOptions() = default;  ///< not an aggregate: see ScanOptions in client.hpp
  bool enabled = false;    ///< rediss:// turns this on
  bool verify_peer =
      true;  ///< verify the server certificate chain (and host name when verify_host)
  bool verify_host = true;  ///< check the certificate matches `host` (ignored when !verify_peer)
  std::string ca_file;      ///< PEM CA bundle; empty: the system's default verify paths
  std::string cert_file;    ///< client certificate (PEM), optional
  std::string key_file;     ///< client private key (PEM), optional
  std::string server_name;  ///< SNI / host name to verify; empty: `host`
};

/// A host and port (a Redis Cluster seed node).
struct Endpoint {
  std::string host;           ///< name or address
  std::uint16_t port = 6379;  ///< TCP port
};

/// Redis Cluster: the client discovers the nodes from the seeds (Config::host:port and `seeds`),
/// routes each command to the master that serves its keys' slot, and follows redirects.
struct ClusterOptions {
  ClusterOptions() = default;   ///< not an aggregate: see ScanOptions in client.hpp
  bool enabled = false;         ///< redis://host:port?cluster=true, or redis+cluster://host:port
  std::vector<Endpoint> seeds;  ///< more seed nodes (seed=host:port, repeated)
  bool read_from_replicas = false;   ///< reads go to replicas (READONLY); writes to masters
  Duration refresh_interval{30000};  ///< the slot map is also read again this often
  int max_redirects = 16;  ///< MOVED / ASK / TRYAGAIN followed per request, within its deadline
};

/// Redis Sentinel: the client asks the sentinels for the master of `service` before every
/// connect, checks with ROLE that the node it reaches is that master (a sentinel can be stale),
/// and finds the master again when the link drops or a write is answered -READONLY (a failover).
/// Host and port of the Config are then the master's, as last discovered.
struct SentinelOptions {
  SentinelOptions() = default;      ///< not an aggregate: see ScanOptions in client.hpp
  bool enabled = false;             ///< redis+sentinel://s1:26379,s2:26379/service
  std::string service;              ///< the master's name, as the sentinels monitor it
  std::vector<Endpoint> sentinels;  ///< the sentinels asked, in turn
  std::string username;  ///< for the sentinels (sentinel_username); the URL's are the master's
  std::string password;  ///< sentinel_password. Never logged, never in an error message.
  /// Read-only commands go to the service's replicas (SENTINEL replicas: those up and in sync,
  /// in turn), everything else to the master; no replica connected: the master. Replicas lag
  /// the master: a read right after a write may not see it yet.
  bool read_from_replicas = false;
  Duration replica_refresh{10000};  ///< the replica list is asked for again this often
};

/// Everything a Client needs to reach Redis, with documented defaults; usually from_url().
struct Config {
  Config() = default;  ///< not an aggregate: see ScanOptions in client.hpp
  /// TCP (host, port) or a Unix socket (path).
  enum class Transport { tcp, unix_socket };
  /// What happens to requests while there is no link to Redis.
  enum class WhenDisconnected {
    queue,  ///< they wait for the next link, each up to its own deadline
    fail,   ///< they fail at once with ConnectionError (and those queued fail when the link drops)
  };

  Transport transport = Transport::tcp;  ///< tcp unless the URL is unix://
  std::string host = "127.0.0.1";        ///< Redis's host (a cluster's first seed)
  std::uint16_t port = 6379;             ///< Redis's port
  std::string path;                      ///< Unix socket path (transport == unix_socket)
  int db = 0;                            ///< SELECTed on every (re)connect when != 0
  std::string username;                  ///< ACL user; empty: password-only AUTH
  std::string password;     ///< empty: no AUTH. Never logged, never in an error message.
  std::string client_name;  ///< CLIENT SETNAME on every (re)connect when not empty

  Duration connect_timeout{2000};  ///< TCP/TLS connect plus handshake (AUTH/SELECT/SETNAME/PING)
  Duration command_timeout{1000};  ///< default deadline of every request; per-call override exists
  Duration health_interval{1000};  ///< PING when nothing was read for this long
  /// The link is judged dead when nothing at all arrives within this after the PING, unless a
  /// request in flight still has time left (a slow command explains the silence).
  Duration health_timeout{1000};
  Duration reconnect_min{50};    ///< first reconnect delay; doubles up to reconnect_max
  Duration reconnect_max{2000};  ///< with +-25% jitter
  /// The backoff starts again from reconnect_min only after a link stayed up this long, so a
  /// server that accepts and then drops connections is retried at the backoff's pace.
  Duration stable_after{5000};
  Duration disconnect_timeout{1000};  ///< disconnect() waits this long for in-flight requests

  /// Requests waiting (queued or in flight) at most; more fail at once with ConnectionError.
  std::size_t max_pending = 100000;
  WhenDisconnected when_disconnected = WhenDisconnected::queue;  ///< see WhenDisconnected
  /// Largest reply accepted (bytes on the wire plus in-memory nodes of arrays); a larger one fails
  /// only the request it answers, with ProtocolError.
  std::size_t max_reply_size = std::size_t{512} << 20;

  TlsOptions tls;            ///< TLS (rediss://)
  ClusterOptions cluster;    ///< Redis Cluster (cluster=true, redis+cluster://)
  SentinelOptions sentinel;  ///< Redis Sentinel (redis+sentinel://)

  /// Parses redis://[[user]:password\@]host[:port][/db][?params], rediss://... (TLS) and
  /// unix://[[user]:password\@]/path/to/redis.sock[?db=N&params]; redis+cluster:// and
  /// rediss+cluster:// are redis:// and rediss:// with cluster=true;
  /// redis+sentinel://[[user]:password\@]host:port[,host:port...]/service[/db][?params] (and
  /// rediss+sentinel://, TLS to the sentinels and the master) names the sentinels (port 26379 by
  /// default) and the master's name; the credentials are the master's, the sentinels' are
  /// sentinel_username / sentinel_password. User and password are
  /// percent-decoded. Query parameters (durations accept "250ms", "1.5s" or bare seconds):
  ///   cluster (true|false), seed (host:port, repeated), read_from_replicas (a cluster's or a
  ///   Sentinel service's), cluster_refresh (duration), max_redirects, replica_refresh (duration,
  ///   Sentinel);
  ///   connect_timeout (socket_connect_timeout), command_timeout (timeout, socket_timeout),
  ///   health_interval, health_timeout, reconnect_min, reconnect_max, stable_after,
  ///   disconnect_timeout, max_pending, max_reply_size (bytes), when_disconnected (queue|fail),
  ///   client_name (name), db, tls_ca (ssl_ca_certs), tls_cert (ssl_certfile), tls_key
  ///   (ssl_keyfile), tls_verify (ssl_cert_reqs: required|none, or true|false), tls_verify_host
  ///   (ssl_check_hostname), tls_server_name.
  /// Throws ConfigError naming the wrong part; the message never contains the password.
  static Config from_url(std::string_view url);

  /// Throws ConfigError naming the first inconsistent field (a Config built in code is checked
  /// like one from a URL: every client and connection calls this).
  void validate() const;

  /// `redis://user:***@host:port/db` (or unix:///path?db=N): safe for logs.
  std::string redacted() const;
};

}  // namespace tempest::redis
