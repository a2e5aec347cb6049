// Running a subcommand's coroutine to completion, bounded in time.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace tempest::redis {
class Client;
struct Config;
}  // namespace tempest::redis

namespace tempest::cli {

// Runs `body` on `io` until it finishes and rethrows what it threw. Throws std::runtime_error
// ("<what> did not finish within N s") when it has not finished after `limit`: each connection
// and command has a timeout of its own, this is the last guard against waiting forever.
void run_bounded(boost::asio::io_context& io, std::function<boost::asio::awaitable<void>()> body,
                 std::chrono::milliseconds limit, const std::string& what);

// Connects `client`; when it cannot, throws std::runtime_error("Redis unreachable: <why>") (the
// library's message, which never holds a password).
boost::asio::awaitable<void> connect_or_explain(redis::Client& client);

// The Config of a tool's connection to `url`: connect and command timeouts of `timeout_s`
// seconds, and requests fail at once while there is no link (nothing waits for a reconnect).
redis::Config tool_config(std::string_view url, double timeout_s);

// Seconds (from an option) as milliseconds, at least 1.
std::chrono::milliseconds to_ms(double seconds);

}  // namespace tempest::cli
