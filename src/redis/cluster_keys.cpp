#include "tempest/redis/detail/cluster_keys.hpp"
#include "tempest/redis/detail/commands.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace tempest::redis::detail {
namespace {

// ---- CRC16/XMODEM, sixteen bytes at a time ----------------------------------------------------
//
// kCrc[0][b] is the CRC of the byte b; kCrc[k][b] that of b followed by k zero bytes. Sixteen
// bytes then take sixteen independent look-ups instead of a chain of sixteen; the rest goes by
// eight, four, then one.
constexpr std::size_t kCrcWays = 16;
using CrcTables = std::array<std::array<std::uint16_t, 256>, kCrcWays>;

constexpr CrcTables make_tables() {
  CrcTables t{};
  for (unsigned b = 0; b < 256; ++b) {
    unsigned crc = b << 8;
    for (int i = 0; i < 8; ++i)
      crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1;
    t[0][b] = static_cast<std::uint16_t>(crc);
  }
  for (std::size_t k = 1; k < kCrcWays; ++k)
    for (unsigned b = 0; b < 256; ++b) {
      const unsigned prev = t[k - 1][b];
      t[k][b] = static_cast<std::uint16_t>((prev << 8) ^ t[0][prev >> 8]);
    }
  return t;
}

constexpr CrcTables kCrc = make_tables();

// ---- where commands have their keys -----------------------------------------------------------

struct KeyRange {
  std::string_view name;  // upper case
  std::int8_t first;
  std::int8_t last;  // negative: counted from the end (-1: the last argument)
  std::int8_t step;
  bool readonly;
};

// Redis 7.0's commands with keys at fixed positions (COMMAND's first key, last key and step),
// sorted by name.
constexpr KeyRange kRanges[] = {
    {"APPEND", 1, 1, 1, false},
    {"BITCOUNT", 1, 1, 1, true},
    {"BITFIELD", 1, 1, 1, false},
    {"BITFIELD_RO", 1, 1, 1, true},
    {"BITOP", 2, -1, 1, false},
    {"BITPOS", 1, 1, 1, true},
    {"BLMOVE", 1, 2, 1, false},
    {"BLPOP", 1, -2, 1, false},
    {"BRPOP", 1, -2, 1, false},
    {"BRPOPLPUSH", 1, 2, 1, false},
    {"BZPOPMAX", 1, -2, 1, false},
    {"BZPOPMIN", 1, -2, 1, false},
    {"COPY", 1, 2, 1, false},
    {"DECR", 1, 1, 1, false},
    {"DECRBY", 1, 1, 1, false},
    {"DEL", 1, -1, 1, false},
    {"DUMP", 1, 1, 1, true},
    {"EXISTS", 1, -1, 1, true},
    {"EXPIRE", 1, 1, 1, false},
    {"EXPIREAT", 1, 1, 1, false},
    {"EXPIRETIME", 1, 1, 1, true},
    {"GEOADD", 1, 1, 1, false},
    {"GEODIST", 1, 1, 1, true},
    {"GEOHASH", 1, 1, 1, true},
    {"GEOPOS", 1, 1, 1, true},
    {"GEORADIUSBYMEMBER_RO", 1, 1, 1, true},
    {"GEORADIUS_RO", 1, 1, 1, true},
    {"GEOSEARCH", 1, 1, 1, true},
    {"GEOSEARCHSTORE", 1, 2, 1, false},
    {"GET", 1, 1, 1, true},
    {"GETBIT", 1, 1, 1, true},
    {"GETDEL", 1, 1, 1, false},
    {"GETEX", 1, 1, 1, false},
    {"GETRANGE", 1, 1, 1, true},
    {"GETSET", 1, 1, 1, false},
    {"HDEL", 1, 1, 1, false},
    {"HEXISTS", 1, 1, 1, true},
    {"HGET", 1, 1, 1, true},
    {"HGETALL", 1, 1, 1, true},
    {"HINCRBY", 1, 1, 1, false},
    {"HINCRBYFLOAT", 1, 1, 1, false},
    {"HKEYS", 1, 1, 1, true},
    {"HLEN", 1, 1, 1, true},
    {"HMGET", 1, 1, 1, true},
    {"HMSET", 1, 1, 1, false},
    {"HRANDFIELD", 1, 1, 1, true},
    {"HSCAN", 1, 1, 1, true},
    {"HSET", 1, 1, 1, false},
    {"HSETNX", 1, 1, 1, false},
    {"HSTRLEN", 1, 1, 1, true},
    {"HVALS", 1, 1, 1, true},
    {"INCR", 1, 1, 1, false},
    {"INCRBY", 1, 1, 1, false},
    {"INCRBYFLOAT", 1, 1, 1, false},
    {"LCS", 1, 2, 1, true},
    {"LINDEX", 1, 1, 1, true},
    {"LINSERT", 1, 1, 1, false},
    {"LLEN", 1, 1, 1, true},
    {"LMOVE", 1, 2, 1, false},
    {"LPOP", 1, 1, 1, false},
    {"LPOS", 1, 1, 1, true},
    {"LPUSH", 1, 1, 1, false},
    {"LPUSHX", 1, 1, 1, false},
    {"LRANGE", 1, 1, 1, true},
    {"LREM", 1, 1, 1, false},
    {"LSET", 1, 1, 1, false},
    {"LTRIM", 1, 1, 1, false},
    {"MGET", 1, -1, 1, true},
    {"MOVE", 1, 1, 1, false},
    {"MSET", 1, -1, 2, false},
    {"MSETNX", 1, -1, 2, false},
    {"PERSIST", 1, 1, 1, false},
    {"PEXPIRE", 1, 1, 1, false},
    {"PEXPIREAT", 1, 1, 1, false},
    {"PEXPIRETIME", 1, 1, 1, true},
    {"PFADD", 1, 1, 1, false},
    {"PFCOUNT", 1, -1, 1, true},
    {"PFDEBUG", 2, 2, 1, false},
    {"PFMERGE", 1, -1, 1, false},
    {"PSETEX", 1, 1, 1, false},
    {"PTTL", 1, 1, 1, true},
    {"RENAME", 1, 2, 1, false},
    {"RENAMENX", 1, 2, 1, false},
    {"RESTORE", 1, 1, 1, false},
    {"RESTORE-ASKING", 1, 1, 1, false},
    {"RPOP", 1, 1, 1, false},
    {"RPOPLPUSH", 1, 2, 1, false},
    {"RPUSH", 1, 1, 1, false},
    {"RPUSHX", 1, 1, 1, false},
    {"SADD", 1, 1, 1, false},
    {"SCARD", 1, 1, 1, true},
    {"SDIFF", 1, -1, 1, true},
    {"SDIFFSTORE", 1, -1, 1, false},
    {"SET", 1, 1, 1, false},
    {"SETBIT", 1, 1, 1, false},
    {"SETEX", 1, 1, 1, false},
    {"SETNX", 1, 1, 1, false},
    {"SETRANGE", 1, 1, 1, false},
    {"SINTER", 1, -1, 1, true},
    {"SINTERSTORE", 1, -1, 1, false},
    {"SISMEMBER", 1, 1, 1, true},
    {"SMEMBERS", 1, 1, 1, true},
    {"SMISMEMBER", 1, 1, 1, true},
    {"SMOVE", 1, 2, 1, false},
    {"SPOP", 1, 1, 1, false},
    {"SPUBLISH", 1, 1, 1, false},
    {"SRANDMEMBER", 1, 1, 1, true},
    {"SREM", 1, 1, 1, false},
    {"SSCAN", 1, 1, 1, true},
    {"SSUBSCRIBE", 1, -1, 1, false},
    {"STRLEN", 1, 1, 1, true},
    {"SUBSTR", 1, 1, 1, true},
    {"SUNION", 1, -1, 1, true},
    {"SUNIONSTORE", 1, -1, 1, false},
    {"SUNSUBSCRIBE", 1, -1, 1, false},
    {"TOUCH", 1, -1, 1, true},
    {"TTL", 1, 1, 1, true},
    {"TYPE", 1, 1, 1, true},
    {"UNLINK", 1, -1, 1, false},
    {"WATCH", 1, -1, 1, false},
    {"XACK", 1, 1, 1, false},
    {"XADD", 1, 1, 1, false},
    {"XAUTOCLAIM", 1, 1, 1, false},
    {"XCLAIM", 1, 1, 1, false},
    {"XDEL", 1, 1, 1, false},
    {"XLEN", 1, 1, 1, true},
    {"XPENDING", 1, 1, 1, true},
    {"XRANGE", 1, 1, 1, true},
    {"XREVRANGE", 1, 1, 1, true},
    {"XSETID", 1, 1, 1, false},
    {"XTRIM", 1, 1, 1, false},
    {"ZADD", 1, 1, 1, false},
    {"ZCARD", 1, 1, 1, true},
    {"ZCOUNT", 1, 1, 1, true},
    {"ZINCRBY", 1, 1, 1, false},
    {"ZLEXCOUNT", 1, 1, 1, true},
    {"ZMSCORE", 1, 1, 1, true},
    {"ZPOPMAX", 1, 1, 1, false},
    {"ZPOPMIN", 1, 1, 1, false},
    {"ZRANDMEMBER", 1, 1, 1, true},
    {"ZRANGE", 1, 1, 1, true},
    {"ZRANGEBYLEX", 1, 1, 1, true},
    {"ZRANGEBYSCORE", 1, 1, 1, true},
    {"ZRANGESTORE", 1, 2, 1, false},
    {"ZRANK", 1, 1, 1, true},
    {"ZREM", 1, 1, 1, false},
    {"ZREMRANGEBYLEX", 1, 1, 1, false},
    {"ZREMRANGEBYRANK", 1, 1, 1, false},
    {"ZREMRANGEBYSCORE", 1, 1, 1, false},
    {"ZREVRANGE", 1, 1, 1, true},
    {"ZREVRANGEBYLEX", 1, 1, 1, true},
    {"ZREVRANGEBYSCORE", 1, 1, 1, true},
    {"ZREVRANK", 1, 1, 1, true},
    {"ZSCAN", 1, 1, 1, true},
    {"ZSCORE", 1, 1, 1, true},
};

// The commands whose keys depend on their arguments.
enum class Movable : std::uint8_t {
  numkeys_at_2,        // EVAL script numkeys key... (also BLMPOP timeout numkeys key...)
  numkeys_at_1,        // ZUNION numkeys key...
  store_numkeys_at_2,  // ZUNIONSTORE destination numkeys key...
  streams,             // XREAD ... STREAMS key... id...
  store_option,        // SORT key ... [STORE destination], GEORADIUS key ... [STORE[DIST] dest]
  migrate,             // MIGRATE host port key|"" db timeout ... [KEYS key...]
  subcommand_key,      // OBJECT ENCODING key, MEMORY USAGE key, XINFO STREAM key, XGROUP ...
};

struct MovableEntry {
  std::string_view name;
  Movable how;
  bool readonly;
};

constexpr MovableEntry kMovable[] = {
    {"BLMPOP", Movable::numkeys_at_2, false},
    {"BZMPOP", Movable::numkeys_at_2, false},
    {"EVAL", Movable::numkeys_at_2, false},
    {"EVALSHA", Movable::numkeys_at_2, false},
    {"EVALSHA_RO", Movable::numkeys_at_2, true},
    {"EVAL_RO", Movable::numkeys_at_2, true},
    {"FCALL", Movable::numkeys_at_2, false},
    {"FCALL_RO", Movable::numkeys_at_2, true},
    {"GEORADIUS", Movable::store_option, false},
    {"GEORADIUSBYMEMBER", Movable::store_option, false},
    {"LMPOP", Movable::numkeys_at_1, false},
    {"MEMORY", Movable::subcommand_key, true},
    {"MIGRATE", Movable::migrate, false},
    {"OBJECT", Movable::subcommand_key, true},
    {"SINTERCARD", Movable::numkeys_at_1, true},
    {"SORT", Movable::store_option, false},
    {"SORT_RO", Movable::store_option, true},
    {"XGROUP", Movable::subcommand_key, false},
    {"XINFO", Movable::subcommand_key, true},
    {"XREAD", Movable::streams, true},
    {"XREADGROUP", Movable::streams, false},
    {"ZDIFF", Movable::numkeys_at_1, true},
    {"ZDIFFSTORE", Movable::store_numkeys_at_2, false},
    {"ZINTER", Movable::numkeys_at_1, true},
    {"ZINTERCARD", Movable::numkeys_at_1, true},
    {"ZINTERSTORE", Movable::store_numkeys_at_2, false},
    {"ZMPOP", Movable::numkeys_at_1, false},
    {"ZUNION", Movable::numkeys_at_1, true},
    {"ZUNIONSTORE", Movable::store_numkeys_at_2, false},
};

// Both tables by name in one open-addressing hash table (built once): a command's entry is
// found with one hash of its upper-cased name and, nearly always, one comparison.
struct NameIndex {
  static constexpr std::size_t kSize = 1024;  // a power of two, over four times the names
  struct Slot {
    std::string_view name;
    std::uint64_t head = 0;  // the name's first 8 bytes, zero padded: most names are shorter
    const KeyRange* range = nullptr;
    const MovableEntry* movable = nullptr;
  };
  std::array<Slot, kSize> slots{};

  static std::uint32_t hash(std::string_view upper) noexcept {
    std::uint32_t h = 2166136261u;
    for (const char c : upper)
      h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    return h;
  }
  Slot& place(std::string_view name) noexcept {
    std::size_t i = hash(name) & (kSize - 1);
    while (!slots[i].name.empty() && slots[i].name != name)
      i = (i + 1) & (kSize - 1);
    slots[i].name = name;
    slots[i].head = head_of(name);
    return slots[i];
  }
  static std::uint64_t head_of(std::string_view name) noexcept {
    std::uint64_t h = 0;
    std::memcpy(&h, name.data(), std::min<std::size_t>(name.size(), 8));
    return h;
  }
  // `head` is head_of(upper).
  const Slot* find(std::string_view upper, std::uint32_t h, std::uint64_t head) const noexcept {
    for (std::size_t i = h & (kSize - 1);; i = (i + 1) & (kSize - 1)) {
      const Slot& s = slots[i];
      if (s.name.empty()) return nullptr;
      if (s.head == head && s.name.size() == upper.size() &&
          (upper.size() <= 8 ||
           std::memcmp(s.name.data() + 8, upper.data() + 8, upper.size() - 8) == 0))
        return &s;
    }
  }
};

const NameIndex& name_index() {
  static const NameIndex index = [] {
    NameIndex x;
    for (const KeyRange& e : kRanges)
      x.place(e.name).range = &e;
    for (const MovableEntry& e : kMovable)
      x.place(e.name).movable = &e;
    return x;
  }();
  return index;
}

// A count argument (numkeys), or none when it is not a number.
bool count_at(Args args, std::size_t i, std::size_t& n) noexcept {
  if (i >= args.size()) return false;
  const auto a = args[i];
  const auto r = std::from_chars(a.data(), a.data() + a.size(), n);
  return r.ec == std::errc() && r.ptr == a.data() + a.size();
}

void add_range(std::size_t from, std::size_t count, std::size_t argc, CommandKeys& out) {
  for (std::size_t i = from; i < from + count && i < argc; ++i)
    out.keys.push_back(static_cast<std::uint32_t>(i));
}

void movable_keys(Args args, Movable how, CommandKeys& out) {
  const std::size_t argc = args.size();
  std::size_t n = 0;
  switch (how) {
    case Movable::numkeys_at_2:
      if (count_at(args, 2, n)) add_range(3, n, argc, out);
      return;
    case Movable::numkeys_at_1:
      if (count_at(args, 1, n)) add_range(2, n, argc, out);
      return;
    case Movable::store_numkeys_at_2:
      if (argc > 1) out.keys.push_back(1);
      if (count_at(args, 2, n)) add_range(3, n, argc, out);
      return;
    case Movable::streams:
      for (std::size_t i = 1; i < argc; ++i)
        if (equals_upper(args[i], "STREAMS")) {
          add_range(i + 1, (argc - i - 1) / 2, argc, out);
          return;
        }
      return;
    case Movable::store_option:
      if (argc > 1) out.keys.push_back(1);
      for (std::size_t i = 2; i + 1 < argc; ++i)
        if (equals_upper(args[i], "STORE") || equals_upper(args[i], "STOREDIST")) {
          out.keys.push_back(static_cast<std::uint32_t>(i + 1));
          out.readonly = false;
          ++i;
        }
      return;
    case Movable::migrate:
      if (argc > 3 && !args[3].empty()) {
        out.keys.push_back(3);
        return;
      }
      for (std::size_t i = 6; i < argc; ++i)
        if (equals_upper(args[i], "KEYS")) {
          add_range(i + 1, argc - i - 1, argc, out);
          return;
        }
      return;
    case Movable::subcommand_key:
      // OBJECT HELP, MEMORY STATS, XINFO HELP...: no key; the others name it right after.
      if (argc > 2 && !equals_upper(args[1], "HELP") &&
          (!equals_upper(args[0], "MEMORY") || equals_upper(args[1], "USAGE")))
        out.keys.push_back(2);
      return;
  }
}

}  // namespace

namespace {
// The CRC after the M bytes at p, from `crc` before them (M = 4, 8 or 16).
template <std::size_t M>
inline unsigned crc_block(unsigned crc, const unsigned char* p) noexcept {
  unsigned out = kCrc[M - 1][((crc >> 8) ^ p[0]) & 0xff] ^ kCrc[M - 2][(crc ^ p[1]) & 0xff];
  for (std::size_t i = 2; i < M; ++i)
    out ^= kCrc[M - 1 - i][p[i]];
  return out;
}
}  // namespace

std::uint16_t crc16(std::string_view bytes) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t n = bytes.size();
  unsigned crc = 0;
  for (; n >= 16; p += 16, n -= 16)
    crc = crc_block<16>(crc, p);
  if (n >= 8) {
    crc = crc_block<8>(crc, p);
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    crc = crc_block<4>(crc, p);
    p += 4;
    n -= 4;
  }
  while (n-- > 0)
    crc = ((crc << 8) ^ kCrc[0][((crc >> 8) ^ *p++) & 0xff]) & 0xffff;
  return static_cast<std::uint16_t>(crc);
}

std::string_view hash_tag(std::string_view key) noexcept {
  const auto open = key.find('{');
  if (open == std::string_view::npos) return key;
  const auto close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

namespace {
// "<type><digits>\r\n" at w[i]: the number; i moves past the line.
inline std::size_t read_number(const char* w, std::size_t size, std::size_t& i) noexcept {
  std::size_t n = 0;
  std::size_t j = i + 1;
  for (; j < size && w[j] != '\r'; ++j)
    n = n * 10 + static_cast<std::size_t>(w[j] - '0');
  i = j + 2;
  return n;
}
}  // namespace

Args CommandReader::next() {
  begin_ = pos_;
  const char* w = wire_.data();
  const std::size_t size = wire_.size();
  std::size_t i = pos_;
  if (i >= size) return {};
  const std::size_t argc = read_number(w, size, i);
  // The storage only grows: the span returned covers the arguments read this time.
  if (args_.size() < argc) args_.resize(argc);
  std::string_view* out = args_.data();
  std::size_t got = 0;
  for (; got < argc && i < size; ++got) {
    const std::size_t len = read_number(w, size, i);
    const std::size_t take = i <= size ? std::min(len, size - i) : 0;
    out[got] = std::string_view(w + std::min(i, size), take);
    i += len + 2;
  }
  pos_ = i;
  return Args(out, got);
}

namespace {

// The table entry of a command (args[0], any case); nullptr for a command without one.
const NameIndex::Slot* entry_of(std::string_view name) noexcept {
  if (name.empty() || name.size() > 32) return nullptr;
  char buf[32] = {};
  std::uint32_t h = 2166136261u;  // NameIndex::hash, while upper-casing
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    buf[i] = c;
    h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  }
  std::uint64_t head = 0;
  std::memcpy(&head, buf, 8);
  return name_index().find(std::string_view(buf, name.size()), h, head);
}

// Calls add(i) for each key argument of a fixed-position command; false for a movable one.
template <class F>
bool each_range_key(const KeyRange& e, Args args, F&& add) {
  const auto argc = static_cast<std::ptrdiff_t>(args.size());
  const std::ptrdiff_t last = e.last < 0 ? argc + e.last : e.last;
  for (std::ptrdiff_t i = e.first; i <= last && i < argc; i += e.step)
    if (!add(static_cast<std::uint32_t>(i))) return false;
  return true;
}

}  // namespace

void command_keys(Args args, CommandKeys& out) {
  out.keys.clear();
  out.readonly = false;
  if (args.empty()) return;
  const NameIndex::Slot* found = entry_of(args[0]);
  if (found == nullptr) return;
  if (const KeyRange* e = found->range) {
    out.readonly = e->readonly;
    each_range_key(*e, args, [&](std::uint32_t i) {
      out.keys.push_back(i);
      return true;
    });
  } else if (const MovableEntry* m = found->movable) {
    out.readonly = m->readonly;
    movable_keys(args, m->how, out);
  }
}

SlotOf command_slot(Args args) {
  SlotOf s;
  const auto add = [&](std::uint32_t i) {
    const std::uint32_t slot = key_slot(args[i]);
    if (s.slot == kNoSlot) {
      s.slot = slot;
      s.first = args[i];
    } else if (slot != s.slot) {
      s.slot = kCrossSlot;
      s.second = args[i];
      return false;
    }
    return true;
  };
  if (args.empty()) return s;
  const NameIndex::Slot* found = entry_of(args[0]);
  if (found == nullptr) return s;
  if (const KeyRange* e = found->range) {
    // The common case (GET, SET, HSET...): no list of key positions built.
    s.readonly = e->readonly;
    each_range_key(*e, args, add);
    return s;
  }
  thread_local CommandKeys keys;
  command_keys(args, keys);
  s.readonly = keys.readonly;
  for (const std::uint32_t i : keys.keys)
    if (!add(i)) break;
  return s;
}

}  // namespace tempest::redis::detail
