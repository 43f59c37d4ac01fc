"""What the fuzzing of the services' APIs (`test_fuzz_apis.py`) found, each pinned on the real
system: the request that got a 500 now gets a 4xx naming the field, and the values next to it
are still served."""

from __future__ import annotations

import httpx
import pytest

from services.audit.entrypoints.http import MAX_LEAF_INDEX
from testkit.console import console_session
from testkit.system import RunningSystem

pytestmark = [pytest.mark.integration]


async def test_an_audit_search_after_a_leaf_beyond_64_bits_is_a_422_naming_it(
    system: RunningSystem, client: httpx.AsyncClient
) -> None:
    # It overflowed the database driver (SQLite INTEGER) and answered 500.
    url = f"{system.urls['audit']}/v1/audit/search"
    headers = system.headers("auditor")
    too_far = await client.get(url, params={"after": MAX_LEAF_INDEX + 1}, headers=headers)
    assert too_far.status_code == 422, too_far.text
    assert too_far.json()["field"] == "after"
    furthest = await client.get(url, params={"after": MAX_LEAF_INDEX}, headers=headers)
    assert furthest.status_code == 200, furthest.text
    assert furthest.json()["entries"] == []


async def test_a_supervisors_page_fragment_that_is_no_region_of_it_is_a_422(
    system: RunningSystem,
) -> None:
    # The page looked the region up in its tables and answered 500 (KeyError).
    console = system.urls["console"]
    session, _ = await console_session(console, system, "supervisor-erbil-cpu")
    async with httpx.AsyncClient(base_url=console, cookies=session, timeout=20) as browser:
        unknown = await browser.get("/supervise", params={"fragment": "null"})
        assert unknown.status_code == 422, unknown.text
        assert "fragment" in unknown.text
        region = await browser.get("/supervise", params={"fragment": "escalations"})
        assert region.status_code == 200, region.text
