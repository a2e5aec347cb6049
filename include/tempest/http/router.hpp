/// @file
/// Method + path routing with {name} path parameters; 404 and 405 with JSON bodies.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tempest/http/types.hpp"

namespace tempest::http {

/// Routes: a method and a path pattern each, under a common prefix (FastAPI's APIRouter).
class Router {
 public:
  /// Routes added later are under `prefix` (e.g. "/api").
  explicit Router(std::string prefix = "") : prefix_(std::move(prefix)) {}

  /// pattern: "/users/{id}/orders"; a {name} segment matches one non-empty path segment.
  Router& add(std::string method, std::string pattern, Handler handler);
  /// add() with the method GET, POST, PUT or DELETE.
  ///@{
  Router& get(std::string pattern, Handler h) {
    return add("GET", std::move(pattern), std::move(h));
  }
  Router& post(std::string pattern, Handler h) {
    return add("POST", std::move(pattern), std::move(h));
  }
  Router& put(std::string pattern, Handler h) {
    return add("PUT", std::move(pattern), std::move(h));
  }
  Router& del(std::string pattern, Handler h) {
    return add("DELETE", std::move(pattern), std::move(h));
  }
  ///@}
  /// Adds every route of `other` (its prefix already applied).
  Router& include(const Router& other);

  /// What match() found.
  struct Match {
    bool bad_path = false;  ///< a segment decodes to NUL or to invalid UTF-8: 400, nothing matched
    const Handler* handler = nullptr;           ///< set when a route matched path and method
    std::string route;                          ///< the pattern, for metrics and logs
    std::map<std::string, std::string> params;  ///< the path parameters of the matched route
    std::vector<std::string> allowed;           ///< path matched but not the method: 405 with these
  };
  /// `path` as sent (percent-encoded, without the query): split on '/' first, each segment then
  /// decoded; a literal segment matches its decoded text, a {name} one non-empty segment, and an
  /// empty segment ("//", a trailing '/') matches no pattern segment.
  Match match(const std::string& method, std::string_view path) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::string prefix_;
  std::vector<Route> routes_;
};

namespace detail {
/// Percent-decoding; '+' is a space when plus_is_space (query strings). Malformed escapes stay as
/// they are.
std::string percent_decode(std::string_view s, bool plus_is_space);
/// The same into `out` (replaced; its capacity is reused).
void percent_decode_into(std::string_view s, bool plus_is_space, std::string& out);
}  // namespace detail

}  // namespace tempest::http
