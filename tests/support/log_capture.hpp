// Captures what a tempest logger writes, for tests that assert on warnings.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <vector>

namespace tempest::test {

class LogCapture {
 public:
  explicit LogCapture(const std::string& logger_name) : name_(logger_name) {
    sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096);
    spdlog::drop(name_);
    auto logger = std::make_shared<spdlog::logger>(name_, sink_);
    logger->set_level(spdlog::level::trace);
    spdlog::register_logger(logger);
  }
  ~LogCapture() { spdlog::drop(name_); }

  std::vector<std::string> lines() const { return sink_->last_formatted(); }
  std::size_t count(const std::string& needle) const {
    std::size_t n = 0;
    for (const auto& l : lines())
      if (l.find(needle) != std::string::npos) ++n;
    return n;
  }

 private:
  std::string name_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

}  // namespace tempest::test
