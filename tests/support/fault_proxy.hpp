// A fault-injecting TCP proxy for chaos tests: sits between a client and a real redis-server and
// forwards, drops, delays, cuts or resets traffic on demand.
//
// Model: every accepted connection is a Session with two pumps (client->server, server->client).
// A pump's reader keeps reading its source into a queue of chunks (one chunk per read, stamped
// with its arrival time); its writer takes the chunks in order and handles each according to the
// mode current at the time it handles it, so a mode change applies from the next byte on, also to
// bytes that arrived earlier but were still queued (under delay or slow_drip).
//
// Edges chosen where the modes alone say nothing:
//  - EOF (a half-close) travels through the queue like a chunk, in every mode (delayed under delay,
//    after the dripped bytes under slow_drip); only bytes are dropped by black_hole. A session ends
//    when both directions delivered EOF; a reset or error on either side resets the other.
//  - black_hole is a network partition: nothing is forwarded either way (bytes nor EOF) while it
//    is on; what arrived meanwhile is delivered in order once it is off, as TCP would after the
//    partition heals. (It used to drop those bytes, which made streams with holes in them that no
//    TCP connection can have: a client then matched replies to the wrong requests.) A client
//    that gives up on the connection meanwhile closes it; drop_connections() plays a peer that
//    did.
//  - delay forwards each chunk `param` after it arrived at the proxy; a chunk queued under delay is
//    sent at once after a switch to pass, and held after a switch to black_hole.
//  - slow_drip waits `param` before every byte (n bytes take about n * param); client->server
//    traffic passes normally.
//  - reset_mid_reply cuts the next server->client chunk to its first size/2 bytes (a 1-byte chunk
//    forwards nothing), then resets the client (SO_LINGER 0, close) and closes the upstream; the
//    mode stays on, so each connection loses its next reply chunk. A chunk is what one read got,
//    which can hold several pipelined replies or part of one.
//  - accept_then_close: new connections are closed at once without reading; existing ones are
//    closed (FIN, or RST when unread bytes are pending) by set_mode before it returns.
//  - set_mode and drop_connections return after the proxy's thread applied them.
//  - Upstream connect failures close the client side (FIN).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace tempest::test {

class FaultProxy {
 public:
  enum class Mode {
    pass,               // forward both ways
    accept_then_close,  // new connections are accepted and closed at once (no byte read or sent)
    black_hole,         // a partition: connections stay open, nothing moves until it heals
    delay,              // every chunk is forwarded `param` later, both directions, order kept
    reset_mid_reply,    // half of the next server->client chunk, then RST to the client
    slow_drip,          // server->client one byte every `param`
    delay_replies,      // server->client chunks forwarded `param` later; client->server passes
  };

  // Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:upstream_port. Runs its own
  // thread and io_context; the destructor stops it and closes everything.
  explicit FaultProxy(std::uint16_t upstream_port);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::uint16_t port() const { return port_; }
  // "redis://127.0.0.1:<port>" + path_and_query (like "/0?x=y" or "?x=y").
  std::string url(const std::string& path_and_query = "") const;

  // Takes effect for every connection, existing and new, from the next byte on (accept_then_close:
  // for new connections; existing ones are also closed).
  void set_mode(Mode m, std::chrono::milliseconds param = std::chrono::milliseconds(0));
  Mode mode() const;
  std::chrono::milliseconds param() const;  // the param of the last set_mode

  // Connections whose client has sent `needle` (anywhere in what it sent so far) follow this
  // mode instead of set_mode's, from the next byte on (e.g. only the connection that sent
  // "TRACKING" gets its replies delayed). An empty needle ends it.
  void set_mode_of_marked(std::string needle, Mode m,
                          std::chrono::milliseconds param = std::chrono::milliseconds(0));

  void drop_connections();                   // resets every current connection (RST)
  std::size_t connections_accepted() const;  // since construction, accept_then_close's included
  // Sessions not yet closed by the proxy: from accept until a reset, an error, accept_then_close,
  // or both directions having forwarded their EOF.
  std::size_t open_connections() const;

 private:
  class Session;

  struct Setting {
    Mode mode;
    std::chrono::milliseconds param;
  };
  Setting setting() const;
  Setting setting_for(bool marked) const;
  std::string needle() const;
  boost::asio::awaitable<void> accept_loop();
  void forget(const std::shared_ptr<Session>& session);       // proxy thread: a session closed
  void run_on_proxy_thread(const std::function<void()>& fn);  // and wait until it ran

  std::uint16_t upstream_port_;
  boost::asio::io_context io_;  // declared before (destroyed after) what uses it
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;

  mutable std::mutex mu_;  // guards setting_
  Setting setting_{Mode::pass, std::chrono::milliseconds(0)};
  std::string needle_;  // set_mode_of_marked
  Setting marked_setting_{Mode::pass, std::chrono::milliseconds(0)};

  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::size_t> open_{0};

  // Proxy thread only (and the destructor after the thread ended).
  std::set<std::shared_ptr<Session>> sessions_;
  bool stopping_ = false;

  std::thread thread_;
  std::future<void> thread_done_;  // ready when the thread's io_context::run returned
};

}  // namespace tempest::test
