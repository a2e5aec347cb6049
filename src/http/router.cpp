#include "tempest/http/router.hpp"

#include <algorithm>
#include <stdexcept>

namespace tempest::http {

namespace {
// Calls f with each segment of a path, split on '/' before any percent-decoding, empty ones kept:
// "/a//b/" is a, "", b, "" (so "%2F" stays inside its segment, and "//" does not fold into "/");
// "/" (or nothing) has none. Stops when f returns false.
template <class F>
void for_each_segment(std::string_view path, F&& f) {
  if (path.size() <= 1) return;
  for (std::size_t i = 1;;) {
    const auto j = path.find('/', i);
    if (!f(path.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i))) return;
    if (j == std::string_view::npos) return;
    i = j + 1;
  }
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  for_each_segment(path, [&](std::string_view segment) {
    out.emplace_back(segment);
    return true;
  });
  return out;
}

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    unsigned cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // cut short
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}
}  // namespace

namespace detail {
std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  percent_decode_into(s, plus_is_space, out);
  return out;
}

void percent_decode_into(std::string_view s, bool plus_is_space, std::string& out) {
  // Most paths and queries have nothing to decode: copied as they are.
  if (s.find('%') == std::string_view::npos &&
      (!plus_is_space || s.find('+') == std::string_view::npos)) {
    out.assign(s);
    return;
  }
  out.clear();
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
}
}  // namespace detail

std::string Request::param(const std::string& name) const {
  const auto it = params.find(name);
  if (it == params.end()) throw std::out_of_range("no path parameter '" + name + "'");
  return it->second;
}

std::vector<std::string> Request::query_values(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : query_items)
    if (k == name) out.push_back(v);
  return out;
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

Router::Match Router::match(const std::string& method, std::string_view path) const {
  Match m;
  // The decoded segments, in strings this thread reuses (matching allocates nothing of its own):
  // the first `count` of them are this path's.
  thread_local std::vector<std::string> segments;
  if (segments.size() > 64) segments = {};  // after a path of many segments: not kept for good
  std::size_t count = 0;
  for_each_segment(path, [&](std::string_view raw) {
    if (count == segments.size()) segments.emplace_back();
    std::string& segment = segments[count++];
    detail::percent_decode_into(raw, false, segment);
    m.bad_path = segment.find('\0') != std::string::npos || !is_utf8(segment);
    return !m.bad_path;
  });
  if (m.bad_path) return m;
  for (const auto& r : routes_) {
    if (r.segments.size() != count) continue;
    bool ok = true;
    for (std::size_t i = 0; i < count && ok; ++i)
      ok = is_param(r.segments[i]) ? !segments[i].empty()  // "//" gives no parameter ""
                                   : r.segments[i] == segments[i];
    if (!ok) continue;
    if (r.method == method || (method == "HEAD" && r.method == "GET")) {
      m.handler = &r.handler;
      m.route = r.pattern;
      for (std::size_t i = 0; i < count; ++i)
        if (is_param(r.segments[i]))
          m.params[r.segments[i].substr(1, r.segments[i].size() - 2)] = std::move(segments[i]);
      m.allowed.clear();
      return m;
    }
    if (m.route.empty()) m.route = r.pattern;  // for a 405: the pattern, not the path
    if (std::find(m.allowed.begin(), m.allowed.end(), r.method) == m.allowed.end())
      m.allowed.push_back(r.method);
  }
  return m;
}

}  // namespace tempest::http
