"""Routing's Redis state: a projection of the Kafka task events, rebuildable at any time.

- a record per task (its folded state) and indexes: per agency, per case, per case and role,
  per escalation target; the open-task load per unit;
- the SLA timers: one sorted set of `task|timer` members scored by due time, always equal to
  `pending_timers(state)` of every task, since both are written in the same transaction;
- the cases' received reports (personal data still sealed) and latest triage result;
- an epoch marker: its absence means Redis lost routing's state, which is then rebuilt;
- each task in the set of its figure (`figures.py`: status, priority, agency type, SLA state),
  so the gauges of tasks by state read set sizes instead of every task.

Every task event goes through `apply`, whoever sees it first (the writer, the projection
consumer, a rebuild): it folds the event into the stored state under optimistic locking (a
new task's record and indexes in one script, only if the record is still absent), so applying
an event twice, or an old one after a newer one, changes nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError, WatchError

from contracts.events import AgencyType, Envelope, ReportReceivedData
from ocsea.runtime.projection import (
    SET_NX_GET_WHILE_PRESENT,
    ProjectionLostError,
    projection_lost,
)
from services.routing.domain.figures import figure_of
from services.routing.domain.tasks import TaskState, fold, pending_timers
from services.routing.ports import CaseTriage, LockTimeoutError

_CLAIM = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(items) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[2], ARGV[3], member)
end
return items
"""

# Claimed members whose lease ran out (their claimer died) go back to be claimed again.
_REQUEUE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, member in ipairs(items) do
  redis.call('ZREM', KEYS[2], member)
  redis.call('ZADD', KEYS[1], 'NX', ARGV[1], member)
end
return #items
"""

# A new task's record and its indexes, only if the record does not exist yet: one round trip
# instead of an optimistic transaction's four. ARGV: the record, then per further key its
# command as (number of arguments, command, arguments...).
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
local at = 2
for k = 2, #KEYS do
  local count = tonumber(ARGV[at])
  local args = {}
  for j = 1, count do args[j] = ARGV[at + 1 + j] end
  redis.call(ARGV[at + 1], KEYS[k], unpack(args))
  at = at + 2 + count
end
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DueQueue:
    """A sorted set of due items that several workers claim atomically, with a lease."""

    def __init__(self, redis: Redis, key: str, lease_s: float = 30.0) -> None:
        self._redis = redis
        self.key = key
        self.inflight_key = key + ":inflight"
        self._lease_s = lease_s
        self._claim = redis.register_script(_CLAIM)
        self._requeue = redis.register_script(_REQUEUE)

    async def claim(self, now: float, limit: int) -> list[str]:
        items = await self._claim(
            keys=[self.key, self.inflight_key], args=[now, limit, now + self._lease_s]
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in items]

    async def done(self, members: Iterable[str]) -> None:
        members = list(members)
        if members:
            await self._redis.zrem(self.inflight_key, *members)

    async def requeue_expired(self, now: float) -> int:
        return int(await self._requeue(keys=[self.key, self.inflight_key], args=[now]))

    async def schedule(self, member: str, at: float) -> None:
        await self._redis.zadd(self.key, {member: at})

    async def next_due(self) -> float | None:
        head: list[Any] = await self._redis.zrange(self.key, 0, 0, withscores=True)
        return float(head[0][1]) if head else None

    async def size(self) -> int:
        return int(await self._redis.zcard(self.key))


# The layout's version is part of the prefix: a new layout starts empty and is rebuilt from
# Kafka, never misreading the records of the old one.
DEFAULT_PREFIX = "ocsea:routing:v2:"
BACKFILL_LEASE_S = 60
"""How long a process's claim on putting old tasks in their figure sets lasts unrenewed."""
TRACE_CONTEXT_TTL_S = 30 * 86400
"""How long an assignment's trace context is kept for the work it sets off later: longer than
the last escalation step of the slowest priority, well past any trace store's retention."""


class RoutingStore:
    """The tasks' projection (`TaskStore`, `ProjectionStore`) and the cases' reports and
    triage (`CaseStore`), in Redis."""

    def __init__(self, redis: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix
        self.timers = DueQueue(redis, prefix + "timers")
        self.deliveries = DueQueue(redis, prefix + "deliveries")
        self._unlock = redis.register_script(_UNLOCK)
        self._create = redis.register_script(_CREATE)

    # ------------------------------------------------------------------ keys

    def task_key(self, task_id: uuid.UUID | str) -> str:
        return f"{self.prefix}task:{task_id}"

    def agency_key(self, agency_id: str) -> str:
        return f"{self.prefix}agency-tasks:{agency_id}"

    def escalated_key(self, agency_id: str) -> str:
        return f"{self.prefix}escalated-to:{agency_id}"

    def case_key(self, case_id: uuid.UUID) -> str:
        return f"{self.prefix}case-tasks:{case_id}"

    def role_key(self, case_id: uuid.UUID, role: AgencyType) -> str:
        return f"{self.prefix}case-role:{case_id}:{role.value}"

    @property
    def load_key(self) -> str:
        return f"{self.prefix}unit-load"

    @property
    def epoch_key(self) -> str:
        return f"{self.prefix}epoch"

    @property
    def figures_key(self) -> str:
        """Every figure a task ever stood at (the gauges show a figure's zero too)."""
        return f"{self.prefix}figures"

    def figure_key(self, figure: str) -> str:
        return f"{self.prefix}figure:{figure}"

    def trace_context_key(self, task_id: uuid.UUID | str) -> str:
        """Where the W3C trace context of a task's assignment is kept (only while tracing):
        its webhook delivery continues that trace, its SLA timers link to it."""
        return f"{self.prefix}trace:{task_id}"

    # ------------------------------------------------------------------ tasks

    async def get(self, task_id: uuid.UUID | str) -> TaskState | None:
        raw = await self.redis.get(self.task_key(task_id))
        return TaskState.model_validate_json(raw) if raw else None

    async def get_many(self, task_ids: Iterable[str]) -> list[TaskState]:
        keys = [self.task_key(t) for t in task_ids]
        if not keys:
            return []
        raws = await self.redis.mget(keys)
        return [TaskState.model_validate_json(r) for r in raws if r]

    async def _ids(self, key: str) -> list[str]:
        members: list[Any] = await self.redis.zrange(key, 0, -1)
        return [_text(i) for i in members]

    async def for_agency(self, agency_id: str) -> list[TaskState]:
        return await self.get_many(await self._ids(self.agency_key(agency_id)))

    async def escalated_to(self, agency_id: str) -> list[TaskState]:
        return await self.get_many(await self._ids(self.escalated_key(agency_id)))

    async def for_case(self, case_id: uuid.UUID) -> list[TaskState]:
        return await self.get_many(await self._ids(self.case_key(case_id)))

    async def role_task_ids(self, case_id: uuid.UUID, role: AgencyType) -> list[str]:
        return await self._ids(self.role_key(case_id, role))

    async def unit_load(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.load_key)
        return {_text(k): int(v) for k, v in raw.items()}

    async def apply(self, event: Envelope) -> TaskState | None:
        """Fold one task event into the stored state, indexes and timers, atomically."""
        task_id = event.data.get("task_id")
        if task_id is None:
            return None
        key = self.task_key(task_id)
        # Most events reach here a second time (the writer applied them already): a plain read
        # settles that without the optimistic transaction.
        raw = await self.redis.get(key)
        current = TaskState.model_validate_json(raw) if raw else None
        if current is None:
            new = fold(None, event)
            if new is None or await self._create_new(new):
                return new
            # Created by another writer meanwhile: folded into theirs below.
        elif fold(current, event) == current:
            return current
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    old = TaskState.model_validate_json(raw) if raw else None
                    new = fold(old, event)
                    if new is None or new == old:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return new
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self._write(pipe, old, new)
                    await pipe.execute()
                    return new
                except WatchError:
                    continue

    async def apply_locked(self, current: TaskState, event: Envelope) -> TaskState | None:
        """`apply` for a writer holding the task's lock, who has just read `current`: every
        other writer waits for the lock, and the projection consumer can only write the
        same state from the same event, so no optimistic check (and no re-read) is needed."""
        new = fold(current, event)
        if new is None or new == current:
            return new
        async with self.redis.pipeline(transaction=True) as pipe:
            self._write(pipe, current, new)
            await pipe.execute()
        return new

    async def _create_new(self, new: TaskState) -> bool:
        """Write a task that does not exist yet with its indexes; False if it exists."""
        commands = _Commands()
        self._write(commands, None, new)
        record, *rest = commands.items
        keys, args = [record[1]], [record[2][0]]
        for name, key, arguments in rest:
            keys.append(key)
            args.extend([len(arguments), name, *arguments])
        return bool(await self._create(keys=keys, args=args))

    def _write(self, pipe: Redis | _Commands, old: TaskState | None, new: TaskState) -> None:
        pipe.set(self.task_key(new.task_id), new.model_dump_json())
        task = str(new.task_id)
        assigned = new.assigned_at.timestamp()
        # The indexes are written every time (idempotent), so a write that raced a loss of
        # Redis's data restores them along with the record.
        pipe.zadd(self.agency_key(new.agency_id), {task: assigned})
        pipe.zadd(self.case_key(new.case_id), {task: assigned})
        pipe.zadd(self.role_key(new.case_id, new.role), {task: assigned})
        if new.unit_id is not None:
            was_open = old is not None and old.is_open
            if new.is_open and not was_open:
                pipe.hincrby(self.load_key, new.unit_id, 1)
            elif was_open and not new.is_open:
                pipe.hincrby(self.load_key, new.unit_id, -1)
        if new.escalated_to_agency:
            pipe.zadd(self.escalated_key(new.escalated_to_agency), {task: assigned})
        before = {t.member(new.task_id) for t in pending_timers(old)} if old else set()
        after = {t.member(new.task_id): t.at.timestamp() for t in pending_timers(new)}
        gone = before - after.keys()
        if gone:
            pipe.zrem(self.timers.key, *gone)
        if after:
            pipe.zadd(self.timers.key, after)
        self._refigure(pipe, old, new)

    def _refigure(self, pipe: Redis | _Commands, old: TaskState | None, new: TaskState) -> None:
        """Move the task to its new figure's set (in the transaction that changes it)."""
        before = figure_of(old).key if old is not None else None
        after = figure_of(new).key
        if before == after:
            return
        task = str(new.task_id)
        if before is not None:
            pipe.srem(self.figure_key(before), task)
        pipe.sadd(self.figure_key(after), task)
        pipe.sadd(self.figures_key, after)

    async def figure_counts(self) -> dict[str, int]:
        """How many tasks stand at each figure, by its key: a set size per figure."""
        members: set[Any] = await self.redis.smembers(self.figures_key)
        figures = sorted(_text(m) for m in members)
        if not figures:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for figure in figures:
                pipe.scard(self.figure_key(figure))
            sizes = await pipe.execute()
        return {figure: int(size) for figure, size in zip(figures, sizes, strict=True)}

    async def backfill_figures(self) -> bool:
        """Put tasks stored before figures were kept into their figure's sets: once per Redis
        dataset (a marker says so), by one process at a time (a lease). True once done."""
        done, lease = f"{self.prefix}figures-complete", f"{self.prefix}figures-complete:lease"
        if await self.redis.exists(done):
            return True
        if not await self.redis.set(lease, "1", nx=True, ex=BACKFILL_LEASE_S):
            return False  # another process is at it
        cursor: int | None = None
        while cursor != 0:
            cursor, keys = await self.redis.scan(cursor or 0, match=self.task_key("*"), count=1000)
            names = [_text(key) for key in keys]
            for start in range(0, len(names), 100):
                await self._backfill_figures_of(names[start : start + 100])
            # Held while it works: a process that dies mid-way lets another start soon.
            await self.redis.expire(lease, BACKFILL_LEASE_S)
        await self.redis.set(done, "1")
        await self.redis.delete(lease)
        return True

    async def _backfill_figures_of(self, keys: list[str]) -> None:
        while keys:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    # Watched: a writer moving one of these tasks meanwhile makes this read
                    # them again, so no task stays in the set of a figure it has left.
                    await pipe.watch(*keys)
                    raws = await pipe.mget(keys)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for key, raw in zip(keys, raws, strict=True):
                        if raw:
                            figure = figure_of(TaskState.model_validate_json(raw)).key
                            task_id = key.removeprefix(self.task_key(""))
                            pipe.sadd(self.figure_key(figure), task_id)
                            pipe.sadd(self.figures_key, figure)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def put_rebuilt(self, state: TaskState) -> TaskState:
        """Store a task folded from the topic, with all its indexes and timers, unless a
        newer state is already stored (a live writer got there during the rebuild)."""
        key = self.task_key(state.task_id)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    stored = TaskState.model_validate_json(raw) if raw else None
                    final = stored if stored and stored.version > state.version else state
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if final is not stored:
                        self._refigure(pipe, stored, final)
                    pipe.set(key, final.model_dump_json())
                    task, assigned = str(final.task_id), final.assigned_at.timestamp()
                    pipe.zadd(self.agency_key(final.agency_id), {task: assigned})
                    pipe.zadd(self.case_key(final.case_id), {task: assigned})
                    pipe.zadd(self.role_key(final.case_id, final.role), {task: assigned})
                    if final.escalated_to_agency:
                        pipe.zadd(self.escalated_key(final.escalated_to_agency), {task: assigned})
                    timers = {
                        t.member(final.task_id): t.at.timestamp() for t in pending_timers(final)
                    }
                    if timers:
                        pipe.zadd(self.timers.key, timers)
                    await pipe.execute()
                    return final
                except WatchError:
                    continue

    async def reset_load(self, states: Iterable[TaskState]) -> None:
        counts: dict[str, int] = {}
        for state in states:
            if state.unit_id is not None and state.is_open:
                counts[state.unit_id] = counts.get(state.unit_id, 0) + 1
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.load_key)
            if counts:
                pipe.hset(self.load_key, mapping=counts)  # type: ignore[arg-type]
            await pipe.execute()

    @asynccontextmanager
    async def lock(
        self, task_id: uuid.UUID | str, *, within_s: float = 15.0
    ) -> AsyncIterator[None]:
        """One writer per task at a time: its next event's version is read, then written."""
        key, token = f"{self.prefix}lock:{task_id}", secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not await self.redis.set(key, token, nx=True, px=30_000):
            if loop.time() > deadline:
                raise LockTimeoutError(f"task {task_id} is busy")
            await asyncio.sleep(0.005)
        try:
            yield
        finally:
            await self._unlock(keys=[key], args=[token])

    # ------------------------------------------------------------------ pending assignments

    async def claim_assignment(self, slot: str, envelope: Envelope) -> Envelope:
        """The assignment for a case's role slot: ours, or the one an earlier attempt chose
        (then crashed before recording it), so a redelivery never picks a second unit."""
        key = f"{self.prefix}pending-assignment:{slot}"
        # SET NX GET in one round trip, answering the earlier value when there was one; only
        # while the projection is present: after a Redis loss the earlier choice is on the
        # tasks topic, and the rebuild must bring it back before anyone chooses again.
        try:
            earlier = await self.redis.eval(
                SET_NX_GET_WHILE_PRESENT,
                2,
                key,
                self.epoch_key,
                envelope.model_dump_json(),
                str(7 * 24 * 3600),
            )
        except ResponseError as exc:
            if projection_lost(exc):
                raise ProjectionLostError("routing's projection is being rebuilt") from exc
            raise
        if isinstance(earlier, bytes | str):
            return Envelope.model_validate_json(earlier)
        return envelope

    # ------------------------------------------------------------------ trace contexts

    async def keep_trace_context(self, task_id: uuid.UUID | str, traceparent: str) -> None:
        await self.redis.set(self.trace_context_key(task_id), traceparent, ex=TRACE_CONTEXT_TTL_S)

    async def trace_context(self, task_id: uuid.UUID | str) -> str | None:
        raw = await self.redis.get(self.trace_context_key(task_id))
        return _text(raw) if raw else None

    # ------------------------------------------------------------------ cases

    def reports_key(self, case_id: uuid.UUID) -> str:
        return f"{self.prefix}case-reports:{case_id}"

    def triage_key(self, case_id: uuid.UUID) -> str:
        return f"{self.prefix}case-triage:{case_id}"

    async def add_report(self, case_id: uuid.UUID, report: ReportReceivedData) -> None:
        await self.redis.hset(
            self.reports_key(case_id), str(report.report_id), report.model_dump_json()
        )

    async def reports(self, case_id: uuid.UUID) -> list[ReportReceivedData]:
        raw = await self.redis.hgetall(self.reports_key(case_id))
        found = [ReportReceivedData.model_validate_json(v) for v in raw.values()]
        return sorted(found, key=lambda r: r.received_at)

    async def set_triage(self, case_id: uuid.UUID, triage: CaseTriage) -> None:
        await self.redis.set(self.triage_key(case_id), triage.model_dump_json())

    async def note_triage(self, case_id: uuid.UUID, event_id: uuid.UUID) -> bool:
        """Record that a triage result was seen for the case; True if it was seen before."""
        added = await self.redis.sadd(f"{self.prefix}case-triage-seen:{case_id}", str(event_id))
        return not added

    async def triage_and_note(
        self, case_id: uuid.UUID, event_id: uuid.UUID
    ) -> tuple[CaseTriage | None, bool]:
        """The case's latest triage result, and whether this result was seen before (now
        noted), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.triage_key(case_id))
            pipe.sadd(f"{self.prefix}case-triage-seen:{case_id}", str(event_id))
            raw, added = await pipe.execute()
        return (CaseTriage.model_validate_json(raw) if raw else None), not added

    async def triage(self, case_id: uuid.UUID) -> CaseTriage | None:
        raw = await self.redis.get(self.triage_key(case_id))
        return CaseTriage.model_validate_json(raw) if raw else None

    # ------------------------------------------------------------------ epoch

    async def epoch(self) -> str | None:
        raw = await self.redis.get(self.epoch_key)
        return _text(raw) if raw else None

    async def set_epoch(self, value: str) -> None:
        await self.redis.set(self.epoch_key, value)

    async def timer_count(self) -> int:
        return await self.timers.size()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Commands:
    """The writes `_write` makes, recorded as (command, key, arguments) for `_CREATE`."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, list[str | int | float]]] = []

    def set(self, key: str, value: str) -> None:
        self.items.append(("SET", key, [value]))

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        self.items.append(("ZADD", key, [x for m, score in mapping.items() for x in (score, m)]))

    def zrem(self, key: str, *members: str) -> None:
        self.items.append(("ZREM", key, list(members)))

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self.items.append(("HINCRBY", key, [field, amount]))

    def sadd(self, key: str, member: str) -> None:
        self.items.append(("SADD", key, [member]))

    def srem(self, key: str, member: str) -> None:
        self.items.append(("SREM", key, [member]))
