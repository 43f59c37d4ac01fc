"""The console's use cases: signing in and out, the officers' inbox, the supervisors' view, a
task and its commands, the triage override, a case, and the auditors' pages.

Each works over the ports (the services' APIs called with the user's own token, the session
store, the credentials, a clock) and answers what to show, a `Page` (a template and what it
shows) or a `Redirect`, never an HTTP response: `entrypoints/http.py` renders it. A use case
that cannot go on raises `SignInRequiredError`, `RoleRefusedError` or `FormRejectedError`, or
lets a service's refusal (`ServiceCallError`) through to the error page.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.directory import Directory
from contracts.events import Classification, OverrideReason, Priority, TaskStatus, utc_now
from contracts.tasks import OFFICER_COMMANDS, SUPERVISOR_COMMANDS, Command, InboxSort
from ocsea.runtime.auth import Principal, Role
from ocsea.runtime.logging import get_logger
from services.console.domain.i18n import Catalog
from services.console.domain.override import override_problem, override_request
from services.console.domain.pages import (
    NOT_RECORDED,
    OVERRIDE_REFUSED_ON_PAGE,
    command_refusal_message,
    command_refused_on_page,
    table_links,
)
from services.console.domain.records import case_reports, trail_rows
from services.console.domain.tasks import (
    CODE_FIELD,
    chosen_code,
    code_missing,
    command_body,
    countdown,
    inbox_query,
    may_give,
    offered_commands,
    open_deadline,
    task_rows,
)
from services.console.ports import (
    AuditApi,
    Clock,
    Credentials,
    RoutingApi,
    ServiceCallError,
    Session,
    SessionStore,
    TriageApi,
)

log = get_logger("ocsea.console")

STAFF = (Role.OFFICER, Role.SUPERVISOR)
CONSOLE_ROLES = (Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR)


class SignInRequiredError(Exception):
    """No live session (never signed in, idle too long, too old, signed out)."""


class RoleRefusedError(Exception):
    """A page or a command that is not for the user's role."""


class FormRejectedError(Exception):
    """A form the console did not hand out (a CSRF token that does not match)."""


@dataclass(frozen=True)
class Visit:
    """What a use case knows of a request: who asks, in which language, on which page."""

    session: Session | None
    catalog: Catalog
    path: str
    query: Mapping[str, str]


@dataclass(frozen=True)
class Page:
    """A template and what it shows."""

    template: str
    context: dict[str, Any]
    status: int = 200


@dataclass(frozen=True)
class Redirect:
    location: str


@dataclass(frozen=True)
class SignedIn:
    session_id: str
    """For the session cookie only."""
    location: str


@dataclass(frozen=True)
class SignInRefused:
    status: int
    message: str


def landing(principal: Principal) -> str:
    """The page a user starts on."""
    return {Role.SUPERVISOR: "/supervise", Role.AUDITOR: "/audit"}.get(principal.role, "/inbox")


def commands_of(role: Role) -> frozenset[Command]:
    return SUPERVISOR_COMMANDS if role is Role.SUPERVISOR else OFFICER_COMMANDS


def signed_in(visit: Visit, *roles: Role) -> Session:
    """The visit's session, if it has one and its role may see the page."""
    if visit.session is None:
        raise SignInRequiredError
    if visit.session.principal.role not in roles:
        raise RoleRefusedError
    return visit.session


def checked_form(session: Session, form: Mapping[str, str]) -> Mapping[str, str]:
    """The form, if it carries the session's CSRF token."""
    if not session.csrf_ok(form.get("csrf")):
        raise FormRejectedError
    return form


class Console:
    def __init__(
        self,
        *,
        routing: RoutingApi,
        triage: TriageApi,
        audit: AuditApi,
        sessions: SessionStore,
        credentials: Credentials,
        directory: Directory,
        now: Clock = utc_now,
    ) -> None:
        self.routing = routing
        self.triage = triage
        self.audit = audit
        self.sessions = sessions
        self.credentials = credentials
        self.directory = directory
        self.now = now

    # ------------------------------------------------------------------ sessions

    async def find_session(self, session_id: str | None) -> Session | None:
        return await self.sessions.find(session_id)

    async def ready(self) -> None:
        """Raises when sessions cannot be kept (the console can serve nobody then)."""
        await self.sessions.ping()

    async def sign_in(
        self,
        credential: str,
        csrf: str,
        *,
        expected_csrf: str,
        previous_session_id: str | None,
    ) -> SignedIn | SignInRefused:
        """A session for a valid credential of an officer, supervisor or auditor, from the
        sign-in form this browser was handed (`expected_csrf`, from its cookie)."""
        if not expected_csrf or not secrets.compare_digest(expected_csrf.encode(), csrf.encode()):
            return SignInRefused(403, "error.bad_form")
        token = credential.strip()
        principal = self.credentials.authenticate(token) if token else None
        if principal is None:
            log.info("console.signin_refused")
            return SignInRefused(401, "signin.invalid")
        if principal.role not in CONSOLE_ROLES:
            return SignInRefused(403, "error.not_for_role")
        await self.sessions.end(previous_session_id)  # no session fixation
        session_id, _ = await self.sessions.start(principal, token)
        log.info("console.signed_in", principal=principal.name, role=principal.role.value)
        return SignedIn(session_id, landing(principal))

    async def sign_out(self, visit: Visit, form: Mapping[str, str], session_id: str | None) -> None:
        """Ends the visit's session (a form of its own only); without one, nothing to end."""
        if visit.session is None:
            return
        checked_form(visit.session, form)
        await self.sessions.end(session_id)
        log.info("console.signed_out", principal=visit.session.principal.name)

    # ------------------------------------------------------------------ inboxes

    async def _table(
        self,
        visit: Visit,
        session: Session,
        *,
        region: str,
        sort: InboxSort,
        escalated: bool | None = None,
        status: TaskStatus | None = None,
        priority: Priority | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of a task table, as routing lists it for this user."""
        query = inbox_query(
            sort, escalated=escalated, status=status, priority=priority, cursor=cursor
        )
        page = await self.routing.tasks(session.token, query)
        return {
            "region": region,
            "rows": task_rows(page.tasks, visit.catalog, self.now()),
            "total": page.total,
            **table_links(
                visit.path, visit.query, region=region, cursor=cursor, next_cursor=page.next_cursor
            ),
        }

    async def inbox(
        self,
        visit: Visit,
        *,
        sort: InboxSort = InboxSort.URGENCY,
        status: TaskStatus | None = None,
        priority: Priority | None = None,
        cursor: str | None = None,
        fragment: str | None = None,
    ) -> Page:
        """The agency's tasks, for officers and supervisors; `fragment`: the table alone (the
        page's live update)."""
        session = signed_in(visit, *STAFF)
        table = await self._table(
            visit,
            session,
            region="tasks",
            sort=sort,
            status=status,
            priority=priority,
            cursor=cursor,
        )
        if fragment:
            return Page("_tasks.html", {"table": table})
        return Page(
            "inbox.html",
            {
                "sort": sort,
                "sorts": list(InboxSort),
                "status": status,
                "statuses": list(TaskStatus),
                "priority": priority,
                "priorities": list(Priority),
                "table": table,
            },
        )

    async def supervise(
        self,
        visit: Visit,
        *,
        escalations_cursor: str | None = None,
        tasks_cursor: str | None = None,
        fragment: str | None = None,
    ) -> Page:
        """Escalations, then all the agency's tasks, overdue and breached first."""
        session = signed_in(visit, Role.SUPERVISOR)
        tables = {}
        for region, escalated, cursor in (
            ("escalations", True, escalations_cursor),
            ("tasks", None, tasks_cursor),
        ):
            if fragment in (None, region):
                tables[region] = await self._table(
                    visit,
                    session,
                    region=region,
                    sort=InboxSort.OVERDUE,
                    escalated=escalated,
                    cursor=cursor,
                )
        if fragment:
            return Page("_tasks.html", {"table": tables[fragment]})
        return Page("supervise.html", {"tables": tables})

    # ------------------------------------------------------------------ a task and its commands

    async def _task_page(
        self,
        visit: Visit,
        session: Session,
        task_id: uuid.UUID,
        *,
        status: int = 200,
        error: str | None = None,
        error_field: str | None = None,
    ) -> Page:
        task = await self.routing.task(session.token, task_id)
        deadline = open_deadline(task, self.now())
        triage = None
        if session.principal.role is Role.SUPERVISOR:
            try:
                triage = await self.triage.case_triage(session.token, uuid.UUID(task["case_id"]))
            except ServiceCallError as exc:
                if exc.status not in (403, 404):  # the page works without it
                    raise
        return Page(
            "task.html",
            {
                "task": task,
                "deadline": deadline,
                "countdown_text": countdown(visit.catalog, deadline),
                "commands": offered_commands(task, commands_of(session.principal.role)),
                "code_field": CODE_FIELD,
                "codes": {
                    Command.DECLINE: self.directory.decline_reasons,
                    Command.RESOLVE: self.directory.outcome_codes,
                    Command.ESCALATE: self.directory.escalation_reasons,
                },
                "triage": triage,
                "priorities": list(Priority),
                "classifications": list(Classification),
                "override_reasons": list(OverrideReason),
                # One per form: a resent override is recognised as the same one.
                "idempotency_key": uuid.uuid4().hex,
                "done": visit.query.get("done"),
                "error": error,
                "error_field": error_field,
            },
            status,
        )

    async def task(self, visit: Visit, task_id: uuid.UUID) -> Page:
        session = signed_in(visit, *STAFF)
        return await self._task_page(visit, session, task_id)

    async def give_command(
        self, visit: Visit, task_id: uuid.UUID, command: Command, form: Mapping[str, str]
    ) -> Page | Redirect:
        """A command on a task: confirmed first, then sent to routing with the user's token;
        a refusal routing explains shows on the task page as the task now is."""
        session = signed_in(visit, *STAFF)
        checked_form(session, form)
        if not may_give(commands_of(session.principal.role), command):
            raise RoleRefusedError
        field, code = chosen_code(command, form)
        if code_missing(command, form):
            return await self._task_page(
                visit, session, task_id, status=422, error="error.choose_code", error_field=field
            )
        if form.get("confirmed") != "yes":
            task = await self.routing.task(session.token, task_id)
            return Page(
                "confirm.html",
                {
                    "task": task,
                    "command": command,
                    "field": field,
                    "code": code,
                    "csrf": session.csrf,
                    "action": f"/tasks/{task_id}/{command.value}",
                    "back": f"/tasks/{task_id}",
                    "question": f"confirm.{command.value}",
                    "code_label": visit.catalog.label(f"code.{field}", code) if code else None,
                },
            )
        try:
            await self.routing.command(
                session.token, task_id, command.value, command_body(command, form)
            )
        except ServiceCallError as exc:
            if command_refused_on_page(exc.status, exc.code):
                return await self._task_page(
                    visit,
                    session,
                    task_id,
                    status=exc.status,
                    error=command_refusal_message(exc.code),
                    error_field=exc.field,
                )
            raise
        return Redirect(f"/tasks/{task_id}?done={command.value}")

    async def override(
        self, visit: Visit, case_id: uuid.UUID, task_id: uuid.UUID, form: Mapping[str, str]
    ) -> Page | Redirect:
        """A supervisor's triage override, from a task's page: checked, confirmed, then sent
        to triage with the form's one Idempotency-Key."""
        session = signed_in(visit, Role.SUPERVISOR)
        checked_form(session, form)
        body = override_request(form)
        problem = override_problem(body)
        if problem:
            return await self._task_page(
                visit, session, task_id, status=422, error=problem[0], error_field=problem[1]
            )
        key = form.get("idempotency_key") or uuid.uuid4().hex
        if form.get("confirmed") != "yes":
            task = await self.routing.task(session.token, task_id)
            return Page(
                "confirm_override.html",
                {
                    "task": task,
                    "body": body,
                    "idempotency_key": key,
                    "csrf": session.csrf,
                    "action": f"/cases/{case_id}/override?task={task_id}",
                    "back": f"/tasks/{task_id}",
                },
            )
        try:
            await self.triage.override(session.token, case_id, body, key)
        except ServiceCallError as exc:
            if exc.status in OVERRIDE_REFUSED_ON_PAGE:
                return await self._task_page(
                    visit,
                    session,
                    task_id,
                    status=exc.status,
                    error=NOT_RECORDED,
                    error_field=exc.field,
                )
            raise
        return Redirect(f"/tasks/{task_id}?done=overridden")

    # ------------------------------------------------------------------ a case

    async def case(self, visit: Visit, case_id: uuid.UUID) -> Page:
        """The case as routing shows it to this user (personal details only if released)."""
        session = signed_in(visit, *STAFF)
        found = await self.routing.case(session.token, case_id)
        return Page("case.html", {"case": found, "reports": case_reports(found)})

    # ------------------------------------------------------------------ auditors

    async def audit_home(self, visit: Visit, case_id: str | None = None) -> Page | Redirect:
        """The current checkpoint and a case to look up; a case id given goes to its trail."""
        session = signed_in(visit, Role.AUDITOR)
        if case_id:
            try:
                return Redirect(f"/audit/cases/{uuid.UUID(case_id.strip())}")
            except ValueError:
                checkpoint = await self.audit.checkpoint(session.token)
                return Page("audit.html", {"checkpoint": checkpoint, "error": "error.case_id"}, 422)
        checkpoint = await self.audit.checkpoint(session.token)
        return Page("audit.html", {"checkpoint": checkpoint, "error": None})

    async def audit_case(self, visit: Visit, case_id: uuid.UUID) -> Page:
        """A case's trail with the bundle the browser verifies against the checkpoint."""
        session = signed_in(visit, Role.AUDITOR)
        bundle = await self.audit.case_bundle(session.token, case_id)
        trail = await self.audit.trail(session.token, case_id)
        return Page(
            "audit_case.html",
            {
                "case_id": case_id,
                "rows": trail_rows(trail, bundle),
                "checkpoint": bundle["checkpoint"],
                "bundle": bundle,
                "tree_size": bundle["checkpoint"]["tree_size"],
            },
        )
