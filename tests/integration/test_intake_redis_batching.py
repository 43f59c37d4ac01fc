"""The coalescing Redis client intake's hot path uses (`ocsea/runtime/redis_batching.py`), on
the real Redis: concurrent callers share round trips, and each gets exactly its own results
and its own errors, as if it had sent its commands alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ocsea.runtime.redis_batching import CoalescingRedis

pytestmark = pytest.mark.integration


class CountingRedis(CoalescingRedis):
    """Counts the shared round trips it sends."""

    shared_round_trips = 0

    async def _send(self, queued: list[Any]) -> None:
        self.shared_round_trips += 1
        await super()._send(queued)


@pytest.fixture
async def redis(stack_env: dict[str, str]) -> AsyncIterator[tuple[CountingRedis, str]]:
    """A client on the shared Redis, and a prefix of the test's own (every key the tests
    write expires within a minute)."""
    plain = Redis.from_url(stack_env["OCSEA_REDIS_URL"])
    try:
        yield CountingRedis(plain.connection_pool), f"ocsea:test:coalescing:{uuid.uuid4().hex}"
    finally:
        await plain.aclose()


async def test_concurrent_callers_share_round_trips_and_keep_their_own_results(
    redis: tuple[CountingRedis, str],
) -> None:
    client, prefix = redis

    async def caller(number: int) -> list[Any]:
        await client.set(f"{prefix}:{number}", number, ex=60)
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(f"{prefix}:{number}")
            pipe.get(f"{prefix}:{number}")
            pipe.hset(f"{prefix}:h{number}", mapping={"n": number})
            pipe.expire(f"{prefix}:h{number}", 60)
            results: list[Any] = await pipe.execute()
            return results

    callers = 200
    results = await asyncio.gather(*(caller(n) for n in range(callers)))
    assert results == [[n + 1, str(n + 1).encode(), 1, True] for n in range(callers)]
    # 400 round trips one by one; shared, far fewer.
    assert 0 < client.shared_round_trips < callers


async def test_an_error_is_only_its_callers(redis: tuple[CountingRedis, str]) -> None:
    client, prefix = redis
    await client.hset(f"{prefix}:hash", mapping={"a": 1})
    await client.expire(f"{prefix}:hash", 60)

    async def wrong() -> Any:
        return await client.incr(f"{prefix}:hash")  # not a number: WRONGTYPE

    async def wrong_in_pipeline() -> Any:
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(f"{prefix}:fine", 1, ex=60)
            pipe.incr(f"{prefix}:hash")
            return await pipe.execute()

    async def right(number: int) -> Any:
        return await client.set(f"{prefix}:ok{number}", number, ex=60, get=True)

    outcomes = await asyncio.gather(
        wrong(), wrong_in_pipeline(), *(right(n) for n in range(20)), return_exceptions=True
    )
    assert isinstance(outcomes[0], ResponseError)
    assert isinstance(outcomes[1], ResponseError)
    assert "Command # 2" in str(outcomes[1])  # named as a pipeline's error is
    assert outcomes[2:] == [None] * 20
    assert await client.get(f"{prefix}:fine") == b"1"  # the pipeline's other command ran


async def test_scripts_load_themselves_when_redis_does_not_know_them(
    redis: tuple[CountingRedis, str],
) -> None:
    client, _ = redis
    tag = uuid.uuid4().hex  # a script Redis has never seen
    script = client.register_script(f"return ARGV[1] .. '{tag}'")
    answers = await asyncio.gather(*(script(keys=[], args=[n]) for n in range(10)))
    assert answers == [f"{n}{tag}".encode() for n in range(10)]


async def test_a_transaction_keeps_its_own_connection(redis: tuple[CountingRedis, str]) -> None:
    client, prefix = redis
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(f"{prefix}:tx", 1, ex=60)
        pipe.incr(f"{prefix}:tx")
        assert await pipe.execute() == [True, 2]
    assert client.shared_round_trips == 0
