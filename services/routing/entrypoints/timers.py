"""The clocks: loops that claim what is due (a task's SLA timers, a webhook's next attempt)
and hand each item to its use case (`SlaTimers.fire`, the dispatcher's `attempt`).

The loops only find due work; what firing a timer means is `handlers/timers.py`'s, and what
is due is `domain/tasks.py`'s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from ocsea.runtime.logging import get_logger
from ocsea.runtime.telemetry import untraced
from services.routing.ports import DueQueue

log = get_logger("ocsea.routing")

REQUEUE_EVERY_S = 1.0
"""How often items whose claimer died (their lease ran out) are put back to be claimed."""


class DueLoop:
    """Claims due members of a `DueQueue` and works on them concurrently, one worker per key
    (a task), so a slow item (a hanging webhook) never holds up the others."""

    def __init__(
        self,
        name: str,
        queue: DueQueue,
        work: Callable[[str], Awaitable[object]],
        *,
        interval_s: float,
        guard: Callable[[], Awaitable[None]] | None = None,
        batch: int = 500,
        concurrency: int = 64,
    ) -> None:
        self.name = name
        self._queue = queue
        self._work = work
        self._interval_s = interval_s
        self._guard = guard
        self._batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._run(), name=f"due-loop:{self.name}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self) -> None:
        last_requeue = 0.0
        while not self._stopping.is_set():
            try:
                # Polled every interval: only the work a poll finds is traced.
                with untraced():
                    if self._guard is not None:
                        await self._guard()
                    now = time.time()
                    if now - last_requeue >= REQUEUE_EVERY_S:
                        await self._queue.requeue_expired(now)
                        last_requeue = now
                    members = await self._queue.claim(now, self._batch)
                    head = None if members else await self._queue.next_due()
                if members:
                    await self._dispatch(members)
                    continue
                delay = self._interval_s if head is None else max(0.0, head - time.time())
                await self._pause(min(self._interval_s, delay))
            except Exception as exc:
                log.error("due_loop.failed", loop=self.name, error=f"{type(exc).__name__}: {exc}")
                await self._pause(self._interval_s)

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _dispatch(self, members: list[str]) -> None:
        groups: dict[str, list[str]] = {}
        for member in members:
            groups.setdefault(member.split("|", 1)[0], []).append(member)
        for key, group in groups.items():
            await self._slots.acquire()
            task = asyncio.create_task(self._one(key, group))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _one(self, key: str, members: list[str]) -> None:
        try:
            await self._work(key)
            await self._queue.done(members)
        except Exception as exc:
            # Left claimed: the lease runs out and the member is claimed again.
            log.error("due_loop.item_failed", loop=self.name, key=key, error=type(exc).__name__)
        finally:
            self._slots.release()
