#!/usr/bin/python3
"""The Python original's documented @cached decorator, measured the way `tempest bench --mode
cached` measures tempest: warm hits of a function returning a 5-field dict from C concurrent
callers. Runs on Debian's python3-redis (redis.asyncio), python3-hiredis and python3-uvloop.

  python_cached.py --url URL --concurrency C --requests N [--keys K]

The decorator below follows the SDK's source (reference/python-sdk.md): key = key_prefix +
qualname + ":" + sha256(json.dumps({"args", "kwargs"}, separators=(",", ":"), default=str))[:32],
GET, json.loads on a hit; run, json.dumps, SET ... EX ttl on a miss.
"""
import argparse
import asyncio
import functools
import hashlib
import json
import time

import redis.asyncio as aioredis
import uvloop


def default_key_builder(qualname, args, kwargs):
    payload = json.dumps(
        {"args": list(args), "kwargs": {k: v for k, v in sorted(kwargs.items())}},
        separators=(",", ":"),
        default=str,
    )
    return f"{qualname}:{hashlib.sha256(payload.encode('utf-8')).hexdigest()[:32]}"


def cached(client, *, ttl=300, key_prefix="", serializer=json.dumps, deserializer=json.loads):
    def decorate(fn):
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            key = key_prefix + default_key_builder(fn.__qualname__, args, kwargs)
            raw = await client.get(key)
            if raw is not None:
                try:
                    return deserializer(raw)
                except (TypeError, ValueError):
                    pass
            result = await fn(*args, **kwargs)
            payload = serializer(result)
            if ttl > 0:
                await client.set(key, payload, ex=ttl)
            else:
                await client.set(key, payload)
            return result

        return wrapper

    return decorate


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--mode", choices=["cached", "stampede"], default="cached")
    a = parser.parse_args()
    client = aioredis.from_url(a.url, decode_responses=True)

    if a.mode == "stampede":  # C concurrent calls on one cold key of a 50 ms function
        runs = 0

        @cached(client, ttl=60, key_prefix="pybench:")
        async def slow(x):
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.05)
            return x

        cold = time.time_ns()
        start = time.perf_counter()
        await asyncio.gather(*(slow(cold) for _ in range(a.concurrency)))
        seconds = time.perf_counter() - start
        print(json.dumps({"mode": "python-stampede", "concurrency": a.concurrency, "function_runs": runs,
                          "seconds": round(seconds, 6)}))
        return

    @cached(client, ttl=300, key_prefix="pybench:")
    async def get_user_profile(user_id):
        return {"id": str(user_id), "name": "Ana", "email": "ana@example.com", "age": 37, "score": 9.5}

    keys = min(a.keys, a.requests)
    for k in range(keys):  # warm every key
        await get_user_profile(k)
    errors = 0

    async def worker(w, share):
        nonlocal errors
        for i in range(share):
            uid = (w + i * a.concurrency) % keys
            p = await get_user_profile(uid)
            if p["age"] != 37 or p["id"] != str(uid):
                errors += 1

    shares = [a.requests // a.concurrency + (1 if w < a.requests % a.concurrency else 0) for w in range(a.concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(worker(w, s) for w, s in enumerate(shares)))
    seconds = time.perf_counter() - start
    await client.aclose() if hasattr(client, "aclose") else await client.close()
    print(json.dumps({"mode": "python-cached", "concurrency": a.concurrency, "requests": a.requests,
                      "seconds": round(seconds, 6), "ops_per_sec": round(a.requests / seconds, 1),
                      "errors": errors}))


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
