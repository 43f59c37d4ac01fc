"""Stand-ins for the services behind the console: recorded calls and canned answers, so the
console's own behaviour (sessions, languages, forms, pages) is tested without the stack."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from contracts.directory import load_directory
from ocsea.runtime.auth import DemoAgency, ensure_demo_principals

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


CASE = {
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
