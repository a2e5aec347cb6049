// The command table: what may run on the shared connection, in a transaction, on a dedicated
// connection; pipelines built from raw bytes must say how many commands they hold.
#include <gtest/gtest.h>

#include <stdexcept>

#include "tempest/redis/detail/commands.hpp"

using namespace tempest::redis;
using detail::check_command;
using detail::check_pipeline;
using detail::CommandReplies;
using detail::CommandUse;
using detail::Venue;

namespace {
std::string refusal(const Command& c, Venue v) {
  try {
    check_command(c, v);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}
}  // namespace

TEST(CommandTable, OrdinaryCommandsRunEverywhere) {
  for (const auto& c : {cmd("GET", "k"), cmd("set", "k", "v"), cmd("CLIENT", "GETNAME"),
                        cmd("XREAD", "COUNT", 1, "STREAMS", "s", "0"), cmd("EVAL", "return 1", 0)})
    for (auto v : {Venue::shared, Venue::transaction, Venue::dedicated})
      EXPECT_EQ(refusal(c, v), "") << c.name();
}

TEST(CommandTable, WhatBreaksReplyMatchingIsRefusedEverywhere) {
  const Command broken[] = {cmd("SUBSCRIBE", "ch"),
                            cmd("psubscribe", "p*"),
                            cmd("SSUBSCRIBE", "s"),
                            cmd("UNSUBSCRIBE"),
                            cmd("PUNSUBSCRIBE"),
                            cmd("SUNSUBSCRIBE"),
                            Command("MONITOR"),
                            cmd("CLIENT", "REPLY", "SKIP"),
                            cmd("client", "reply", "off"),
                            Command("QUIT"),
                            Command("RESET"),
                            Command("SYNC")};
  for (const auto& c : broken)
    for (auto v : {Venue::shared, Venue::transaction, Venue::dedicated}) {
      const auto why = refusal(c, v);
      EXPECT_NE(why.find("is refused"), std::string::npos) << c.name();
      EXPECT_NE(why.find("wrong replies"), std::string::npos) << why;
    }
  EXPECT_NE(refusal(cmd("SUBSCRIBE", "ch"), Venue::shared).find("Subscriber"), std::string::npos);
  EXPECT_EQ(detail::command_traits(cmd("SUBSCRIBE", "a", "b")).replies,
            CommandReplies::one_per_channel);
  EXPECT_EQ(detail::command_traits(cmd("CLIENT", "REPLY", "OFF")).replies, CommandReplies::none);
  EXPECT_EQ(detail::command_traits(Command("MONITOR")).replies, CommandReplies::stream);
}

TEST(CommandTable, ConnectionStateComesFromTheConfig) {
  EXPECT_NE(refusal(cmd("SELECT", 2), Venue::shared).find("redis://host:port/<db>"),
            std::string::npos);
  EXPECT_NE(refusal(cmd("AUTH", "pw"), Venue::dedicated).find("credentials come from the config"),
            std::string::npos);
  EXPECT_NE(refusal(cmd("HELLO", 3), Venue::shared), "");
  EXPECT_NE(refusal(cmd("CLIENT", "TRACKING", "on"), Venue::shared), "");
  // The refused password is never echoed: only the command's name appears.
  EXPECT_EQ(refusal(cmd("AUTH", "hunter2"), Venue::shared).find("hunter2"), std::string::npos);
}

TEST(CommandTable, ConnectionSettingsOnlyOnADedicatedConnection) {
  for (const auto& c : {cmd("CLIENT", "SETNAME", "x"), cmd("client", "setinfo", "lib-name", "x"),
                        cmd("CLIENT", "NO-EVICT", "on"), cmd("CLIENT", "NO-TOUCH", "on"),
                        cmd("CLIENT", "CACHING", "yes"), Command("ASKING")}) {
    EXPECT_NE(refusal(c, Venue::shared).find("is refused on a shared connection"),
              std::string::npos)
        << c.name() << " " << c.argument(1);
    EXPECT_NE(refusal(c, Venue::transaction), "");
    EXPECT_EQ(refusal(c, Venue::dedicated), "");
  }
  EXPECT_EQ(refusal(cmd("CLIENT", "ID"), Venue::shared), "");
  EXPECT_EQ(refusal(cmd("CLIENT", "KILL", "ID", 7), Venue::shared), "");
}

TEST(CommandTable, TransactionsAndBlockingCommandsNeedADedicatedConnection) {
  for (const auto& c : {cmd("WATCH", "k"), Command("MULTI"), Command("EXEC"), Command("DISCARD"),
                        Command("UNWATCH")}) {
    EXPECT_NE(refusal(c, Venue::shared).find("client.dedicated()"), std::string::npos) << c.name();
    EXPECT_NE(refusal(c, Venue::transaction).find("inside transaction()"), std::string::npos);
    EXPECT_EQ(refusal(c, Venue::dedicated), "");
  }
  for (const auto& c : {cmd("BLPOP", "q", 1), cmd("brpop", "q", 0),
                        cmd("BLMOVE", "a", "b", "LEFT", "RIGHT", 1), cmd("BZPOPMIN", "z", 1),
                        cmd("WAIT", 1, 100), cmd("XREAD", "BLOCK", 100, "STREAMS", "s", "$"),
                        cmd("XREADGROUP", "GROUP", "g", "c", "block", 5, "STREAMS", "s", ">")}) {
    const auto why = refusal(c, Venue::shared);
    EXPECT_NE(why.find("blocks the connection"), std::string::npos) << c.name() << ": " << why;
    EXPECT_EQ(refusal(c, Venue::transaction), "");  // inside MULTI they do not block
    EXPECT_EQ(refusal(c, Venue::dedicated), "");
  }
}

TEST(CommandTable, PipelinesAreCheckedCommandByCommand) {
  Pipeline ok;
  ok.add("SET", "a", "1").add("GET", "a");
  EXPECT_NO_THROW(check_pipeline(ok, Venue::shared));
  Pipeline bad = ok;
  bad.add("CLIENT", "REPLY", "SKIP").add("GET", "b");
  try {
    check_pipeline(bad, Venue::shared);
    FAIL() << "CLIENT REPLY in a pipeline was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("CLIENT REPLY is refused"), std::string::npos);
  }
  Pipeline watch;
  watch.add("WATCH", "k");
  EXPECT_THROW(check_pipeline(watch, Venue::shared), std::invalid_argument);
  EXPECT_THROW(check_pipeline(watch, Venue::transaction), std::invalid_argument);
  EXPECT_NO_THROW(check_pipeline(watch, Venue::dedicated));
  Pipeline spliced;
  spliced.append(ok).append(watch);
  EXPECT_EQ(spliced.size(), 3u);
  EXPECT_THROW(check_pipeline(spliced, Venue::shared), std::invalid_argument);
}

TEST(CommandTable, FromWireMustCountItsCommands) {
  const std::string two = cmd("SET", "a", "1").wire() + cmd("GET", "a").wire();
  EXPECT_EQ(Pipeline::from_wire(two, 2).size(), 2u);
  try {
    (void)Pipeline::from_wire(two, 3);
    FAIL() << "a wrong count was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("holds 2 command(s), not 3"), std::string::npos);
  }
  EXPECT_THROW((void)Pipeline::from_wire("*2\r\n$3\r\nGET\r\n", 1), std::invalid_argument);
  EXPECT_THROW((void)Pipeline::from_wire("PING\r\n", 1), std::invalid_argument);
  EXPECT_THROW((void)Pipeline::from_wire("*1\r\n$4\r\nPING\r\nextra", 1), std::invalid_argument);
  // What from_wire reads is checked like what add() builds.
  const auto sneaky = Pipeline::from_wire(cmd("SUBSCRIBE", "ch").wire(), 1);
  EXPECT_THROW(check_pipeline(sneaky, Venue::shared), std::invalid_argument);
}

TEST(CommandTable, EmptyCommandIsRefused) {
  EXPECT_NE(refusal(Command(), Venue::shared).find("empty command"), std::string::npos);
}
