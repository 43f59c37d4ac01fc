"""The failure drills, CI profile (`ocsea drill --profile ci`), on a private throwaway stack
of their own (they stop its Kafka, Redis and PostgreSQL, never the shared stack's).

Each drill streams reports, injects one fault mid-stream, and checks the end state against
every `202`. Every zero that belongs must be one: nothing lost, nothing doubled, no timer lost
or fired twice, nothing dead-lettered, and the ledger verifying against the checkpoint taken
before the fault.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drills.faults import DRILL_NAMES

REPO = Path(__file__).resolve().parents[2]
# About seven minutes on a loaded 2-core machine; the margin is for a slower CI host.
WITHIN_S = 1_200

pytestmark = [pytest.mark.integration, pytest.mark.timeout(WITHIN_S + 60)]


def test_every_drill_of_the_ci_profile_holds_every_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ocsea.cli", "drill", "--profile", "ci"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WITHIN_S,
        check=False,
    )
    shown = f"stdout:\n{result.stdout}\nstderr (last lines):\n{result.stderr[-6000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, shown
    figures = json.loads(lines[-1])
    drills = {d["name"]: d for d in figures["drills"]}
    assert list(drills) == list(DRILL_NAMES), shown
    # Every drill ran through, with reports and timers to check, and held every zero: all are
    # checked before the assertion, so a failure names every drill that broke something.
    zeros = (
        "lost",
        "doubled",
        "timers_lost",
        "timers_twice",
        "timers_unexpected",
        "dead_lettered",
    )
    broken = {
        name: [f"{key} {drill[key]}" for key in zeros if drill[key]]
        + ([] if drill["ledger_verified"] is True else ["ledger not verified"])
        + ([] if drill["error"] is None else [f"error: {drill['error']}"])
        + ([] if drill["accepted"] > 0 else ["no report accepted"])
        + ([] if drill["timers_due"] > 0 else ["no timer was due"])
        for name, drill in drills.items()
    }
    assert {name: found for name, found in broken.items() if found} == {}, shown
    assert figures["ok"] is True, shown
    assert result.returncode == 0, shown
