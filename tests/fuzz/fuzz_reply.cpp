// Arbitrary bytes through the reply path: the RESP reader (fed in fuzzer-chosen chunks) and the
// multiplexer's in-order matching. Must never crash, leak or hang; bad bytes are ProtocolError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tempest/redis/detail/multiplexer.hpp"
#include "tempest/redis/detail/reader.hpp"
#include "tempest/redis/error.hpp"

using namespace tempest::redis;

namespace {
struct Sink final : detail::Request {
  using Request::Request;
  void on_complete(std::exception_ptr, Reply r) override { (void)r.debug_string().size(); }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t chunk = 1 + data[0] % 64;  // feeding granularity
  const std::size_t requests = data[1] % 8;    // how many replies are awaited
  data += 2;
  size -= 2;
  detail::ReplyReader reader;
  detail::Multiplexer mux;
  const auto far = detail::Clock::now() + std::chrono::hours(1);
  for (std::size_t i = 0; i < requests; ++i) {
    if (i % 3 == 2) {
      mux.add(
          std::make_shared<Sink>(std::string("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n"), 2, far));
    } else {
      mux.add(std::make_shared<Sink>(Command("PING"), far));
    }
  }
  std::string out;
  mux.prepare_write(out);
  try {
    for (std::size_t off = 0; off < size; off += chunk) {
      reader.feed(reinterpret_cast<const char*>(data) + off, std::min(chunk, size - off));
      while (auto r = reader.next())
        mux.on_reply(std::move(*r));
    }
  } catch (const ProtocolError&) {
    // Expected for bytes that are not RESP, or replies nobody awaits.
  }
  mux.fail_all(std::make_exception_ptr(ConnectionError("done")));
  return 0;
}
