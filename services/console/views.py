"""What the pages show, computed from the services' answers. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.events import TaskStatus
from contracts.tasks import ALLOWED, OFFICER_COMMANDS, SUPERVISOR_COMMANDS, Command
from ocsea.runtime.auth import Role
from services.console.i18n import Catalog

# Commands the console offers on a task page (reassignment stays in the API for now).
OFFERED = (
    Command.ACKNOWLEDGE,
    Command.ACCEPT,
    Command.DECLINE,
    Command.RESOLVE,
    Command.ESCALATE,
)
# What each command needs chosen first, from the actor directory's codes.
CODE_FIELD = {
    Command.DECLINE: "reason",
    Command.RESOLVE: "outcome",
    Command.ESCALATE: "reason",
}


@dataclass(frozen=True)
class Deadline:
    kind: str
    """`acknowledge` or `first_action`."""
    due_at: str
    seconds_left: float


def open_deadline(task: Mapping[str, Any], now: datetime) -> Deadline | None:
    """The deadline the task runs against now (none once accepted or closed)."""
    for kind in ("acknowledge", "first_action"):
        if task.get(f"seconds_to_{kind}") is not None:
            due = str(task[f"{kind}_due_at"])
            left = (datetime.fromisoformat(due) - now).total_seconds()
            return Deadline(kind, due, left)
    return None


def duration(catalog: Catalog, seconds: float) -> str:
    """A time span as H:MM:SS, or whole days beyond two days; the same as console.js."""
    whole = int(abs(seconds))
    if whole >= 2 * 86400:
        return catalog.text("countdown.days", days=whole // 86400)
    hours, rest = divmod(whole, 3600)
    return catalog.localise(f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}")


def countdown(catalog: Catalog, deadline: Deadline | None) -> str:
    if deadline is None:
        return catalog.text("countdown.none")
    span = duration(catalog, deadline.seconds_left)
    if deadline.seconds_left < 0:
        return catalog.text("countdown.overdue", time=span)
    return catalog.text("countdown.left", time=span)


def offered_commands(task: Mapping[str, Any], role: Role) -> list[Command]:
    """The commands the task's status allows and the user's role may give, in lifecycle order."""
    allowed = ALLOWED[TaskStatus(task["status"])]
    mine = SUPERVISOR_COMMANDS if role is Role.SUPERVISOR else OFFICER_COMMANDS
    return [c for c in OFFERED if c in allowed and c in mine]


def may_give(role: Role, command: Command) -> bool:
    """Whether the console offers the command to the role at all (the API decides per task)."""
    mine = SUPERVISOR_COMMANDS if role is Role.SUPERVISOR else OFFICER_COMMANDS
    return command in OFFERED and command in mine


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    """Field names from the outermost in; list positions are left out."""
    position: tuple[int, ...]
    """1-based positions in the lists passed through (a second survivor: (2,))."""
    value: str


def flatten(
    value: Any, path: tuple[str, ...] = (), position: tuple[int, ...] = ()
) -> Iterator[Field]:
    """A nested record (a report's personal part) as labelled leaf values, in order."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from flatten(inner, (*path, str(key)), position)
    elif isinstance(value, list):
        for index, inner in enumerate(value, start=1):
            yield from flatten(inner, path, (*position, index) if len(value) > 1 else position)
    elif value is not None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        yield Field(path, position, text)


def leaf_fields(leaf_text: str) -> dict[str, Any]:
    """An audit leaf's entry, for display (the browser checks the exact text, not this)."""
    parsed: dict[str, Any] = json.loads(leaf_text)
    return parsed
