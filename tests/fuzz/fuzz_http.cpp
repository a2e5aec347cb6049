// Raw bytes through the HTTP server's request path (a served App, one connection per input):
// what comes back must be well-formed responses, and the server must go on answering. See
// http_target.hpp for the routes and the checks.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz/http_target.hpp"

namespace {

tempest::fuzz::HttpTarget* target = nullptr;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (target == nullptr) {
    // One server for the process (a probe every 8th input), stopped at exit before the
    // loggers it uses are destroyed.
    target = new tempest::fuzz::HttpTarget(8);
    std::atexit([] {
      delete target;
      target = nullptr;
    });
  }
  const std::string failure =
      target->run(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!failure.empty()) {
    std::fprintf(stderr, "fuzz_http: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
