#include "tempest/redis/detail/commands.hpp"

#include <array>
#include <charconv>
#include <stdexcept>
#include <vector>

namespace tempest::redis::detail {

bool equals_upper(std::string_view s, std::string_view upper) noexcept {
  if (s.size() != upper.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

namespace {

struct Entry {
  std::string_view name;  // upper case
  CommandUse use;
  CommandReplies replies;
  std::string_view hint;  // what to do instead
};

constexpr std::string_view kSubscriber = "use a Subscriber, which has a connection of its own";
constexpr std::string_view kCredentials =
    "credentials come from the config (redis://user:password@host, Config::username and "
    "Config::password)";
constexpr std::string_view kDedicated = "run it on client.dedicated()";

constexpr std::array kTable = {
    Entry{"SUBSCRIBE", CommandUse::breaks_replies, CommandReplies::one_per_channel, kSubscriber},
    Entry{"PSUBSCRIBE", CommandUse::breaks_replies, CommandReplies::one_per_channel, kSubscriber},
    Entry{"SSUBSCRIBE", CommandUse::breaks_replies, CommandReplies::one_per_channel, kSubscriber},
    Entry{"UNSUBSCRIBE", CommandUse::breaks_replies, CommandReplies::one_per_channel, kSubscriber},
    Entry{"PUNSUBSCRIBE", CommandUse::breaks_replies, CommandReplies::one_per_channel, kSubscriber},
    Entry{"SUNSUBSCRIBE", CommandUse::breaks_replies, CommandReplies::one_per_channel, kSubscriber},
    Entry{"MONITOR", CommandUse::breaks_replies, CommandReplies::stream, "run it from redis-cli"},
    Entry{"SYNC", CommandUse::breaks_replies, CommandReplies::stream, "it is for replicas"},
    Entry{"PSYNC", CommandUse::breaks_replies, CommandReplies::stream, "it is for replicas"},
    Entry{"QUIT", CommandUse::breaks_replies, CommandReplies::one,
          "use disconnect() to close the connection"},
    Entry{"RESET", CommandUse::breaks_replies, CommandReplies::one,
          "use disconnect() and a new client for a fresh connection"},
    Entry{"SELECT", CommandUse::connection, CommandReplies::one,
          "the database comes from the config (redis://host:port/<db>, Config::db)"},
    Entry{"AUTH", CommandUse::connection, CommandReplies::one, kCredentials},
    Entry{"HELLO", CommandUse::connection, CommandReplies::one, kCredentials},
    Entry{"READONLY", CommandUse::connection, CommandReplies::one,
          "replica reads are chosen by the client's configuration"},
    Entry{"READWRITE", CommandUse::connection, CommandReplies::one,
          "replica reads are chosen by the client's configuration"},
    Entry{"WATCH", CommandUse::transactional, CommandReplies::one, {}},
    Entry{"UNWATCH", CommandUse::transactional, CommandReplies::one, {}},
    Entry{"MULTI", CommandUse::transactional, CommandReplies::one, {}},
    Entry{"EXEC", CommandUse::transactional, CommandReplies::one, {}},
    Entry{"DISCARD", CommandUse::transactional, CommandReplies::one, {}},
    Entry{"BLPOP", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"BRPOP", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"BRPOPLPUSH", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"BLMOVE", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"BLMPOP", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"BZPOPMIN", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"BZPOPMAX", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"BZMPOP", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"WAIT", CommandUse::blocking, CommandReplies::one, kDedicated},
    Entry{"WAITAOF", CommandUse::blocking, CommandReplies::one, kDedicated},
};

constexpr Entry kClientReply{"CLIENT REPLY", CommandUse::breaks_replies, CommandReplies::none,
                             "every request on a tempest connection gets its reply"};
constexpr std::string_view kSetting =
    "set it on client.dedicated(), or through the config (client_name)";
constexpr std::array kClientSettings = {
    Entry{"CLIENT SETNAME", CommandUse::setting, CommandReplies::one, kSetting},
    Entry{"CLIENT SETINFO", CommandUse::setting, CommandReplies::one, kSetting},
    Entry{"CLIENT NO-EVICT", CommandUse::setting, CommandReplies::one, kSetting},
    Entry{"CLIENT NO-TOUCH", CommandUse::setting, CommandReplies::one, kSetting},
    Entry{"CLIENT CACHING", CommandUse::setting, CommandReplies::one,
          "client-side caching is managed by the library"},
};
constexpr Entry kAsking{"ASKING", CommandUse::setting, CommandReplies::one,
                        "it applies to the next command, which on a shared connection is another "
                        "caller's; cluster redirects are followed by the library"};
constexpr Entry kClientTracking{"CLIENT TRACKING", CommandUse::connection, CommandReplies::one,
                                "client-side caching is managed by the library"};
constexpr Entry kBlockingRead{"", CommandUse::blocking, CommandReplies::one, kDedicated};

// The entry for a command given by its argument count and an accessor of argument i; nullptr
// for an ordinary command.
template <class At>
const Entry* find_entry(std::size_t argc, At at) noexcept {
  if (argc == 0) return nullptr;
  const std::string_view name = at(0);
  if (name.size() < 4 || name.size() > 12) return nullptr;  // no listed name is shorter or longer
  if (equals_upper(name, "ASKING")) return &kAsking;
  if (equals_upper(name, "CLIENT") && argc > 1) {
    const auto sub = at(1);
    if (equals_upper(sub, "REPLY")) return &kClientReply;
    if (equals_upper(sub, "TRACKING")) return &kClientTracking;
    for (const auto& e : kClientSettings)
      if (equals_upper(sub, e.name.substr(7))) return &e;
    return nullptr;
  }
  if (equals_upper(name, "XREAD") || equals_upper(name, "XREADGROUP")) {
    for (std::size_t i = 1; i < argc; ++i) {
      const auto a = at(i);
      if (equals_upper(a, "STREAMS")) break;
      if (equals_upper(a, "BLOCK")) return &kBlockingRead;
    }
    return nullptr;
  }
  for (const auto& e : kTable)
    if (equals_upper(name, e.name)) return &e;
  return nullptr;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

std::string refusal(const Entry& e, std::string_view given_name, Venue venue) {
  const std::string name = e.name.empty() ? upper(given_name) + " with BLOCK" : std::string(e.name);
  std::string why;
  switch (e.use) {
    case CommandUse::shared:
      break;
    case CommandUse::breaks_replies:
      why = name +
            " is refused: its replies do not come one per request, so the other callers on the "
            "connection would receive the wrong replies";
      break;
    case CommandUse::connection:
      why = name + " is refused: it would change the connection for every caller on it";
      break;
    case CommandUse::setting:
      why = name +
            " is refused on a shared connection: it would change the connection for every "
            "caller on it";
      break;
    case CommandUse::transactional:
      if (venue == Venue::transaction)
        return name +
               " is refused inside transaction(): it adds MULTI and EXEC itself; WATCH-guarded "
               "transactions run on client.dedicated()";
      return name +
             " is refused on the shared connection: the other callers' commands would run "
             "inside the transaction; use client.transaction(pipeline), or client.dedicated() "
             "for WATCH-guarded transactions";
    case CommandUse::blocking:
      why = name +
            " is refused on the shared connection: it blocks the connection and every caller "
            "behind it";
      break;
  }
  if (!e.hint.empty()) why += "; " + std::string(e.hint);
  return why;
}

// Calls fn(args) for each command of a pipeline's wire (RESP arrays of bulk strings); throws
// std::invalid_argument at the first byte that is not one.
template <class Fn>
std::size_t for_each_command(std::string_view wire, Fn fn) {
  std::size_t pos = 0;
  std::size_t count = 0;
  std::vector<std::string_view> args;
  const auto fail = [&](const char* what) {
    throw std::invalid_argument("Pipeline::from_wire: " + std::string(what) + " at byte " +
                                std::to_string(pos) + "; expected RESP arrays of bulk strings");
  };
  const auto number = [&](char type) {
    if (pos >= wire.size() || wire[pos] != type) fail(type == '*' ? "no array" : "no bulk string");
    const auto nl = wire.find("\r\n", pos);
    if (nl == std::string_view::npos) fail("an unterminated line");
    std::size_t n = 0;
    const auto r = std::from_chars(wire.data() + pos + 1, wire.data() + nl, n);
    if (r.ec != std::errc() || r.ptr != wire.data() + nl || nl == pos + 1) fail("a bad length");
    pos = nl + 2;
    return n;
  };
  while (pos < wire.size()) {
    const std::size_t argc = number('*');
    if (argc == 0) fail("an empty command");
    args.clear();
    for (std::size_t i = 0; i < argc; ++i) {
      const std::size_t len = number('$');
      if (wire.size() - pos < len + 2 || wire.compare(pos + len, 2, "\r\n") != 0)
        fail("a truncated bulk string");
      args.push_back(wire.substr(pos, len));
      pos += len + 2;
    }
    fn(args);
    ++count;
  }
  return count;
}

}  // namespace

std::uint8_t command_use_bit(const Command& c) noexcept {
  return use_bit(command_traits(c).use);
}

CommandTraits command_traits(const Command& c) noexcept {
  const Entry* e = find_entry(c.argc(), [&](std::size_t i) { return c.argument(i); });
  return e ? CommandTraits{e->use, e->replies} : CommandTraits{};
}

bool allowed(std::uint8_t uses, Venue venue) noexcept {
  std::uint8_t ok = use_bit(CommandUse::shared);
  if (venue != Venue::shared) ok |= use_bit(CommandUse::blocking);
  if (venue == Venue::dedicated)
    ok |= use_bit(CommandUse::transactional) | use_bit(CommandUse::setting);
  return (uses & ~ok) == 0;
}

void check_command(const Command& c, Venue venue) {
  if (c.empty()) throw std::invalid_argument("empty command: give at least the command's name");
  const Entry* e = find_entry(c.argc(), [&](std::size_t i) { return c.argument(i); });
  if (e != nullptr && !allowed(use_bit(e->use), venue))
    throw std::invalid_argument(refusal(*e, c.name(), venue));
}

void check_pipeline(const Pipeline& p, Venue venue) {
  if (allowed(p.uses(), venue)) return;
  for_each_command(p.wire(), [&](const std::vector<std::string_view>& args) {
    const Entry* e = find_entry(args.size(), [&](std::size_t i) { return args[i]; });
    if (e != nullptr && !allowed(use_bit(e->use), venue))
      throw std::invalid_argument(refusal(*e, args[0], venue));
  });
}

}  // namespace tempest::redis::detail

namespace tempest::redis {

Pipeline Pipeline::from_wire(std::string wire, std::size_t count) {
  std::uint8_t uses = 0;
  const std::size_t found =
      detail::for_each_command(wire, [&](const std::vector<std::string_view>& args) {
        const auto* e = detail::find_entry(args.size(), [&](std::size_t i) { return args[i]; });
        uses |= detail::use_bit(e ? e->use : detail::CommandUse::shared);
      });
  if (found != count)
    throw std::invalid_argument("Pipeline::from_wire: the wire holds " + std::to_string(found) +
                                " command(s), not " + std::to_string(count) +
                                "; a wrong count would hand replies to the wrong callers");
  Pipeline p;
  p.wire_ = std::move(wire);
  p.count_ = count;
  p.uses_ = uses;
  return p;
}

}  // namespace tempest::redis
