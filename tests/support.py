"""Test helpers: waiting on conditions with deadlines, and reading Kafka directly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ocsea.runtime import topic_reader

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = 15.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what}; last value: {last!r}")


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return await topic_reader.end_offsets(bootstrap, topic)


async def read_all(bootstrap: str, topic: str, *, within: float = 10.0) -> list[Any]:
    """Every record in a topic up to its current end (no consumer group, nothing committed)."""
    try:
        return [
            record
            async for batch in topic_reader.read_to_end(bootstrap, [topic], within_s=within)
            for record in batch
        ]
    except topic_reader.TopicReadTimeoutError as exc:
        raise AssertionError(str(exc)) from exc
