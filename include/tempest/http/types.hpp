// Requests, responses and handlers of tempest::http.
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

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: path and query
  std::string path;    // percent-decoded path
  // Percent-decoded query parameters; a repeated one holds its last value (as Starlette's
  // query_params[name]), and query_items all of them in order (query_values(name): one name's).
  std::map<std::string, std::string> query;
  std::vector<std::pair<std::string, std::string>> query_items;
  std::map<std::string, std::string> params;  // path parameters: /users/{id} -> params["id"]
  // Lower-case names; a repeated field's values joined by ", " (RFC 9110 5.3; "; " for Cookie).
  std::map<std::string, std::string> headers;
  std::string body;
  std::string route;  // the matched pattern, e.g. "/users/{id}"

  std::string param(const std::string& name) const;  // throws std::out_of_range if absent
  std::optional<std::string> query_param(const std::string& name) const;
  std::vector<std::string> query_values(const std::string& name) const;
};

struct Response {
  unsigned status = 200;
  std::string body;
  std::string content_type = "application/json";  // empty: no Content-Type header
  std::map<std::string, std::string> headers;

  // A JSON body from already serialized JSON text.
  static Response json(unsigned status, std::string json_text);
  // {"detail": message}, the FastAPI error shape.
  static Response error(unsigned status, std::string_view message);
  static Response text(unsigned status, std::string body, std::string content_type = "text/plain");
};

using Handler = std::function<asio::awaitable<Response>(Request&)>;
using Hook = std::function<asio::awaitable<void>()>;

class App;

// What follows a middleware: the next middleware, then the matched route's handler (or the
// routing answer: 404, 405, 400). Call it at most once per request; it lives for the request.
class Next {
 public:
  asio::awaitable<Response> operator()(Request& request) const;

 private:
  friend class App;
  Next(const App* app, const void* match, std::size_t index)
      : app_(app), match_(match), index_(index) {}
  const App* app_;
  const void* match_;  // the request's routing result
  std::size_t index_;  // the middleware to run next
};

// Runs around every request, in the order App::use() added them (the first is the outermost):
// it may answer itself, or call next(request) and return or change what it gives.
using Middleware = std::function<asio::awaitable<Response>(Request&, Next next)>;

}  // namespace tempest::http
