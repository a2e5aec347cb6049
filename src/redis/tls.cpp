#include "tls.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <new>

namespace tempest::redis::detail {
namespace {
// SSL_get_error needs an empty error queue before the call it explains. Clearing it costs about
// 800 instructions in OpenSSL 3, looking costs a few: clear only what is there.
void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}
}  // namespace

TlsFilter::TlsFilter(SSL_CTX* ctx, const std::string& host, bool verify_host) {
  ssl_ = SSL_new(ctx);
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || in_ == nullptr || out_ == nullptr) {
    if (in_ != nullptr) BIO_free(in_);
    if (out_ != nullptr) BIO_free(out_);
    if (ssl_ != nullptr) SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_mem_eof_return(in_, -1);  // an empty input buffer means "more to come", not EOF
  SSL_set_bio(ssl_, in_, out_);     // the SSL object owns both BIOs from here
  SSL_set_connect_state(ssl_);
  SSL_set_tlsext_host_name(ssl_, host.c_str());
  if (verify_host) {
    // OpenSSL's own host check, so a mismatch is reported as one (X509_V_ERR_*_MISMATCH).
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    boost::system::error_code not_ip;
    (void)boost::asio::ip::make_address(host, not_ip);
    if (!not_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    }
  }
}

TlsFilter::~TlsFilter() {
  SSL_free(ssl_);  // frees the BIOs too
}

TlsFilter::Status TlsFilter::handshake() {
  if (established_) return Status::done;
  clear_errors();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    established_ = true;
    return Status::done;
  }
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Status::want_input;
  fail(e, "handshake");
  return Status::failed;
}

void TlsFilter::feed(const char* data, std::size_t size) {
  while (size > 0) {
    const int chunk = static_cast<int>(std::min<std::size_t>(size, 1 << 30));
    const int n = BIO_write(in_, data, chunk);
    if (n <= 0) throw std::bad_alloc();
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

std::size_t TlsFilter::read(char* buf, std::size_t cap) {
  if (closed_ || failed()) return 0;
  clear_errors();
  std::size_t got = 0;
  const int r = SSL_read_ex(ssl_, buf, cap, &got);
  if (r == 1) return got;
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (e == SSL_ERROR_ZERO_RETURN) {
    closed_ = true;
    return 0;
  }
  fail(e, "read");
  return 0;
}

bool TlsFilter::write(const char* data, std::size_t size) {
  while (size > 0) {
    clear_errors();
    std::size_t put = 0;
    const int r = SSL_write_ex(ssl_, data, size, &put);
    if (r != 1) {
      fail(SSL_get_error(ssl_, r), "write");
      return false;
    }
    data += put;
    size -= put;
  }
  return true;
}

void TlsFilter::take_output(std::string& out) {
  for (std::size_t pending = BIO_ctrl_pending(out_); pending > 0;
       pending = BIO_ctrl_pending(out_)) {
    const std::size_t chunk = std::min<std::size_t>(pending, 1 << 30);  // BIO_read takes an int
    const std::size_t at = out.size();
    out.resize(at + chunk);
    const int n = BIO_read(out_, out.data() + at, static_cast<int>(chunk));
    out.resize(at + static_cast<std::size_t>(n > 0 ? n : 0));
    if (n <= 0) break;
  }
}

long TlsFilter::verify_result() const noexcept {
  return SSL_get_verify_result(ssl_);
}

void TlsFilter::fail(int ssl_error, const char* during) {
  std::string why;
  if (const unsigned long code = ERR_peek_error(); code != 0) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    // "error:0A000086:SSL routines::certificate verify failed" -> the reason only.
    why = text;
    if (const auto colon = why.rfind(':'); colon != std::string::npos) why.erase(0, colon + 1);
  } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_SSL) {
    why = "the connection ended during the TLS " + std::string(during);
  } else {
    why = "TLS error " + std::to_string(ssl_error) + " during the " + during;
  }
  ERR_clear_error();
  error_ = why;
}

}  // namespace tempest::redis::detail
