#include "support/tls_certs.hpp"

#include <cstdlib>
#include <stdexcept>

namespace tempest::test {

namespace {
void sh(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) != 0)
    throw std::runtime_error("command failed: " + command);
}
}  // namespace

Certs make_certs(const std::string& dir) {
  Certs c{dir, dir + "/ca.crt", dir + "/other-ca.crt", dir + "/server.crt", dir + "/server.key"};
  sh("cd " + dir +
     " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=tempest-test-ca"
     " -keyout ca.key -out ca.crt"
     " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca"
     " -keyout other-ca.key -out other-ca.crt"
     " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out "
     "server.csr"
     " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf"
     " && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
     " -extfile ext.cnf -out server.crt");
  return c;
}

}  // namespace tempest::test
