// Arbitrary bytes through tempest's RESP parser, fed in fuzzer-chosen chunks as a connection
// would. Must never crash, leak or hang; bad bytes are ProtocolError. Where hiredis (the
// reference parser) also reads the same bytes without error, both must produce the same replies.
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tempest/redis/detail/parser.hpp"
#include "tempest/redis/error.hpp"

using namespace tempest::redis;

namespace {

Reply from_hiredis(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_STRING:
      return Reply::string(std::string(r->str, r->len));
    case REDIS_REPLY_STATUS:
      return Reply::status(std::string(r->str, r->len));
    case REDIS_REPLY_ERROR:
      return Reply::error(std::string(r->str, r->len));
    case REDIS_REPLY_INTEGER:
      return Reply::integer(r->integer);
    case REDIS_REPLY_ARRAY: {
      std::vector<Reply> e;
      for (std::size_t i = 0; i < r->elements; ++i)
        e.push_back(from_hiredis(r->element[i]));
      return Reply::array(std::move(e));
    }
    default:
      return Reply::nil();
  }
}

}  // namespace

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

  if (!ours_ok || rejected) return 0;
  std::vector<Reply> theirs;
  redisReader* reader = redisReaderCreate();
  redisReaderFeed(reader, wire.data(), wire.size());
  void* out = nullptr;
  while (redisReaderGetReply(reader, &out) == REDIS_OK && out != nullptr) {
    theirs.push_back(from_hiredis(static_cast<redisReply*>(out)));
    freeReplyObject(out);
  }
  const bool theirs_ok = reader->err == 0;
  redisReaderFree(reader);
  // Both read the bytes: the replies and what is left over must agree.
  if (theirs_ok && !parser.in_progress() && pending.empty() && theirs != ours) std::abort();
  return 0;
}
