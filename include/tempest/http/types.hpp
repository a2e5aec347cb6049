/// @file
/// Requests, responses and handlers of tempest::http.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tempest::http {

namespace asio = boost::asio;

/// An HTTP request as handlers and middleware see it.
struct Request {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< as sent: path and query
  std::string path;    ///< percent-decoded path
  /// Percent-decoded query parameters; a repeated one holds its last value (as Starlette's
  /// query_params[name]), and query_items all of them in order (query_values(name): one name's).
  std::map<std::string, std::string> query;
  std::vector<std::pair<std::string, std::string>>
      query_items;                            ///< every query parameter, in order
  std::map<std::string, std::string> params;  ///< path parameters: /users/{id} -> params["id"]
  /// Lower-case names; a repeated field's values joined by ", " (RFC 9110 5.3; "; " for Cookie).
  std::map<std::string, std::string> headers;
  std::string body;   ///< the body, de-chunked
  std::string route;  ///< the matched pattern, e.g. "/users/{id}"

  std::string param(const std::string& name) const;  ///< throws std::out_of_range if absent
  /// The query parameter's last value; nullopt when absent.
  std::optional<std::string> query_param(const std::string& name) const;
  /// Every value of the query parameter, in order (empty when absent).
  std::vector<std::string> query_values(const std::string& name) const;
};

/// What a handler returns.
struct Response {
  unsigned status = 200;                          ///< the status code
  std::string body;                               ///< the body (none is sent for 204, 304 and HEAD)
  std::string content_type = "application/json";  ///< empty: no Content-Type header
  /// More header fields (names as given; CR, LF or NUL in a name or value makes it a 500).
  std::map<std::string, std::string> headers;

  /// A JSON body from already serialized JSON text.
  static Response json(unsigned status, std::string json_text);
  /// {"detail": message}, the FastAPI error shape.
  static Response error(unsigned status, std::string_view message);
  /// A body of another type, text/plain by default.
  static Response text(unsigned status, std::string body, std::string content_type = "text/plain");
};

/// A route's handler: a coroutine from the request to its response; what it throws becomes a 500.
using Handler = std::function<asio::awaitable<Response>(Request&)>;
/// A startup or shutdown hook (App::on_startup, App::on_shutdown).
using Hook = std::function<asio::awaitable<void>()>;

class App;

/// What follows a middleware: the next middleware, then the matched route's handler (or the
/// routing answer: 404, 405, 400). Call it at most once per request; it lives for the request.
class Next {
 public:
  /// Runs the rest of the chain for `request`.
  asio::awaitable<Response> operator()(Request& request) const;

 private:
  friend class App;
  Next(const App* app, const void* match, std::size_t index)
      : app_(app), match_(match), index_(index) {}
  const App* app_;
  const void* match_;  ///< the request's routing result
  std::size_t index_;  ///< the middleware to run next
};

/// Runs around every request, in the order App::use() added them (the first is the outermost):
/// it may answer itself, or call next(request) and return or change what it gives.
using Middleware = std::function<asio::awaitable<Response>(Request&, Next next)>;

}  // namespace tempest::http
