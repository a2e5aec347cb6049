/// @file
/// Client-side caching support (Redis CLIENT TRACKING, RESP2 REDIRECT mode). A client that tracks
/// has Redis remember the keys it reads and report each one that changes afterwards (written by
/// anyone, expired, evicted) on an invalidation connection of its own: one per server it reads
/// from (per node of a cluster). Client::track() turns it on; what Redis reports goes to an
/// InvalidationSink. The near cache of tempest::cache is built on it.
///
/// Under RESP2 Redis says nothing when the report path breaks (the invalidation connection or a
/// data connection is lost, a cluster's slots move): the client notices and calls reset(); reads
/// are tracked again only after every connection has been told the new invalidation connection,
/// which armed() announces.
#pragma once

#include <string_view>

namespace tempest::redis {

/// Called from the client's connections, on their threads, while they hold their locks: every
/// call must be quick, must not throw, and must never call back into the Client.
class InvalidationSink {
 public:
  virtual ~InvalidationSink() = default;
  /// `key` changed (or expired, or was evicted) after this client read it.
  virtual void invalidate(std::string_view key) noexcept = 0;
  /// Every key changed (FLUSHDB / FLUSHALL, or a cluster's slots moved); tracking goes on.
  virtual void invalidate_all() noexcept = 0;
  /// Tracking broke: changes since some moment were not reported. Forget everything read so far
  /// and trust no read until armed().
  virtual void reset() noexcept = 0;
  /// Reads from now on are tracked: changes to what they return will be reported.
  virtual void armed() noexcept = 0;
};

}  // namespace tempest::redis
