// A raw HTTP client for tests: bytes in, bytes out, with a deadline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace tempest::test {

struct RawResponse {
  std::string text;          // everything received until the server closed or the deadline passed
  bool closed = false;       // the server closed the connection
  int status = 0;            // parsed from the status line, 0 when none
  std::string body() const;  // after the blank line
};

// Sends `request` (after an optional pause between its two halves, to play a slow client) and
// reads until the server closes, a full response arrived (when stop_after_response), or timeout.
RawResponse raw_http(std::uint16_t port, const std::string& request,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(3000),
                     bool stop_after_response = true);

// One connection driven step by step (an interim 100 Continue, then the body).
class RawConnection {
 public:
  // from: the local address to connect from (another loopback address, 127.0.0.2, plays another
  // client); null: the system's choice.
  explicit RawConnection(std::uint16_t port, const char* from = nullptr);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  void send(const std::string& bytes);
  // Everything received so far, after waiting until it holds `needle`, the server closed, or the
  // timeout passed.
  const std::string& read_until(const std::string& needle, std::chrono::milliseconds timeout =
                                                               std::chrono::milliseconds(3000));
  // The same, while more(everything received) says so.
  const std::string& read_while(const std::function<bool(const std::string&)>& more,
                                std::chrono::milliseconds timeout);
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  std::string received_;
  bool closed_ = false;
};

// GET/POST helpers over one short-lived connection.
RawResponse http_get(std::uint16_t port, const std::string& target);
RawResponse http_request(std::uint16_t port, const std::string& method, const std::string& target,
                         const std::string& body = "");

}  // namespace tempest::test
