// Incremental, socket-free RESP2/RESP3 reply parser building tempest Reply values directly.
//
// Bytes go in as they arrive; complete replies come out. A reply that is larger or nested deeper
// than the limits is consumed and reported as rejected (the stream stays in sync, so only the
// request it answers fails); bytes that are not RESP at all are a ProtocolError and the stream is
// unusable afterwards. RESP3 values map onto Reply's types: null -> nil, boolean -> integer 0/1,
// double and big number -> string (their text), blob error -> error, verbatim string -> string
// (without its format prefix), map -> array of key, value, key, value..., set -> array.
// Attributes are parsed and dropped; push messages are reported apart from replies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tempest/redis/reply.hpp"

namespace tempest::redis::detail {

struct ParserLimits {
  // Bytes one reply may take, counting its wire size and each element's in-memory node.
  std::size_t max_reply_bytes = std::size_t{512} << 20;
  // Nesting levels of aggregates (arrays, maps, sets) one reply may have.
  std::size_t max_depth = 256;
};

class ReplyParser {
 public:
  enum class Event : std::uint8_t {
    need_more,  // every byte given was used; a reply may be in progress
    reply,      // take() holds the next reply
    push,       // take() holds an out-of-band RESP3 push message (an array)
    rejected,   // a reply over the limits was consumed and dropped; rejection() says why
  };

  explicit ReplyParser(ParserLimits limits = {}) : limits_(limits) {}

  // Parses from `data`. `used` is set to how many bytes were consumed: with need_more, an
  // incomplete header line at the end is not consumed (give it again with the bytes that
  // follow); a partial bulk payload is consumed and kept here. Throws ProtocolError for bytes
  // that are not RESP; the parser must then be reset() (the connection dropped).
  Event parse(const char* data, std::size_t size, std::size_t& used);
  // The same, but a simple reply (bulk string, simple string, error, integer) that is whole in
  // `data` goes straight into `*target` (then parsed_into_target() is true) instead of reply().
  Event parse(const char* data, std::size_t size, std::size_t& used, Reply* target);
  bool parsed_into_target() const noexcept { return into_target_; }

  // The reply or push message of the last event (move from it, or use take()).
  Reply& reply() noexcept { return root_; }
  Reply take() noexcept { return std::move(root_); }
  const std::string& rejection() const noexcept { return rejection_; }
  // Forgets any reply in progress (a new connection).
  void reset();
  // A reply has started and is not complete yet.
  bool in_progress() const noexcept;
  // Bytes accounted to the reply in progress (its wire size, its nodes and the room reserved for
  // them), checked against ParserLimits::max_reply_bytes.
  std::size_t reply_bytes() const noexcept { return reply_bytes_; }
  const ParserLimits& limits() const noexcept { return limits_; }

 private:
  struct Frame {
    Reply* node;              // the aggregate being filled; nullptr: its elements are dropped
    std::uint64_t remaining;  // elements still to come
    std::uint64_t prepaid;    // elements whose room was reserved (and accounted) up front
    bool attribute;           // an attribute: does not count as an element of its parent
  };

  // A whole bulk string, simple string, error or integer at the start of `data` (the common
  // replies), parsed into the root without the general machinery; 0 when it is not one.
  static std::size_t parse_simple(const char* data, std::size_t size, std::size_t max_bytes,
                                  Reply& into);
  Reply* slot();  // where the next element goes (nullptr: dropped)
  Event element_done();
  void open_aggregate(char type, long long count);
  void start_bulk(char type, long long len);
  void finish_bulk();
  void reject(std::string why);
  void account(std::size_t bytes);
  Event parse_line(const char* line, std::size_t len);

  ParserLimits limits_;
  Reply root_;
  std::vector<Frame> stack_;
  char root_type_ = 0;           // type byte of the reply in progress (0: none)
  std::size_t reply_bytes_ = 0;  // accounted so far for the reply in progress
  bool rejecting_ = false;       // the reply in progress is over a limit and is being skipped
  std::string rejection_;
  // A bulk payload in progress.
  Reply* bulk_ = nullptr;        // where it goes (nullptr: skipped)
  char bulk_type_ = 0;           // '$', '!' or '='
  std::uint64_t data_left_ = 0;  // payload bytes still to come
  unsigned crlf_left_ = 0;       // 2 or 1 while the payload's CRLF is still to come
  bool in_bulk_ = false;
  bool into_target_ = false;
};

}  // namespace tempest::redis::detail
