"""Officers' and supervisors' use cases on tasks: the inbox, a task, and the commands that
change one (acknowledge, accept, decline → re-route, resolve, escalate, reassign).

Who may see or command a task is `handlers/access.py` (the one access rule); which commands fit
a task's state is `domain/tasks.py`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contracts.directory import Directory
from contracts.events import Actor, AgencyType
from contracts.tasks import Command, InboxSort
from ocsea.runtime.access import actor_of
from ocsea.runtime.auth import Principal
from ocsea.runtime.errors import ApiError
from services.routing.domain.inbox import (
    DEFAULT_LIMIT,
    Cursor,
    CursorError,
    InboxFilter,
    inbox_page,
)
from services.routing.domain.tasks import (
    InvalidTransitionError,
    TaskState,
    check,
    command_change,
    task_id_for,
)
from services.routing.handlers.access import can_command, can_see, is_coordinator
from services.routing.handlers.assignment import Assignments
from services.routing.handlers.views import ReassignResult, TaskView, task_view
from services.routing.handlers.writer import TaskWriter
from services.routing.ports import Clock, LockTimeoutError, Notes, TaskStore


@dataclass(frozen=True)
class InboxPage:
    tasks: list[TaskView]
    total: int
    """Tasks the filters admit, on all pages."""
    next_cursor: str | None


def task_not_found() -> ApiError:
    # Another agency's task is indistinguishable from a missing one.
    return ApiError(404, "task_not_found", "no such task")


def unknown_code(field: str, allowed: tuple[str, ...]) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"{field}: not a code of the actor directory; one of {', '.join(allowed)}",
        field=field,
    )


def invalid_transition(exc: InvalidTransitionError) -> ApiError:
    return ApiError(409, "invalid_transition", exc.message)


class TaskHandlers:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        writer: TaskWriter,
        assignments: Assignments,
        directory: Directory,
        ready: Callable[[], Awaitable[None]],
        clock: Clock,
        notes: Notes,
    ) -> None:
        self.tasks = tasks
        self.writer = writer
        self.assignments = assignments
        self.directory = directory
        self.ready = ready
        self.clock = clock
        self.notes = notes

    # ------------------------------------------------------------------ reading

    async def inbox(
        self,
        principal: Principal,
        where: InboxFilter,
        sort: InboxSort,
        *,
        limit: int | None,
        cursor: str | None,
    ) -> InboxPage:
        """The caller's inbox: their agency's tasks (and, for the coordinator, tasks escalated
        to it), open ones first, each with the time left; in pages when `limit` is given."""
        await self.ready()
        if principal.agency is None:
            raise ApiError(403, "no_agency", "the caller belongs to no agency")
        try:
            after = Cursor.decode(cursor, sort) if cursor is not None else None
        except CursorError as exc:
            raise ApiError(422, "invalid_cursor", f"cursor: {exc}", field="cursor") from exc
        found = {t.task_id: t for t in await self.tasks.for_agency(principal.agency)}
        if is_coordinator(principal, self.directory):
            found |= {t.task_id: t for t in await self.tasks.escalated_to(principal.agency)}
        now = self.clock()
        page = inbox_page(
            (t for t in found.values() if can_see(principal, t, self.directory)),
            where=where,
            sort=sort,
            now=now,
            limit=limit if limit is not None or after is None else DEFAULT_LIMIT,
            cursor=after,
        )
        return InboxPage(
            tasks=[task_view(t, now) for t in page.tasks],
            total=page.total,
            next_cursor=page.next_cursor.encode() if page.next_cursor is not None else None,
        )

    async def visible_task(self, task_id: uuid.UUID, principal: Principal) -> TaskState:
        await self.ready()
        task = await self.tasks.get(task_id)
        if task is None or not can_see(principal, task, self.directory):
            raise task_not_found()
        return task

    async def task(self, task_id: uuid.UUID, principal: Principal) -> TaskView:
        return task_view(await self.visible_task(task_id, principal), self.clock())

    # ------------------------------------------------------------------ commands

    def _check_code(self, command: Command, code: str | None) -> None:
        """The code a command carries must be one of the directory's for it."""
        allowed = {
            Command.DECLINE: ("reason", self.directory.decline_reasons),
            Command.RESOLVE: ("outcome", self.directory.outcome_codes),
            Command.ESCALATE: ("reason", self.directory.escalation_reasons),
            Command.REASSIGN: ("reason", self.directory.reassign_reasons),
        }.get(command)
        if allowed is None:
            return
        field, codes = allowed
        optional = command is Command.ESCALATE
        if (code is not None or not optional) and code not in codes:
            raise unknown_code(field, codes)

    async def _task_to_command(
        self, task_id: uuid.UUID, principal: Principal, command: Command
    ) -> TaskState:
        """The task, if the principal sees it: a refusal is noted (ids only) and answered as a
        read's is, another agency's task as a missing one."""
        try:
            return await self.visible_task(task_id, principal)
        except ApiError:
            self._refused(task_id, principal, command, "not_visible")
            raise

    def _authorise(self, task: TaskState, principal: Principal, command: Command) -> None:
        """Whether the principal's role may give the command (noted when refused)."""
        if can_command(principal, task, command, self.directory):
            return
        self._refused(task.task_id, principal, command, "role")
        if command is Command.REASSIGN:
            raise ApiError(403, "forbidden", "not your task")
        raise ApiError(
            403, "forbidden", f"a {principal.role.value} may not {command.value} this task"
        )

    def _refused(
        self, task_id: uuid.UUID, principal: Principal, command: Command, why: str
    ) -> None:
        self.notes.warning(
            "task.command_refused",
            task_id=str(task_id),
            actor=principal.name,
            role=principal.role.value,
            agency=principal.agency,
            command=command.value,
            why=why,
        )

    async def command(
        self, task_id: uuid.UUID, principal: Principal, command: Command, code: str | None = None
    ) -> TaskView:
        """An officer's or supervisor's command on a task of theirs (reassign: `reassign`)."""
        assert command is not Command.REASSIGN, "a reassignment names its agency: reassign()"
        self._check_code(command, code)
        task = await self._task_to_command(task_id, principal, command)
        self._authorise(task, principal, command)
        try:
            updated = await self.change(task_id, command, actor_of(principal), code=code)
        except InvalidTransitionError as exc:
            raise invalid_transition(exc) from exc
        except LockTimeoutError as exc:
            raise ApiError(503, "task_busy", "the task is being changed; retry") from exc
        except Exception as exc:
            self.notes.error("task.command_failed", task_id=str(task_id), error=type(exc).__name__)
            raise ApiError(
                503, "not_recorded", "the change could not be recorded; nothing changed. Retry"
            ) from exc
        return task_view(updated, self.clock())

    async def change(
        self, task_id: uuid.UUID, command: Command, actor: Actor, *, code: str | None = None
    ) -> TaskState:
        """Carry out a command the actor may give: the task's next event, under its lock; a
        declined task's case is re-routed to the next unit."""
        async with self.tasks.lock(task_id):
            task = await self.tasks.get(task_id)
            assert task is not None
            change = command_change(task, command, code=code)
            updated = await self.writer.emit(task, change, actor)
            assert updated is not None
        self.notes.info(
            f"task.{command.value}",
            task_id=str(task_id),
            case_id=str(task.case_id),
            actor=actor.id,
            version=updated.version,
        )
        if command is Command.DECLINE:
            await self.assignments.reroute(updated)
        return updated

    async def reassign(
        self, task_id: uuid.UUID, principal: Principal, agency_id: str, reason: str
    ) -> ReassignResult:
        """A supervisor moves the task to another agency of the same kind (or the
        coordinator); the old task closes as reassigned, a new one is assigned."""
        task = await self._task_to_command(task_id, principal, Command.REASSIGN)
        self._check_code(Command.REASSIGN, reason)
        target = self.directory.find_agency(agency_id)
        if target is None or target.type not in (task.role, AgencyType.COORDINATION):
            raise ApiError(
                422,
                "invalid_request",
                f"agency_id: no {task.role.value} agency (or the coordinator) "
                f"with id {agency_id!r}",
                field="agency_id",
            )
        self._authorise(task, principal, Command.REASSIGN)
        try:
            old, new = await self.move(task_id, target.id, reason, actor_of(principal))
        except InvalidTransitionError as exc:
            raise invalid_transition(exc) from exc
        now = self.clock()
        return ReassignResult(
            reassigned=task_view(old, now), replacement=task_view(new, now) if new else None
        )

    async def move(
        self, task_id: uuid.UUID, to_agency_id: str, reason: str, actor: Actor
    ) -> tuple[TaskState, TaskState | None]:
        """Close the task as reassigned and assign its role to a unit of `to_agency_id`."""
        async with self.tasks.lock(task_id):
            task = await self.tasks.get(task_id)
            assert task is not None
            check(task, Command.REASSIGN)
            attempt = len(await self.tasks.role_task_ids(task.case_id, task.role))
            new_task_id = task_id_for(task.case_id, task.role, to_agency_id, attempt)
            change = command_change(
                task,
                Command.REASSIGN,
                code=reason,
                new_task_id=new_task_id,
                to_agency_id=to_agency_id,
            )
            updated = await self.writer.emit(task, change, actor)
            assert updated is not None
        replacement = await self.assignments.replace_reassigned(updated, to_agency_id)
        return updated, replacement
