"""Schemathesis against every HTTP service of the running system: each one's own OpenAPI
document, valid and invalid requests on every operation, with credentials that reach the
handlers, and not one server error and not one hang.

Intake is fuzzed on a Kafka and Redis of its own (`test_intake_own_stack.py`: its generated
reports must not fill the shared topics); every other service is fuzzed here, on the session's
system. Each run first seeds a case of its own (a child's report, assigned to Erbil's child
protection unit), and the hooks (`tests/fuzz_hooks.py`) make its ids (and the directory's
codes) the schema's examples and put them into about half the generated requests, so a real
task's commands, a real case's triage and override, and its ledger trail are reached, not
only validation and the access rule's 404. Ids found in responses are not reused (`CONFIG`):
on the shared Redis they may be another test's tasks, which a generated command must not
change.

A run passes only if schemathesis saw no failure, tested every operation, got no 5xx to any
request it made (its report holds every response), some of the seeded case's operations
answered 2xx (the credentials and ids do reach the handlers), and no service logged an
unhandled exception while it ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.directory import Directory, load_directory
from contracts.events import Classification, OverrideReason, Priority
from ocsea.runtime.settings import Settings
from testkit.console import console_session
from testkit.reports import child_report, cpu_task
from testkit.system import REPO, RunningSystem, system_services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

EXAMPLES_PER_OPERATION = 20
RUN_TIMEOUT_S = 240
REQUEST_TIMEOUT_S = 20  # a request still unanswered then is a hang, and fails the run
FUZZED_ELSEWHERE = {"intake": "tests/integration/test_intake_own_stack.py"}

# Schemathesis settings the CLI has no flags for: no ids taken from responses in any phase.
CONFIG = """\
[phases.examples.extra-data-sources]
responses = false
[phases.coverage.extra-data-sources]
responses = false
[phases.fuzzing.extra-data-sources]
responses = false
"""


@dataclass(frozen=True)
class Target:
    principal: str
    """Whose credential the requests carry: a bearer token, or the console's session."""
    reached: tuple[str, ...]
    """Operations that must answer 2xx at least once: proof the handlers were reached."""
    values: tuple[str, ...] = ("case_id",)
    """The parameters and body fields that get real values (`known_values`)."""
    examples: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """"METHOD path" → a valid body, sent with the seeded case's ids."""


TARGETS = {
    # A supervisor of the unit holding the case's task: reads and overrides its triage.
    "triage": Target(
        "supervisor-erbil-cpu",
        ("GET /v1/triage/cases/{case_id}", "POST /v1/triage/cases/{case_id}/override"),
        examples={
            "POST /v1/triage/cases/{case_id}/override": {
                "priority": Priority.P2.value,
                "reason_code": OverrideReason.OTHER.value,
                "reason": "fuzzed: the example override",
            }
        },
    ),
    "routing": Target(
        "supervisor-erbil-cpu",
        ("GET /v1/cases/{case_id}", "GET /v1/tasks/{task_id}"),
        ("case_id", "task_id", "reason", "outcome", "agency_id"),
    ),
    "audit": Target(
        "auditor",
        ("GET /v1/audit/cases/{case_id}/trail", "GET /v1/audit/cases/{case_id}/export"),
    ),
    # A supervisor's session, and the auditor's for the auditor's pages.
    "console": Target(
        "supervisor-erbil-cpu",
        ("GET /tasks/{task_id}", "GET /cases/{case_id}", "GET /audit/cases/{case_id}"),
        ("case_id", "task_id", "task"),
    ),
}


def test_every_http_service_is_fuzzed() -> None:
    assert set(TARGETS) | set(FUZZED_ELSEWHERE) == set(system_services())


@dataclass(frozen=True)
class Seed:
    case_id: str
    task_id: str


async def seed_case(client: httpx.AsyncClient, system: RunningSystem) -> Seed:
    response = await client.post(
        f"{system.urls['intake']}/v1/reports",
        json=child_report(f"Fuzz{uuid.uuid4().hex}"),
        headers=system.headers("partner-hotline"),
    )
    assert response.status_code == 202, response.text
    case_id = response.json()["case_id"]
    task = await cpu_task(client, system, case_id)
    return Seed(case_id, task["task_id"])


def known_values(seed: Seed, directory: Directory) -> dict[str, list[str]]:
    """Real values by parameter or field name: the seeded case's ids, the directory's codes."""
    return {
        "case_id": [seed.case_id],
        "task_id": [seed.task_id],
        "task": [seed.task_id],  # the console's override names its task in `?task=`
        "reason": sorted(
            {*directory.decline_reasons, *directory.escalation_reasons, *directory.reassign_reasons}
        ),
        "outcome": list(directory.outcome_codes),
        "agency_id": [agency.id for agency in directory.agencies],
    }


async def fuzz_context(
    service: str, target: Target, seed: Seed, system: RunningSystem
) -> tuple[dict[str, Any], list[str]]:
    """The hooks' context (see `tests/fuzz_hooks.py`) and the CLI's credential flags."""
    directory = load_directory(Settings().routing_directory_file)
    known = known_values(seed, directory)
    context: dict[str, Any] = {
        "values": {name: known[name] for name in target.values},
        "examples": target.examples,
    }
    if service != "console":
        return context, ["--header", f"Authorization: Bearer {system.token(target.principal)}"]
    console = system.urls["console"]
    session, csrf = await console_session(console, system, target.principal)
    auditors_session, _ = await console_session(console, system, "auditor")
    context["cookies"] = [["/audit", auditors_session], ["/", session]]
    common = {"csrf": [csrf], "confirmed": ["yes", "no"]}
    context["forms"] = {
        "/tasks/{task_id}/{command}": {
            **common,
            "reason": known["reason"],
            "outcome": known["outcome"],
        },
        "/cases/{case_id}/override": {
            **common,
            "priority": [p.value for p in Priority],
            "classification": [c.value for c in Classification],
            "reason_code": [r.value for r in OverrideReason],
            "reason": ["fuzzed: a reason of some length"],
            "idempotency_key": [uuid.uuid4().hex],
        },
    }
    return context, []


def responses_by_operation(report: Path) -> dict[str, Counter[int]]:
    """Every response schemathesis got, by operation and status (its NDJSON report)."""
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for interaction in recorder.get("interactions", {}).values():
            if interaction.get("response"):
                statuses[recorder["label"]][interaction["response"]["status_code"]] += 1
    return statuses


def unhandled_exceptions(log_file: Path, offset: int) -> list[str]:
    """Lines of the system's log, from `offset`, where a request ended in an exception that
    no handler answered (uvicorn then answers a bare 500)."""
    with log_file.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") in ("error", "critical") and record.get("logger") == "uvicorn.error":
            found.append(line)
    return found


@pytest.mark.parametrize("service", list(TARGETS))
async def test_generated_requests_never_meet_a_server_error(
    service: str, system: RunningSystem, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    target = TARGETS[service]
    seed = await seed_case(client, system)
    context, credentials = await fuzz_context(service, target, seed, system)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "events.ndjson"
    log_offset = system.log_file.stat().st_size
    result = await asyncio.to_thread(
        subprocess.run,
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file", str(config),
            "run",
            f"{system.urls[service]}/openapi.json",
            "--checks", "not_a_server_error",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            # One worker: hypothesis describes strategies with `ast.parse`, which CPython 3.11
            # can break on when threads race ("AST constructor recursion depth mismatch").
            "--workers", "1",
            "--request-timeout", str(REQUEST_TIMEOUT_S),
            "--generation-database", "none",
            "--no-color",
            *credentials,
            "--report", "ndjson",
            "--report-ndjson-path", str(report),
            "--report-dir", str(tmp_path),
        ],
        cwd=tmp_path,  # schemathesis keeps state in its working directory
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
            "OCSEA_FUZZ_CONTEXT": json.dumps(context),
        },
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert selected, output[-3000:]
    assert tested, output[-3000:]
    assert cases, output[-3000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 3
    assert int(cases.group(1)) == int(cases.group(2)) > 0

    statuses = responses_by_operation(report)
    server_errors = {
        operation: sorted(status for status in counts if status >= 500)
        for operation, counts in statuses.items()
        if any(status >= 500 for status in counts)
    }
    assert server_errors == {}, output[-6000:]
    unreached = [op for op in target.reached if not any(200 <= s < 300 for s in statuses[op])]
    assert unreached == [], {op: dict(statuses[op]) for op in target.reached}
    assert unhandled_exceptions(system.log_file, log_offset) == []
