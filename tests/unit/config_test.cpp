#include <gtest/gtest.h>

#include "tempest/redis/config.hpp"
#include "tempest/redis/error.hpp"

using std::chrono::milliseconds;
using tempest::redis::Config;
using tempest::redis::ConfigError;

TEST(ConfigUrl, MinimalTcpUsesDefaults) {
  const auto c = Config::from_url("redis://localhost");
  EXPECT_EQ(c.transport, Config::Transport::tcp);
  EXPECT_EQ(c.host, "localhost");
  EXPECT_EQ(c.port, 6379);
  EXPECT_EQ(c.db, 0);
  EXPECT_TRUE(c.username.empty());
  EXPECT_TRUE(c.password.empty());
  EXPECT_FALSE(c.tls.enabled);
  EXPECT_EQ(c.command_timeout, milliseconds(1000));
}

TEST(ConfigUrl, HostPortDb) {
  const auto c = Config::from_url("redis://10.1.2.3:6380/5");
  EXPECT_EQ(c.host, "10.1.2.3");
  EXPECT_EQ(c.port, 6380);
  EXPECT_EQ(c.db, 5);
  EXPECT_EQ(Config::from_url("redis://h:1/").db, 0);
  EXPECT_EQ(Config::from_url("REDIS://h").host, "h");
}

TEST(ConfigUrl, Ipv6Host) {
  const auto c = Config::from_url("redis://[::1]:7000/2");
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.port, 7000);
  EXPECT_EQ(c.db, 2);
  EXPECT_EQ(c.redacted(), "redis://[::1]:7000/2");
}

TEST(ConfigUrl, PasswordOnlyAndAclUser) {
  const auto p = Config::from_url("redis://:s3cret@h");
  EXPECT_TRUE(p.username.empty());
  EXPECT_EQ(p.password, "s3cret");
  const auto u = Config::from_url("redis://alice:pw@h:1/0");
  EXPECT_EQ(u.username, "alice");
  EXPECT_EQ(u.password, "pw");
}

TEST(ConfigUrl, PercentDecodingOfCredentials) {
  const auto c = Config::from_url("redis://al%69ce:p%40ss%3Aw%2Fo%25rd@h");
  EXPECT_EQ(c.username, "alice");
  EXPECT_EQ(c.password, "p@ss:w/o%rd");
}

TEST(ConfigUrl, UnencodedSpecialCharactersInPassword) {
  const auto c = Config::from_url("redis://:pa/ss?w@rd@h:6390/1");
  EXPECT_EQ(c.password, "pa/ss?w@rd");
  EXPECT_EQ(c.host, "h");
  EXPECT_EQ(c.port, 6390);
  EXPECT_EQ(c.db, 1);
}

TEST(ConfigUrl, TlsScheme) {
  const auto c = Config::from_url(
      "rediss://h:6390/0?tls_ca=/etc/ca.pem&tls_verify=true&tls_server_name=redis.internal");
  EXPECT_TRUE(c.tls.enabled);
  EXPECT_EQ(c.tls.ca_file, "/etc/ca.pem");
  EXPECT_TRUE(c.tls.verify_peer);
  EXPECT_EQ(c.tls.server_name, "redis.internal");
  EXPECT_EQ(c.redacted(), "rediss://h:6390/0");
}

TEST(ConfigUrl, RedisPyParameterNames) {
  const auto c = Config::from_url(
      "rediss://h?ssl_cert_reqs=none&ssl_ca_certs=%2Ftmp%2Fca.pem&socket_timeout=0.5"
      "&socket_connect_timeout=3&ssl_check_hostname=false");
  EXPECT_FALSE(c.tls.verify_peer);
  EXPECT_FALSE(c.tls.verify_host);
  EXPECT_EQ(c.tls.ca_file, "/tmp/ca.pem");
  EXPECT_EQ(c.command_timeout, milliseconds(500));
  EXPECT_EQ(c.connect_timeout, milliseconds(3000));
}

TEST(ConfigUrl, UnixSocket) {
  const auto c = Config::from_url("unix:///var/run/redis.sock?db=3");
  EXPECT_EQ(c.transport, Config::Transport::unix_socket);
  EXPECT_EQ(c.path, "/var/run/redis.sock");
  EXPECT_EQ(c.db, 3);
  const auto a = Config::from_url("unix://:pw@/tmp/r.sock");
  EXPECT_EQ(a.password, "pw");
  EXPECT_EQ(a.path, "/tmp/r.sock");
  EXPECT_EQ(a.redacted(), "unix://:***@/tmp/r.sock?db=0");
}

TEST(ConfigUrl, Durations) {
  const auto c = Config::from_url(
      "redis://h?connect_timeout=250ms&command_timeout=1.5s&health_interval=2"
      "&health_timeout=300ms&reconnect_min=10ms&reconnect_max=1s&disconnect_timeout=4s");
  EXPECT_EQ(c.connect_timeout, milliseconds(250));
  EXPECT_EQ(c.command_timeout, milliseconds(1500));
  EXPECT_EQ(c.health_interval, milliseconds(2000));
  EXPECT_EQ(c.health_timeout, milliseconds(300));
  EXPECT_EQ(c.reconnect_min, milliseconds(10));
  EXPECT_EQ(c.reconnect_max, milliseconds(1000));
  EXPECT_EQ(c.disconnect_timeout, milliseconds(4000));
}

TEST(ConfigUrl, BacklogAndReplyLimits) {
  const auto c = Config::from_url(
      "redis://h?max_pending=500&max_reply_size=1048576&when_disconnected=fail&stable_after=2s");
  EXPECT_EQ(c.max_pending, 500u);
  EXPECT_EQ(c.max_reply_size, 1048576u);
  EXPECT_EQ(c.when_disconnected, Config::WhenDisconnected::fail);
  EXPECT_EQ(c.stable_after, milliseconds(2000));
  const auto d = Config::from_url("redis://h");
  EXPECT_EQ(d.max_pending, 100000u);
  EXPECT_EQ(d.when_disconnected, Config::WhenDisconnected::queue);
}

// A Config built in code is checked like one parsed from a URL.
TEST(ConfigValidate, CodeBuiltConfigsAreCheckedLikeUrls) {
  const auto error_of = [](const Config& c) -> std::string {
    try {
      c.validate();
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of(Config{}), "");
  Config unix_tls;
  unix_tls.transport = Config::Transport::unix_socket;
  unix_tls.path = "/tmp/r.sock";
  unix_tls.tls.enabled = true;
  EXPECT_NE(error_of(unix_tls).find("TLS over a Unix socket is not supported"), std::string::npos);
  Config files_without_tls;
  files_without_tls.tls.ca_file = "/etc/ssl/ca.pem";
  EXPECT_NE(error_of(files_without_tls).find("TLS parameters given"), std::string::npos);
  Config no_host;
  no_host.host.clear();
  no_host.password = "hunter2";
  EXPECT_NE(error_of(no_host).find("missing host"), std::string::npos);
  EXPECT_EQ(error_of(no_host).find("hunter2"), std::string::npos);
  Config zero_timeout;
  zero_timeout.command_timeout = milliseconds(0);
  EXPECT_NE(error_of(zero_timeout).find("command_timeout must be positive"), std::string::npos);
  Config backwards;
  backwards.reconnect_min = milliseconds(5000);
  EXPECT_NE(error_of(backwards).find("reconnect_min is larger"), std::string::npos);
  Config no_pending;
  no_pending.max_pending = 0;
  EXPECT_NE(error_of(no_pending).find("max_pending"), std::string::npos);
  Config user_only;
  user_only.username = "bob";
  EXPECT_NE(error_of(user_only).find("a user name without a password"), std::string::npos);
}

TEST(ConfigUrl, ClusterSeedsAndOptions) {
  const auto c = Config::from_url(
      "redis://:pw@10.0.0.1:7000?cluster=true&seed=10.0.0.2:7001&seed=%5B::1%5D:7002"
      "&read_from_replicas=yes&cluster_refresh=5s&max_redirects=8");
  EXPECT_TRUE(c.cluster.enabled);
  EXPECT_EQ(c.host, "10.0.0.1");
  EXPECT_EQ(c.port, 7000);
  ASSERT_EQ(c.cluster.seeds.size(), 2u);
  EXPECT_EQ(c.cluster.seeds[0].host, "10.0.0.2");
  EXPECT_EQ(c.cluster.seeds[0].port, 7001);
  EXPECT_EQ(c.cluster.seeds[1].host, "::1");
  EXPECT_EQ(c.cluster.seeds[1].port, 7002);
  EXPECT_TRUE(c.cluster.read_from_replicas);
  EXPECT_EQ(c.cluster.refresh_interval, milliseconds(5000));
  EXPECT_EQ(c.cluster.max_redirects, 8);
  EXPECT_EQ(c.redacted(), "redis://:***@10.0.0.1:7000/0?cluster=true");
  const auto alias = Config::from_url("rediss+cluster://node-1:7000");
  EXPECT_TRUE(alias.cluster.enabled);
  EXPECT_TRUE(alias.tls.enabled);
  EXPECT_FALSE(Config::from_url("redis://h").cluster.enabled);
  EXPECT_FALSE(Config::from_url("redis://h?cluster=false").cluster.enabled);
}

TEST(ConfigUrl, ClientName) {
  EXPECT_EQ(Config::from_url("redis://h?client_name=orders-api").client_name, "orders-api");
  EXPECT_EQ(Config::from_url("redis://h?name=x").client_name, "x");
}

TEST(ConfigUrl, RedactedNeverShowsPassword) {
  const auto c = Config::from_url("redis://bob:hunter2@cache:6380/4");
  EXPECT_EQ(c.redacted(), "redis://bob:***@cache:6380/4");
  EXPECT_EQ(Config::from_url("redis://:hunter2@cache").redacted(), "redis://:***@cache:6379/0");
}

// Every error names the offending part, and none echoes the password.
struct BadUrl {
  const char* url;
  const char* expected_fragment;
};

class ConfigUrlErrors : public ::testing::TestWithParam<BadUrl> {};

TEST_P(ConfigUrlErrors, ThrowsConfigErrorNamingThePart) {
  const auto& p = GetParam();
  try {
    (void)Config::from_url(p.url);
    FAIL() << "no error for " << p.url;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(p.expected_fragment), std::string::npos) << what;
    EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllErrors, ConfigUrlErrors,
    ::testing::Values(
        BadUrl{"localhost:6379", "missing scheme"},
        BadUrl{"http://:hunter2@h", "unsupported scheme 'http'"},
        BadUrl{"redis://", "missing host"}, BadUrl{"redis://:hunter2@", "missing host"},
        BadUrl{"redis://:hunter2@:6379", "missing host"},
        BadUrl{"redis://h:abc", "bad port: not a number"},
        BadUrl{"redis://user:hunter2", "credentials go before '@'"},
        BadUrl{"redis://:hunter2@h:0", "bad port '0'"},
        BadUrl{"redis://h:70000", "bad port '70000'"}, BadUrl{"redis://h:", "bad port ''"},
        BadUrl{"redis://h/x", "bad db 'x'"}, BadUrl{"redis://:hunter2@h/-1", "bad db '-1'"},
        BadUrl{"redis://h/1/2", "bad db '1/2'"}, BadUrl{"redis://h/99999999999", "bad db"},
        BadUrl{"redis://bad host", "bad host 'bad host'"}, BadUrl{"redis://[::1", "bad host"},
        BadUrl{"redis://[zz]:1", "not an IPv6 address"},
        BadUrl{"redis://hunter2@h", "credentials without ':'"},
        BadUrl{"redis://user:@h", "empty password"},
        BadUrl{"redis://:hunt%zzer2@h", "bad percent-encoding in the password"},
        BadUrl{"redis://:hunter2%4@h", "bad percent-encoding in the password"},
        BadUrl{"redis://h?foo=1", "unknown parameter 'foo'"},
        BadUrl{"redis://:hunter2@h?timeout=abc", "bad value 'abc' for parameter 'timeout'"},
        BadUrl{"redis://h?connect_timeout=-1s", "parameter 'connect_timeout'"},
        BadUrl{"redis://h?connect_timeout=0", "parameter 'connect_timeout'"},
        BadUrl{"redis://h?tls_verify=maybe", "bad value 'maybe' for parameter 'tls_verify'"},
        BadUrl{"redis://h?db=two", "bad db 'two'"},
        BadUrl{"redis://h?max_pending=0", "parameter 'max_pending'"},
        BadUrl{"redis://h?max_reply_size=10", "max_reply_size must be at least 1024"},
        BadUrl{"redis://h?when_disconnected=drop", "expected queue or fail"},
        BadUrl{"redis://h?tls_cert=/c.pem", "use rediss://"},
        BadUrl{"rediss://h?tls_cert=/c.pem", "needs both tls_cert and tls_key"},
        BadUrl{"redis://h?client_name=", "empty value for parameter 'client_name'"},
        BadUrl{"redis://h?client_name=a%20b", "cannot contain spaces"},
        BadUrl{"redis://h?novalue", "expected name=value"},
        BadUrl{"redis://h?reconnect_min=5s&reconnect_max=1s", "reconnect_min"},
        BadUrl{"redis://h?tls_ca=/ca.pem", "use rediss://"}, BadUrl{"redis://h#frag", "fragment"},
        BadUrl{"unix://", "missing socket path"},
        BadUrl{"unix://relative.sock", "must be absolute"},
        BadUrl{"unix://:hunter2@relative.sock", "must be absolute"},
        BadUrl{"redis://:hunter2@h/3?cluster=true", "database 0 only"},
        BadUrl{"redis+cluster://:hunter2@h/1", "database 0 only"},
        BadUrl{"unix+cluster:///r.sock", "unsupported scheme 'unix+cluster'"},
        BadUrl{"redis://h?seed=a:1", "seeds given without cluster=true"},
        BadUrl{"redis://h?cluster=true&seed=a:0", "bad port '0'"},
        BadUrl{"redis://h?cluster=true&seed=", "missing host"},
        BadUrl{"redis://h?cluster=true&max_redirects=0", "parameter 'max_redirects'"},
        BadUrl{"redis://h?cluster=true&max_redirects=256", "at most 255"},
        BadUrl{"redis://h?cluster=maybe", "parameter 'cluster'"},
        BadUrl{"redis+sentinel://:hunter2@s1:26379", "missing service name"},
        BadUrl{"redis+sentinel://s1:26379/", "missing service name"},
        BadUrl{"redis+sentinel://s1,,s2/m", "missing host"},
        BadUrl{"redis+sentinel://s1:0/m", "bad port '0'"},
        BadUrl{"redis+sentinel://s1/m/x", "bad db 'x'"},
        BadUrl{"redis+sentinel://s1/m?cluster=true", "cannot be combined"},
        BadUrl{"unix+sentinel:///r.sock", "unsupported scheme 'unix+sentinel'"},
        BadUrl{"redis://h?sentinel_password=hunter2", "without redis+sentinel://"},
        BadUrl{"redis+sentinel://s1/m?sentinel_username=u", "without a sentinel password"},
        BadUrl{"redis://h?replica_refresh=5s", "is for redis+sentinel:// URLs"},
        BadUrl{"redis+sentinel://s1/m?replica_refresh=0", "parameter 'replica_refresh'"},
        BadUrl{"redis+sentinel://s1/m?replica_refresh=10ms", "at least 100ms"},
        BadUrl{"redis+sentinel://s1/m?read_from_replicas=most", "parameter 'read_from_replicas'"}));

TEST(ConfigUrl, SentinelReadsFromReplicas) {
  const auto c =
      Config::from_url("redis+sentinel://s1/m?read_from_replicas=true&replica_refresh=2.5s");
  EXPECT_TRUE(c.sentinel.read_from_replicas);
  EXPECT_FALSE(c.cluster.read_from_replicas);  // not a cluster's setting here
  EXPECT_EQ(c.sentinel.replica_refresh, milliseconds(2500));
  EXPECT_FALSE(Config::from_url("redis+sentinel://s1/m").sentinel.read_from_replicas);
  EXPECT_EQ(Config::from_url("redis+sentinel://s1/m").sentinel.replica_refresh,
            milliseconds(10000));
  const auto cluster = Config::from_url("redis+cluster://h?read_from_replicas=true");
  EXPECT_TRUE(cluster.cluster.read_from_replicas);
  EXPECT_FALSE(cluster.sentinel.read_from_replicas);
}

TEST(ConfigUrl, SentinelAddressesServiceDbAndCredentials) {
  const auto c = Config::from_url(
      "redis+sentinel://app:p%40ss@10.0.0.1:26380,[::1],sentinel-3:5000/orders/2"
      "?sentinel_username=watch&sentinel_password=s3cret&connect_timeout=500ms");
  EXPECT_TRUE(c.sentinel.enabled);
  EXPECT_FALSE(c.tls.enabled);
  EXPECT_EQ(c.sentinel.service, "orders");
  ASSERT_EQ(c.sentinel.sentinels.size(), 3u);
  EXPECT_EQ(c.sentinel.sentinels[0].host, "10.0.0.1");
  EXPECT_EQ(c.sentinel.sentinels[0].port, 26380);
  EXPECT_EQ(c.sentinel.sentinels[1].host, "::1");
  EXPECT_EQ(c.sentinel.sentinels[1].port, 26379);  // the sentinels' default port
  EXPECT_EQ(c.sentinel.sentinels[2].host, "sentinel-3");
  EXPECT_EQ(c.sentinel.sentinels[2].port, 5000);
  EXPECT_EQ(c.db, 2);
  EXPECT_EQ(c.username, "app");  // the master's credentials
  EXPECT_EQ(c.password, "p@ss");
  EXPECT_EQ(c.sentinel.username, "watch");
  EXPECT_EQ(c.sentinel.password, "s3cret");
  EXPECT_EQ(c.connect_timeout, milliseconds(500));
  const std::string shown = c.redacted();
  EXPECT_EQ(shown, "redis+sentinel://app:***@10.0.0.1:26380,[::1]:26379,sentinel-3:5000/orders/2");
  EXPECT_EQ(shown.find("s3cret"), std::string::npos);
  const auto tls = Config::from_url("rediss+sentinel://s1/m?tls_verify=false");
  EXPECT_TRUE(tls.tls.enabled);
  EXPECT_FALSE(tls.tls.verify_peer);
  EXPECT_EQ(tls.db, 0);
}
