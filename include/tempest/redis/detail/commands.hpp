// The command table: how many replies each command gets and where it may run.
//
// The shared connection matches replies to requests in order, so every command it carries must
// get exactly one reply and must not change the connection for the other callers. What breaks
// that is refused before anything is written:
//
//   command                                replies                  shared  transaction() dedicated
//   (anything not below)                   one                      yes     yes            yes
//   SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE,     one per channel, then    no      no             no (a
//   Subscriber)
//     UNSUBSCRIBE, PUNSUBSCRIBE,           pushed messages
//     SUNSUBSCRIBE
//   MONITOR, SYNC, PSYNC                   a stream                 no      no             no
//   CLIENT REPLY OFF|SKIP|ON               none, or one             no      no             no
//   QUIT, RESET                            one, then a closed or    no      no             no
//                                          reset connection
//   SELECT, AUTH, HELLO, CLIENT TRACKING,  one, but the connection  no      no             no (the
//   config
//     READONLY, READWRITE                  changes for every caller                        or the
//     library)
//   WATCH, UNWATCH, MULTI, EXEC, DISCARD   one                      no      no (built in)  yes
//   BLPOP, BRPOP, BRPOPLPUSH, BLMOVE,      one, after blocking the  no      yes (no block  yes
//     BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP,  connection                       inside MULTI)
//     WAIT, WAITAOF, XREAD/XREADGROUP
//     with BLOCK
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tempest/redis/command.hpp"

namespace tempest::redis::detail {

enum class CommandUse : std::uint8_t {
  shared,          // one reply, no connection state: runs anywhere
  blocking,        // blocks the connection until it is answered
  transactional,   // WATCH, UNWATCH, MULTI, EXEC, DISCARD
  connection,      // changes the connection for every caller (SELECT, AUTH, HELLO, ...)
  setting,         // a setting of the connection (CLIENT SETNAME, ASKING, ...): dedicated only
  breaks_replies,  // not one reply per request (pub/sub, MONITOR, CLIENT REPLY, QUIT, RESET)
};

enum class CommandReplies : std::uint8_t { one, none, one_per_channel, stream };

// Where a command is about to run.
enum class Venue : std::uint8_t {
  shared,       // the shared, pipelined connection
  transaction,  // between the MULTI and EXEC of Client::transaction()
  dedicated,    // a connection of the caller's own (Client::dedicated())
};

struct CommandTraits {
  CommandUse use = CommandUse::shared;
  CommandReplies replies = CommandReplies::one;
};

CommandTraits command_traits(const Command& c) noexcept;

constexpr std::uint8_t use_bit(CommandUse u) noexcept {
  return static_cast<std::uint8_t>(1u << static_cast<unsigned>(u));
}
// Whether commands of these uses (a mask of use_bit) may run at `venue`.
bool allowed(std::uint8_t uses, Venue venue) noexcept;

// Throws std::invalid_argument, naming the command and what to use instead, when `c` may not run
// at `venue`; also for an empty command.
void check_command(const Command& c, Venue venue);
// The same for each command of a pipeline's wire (after a cheap check of the mask).
void check_pipeline(const Pipeline& p, Venue venue);

// Whether `s` equals `upper` (upper case) ignoring the case of `s`'s ASCII letters.
bool equals_upper(std::string_view s, std::string_view upper) noexcept;

}  // namespace tempest::redis::detail
