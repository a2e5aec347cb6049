// Asio's completion-token convention for requests: the caller's handler (from use_awaitable,
// use_future, deferred, a callback...) is stored in the request; the connection completes it on
// the handler's executor after its own step. Small template code over the compiled core.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <optional>
#include <type_traits>

#include "tempest/redis/detail/request.hpp"

namespace tempest::redis::detail {

class Backend;
// Hands `r` (its reference) to the connection (or cluster).
void submit(Backend& backend, RequestRef r);
// Cancels `r` if it is still pending (from any thread).
void cancel(const std::weak_ptr<Backend>& backend, Request* r) noexcept;

template <class T>
struct CompletionSignature {
  using type = void(std::exception_ptr, T);
};
template <>
struct CompletionSignature<void> {
  using type = void(std::exception_ptr);
};

// Invokes `h(v...)` on its associated executor: here and now when `inline_ok` and that executor
// is an io_context running on this thread (what asio::dispatch would do, without its type-erased
// allocation), otherwise dispatched (inline_ok) or posted to it.
template <class Handler, class... V>
void invoke_on_executor(Handler&& h, const boost::asio::any_io_executor& fallback, bool inline_ok,
                        V&&... v) {
  namespace asio = boost::asio;
  auto ex = asio::get_associated_executor(h, fallback);
  using Ex = decltype(ex);
  using Io = asio::io_context::executor_type;
  if (inline_ok) {
    bool here = false;
    if constexpr (std::is_same_v<Ex, asio::any_io_executor>) {
      const Io* io = ex.template target<Io>();
      here = io != nullptr && io->running_in_this_thread();
    } else if constexpr (std::is_same_v<Ex, Io>) {
      here = ex.running_in_this_thread();
    }
    if (here) {
      std::move(h)(std::forward<V>(v)...);
      return;
    }
    asio::dispatch(ex, [h = std::move(h), ... v = std::forward<V>(v)]() mutable {
      std::move(h)(std::move(v)...);
    });
    return;
  }
  asio::post(ex, [h = std::move(h), ... v = std::forward<V>(v)]() mutable {
    std::move(h)(std::move(v)...);
  });
}

template <class Handler, class T>
struct HandlerOps {
  static constexpr bool kInline = sizeof(Handler) <= Request::kInlineHandler &&
                                  alignof(Handler) <= alignof(std::max_align_t) &&
                                  std::is_nothrow_move_constructible_v<Handler>;

  static Handler* get(Request* r) noexcept {
    if constexpr (kInline) {
      return std::launder(reinterpret_cast<Handler*>(r->handler_storage()));
    } else {
      return static_cast<Handler*>(r->heap_handler_);
    }
  }

  static void store(Request* r, Handler&& h) {
    if constexpr (kInline) {
      ::new (r->handler_storage()) Handler(std::move(h));
    } else {
      r->heap_handler_ = new Handler(std::move(h));
    }
    r->deliver_ = &deliver;
    r->destroy_ = &destroy;
  }

  static void destroy(Request* r) noexcept {
    Handler* h = get(r);
    if constexpr (kInline) {
      h->~Handler();
    } else {
      delete h;
      r->heap_handler_ = nullptr;
    }
    r->deliver_ = nullptr;
    r->destroy_ = nullptr;
  }

  static void deliver(Request* r, const boost::asio::any_io_executor& fallback, bool inline_ok) {
    Handler h(std::move(*get(r)));
    destroy(r);
    std::exception_ptr e = std::move(r->error_);
    const auto convert = reinterpret_cast<T (*)(Reply &&)>(r->convert_);
    if constexpr (std::is_void_v<T>) {
      if (!e && convert != nullptr) {
        try {
          convert(std::move(r->reply_));
        } catch (...) {
          e = std::current_exception();
        }
      }
      r->release();  // before the upcall: the caller may submit again at once
      invoke_on_executor(std::move(h), fallback, inline_ok, std::move(e));
    } else {
      const auto produce = [&]() -> T {
        if (!e) {
          try {
            return convert(std::move(r->reply_));
          } catch (...) {
            e = std::current_exception();
          }
        }
        return T{};
      };
      T value = produce();
      r->release();
      invoke_on_executor(std::move(h), fallback, inline_ok, std::move(e), std::move(value));
    }
  }
};

template <class T, class Handler>
void Request::set_handler(Handler&& h, T (*convert)(Reply&&)) {
  using H = std::decay_t<Handler>;
  convert_ = reinterpret_cast<void (*)()>(convert);
  H local(std::forward<Handler>(h));
  HandlerOps<H, T>::store(this, std::move(local));
}

// What a cancellation slot runs: cancels the request wherever it is (from any thread).
struct CancelRequest {
  std::weak_ptr<Backend> link;
  RequestRef request;
  void operator()(boost::asio::cancellation_type type) const noexcept {
    if (type != boost::asio::cancellation_type::none) cancel(link, request.get());
  }
};

// A request on its way to its initiation. Move-only, so that an operation can be initiated only
// once: an asio::deferred operation can be invoked as an rvalue only (invoking a copy would
// submit the same request twice).
class NewRequest {
 public:
  explicit NewRequest(RequestRef r) noexcept : r_(std::move(r)) {}
  NewRequest(NewRequest&&) noexcept = default;
  NewRequest& operator=(NewRequest&&) noexcept = default;
  NewRequest(const NewRequest&) = delete;
  NewRequest& operator=(const NewRequest&) = delete;
  ~NewRequest() = default;
  RequestRef take() noexcept { return std::move(r_); }

 private:
  RequestRef r_;
};

// The initiation of every request: stores the handler, hooks up cancellation, submits.
template <class T>
struct Initiation {
  std::shared_ptr<Backend> link;
  T (*convert)(Reply&&);

  template <class Handler>
  void operator()(Handler&& handler, NewRequest request) const {
    RequestRef r = request.take();
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.template emplace<CancelRequest>(CancelRequest{link, r});
    r->template set_handler<T>(std::forward<Handler>(handler), convert);
    submit(*link, std::move(r));
  }
};

}  // namespace tempest::redis::detail
