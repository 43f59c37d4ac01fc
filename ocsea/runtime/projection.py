"""Keeping a Redis projection of Kafka topics present.

Redis holds projections only: routing's tasks and timers, triage's case state, intake's
idempotency and status records. Kafka holds the events they are folded from. A projection
keeps an epoch marker in Redis, written once it has been built; its absence means Redis lost the
projection's data (a FLUSHALL, a restart from a missing or truncated file, a new Redis), and the
projection is rebuilt from the topics before anything reads or writes it again. Every event and
request passes `ensure()`, so a loss is noticed within `recheck_s` while the service runs, and
at start before any consumer takes a record.

A rebuild folds the topics up to their current end into Redis; what arrives later is the live
consumers' work. Rebuilds must be idempotent (folding an event twice changes nothing), since
several processes may notice a loss at the same time and each rebuild on its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.asyncio import Redis

from ocsea.runtime.logging import get_logger

log = get_logger("ocsea.projection")


class ProjectionLostError(ConnectionError):
    """A write found its projection's epoch marker gone (Redis lost its data a moment ago):
    nothing was written. An infrastructure error: the work is retried once the projection is
    rebuilt, and never acts on the lost state."""


# Writes a value only while the projection is present (KEYS[2], its epoch marker): checked
# and written in one atomic step, so a FLUSHALL cannot fall between the check and the write.
SET_NX_GET_WHILE_PRESENT = """
if redis.call('EXISTS', KEYS[2]) == 0 then
    return redis.error_reply('OCSEA_PROJECTION_LOST')
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2], 'GET')
"""


def epoch_key(name: str) -> str:
    """Where the projection called `name` keeps its epoch marker (unless it brings its own)."""
    return f"ocsea:projection:{name}:epoch"


def projection_lost(error: Exception) -> bool:
    return "OCSEA_PROJECTION_LOST" in str(error)


class EpochMarker(Protocol):
    """Where a projection says it is present (a Redis key beside its data)."""

    async def epoch(self) -> str | None: ...

    async def set_epoch(self, value: str) -> None: ...


class RedisEpoch:
    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    async def epoch(self) -> str | None:
        raw = await self._redis.get(self.key)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def set_epoch(self, value: str) -> None:
        await self._redis.set(self.key, value)


class ProjectionGuard:
    """Rebuilds a projection from Kafka when its epoch marker is missing."""

    def __init__(
        self,
        redis: Redis | None,
        name: str,
        rebuild: Callable[[], Awaitable[object]],
        *,
        recheck_s: float = 1.0,
        marker: EpochMarker | None = None,
    ) -> None:
        """The marker is `ocsea:projection:<name>:epoch` in `redis`, unless one is given."""
        if marker is None:
            if redis is None:
                raise ValueError("a projection guard needs a Redis or an epoch marker")
            marker = RedisEpoch(redis, epoch_key(name))
        self.name = name
        self.marker = marker
        self._rebuild = rebuild
        self._lock = asyncio.Lock()
        self.recheck_s = recheck_s
        self._present_until = 0.0
        self.rebuilds = 0

    async def epoch(self) -> str | None:
        return await self.marker.epoch()

    async def ensure(self) -> None:
        # Checked at most once per `recheck_s` while present: every event and request passes
        # here, and a lost projection is still noticed within that time.
        now = time.monotonic()
        if now < self._present_until:
            return
        if await self.marker.epoch() is not None:
            self._present_until = now + self.recheck_s
            return
        async with self._lock:
            if await self.marker.epoch() is not None:
                return
            started = time.monotonic()
            log.warning("projection.missing_rebuilding", projection=self.name)
            folded = await self._rebuild()
            await self.marker.set_epoch(uuid.uuid4().hex)
            self.rebuilds += 1
            log.info(
                "projection.rebuilt",
                projection=self.name,
                folded=folded if isinstance(folded, int | dict) else None,
                seconds=round(time.monotonic() - started, 2),
            )
