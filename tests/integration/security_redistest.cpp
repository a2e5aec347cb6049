// AUTH (ACL user and password-only), SELECT, CLIENT SETNAME, TLS, and secrets kept out of errors.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <filesystem>

#include "support/redis_server.hpp"
#include "support/run.hpp"
#include "support/tls_certs.hpp"
#include "tempest/redis/client.hpp"

namespace asio = boost::asio;
using namespace tempest::redis;
using namespace std::chrono_literals;
using tempest::test::RedisServer;
using tempest::test::run;

TEST(Auth, AclUserConnectsAndWrongPasswordIsClearWithoutThePassword) {
  RedisServer server;
  ASSERT_NE(server.cli("ACL SETUSER app on '>app-pass-1' '~*' '+@all'").find("OK"),
            std::string::npos);
  asio::io_context io;
  Client good(io.get_executor(), server.url().replace(0, 8, "redis://app:app-pass-1@"));
  Client bad(io.get_executor(),
             server.url("?connect_timeout=500ms").replace(0, 8, "redis://app:Wr0ngPassw0rd@"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await good.connect();
    auto who = co_await good.command(cmd("ACL", "WHOAMI"));
    EXPECT_EQ(who.str(), "app");
    try {
      co_await bad.connect();
      ADD_FAILURE() << "wrong password accepted";
    } catch (const ConnectionError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("WRONGPASS"), std::string::npos) << what;
      EXPECT_NE(what.find("AUTH as user 'app'"), std::string::npos) << what;
      EXPECT_EQ(what.find("Wr0ngPassw0rd"), std::string::npos) << what;
    }
    EXPECT_EQ(bad.last_error().find("Wr0ngPassw0rd"), std::string::npos);
    co_await good.disconnect();
    co_await bad.disconnect();
  });
}

TEST(Auth, PasswordOnlyWithRequirepass) {
  RedisServer server({"--requirepass", "only-pw"});
  asio::io_context io;
  Client ok(io.get_executor(), server.url().replace(0, 8, "redis://:only-pw@"));
  Client none(io.get_executor(), server.url());
  run(io, [&]() -> asio::awaitable<void> {
    co_await ok.connect();
    EXPECT_EQ(co_await ok.ping(), "PONG");
    // Without AUTH the handshake's PING is refused, so connect() fails and says why.
    try {
      co_await none.connect();
      ADD_FAILURE() << "connected without the password";
    } catch (const ConnectionError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("PING failed: NOAUTH"), std::string::npos) << what;
      EXPECT_NE(what.find("requires a password"), std::string::npos) << what;
    }
    EXPECT_FALSE(none.is_connected());
    co_await ok.disconnect();
    co_await none.disconnect();
  });
}

TEST(Select, DatabasesAreIsolatedAndClientNameShows) {
  RedisServer server;
  asio::io_context io;
  Client db1(io.get_executor(), server.url("/1?client_name=tempest-db1"));
  Client db2(io.get_executor(), server.url("/2?name=tempest-db2"));
  run(io, [&]() -> asio::awaitable<void> {
    co_await db1.connect();
    co_await db2.connect();
    co_await db1.set("shared-key", "one");
    EXPECT_EQ(co_await db2.get("shared-key"), std::nullopt);
    co_await db2.set("shared-key", "two");
    EXPECT_EQ(co_await db1.get("shared-key"), "one");
    auto list = (co_await db1.command(cmd("CLIENT", "LIST"))).str();
    EXPECT_NE(list.find("name=tempest-db1"), std::string::npos) << list;
    EXPECT_NE(list.find("name=tempest-db2"), std::string::npos) << list;
    EXPECT_NE(list.find("db=1"), std::string::npos);
    co_await db1.disconnect();
    co_await db2.disconnect();
  });
}

TEST(Transport, UnixSocket) {
  RedisServer probe;  // only to get a throwaway directory
  const std::string sock = probe.dir() + "/redis.sock";
  RedisServer server({"--unixsocket", sock, "--unixsocketperm", "700"});
  asio::io_context io;
  Client client(io.get_executor(), "unix://" + sock + "?db=3");
  run(io, [&]() -> asio::awaitable<void> {
    co_await client.connect();
    co_await client.set("via-unix", "yes");
    EXPECT_EQ(co_await client.get("via-unix"), "yes");
    auto list = (co_await client.command(cmd("CLIENT", "INFO"))).str();
    EXPECT_NE(list.find("db=3"), std::string::npos) << list;
    co_await client.disconnect();
  });
}

namespace {
using tempest::test::Certs;
using tempest::test::make_certs;

// A redis-server serving TLS only, with the certificate of make_certs.
RedisServer tls_server(const Certs& certs) {
  return RedisServer({"--tls-cert-file", certs.cert, "--tls-key-file", certs.key,
                      "--tls-ca-cert-file", certs.ca, "--tls-auth-clients", "no"},
                     0, /*tls=*/true);
}
}  // namespace

TEST(Tls, VerifiedConnectionAndWrongCaFailsClearly) {
  RedisServer scratch;
  const Certs certs = make_certs(scratch.dir());
  RedisServer server = tls_server(certs);
  asio::io_context io;
  Client good(io.get_executor(), server.url("?tls_ca=" + certs.ca));
  Client wrong_ca(io.get_executor(), server.url("?connect_timeout=1s&tls_ca=" + certs.other_ca));
  Client by_name(io.get_executor(),
                 "rediss://localhost:" + std::to_string(server.port()) + "?tls_ca=" + certs.ca);
  run(io, [&]() -> asio::awaitable<void> {
    co_await good.connect();
    co_await good.set("tls-key", "secure");
    EXPECT_EQ(co_await good.get("tls-key"), "secure");
    co_await by_name.connect();
    EXPECT_EQ(co_await by_name.ping(), "PONG");
    try {
      co_await wrong_ca.connect();
      ADD_FAILURE() << "connected with the wrong CA";
    } catch (const ConnectionError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("TLS handshake"), std::string::npos) << what;
      EXPECT_NE(what.find("certificate verify failed"), std::string::npos) << what;
    }
    co_await good.disconnect();
    co_await by_name.disconnect();
    co_await wrong_ca.disconnect();
  });
  EXPECT_THROW(Client(io.get_executor(), server.url("?tls_ca=/nonexistent/ca.pem")), ConfigError);
}

// The certificate names localhost and 127.0.0.1: asked for another name, the handshake fails
// and says that the names do not match (not just "certificate verify failed").
TEST(Tls, HostNameMismatchFailsClearly) {
  RedisServer scratch;
  const Certs certs = make_certs(scratch.dir());
  RedisServer server = tls_server(certs);
  asio::io_context io;
  Client wrong_name(io.get_executor(),
                    server.url("?tls_ca=" + certs.ca + "&tls_server_name=cache.example.com"));
  Client no_host_check(io.get_executor(), server.url("?tls_ca=" + certs.ca +
                                                     "&tls_server_name=cache.example.com"
                                                     "&tls_verify_host=false"));
  run(io, [&]() -> asio::awaitable<void> {
    try {
      co_await wrong_name.connect();
      ADD_FAILURE() << "connected although the certificate names another host";
    } catch (const ConnectionError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("hostname mismatch"), std::string::npos) << what;
      EXPECT_NE(what.find("does not name 'cache.example.com'"), std::string::npos) << what;
    }
    // The chain is still verified without the host check.
    co_await no_host_check.connect();
    EXPECT_EQ(co_await no_host_check.ping(), "PONG");
    co_await no_host_check.disconnect();
    wrong_name.close();
  });
}
