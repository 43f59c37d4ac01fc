"""Triage's per-case state in Redis (the `CaseState` port): the case's received reports, its
current result, the override in force, and the events published for each input (so a
redelivered input publishes the very same events again, and a restart keeps re-triage working).

Redis holds fast, rebuildable state: every value here is also on Kafka (`reports.received`
holds the inputs, `reports.triaged` the results, overrides and reclassifications), and
`restore` writes it back from there (`handlers.rebuild_state`) without overwriting anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from pydantic import TypeAdapter
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.lock import Lock

from contracts.events import Envelope, ReportReceivedData, ReportTriagedData, TriageOverrideInfo
from ocsea.runtime.projection import ProjectionLostError
from services.triage.domain.rebuild import RebuiltCase
from services.triage.ports import CaseSnapshot

_EVENTS = TypeAdapter(list[Envelope])

RESTORE_BATCH = 200
"""Cases written back per transaction by a rebuild."""


class RedisCaseState:
    def __init__(self, redis: Redis, *, lock_timeout_s: float, epoch_key: str) -> None:
        self._redis = redis
        self._lock_timeout_s = lock_timeout_s
        self._epoch_key = epoch_key

    @staticmethod
    def _key(case_id: uuid.UUID, part: str) -> str:
        return f"ocsea:triage:case:{case_id}:{part}"

    def lock(self, case_id: uuid.UUID) -> Lock:
        """One re-triage of a case at a time (a report and a supervisor's override may race)."""
        return self._redis.lock(
            self._key(case_id, "lock"),
            timeout=self._lock_timeout_s,
            blocking_timeout=self._lock_timeout_s,
        )

    async def take_report(self, case_id: uuid.UUID, received: ReportReceivedData) -> CaseSnapshot:
        """Add a received report to its case and read what re-triage needs, in one round
        trip (the caller holds the case's lock). Atomic with a check of the projection's
        epoch marker: state read a moment after Redis lost it is never acted on."""
        cause = f"report:{received.report_id}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(self._epoch_key)
            pipe.hexists(self._key(case_id, "published"), cause)
            pipe.hget(self._key(case_id, "outcomes"), cause)
            pipe.hsetnx(
                self._key(case_id, "reports"), str(received.report_id), received.model_dump_json()
            )
            pipe.hgetall(self._key(case_id, "reports"))
            pipe.get(self._key(case_id, "override"))
            pipe.get(self._key(case_id, "current"))
            present, published, outcome, _added, reports, override, current = await pipe.execute()
        if not present:
            raise ProjectionLostError("triage's case state is being rebuilt")
        return CaseSnapshot(
            published=bool(published),
            outcome=_EVENTS.validate_json(outcome) if outcome else None,
            reports=[ReportReceivedData.model_validate_json(v) for v in reports.values()],
            override=TriageOverrideInfo.model_validate_json(override) if override else None,
            current=ReportTriagedData.model_validate_json(current) if current else None,
        )

    async def reports(self, case_id: uuid.UUID) -> list[ReportReceivedData]:
        stored = await self._redis.hgetall(self._key(case_id, "reports"))
        return [ReportReceivedData.model_validate_json(v) for v in stored.values()]

    async def outcome(self, case_id: uuid.UUID, cause: str) -> list[Envelope] | None:
        """The events already produced for an input (`report:<id>` or `override:<id>`)."""
        stored = await self._redis.hget(self._key(case_id, "outcomes"), cause)
        return _EVENTS.validate_json(stored) if stored else None

    async def mark_published(self, case_id: uuid.UUID, cause: str) -> None:
        await self._redis.hset(self._key(case_id, "published"), cause, "1")

    async def record(
        self,
        case_id: uuid.UUID,
        cause: str,
        events: Sequence[Envelope],
        result: ReportTriagedData,
        override: TriageOverrideInfo | None = None,
        *,
        published: bool = False,
    ) -> None:
        """The input's events, the case's new current result and (if any) the new override,
        at once; history is appended, never rewritten."""
        async with self._redis.pipeline(transaction=True) as pipe:
            if published:
                pipe.hset(self._key(case_id, "published"), cause, "1")
            pipe.hset(
                self._key(case_id, "outcomes"),
                cause,
                _EVENTS.dump_json(list(events)),
            )
            pipe.set(self._key(case_id, "current"), result.model_dump_json())
            pipe.rpush(self._key(case_id, "history"), *[e.model_dump_json() for e in events])
            if override is not None:
                pipe.set(self._key(case_id, "override"), override.model_dump_json())
            await pipe.execute()

    async def current(self, case_id: uuid.UUID) -> ReportTriagedData | None:
        stored = await self._redis.get(self._key(case_id, "current"))
        return ReportTriagedData.model_validate_json(stored) if stored else None

    async def history(self, case_id: uuid.UUID) -> list[Envelope]:
        stored = await self._redis.lrange(self._key(case_id, "history"), 0, -1)
        return [Envelope.model_validate_json(s) for s in stored]

    async def restore(self, cases: Sequence[RebuiltCase]) -> None:
        """Write rebuilt cases, overwriting nothing: reports, outcomes and published marks are
        added where absent; the current result, the override and the history are set only
        where absent (a live handler's are newer). A batch of cases at a time, each batch
        one transaction, so no handler ever sees a case half restored."""
        for start in range(0, len(cases), RESTORE_BATCH):
            async with self._redis.pipeline(transaction=True) as pipe:
                for case in cases[start : start + RESTORE_BATCH]:
                    self._restore(pipe, case)
                await pipe.execute()

    def _restore(self, pipe: Pipeline, case: RebuiltCase) -> None:
        key = case.case_id
        for report in case.reports:
            pipe.hsetnx(self._key(key, "reports"), str(report.report_id), report.model_dump_json())
        for cause, events in case.outcomes.items():
            pipe.hsetnx(self._key(key, "outcomes"), cause, _EVENTS.dump_json(list(events)))
        for cause in case.published:
            pipe.hsetnx(self._key(key, "published"), cause, "1")
        if case.current is not None:
            pipe.set(self._key(key, "current"), case.current.model_dump_json(), nx=True)
        if case.override is not None:
            pipe.set(self._key(key, "override"), case.override.model_dump_json(), nx=True)
        if case.history:
            # A list has no set-if-absent: built aside, then renamed only if there is none.
            aside = self._key(key, "history:rebuilt")
            pipe.delete(aside)
            pipe.rpush(aside, *[e.model_dump_json() for e in case.history])
            pipe.renamenx(aside, self._key(key, "history"))
            pipe.delete(aside)
