#!/usr/bin/python3
"""The seed page's list_orders under the Python original's own @cached (the reference SDK's
source, loaded with its load_sdk.py), for the keyword-argument interop test.

  python_sdk_orders.py SDK_DIR URL USER_ID [fresh=false|fresh=true]
      -> calls list_orders(USER_ID) or list_orders(USER_ID, fresh=...) once and prints
         {"ran": <whether the function body ran>, "result": <what the call returned>}
"""
import asyncio
import json
import sys

sys.path.insert(0, sys.argv[1])
import load_sdk  # noqa: E402

cache = load_sdk.module("cache")
redis = cache.AsyncRedisManager(sys.argv[2])
ran = []


@cache.cached(redis, ttl=60)
async def list_orders(user_id: str, *, fresh: bool = False) -> list:
    ran.append(True)
    return [{"id": f"{user_id}-py", "total": 2.5}]


async def main() -> None:
    user_id = sys.argv[3]
    await redis.connect()
    if len(sys.argv) > 4:
        result = await list_orders(user_id, fresh=sys.argv[4] == "fresh=true")
    else:
        result = await list_orders(user_id)
    # (The SDK's disconnect() calls aclose(), which Debian's python3-redis 4.3 lacks.)
    await redis.client.close()
    print(json.dumps({"ran": bool(ran), "result": result}))


asyncio.run(main())
