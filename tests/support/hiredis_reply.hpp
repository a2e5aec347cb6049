// hiredis' reply tree as a tempest Reply: the reference our own RESP parser is checked against
// (tests/unit/resp_test.cpp, tests/fuzz/fuzz_reply.cpp).
#pragma once

#include <hiredis/hiredis.h>

#include <string>
#include <vector>

#include "tempest/redis/reply.hpp"

namespace tempest::test {

inline redis::Reply from_hiredis(const redisReply* r) {
  using redis::Reply;
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

// Every reply hiredis reads from `wire`; `ok` tells whether it read all of it without an error.
inline std::vector<redis::Reply> hiredis_replies(const std::string& wire, bool& ok) {
  std::vector<redis::Reply> out;
  redisReader* reader = redisReaderCreate();
  redisReaderFeed(reader, wire.data(), wire.size());
  void* reply = nullptr;
  while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply != nullptr) {
    out.push_back(from_hiredis(static_cast<redisReply*>(reply)));
    freeReplyObject(reply);
  }
  ok = reader->err == 0;
  redisReaderFree(reader);
  return out;
}

}  // namespace tempest::test
