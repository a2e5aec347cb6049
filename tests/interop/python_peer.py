#!/usr/bin/python3
"""The Python side of the interop tests, on Debian's python3-redis.

  python_peer.py write URL NAME PREFIX ARGS_JSON VALUE_JSON [KWARGS_JSON]
                                                               -> prints the key it wrote
  python_peer.py read URL KEY                                  -> prints json.loads(value), sorted

The key is computed exactly as the Python SDK's default key builder does.
"""
import hashlib
import json
import sys

import redis


def sdk_key(name, prefix, args, kwargs=None):
    payload = json.dumps(
        {"args": list(args), "kwargs": {k: v for k, v in sorted((kwargs or {}).items())}},
        separators=(",", ":"),
        default=str,
    )
    return prefix + f"{name}:{hashlib.sha256(payload.encode('utf-8')).hexdigest()[:32]}"


def main():
    command, url = sys.argv[1], sys.argv[2]
    if "cluster=true" in url:
        # A Redis Cluster (tempest's ?cluster=true): redis-py's cluster client on the seed node.
        from redis.cluster import RedisCluster

        client = RedisCluster.from_url(url.split("?")[0])
    else:
        client = redis.Redis.from_url(url)
    if command == "write":
        name, prefix, args, value = sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), json.loads(sys.argv[6])
        kwargs = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}
        key = sdk_key(name, prefix, args, kwargs)
        client.set(key, json.dumps(value), ex=300)  # the SDK's default serializer and ttl
        print(key)
    elif command == "read":
        raw = client.get(sys.argv[3])
        print(json.dumps(json.loads(raw), sort_keys=True))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
