// RESP encoding of commands and incremental parsing of replies (RESP2 and RESP3), checked against
// hiredis' own parser on the same bytes.
#include <gtest/gtest.h>

#include <random>

#include "support/hiredis_reply.hpp"
#include "tempest/redis/command.hpp"
#include "tempest/redis/detail/parser.hpp"
#include "tempest/redis/error.hpp"

using namespace tempest::redis;
using detail::ReplyParser;

namespace {

// Feeds bytes as a connection would: unconsumed bytes stay and are given again with what follows.
struct Feeder {
  explicit Feeder(detail::ParserLimits limits = {}) : parser(limits) {}
  ReplyParser parser;
  std::string pending;
  std::vector<Reply> replies;
  std::vector<Reply> pushes;
  std::vector<std::string> rejections;

  void feed(std::string_view bytes) {
    pending.append(bytes);
    for (;;) {
      std::size_t used = 0;
      const auto ev = parser.parse(pending.data(), pending.size(), used);
      pending.erase(0, used);
      if (ev == ReplyParser::Event::need_more) return;
      if (ev == ReplyParser::Event::reply) replies.push_back(parser.take());
      if (ev == ReplyParser::Event::push) pushes.push_back(parser.take());
      if (ev == ReplyParser::Event::rejected) rejections.push_back(parser.rejection());
    }
  }
  void feed_in_chunks(std::string_view bytes, std::size_t chunk) {
    for (std::size_t i = 0; i < bytes.size(); i += chunk)
      feed(bytes.substr(i, chunk));
  }
};

}  // namespace

TEST(Command, EncodesBinarySafeArguments) {
  const std::string bin("a\0b\r\n", 5);
  const auto c = cmd("SET", bin, 42, -7LL);
  EXPECT_EQ(c.argc(), 4u);
  static const char kExpected[] = "*4\r\n$3\r\nSET\r\n$5\r\na\0b\r\n\r\n$2\r\n42\r\n$2\r\n-7\r\n";
  EXPECT_EQ(c.wire(), std::string(kExpected, sizeof kExpected - 1));
  EXPECT_EQ(c.name(), "SET");
  EXPECT_EQ(c.argument(1), bin);
  EXPECT_EQ(c.argument(3), "-7");
  EXPECT_EQ(c.argument(4), "");
}

TEST(Command, LengthPrefixesAtEveryDigitCount) {
  for (const std::size_t n : {1, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, 100000}) {
    const std::string a(n, 'k');
    EXPECT_EQ(cmd("GET", a).wire(),
              "*2\r\n$3\r\nGET\r\n$" + std::to_string(n) + "\r\n" + a + "\r\n")
        << n;
  }
}

TEST(Command, EmptyArgument) {
  EXPECT_EQ(cmd("GET", "").wire(), "*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
}

TEST(ReplyParser, ParsesEveryResp2TypeFedOneByteAtATime) {
  static const char kWire[] =
      "+OK\r\n-ERR bad\r\n:42\r\n$-1\r\n$5\r\nhe\0lo\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n"
      "*-1\r\n*0\r\n:-9223372036854775808\r\n$0\r\n\r\n";
  Feeder f;
  f.feed_in_chunks(std::string_view(kWire, sizeof kWire - 1), 1);
  auto& got = f.replies;
  ASSERT_EQ(got.size(), 10u);
  EXPECT_EQ(got[0], Reply::status("OK"));
  EXPECT_EQ(got[1], Reply::error("ERR bad"));
  EXPECT_EQ(got[2], Reply::integer(42));
  EXPECT_TRUE(got[3].is_nil());
  EXPECT_EQ(got[4], Reply::string(std::string("he\0lo", 5)));
  ASSERT_TRUE(got[5].is_array());
  ASSERT_EQ(got[5].elements().size(), 3u);
  EXPECT_EQ(got[5].elements()[0], Reply::integer(1));
  EXPECT_EQ(got[5].elements()[1].elements()[0], Reply::string("a"));
  EXPECT_TRUE(got[5].elements()[1].elements()[1].is_nil());
  EXPECT_EQ(got[5].elements()[2], Reply::status("x"));
  EXPECT_TRUE(got[6].is_nil());
  EXPECT_TRUE(got[7].is_array());
  EXPECT_TRUE(got[7].elements().empty());
  EXPECT_EQ(got[8], Reply::integer(std::numeric_limits<long long>::min()));
  EXPECT_EQ(got[9], Reply::string(""));
  EXPECT_TRUE(f.pending.empty());
  EXPECT_FALSE(f.parser.in_progress());
}

TEST(ReplyParser, MapsResp3TypesOntoReplies) {
  Feeder f;
  f.feed(
      "_\r\n#t\r\n#f\r\n,3.25\r\n(12345678901234567890123\r\n!9\r\nERR boom!\r\n"
      "=9\r\ntxt:hello\r\n%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n~2\r\n:7\r\n:8\r\n"
      "|1\r\n+ttl\r\n:3\r\n$3\r\nval\r\n>3\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n:0\r\n");
  auto& got = f.replies;
  ASSERT_EQ(got.size(), 10u);
  EXPECT_TRUE(got[0].is_nil());
  EXPECT_EQ(got[1], Reply::integer(1));
  EXPECT_EQ(got[2], Reply::integer(0));
  EXPECT_EQ(got[3], Reply::string("3.25"));
  EXPECT_EQ(got[4], Reply::string("12345678901234567890123"));
  EXPECT_EQ(got[5], Reply::error("ERR boom!"));
  EXPECT_EQ(got[6], Reply::string("hello"));
  EXPECT_EQ(got[7], Reply::array({Reply::status("a"), Reply::integer(1), Reply::status("b"),
                                  Reply::integer(2)}));
  EXPECT_EQ(got[8], Reply::array({Reply::integer(7), Reply::integer(8)}));
  EXPECT_EQ(got[9], Reply::string("val"));  // its attribute is dropped
  ASSERT_EQ(f.pushes.size(), 1u);
  EXPECT_EQ(f.pushes[0].elements()[0], Reply::string("invalidate"));
}

TEST(ReplyParser, LargeArrayAcrossManyReads) {
  std::string wire = "*5000\r\n";
  for (int i = 0; i < 5000; ++i)
    wire += ":" + std::to_string(i) + "\r\n";
  Feeder f;
  f.feed_in_chunks(wire, 7);
  ASSERT_EQ(f.replies.size(), 1u);
  ASSERT_EQ(f.replies[0].elements().size(), 5000u);
  EXPECT_EQ(f.replies[0].elements()[4999], Reply::integer(4999));
}

TEST(ReplyParser, LargeBulkStringIsAppendedAsItArrives) {
  const std::string value(3 << 20, 'v');
  const std::string wire = "$" + std::to_string(value.size()) + "\r\n" + value + "\r\n+next\r\n";
  Feeder f;
  f.feed_in_chunks(wire, 65536);
  ASSERT_EQ(f.replies.size(), 2u);
  EXPECT_EQ(f.replies[0].str(), value);
  EXPECT_EQ(f.replies[1], Reply::status("next"));
  EXPECT_LT(f.pending.size(), 64u);  // payload bytes are consumed, not kept in the buffer
}

TEST(ReplyParser, BytesThatAreNotRespAreAProtocolError) {
  for (const char* bad : {"?what\r\n", "HTTP/1.1 400 Bad Request\r\n", ":12x\r\n", ":\r\n",
                          "$3\r\nabcd\r\n", "$-2\r\n", "*-5\r\n", "#x\r\n", "_x\r\n", "+a\rb\r\n",
                          "\r\n", "(12a\r\n", "=2\r\nab\r\n"}) {
    Feeder f;
    EXPECT_THROW(f.feed(bad), ProtocolError) << bad;
  }
  Feeder f;
  try {
    f.feed("HTTP/1.1 400 Bad Request\r\n");
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("0x48 ('H')"), std::string::npos) << e.what();
  }
  f.parser.reset();
  f.pending.clear();
  f.feed(":1\r\n");
  EXPECT_EQ(f.replies.at(0), Reply::integer(1));
}

// Declared counts are claims: the room reserved for elements that have not arrived counts
// towards the reply's size limit, so a few bytes of headers cannot make the parser hold much more
// than max_reply_size.
TEST(ReplyParser, ReservedRoomCountsTowardsTheSizeLimit) {
  detail::ParserLimits limits{.max_reply_bytes = 64 * 1024};
  Feeder f(limits);
  std::string wire = "*100\r\n";
  for (int i = 0; i < 8; ++i)
    wire += "*1000000\r\n:1\r\n";  // arrays that declare a million elements and hold one
  f.feed(wire);
  ASSERT_TRUE(f.parser.in_progress());
  EXPECT_GE(f.parser.reply_bytes(), 8 * 64 * sizeof(Reply));
  // An array whose elements all arrive is accounted once per element, not twice.
  Feeder g(limits);
  g.feed("*3\r\n:1\r\n:2\r\n:3\r\n");
  ASSERT_EQ(g.replies.size(), 1u);
  Feeder h(limits);
  h.feed("*3\r\n:1\r\n:2\r\n");
  EXPECT_LE(h.parser.reply_bytes(), 20 + 4 * sizeof(Reply));
  // Enough such headers and the reply is over the limit: it is dropped when it ends.
  Feeder k(limits);
  std::string many = "*40\r\n";
  for (int i = 0; i < 40; ++i) {
    many += "*64\r\n";
    for (int j = 0; j < 64; ++j)
      many += ":1\r\n";
  }
  k.feed(many);
  ASSERT_EQ(k.rejections.size(), 1u);  // 40 x 64 x 72 bytes of nodes > 64 KiB
}

TEST(ReplyParser, HugeDeclaredArrayReservesLittle) {
  Feeder f;
  f.feed("*2000000000\r\n:1\r\n");
  EXPECT_TRUE(f.parser.in_progress());
  EXPECT_TRUE(f.replies.empty());
}

// A reply over the size limit is consumed and reported as rejected; the stream stays in sync.
TEST(ReplyParser, OversizedReplyIsRejectedAndTheNextOneParses) {
  Feeder f(detail::ParserLimits{.max_reply_bytes = 4096});
  const std::string big(10000, 'x');
  f.feed_in_chunks("$10000\r\n" + big + "\r\n+after\r\n*3\r\n$5000\r\n" + big.substr(0, 5000) +
                       "\r\n:1\r\n:2\r\n:3\r\n",
                   333);
  ASSERT_EQ(f.rejections.size(), 2u);
  EXPECT_NE(f.rejections[0].find("larger than 4096 bytes"), std::string::npos);
  ASSERT_EQ(f.replies.size(), 2u);
  EXPECT_EQ(f.replies[0], Reply::status("after"));
  EXPECT_EQ(f.replies[1], Reply::integer(3));
}

// Nesting far deeper than hiredis 0.14 allows (7) parses; deeper than the limit is rejected
// without losing the stream.
TEST(ReplyParser, DeepNestingParsesUpToTheLimitAndIsRejectedBeyond) {
  const auto nested = [](int depth) {
    std::string w;
    for (int i = 0; i < depth; ++i)
      w += "*1\r\n";
    return w + ":7\r\n";
  };
  Feeder f(detail::ParserLimits{.max_depth = 64});
  f.feed(nested(64) + nested(65) + "+ok\r\n");
  ASSERT_EQ(f.replies.size(), 2u);
  const Reply* r = &f.replies[0];
  for (int i = 0; i < 64; ++i)
    r = &r->elements().at(0);
  EXPECT_EQ(*r, Reply::integer(7));
  EXPECT_EQ(f.replies[1], Reply::status("ok"));
  ASSERT_EQ(f.rejections.size(), 1u);
  EXPECT_NE(f.rejections[0].find("nested deeper than 64 levels"), std::string::npos);
}

namespace {

std::string random_reply(std::mt19937& rng, int depth) {
  std::uniform_int_distribution<int> kind(0, depth < 5 ? 6 : 4);
  std::uniform_int_distribution<int> len(0, 40);
  const auto text = [&](bool line) {
    std::string s;
    const int n = len(rng);
    for (int i = 0; i < n; ++i) {
      char c = static_cast<char>(rng() % 256);
      if (line && (c == '\r' || c == '\n')) c = ' ';
      s += c;
    }
    return s;
  };
  switch (kind(rng)) {
    case 0:
      return "+" + text(true) + "\r\n";
    case 1:
      return "-" + text(true) + "\r\n";
    case 2:
      return ":" + std::to_string(static_cast<long long>(rng()) - (1LL << 31)) + "\r\n";
    case 3: {
      const std::string s = text(false);
      return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
    }
    case 4:
      return "$-1\r\n";
    case 5:
      return "*-1\r\n";
    default: {
      const int n = static_cast<int>(rng() % 5);
      std::string out = "*" + std::to_string(n) + "\r\n";
      for (int i = 0; i < n; ++i)
        out += random_reply(rng, depth + 1);
      return out;
    }
  }
}

}  // namespace

TEST(ReplyParser, AgreesWithHiredisOnRandomResp2Streams) {
  std::mt19937 rng(20261126);
  for (int round = 0; round < 300; ++round) {
    std::string wire;
    const int count = 1 + static_cast<int>(rng() % 20);
    for (int i = 0; i < count; ++i)
      wire += random_reply(rng, 0);

    bool read_all = false;
    const std::vector<Reply> expected = tempest::test::hiredis_replies(wire, read_all);
    ASSERT_TRUE(read_all);
    Feeder f;
    f.feed_in_chunks(wire, 1 + rng() % 64);
    ASSERT_EQ(static_cast<int>(expected.size()), count);
    ASSERT_EQ(f.replies, expected) << "round " << round;
  }
}

TEST(Reply, CheckedAccessors) {
  EXPECT_EQ(Reply::string("x").as_string(), "x");
  EXPECT_EQ(Reply::nil().as_optional_string(), std::nullopt);
  EXPECT_EQ(Reply::integer(5).as_integer(), 5);
  EXPECT_THROW((void)Reply::error("WRONGTYPE bad").as_string(), ServerError);
  EXPECT_THROW((void)Reply::integer(1).as_string(), ProtocolError);
  try {
    (void)Reply::error("WRONGTYPE Operation against a key").as_integer();
    FAIL();
  } catch (const ServerError& e) {
    EXPECT_STREQ(e.what(), "WRONGTYPE Operation against a key");
  }
}
