"""Live work first, within a process that runs both lanes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class LaneGate:
    """Live work first, within a process: a bulk-lane record starts only while no live-lane
    batch is being handled. The lanes' topics already keep a bulk backlog out of the live
    partitions; this keeps it off the live records' share of the process's CPU too."""

    def __init__(self) -> None:
        self._live = 0
        self._no_live = asyncio.Event()
        self._no_live.set()

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        self._live += 1
        self._no_live.clear()
        try:
            yield
        finally:
            self._live -= 1
            if self._live == 0:
                self._no_live.set()

    async def bulk_turn(self) -> None:
        await self._no_live.wait()
