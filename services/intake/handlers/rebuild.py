"""Rebuilding intake's state from Kafka when Redis lost it (`domain.rebuild` says what is
folded, and why).

Run by the projection guard (`ProjectionCheck`) at start and before any request or event
once its epoch marker is gone. It reads intake's own events and the progress topics to their
end as of now, opens each recent report's sealed part to derive its keyed fingerprint and
identifier hashes again, and writes what is absent: replicas that notice the loss together
each rebuild, and none overwrites what another (or a live request) wrote meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from contracts.events import EncryptedBlob
from services.intake.domain.matching import Matcher
from services.intake.domain.rebuild import (
    EVENT_TYPES,
    PROGRESS_TOPICS,
    RECEIVED_TOPICS,
    StateFold,
    Windows,
)
from services.intake.ports import (
    CaseNotKnown,
    Clock,
    EventHistory,
    SealedOpener,
    StateRestore,
)


@dataclass
class StateRebuild:
    history: EventHistory
    opener: SealedOpener
    restore: StateRestore
    matcher: Matcher
    windows: Windows
    clock: Clock
    open_concurrency: int

    async def __call__(self) -> dict[str, int]:
        fold = StateFold(self.matcher, self.windows, self.clock.now())
        gate = asyncio.Semaphore(self.open_concurrency)

        async def opened(case_id: uuid.UUID, blob: EncryptedBlob) -> bytes | CaseNotKnown | None:
            async with gate:
                try:
                    return await self.opener.open(case_id, blob)
                except CaseNotKnown as exc:
                    return exc

        async for batch in self.history.read([*RECEIVED_TOPICS, *PROGRESS_TOPICS], EVENT_TYPES):
            sealed = [fold.sealed(recorded) for recorded in batch]
            parts = iter(await asyncio.gather(*(opened(*s) for s in sealed if s is not None)))
            for recorded, part in zip(batch, sealed, strict=True):
                personal = next(parts) if part is not None else None
                if isinstance(personal, CaseNotKnown):
                    fold.foreign += 1  # another deployment's report: none of its state
                else:
                    fold.add(recorded, personal)
        await self.restore.restore(fold.state())
        return fold.counts()
