// Arbitrary bytes through tempest's RESP parser, fed in fuzzer-chosen chunks as a connection
// would. Must never crash, leak or hang; bad bytes are ProtocolError. Where hiredis (the
// reference parser) also reads the same bytes without error, both must produce the same replies.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "support/hiredis_reply.hpp"
#include "tempest/redis/detail/parser.hpp"
#include "tempest/redis/error.hpp"

using namespace tempest::redis;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t chunk = 1 + data[0] % 64;  // feeding granularity
  const std::string wire(reinterpret_cast<const char*>(data) + 1, size - 1);

  detail::ReplyParser parser(detail::ParserLimits{.max_reply_bytes = 1 << 16, .max_depth = 16});
  std::vector<Reply> ours;
  bool ours_ok = true;
  bool rejected = false;
  std::string pending;
  try {
    for (std::size_t off = 0; off < wire.size(); off += chunk) {
      pending.append(wire, off, chunk);
      for (;;) {
        std::size_t used = 0;
        const auto ev = parser.parse(pending.data(), pending.size(), used);
        if (used > pending.size()) std::abort();
        pending.erase(0, used);
        if (ev == detail::ReplyParser::Event::need_more) break;
        if (ev == detail::ReplyParser::Event::rejected) rejected = true;
        ours.push_back(parser.take());
      }
    }
  } catch (const ProtocolError&) {
    ours_ok = false;  // expected for bytes that are not RESP
  }

  // Compared only when ours read every byte into whole replies (hiredis allocates a declared array
  // up front, so it must not see a huge count that never completes).
  if (!ours_ok || rejected || parser.in_progress() || !pending.empty()) return 0;
  bool theirs_ok = false;
  const std::vector<Reply> theirs = tempest::test::hiredis_replies(wire, theirs_ok);
  if (theirs_ok && theirs != ours) std::abort();
  return 0;
}
