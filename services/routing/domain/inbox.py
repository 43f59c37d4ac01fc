"""The inbox: which of the caller's tasks to list, in which order, a page at a time. Pure.

Paging is by keyset, not offset: the cursor carries the sort key of the last task listed, so a
task that is assigned, acknowledged or closed between two calls never makes the next page skip
or repeat one. The cursor also carries the moment the first page was read, so an order that
depends on the clock (overdue first) stays the same order from page to page.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.events import Priority, TaskStatus
from contracts.tasks import InboxSort
from services.routing.domain.tasks import TaskState, satisfied

MAX_LIMIT = 500
"""Most tasks one page holds."""
DEFAULT_LIMIT = 100
"""A page's size when a cursor is given without a limit."""

_NO_DEADLINE = 1e300  # sorts after every real timestamp; JSON keeps it exactly
_PRIORITY_RANK = {p: n for n, p in enumerate(Priority)}


@dataclass(frozen=True)
class InboxFilter:
    status: TaskStatus | None = None
    priority: Priority | None = None
    escalated: bool | None = None
    case_id: uuid.UUID | None = None

    def admits(self, task: TaskState) -> bool:
        return (
            (self.status is None or task.status is self.status)
            and (self.priority is None or task.priority is self.priority)
            and (self.escalated is None or (task.escalation_level > 0) is self.escalated)
            and (self.case_id is None or task.case_id == self.case_id)
        )


class CursorError(ValueError):
    """A cursor that this inbox did not hand out, or handed out for another order."""


@dataclass(frozen=True)
class Cursor:
    sort: InboxSort
    as_of: float
    """The first page's time (epoch seconds): the whole listing is ordered as of then."""
    after: tuple[Any, ...]
    """The sort key of the last task already listed."""

    def encode(self) -> str:
        raw = json.dumps([self.sort.value, self.as_of, list(self.after)], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, sort: InboxSort) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            sort_name, as_of, after = json.loads(raw)
            cursor = cls(InboxSort(sort_name), float(as_of), tuple(after))
        except (binascii.Error, ValueError, TypeError) as exc:
            raise CursorError("not a cursor this inbox handed out") from exc
        if cursor.sort is not sort:
            raise CursorError(
                f"the cursor continues a listing sorted by {cursor.sort.value}, not {sort.value}"
            )
        if not _fits(cursor.after, _KEY_SHAPES[sort]):
            raise CursorError("not a cursor this inbox handed out")
        return cursor


# Each order's key: numbers (n) and strings (s). A cursor's key must fit, or comparing it
# with the tasks' keys would fail.
_KEY_SHAPES = {
    InboxSort.URGENCY: "nnns",
    InboxSort.DEADLINE: "nnns",
    InboxSort.OVERDUE: "nnnnns",
    InboxSort.NEWEST: "ns",
}


def _fits(key: tuple[Any, ...], shape: str) -> bool:
    return len(key) == len(shape) and all(
        isinstance(v, str)
        if kind == "s"
        else isinstance(v, int | float) and not isinstance(v, bool)
        for v, kind in zip(key, shape, strict=True)
    )


def nearest_open_deadline(task: TaskState) -> float:
    """Epoch seconds of the earliest deadline not yet met (none: after everything)."""
    return min(
        (d.due_at.timestamp() for kind, d in task.deadlines.items() if not satisfied(task, kind)),
        default=_NO_DEADLINE,
    )


def is_overdue(task: TaskState, as_of: float) -> bool:
    """An open task with a deadline missed (breached, or past due before the timer fired)."""
    return task.is_open and any(
        not satisfied(task, kind) and (d.breached or d.due_at.timestamp() <= as_of)
        for kind, d in task.deadlines.items()
    )


def sort_key(task: TaskState, sort: InboxSort, as_of: float) -> tuple[Any, ...]:
    """A JSON-friendly key (numbers and strings) ending in the task id, so it is total."""
    closed = 0 if task.is_open else 1
    rank = _PRIORITY_RANK[task.priority]
    due = nearest_open_deadline(task)
    task_id = str(task.task_id)
    if sort is InboxSort.URGENCY:
        return (closed, rank, due, task_id)
    if sort is InboxSort.DEADLINE:
        return (closed, due, rank, task_id)
    if sort is InboxSort.OVERDUE:
        overdue = 0 if is_overdue(task, as_of) else 1
        return (closed, overdue, -task.escalation_level, rank, due, task_id)
    return (-task.assigned_at.timestamp(), task_id)


@dataclass(frozen=True)
class Page:
    tasks: list[TaskState]
    total: int
    """How many tasks the filter admits, on every page."""
    next_cursor: Cursor | None


def inbox_page(
    tasks: Iterable[TaskState],
    *,
    where: InboxFilter,
    sort: InboxSort,
    now: datetime,
    limit: int | None = None,
    cursor: Cursor | None = None,
) -> Page:
    """The tasks `where` admits, in `sort` order: all of them (no limit), or the `limit` that
    follow `cursor`, with the cursor of the next page when more follow."""
    as_of = cursor.as_of if cursor else now.astimezone(UTC).timestamp()
    keyed = sorted(
        ((sort_key(t, sort, as_of), t) for t in tasks if where.admits(t)), key=lambda kt: kt[0]
    )
    total = len(keyed)
    if cursor is not None:
        keyed = [kt for kt in keyed if kt[0] > cursor.after]
    if limit is None or len(keyed) <= limit:
        return Page([t for _, t in keyed], total, None)
    shown = keyed[:limit]
    return Page([t for _, t in shown], total, Cursor(sort, as_of, shown[-1][0]))
