"""Reading bodies without stalling the event loop.

Every service that shares a process or a core with intake (and, under `ocsea run`, routing's
SLA timers) waits while intake's event loop is busy. Parsing is linear in the input (the
parsers, and every pattern applied to input, are), but a 2 MiB CyberTipline document or a
10 MiB batch is still tens or hundreds of milliseconds of CPU: those are read in a worker
thread, under a deadline that the readers themselves check as they go, so a document that
takes too long stops being read rather than running on unseen. Small bodies are read inline:
a thread hop costs more than they do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from services.intake.refusals import Refusal

T = TypeVar("T")

# Below this, reading a body costs less than handing it to a thread (a canonical report of a
# few KB is read in well under a millisecond).
INLINE_BYTES = 64 * 1024


class DeadlinePassed(Exception):  # noqa: N818 (a condition, not a fault)
    """Reading took longer than the request may."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic()

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise DeadlinePassed


def _too_costly(timeout_s: float) -> Refusal:
    return Refusal(
        413,
        "too_costly_to_read",
        f"the body takes longer than {timeout_s:g} s to read; send it in smaller parts",
        "body",
    )


async def read_beside_loop(read: Callable[[Deadline], T], *, size: int, timeout_s: float) -> T:
    """`read(deadline)`, inline for a small body, else in a worker thread; a `Refusal` (413)
    if the deadline passes."""
    deadline = Deadline.after(timeout_s)
    try:
        if size <= INLINE_BYTES:
            return read(deadline)
        # The reader stops itself at the deadline; the margin covers a last step in C.
        return await asyncio.wait_for(asyncio.to_thread(read, deadline), timeout_s + 1.0)
    except (DeadlinePassed, TimeoutError):
        raise _too_costly(timeout_s) from None
