// Arbitrary URLs: parse or throw ConfigError; a parsed password never shows in redacted().
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tempest/redis/config.hpp"
#include "tempest/redis/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string url(reinterpret_cast<const char*>(data), size);
  try {
    const auto c = tempest::redis::Config::from_url(url);
    // A leak would render the credentials as user:password@; redacted() must show user:***@.
    const std::string shown = c.redacted();
    const std::string after_scheme = shown.substr(shown.find("://") + 3);
    if (!c.password.empty() && c.password != "***" &&
        after_scheme.find(":" + c.password + "@") != std::string::npos)
      std::abort();
  } catch (const tempest::redis::ConfigError&) {
  }
  return 0;
}
