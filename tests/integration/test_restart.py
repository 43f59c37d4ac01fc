"""Restarting the services keeps the SQLite ledger and resumes from committed offsets."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.reports import SAMPLE_REPORT, post_report, trail
from testkit.system import start_system
from testkit.waiting import wait_for

# Two systems start one after the other: on a loaded 2-core machine each can take a minute.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(360)]


async def test_ledger_and_progress_survive_a_restart(
    stack_env: dict[str, str], tmp_path: Path, client: httpx.AsyncClient
) -> None:
    var_dir, prefix = tmp_path / "var", f"ocsea-restart-{uuid.uuid4().hex[:8]}"
    first = start_system(stack_env, var_dir, prefix)
    try:
        response = await post_report(client, first, SAMPLE_REPORT)
        assert response.status_code == 202
        case_id = response.json()["case_id"]

        async def three() -> list[Any] | None:
            # received, triaged, the child protection and police tasks and their dispatches
            entries = await trail(client, first, case_id)
            return entries if len(entries) >= 6 else None

        before = await wait_for(three, what="the trail before the restart")
    finally:
        first.stop()
    assert first.process.returncode == 0, first.log_file.read_text()[-3000:]

    second = start_system(stack_env, var_dir, prefix)
    try:
        # Read at once: the entries were on disk before the restart, not re-derived after.
        assert await trail(client, second, case_id) == before
        response = await post_report(client, second, SAMPLE_REPORT)
        new_case = response.json()["case_id"]

        async def new_trail() -> list[Any] | None:
            entries = await trail(client, second, new_case)
            return entries if len(entries) >= 3 else None

        entries = await wait_for(new_trail, what="a new case's trail after the restart")
        assert min(e["leaf_index"] for e in entries) > max(e["leaf_index"] for e in before)
        # Committed offsets held: the first case was not recorded a second time.
        assert await trail(client, second, case_id) == before
    finally:
        second.stop()
