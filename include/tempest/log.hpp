/// @file
/// tempest logs through spdlog loggers named by module: "tempest.redis", "tempest.cache",
/// "tempest.http". Register your own logger under one of these names (spdlog::register_logger)
/// before first use to route it elsewhere; otherwise a stderr logger is created on first use, at
/// spdlog's global level or the level named by the environment variable TEMPEST_LOG_LEVEL
/// (trace, debug, info, warn, error, off).
#pragma once

#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace tempest {

/// The logger `name` ("tempest.redis", "tempest.cache" or "tempest.http"): the one registered under
/// that name, else a new stderr logger (see the file's description).
std::shared_ptr<spdlog::logger> logger(const std::string& name);

}  // namespace tempest
