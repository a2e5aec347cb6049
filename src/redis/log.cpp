#include "tempest/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <mutex>

namespace tempest {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (auto existing = spdlog::get(name)) return existing;
  auto created = spdlog::stderr_color_mt(name);
  created->set_level(spdlog::get_level());
  // TEMPEST_LOG_LEVEL=debug (trace, debug, info, warn, error, off) for loggers made here.
  if (const char* level = std::getenv("TEMPEST_LOG_LEVEL"))
    created->set_level(spdlog::level::from_str(level));
  return created;
}

}  // namespace tempest
