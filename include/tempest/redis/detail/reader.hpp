// Incremental RESP2 reply parser (hiredis' redisReader building tempest Reply values directly).
#pragma once

#include <cstddef>
#include <optional>

#include "tempest/redis/reply.hpp"

struct redisReader;

namespace tempest::redis::detail {

class ReplyReader {
 public:
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  // Appends received bytes. Throws ProtocolError once the stream is broken.
  void feed(const char* data, std::size_t size);
  // The next complete reply, or nullopt when more bytes are needed. Throws ProtocolError on bytes
  // that are not RESP2; after that the reader is unusable (the connection must be dropped).
  std::optional<Reply> next();
  // Discards all buffered state (used when a connection is re-established).
  void reset();

 private:
  redisReader* reader_ = nullptr;
  Reply root_;  // where hiredis builds the reply in progress
};

}  // namespace tempest::redis::detail
