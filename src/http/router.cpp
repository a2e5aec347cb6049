#include "tempest/http/router.hpp"

#include <algorithm>
#include <stdexcept>

namespace tempest::http {

namespace {
std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/')
      ++i;
    const auto j = path.find('/', i);
    const auto end = j == std::string::npos ? path.size() : j;
    if (end > i) out.push_back(path.substr(i, end - i));
    i = end;
  }
  return out;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}
}  // namespace

std::string Request::param(const std::string& name) const {
  const auto it = params.find(name);
  if (it == params.end()) throw std::out_of_range("no path parameter '" + name + "'");
  return it->second;
}

std::optional<std::string> Request::query_param(const std::string& name) const {
  const auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return it->second;
}

Response Response::json(unsigned status, std::string json_text) {
  Response r;
  r.status = status;
  r.body = std::move(json_text);
  return r;
}

Response Response::error(unsigned status, std::string_view message) {
  std::string body = "{\"detail\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') body += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) body += c;
  }
  body += "\"}";
  return json(status, std::move(body));
}

Response Response::text(unsigned status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

Router& Router::add(std::string method, std::string pattern, Handler handler) {
  if (!handler) throw std::invalid_argument("route " + pattern + ": empty handler");
  const std::string full = prefix_ + pattern;
  if (full.empty() || full.front() != '/')
    throw std::invalid_argument("route '" + full + "' must start with '/'");
  std::transform(method.begin(), method.end(), method.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  routes_.push_back(Route{std::move(method), full, split_path(full), std::move(handler)});
  return *this;
}

Router& Router::include(const Router& other) {
  for (const auto& r : other.routes_)
    routes_.push_back(r);
  return *this;
}

Router::Match Router::match(const std::string& method, const std::string& path) const {
  Match m;
  const auto segments = split_path(path);
  for (const auto& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool ok = true;
    for (std::size_t i = 0; i < segments.size() && ok; ++i) {
      if (is_param(r.segments[i])) {
        params[r.segments[i].substr(1, r.segments[i].size() - 2)] = segments[i];
      } else {
        ok = r.segments[i] == segments[i];
      }
    }
    if (!ok) continue;
    if (r.method == method || (method == "HEAD" && r.method == "GET")) {
      m.handler = &r.handler;
      m.route = r.pattern;
      m.params = std::move(params);
      m.allowed.clear();
      return m;
    }
    if (std::find(m.allowed.begin(), m.allowed.end(), r.method) == m.allowed.end())
      m.allowed.push_back(r.method);
  }
  return m;
}

}  // namespace tempest::http
