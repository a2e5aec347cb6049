// Method + path routing with {name} path parameters; 404 and 405 with JSON bodies.
#pragma once

#include <string>
#include <vector>

#include "tempest/http/types.hpp"

namespace tempest::http {

class Router {
 public:
  explicit Router(std::string prefix = "") : prefix_(std::move(prefix)) {}

  // pattern: "/users/{id}/orders"; a {name} segment matches one non-empty path segment.
  Router& add(std::string method, std::string pattern, Handler handler);
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
  // Adds every route of `other` (its prefix already applied).
  Router& include(const Router& other);

  struct Match {
    const Handler* handler = nullptr;  // set when a route matched path and method
    std::string route;                 // the pattern, for metrics and logs
    std::map<std::string, std::string> params;
    std::vector<std::string> allowed;  // path matched but not the method: 405 with these
  };
  Match match(const std::string& method, const std::string& path) const;

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

}  // namespace tempest::http
