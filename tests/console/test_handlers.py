"""The console's use cases over in-memory ports: what each user is shown and offered, what is
sent to the services (and with whose token), what is refused before anything is sent, how a
service's refusal becomes a page, and when a session asks to sign in again. No HTTP, no Redis."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from contracts.directory import load_directory
from contracts.events import AgencyType
from contracts.tasks import Command, InboxSort
from ocsea.runtime.auth import Principal, Role
from services.console.adapters.sessions import Sessions
from services.console.domain.i18n import Lang, catalogs
from services.console.domain.pages import refusal_message, refusal_status
from services.console.handlers import (
    Console,
    FormRejectedError,
    Page,
    Redirect,
    RoleRefusedError,
    SignedIn,
    SignInRefused,
    SignInRequiredError,
    Visit,
)
from services.console.ports import ServiceCallError, Session
from tests.console.fakes import (
    CASE_ID,
    TASK_ID,
    Clock,
    FakeAudit,
    FakeCredentials,
    FakeRouting,
    FakeTriage,
    MemoryBackend,
    task_json,
)

NOW = datetime.fromisoformat("2026-11-20T18:30:00+00:00")
IDLE_S = 900
MAX_S = 3600
OFFICER = Principal(
    name="officer-erbil-cpu",
    role=Role.OFFICER,
    agency="erbil-cpu",
    agency_type=AgencyType.CHILD_PROTECTION,
)
OTHER_OFFICER = Principal(
    name="officer-duhok-cpu",
    role=Role.OFFICER,
    agency="duhok-cpu",
    agency_type=AgencyType.CHILD_PROTECTION,
)
SUPERVISOR = Principal(
    name="supervisor-erbil-cpu",
    role=Role.SUPERVISOR,
    agency="erbil-cpu",
    agency_type=AgencyType.CHILD_PROTECTION,
)
AUDITOR = Principal(name="auditor", role=Role.AUDITOR)
PARTNER = Principal(name="partner-hotline", role=Role.PARTNER)
TOKENS = {
    "t-officer": OFFICER,
    "t-other-officer": OTHER_OFFICER,
    "t-supervisor": SUPERVISOR,
    "t-auditor": AUDITOR,
    "t-partner": PARTNER,
}


def task_at(
    task_id: uuid.UUID = TASK_ID, *, status: str = "assigned", ack_in_s: float = 600
) -> dict[str, object]:
    """A task as routing answers, its deadlines relative to the fixed `NOW`."""
    task = task_json(task_id, status=status, ack_in_s=ack_in_s)
    task["acknowledge_due_at"] = (NOW + timedelta(seconds=ack_in_s)).isoformat()
    task["first_action_due_at"] = (NOW + timedelta(hours=1)).isoformat()
    return task


@dataclass
class World:
    console: Console
    routing: FakeRouting
    triage: FakeTriage
    audit: FakeAudit
    backend: MemoryBackend
    clock: Clock

    async def session(self, token: str) -> tuple[str, Session]:
        """A session as signing in starts it."""
        return await self.console.sessions.start(TOKENS[token], token)

    async def visit(
        self, token: str | None, path: str = "/", query: dict[str, str] | None = None
    ) -> Visit:
        session = (await self.session(token))[1] if token else None
        return Visit(session, catalogs()[Lang.EN], path, query or {})

    def sent(self) -> list[str]:
        """The changes asked of the services."""
        return [c.method for c in self.routing.called("command") + self.triage.called("override")]


@pytest.fixture
def world() -> World:
    clock = Clock()
    backend = MemoryBackend(clock)
    routing, triage, audit = FakeRouting(), FakeTriage(), FakeAudit()
    console = Console(
        routing=routing,
        triage=triage,
        audit=audit,
        sessions=Sessions(backend, idle_s=IDLE_S, max_s=MAX_S, clock=clock),
        credentials=FakeCredentials(dict(TOKENS)),
        directory=load_directory(),
        now=lambda: NOW,
    )
    return World(console, routing, triage, audit, backend, clock)


def page(outcome: Page | Redirect) -> Page:
    assert isinstance(outcome, Page), outcome
    return outcome


# ----------------------------------------------------------------------------- inboxes


async def test_an_officers_inbox_shows_what_routing_lists_for_them_and_nothing_else(
    world: World,
) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    world.routing.tasks_of = {"t-officer": [task_at(mine)], "t-other-officer": [task_at(theirs)]}
    shown = await world.console.inbox(await world.visit("t-officer", "/inbox"))
    assert shown.template == "inbox.html"
    table = shown.context["table"]
    assert [row["task"]["task_id"] for row in table["rows"]] == [str(mine)]
    assert table["total"] == 1
    [call] = world.routing.called("tasks")
    assert call.token == "t-officer"
    assert call.args == ({"sort": "urgency", "limit": "25"},)


async def test_the_inbox_asks_for_the_chosen_order_filter_and_page(world: World) -> None:
    world.routing.next_cursor = "next-1"
    visit = await world.visit(
        "t-officer", "/inbox", {"sort": "deadline", "priority": "P1", "tasks_cursor": "abc"}
    )
    shown = await world.console.inbox(
        visit, sort=InboxSort.DEADLINE, priority=None, cursor="abc", fragment="tasks"
    )
    assert shown.template == "_tasks.html"  # the live update: the table alone
    [call] = world.routing.called("tasks")
    assert call.args == ({"sort": "deadline", "limit": "25", "cursor": "abc"},)
    table = shown.context["table"]
    # The pager keeps the page's own query, moving only this table's cursor.
    assert table["next_url"] == "/inbox?sort=deadline&priority=P1&tasks_cursor=next-1"
    assert table["first_url"] == "/inbox?sort=deadline&priority=P1"
    assert table["poll_url"] == "/inbox?sort=deadline&priority=P1&tasks_cursor=abc&fragment=tasks"


async def test_an_overdue_task_counts_up_from_its_missed_deadline(world: World) -> None:
    world.routing.tasks_of = {"t-officer": [task_at(ack_in_s=-90), task_at(status="resolved")]}
    shown = await world.console.inbox(await world.visit("t-officer", "/inbox"))
    overdue, closed = shown.context["table"]["rows"]
    assert overdue["deadline"].kind == "acknowledge"
    assert overdue["countdown"] == "overdue by 00:01:30"
    assert closed["deadline"] is None


async def test_a_supervisor_sees_escalations_then_all_tasks_overdue_first(world: World) -> None:
    shown = await world.console.supervise(await world.visit("t-supervisor", "/supervise"))
    assert list(shown.context["tables"]) == ["escalations", "tasks"]
    assert [c.args for c in world.routing.called("tasks")] == [
        ({"sort": "overdue", "limit": "25", "escalated": "true"},),
        ({"sort": "overdue", "limit": "25"},),
    ]
    world.routing.calls.clear()
    await world.console.supervise(
        await world.visit("t-supervisor", "/supervise"), fragment="escalations"
    )
    assert len(world.routing.called("tasks")) == 1  # only the region asked for


@pytest.mark.parametrize(
    ("token", "use_case"),
    [
        ("t-auditor", "inbox"),
        ("t-officer", "supervise"),
        ("t-auditor", "case"),
        ("t-officer", "audit_home"),
        ("t-supervisor", "audit_case"),
    ],
)
async def test_a_page_not_for_the_role_is_refused_before_any_service_is_asked(
    world: World, token: str, use_case: str
) -> None:
    visit = await world.visit(token)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "inbox": lambda: world.console.inbox(visit),
        "supervise": lambda: world.console.supervise(visit),
        "case": lambda: world.console.case(visit, CASE_ID),
        "audit_home": lambda: world.console.audit_home(visit),
        "audit_case": lambda: world.console.audit_case(visit, CASE_ID),
    }
    with pytest.raises(RoleRefusedError):
        await calls[use_case]()
    assert world.routing.calls == world.audit.calls == []


# ----------------------------------------------------------------------------- commands


async def test_the_task_page_offers_what_the_status_and_the_role_allow(world: World) -> None:
    world.routing.tasks_of = {"t-officer": [task_at()], "t-supervisor": [task_at()]}
    for token in ("t-officer", "t-supervisor"):
        shown = await world.console.task(await world.visit(token), TASK_ID)
        # Assigned: acknowledge, decline or escalate; reassignment is never offered here.
        assert shown.context["commands"] == [
            Command.ACKNOWLEDGE,
            Command.DECLINE,
            Command.ESCALATE,
        ]
    world.routing.tasks_of["t-officer"] = [task_at(status="accepted")]
    shown = await world.console.task(await world.visit("t-officer"), TASK_ID)
    assert shown.context["commands"] == [Command.RESOLVE, Command.ESCALATE]
    world.routing.tasks_of["t-officer"] = [task_at(status="resolved")]
    shown = await world.console.task(await world.visit("t-officer"), TASK_ID)
    assert shown.context["commands"] == []


@pytest.mark.parametrize("token", ["t-officer", "t-supervisor"])
async def test_a_command_the_console_does_not_offer_is_refused_when_posted(
    world: World, token: str
) -> None:
    world.routing.tasks_of = {token: [task_at()]}
    visit = await world.visit(token)
    assert visit.session is not None
    form = {"csrf": visit.session.csrf, "confirmed": "yes"}
    with pytest.raises(RoleRefusedError):
        await world.console.give_command(visit, TASK_ID, Command.REASSIGN, form)
    assert world.sent() == []


async def test_an_auditor_cannot_give_a_command(world: World) -> None:
    visit = await world.visit("t-auditor")
    assert visit.session is not None
    form = {"csrf": visit.session.csrf, "confirmed": "yes"}
    with pytest.raises(RoleRefusedError):
        await world.console.give_command(visit, TASK_ID, Command.ACKNOWLEDGE, form)
    assert world.routing.calls == []


async def test_a_command_is_confirmed_first_then_sent_with_the_users_token(world: World) -> None:
    world.routing.tasks_of = {"t-officer": [task_at()]}
    visit = await world.visit("t-officer")
    assert visit.session is not None
    form = {"csrf": visit.session.csrf, "reason": "no_capacity"}
    asked = page(await world.console.give_command(visit, TASK_ID, Command.DECLINE, form))
    assert asked.template == "confirm.html"
    assert asked.context["code_label"] == "No capacity"
    assert asked.context["action"] == f"/tasks/{TASK_ID}/decline"
    assert world.sent() == []
    done = await world.console.give_command(
        visit, TASK_ID, Command.DECLINE, {**form, "confirmed": "yes"}
    )
    assert done == Redirect(f"/tasks/{TASK_ID}?done=decline")
    [call] = world.routing.called("command")
    assert call.token == "t-officer"
    assert call.args == (TASK_ID, "decline", {"reason": "no_capacity"})


async def test_a_decline_without_a_reason_is_refused_naming_the_field(world: World) -> None:
    world.routing.tasks_of = {"t-officer": [task_at()]}
    visit = await world.visit("t-officer")
    assert visit.session is not None
    form = {"csrf": visit.session.csrf, "confirmed": "yes"}
    shown = page(await world.console.give_command(visit, TASK_ID, Command.DECLINE, form))
    assert (shown.template, shown.status) == ("task.html", 422)
    assert (shown.context["error"], shown.context["error_field"]) == ("error.choose_code", "reason")
    assert world.sent() == []
    # An escalation may go without a reason: sent with no body.
    await world.console.give_command(visit, TASK_ID, Command.ESCALATE, form)
    [call] = world.routing.called("command")
    assert call.args == (TASK_ID, "escalate", None)


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(world: World) -> None:
    world.routing.tasks_of = {"t-supervisor": [task_at()]}
    visit = await world.visit("t-supervisor")
    forged = {"csrf": "forged", "confirmed": "yes", "reason": "risk_increased"}
    with pytest.raises(FormRejectedError):
        await world.console.give_command(visit, TASK_ID, Command.ESCALATE, forged)
    with pytest.raises(FormRejectedError):
        await world.console.override(
            visit, CASE_ID, TASK_ID, {**forged, "priority": "P2", "reason_code": "other"}
        )
    assert world.sent() == []


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (409, "invalid_transition", "error.invalid_transition"),
        (403, "forbidden", "error.not_allowed"),
        (422, "invalid_request", "error.choose_code"),
        (503, "service_unavailable", "error.not_recorded"),
    ],
)
async def test_a_refused_command_shows_the_task_as_it_now_is(
    world: World, status: int, code: str, message: str
) -> None:
    world.routing.tasks_of = {"t-officer": [task_at(status="acknowledged")]}
    world.routing.refuse["command"] = ServiceCallError(status, code, "reason")
    visit = await world.visit("t-officer")
    assert visit.session is not None
    form = {"csrf": visit.session.csrf, "confirmed": "yes"}
    shown = page(await world.console.give_command(visit, TASK_ID, Command.ACCEPT, form))
    assert (shown.template, shown.status, shown.context["error"]) == ("task.html", status, message)
    assert shown.context["error_field"] == "reason"
    assert shown.context["task"]["status"] == "acknowledged"  # read again after the refusal


async def test_a_command_on_a_task_that_vanished_goes_to_the_error_page(world: World) -> None:
    world.routing.refuse["command"] = ServiceCallError(404, "task_not_found")
    visit = await world.visit("t-officer")
    assert visit.session is not None
    with pytest.raises(ServiceCallError) as refused:
        await world.console.give_command(
            visit, TASK_ID, Command.ACKNOWLEDGE, {"csrf": visit.session.csrf, "confirmed": "yes"}
        )
    assert refused.value.status == 404


# ---------------------------------------------------------------------- supervisors' override


async def test_a_supervisors_override_goes_to_triage_with_its_fields_and_one_key(
    world: World,
) -> None:
    world.routing.tasks_of = {"t-supervisor": [task_at()]}
    visit = await world.visit("t-supervisor")
    assert visit.session is not None
    form = {
        "csrf": visit.session.csrf,
        "priority": "P2",
        "classification": "",
        "reason_code": "risk_reassessed",
        "reason": "  The deadline has passed safely  ",
        "idempotency_key": "k-1",
    }
    asked = page(await world.console.override(visit, CASE_ID, TASK_ID, form))
    assert asked.template == "confirm_override.html"
    assert asked.context["idempotency_key"] == "k-1"
    assert world.sent() == []
    done = await world.console.override(visit, CASE_ID, TASK_ID, {**form, "confirmed": "yes"})
    assert done == Redirect(f"/tasks/{TASK_ID}?done=overridden")
    [call] = world.triage.called("override")
    assert call.token == "t-supervisor"
    assert call.args == (
        CASE_ID,
        {
            "priority": "P2",
            "classification": None,
            "reason_code": "risk_reassessed",
            "reason": "The deadline has passed safely",
        },
        "k-1",
    )


@pytest.mark.parametrize(
    ("changes", "message", "field"),
    [
        ({"priority": "P9"}, "error.invalid_request", "priority"),
        ({"priority": "", "classification": "adult"}, "error.invalid_request", "classification"),
        ({"priority": ""}, "error.override_nothing", "priority"),
        ({"reason_code": "because"}, "error.override_reason_code", "reason_code"),
        ({"reason": " ok "}, "error.override_reason", "reason"),
    ],
)
async def test_a_wrong_override_is_refused_before_anything_is_sent(
    world: World, changes: dict[str, str], message: str, field: str
) -> None:
    world.routing.tasks_of = {"t-supervisor": [task_at()]}
    visit = await world.visit("t-supervisor")
    assert visit.session is not None
    form = {
        "csrf": visit.session.csrf,
        "priority": "P2",
        "reason_code": "other",
        "reason": "because",
        "confirmed": "yes",
        **changes,
    }
    shown = page(await world.console.override(visit, CASE_ID, TASK_ID, form))
    assert (shown.status, shown.context["error"], shown.context["error_field"]) == (
        422,
        message,
        field,
    )
    assert world.sent() == []


async def test_an_officer_cannot_override(world: World) -> None:
    visit = await world.visit("t-officer")
    assert visit.session is not None
    with pytest.raises(RoleRefusedError):
        await world.console.override(visit, CASE_ID, TASK_ID, {"csrf": visit.session.csrf})
    assert world.sent() == []


async def test_a_supervisors_task_page_works_without_triage_where_triage_refuses(
    world: World,
) -> None:
    world.routing.tasks_of = {"t-supervisor": [task_at()], "t-officer": [task_at()]}
    shown = await world.console.task(await world.visit("t-supervisor"), TASK_ID)
    assert shown.context["triage"]["current"]["priority"] == "P1"
    world.triage.refuse["case_triage"] = ServiceCallError(403, "case_access_denied")
    shown = await world.console.task(await world.visit("t-supervisor"), TASK_ID)
    assert shown.status == 200
    assert shown.context["triage"] is None
    # An outage is not a refusal: the page says so instead of hiding it.
    world.triage.refuse["case_triage"] = ServiceCallError(503, "service_unavailable")
    with pytest.raises(ServiceCallError):
        await world.console.task(await world.visit("t-supervisor"), TASK_ID)
    # Officers are not shown triage at all.
    world.triage.calls.clear()
    await world.console.task(await world.visit("t-officer"), TASK_ID)
    assert world.triage.calls == []


# ----------------------------------------------------------------------------- a case; auditors


async def test_a_case_shows_the_personal_details_routing_released_as_fields(world: World) -> None:
    shown = await world.console.case(await world.visit("t-officer"), CASE_ID)
    [report] = shown.context["reports"]
    values = {(field.path, field.value) for field in report["fields"]}
    assert (("survivors", "name"), "MARKER-NAME-Shilan") in values
    assert (("survivors", "contact", "phone"), "+9647501234567") in values
    assert (("narrative",), "MARKER-NARRATIVE") in values
    [call] = world.routing.called("case")
    assert (call.token, call.args) == ("t-officer", (CASE_ID,))


async def test_a_refused_case_view_builds_no_page(world: World) -> None:
    world.routing.refuse["case"] = ServiceCallError(403, "case_access_denied")
    with pytest.raises(ServiceCallError) as refused:
        await world.console.case(await world.visit("t-other-officer"), CASE_ID)
    assert (refused.value.status, refused.value.code) == (403, "case_access_denied")


@pytest.mark.parametrize(
    ("status", "code", "shown_status", "message"),
    [
        (403, "case_access_denied", 403, "error.case_access_denied"),
        (404, "task_not_found", 404, "error.task_not_found"),
        (401, "unauthenticated", 401, "error.credential_revoked"),
        (503, "service_unavailable", 503, "error.service_unavailable"),
        (500, "error", 503, "error.service_refused"),
        (404, "not_found", 404, "error.service_refused"),
    ],
)
def test_a_services_refusal_becomes_its_page(
    status: int, code: str, shown_status: int, message: str
) -> None:
    assert (refusal_status(status), refusal_message(code)) == (shown_status, message)
    assert message in catalogs()[Lang.EN].messages


async def test_an_auditor_looks_up_a_case_by_its_id(world: World) -> None:
    visit = await world.visit("t-auditor", "/audit")
    assert await world.console.audit_home(visit, f"  {CASE_ID} ") == Redirect(
        f"/audit/cases/{CASE_ID}"
    )
    shown = page(await world.console.audit_home(visit, "not-a-case"))
    assert (shown.status, shown.context["error"]) == (422, "error.case_id")
    assert shown.context["checkpoint"]["tree_size"] == 1


async def test_the_trail_shows_proven_leaves_as_recorded_and_marks_the_rest(world: World) -> None:
    world.audit.trail_entries.append(
        {"leaf_index": 7, "leaf_hash": "00" * 32, "entry": {"action": "task.assigned"}}
    )
    shown = await world.console.audit_case(await world.visit("t-auditor"), CASE_ID)
    proven, unproven = shown.context["rows"]
    assert (proven["leaf_index"], proven["proven"]) == (0, True)
    assert proven["entry"]["action"] == "task.acknowledged"  # from the bundle's exact leaf
    assert (unproven["leaf_index"], unproven["proven"]) == (7, False)
    assert shown.context["tree_size"] == 1
    assert {c.token for c in world.audit.calls} == {"t-auditor"}


# ----------------------------------------------------------------------------- signing in and out


async def test_signing_in_needs_the_forms_own_nonce(world: World) -> None:
    refused = await world.console.sign_in(
        "t-officer", "forged", expected_csrf="nonce", previous_session_id=None
    )
    assert refused == SignInRefused(403, "error.bad_form")
    missing = await world.console.sign_in(
        "t-officer", "", expected_csrf="", previous_session_id=None
    )
    assert missing == SignInRefused(403, "error.bad_form")
    assert world.backend.values == {}


@pytest.mark.parametrize(
    ("credential", "refusal"),
    [
        ("guess", SignInRefused(401, "signin.invalid")),
        ("   ", SignInRefused(401, "signin.invalid")),
        ("t-partner", SignInRefused(403, "error.not_for_role")),
    ],
)
async def test_a_wrong_credential_or_a_partner_gets_no_session(
    world: World, credential: str, refusal: SignInRefused
) -> None:
    outcome = await world.console.sign_in(
        credential, "n", expected_csrf="n", previous_session_id=None
    )
    assert outcome == refusal
    assert world.backend.values == {}


@pytest.mark.parametrize(
    ("token", "landing"),
    [("t-officer", "/inbox"), ("t-supervisor", "/supervise"), ("t-auditor", "/audit")],
)
async def test_signing_in_starts_a_new_session_and_ends_the_old(
    world: World, token: str, landing: str
) -> None:
    old_id, _ = await world.session("t-other-officer")
    outcome = await world.console.sign_in(
        f" {token} ", "n", expected_csrf="n", previous_session_id=old_id
    )
    assert isinstance(outcome, SignedIn)
    assert outcome.location == landing
    assert await world.console.find_session(old_id) is None  # no session fixation
    found = await world.console.find_session(outcome.session_id)
    assert found is not None
    assert (found.principal, found.token) == (TOKENS[token], token)


async def test_an_idle_session_asks_to_sign_in_again(world: World) -> None:
    session_id, _ = await world.session("t-officer")
    world.clock.now += IDLE_S - 100
    assert await world.console.find_session(session_id) is not None  # used: idle time restarts
    world.clock.now += IDLE_S - 100
    assert await world.console.find_session(session_id) is not None
    world.clock.now += IDLE_S + 1
    expired = await world.console.find_session(session_id)
    assert expired is None
    with pytest.raises(SignInRequiredError):
        await world.console.inbox(Visit(expired, catalogs()[Lang.EN], "/inbox", {}))
    assert world.routing.calls == []


async def test_a_busy_session_ends_at_its_maximum_lifetime(world: World) -> None:
    session_id, _ = await world.session("t-auditor")
    while world.clock.now + IDLE_S - 100 <= 1_000_000.0 + MAX_S:
        world.clock.now += IDLE_S - 100
        assert await world.console.find_session(session_id) is not None
    world.clock.now += IDLE_S - 100
    assert await world.console.find_session(session_id) is None
    assert world.backend.values == {}  # and it is gone from the store


async def test_signing_out_ends_the_session_with_the_sessions_own_form_only(
    world: World,
) -> None:
    session_id, session = await world.session("t-supervisor")
    visit = Visit(session, catalogs()[Lang.EN], "/signout", {})
    with pytest.raises(FormRejectedError):
        await world.console.sign_out(visit, {"csrf": "forged"}, session_id)
    assert await world.console.find_session(session_id) is not None
    await world.console.sign_out(visit, {"csrf": session.csrf}, session_id)
    assert await world.console.find_session(session_id) is None
