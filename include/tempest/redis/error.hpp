/// @file
/// Errors raised by tempest::redis. Every message is safe to log: none ever contains a password.
#pragma once

#include <stdexcept>
#include <string>

namespace tempest::redis {

/// Base of every tempest::redis error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The connection is down, was lost while the request was in flight, or was closed by disconnect().
/// A request that fails with this error after it was written may or may not have been applied.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

/// The request's deadline passed (or its awaiting coroutine was cancelled) before a reply arrived.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// Redis answered with an error reply; what() is Redis's own text, e.g. "WRONGTYPE Operation ...".
class ServerError : public Error {
 public:
  using Error::Error;
};

/// The server sent bytes that are not valid RESP, or a reply of an unexpected type.
class ProtocolError : public Error {
 public:
  using Error::Error;
};

/// A configuration (usually a URL) is invalid; what() names the offending part.
class ConfigError : public Error {
 public:
  using Error::Error;
};

}  // namespace tempest::redis
