"""A projection whose epoch marker is gone is rebuilt once, before anything else reads it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from redis.asyncio import Redis

from ocsea.runtime.projection import ProjectionGuard


class MemoryRedis:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value.encode()


def guard_over(redis: MemoryRedis, rebuilt: list[int]) -> ProjectionGuard:
    async def rebuild() -> int:
        await asyncio.sleep(0)  # a real rebuild awaits Kafka: let the other callers in
        rebuilt.append(len(rebuilt) + 1)
        return 7

    return ProjectionGuard(cast(Redis, cast(Any, redis)), "triage", rebuild, recheck_s=0.0)


async def test_a_missing_projection_is_rebuilt_once_however_many_wait_for_it() -> None:
    redis, rebuilt = MemoryRedis(), list[int]()
    guard = guard_over(redis, rebuilt)

    await asyncio.gather(*(guard.ensure() for _ in range(5)))

    assert rebuilt == [1]
    assert guard.rebuilds == 1
    assert "ocsea:projection:triage:epoch" in redis.values
    assert await guard.epoch() is not None


async def test_a_present_projection_is_left_alone_and_a_lost_one_rebuilt_again() -> None:
    redis, rebuilt = MemoryRedis(), list[int]()
    guard = guard_over(redis, rebuilt)
    await guard.ensure()
    await guard.ensure()
    assert rebuilt == [1]

    redis.values.clear()  # FLUSHALL
    await guard.ensure()

    assert rebuilt == [1, 2]
    assert guard.rebuilds == 2
