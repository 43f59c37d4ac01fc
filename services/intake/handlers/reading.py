"""Reading bodies without stalling the event loop, and JSON under intake's limits.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ocsea.runtime import safe_json
from services.intake.domain.deadline import Deadline, DeadlinePassed
from services.intake.domain.refusals import Refusal

T = TypeVar("T")

# Below this, reading a body costs less than handing it to a thread (a canonical report of a
# few KB is read in well under a millisecond).
INLINE_BYTES = 64 * 1024


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


@dataclass(frozen=True)
class JsonReader:
    """JSON from partners under intake's limits (`ocsea.runtime.safe_json`): what it refuses
    is a `Refusal` naming the place in the document."""

    max_depth: int = safe_json.DEFAULT_MAX_DEPTH
    max_int_digits: int = safe_json.DEFAULT_MAX_INT_DIGITS

    def read(self, document: str | bytes) -> Any:
        """One document (a batch row: the problem is the row's, in the parser's words)."""
        try:
            return safe_json.loads(
                document, max_depth=self.max_depth, max_int_digits=self.max_int_digits
            )
        except safe_json.JsonRefused as refused:
            status = 400 if refused.code in ("invalid_json", "invalid_encoding") else 422
            raise Refusal(status, refused.code, refused.message, refused.path or "body") from None

    def read_body(self, body: bytes) -> Any:
        """A request's whole body: the refusal says the body is at fault."""
        try:
            return self.read(body)
        except Refusal as refusal:
            message = f"the body is not acceptable JSON: {refusal.message}"
            raise Refusal(refusal.status, refusal.code, message, refusal.field) from None
