#include "entry_format.hpp"

#include <boost/json/parse.hpp>
#include <cstdio>
#include <ctime>

namespace tempest::cli {

namespace {
constexpr std::string_view kNs = "__ns__:";
constexpr std::string_view kTag = "__tag__:";
constexpr std::string_view kPending = ":pending";
}  // namespace

namespace {
std::optional<RegistrySetName> parse_plain(std::string_view name) {
  const auto ns = name.find(kNs);
  const auto tag = name.find(kTag);
  if (ns == std::string_view::npos && tag == std::string_view::npos) return std::nullopt;
  RegistrySetName out;
  out.registry = std::string(name);
  if (tag == std::string_view::npos || (ns != std::string_view::npos && ns < tag)) {
    out.kind = RegistrySetName::Kind::ns;
    out.key_prefix = std::string(name.substr(0, ns));
    out.label = std::string(name.substr(ns + kNs.size()));
  } else {
    out.kind = RegistrySetName::Kind::tag;
    out.key_prefix = std::string(name.substr(0, tag));
    out.label = std::string(name.substr(tag + kTag.size()));
  }
  return out;
}
}  // namespace

std::optional<RegistrySetName> parse_registry_set(std::string_view redis_key) {
  // A pending set is named after the registry set it drains, as pending_set() names it.
  if (redis_key.ends_with(kPending)) {
    std::string_view base = redis_key.substr(0, redis_key.size() - kPending.size());
    if (base.size() >= 2 && base.front() == '{' && base.back() == '}' &&
        pending_set(base.substr(1, base.size() - 2)) == redis_key)
      base = base.substr(1, base.size() - 2);
    if (pending_set(base) == redis_key) {
      if (auto registry = parse_plain(base)) {
        registry->pending = true;
        return registry;
      }
    }
  }
  return parse_plain(redis_key);
}

// ---- rendering ------------------------------------------------------------------------------
std::optional<std::string> pretty_json(std::string_view text, int indent) {
  boost::json::parse_options options;
  options.max_depth = 10000;
  boost::system::error_code ec;
  (void)boost::json::parse(text, ec, {}, options);
  if (ec) return std::nullopt;
  // Valid JSON: re-indent the text itself, so that numbers and strings stay as they were written.
  std::string out;
  int depth = 0;
  const auto newline = [&] {
    out += '\n';
    out.append(static_cast<std::size_t>(depth * indent), ' ');
  };
  const auto next_token = [&](std::size_t i) {
    while (i < text.size() &&
           (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
      ++i;
    return i;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    switch (c) {
      case ' ':
      case '\t':
      case '\n':
      case '\r':
        break;
      case '"': {
        const std::size_t start = i++;
        while (text[i] != '"')
          i += text[i] == '\\' ? 2 : 1;
        out.append(text.substr(start, i - start + 1));
        break;
      }
      case '{':
      case '[': {
        const std::size_t j = next_token(i + 1);
        if (text[j] == (c == '{' ? '}' : ']')) {  // empty: {} or []
          out += c;
          out += text[j];
          i = j;
          break;
        }
        out += c;
        ++depth;
        newline();
        break;
      }
      case '}':
      case ']':
        --depth;
        newline();
        out += c;
        break;
      case ',':
        out += ',';
        newline();
        break;
      case ':':
        out += ": ";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string escaped_preview(std::string_view bytes, std::size_t max_bytes) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size() && i < max_bytes; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string utc_time(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

std::string seconds_text(std::int64_t ms) {
  char buf[64];
  if (ms > -1000 && ms < 1000)
    std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(ms));
  else
    std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(ms) / 1000.0);
  return buf;
}

}  // namespace tempest::cli
