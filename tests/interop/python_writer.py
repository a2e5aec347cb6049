#!/usr/bin/python3
"""A writer in another process, on Debian's python3-redis, for the near cache's coherence tests.

  python_writer.py URL PREFIX N   -> SETs PREFIX0 .. PREFIX{N-1} to a new JSON value, one at a
                                     time, and prints after each one returns:
                                     "<key> <time.monotonic_ns()>" (CLOCK_MONOTONIC, the clock
                                     of std::chrono::steady_clock on Linux)
"""
import json
import sys
import time

import redis


def main() -> None:
    url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    r = redis.Redis.from_url(url)
    out = []
    for i in range(n):
        key = f"{prefix}{i}"
        r.set(key, json.dumps({"id": str(i), "v": "python"}))
        out.append(f"{key} {time.monotonic_ns()}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
