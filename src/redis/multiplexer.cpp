#include "tempest/redis/detail/multiplexer.hpp"

#include "tempest/redis/error.hpp"

namespace tempest::redis::detail {

std::string_view Request::name() const noexcept {
  if (!command_.empty()) return command_.name();
  return expected_ > 1 ? std::string_view("pipeline") : std::string_view("command");
}

void Multiplexer::add(RequestPtr r) {
  ++live_;
  queued_.push_back(std::move(r));
}

std::size_t Multiplexer::prepare_write(std::string& out) {
  std::size_t moved = 0;
  while (!queued_.empty()) {
    RequestPtr r = std::move(queued_.front());
    queued_.pop_front();
    if (r->done()) continue;  // cancelled before it was written: never sent
    if (r->raw_.empty()) {
      r->command_.append_to(out);
    } else {
      out += r->raw_;
    }
    r->state_ = Request::State::written;
    in_flight_.push_back(std::move(r));
    ++moved;
  }
  return moved;
}

void Multiplexer::on_reply(Reply reply) {
  if (in_flight_.empty()) throw ProtocolError("received a reply that no request was waiting for");
  Request& r = *in_flight_.front();
  ++front_replies_;
  const bool last = front_replies_ == r.expected_;
  if (!r.done()) {
    if (r.expected_ == 1) {
      complete(r, nullptr, std::move(reply));
    } else {
      r.collected_.push_back(std::move(reply));
      if (last) complete(r, nullptr, Reply::array(std::move(r.collected_)));
    }
  }
  if (last) {
    front_replies_ = 0;
    in_flight_.pop_front();
  }
}

bool Multiplexer::cancel(Request& r, std::exception_ptr error) {
  if (r.done()) return false;
  complete(r, std::move(error), Reply{});
  return true;
}

void Multiplexer::on_disconnect(std::exception_ptr error) {
  auto lost = std::move(in_flight_);
  in_flight_.clear();
  front_replies_ = 0;
  for (auto& r : lost)
    if (!r->done()) complete(*r, error, Reply{});
}

void Multiplexer::fail_all(std::exception_ptr error) {
  on_disconnect(error);
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& r : queued)
    if (!r->done()) complete(*r, error, Reply{});
}

void Multiplexer::complete(Request& r, std::exception_ptr error, Reply reply) {
  --live_;
  r.collected_.clear();
  r.finish(std::move(error), std::move(reply));
}

std::optional<Clock::time_point> Multiplexer::earliest_live() const {
  std::optional<Clock::time_point> best;
  for (const auto* q : {&queued_, &in_flight_})
    for (const auto& r : *q)
      if (!r->done() && (!best || r->deadline() < *best)) best = r->deadline();
  return best;
}

}  // namespace tempest::redis::detail
