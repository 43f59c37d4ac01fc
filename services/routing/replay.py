"""Replaying a topic's envelopes from its beginning to its current end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from contracts.events import Envelope
from ocsea.runtime.topic_reader import read_to_end


async def replay(
    bootstrap: str,
    topic: str,
    handle: Callable[[Envelope], Awaitable[None]],
    *,
    within_s: float = 600.0,
) -> int:
    """Hand every envelope of `topic`, in partition order, to `handle`; returns how many.

    The end is fixed when the replay starts; what arrives later is the live consumers' work.
    Records that are not envelopes were dead-lettered by the consumers and are skipped here.
    """
    count = 0
    async for records in read_to_end(bootstrap, [topic], within_s=within_s):
        for record in records:
            try:
                envelope = Envelope.model_validate_json(record.value or b"")
            except ValidationError:
                continue
            await handle(envelope)
            count += 1
    return count
