#include "tempest/redis/detail/reader.hpp"

#include <hiredis/read.h>

#include <algorithm>
#include <new>
#include <string>

#include "tempest/redis/error.hpp"

namespace tempest::redis::detail {
namespace {

// Arrays larger than this are refused; it bounds the memory a hostile peer can make us reserve up
// front (elements are still appended one by one, so real large replies are fine below it).
constexpr int kMaxArrayElements = 1 << 28;

// The root of each reply lives in the reader's own slot (redisReader::privdata, copied by hiredis
// into the root task); nested values live inside their parent's element vector. hiredis builds
// depth first, so growing a parent's vector only moves finished siblings. Parsing allocates
// nothing beyond the reply's own strings and arrays.
Reply* place(const redisReadTask* task, Reply&& value) noexcept {
  try {
    if (task->parent == nullptr) {
      auto* root = static_cast<Reply*>(task->privdata);
      *root = std::move(value);
      return root;
    }
    auto* parent = static_cast<Reply*>(task->parent->obj);
    auto& elems = parent->elements();
    if (static_cast<std::size_t>(task->idx) != elems.size()) return nullptr;  // never out of order
    elems.push_back(std::move(value));
    return &elems.back();
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

void* create_string(const redisReadTask* task, char* str, size_t len) {
  std::string s(str, len);
  switch (task->type) {
    case REDIS_REPLY_ERROR:
      return place(task, Reply::error(std::move(s)));
    case REDIS_REPLY_STATUS:
      return place(task, Reply::status(std::move(s)));
    default:
      return place(task, Reply::string(std::move(s)));
  }
}

void* create_array(const redisReadTask* task, int elements) {
  if (elements < 0 || elements > kMaxArrayElements) return nullptr;
  std::vector<Reply> v;
  try {
    v.reserve(static_cast<std::size_t>(std::min(elements, 1024)));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
  return place(task, Reply::array(std::move(v)));
}

void* create_integer(const redisReadTask* task, long long value) {
  return place(task, Reply::integer(value));
}

void* create_nil(const redisReadTask* task) {
  return place(task, Reply::nil());
}

// hiredis frees only roots (on errors and in redisReaderFree), and roots live in the reader's
// slot: resetting it releases what the partial reply held.
void free_object(void* obj) {
  *static_cast<Reply*>(obj) = Reply{};
}

redisReplyObjectFunctions kFunctions = {create_string, create_array, create_integer, create_nil,
                                        free_object};

}  // namespace

ReplyReader::ReplyReader() {
  reset();
}

ReplyReader::~ReplyReader() {
  if (reader_ != nullptr) redisReaderFree(reader_);
}

void ReplyReader::reset() {
  if (reader_ != nullptr) redisReaderFree(reader_);
  reader_ = redisReaderCreateWithFunctions(&kFunctions);
  if (reader_ == nullptr) throw std::bad_alloc();
  root_ = Reply{};
  reader_->privdata = &root_;
}

void ReplyReader::feed(const char* data, std::size_t size) {
  if (reader_->err != 0) throw ProtocolError(std::string("RESP parse error: ") + reader_->errstr);
  if (redisReaderFeed(reader_, data, size) != REDIS_OK)
    throw ProtocolError(std::string("RESP parse error: ") + reader_->errstr);
}

std::optional<Reply> ReplyReader::next() {
  if (reader_->err != 0) throw ProtocolError(std::string("RESP parse error: ") + reader_->errstr);
  void* out = nullptr;
  if (redisReaderGetReply(reader_, &out) != REDIS_OK)
    throw ProtocolError(std::string("RESP parse error: ") + reader_->errstr);
  if (out == nullptr) return std::nullopt;
  return std::move(*static_cast<Reply*>(out));
}

}  // namespace tempest::redis::detail
