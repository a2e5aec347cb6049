#!/usr/bin/python3
"""The documentation page's app in Python, for the HTTP comparison: FastAPI + uvicorn +
redis.asyncio from Debian's packages, with the documented @cached on get_user_profile (the SDK's
decorator as in bench/python_cached.py) and a 20 ms simulated database read.

  REDIS_URL=... PORT=... [WORKERS=N] python_app.py
"""
import asyncio
import os
import sys

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_cached import cached  # noqa: E402

client = aioredis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True)
app = FastAPI()
NAMES = {"1": "Ana", "2": "Bruno"}


@cached(client, ttl=300, key_prefix="users:")
async def get_user_profile(user_id: str) -> dict:
    await asyncio.sleep(0.02)
    return {"id": user_id, "name": NAMES.get(user_id, f"User {user_id}")}


@app.get("/users/{user_id}")
async def read_user(user_id: str) -> dict:
    return await get_user_profile(user_id)


if __name__ == "__main__":
    # WORKERS=N: uvicorn --workers N (processes; each imports this module by name).
    workers = int(os.environ.get("WORKERS", "1"))
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
    uvicorn.run("python_app:app" if workers > 1 else app, host="127.0.0.1",
                port=int(os.environ.get("PORT", "8001")), log_level="warning", workers=workers,
                loop="uvloop", http="httptools" if __import__("importlib").util.find_spec("httptools") else "h11")
