// The command line of the reference clients bench/*_pingpong.cpp:
//   NAME PORT DEPTH REQUESTS VALUE_SIZE [options]
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <optional>

struct PingPongArgs {
  int port;
  long long depth;       // GETs per round trip
  long long requests;    // in all (a whole number of rounds is run)
  long long value_size;  // bytes of the value the key is given first
};

// argv[1..4] as PingPongArgs; on a wrong count (`arity_ok` false) or a bad value, prints the
// usage or what is wrong on stderr and returns nothing.
inline std::optional<PingPongArgs> pingpong_args(const char* name, const char* options,
                                                 bool arity_ok, char** argv) {
  if (!arity_ok) {
    std::fprintf(stderr, "usage: %s PORT DEPTH REQUESTS VALUE_SIZE%s%s\n", name,
                 *options ? " " : "", options);
    return std::nullopt;
  }
  long long v[4];
  for (int i = 0; i < 4; ++i) {
    char* end = nullptr;
    errno = 0;
    v[i] = std::strtoll(argv[i + 1], &end, 10);
    if (errno != 0 || end == argv[i + 1] || *end != '\0') {
      std::fprintf(stderr, "%s: '%s' is not a whole number\n", name, argv[i + 1]);
      return std::nullopt;
    }
  }
  if (v[0] < 1 || v[0] > 65535 || v[1] < 1 || v[2] < v[1] || v[3] < 0) {
    std::fprintf(stderr,
                 "%s: want 1 <= PORT <= 65535, DEPTH >= 1, REQUESTS >= DEPTH, VALUE_SIZE >= 0\n",
                 name);
    return std::nullopt;
  }
  return PingPongArgs{static_cast<int>(v[0]), v[1], v[2], v[3]};
}
