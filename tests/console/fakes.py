"""Stand-ins for what the console depends on: the services behind it (as an httpx transport for
the pages' tests, as in-memory ports for the use cases' tests), a session backend and clocks,
so the console's own behaviour is tested without the stack."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from contracts.directory import load_directory
from ocsea.runtime.auth import DemoAgency, Principal, ensure_demo_principals
from services.console.ports import ServiceCallError, TaskPage

NOW = datetime.now(UTC)
CASE_ID = uuid.UUID("0d4c2a6e-1111-4a4a-8b8b-123456789abc")
TASK_ID = uuid.UUID("7e1f0000-2222-4b4b-9c9c-abcdefabcdef")


def task_json(
    task_id: uuid.UUID = TASK_ID,
    *,
    status: str = "assigned",
    priority: str = "P1",
    ack_in_s: float = 600,
    escalation_level: int = 0,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    ack_due = now + timedelta(seconds=ack_in_s)
    return {
        "task_id": str(task_id),
        "case_id": str(CASE_ID),
        "report_id": str(uuid.uuid4()),
        "agency_id": "erbil-cpu",
        "agency_type": "child_protection",
        "unit_id": "erbil-cpu-team-1",
        "role": "child_protection",
        "status": status,
        "version": 1,
        "priority": priority,
        "classification": "TF-CSEA",
        "reason": "child survivor",
        "criteria": [],
        "assigned_at": (now - timedelta(minutes=3)).isoformat(),
        "acknowledge_due_at": ack_due.isoformat(),
        "first_action_due_at": (now + timedelta(hours=1)).isoformat(),
        "seconds_to_acknowledge": ack_in_s if status == "assigned" else None,
        "seconds_to_first_action": 3600.0 if status in ("assigned", "acknowledged") else None,
        "overdue": ack_in_s < 0 and status == "assigned",
        "escalation_level": escalation_level,
        "escalated_to": None,
        "escalated_to_agency": None,
        "acknowledged_at": None,
        "accepted_at": None,
        "resolved_at": None,
        "outcome": None,
        "decline_reason": None,
        "previous_task_id": None,
        "replaced_by": None,
        "deliveries": {},
    }


CASE: dict[str, Any] = {
    "case_id": str(CASE_ID),
    "triage": {
        "report_id": str(uuid.uuid4()),
        "classification": "TF-CSEA",
        "presumed_child": False,
        "age_used": 15,
        "age_basis": "stated_age",
        "priority": "P1",
        "score": 130,
        "factors": [
            {"name": "sextortion_deadline", "points": 60, "source_field": "risk_flags"},
            {"name": "child_survivor", "points": 30, "source_field": "survivors"},
        ],
    },
    "reports": [
        {
            "report_id": str(uuid.uuid4()),
            "partner_id": "partner-hotline",
            "channel": "hotline",
            "language": "ckb",
            "received_at": NOW.isoformat(),
            "incident": {
                "occurred_at": NOW.isoformat(),
                "governorate": "erbil",
                "district": None,
                "platform": "instagram",
            },
            "survivors": [{"survivor_ref": "s1", "stated_age": 15}],
            "categories": ["sextortion"],
            "risk_flags": ["sextortion_deadline"],
            "police_referral_consent": None,
            "personal": {
                "survivors": [
                    {
                        "survivor_ref": "s1",
                        "name": "MARKER-NAME-Shilan",
                        "contact": {"phone": "+9647501234567"},
                    }
                ],
                "narrative": "MARKER-NARRATIVE",
            },
            "personal_status": "shown",
        }
    ],
    "tasks": [
        {
            "task_id": str(TASK_ID),
            "agency_id": "erbil-cpu",
            "role": "child_protection",
            "status": "assigned",
            "priority": "P1",
        }
    ],
    "access_event_id": str(uuid.uuid4()),
}

LEAF = json.dumps(
    {
        "action": "task.acknowledged",
        "actor": {"agency": "erbil-cpu", "id": "officer-erbil-cpu", "kind": "officer"},
        "agency": "erbil-cpu",
        "case_id": str(CASE_ID),
        "leaf_index": 0,
        "time": NOW.isoformat(),
    },
    separators=(",", ":"),
    sort_keys=True,
)
CHECKPOINT = {
    "origin": "ocsea-audit",
    "tree_size": 1,
    "root_hash": "ab" * 32,
    "timestamp": "2026-11-20T18:30:00.000Z",
    "key_id": "cd" * 32,
    "public_key": base64.b64encode(b"k" * 32).decode(),
    "signature": base64.b64encode(b"s" * 64).decode(),
}


@dataclass
class FakeServices:
    """Answers like routing, triage and audit; `refuse` makes a path answer an error."""

    calls: list[httpx.Request] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=lambda: [task_json()])
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        path = request.url.path
        for prefix, (status, code) in self.refuse.items():
            if path.startswith(prefix):
                return httpx.Response(status, json={"code": code, "message": code})
        if path == "/v1/tasks":
            return httpx.Response(
                200, json=self.tasks, headers={"X-Total-Count": str(len(self.tasks))}
            )
        if path.startswith("/v1/tasks/") and request.method == "GET":
            return httpx.Response(200, json=self.tasks[0])
        if path.startswith("/v1/tasks/"):
            return httpx.Response(200, json=self.tasks[0])
        if path.startswith("/v1/cases/"):
            return httpx.Response(200, json=CASE)
        if path.endswith("/override"):
            return httpx.Response(200, json=CASE["triage"])
        if path.startswith("/v1/triage/cases/"):
            return httpx.Response(
                200, json={"case_id": str(CASE_ID), "current": CASE["triage"], "history": []}
            )
        if path.endswith("/trail"):
            return httpx.Response(
                200,
                json={
                    "case_id": str(CASE_ID),
                    "entries": [
                        {"leaf_index": 0, "leaf_hash": "ef" * 32, "entry": json.loads(LEAF)}
                    ],
                },
            )
        if path.endswith("/export"):
            return httpx.Response(
                200,
                json={
                    "format": "ocsea-audit-case-bundle/v1",
                    "case_id": str(CASE_ID),
                    "checkpoint": CHECKPOINT,
                    "entries": [{"leaf_index": 0, "leaf": LEAF, "inclusion_proof": []}],
                },
            )
        if path == "/v1/audit/checkpoint":
            return httpx.Response(200, json=CHECKPOINT)
        return httpx.Response(404, json={"code": "not_found", "message": path})

    def authorizations(self) -> list[str]:
        return [r.headers.get("authorization", "") for r in self.calls]


def demo_credentials(var_dir: Path) -> dict[str, dict[str, str]]:
    directory = load_directory()
    credentials = var_dir / "demo-credentials.json"
    ensure_demo_principals(
        var_dir / "principals.json",
        credentials,
        [DemoAgency(id=a.id, type=a.type, supervisors=a.supervisors) for a in directory.agencies],
    )
    loaded: dict[str, dict[str, str]] = json.loads(credentials.read_text())
    return loaded


class Clock:
    """Seconds since the epoch, moved by the test (the sessions' clock)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class MemoryBackend:
    """A session backend in a dict, with expiry on `clock`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.values: dict[str, tuple[bytes, float]] = {}

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        self.values[key] = (value, self.clock() + ttl_s)

    async def get(self, key: str, ttl_s: int) -> bytes | None:
        found = self.values.get(key)
        if found is None or found[1] <= self.clock():
            self.values.pop(key, None)
            return None
        self.values[key] = (found[0], self.clock() + ttl_s)
        return found[0]

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)

    async def ping(self) -> None:
        return None


# ----------------------------------------------------------------------------- in-memory ports


@dataclass(frozen=True)
class Call:
    method: str
    token: str
    args: tuple[Any, ...]


@dataclass
class _Recording:
    """Records every call; `refuse[method]` makes that method fail as a service would."""

    calls: list[Call] = field(default_factory=list)
    refuse: dict[str, ServiceCallError] = field(default_factory=dict)

    def _called(self, method: str, token: str, *args: Any) -> None:
        self.calls.append(Call(method, token, args))
        if method in self.refuse:
            raise self.refuse[method]

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]


@dataclass
class FakeRouting(_Recording):
    """Routing's API: each token sees the tasks listed for it, and nothing else."""

    tasks_of: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    next_cursor: str | None = None
    case_found: dict[str, Any] = field(default_factory=lambda: CASE)

    async def tasks(self, token: str, query: dict[str, str]) -> TaskPage:
        self._called("tasks", token, dict(query))
        mine = self.tasks_of.get(token, [])
        return TaskPage(tasks=list(mine), total=len(mine), next_cursor=self.next_cursor)

    async def task(self, token: str, task_id: uuid.UUID) -> dict[str, Any]:
        self._called("task", token, task_id)
        for task in self.tasks_of.get(token, []):
            if task["task_id"] == str(task_id):
                return task
        raise ServiceCallError(404, "task_not_found")

    async def command(
        self, token: str, task_id: uuid.UUID, command: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        self._called("command", token, task_id, command, body)
        return await self.task(token, task_id)

    async def case(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        self._called("case", token, case_id)
        return self.case_found


@dataclass
class FakeTriage(_Recording):
    async def case_triage(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        self._called("case_triage", token, case_id)
        return {"case_id": str(case_id), "current": CASE["triage"], "history": []}

    async def override(
        self, token: str, case_id: uuid.UUID, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        self._called("override", token, case_id, dict(body), idempotency_key)
        return dict(CASE["triage"])


@dataclass
class FakeAudit(_Recording):
    trail_entries: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"leaf_index": 0, "leaf_hash": "ef" * 32, "entry": json.loads(LEAF)}
        ]
    )
    bundle_entries: list[dict[str, Any]] = field(
        default_factory=lambda: [{"leaf_index": 0, "leaf": LEAF, "inclusion_proof": []}]
    )

    async def trail(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        self._called("trail", token, case_id)
        return {"case_id": str(case_id), "entries": self.trail_entries}

    async def case_bundle(self, token: str, case_id: uuid.UUID) -> dict[str, Any]:
        self._called("case_bundle", token, case_id)
        return {
            "format": "ocsea-audit-case-bundle/v1",
            "case_id": str(case_id),
            "checkpoint": CHECKPOINT,
            "entries": self.bundle_entries,
        }

    async def checkpoint(self, token: str) -> dict[str, Any]:
        self._called("checkpoint", token)
        return CHECKPOINT


@dataclass
class FakeCredentials:
    principals: dict[str, Principal] = field(default_factory=dict)

    def authenticate(self, token: str) -> Principal | None:
        return self.principals.get(token)
