#!/usr/bin/python3
"""A tagged entry written by the Python original's own @cached (the reference SDK's source, loaded
with its load_sdk.py), for the `tempest inspect` interop test.

  python_sdk_tagged.py SDK_DIR URL KEY_PREFIX USER_ID
      -> calls get_user_profile(USER_ID) once under
         @cached(redis, ttl=120, key_prefix=KEY_PREFIX, namespace="profiles",
                 tags=lambda args, kwargs: [f"user:{args[0]}", "profiles-all"])
         and prints the entry's key, then the registry sets the SDK names for it, one a line
"""
import asyncio
import sys

sys.path.insert(0, sys.argv[1])
import load_sdk  # noqa: E402

cache = load_sdk.module("cache")
decorator = load_sdk.module("cache.decorator")
invalidation = load_sdk.module("cache.invalidation")
url, key_prefix, user_id = sys.argv[2], sys.argv[3], sys.argv[4]
redis = cache.AsyncRedisManager(url)


@cache.cached(redis, ttl=120, key_prefix=key_prefix, namespace="profiles",
              tags=lambda args, kwargs: [f"user:{args[0]}", "profiles-all"])
async def get_user_profile(user_id: str) -> dict:
    return {"id": user_id, "name": "Py", "roles": ["admin", "ops"], "score": 9.5}


async def main() -> None:
    await redis.connect()
    await get_user_profile(user_id)
    # (The SDK's disconnect() calls aclose(), which Debian's python3-redis 4.3 lacks.)
    await redis.client.close()
    print(key_prefix + decorator._default_key_builder(get_user_profile.__wrapped__.__qualname__,
                                                      (user_id,), {}))
    print(invalidation.namespace_registry_key(key_prefix, "profiles"))
    print(invalidation.tag_registry_key(key_prefix, f"user:{user_id}"))
    print(invalidation.tag_registry_key(key_prefix, "profiles-all"))


asyncio.run(main())
