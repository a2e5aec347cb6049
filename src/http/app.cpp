#include "tempest/http/app.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "tempest/cache/manager.hpp"
#include "tempest/log.hpp"

namespace tempest::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// Text for a log line or an error: control characters as \xNN, at most 64 characters.
std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s.substr(0, 64)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7F) {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[u >> 4];
      out += digits[u & 15];
    } else {
      out += c;
    }
  }
  if (s.size() > 64) out += "...";
  return out;
}

// ASCII only, without the C locale's per-character calls (every response header goes through
// these).
constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

Request to_request(bhttp::request<bhttp::string_body>&& raw) {
  Request r;
  r.method = std::string(raw.method_string());
  r.target = std::string(raw.target());
  const auto q = r.target.find('?');
  r.path = detail::percent_decode(std::string_view(r.target).substr(0, q), false);
  if (q != std::string::npos) {
    std::string_view query = std::string_view(r.target).substr(q + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const auto item = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
      if (item.empty()) continue;
      const auto eq = item.find('=');
      std::string name = detail::percent_decode(item.substr(0, eq), true);
      std::string value = eq == std::string_view::npos
                              ? std::string()
                              : detail::percent_decode(item.substr(eq + 1), true);
      r.query[name] = value;  // the last of a repeated one
      r.query_items.emplace_back(std::move(name), std::move(value));
    }
  }
  for (const auto& field : raw) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](char c) { return ascii_lower(c); });
    auto [it, fresh] = r.headers.try_emplace(std::move(name), field.value());
    if (!fresh) (it->second += it->first == "cookie" ? "; " : ", ") += field.value();
  }
  r.body = std::move(raw.body());
  return r;
}

// RFC 9110 5.6.2: the characters of a token (a field name, a transfer coding).
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c)
    t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c)
    t[c] = t[c - 'a' + 'A'] = true;
  for (const char c : std::string_view("!#$%&'*+-.^_`|~"))
    t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_tchar(unsigned char c) {
  return kTchar[c];
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(c); });
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

// A response header a handler set must not carry its own line breaks (response splitting): its
// name a token, its value without control characters but HTAB.
void check_header(std::string_view name, std::string_view value) {
  if (name.size() + value.size() > 65535)
    throw std::invalid_argument("response header " + printable(name) + " is over 64 KiB");
  if (!is_token(name))
    throw std::invalid_argument("response header name is not a token: \"" + printable(name) + "\"");
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7F)
      throw std::invalid_argument("response header " + std::string(name) +
                                  " holds a control character (CR, LF or NUL would split the "
                                  "response)");
  }
}

// RFC 9112 6.1 and 6.3: the one transfer coding this server decodes is chunked, alone. Any
// other Transfer-Encoding leaves the request without a length this server could know, and a
// guess would read the rest of the connection as the next request (smuggling): 0 when the
// framing is sound; 400, or 501 for codings it does not implement before a final chunked.
// (Content-Length beside Transfer-Encoding is a 400 too; Beast reads a chunked body itself.)
unsigned framing_status(const bhttp::request<bhttp::string_body>& raw) {
  std::size_t fields = 0;
  std::string_view value;
  for (const auto& f : raw)
    if (f.name() == bhttp::field::transfer_encoding) {
      ++fields;
      value = f.value();
    }
  if (fields == 0) return 0;
  if (fields > 1 || raw.count(bhttp::field::content_length) != 0) return 400;
  std::vector<std::string_view> codings;
  for (;;) {
    const auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
      item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
      item.remove_suffix(1);
    if (!is_token(item)) return 400;  // empty, parameters, quotes, line breaks
    codings.push_back(item);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  const auto chunked = std::count_if(codings.begin(), codings.end(),
                                     [](std::string_view c) { return iequals(c, "chunked"); });
  if (chunked != 1 || !iequals(codings.back(), "chunked")) return 400;
  return codings.size() == 1 ? 0 : 501;
}

// The Date field's value (RFC 9110 IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"), made once a
// second per thread, with English names whatever the locale.
const std::string& http_date() {
  thread_local std::time_t made = -1;
  thread_local std::string text;
  const std::time_t now = std::time(nullptr);
  if (now != made) {
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                  tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                  tm.tm_sec);
    text = buf;
    made = now;
  }
  return text;
}

// A response as the bytes that go on the wire, and its status (for the metrics).
struct Wire {
  std::string bytes;
  unsigned status = 0;
};

// Serializes a handler's response: the status line, Server, Date and Content-Type unless the
// handler set its own, the handler's fields (checked), the framing (Content-Length; none on
// 1xx, 204 and 304), Connection as keep_alive says, the body (none for HEAD). Throws what makes
// it unwritable: a status outside 100..999, a body where none may be, a bad or oversized field.
Wire to_wire(Response&& res, unsigned version, bool keep_alive, bool head) {
  using namespace std::string_view_literals;  // appended with their lengths, not strlen()
  if (res.status < 100 || res.status > 999)
    throw std::invalid_argument("status " + std::to_string(res.status) +
                                " is not an HTTP status code");
  const bool bodiless = res.status / 100 == 1 || res.status == 204 || res.status == 304;
  // No body, and no Content-Length either (RFC 9110 8.6: a 304's would have to be the
  // representation's, which the handler did not give).
  if (bodiless && !res.body.empty())
    throw std::invalid_argument("a " + std::to_string(res.status) + " response cannot have a body");
  bool own_server = false, own_date = false, own_type = false;
  std::size_t fields = 0;
  for (const auto& [name, value] : res.headers) {
    check_header(name, value);
    own_server = own_server || iequals(name, "server");
    own_date = own_date || iequals(name, "date");
    own_type = own_type || iequals(name, "content-type");
    fields += name.size() + value.size() + 4;
  }
  const auto reason_text = bhttp::obsolete_reason(static_cast<bhttp::status>(res.status));
  const std::string& date = http_date();
  Wire out;
  out.status = res.status;
  std::string& w = out.bytes;
  // Room for every part below (the fixed lines take under 200 bytes), written in place and cut
  // to size at the end.
  w.resize(256 + reason_text.size() + date.size() + fields + res.content_type.size() +
           (head ? 0 : res.body.size()));
  char* p = w.data();
  const auto put = [&p](std::string_view part) {
    std::memcpy(p, part.data(), part.size());
    p += part.size();
  };
  put(version == 10 ? "HTTP/1.0 "sv : "HTTP/1.1 "sv);
  *p++ = static_cast<char>('0' + res.status / 100);
  *p++ = static_cast<char>('0' + res.status / 10 % 10);
  *p++ = static_cast<char>('0' + res.status % 10);
  *p++ = ' ';
  put(std::string_view(reason_text.data(), reason_text.size()));
  put("\r\n"sv);
  if (!own_server) put("Server: tempest\r\n"sv);
  if (!own_date) {
    put("Date: "sv);
    put(date);
    put("\r\n"sv);
  }
  if (!own_type && !res.content_type.empty()) {
    check_header("content-type", res.content_type);
    put("Content-Type: "sv);
    put(res.content_type);
    put("\r\n"sv);
  }
  for (const auto& [name, value] : res.headers) {
    // The framing and the connection are this server's: a Transfer-Encoding a handler set
    // (gzip, say) would contradict the Content-Length (RFC 9112 6.1), and this server applies
    // no transfer coding.
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
        iequals(name, "connection"))
      continue;
    put(name);
    put(": "sv);
    put(value);
    put("\r\n"sv);
  }
  if (!bodiless) {
    put("Content-Length: "sv);
    p = std::to_chars(p, p + 24, res.body.size()).ptr;
    put("\r\n"sv);
  }
  if (version >= 11 && !keep_alive) put("Connection: close\r\n"sv);
  if (version < 11 && keep_alive) put("Connection: keep-alive\r\n"sv);
  put("\r\n"sv);
  if (!bodiless && !head) put(res.body);
  w.resize(static_cast<std::size_t>(p - w.data()));
  return out;
}

}  // namespace

// One thread's share of the server: its io_context (the App's own for the first), its listener
// on the shared port, and its idle connections. Only its own thread touches acceptor and idle.
struct Worker {
  asio::io_context* io = nullptr;
  std::optional<tcp::acceptor> acceptor;
  std::list<beast::tcp_stream*> idle;  // connections waiting for a request: closed on shutdown
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> keep;
  std::thread thread;
  std::atomic<bool> done{false};            // its thread returned from run()
  std::unique_ptr<asio::io_context> owned;  // the io_context of the workers after the first
};

struct App::Impl {
  asio::io_context& io;
  ServerOptions options;
  std::vector<Hook> startup, shutdown;
  std::vector<Middleware> middleware;
  std::vector<std::unique_ptr<Worker>> workers;
  asio::steady_timer stop_signal;  // on io only
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> in_flight{0};
  std::atomic<std::size_t> connections{0};
  std::mutex mutex;  // guards per_address, and connections' check-and-increment
  std::map<asio::ip::address, std::size_t> per_address;  // open connections by client address
  std::shared_ptr<spdlog::logger> log = tempest::logger("tempest.http");

  Impl(asio::io_context& ctx, ServerOptions o)
      : io(ctx), options(std::move(o)), stop_signal(ctx, Clock::time_point::max()) {}
  // Wakes serve() from any thread (it re-checks what it waits for).
  void wake() {
    asio::post(io, [this] { stop_signal.cancel(); });
  }
};

App::App(asio::io_context& io, ServerOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))),
      metrics_(std::make_shared<HttpMetrics>()) {}

App::~App() = default;

void App::on_startup(Hook hook) {
  impl_->startup.push_back(std::move(hook));
}
void App::on_shutdown(Hook hook) {
  impl_->shutdown.push_back(std::move(hook));
}

void App::stop() {
  impl_->stopping = true;
  impl_->wake();
}

App& App::use(Middleware middleware) {
  if (!middleware) throw std::invalid_argument("App::use: the middleware is empty");
  impl_->middleware.push_back(std::move(middleware));
  return *this;
}

asio::awaitable<Response> App::handle(Request& request) {
  // Routing splits the path as sent, then decodes each segment ("%2F" stays in its segment).
  // It comes before the middleware, which see the route; the answer comes after them.
  auto m = router_.match(request.method, request.target.substr(0, request.target.find('?')));
  if (m.bad_path || !m.handler) {
    // Labels stay bounded: a 405 is counted under the pattern its path matched.
    request.route = m.bad_path || m.allowed.empty() ? "(unmatched)" : m.route;
  } else {
    request.params = std::move(m.params);
    request.route = m.route;
  }
  if (impl_->middleware.empty()) co_return co_await run_route(request, m);
  std::string failure;
  try {
    co_return co_await step(request, m, 0);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  impl_->log->error("{} {}: a middleware failed: {}", request.method, request.route, failure);
  co_return Response::error(500, "Internal Server Error");
}

asio::awaitable<Response> Next::operator()(Request& request) const {
  return app_->step(request, *static_cast<const Router::Match*>(match_), index_);
}

asio::awaitable<Response> App::step(Request& request, const Router::Match& match,
                                    std::size_t index) const {
  if (index == impl_->middleware.size()) return run_route(request, match);
  return impl_->middleware[index](request, Next(this, &match, index + 1));
}

asio::awaitable<Response> App::run_route(Request& request, const Router::Match& m) const {
  if (m.bad_path)
    co_return Response::error(400, "Invalid path: a segment decodes to NUL or invalid UTF-8");
  if (!m.handler) {
    if (m.allowed.empty()) co_return Response::error(404, "Not Found");
    Response r = Response::error(405, "Method Not Allowed");
    std::string allow;
    for (const auto& a : m.allowed)
      allow += (allow.empty() ? "" : ", ") + a;
    r.headers["allow"] = allow;
    co_return r;
  }
  std::string failure;
  try {
    co_return co_await (*m.handler)(request);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  impl_->log->error("{} {} failed: {}", request.method, request.route, failure);
  co_return Response::error(500, "Internal Server Error");
}

namespace {

// Closes a connection and releases its counts however its coroutine ends (an exception
// included), and wakes a shutdown waiting for them: a response that cannot be written can never
// hold a max_connections slot or keep shutdown waiting.
class ConnectionGuard {
 public:
  ConnectionGuard(App::Impl& impl, Worker& worker, beast::tcp_stream& stream,
                  asio::ip::address from)
      : impl_(impl), worker_(worker), stream_(stream), from_(std::move(from)) {}
  ConnectionGuard(const ConnectionGuard&) = delete;
  ConnectionGuard& operator=(const ConnectionGuard&) = delete;
  ~ConnectionGuard() {
    if (in_flight_) --impl_.in_flight;
    busy();
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
    {
      std::lock_guard lock(impl_.mutex);
      --impl_.connections;
      if (auto it = impl_.per_address.find(from_);
          it != impl_.per_address.end() && --it->second == 0)
        impl_.per_address.erase(it);
    }
    if (impl_.stopping) impl_.wake();
  }
  // Waiting for a request (closed at once on shutdown), or not.
  void idle() { idle_ = worker_.idle.insert(worker_.idle.begin(), &stream_); }
  void busy() {
    if (idle_) worker_.idle.erase(*idle_);
    idle_.reset();
  }
  void begin_request() {
    in_flight_ = true;
    ++impl_.in_flight;
  }
  void end_request() {
    in_flight_ = false;
    if (--impl_.in_flight == 0 && impl_.stopping) impl_.wake();
  }

 private:
  App::Impl& impl_;
  Worker& worker_;
  beast::tcp_stream& stream_;
  asio::ip::address from_;
  bool in_flight_ = false;
  std::optional<std::list<beast::tcp_stream*>::iterator> idle_;
};

const char* reason(unsigned status) {
  switch (status) {
    case 431:
      return "Request Header Fields Too Large";
    case 413:
      return "Payload Too Large";
    case 501:
      return "Not Implemented";
    case 417:
      return "Expectation Failed";
    default:
      return "Bad Request";
  }
}

// The response to a request: the handler's, or a 500 when it cannot be written as it is (a body
// on a 204 or 304, a header that would split the response, one over Beast's size for a field).
Wire respond(App::Impl& impl, const Request& request, Response&& response, unsigned version,
             bool keep_alive, bool head) {
  try {
    return to_wire(std::move(response), version, keep_alive, head);
  } catch (const std::exception& e) {
    impl.log->error("{} {}: the response cannot be written ({}): 500 instead", request.method,
                    request.route, e.what());
  }
  return to_wire(Response::error(500, "Internal Server Error"), version, keep_alive, head);
}

// Whether the header at the start of `bytes` (complete or not) folds a line: a line that starts
// with SP or HTAB (obs-fold, RFC 9112 5.2). Beast would unfold it; this server refuses it (400),
// as a proxy in front that reads it otherwise would disagree about the request's framing.
bool folds_a_line(std::string_view bytes) {
  const auto end = bytes.find("\r\n\r\n");
  if (end != std::string_view::npos) bytes = bytes.substr(0, end + 2);
  for (auto at = bytes.find('\n'); at != std::string_view::npos && at + 1 < bytes.size();
       at = bytes.find('\n', at + 1))
    if (bytes[at + 1] == ' ' || bytes[at + 1] == '\t') return true;
  return false;
}

// bhttp::async_read_header, with the obs-fold check on the raw bytes first (Beast's parser takes
// a header once it is all in the buffer, so each check sees it whole before the parser does).
asio::awaitable<void> read_header(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                  bhttp::request_parser<bhttp::string_body>& parser,
                                  error_code& ec) {
  for (;;) {
    if (buffer.size() > 0) {
      const std::string_view bytes(static_cast<const char*>(buffer.data().data()), buffer.size());
      if (folds_a_line(bytes)) {
        ec = bhttp::error::bad_field;
        co_return;
      }
      buffer.consume(parser.put(buffer.data(), ec));
      if (ec != bhttp::error::need_more) co_return;  // the header, or what is wrong with it
      ec = {};
    }
    const std::size_t n = co_await stream.async_read_some(
        buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::eof)
      ec = buffer.size() == 0 ? bhttp::error::end_of_stream : bhttp::error::partial_message;
    if (ec) co_return;
    buffer.commit(n);
  }
}

// What an Expect field asks of a request with a body: 0 (none), 100 (100-continue: answer
// "100 Continue" first), or 417 for any other expectation (RFC 9110 10.1.1).
unsigned expectation(const bhttp::request<bhttp::string_body>& header) {
  const auto it = header.find(bhttp::field::expect);
  if (it == header.end()) return 0;
  std::string_view v = it->value();
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
    v.remove_suffix(1);
  return iequals(v, "100-continue") && header.version() >= 11 ? 100 : 417;
}

// After an error answer, the connection closes: first stop sending, then read and drop what
// the client still sends (a body over the limit, say; at most 1 MiB, for at most a second), so
// its TCP does not meet a reset that could discard the answer before it was read (RFC 9112 9.6).
asio::awaitable<void> linger(beast::tcp_stream& stream) {
  error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(std::chrono::seconds(1));
  std::array<char, 4096> scratch;
  for (std::size_t dropped = 0; !ec && dropped < (std::size_t{1} << 20);)
    dropped += co_await stream.async_read_some(asio::buffer(scratch),
                                               asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> session(App& app, App::Impl& impl, Worker& worker, tcp::socket socket,
                              asio::ip::address from) {
  beast::tcp_stream stream(std::move(socket));
  ConnectionGuard guard(impl, worker, stream, std::move(from));
  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(impl.options.max_header_bytes));
    parser.body_limit(impl.options.max_body_bytes);
    stream.expires_after(first ? impl.options.read_timeout : impl.options.idle_timeout);
    first = false;
    error_code ec;
    if (impl.stopping) break;
    guard.idle();
    co_await read_header(stream, buffer, parser, ec);
    guard.busy();
    // Oversized or malformed requests, and requests whose length cannot be known, get their 4xx
    // and the connection is closed; timeouts and clients that went away are just closed.
    unsigned status = ec ? 0 : framing_status(parser.get());
    if (!ec && status == 0 && !parser.is_done()) {  // the body
      status = expectation(parser.get());
      if (status == 100 && parser.content_length() &&
          *parser.content_length() > impl.options.max_body_bytes)
        status = 413;  // say so now, rather than ask for a body that will be refused
      if (status == 100) {
        // RFC 9110 10.1.1: the client waits for this before it sends the body.
        static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await asio::async_write(stream, asio::buffer(go_on.data(), go_on.size()),
                                   asio::redirect_error(asio::use_awaitable, ec));
        status = 0;
      }
      if (!ec && status == 0)
        co_await bhttp::async_read(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      if (ec == bhttp::error::header_limit)
        status = 431;
      else if (ec == bhttp::error::body_limit)
        status = 413;
      else if (ec != bhttp::error::end_of_stream && ec != beast::error::timeout &&
               ec != asio::error::operation_aborted && ec != asio::error::eof &&
               ec != asio::error::connection_reset &&
               ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
        status = 400;
    }
    if (ec || status != 0) {
      if (status != 0) {
        auto res = to_wire(Response::error(status, reason(status)), 11, false, false);
        stream.expires_after(std::chrono::seconds(5));
        co_await asio::async_write(stream, asio::buffer(res.bytes),
                                   asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) co_await linger(stream);
      }
      break;
    }
    guard.begin_request();
    const auto started = Clock::now();
    auto raw = parser.release();
    const unsigned version = raw.version();
    const bool wants_keep_alive = raw.keep_alive();
    const bool head = raw.method() == bhttp::verb::head;
    Request request = to_request(std::move(raw));
    Response response = co_await app.handle(request);
    const bool keep_alive = wants_keep_alive && !impl.stopping;
    auto out = respond(impl, request, std::move(response), version, keep_alive, head);
    app.metrics().observe(request.route, request.method, out.status, Clock::now() - started);
    stream.expires_after(impl.options.read_timeout);
    co_await asio::async_write(stream, asio::buffer(out.bytes),
                               asio::redirect_error(asio::use_awaitable, ec));
    guard.end_request();
    if (ec || !keep_alive) break;
  }
}

asio::awaitable<void> accept_loop(App& app, App::Impl& impl, Worker& worker) {
  std::chrono::milliseconds backoff{0};
  std::size_t failures = 0;  // accept() failures in a row
  for (;;) {
    error_code ec;
    tcp::socket socket =
        co_await worker.acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (impl.stopping || ec == asio::error::operation_aborted) co_return;
      // Out of file descriptors (EMFILE, ENFILE) or memory: accepting again at once would spin
      // on the same error. Wait, 10 ms doubling to 1 s, and log once per burst.
      if (failures++ == 0) impl.log->warn("accept failed: {}; backing off", ec.message());
      backoff = std::min(std::max(backoff * 2, std::chrono::milliseconds(10)),
                         std::chrono::milliseconds(1000));
      asio::steady_timer pause(*worker.io, backoff);
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (failures > 0) {
      impl.log->info("accepting again after {} failed accept(s)", failures);
      failures = 0;
      backoff = std::chrono::milliseconds(0);
    }
    const auto remote = socket.remote_endpoint(ec);
    bool admitted = false;
    if (!ec) {
      std::lock_guard lock(impl.mutex);
      const auto there = impl.per_address.find(remote.address());
      // Over a limit (or gone already): refused fast rather than queued.
      if (impl.connections < impl.options.max_connections &&
          (there == impl.per_address.end() ? 0 : there->second) <
              impl.options.max_connections_per_address) {
        ++impl.per_address[remote.address()];
        ++impl.connections;
        admitted = true;
      }
    }
    if (!admitted) {
      socket.close(ec);
      continue;
    }
    asio::co_spawn(*worker.io, session(app, impl, worker, std::move(socket), remote.address()),
                   asio::detached);
  }
}

// Runs `f` on the worker's own thread (at once for the first worker: serve() runs there).
template <class F>
void on_worker(App::Impl& impl, Worker& w, F f) {
  if (w.io == &impl.io)
    f();
  else
    asio::post(*w.io, std::move(f));
}

void close_idle(App::Impl& impl) {
  for (auto& w : impl.workers)
    on_worker(impl, *w, [&w = *w] {
      error_code ec;
      for (auto* s : w.idle)
        s->socket().cancel(ec);
    });
}

}  // namespace

asio::awaitable<void> App::serve() {
  Impl& impl = *impl_;
  for (auto& hook : impl.startup)
    co_await hook();
  unsigned threads = impl.options.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const auto address = asio::ip::make_address(impl.options.host);
  tcp::endpoint endpoint(address, impl.options.port);
  impl.workers.clear();
  for (unsigned i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    if (i == 0) {
      w->io = &impl.io;
    } else {
      w->owned = std::make_unique<asio::io_context>(1);
      w->io = w->owned.get();
    }
    // One listener per thread on one port: the kernel spreads new connections over them.
    w->acceptor.emplace(*w->io);
    w->acceptor->open(endpoint.protocol());
    w->acceptor->set_option(tcp::acceptor::reuse_address(true));
    if (threads > 1)
      w->acceptor->set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
    w->acceptor->bind(endpoint);
    w->acceptor->listen();
    endpoint.port(w->acceptor->local_endpoint().port());  // port 0: the others take the same
    impl.workers.push_back(std::move(w));
  }
  bound_port_ = endpoint.port();
  impl.log->info("listening on http://{}:{} ({} thread{})", impl.options.host, bound_port_.load(),
                 threads, threads == 1 ? "" : "s");
  for (auto& w : impl.workers) {
    asio::co_spawn(*w->io, accept_loop(*this, impl, *w), asio::detached);
    if (w->owned) {
      w->keep.emplace(w->io->get_executor());
      w->thread = std::thread([&impl, w = w.get()] {
        w->io->run();
        w->done = true;
        impl.wake();
      });
    }
  }
  accepting_ = true;

  error_code ec;
  while (!impl.stopping)
    co_await impl.stop_signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));

  // Graceful shutdown: stop accepting, close idle keep-alive connections, let requests in
  // flight finish (bounded), then run the shutdown hooks.
  accepting_ = false;
  for (auto& w : impl.workers)
    on_worker(impl, *w, [&w = *w] {
      error_code ignored;
      w.acceptor->close(ignored);
    });
  close_idle(impl);
  const auto deadline = Clock::now() + impl.options.shutdown_timeout;
  while (impl.connections > 0 && Clock::now() < deadline) {
    impl.stop_signal.expires_at(std::min(deadline, Clock::now() + std::chrono::milliseconds(50)));
    co_await impl.stop_signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    close_idle(impl);
  }
  if (impl.connections > 0)
    impl.log->warn("shutdown: {} connection(s) still open after {} ms", impl.connections.load(),
                   impl.options.shutdown_timeout.count());
  // The other threads end once their work is done, waited for here without blocking this
  // thread (their work may need it: a Redis reply, say), and stopped once the deadline passed;
  // what they leave is destroyed with their io_context.
  for (auto& w : impl.workers)
    w->keep.reset();
  const auto running = [&] {
    return std::any_of(impl.workers.begin(), impl.workers.end(),
                       [](const auto& w) { return w->owned && !w->done; });
  };
  while (running() && Clock::now() < deadline) {
    impl.stop_signal.expires_at(std::min(deadline, Clock::now() + std::chrono::milliseconds(20)));
    co_await impl.stop_signal.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  for (auto& w : impl.workers) {
    if (!w->owned) continue;
    w->io->stop();
    w->thread.join();
    w->acceptor.reset();
    w->owned.reset();
  }
  impl.workers.front()->acceptor.reset();
  for (auto& hook : impl.shutdown) {
    try {
      co_await hook();
    } catch (const std::exception& e) {
      impl.log->error("shutdown hook failed: {}", e.what());
    }
  }
  impl.log->info("stopped");
}

int App::run() {
  Impl& impl = *impl_;
  asio::signal_set signals(impl.io, SIGINT, SIGTERM);
  signals.async_wait([this](error_code ec, int sig) {
    if (ec) return;
    impl_->log->info("signal {}: shutting down", sig);
    stop();
  });
  int status = 0;
  asio::co_spawn(impl.io, serve(), [&](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& err) {
        impl.log->critical("startup failed: {}", err.what());
        std::fprintf(stderr, "startup failed: %s\n", err.what());
      }
      status = 1;
    }
    error_code ignored;
    signals.cancel(ignored);
    impl.io.stop();
  });
  impl.io.run();
  return status;
}

Handler with_client(cache::RedisManager& manager,
                    std::function<asio::awaitable<Response>(Request&, redis::Client)> handler) {
  return [&manager, handler = std::move(handler)](Request& req) -> asio::awaitable<Response> {
    auto client = manager.client_dependency();
    if (!client) co_return Response::error(503, "Redis client unavailable");
    co_return co_await handler(req, std::move(*client));
  };
}

}  // namespace tempest::http
