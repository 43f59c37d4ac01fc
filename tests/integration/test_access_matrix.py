"""The access matrix: every HTTP route of every service × every role, on the real system.

The routes are enumerated from the apps themselves (each service's `build(settings)`, as
`ocsea run` builds them), and the test fails on a route the matrix below does not classify, so
a new route cannot be forgotten. The roles cover every `Role` of `ocsea.runtime.auth` (the test
fails on a new one too), plus no credential and a bogus one.

For each cell one request is made: the allowed roles get their answer, every other role gets
401, 403 or 404, and no refusal carries data (no id of the case, its report or tasks, none of
its personal data, no counts). Roles with no grounds on the case learn nothing of it from any
answer, allowed or not. Commands that change a task are answered for the roles allowed them
on a task of their own (`test_task_commands_answer_those_who_hold_the_task`); everyone else
tries them on the matrix case, which they must not touch.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount, Route

from ocsea.runner import SERVICES
from ocsea.runtime.auth import Role
from ocsea.runtime.settings import Settings
from testkit.system import RunningSystem
from testkit.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WITHIN_S = 90  # the system also handles what other sessions publish on the shared topics
CONCURRENCY = 8

# Each role of the matrix, and the demo principal that plays it (None: no credential).
ROLES: dict[str, str | None] = {
    "none": None,
    "bogus": None,
    "partner": "partner-hotline",
    "other_partner": "partner-ngo",
    "officer": "officer-erbil-cpu",
    "other_officer": "officer-kri-legal-aid",
    "supervisor": "supervisor-erbil-cpu",
    "other_supervisor": "supervisor-kri-legal-aid",
    "coordinator": "coordinator",
    "auditor": "auditor",
    "operator": "operator",
}
UNAUTHENTICATED = frozenset({"none", "bogus"})
STAFF = frozenset({"officer", "other_officer", "supervisor", "other_supervisor", "coordinator"})
# The roles that may learn of the matrix case: its reporter, those holding its task, auditors.
ENTITLED = frozenset({"partner", "officer", "supervisor", "auditor"})
DENIED = frozenset({401, 403, 404})

Allowed = Mapping[str, frozenset[int]]
"""Role → the statuses its answer may have; a role not named is refused."""


def allow(*roles: str, status: int | frozenset[int] = 200) -> Allowed:
    statuses = frozenset({status}) if isinstance(status, int) else status
    return {role: statuses for role in roles}


EVERYONE = allow(*ROLES)
OPERATIONS = {
    ("GET", path): EVERYONE
    for path in (
        "/openapi.json",
        "/docs",
        "/redoc",
        "/api-docs-assets/{path}",
        "/healthz",
        "/readyz",
        "/metrics",
    )
}
HELD = allow("officer", "supervisor", status=frozenset({200, 409}))
"""Task commands: answered (done, or refused by the task's state) on a task of one's own."""

MATRIX: dict[str, dict[tuple[str, str], Allowed]] = {
    "intake": {
        **OPERATIONS,
        ("POST", "/v1/reports"): allow("partner", "other_partner", status=202),
        ("POST", "/v1/reports/cybertipline"): allow("partner", "other_partner", status=202),
        ("POST", "/v1/reports/batch"): allow("partner", "other_partner", status=202),
        ("GET", "/v1/reports/{report_id}"): allow("partner"),
    },
    "triage": {
        **OPERATIONS,
        ("GET", "/v1/triage/cases/{case_id}"): allow("supervisor", "auditor"),
        ("POST", "/v1/triage/cases/{case_id}/override"): allow("supervisor"),
    },
    "routing": {
        **OPERATIONS,
        ("GET", "/v1/tasks"): allow(*STAFF),
        ("GET", "/v1/tasks/{task_id}"): allow("officer", "supervisor"),
        **{
            ("POST", f"/v1/tasks/{{task_id}}/{command}"): HELD
            for command in ("acknowledge", "accept", "decline", "resolve", "escalate")
        },
        ("POST", "/v1/tasks/{task_id}/reassign"): {"supervisor": HELD["supervisor"]},
        ("GET", "/v1/cases/{case_id}"): allow("officer", "supervisor"),
        ("GET", "/v1/cases/{case_id}/grounds"): allow("officer", "supervisor"),
        # Erasing a case's personal data: operators alone (on a case of its own, see `fill`).
        ("POST", "/v1/cases/{case_id}/erasure"): allow("operator"),
    },
    "audit": {
        **OPERATIONS,
        **{
            (method, path): allow("auditor")
            for method, path in (
                ("GET", "/v1/audit/cases/{case_id}/trail"),
                ("GET", "/v1/audit/cases/{case_id}/export"),
                ("GET", "/v1/audit/checkpoint"),
                ("POST", "/v1/audit/checkpoint"),
                ("GET", "/v1/audit/public-key"),
                ("GET", "/v1/audit/proofs/inclusion"),
                ("GET", "/v1/audit/proofs/consistency"),
                ("GET", "/v1/audit/entries"),
                ("GET", "/v1/audit/search"),
                ("GET", "/v1/audit/conflicts"),
                ("GET", "/v1/audit/gaps"),
                ("GET", "/v1/audit/tlog/checkpoint"),
                ("GET", "/v1/audit/tlog/verifier-key"),
            )
        },
    },
    # The console signs people in (officers, supervisors, auditors) and calls the services
    # with their own credential; partners, operators and bogus credentials get no session.
    "console": {
        ("GET", "/openapi.json"): EVERYONE,
        ("GET", "/healthz"): EVERYONE,
        ("GET", "/readyz"): EVERYONE,
        ("GET", "/static/{path}"): EVERYONE,
        ("GET", "/"): allow(*ROLES, status=frozenset({200, 303})),
        ("GET", "/signin"): EVERYONE,
        # An empty sign-in form is refused as such (422, naming the credential field) before
        # any credential is looked at; a bogus one is 401, a partner's or operator's 403.
        ("POST", "/signin"): {**allow(*STAFF, "auditor", status=303), **allow("none", status=422)},
        ("POST", "/signout"): allow(*ROLES, status=303),
        ("GET", "/inbox"): allow(*STAFF),
        ("GET", "/supervise"): allow("supervisor", "other_supervisor", "coordinator"),
        ("GET", "/tasks/{task_id}"): allow("officer", "supervisor"),
        # Without `confirmed`, the confirmation page: nothing is changed.
        ("POST", "/tasks/{task_id}/{command}"): allow("officer", "supervisor"),
        ("POST", "/cases/{case_id}/override"): allow("supervisor"),
        ("GET", "/cases/{case_id}"): allow("officer", "supervisor"),
        ("GET", "/audit"): allow("auditor"),
        ("GET", "/audit/cases/{case_id}"): allow("auditor"),
    },
}
CONSOLE_ROLES = frozenset({*STAFF, "auditor"})


@dataclass(frozen=True)
class Endpoint:
    service: str
    method: str
    path: str


def enumerate_routes(settings: Settings) -> tuple[list[Endpoint], list[str]]:
    """Every (method, path) each service's app serves, and a note for each service left out.
    HEAD, which Starlette adds to its own GET routes, is GET without a body."""
    found: list[Endpoint] = []
    skipped: list[str] = []
    for name, spec in SERVICES.items():
        if spec.optional and not spec.available():
            skipped.append(f"{name}: {spec.module} is not there")
            continue
        app = spec.build(settings)
        # Routes of included routers, with their prefixes (FastAPI keeps them apart).
        for context in iter_route_contexts(app.routes):
            route, path = context.original_route, context.path or ""
            if isinstance(route, Mount):
                found.append(Endpoint(name, "GET", f"{path}/{{path}}"))
            elif isinstance(route, APIRoute | Route):
                methods = context.methods or ()
                found += [Endpoint(name, m, path) for m in methods if m != "HEAD"]
            else:
                raise AssertionError(f"{name}: a route the matrix cannot classify: {route!r}")
    return found, skipped


@dataclass
class World:
    """The matrix case (a child's case in Erbil, reported by partner-hotline), and a second
    one whose child protection task the allowed roles work through the commands on."""

    case_id: str
    report_id: str
    task_id: str
    task_ids: set[str]
    priority: str
    marker: str
    held_task_id: str
    erasable_case_id: str
    secrets: set[str] = field(default_factory=set)


def child_report(marker: str) -> dict[str, Any]:
    return {
        "source_reference": f"MATRIX-{uuid.uuid4().hex}",
        "channel": "hotline",
        "language": "ckb",
        "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
        "survivors": [{"name": marker, "age": 15}],
        "categories": ["sextortion"],
        "risk_flags": ["sextortion_deadline"],
        "narrative": f"{marker} narrative",
    }


async def open_case(
    client: httpx.AsyncClient, system: RunningSystem, marker: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Report a child's case; return the answer and the case's tasks once child protection
    and police both have theirs."""
    response = await client.post(
        f"{system.urls['intake']}/v1/reports",
        json=child_report(marker),
        headers=system.headers("partner-hotline"),
    )
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()

    async def assigned() -> list[dict[str, Any]] | None:
        tasks: list[dict[str, Any]] = []
        for officer in ("officer-erbil-cpu", "officer-krg-cybercrime"):
            found = await client.get(
                f"{system.urls['routing']}/v1/tasks",
                params={"case_id": accepted["case_id"]},
                headers=system.headers(officer),
            )
            assert found.status_code == 200, found.text
            tasks += found.json()
        return tasks if {t["agency_id"] for t in tasks} >= {"erbil-cpu", "krg-cybercrime"} else None

    tasks = await wait_for(assigned, within=WITHIN_S, what="the case's tasks")
    return accepted, tasks


@pytest.fixture(scope="module")
async def world(system: RunningSystem) -> World:
    marker = f"MatrixMarker{uuid.uuid4().hex}"
    async with httpx.AsyncClient(timeout=20) as client:
        (accepted, tasks), (_, held) = await asyncio.gather(
            open_case(client, system, marker), open_case(client, system, f"{marker}Held")
        )
        # A third case, for the one cell that erases (the operator's): the others stay whole.
        erasable = await client.post(
            f"{system.urls['intake']}/v1/reports",
            json=child_report(f"{marker}Erasable"),
            headers=system.headers("partner-hotline"),
        )
        assert erasable.status_code == 202, erasable.text
    [cpu] = [t for t in tasks if t["agency_id"] == "erbil-cpu"]
    [held_cpu] = [t for t in held if t["agency_id"] == "erbil-cpu"]
    found = World(
        case_id=accepted["case_id"],
        report_id=accepted["report_id"],
        task_id=cpu["task_id"],
        task_ids={t["task_id"] for t in tasks},
        priority=cpu["priority"],
        marker=marker,
        held_task_id=held_cpu["task_id"],
        erasable_case_id=erasable.json()["case_id"],
    )
    found.secrets = {found.case_id, found.report_id, *found.task_ids, marker}
    found.secrets.add(found.erasable_case_id)
    return found


@pytest.fixture(scope="module")
def routes(system: RunningSystem) -> tuple[list[Endpoint], list[str]]:
    settings = Settings(
        var_dir=system.var_dir,
        kafka_bootstrap=system.bootstrap,
        redis_url=system.env["OCSEA_REDIS_URL"],
    )
    return enumerate_routes(settings)


def test_every_role_is_in_the_matrix(system: RunningSystem) -> None:
    """Each `Role` of the runtime is played (by two principals where a second one could
    see what the first may not); a new role fails here until the matrix names it."""
    played = {system.credentials[name]["role"] for name in ROLES.values() if name}
    assert played == {role.value for role in Role}
    assert system.credentials["coordinator"]["agency"] == "kri-coordination"


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_route_is_in_the_matrix(
    service: str, routes: tuple[list[Endpoint], list[str]]
) -> None:
    found, skipped = routes
    if any(note.startswith(f"{service}:") for note in skipped):
        pytest.skip(f"not in this tree, so not in the matrix: {skipped}")
    served = {(e.method, e.path) for e in found if e.service == service}
    assert served, f"{service} serves no route?"
    classified = set(MATRIX[service])
    assert served - classified == set(), f"{service}: routes the matrix does not classify"
    assert classified - served == set(), f"{service}: the matrix names routes no longer served"


# ---------------------------------------------------------------------------------- requests

CYBERTIPLINE = """<?xml version="1.0" encoding="UTF-8"?>
<report>
  <reportId>MATRIX-{ref}</reportId>
  <incidentSummary>
    <incidentType>Online Enticement of Children for Sexual Acts</incidentType>
    <incidentDateTime>2026-03-01T18:45:00-05:00</incidentDateTime>
  </incidentSummary>
</report>
"""


def adult_report(channel: str) -> dict[str, Any]:
    """A report with no personal data, for the partners' own submissions in the matrix."""
    return {
        "source_reference": f"MATRIX-{uuid.uuid4().hex}",
        "channel": channel,
        "language": "en",
        "incident": {"governorate": "duhok"},
        "survivors": [{"age": 30}],
        "categories": ["cyberbullying"],
    }


# A file each mounted directory serves.
MOUNTED = {"/static/{path}": "console.css", "/api-docs-assets/{path}": "favicon.png"}


def fill(path: str, world: World, task_id: str) -> str:
    case_id = world.erasable_case_id if path.endswith("/erasure") else world.case_id
    return (
        path.replace("{case_id}", case_id)
        .replace("{task_id}", task_id)
        .replace("{report_id}", world.report_id)
        .replace("{command}", "acknowledge")
        .replace("{path}", MOUNTED.get(path, "{path}"))
    )


def api_request(endpoint: Endpoint, role: str, world: World, task_id: str) -> dict[str, Any]:
    """The request of one cell: valid, so that only the access rule can refuse it."""
    path = fill(endpoint.path, world, task_id)
    request: dict[str, Any] = {"method": endpoint.method, "url": path}
    channel = "ngo" if role == "other_partner" else "hotline"
    if path == "/v1/reports":
        request["json"] = adult_report(channel)
    elif path == "/v1/reports/cybertipline":
        request["content"] = CYBERTIPLINE.format(ref=uuid.uuid4().hex).encode()
        request["headers"] = {"Content-Type": "application/xml"}
    elif path == "/v1/reports/batch":
        request["content"] = (json.dumps(adult_report(channel)) + "\n").encode()
        request["headers"] = {"Content-Type": "application/x-ndjson"}
    elif path.endswith("/override"):
        request["json"] = {
            "priority": world.priority,  # kept as it is: the matrix changes no case
            "reason_code": "risk_reassessed",
            "reason": "access matrix: the priority stays",
        }
    elif path.endswith("/erasure"):
        request["json"] = {"reason": "entered_in_error", "reference": "MATRIX-1"}
    elif path.endswith("/decline"):
        request["json"] = {"reason": "no_capacity"}
    elif path.endswith("/resolve"):
        request["json"] = {"outcome": "child_safeguarded"}
    elif path.endswith("/reassign"):
        request["json"] = {"agency_id": "sulaymaniyah-cpu", "reason": "capacity"}
    elif path == "/v1/audit/proofs/inclusion":
        request["params"] = {"leaf_index": 0, "tree_size": 1}
    elif path == "/v1/audit/proofs/consistency":
        request["params"] = {"first": 1, "second": 1}
    elif path == "/v1/audit/entries":
        request["params"] = {"from": 0, "to": 1}
    elif path == "/v1/audit/search":
        request["params"] = {"case_id": world.case_id}
    return request


def credential(system: RunningSystem, role: str) -> str | None:
    if role == "bogus":
        return "bogus-" + uuid.uuid4().hex
    name = ROLES[role]
    return system.token(name) if name else None


@dataclass(frozen=True)
class Cell:
    endpoint: Endpoint
    role: str
    url: str
    status: int
    body: str
    headers: httpx.Headers

    def __str__(self) -> str:
        e = self.endpoint
        return f"{e.service} {e.method} {e.path} as {self.role}: {self.status} {self.body[:300]}"


def problems(cell: Cell, allowed: Allowed, world: World) -> list[str]:
    """What is wrong with one cell's answer (nothing: an empty list)."""
    found: list[str] = []
    if cell.role in allowed:
        if cell.status not in allowed[cell.role]:
            found.append(f"allowed, expected {sorted(allowed[cell.role])}")
    elif cell.status not in DENIED:
        found.append("not allowed, expected 401/403/404")
    elif cell.role in UNAUTHENTICATED and cell.status != 401:
        found.append("no valid credential, expected 401")
    refused = cell.role not in allowed
    if refused or cell.role not in ENTITLED:
        # Ids the caller gave in the URL are theirs already; anything else is a leak.
        leaked = sorted(s for s in world.secrets if s not in cell.url and s in cell.body)
        if leaked:
            found.append(f"leaks {leaked}")
    if refused:
        for name in ("X-Total-Count", "X-Next-Cursor", "Link"):
            if name in cell.headers:
                found.append(f"a refusal with {name}")
        if cell.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(cell.body)
            if set(body) - {"code", "message", "field", "errors"} or body.get("errors"):
                found.append("a refusal carrying more than an error")
            if re.search(r"\d", str(body.get("message", ""))):
                found.append("a refusal message with a number in it")
    return found


async def ask_all(
    system: RunningSystem,
    cells: list[tuple[Endpoint, str]],
    world: World,
    *,
    task_id: str,
) -> list[Cell]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def ask(client: httpx.AsyncClient, endpoint: Endpoint, role: str) -> Cell:
        request = api_request(endpoint, role, world, task_id)
        token = credential(system, role)
        headers = {**request.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        base = system.urls[endpoint.service]
        async with gate:
            response = await client.request(
                **{**request, "url": base + request["url"]}, headers=headers
            )
        return Cell(
            endpoint, role, str(response.url), response.status_code, response.text, response.headers
        )

    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as client:
        return list(await asyncio.gather(*(ask(client, e, r) for e, r in cells)))


def changes_a_task(endpoint: Endpoint) -> bool:
    return (
        endpoint.service == "routing"
        and endpoint.method == "POST"
        and endpoint.path.startswith("/v1/tasks/{task_id}/")
    )


@pytest.mark.parametrize("service", ["intake", "triage", "routing", "audit"])
async def test_access_matrix(
    service: str, system: RunningSystem, world: World, routes: tuple[list[Endpoint], list[str]]
) -> None:
    endpoints = [e for e in routes[0] if e.service == service]
    allowed = MATRIX[service]
    cells = [
        (e, role)
        for e in endpoints
        for role in ROLES
        # Task commands by those allowed them are answered on their own task, further down.
        if not (changes_a_task(e) and role in allowed[(e.method, e.path)])
    ]
    answers = await ask_all(system, cells, world, task_id=world.task_id)
    wrong = [
        f"{cell}: {'; '.join(found)}"
        for cell in answers
        if (found := problems(cell, allowed[(cell.endpoint.method, cell.endpoint.path)], world))
    ]
    assert wrong == [], "\n".join(wrong)
    assert len(answers) == len(cells)


async def test_task_commands_answer_those_who_hold_the_task(
    system: RunningSystem, world: World
) -> None:
    """The allowed cells of the task commands, on the second case's child protection task, in
    an order that walks it through its life: each answered (200, or 409 when the task's state
    no longer allows it), never refused by the access rule."""
    steps = [
        ("officer", "acknowledge", 200),
        ("supervisor", "acknowledge", 409),  # already acknowledged
        ("supervisor", "accept", 200),
        ("officer", "accept", 409),
        ("officer", "escalate", 200),  # to the unit's supervisor
        ("supervisor", "escalate", 200),  # to the coordinator
        ("officer", "decline", 409),  # an accepted task is not declined
        ("officer", "resolve", 200),
        ("supervisor", "resolve", 409),
        ("supervisor", "decline", 409),
        ("supervisor", "reassign", 409),  # resolved: nothing to reassign
    ]
    covered = {(role, command) for role, command, _ in steps}
    expected = {
        (role, path.rsplit("/", 1)[1])
        for (method, path), allowed in MATRIX["routing"].items()
        if changes_a_task(Endpoint("routing", method, path))
        for role in allowed
    }
    assert covered == expected
    for role, command, status in steps:
        endpoint = Endpoint("routing", "POST", f"/v1/tasks/{{task_id}}/{command}")
        [cell] = await ask_all(system, [(endpoint, role)], world, task_id=world.held_task_id)
        assert cell.status == status, str(cell)


# ---------------------------------------------------------------------------------- console

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class ConsoleUser:
    role: str
    client: httpx.AsyncClient
    csrf: str | None = None


async def console_user(system: RunningSystem, role: str) -> tuple[ConsoleUser, Cell]:
    """A browser for the role: signed in when the console admits it; the sign-in is the
    role's cell of `POST /signin`."""
    base = system.urls["console"]
    client = httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False)
    form = await client.get("/signin")
    match = CSRF.search(form.text)
    assert form.status_code == 200, form.text[:500]
    assert match, form.text[:500]
    signin = await client.post(
        "/signin", data={"credential": credential(system, role) or "", "csrf": match.group(1)}
    )
    cell = Cell(
        Endpoint("console", "POST", "/signin"),
        role,
        str(signin.url),
        signin.status_code,
        signin.text,
        signin.headers,
    )
    user = ConsoleUser(role, client)
    if role == "bogus":
        # And a forged session cookie on top of the refused sign-in.
        client.cookies.set("ocsea_session", uuid.uuid4().hex)
    if signin.status_code == 303:
        landing = await client.get(signin.headers["location"])
        found = CSRF.search(landing.text)
        assert landing.status_code == 200, landing.text[:500]
        assert found, landing.text[:500]
        user.csrf = found.group(1)
    return user, cell


@pytest.mark.parametrize("service", ["console"])
async def test_console_access_matrix(
    service: str, system: RunningSystem, world: World, routes: tuple[list[Endpoint], list[str]]
) -> None:
    found, skipped = routes
    if service not in system.urls or any(n.startswith("console:") for n in skipped):
        pytest.skip(f"the console is not in this tree or not run here: {skipped}")
    endpoints = [e for e in found if e.service == service]
    allowed = MATRIX[service]
    signins = await asyncio.gather(*(console_user(system, role) for role in ROLES))
    users = {user.role: user for user, _ in signins}
    assert {r for r, u in users.items() if u.csrf} == CONSOLE_ROLES
    gate = asyncio.Semaphore(CONCURRENCY)

    async def ask(endpoint: Endpoint, user: ConsoleUser) -> Cell:
        path = fill(endpoint.path, world, world.task_id)
        request: dict[str, Any] = {}
        if endpoint.method == "POST":
            data: dict[str, str] = {"csrf": user.csrf} if user.csrf else {}
            if endpoint.path == "/cases/{case_id}/override":
                request["params"] = {"task": world.task_id}
                data |= {
                    "priority": world.priority,
                    "reason_code": "risk_reassessed",
                    "reason": "access matrix: not confirmed",
                }
            request["data"] = data
        async with gate:
            response = await user.client.request(endpoint.method, path, **request)
        return Cell(
            endpoint, user.role, str(response.url), response.status_code, response.text,
            response.headers,
        )  # fmt: skip

    try:
        last = {("POST", "/signin"), ("POST", "/signout")}
        answers = [cell for _, cell in signins]
        answers += await asyncio.gather(
            *(
                ask(e, users[role])
                for e in endpoints
                if (e.method, e.path) not in last
                for role in ROLES
            )
        )
        # Signing out last: it ends the sessions the other cells use.
        [signout] = [e for e in endpoints if (e.method, e.path) == ("POST", "/signout")]
        answers += await asyncio.gather(*(ask(signout, users[role]) for role in ROLES))
    finally:
        await asyncio.gather(*(user.client.aclose() for user in users.values()))
    wrong = [
        f"{cell}: {'; '.join(problem)}"
        for cell in answers
        if (problem := problems(cell, allowed[(cell.endpoint.method, cell.endpoint.path)], world))
    ]
    assert wrong == [], "\n".join(wrong)
    assert len(answers) == len(endpoints) * len(ROLES)
