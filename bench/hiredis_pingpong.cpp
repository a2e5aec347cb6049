// What many C and C++ services use instead of tempest: hiredis' blocking client (the one
// redis-plus-plus wraps). GETs of one key, `depth` at a time (redisAppendCommand, then
// redisGetReply for each; at depth 1 that is what redisCommand does). Every reply is checked.
//
//   hiredis_pingpong PORT DEPTH REQUESTS VALUE_SIZE   ->   prints ops/s
//
// make bench prints it at C=1 beside tempest and redis-benchmark.
#include <hiredis/hiredis.h>

#include "pingpong_args.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

namespace {

struct FreeReply {
  void operator()(void* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, FreeReply>;

// The next reply, which must be a string of `size` bytes; exits with a message otherwise.
void expect_value(redisContext* c, std::size_t size) {
  void* raw = nullptr;
  if (redisGetReply(c, &raw) != REDIS_OK) {
    std::fprintf(stderr, "hiredis_pingpong: %s\n", c->errstr);
    std::exit(1);
  }
  const ReplyPtr reply(static_cast<redisReply*>(raw));
  if (reply->type != REDIS_REPLY_STRING || reply->len != size) {
    std::fprintf(stderr, "hiredis_pingpong: unexpected reply to GET key:__rand_int__\n");
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = pingpong_args("hiredis_pingpong", "", argc == 5, argv);
  if (!args) return 2;
  const long long depth = args->depth, size = args->value_size;
  const timeval limit{5, 0};  // a server that stops answering ends the run, it does not hang it
  const std::unique_ptr<redisContext, void (*)(redisContext*)> c(
      redisConnectWithTimeout("127.0.0.1", args->port, limit), redisFree);
  if (!c || c->err) {
    std::fprintf(stderr, "hiredis_pingpong: connect: %s\n", c ? c->errstr : "out of memory");
    return 1;
  }
  redisSetTimeout(c.get(), limit);
  const std::string key = "key:__rand_int__", value(static_cast<std::size_t>(size), 'x');
  const ReplyPtr set(static_cast<redisReply*>(
      redisCommand(c.get(), "SET %b %b", key.data(), key.size(), value.data(), value.size())));
  if (!set || set->type != REDIS_REPLY_STATUS) {
    std::fprintf(stderr, "hiredis_pingpong: SET %s failed\n", key.c_str());
    return 1;
  }
  const long long rounds = args->requests / depth;
  const auto start = std::chrono::steady_clock::now();
  for (long long r = 0; r < rounds; ++r) {
    for (long long i = 0; i < depth; ++i)
      redisAppendCommand(c.get(), "GET %b", key.data(), key.size());
    for (long long i = 0; i < depth; ++i)
      expect_value(c.get(), value.size());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.1f\n", static_cast<double>(rounds * depth) / seconds);
  return 0;
}
