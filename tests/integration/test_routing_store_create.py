"""A new task's record and indexes are written by one script on a real Redis: exactly what the
optimistic transaction writes, and nothing when the task exists already."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.routing.adapters.redis import RoutingStore, _Commands
from services.routing.domain.tasks import TaskState, fold
from testkit.routing_tasks import assigned_event

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(stack_env: dict[str, str]) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack_env["OCSEA_REDIS_URL"])
    try:
        yield client
    finally:
        for prefix in PREFIXES:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=10_000)]
            if keys:
                await client.delete(*keys)
        await client.aclose()


PREFIXES: list[str] = []


def store_on(redis: Redis) -> RoutingStore:
    PREFIXES.append(f"ocsea:test:create:{uuid.uuid4().hex}:")
    return RoutingStore(redis, prefix=PREFIXES[-1])


async def contents(redis: Redis, store: RoutingStore, task: TaskState) -> dict[str, object]:
    """The keys a task's first write touches (without the store's prefix), with their values."""
    commands = _Commands()
    store._write(commands, None, task)
    found: dict[str, object] = {}
    for _, key, _ in commands.items:
        kind = await redis.type(key)
        value: object
        if kind == b"string":
            value = await redis.get(key)
        elif kind == b"zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            value = await redis.hgetall(key)
        elif kind == b"set":
            value = sorted(await redis.smembers(key))
        else:
            value = kind
        found[key.removeprefix(store.prefix)] = value
    return found


async def test_a_new_task_is_written_as_the_transaction_writes_it(redis: Redis) -> None:
    scripted, transactional = store_on(redis), store_on(redis)
    event = assigned_event()
    new = fold(None, event)
    assert new is not None

    assert await scripted.apply(event) == new
    async with redis.pipeline(transaction=True) as pipe:
        transactional._write(pipe, None, new)
        await pipe.execute()

    written = await contents(redis, scripted, new)
    assert written == await contents(redis, transactional, new)
    # The record, its agency, case and role indexes, the unit's load, its timers, its figure.
    assert len(written) >= 7
    assert b"none" not in written.values()
    assert await scripted.get(new.task_id) == new
    assert await scripted.unit_load() == {new.unit_id: 1}


async def test_an_existing_task_is_not_written_again(redis: Redis) -> None:
    store = store_on(redis)
    event = assigned_event()
    first = await store.apply(event)
    assert first is not None
    before = await contents(redis, store, first)

    # Another writer's copy of the same event: nothing changes, the load is counted once.
    assert await store.apply(event) == first
    assert await store._create_new(fold(None, event)) is False  # type: ignore[arg-type]
    assert await contents(redis, store, first) == before
    assert await store.unit_load() == {first.unit_id: 1}
