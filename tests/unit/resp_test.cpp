// RESP encoding of commands and incremental parsing of replies.
#include <gtest/gtest.h>

#include "tempest/redis/command.hpp"
#include "tempest/redis/detail/reader.hpp"
#include "tempest/redis/error.hpp"

using namespace tempest::redis;

TEST(Command, EncodesBinarySafeArguments) {
  const std::string bin("a\0b\r\n", 5);
  const auto c = cmd("SET", bin, 42, -7LL);
  EXPECT_EQ(c.argc(), 4u);
  static const char kExpected[] = "*4\r\n$3\r\nSET\r\n$5\r\na\0b\r\n\r\n$2\r\n42\r\n$2\r\n-7\r\n";
  EXPECT_EQ(c.wire(), std::string(kExpected, sizeof kExpected - 1));
  EXPECT_EQ(c.name(), "SET");
}

TEST(Command, EmptyArgument) {
  EXPECT_EQ(cmd("GET", "").wire(), "*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
}

TEST(ReplyReader, ParsesEveryTypeFedOneByteAtATime) {
  static const char kWire[] =
      "+OK\r\n-ERR bad\r\n:42\r\n$-1\r\n$5\r\nhe\0lo\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n"
      "*-1\r\n*0\r\n";
  const std::string data(kWire, sizeof kWire - 1);
  detail::ReplyReader r;
  std::vector<Reply> got;
  for (char ch : data) {
    r.feed(&ch, 1);
    while (auto reply = r.next())
      got.push_back(std::move(*reply));
  }
  ASSERT_EQ(got.size(), 8u);
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
}

TEST(ReplyReader, LargeArrayGrowsIncrementally) {
  std::string wire = "*5000\r\n";
  for (int i = 0; i < 5000; ++i)
    wire += ":" + std::to_string(i) + "\r\n";
  detail::ReplyReader r;
  r.feed(wire.data(), wire.size());
  auto reply = r.next();
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->elements().size(), 5000u);
  EXPECT_EQ(reply->elements()[4999], Reply::integer(4999));
}

TEST(ReplyReader, GarbageIsAProtocolError) {
  detail::ReplyReader r;
  r.feed("?what\r\n", 7);
  EXPECT_THROW(r.next(), ProtocolError);
  EXPECT_THROW(r.next(), ProtocolError);  // stays broken until reset
  r.reset();
  r.feed(":1\r\n", 4);
  EXPECT_EQ(*r.next(), Reply::integer(1));
}

TEST(ReplyReader, HugeDeclaredArrayIsRefused) {
  detail::ReplyReader r;
  r.feed("*2000000000\r\n", 13);
  EXPECT_THROW(r.next(), ProtocolError);
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
