// Throwaway certificates for TLS tests: a CA, another CA, and a server certificate for
// localhost / 127.0.0.1 signed by the first.
#pragma once

#include <string>

namespace tempest::test {

struct Certs {
  std::string dir;
  std::string ca, other_ca, cert, key;
};

// Writes the files into `dir` with openssl; throws when a step fails.
Certs make_certs(const std::string& dir);

}  // namespace tempest::test
