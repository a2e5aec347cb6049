#include "tempest/http/response_cache.hpp"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <charconv>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string_view>

#include "tempest/cache/invalidator.hpp"
#include "tempest/cache/key.hpp"
#include "tempest/cache/manager.hpp"
#include "tempest/log.hpp"
#include "tempest/redis/client.hpp"

namespace tempest::http {

namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<spdlog::logger> log() {
  static const auto logger = tempest::logger("tempest.http");
  return logger;
}

// A store that fails (Redis down) fails every request: one warning every 10 s at most.
void warn_store_failure(std::string_view what, std::string_view why) {
  static std::atomic<std::int64_t> last{0};
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
  auto previous = last.load(std::memory_order_relaxed);
  if (previous != 0 && now - previous < 10) return;
  if (!last.compare_exchange_strong(previous, now)) return;
  log()->warn("response cache: {} failed, the request is served without it: {}", what, why);
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

// Header bytes are Latin-1 to Starlette; the Python side's keys and digests hold them as UTF-8.
std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80) {
      out += c;
    } else {
      out += static_cast<char>(0xC0 | (u >> 6));
      out += static_cast<char>(0x80 | (u & 0x3F));
    }
  }
  return out;
}

// The reverse, for header text read from JSON: nullopt when a character is beyond U+00FF.
std::optional<std::string> utf8_to_latin1(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x80) {
      out += s[i];
    } else if ((u == 0xC2 || u == 0xC3) && i + 1 < s.size() &&
               (static_cast<unsigned char>(s[i + 1]) & 0xC0) == 0x80) {
      out += static_cast<char>(((u & 0x03) << 6) | (static_cast<unsigned char>(s[++i]) & 0x3F));
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("response cache: SHA-256 failed");
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (unsigned i = 0; i < size; ++i) {
    out += digits[digest[i] >> 4];
    out += digits[digest[i] & 15];
  }
  return out;
}

std::string_view header(const Request& r, const std::string& lower_name) {
  const auto it = r.headers.find(lower_name);
  return it == r.headers.end() ? std::string_view() : std::string_view(it->second);
}

// The digest of the request's credentials (Authorization, Cookie), or nullopt without any.
std::optional<std::string> credentials(const Request& r) {
  const auto authorization = header(r, "authorization");
  const auto cookie = header(r, "cookie");
  if (authorization.empty() && cookie.empty()) return std::nullopt;
  return sha256_hex(latin1_to_utf8("authorization=" + std::string(authorization) +
                                   "|cookie=" + std::string(cookie)));
}

// Python's str.strip() for the whitespace a header can hold.
std::string_view trimmed(std::string_view s) {
  constexpr std::string_view space = " \t\r\n\v\f";
  const auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

// A header list with a Python dict's behaviour: a name set twice keeps its first place and
// takes the last value.
class HeaderDict {
 public:
  void set(std::string name, std::string value) {
    for (auto& [n, v] : items_)
      if (n == name) {
        v = std::move(value);
        return;
      }
    items_.emplace_back(std::move(name), std::move(value));
  }
  void set_default(const std::string& name, std::string value) {
    if (!find(name)) items_.emplace_back(name, std::move(value));
  }
  const std::string* find(const std::string& name) const {
    for (const auto& [n, v] : items_)
      if (n == name) return &v;
    return nullptr;
  }
  std::vector<std::pair<std::string, std::string>>& items() { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// Python's json.dumps (ensure_ascii) of a string held as Latin-1 bytes.
void append_json_string(std::string& out, std::string_view latin1) {
  cache::detail::append_python_json_string(out, latin1_to_utf8(latin1));
}

class ResponseCacheLayer {
 public:
  explicit ResponseCacheLayer(ResponseCacheOptions o) : options_(std::move(o)) {
    if (options_.ttl.count() <= 0)
      throw std::invalid_argument("ResponseCacheOptions::ttl must be positive, got " +
                                  std::to_string(options_.ttl.count()) + "s");
    if (options_.max_age && options_.max_age->count() < 0)
      throw std::invalid_argument("ResponseCacheOptions::max_age must not be negative");
    for (const auto& name : options_.vary)
      if (name.empty() || name.find_first_of(" \t\r\n:,") != std::string::npos)
        throw std::invalid_argument("ResponseCacheOptions::vary: \"" + name +
                                    "\" is not a header name");
    if (options_.cache_control &&
        options_.cache_control->find_first_of("\r\n") != std::string::npos)
      throw std::invalid_argument("ResponseCacheOptions::cache_control holds a line break");
    cache_control_ = options_.cache_control.value_or(
        "private, max-age=" + std::to_string(options_.max_age.value_or(options_.ttl).count()));
    for (const auto& name : options_.vary)
      vary_header_ += (vary_header_.empty() ? "" : ", ") + name;
  }

  // Whether the request may be answered from, or stored in, the cache: its method, its path and
  // the predicate allow it.
  bool applies(const Request& request) const {
    const auto& o = options_;
    return std::find(o.methods.begin(), o.methods.end(), request.method) != o.methods.end() &&
           std::find(o.exempt_paths.begin(), o.exempt_paths.end(), request.path) ==
               o.exempt_paths.end() &&
           (!o.cacheable || o.cacheable(request));
  }

  // A request that applies().
  asio::awaitable<Response> operator()(Request& request, Next next) const {
    const auto& o = options_;
    const auto creds = credentials(request);
    ResponseCacheStore* store = !creds || o.cache_credentialed ? o.store.get() : nullptr;
    const std::string key = detail::response_cache_key(request, o.vary, o.cache_credentialed);
    const auto inm = request.headers.find("if-none-match");
    const bool conditional = inm != request.headers.end() && !inm->second.empty();

    if (store) {
      std::optional<CachedResponse> cached;
      std::string failure;
      try {
        cached = co_await store->get(key);
      } catch (const std::exception& e) {
        failure = e.what();
      }
      if (!failure.empty()) warn_store_failure("get", failure);
      if (cached) {
        HeaderDict headers;
        for (auto& [name, value] : cached->headers)
          headers.set(std::move(name), std::move(value));
        const std::string* stored_etag = headers.find("etag");
        const std::string etag = stored_etag ? *stored_etag : detail::strong_etag(cached->body);
        if (conditional && detail::etag_matches(inm->second, etag)) co_return not_modified(etag);
        decorate(headers, etag);
        headers.set("x-cache", "HIT");
        co_return build(cached->status_code, std::move(cached->body), headers, cached->media_type);
      }
    }

    Response response = co_await next(request);
    if (std::find(o.cacheable_status.begin(), o.cacheable_status.end(), response.status) ==
            o.cacheable_status.end() ||
        opts_out(response))
      co_return response;

    const std::string etag = detail::strong_etag(response.body);
    HeaderDict headers;
    headers.set("content-length", std::to_string(response.body.size()));
    if (!response.content_type.empty()) headers.set("content-type", response.content_type);
    for (auto& [name, value] : response.headers)
      headers.set(lowered(name), std::move(value));
    decorate(headers, etag);

    if (store) {
      CachedResponse entry;
      entry.status_code = response.status;
      entry.headers = headers.items();
      entry.body = response.body;
      // media_type stays null, as the Python middleware stores it (Starlette hands it a
      // streaming response without one): the type travels in the content-type header.
      std::string failure;
      try {
        co_await store->set(key, std::move(entry), o.ttl);
      } catch (const std::exception& e) {
        failure = e.what();
      }
      if (!failure.empty()) warn_store_failure("set", failure);
    }
    if (conditional && detail::etag_matches(inm->second, etag)) co_return not_modified(etag);
    if (store) headers.set("x-cache", "MISS");
    std::optional<std::string> media_type;
    if (!response.content_type.empty()) media_type = std::move(response.content_type);
    co_return build(response.status, std::move(response.body), headers, media_type);
  }

 private:
  // Whether the handler's response keeps itself out of caches (Set-Cookie, no-store, private).
  static bool opts_out(const Response& r) {
    for (const auto& [name, value] : r.headers) {
      const std::string n = lowered(name);
      if (n == "set-cookie") return true;
      if (n == "cache-control") {
        const std::string v = lowered(value);
        if (v.find("no-store") != std::string::npos || v.find("private") != std::string::npos)
          return true;
      }
    }
    return false;
  }

  void decorate(HeaderDict& headers, const std::string& etag) const {
    headers.set("etag", etag);
    headers.set_default("cache-control", cache_control_);
    if (!vary_header_.empty()) headers.set("vary", vary_header_);
  }

  Response not_modified(const std::string& etag) const {
    HeaderDict headers;
    decorate(headers, etag);
    Response r;
    r.status = 304;
    r.content_type.clear();
    for (auto& [name, value] : headers.items())
      r.headers[name] = std::move(value);
    return r;
  }

  // A Response from a header list: Content-Type as the list (or else media_type) says, and no
  // stored Content-Length (the server writes the body's own).
  static Response build(unsigned status, std::string body, HeaderDict& headers,
                        const std::optional<std::string>& media_type) {
    Response r;
    r.status = status;
    r.body = std::move(body);
    const std::string* type = headers.find("content-type");
    r.content_type = type ? *type : media_type.value_or("");
    for (auto& [name, value] : headers.items()) {
      if (name == "content-length" || name == "content-type" || name == "transfer-encoding" ||
          name == "connection" || name == "date" || name == "server")
        continue;
      r.headers[name] = std::move(value);
    }
    return r;
  }

  ResponseCacheOptions options_;
  std::string cache_control_;
  std::string vary_header_;
};

}  // namespace

namespace detail {

std::string strong_etag(std::string_view body) {
  return '"' + sha256_hex(body) + '"';
}

bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  const auto candidate = trimmed(if_none_match);
  if (candidate == "*") return true;
  std::size_t start = 0;
  for (;;) {
    const auto comma = candidate.find(',', start);
    auto tag = trimmed(candidate.substr(start, comma - start));
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == etag) return true;
    if (comma == std::string_view::npos) return false;
    start = comma + 1;
  }
}

std::string response_cache_key(const Request& request, const std::vector<std::string>& vary,
                               bool with_credentials) {
  const auto q = request.target.find('?');
  std::string key = request.method + '|' + request.path + '|' +
                    (q == std::string::npos ? std::string() : request.target.substr(q + 1));
  for (const auto& name : vary)
    key += '|' + name + '=' + latin1_to_utf8(header(request, lowered(name)));
  if (with_credentials)
    if (auto digest = credentials(request)) key += "|cred=" + *digest;
  return key;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = (static_cast<unsigned char>(bytes[i]) << 16) |
                            (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                            static_cast<unsigned char>(bytes[i + 2]);
    out += alphabet[n >> 18];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  if (const auto rest = bytes.size() - i; rest > 0) {
    std::uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += alphabet[n >> 18];
    out += alphabet[(n >> 12) & 63];
    out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  const auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=' && text[i + 3] == '=') : 0;
    std::uint32_t n = 0;
    for (int j = 0; j < 4 - pad; ++j) {
      const int v = value(text[i + j]);
      if (v < 0) return std::nullopt;
      n |= static_cast<std::uint32_t>(v) << (18 - 6 * j);
    }
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
  }
  return out;
}

std::string encode_cached_response(const CachedResponse& response) {
  std::string out =
      "{\"status_code\": " + std::to_string(response.status_code) + ", \"headers\": [";
  bool first = true;
  for (const auto& [name, value] : response.headers) {
    out += first ? "[" : ", [";
    first = false;
    append_json_string(out, name);
    out += ", ";
    append_json_string(out, value);
    out += ']';
  }
  out += "], \"body\": \"" + base64_encode(response.body) + "\", \"media_type\": ";
  if (response.media_type)
    append_json_string(out, *response.media_type);
  else
    out += "null";
  out += '}';
  return out;
}

std::optional<CachedResponse> decode_cached_response(std::string_view json) {
  boost::system::error_code ec;
  const auto doc = boost::json::parse(json, ec);
  if (ec || !doc.is_object()) return std::nullopt;
  const auto& o = doc.as_object();
  const auto* status = o.if_contains("status_code");
  const auto* headers = o.if_contains("headers");
  const auto* body = o.if_contains("body");
  const auto* media_type = o.if_contains("media_type");
  if (!status || !status->is_int64() || status->as_int64() < 100 || status->as_int64() > 999 ||
      !headers || !headers->is_array() || !body || !body->is_string())
    return std::nullopt;
  CachedResponse r;
  r.status_code = static_cast<unsigned>(status->as_int64());
  for (const auto& item : headers->as_array()) {
    if (!item.is_array() || item.as_array().size() != 2 || !item.as_array()[0].is_string() ||
        !item.as_array()[1].is_string())
      return std::nullopt;
    auto name = utf8_to_latin1(item.as_array()[0].as_string());
    auto value = utf8_to_latin1(item.as_array()[1].as_string());
    if (!name || !value) return std::nullopt;
    r.headers.emplace_back(std::move(*name), std::move(*value));
  }
  auto bytes = base64_decode(body->as_string());
  if (!bytes) return std::nullopt;
  r.body = std::move(*bytes);
  if (media_type && media_type->is_string()) {
    auto type = utf8_to_latin1(media_type->as_string());
    if (!type) return std::nullopt;
    r.media_type = std::move(*type);
  } else if (media_type && !media_type->is_null()) {
    return std::nullopt;
  }
  return r;
}

}  // namespace detail

Middleware response_cache(ResponseCacheOptions options) {
  auto m = std::make_shared<const ResponseCacheLayer>(std::move(options));
  // The others go straight on, without a coroutine frame of this layer's.
  return [m](Request& request, Next next) {
    return m->applies(request) ? (*m)(request, next) : next(request);
  };
}

// --- MemoryResponseCacheStore

struct MemoryResponseCacheStore::State {
  explicit State(std::size_t max) : max_entries(max) {}
  std::size_t max_entries;
  mutable std::mutex mutex;
  std::map<std::string, std::pair<Clock::time_point, CachedResponse>, std::less<>> entries;
};

MemoryResponseCacheStore::MemoryResponseCacheStore(std::size_t max_entries)
    : state_(std::make_unique<State>(max_entries)) {
  if (max_entries == 0)
    throw std::invalid_argument("MemoryResponseCacheStore: max_entries must be positive");
}

MemoryResponseCacheStore::~MemoryResponseCacheStore() = default;

asio::awaitable<std::optional<CachedResponse>> MemoryResponseCacheStore::get(std::string key) {
  std::optional<CachedResponse> found;
  {
    std::lock_guard lock(state_->mutex);
    const auto it = state_->entries.find(key);
    if (it != state_->entries.end()) {
      if (it->second.first <= Clock::now())
        state_->entries.erase(it);
      else
        found = it->second.second;
    }
  }
  co_return found;
}

asio::awaitable<void> MemoryResponseCacheStore::set(std::string key, CachedResponse response,
                                                    std::chrono::seconds ttl) {
  std::lock_guard lock(state_->mutex);
  auto& entries = state_->entries;
  const auto now = Clock::now();
  if (entries.size() >= state_->max_entries && !entries.contains(key))
    std::erase_if(entries, [now](const auto& e) { return e.second.first <= now; });
  if (entries.size() < state_->max_entries || entries.contains(key))
    entries.insert_or_assign(std::move(key), std::pair(now + ttl, std::move(response)));
  co_return;
}

asio::awaitable<std::size_t> MemoryResponseCacheStore::invalidate_prefix(std::string key_prefix) {
  if (key_prefix.empty())
    throw std::invalid_argument("invalidate_prefix: an empty prefix would drop every response");
  std::size_t removed = 0;
  {
    std::lock_guard lock(state_->mutex);
    auto& entries = state_->entries;
    auto it = entries.lower_bound(key_prefix);
    while (it != entries.end() && std::string_view(it->first).starts_with(key_prefix)) {
      it = entries.erase(it);
      ++removed;
    }
  }
  co_return removed;
}

std::size_t MemoryResponseCacheStore::size() const {
  std::lock_guard lock(state_->mutex);
  return state_->entries.size();
}

// --- RedisResponseCacheStore

RedisResponseCacheStore::RedisResponseCacheStore(cache::RedisManager& manager, std::string prefix)
    : manager_(&manager), prefix_(std::move(prefix)) {}

asio::awaitable<std::optional<CachedResponse>> RedisResponseCacheStore::get(std::string key) {
  // Not connected, or the link is down: served by the handler at once, with no wait for a
  // command's timeout.
  auto client = manager_->client_dependency();
  if (!client || !manager_->is_up()) co_return std::nullopt;
  auto raw = co_await client->get(prefix_ + key);
  if (!raw) co_return std::nullopt;
  auto entry = detail::decode_cached_response(*raw);
  if (!entry) {
    // The method and path only: a query or a varied header may hold something private.
    const auto second_bar = key.find('|', key.find('|') + 1);
    log()->warn("response cache: the entry for {} is not a cached response; ignored",
                key.substr(0, std::min<std::size_t>(second_bar, 200)));
  }
  co_return entry;
}

asio::awaitable<void> RedisResponseCacheStore::set(std::string key, CachedResponse response,
                                                   std::chrono::seconds ttl) {
  auto client = manager_->client_dependency();
  if (!client || !manager_->is_up()) co_return;
  co_await client->set(prefix_ + key, detail::encode_cached_response(response), redis::ex{ttl});
}

asio::awaitable<std::size_t> RedisResponseCacheStore::invalidate_prefix(std::string key_prefix) {
  if (key_prefix.empty())
    throw std::invalid_argument("invalidate_prefix: an empty prefix would drop every response");
  cache::CacheInvalidator invalidator(*manager_);
  co_return co_await invalidator.invalidate_prefix(prefix_ + key_prefix);
}

}  // namespace tempest::http
