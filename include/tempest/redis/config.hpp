// Connection configuration: a plain struct with documented defaults, usually parsed from a URL.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace tempest::redis {

using Duration = std::chrono::milliseconds;

struct TlsOptions {
  TlsOptions() = default;   // not an aggregate: see ScanOptions in client.hpp
  bool enabled = false;     // rediss:// turns this on
  bool verify_peer = true;  // verify the server certificate chain (and host name when verify_host)
  bool verify_host = true;  // check the certificate matches `host` (ignored when !verify_peer)
  std::string ca_file;      // PEM CA bundle; empty: the system's default verify paths
  std::string cert_file;    // client certificate (PEM), optional
  std::string key_file;     // client private key (PEM), optional
  std::string server_name;  // SNI / host name to verify; empty: `host`
};

struct Config {
  Config() = default;  // not an aggregate: see ScanOptions in client.hpp
  enum class Transport { tcp, unix_socket };

  Transport transport = Transport::tcp;
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string path;         // Unix socket path (transport == unix_socket)
  int db = 0;               // SELECTed on every (re)connect when != 0
  std::string username;     // ACL user; empty: password-only AUTH
  std::string password;     // empty: no AUTH. Never logged, never in an error message.
  std::string client_name;  // CLIENT SETNAME on every (re)connect when not empty

  Duration connect_timeout{2000};     // TCP/TLS connect plus handshake (AUTH/SELECT/SETNAME)
  Duration command_timeout{1000};     // default deadline of every request; per-call override exists
  Duration health_interval{1000};     // PING when nothing was read for this long
  Duration health_timeout{1000};      // no reply at all within this after the PING: reconnect
  Duration reconnect_min{50};         // first reconnect delay; doubles up to reconnect_max
  Duration reconnect_max{2000};       // with +-25% jitter
  Duration disconnect_timeout{1000};  // disconnect() waits this long for in-flight requests

  TlsOptions tls;

  // Parses redis://[[user]:password@]host[:port][/db][?params], rediss://... (TLS) and
  // unix://[[user]:password@]/path/to/redis.sock[?db=N&params]. User and password are
  // percent-decoded. Query parameters (durations accept "250ms", "1.5s" or bare seconds):
  //   connect_timeout (socket_connect_timeout), command_timeout (timeout, socket_timeout),
  //   health_interval, health_timeout, reconnect_min, reconnect_max, disconnect_timeout,
  //   client_name (name), db, tls_ca (ssl_ca_certs), tls_cert (ssl_certfile), tls_key
  //   (ssl_keyfile), tls_verify (ssl_cert_reqs: required|none, or true|false), tls_verify_host
  //   (ssl_check_hostname), tls_server_name.
  // Throws ConfigError naming the wrong part; the message never contains the password.
  static Config from_url(std::string_view url);

  // redis://user:***@host:port/db (or unix:///path?db=N): safe for logs.
  std::string redacted() const;
};

}  // namespace tempest::redis
