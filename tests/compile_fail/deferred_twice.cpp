// A deferred operation is single-shot: invoking it as an lvalue (which could be done twice and
// would submit the same request twice) does not compile; std::move(op)(token) does.
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <tempest/redis/client.hpp>

int main() {
  boost::asio::io_context io;
  tempest::redis::Client client(io.get_executor(), "redis://127.0.0.1:6379");
  auto op = client.get("k", boost::asio::deferred);
  op([](std::exception_ptr, std::optional<std::string>) {});
}
