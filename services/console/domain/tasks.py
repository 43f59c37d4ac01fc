"""Tasks on the console's pages: their open deadline and countdown, the commands a page offers,
what a command needs chosen first, and the query an inbox page asks routing for. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.events import Priority, TaskStatus
from contracts.tasks import ALLOWED, Command, InboxSort
from services.console.domain.i18n import Catalog

PAGE_SIZE = 25
"""Tasks on one page of an inbox table."""

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
# An escalation may go without a reason; a decline or a resolution may not.
CODE_OPTIONAL = frozenset({Command.ESCALATE})


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


def task_rows(tasks: list[dict[str, Any]], catalog: Catalog, now: datetime) -> list[dict[str, Any]]:
    """An inbox table's rows: each task with its open deadline and countdown."""
    rows = []
    for task in tasks:
        deadline = open_deadline(task, now)
        rows.append({"task": task, "deadline": deadline, "countdown": countdown(catalog, deadline)})
    return rows


def offered_commands(task: Mapping[str, Any], mine: frozenset[Command]) -> list[Command]:
    """The commands the task's status allows and the user may give (`mine`, their role's
    commands), in lifecycle order."""
    allowed = ALLOWED[TaskStatus(task["status"])]
    return [c for c in OFFERED if c in allowed and c in mine]


def may_give(mine: frozenset[Command], command: Command) -> bool:
    """Whether the console offers the command to a user whose role gives `mine` at all (the
    API decides per task)."""
    return command in OFFERED and command in mine


def chosen_code(command: Command, form: Mapping[str, str]) -> tuple[str | None, str]:
    """The form field the command's code is chosen in (None if it needs none) and the code."""
    field = CODE_FIELD.get(command)
    return field, (form.get(field, "") if field else "")


def code_missing(command: Command, form: Mapping[str, str]) -> bool:
    """A decline or resolution whose reason or outcome was not chosen."""
    field, code = chosen_code(command, form)
    return field is not None and command not in CODE_OPTIONAL and not code


def command_body(command: Command, form: Mapping[str, str]) -> dict[str, str] | None:
    """The JSON body routing takes for the command: the chosen code, if any."""
    field, code = chosen_code(command, form)
    return {field: code} if field and code else None


def inbox_query(
    sort: InboxSort,
    *,
    escalated: bool | None = None,
    status: TaskStatus | None = None,
    priority: Priority | None = None,
    cursor: str | None = None,
) -> dict[str, str]:
    """The query of `GET /v1/tasks` for one page of a table."""
    params = {"sort": sort.value, "limit": str(PAGE_SIZE)}
    for name, value in (("escalated", escalated), ("status", status), ("priority", priority)):
        if value is not None:
            params[name] = str(value).lower() if isinstance(value, bool) else str(value)
    if cursor:
        params["cursor"] = cursor
    return params
