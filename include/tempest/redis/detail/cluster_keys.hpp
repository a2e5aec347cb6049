// Redis Cluster's key space: the slot of a key (CRC16/XMODEM of the key or of its hash tag, mod
// 16384) and where each command carries its keys. Socket-free; used by the cluster router.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace tempest::redis::detail {

constexpr std::size_t kSlots = 16384;

// CRC16/XMODEM (polynomial 0x1021, initial 0, not reflected), as Redis Cluster uses it.
std::uint16_t crc16(std::string_view bytes) noexcept;

// The part of `key` that is hashed: between the first '{' and the first '}' after it when that
// is not empty ("{user1}:profile" -> "user1"), otherwise the whole key.
std::string_view hash_tag(std::string_view key) noexcept;

// The cluster slot of `key`.
inline std::uint16_t key_slot(std::string_view key) noexcept {
  return static_cast<std::uint16_t>(crc16(hash_tag(key)) & (kSlots - 1));
}

// The arguments of one command (name first), viewed in place.
using Args = std::span<const std::string_view>;

// Splits RESP-encoded commands ("*N\r\n$len\r\narg\r\n..." as Command and Pipeline write them)
// into arguments. The bytes must be well formed (the library wrote them).
class CommandReader {
 public:
  CommandReader() = default;
  explicit CommandReader(std::string_view wire) noexcept : wire_(wire) {}
  // Starts again on other bytes (keeping the argument storage).
  void reset(std::string_view wire) noexcept {
    wire_ = wire;
    pos_ = begin_ = 0;
  }
  // The next command's arguments (valid until the next call), or an empty span at the end.
  Args next();
  // Where the command last returned began and ended in the wire.
  std::size_t begin() const noexcept { return begin_; }
  std::size_t end() const noexcept { return pos_; }

 private:
  std::string_view wire_;
  std::size_t pos_ = 0;
  std::size_t begin_ = 0;
  std::vector<std::string_view> args_;
};

struct CommandKeys {
  // Indices of the key arguments, in order.
  std::vector<std::uint32_t> keys;
  // The command only reads (it may run on a replica that accepted READONLY).
  bool readonly = false;
};

// Where `args` (name first) has its keys: from a table of Redis 7's commands (first key, last
// key, step), with the commands whose keys move (EVAL's numkeys, XREAD's STREAMS, SORT ... STORE,
// OBJECT ENCODING key, ...) decoded one by one. A command not in the table has no keys.
void command_keys(Args args, CommandKeys& out);

// The one slot of `args`' keys: kNoSlot when it has none, kCrossSlot when they hash to more than
// one slot (`first`/`second` then name two keys that differ, for the error message).
constexpr std::uint32_t kNoSlot = 0x10000;
constexpr std::uint32_t kCrossSlot = 0x10001;
struct SlotOf {
  std::uint32_t slot = kNoSlot;
  bool readonly = false;
  std::string_view first, second;
};
SlotOf command_slot(Args args);

}  // namespace tempest::redis::detail
