#include "support/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace tempest::test {

std::string RawResponse::body() const {
  const auto pos = text.find("\r\n\r\n");
  return pos == std::string::npos ? std::string() : text.substr(pos + 4);
}

namespace {
// A complete response: headers plus Content-Length bytes of body.
bool complete(const std::string& text) {
  const auto end = text.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::string headers = text.substr(0, end);
  for (auto& c : headers)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto cl = headers.find("content-length:");
  if (cl == std::string::npos) return true;
  const auto length = std::stoul(headers.substr(cl + 15));
  return text.size() >= end + 4 + length;
}
}  // namespace

RawResponse raw_http(std::uint16_t port, const std::string& request,
                     std::chrono::milliseconds timeout, bool stop_after_response) {
  RawConnection c(port);
  c.send(request);
  RawResponse r;
  r.text = c.read_while(
      [&](const std::string& text) { return !(stop_after_response && complete(text)); }, timeout);
  r.closed = c.closed();
  if (r.text.starts_with("HTTP/1.")) r.status = std::stoi(r.text.substr(9, 3));
  return r;
}

RawConnection::RawConnection(std::uint16_t port, const char* from)
    : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
  if (fd_ < 0) throw std::runtime_error("RawConnection: no socket (out of file descriptors?)");
  if (from != nullptr) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &local.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      ::close(fd_);
      throw std::runtime_error(std::string("RawConnection: cannot bind ") + from);
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    throw std::runtime_error("raw_http: connect failed");
  }
}

RawConnection::~RawConnection() {
  ::close(fd_);
}

void RawConnection::send(const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

const std::string& RawConnection::read_until(const std::string& needle,
                                             std::chrono::milliseconds timeout) {
  return read_while([&](const std::string& text) { return text.find(needle) == std::string::npos; },
                    timeout);
}

const std::string& RawConnection::read_while(const std::function<bool(const std::string&)>& more,
                                             std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (!closed_ && more(received_)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      break;
    }
    received_.append(buf, static_cast<std::size_t>(n));
  }
  return received_;
}

RawResponse http_request(std::uint16_t port, const std::string& method, const std::string& target,
                         const std::string& body) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST")
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  return raw_http(port, req);
}

RawResponse http_get(std::uint16_t port, const std::string& target) {
  return http_request(port, "GET", target);
}

}  // namespace tempest::test
