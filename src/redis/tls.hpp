// TLS as a socket-free filter (private to src/redis): OpenSSL on memory BIOs. Ciphertext that
// arrived goes in with feed(); plaintext comes out of read(); plaintext to send goes in with
// write() and its ciphertext comes out of take_output(). The link calls it under its own lock,
// so the SSL object is never used by two threads at once, and TLS writes can be sent at once like
// plain ones (asio::ssl::stream would need a strand for both).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

namespace tempest::redis::detail {

class TlsFilter {
 public:
  // `ctx` outlives the filter. `host` is sent as SNI and, when `verify_host`, must be named by
  // the server's certificate (an IP address is matched against its IP entries).
  TlsFilter(SSL_CTX* ctx, const std::string& host, bool verify_host);
  ~TlsFilter();
  TlsFilter(const TlsFilter&) = delete;
  TlsFilter& operator=(const TlsFilter&) = delete;

  enum class Status { done, want_input, failed };
  // Drives the handshake with what was fed so far; its messages wait in take_output().
  Status handshake();
  bool established() const noexcept { return established_; }

  void feed(const char* data, std::size_t size);
  // Decrypts into [buf, buf + cap): bytes written; 0 when more input is needed. Sets
  // closed() when the peer ended the session, failed() on an error (see error()).
  std::size_t read(char* buf, std::size_t cap);
  // Encrypts all of [data, data + size); false on an error.
  bool write(const char* data, std::size_t size);
  // Appends the ciphertext waiting to be sent to `out`.
  void take_output(std::string& out);

  bool closed() const noexcept { return closed_; }
  bool failed() const noexcept { return !error_.empty(); }
  // What went wrong, with the certificate verification result when there is one.
  const std::string& error() const noexcept { return error_; }
  // The X509_V_* verification result (X509_V_OK when none failed).
  long verify_result() const noexcept;

 private:
  void fail(int ssl_error, const char* during);

  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // ciphertext received, read by OpenSSL
  BIO* out_ = nullptr;  // ciphertext produced by OpenSSL, to send
  bool established_ = false;
  bool closed_ = false;
  std::string error_;
};

}  // namespace tempest::redis::detail
