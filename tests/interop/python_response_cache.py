#!/usr/bin/python3
"""One request through the Python SDK's own ResponseCacheMiddleware and RedisResponseCacheStore
(the reference source, loaded with its load_sdk.py) in a Starlette app, driven over ASGI without
a server, for the response-cache interop test. The app's route is GET /items/{id}, answering
{"id": <id>, "from": "python"}.

  python_response_cache.py SDK_DIR REDIS_URL METHOD TARGET [--vary NAME]... [--credentialed]
                           [--header NAME:VALUE]...
      -> prints {"ran": <whether the route ran>, "status": N, "headers": {name: value}, "body": text}
  python_response_cache.py --roundtrip < VALUE
      -> prints whether json.dumps(json.loads(VALUE)) gives VALUE back byte for byte
"""
import argparse
import asyncio
import json
import sys
from urllib.parse import unquote

if sys.argv[1:] == ["--roundtrip"]:
    value = sys.stdin.read()
    print("same" if json.dumps(json.loads(value)) == value else "different")
    sys.exit(0)

parser = argparse.ArgumentParser()
parser.add_argument("sdk")
parser.add_argument("url")
parser.add_argument("method")
parser.add_argument("target")
parser.add_argument("--vary", action="append", default=[])
parser.add_argument("--credentialed", action="store_true")
parser.add_argument("--header", action="append", default=[])
args = parser.parse_args()

sys.path.insert(0, args.sdk)
import load_sdk  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

rc = load_sdk.module("api.middlewares.response_cache")
ran = []


async def item(request):
    ran.append(True)
    return JSONResponse({"id": request.path_params["id"], "from": "python"})


async def main() -> None:
    client = aioredis.Redis.from_url(args.url)
    app = Starlette(
        routes=[Route("/items/{id}", item)],
        middleware=[
            Middleware(
                rc.ResponseCacheMiddleware,
                store=rc.RedisResponseCacheStore(client),
                ttl_seconds=60,
                vary=tuple(args.vary),
                cache_credentialed=args.credentialed,
            )
        ],
    )
    path, _, query = args.target.partition("?")
    headers = [(b"host", b"127.0.0.1")]
    for h in args.header:
        name, _, value = h.partition(":")
        headers.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": args.method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
    }
    requested = []
    forever = asyncio.Event()

    async def receive():
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await forever.wait()  # no disconnect: cancelled when the response is done

    messages = []

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    await client.close()
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    print(
        json.dumps(
            {
                "ran": bool(ran),
                "status": start["status"],
                "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]},
                "body": body.decode("latin-1"),
            }
        )
    )


asyncio.run(main())
