"""The console end to end: the real stack (`ocsea run`), the console, and headless Chromium.

Debian's Chromium is driven by Playwright (`executable_path`; no browser is downloaded).
Screenshots of the officer's inbox and the auditor's view, in English, Sorani and Arabic, go to
`var/test-artifacts/console/` (not committed). The module runs its own system, since the last
test changes its ledger behind the audit service's back.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ocsea.runtime.settings import Settings
from services.audit.domain.entry import canonical_json
from services.console.bootstrap import build
from testkit.audit import tamper
from testkit.routing_harness import start_groups_at_the_end
from testkit.system import REPO, RunningSystem, free_port, start_system
from testkit.waiting import wait_for

# A system of its own and a browser: setting up takes longer than the default allows.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "var" / "test-artifacts" / "console"
WITHIN_S = 50.0  # the system also handles what other sessions publish meanwhile
LANGS = ("en", "ckb", "ar")

P1_REPORT: dict[str, Any] = {
    "channel": "hotline",
    "language": "ckb",
    "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
    "survivors": [{"name": "Console Survivor Marker", "age": 15}],
    "categories": ["sextortion"],
    "risk_flags": ["sextortion_deadline"],
}


@pytest.fixture(scope="module")
async def system(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    """A system of this module's own whose consumers start where the topics end now, so it
    does not first replay the shared stack's history (other sessions' reports)."""
    prefix = f"ocsea-test-console-{uuid.uuid4().hex[:8]}"
    await start_groups_at_the_end(stack_env["OCSEA_KAFKA_BOOTSTRAP"], prefix)
    running = start_system(stack_env, tmp_path_factory.mktemp("console") / "var", prefix)
    yield running
    running.stop()


class ConsoleServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own
        pass


@pytest.fixture(scope="module")
def console(system: RunningSystem) -> Iterator[str]:
    """The console's URL: the one `ocsea run` started, else one started here on its services."""
    if "console" in system.urls:
        yield system.urls["console"]
        return
    port = free_port()
    settings = Settings(
        kafka_bootstrap=system.bootstrap,
        redis_url=system.env["OCSEA_REDIS_URL"],
        var_dir=system.var_dir,
        console_routing_url=system.urls["routing"],
        console_triage_url=system.urls["triage"],
        console_audit_url=system.urls["audit"],
        console_poll_interval_s=1.0,
    )
    server = ConsoleServer(
        uvicorn.Config(build(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if server.started:
            break
        thread.join(0.05)
    assert server.started, "the console did not start"
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def p1_case(system: RunningSystem) -> dict[str, str]:
    """A new P1 report from a hotline; its case and the Erbil child protection unit's task."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{system.urls['intake']}/v1/reports",
            json={**P1_REPORT, "source_reference": f"CONSOLE-{uuid.uuid4().hex[:8]}"},
            headers=system.headers("partner-hotline"),
        )
        assert response.status_code == 202, response.text
        case_id = response.json()["case_id"]

        async def task() -> dict[str, Any] | None:
            found = await client.get(
                f"{system.urls['routing']}/v1/tasks",
                params={"case_id": case_id},
                headers=system.headers("officer-erbil-cpu"),
            )
            tasks: list[dict[str, Any]] = found.json()
            return tasks[0] if tasks else None

        found = await wait_for(task, within=WITHIN_S, what="the P1 task")
    assert found["priority"] == "P1"
    return {"case_id": case_id, "task_id": found["task_id"]}


async def signed_in(
    browser: Browser, console: str, system: RunningSystem, who: str, lang: str = "en"
) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{console}/?lang={lang}")
    await page.fill("#credential", system.token(who))
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "/signin" not in page.url
    return page


async def trail_actions(system: RunningSystem, case_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{system.urls['audit']}/v1/audit/cases/{case_id}/trail",
            headers=system.headers("auditor"),
        )
    assert response.status_code == 200, response.text
    return [e["entry"] for e in response.json()["entries"]]


AXE = (importlib.resources.files("axe_playwright_python") / "axe.min.js").read_text()


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core run in the page (WCAG 2.1 A and AA rules); violations of serious impact up."""
    await page.evaluate(AXE)
    results: dict[str, Any] = await page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def check_language_and_layout(page: Page, lang: str, shot: str) -> None:
    """`<html lang dir>`, a mirrored layout for right-to-left, no serious axe violation, and a
    screenshot."""
    html = page.locator("html")
    assert await html.get_attribute("lang") == lang
    rtl = lang in ("ckb", "ar")
    assert await html.get_attribute("dir") == ("rtl" if rtl else "ltr")
    width = page.viewport_size["width"] if page.viewport_size else 1280
    # Where the text of the brand and of the page's heading sits: on the right for RTL.
    brand, heading = await page.evaluate(
        """() => ['#brand a', 'main h1'].map((selector) => {
            const range = document.createRange();
            range.selectNodeContents(document.querySelector(selector));
            const box = range.getBoundingClientRect();
            return {left: box.left, right: box.right};
        })"""
    )
    if rtl:
        assert brand["right"] > width * 0.9
        assert heading["right"] > width * 0.9
        assert heading["left"] > width * 0.3
    else:
        assert brand["left"] < width * 0.1
        assert heading["left"] < width * 0.1
        assert heading["right"] < width * 0.7
    assert await serious_violations(page) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{shot}-{lang}.png"), full_page=True)


async def test_pages_answer_left_to_right_in_english_and_right_to_left_in_sorani_and_arabic(
    console: str,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for lang, direction in (("en", "ltr"), ("ckb", "rtl"), ("ar", "rtl")):
            response = await client.get(f"{console}/", params={"lang": lang})
            assert response.status_code == 200
            assert f'<html lang="{lang}" dir="{direction}"' in response.text
        # No lang parameter: the browser's preference.
        response = await client.get(f"{console}/", headers={"Accept-Language": "ar-IQ,en;q=0.5"})
        assert '<html lang="ar" dir="rtl"' in response.text


async def test_an_officer_sees_the_new_p1_task_counting_down_and_acknowledges_it(
    browser: Browser, console: str, system: RunningSystem, p1_case: dict[str, str]
) -> None:
    page = await signed_in(browser, console, system, "officer-erbil-cpu")
    # Newest first: the shared stack may bring other sessions' tasks into the same inbox.
    await page.goto(f"{console}/inbox?sort=newest")
    row = page.locator(f'tr[data-task-id="{p1_case["task_id"]}"]')
    await row.wait_for()
    assert await row.get_attribute("data-priority") == "P1"
    assert "P1" in await row.locator(".badge.priority").inner_text()
    assert "TF-CSEA" in await row.locator(".badge.classification").inner_text()
    countdown = row.locator(".countdown")
    first = await countdown.inner_text()
    assert first.endswith("left")
    # The countdown ticks in the browser, without a reload.
    await page.wait_for_function(
        "([el, before]) => el.textContent !== before",
        arg=[await countdown.element_handle(), first],
        timeout=5000,
    )
    for lang in LANGS:
        await page.goto(f"{console}/inbox?sort=newest&lang={lang}")
        await page.locator(f'tr[data-task-id="{p1_case["task_id"]}"]').wait_for()
        await check_language_and_layout(page, lang, "officer-inbox")
    await page.goto(f"{console}/inbox?sort=newest&lang=en")
    # A second tab keeps the inbox open: it follows the change without being reloaded.
    watcher = await page.context.new_page()
    await watcher.goto(f"{console}/inbox?sort=newest&lang=en")
    status_cell = watcher.locator(f'tr[data-task-id="{p1_case["task_id"]}"] td:nth-child(3)')
    assert (await status_cell.inner_text()).startswith("Assigned")

    # By keyboard alone: Tab to the task's link, Enter; Tab to Acknowledge, Enter; confirm.
    await tab_to(page, f'a[href="/tasks/{p1_case["task_id"]}"]')
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/tasks/{p1_case['task_id']}")
    await tab_to(page, "#do-acknowledge")
    await page.keyboard.press("Enter")
    await page.locator("#confirm").wait_for()
    assert await page.evaluate("document.activeElement.id") == "confirm"
    await page.keyboard.press("Enter")
    await page.locator("#done").wait_for()
    assert await page.locator("#task-status").inner_text() == "Acknowledged"
    await watcher.wait_for_function(
        """(id) => document.querySelector(`tr[data-task-id="${id}"] td:nth-child(3)`)
            ?.textContent.trim().startsWith("Acknowledged")""",
        arg=p1_case["task_id"],
        timeout=WITHIN_S * 1000,
    )

    async def acknowledged() -> dict[str, Any] | None:
        entries = await trail_actions(system, p1_case["case_id"])
        return next((e for e in entries if e["action"] == "task.acknowledged"), None)

    entry = await wait_for(acknowledged, within=WITHIN_S, what="task.acknowledged in the trail")
    assert entry["actor"]["id"] == "officer-erbil-cpu"  # the officer's own identity


async def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    target = await page.locator(selector).element_handle()
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await page.evaluate("(el) => document.activeElement === el", target):
            # Focus is visible: an outline is drawn around the focused control.
            outline = await page.evaluate("(el) => getComputedStyle(el).outlineStyle", target)
            assert outline != "none"
            return
    raise AssertionError(f"{selector} is not reachable with the Tab key")


async def test_an_officer_of_another_agency_cannot_see_the_task_even_by_its_url(
    browser: Browser, console: str, system: RunningSystem, p1_case: dict[str, str]
) -> None:
    page = await signed_in(browser, console, system, "officer-sulaymaniyah-cpu")
    await page.locator("table.tasks").wait_for()
    assert await page.locator(f'tr[data-task-id="{p1_case["task_id"]}"]').count() == 0
    response = await page.goto(f"{console}/tasks/{p1_case['task_id']}")
    assert response is not None
    assert response.status == 404
    response = await page.goto(f"{console}/cases/{p1_case['case_id']}")
    assert response is not None
    assert response.status == 403
    assert "Console Survivor Marker" not in await page.content()

    async def refused() -> bool:
        entries = await trail_actions(system, p1_case["case_id"])
        return any(
            e["action"] == "case.access_denied" and e["actor"]["id"] == "officer-sulaymaniyah-cpu"
            for e in entries
        )

    await wait_for(refused, within=WITHIN_S, what="the refused view in the trail")


async def test_the_case_page_shows_personal_details_to_the_entitled_officer_and_records_it(
    browser: Browser, console: str, system: RunningSystem, p1_case: dict[str, str]
) -> None:
    page = await signed_in(browser, console, system, "officer-erbil-cpu")
    await page.goto(f"{console}/tasks/{p1_case['task_id']}")
    await page.click("#open-case")
    await page.locator("#view-recorded").wait_for()
    assert "Console Survivor Marker" in await page.locator("dl.personal").inner_text()

    async def viewed() -> bool:
        entries = await trail_actions(system, p1_case["case_id"])
        return any(
            e["action"] == "case.viewed" and e["actor"]["id"] == "officer-erbil-cpu"
            for e in entries
        )

    await wait_for(viewed, within=WITHIN_S, what="the view in the trail")


async def test_a_supervisor_overrides_the_priority_with_a_reason(
    browser: Browser, console: str, system: RunningSystem, p1_case: dict[str, str]
) -> None:
    page = await signed_in(browser, console, system, "supervisor-erbil-cpu")
    assert page.url.endswith("/supervise")
    # Escalations, then the agency's tasks (other sessions' tasks may fill its first page).
    await page.locator("#region-escalations table.tasks").wait_for()
    await page.locator("#region-tasks table.tasks").wait_for()
    await page.goto(f"{console}/tasks/{p1_case['task_id']}")
    await page.select_option("#override-priority", "P2")
    await page.select_option("#override-reason-code", "risk_reassessed")
    await page.fill("#override-reason", "Spoke with the hotline: the deadline has passed safely")
    await page.click("#do-override")
    await page.locator("#confirm").click()
    await page.locator("#done").wait_for()

    async with httpx.AsyncClient(timeout=10) as client:

        async def overridden() -> dict[str, Any] | None:
            response = await client.get(
                f"{system.urls['triage']}/v1/triage/cases/{p1_case['case_id']}",
                headers=system.headers("supervisor-erbil-cpu"),
            )
            current: dict[str, Any] = response.json()["current"]
            return current if current["priority"] == "P2" else None

        current = await wait_for(overridden, within=WITHIN_S, what="the override")
    assert current["override"]["by"] == "supervisor-erbil-cpu"
    assert current["override"]["reason_code"] == "risk_reassessed"

    async def in_the_trail() -> bool:
        entries = await trail_actions(system, p1_case["case_id"])
        return any(e["action"] == "case.triage_overridden" for e in entries)

    await wait_for(in_the_trail, within=WITHIN_S, what="the override in the trail")


async def test_the_auditor_sees_the_trail_verify_and_an_entry_changed_behind_its_back_fail(
    browser: Browser, console: str, system: RunningSystem, p1_case: dict[str, str]
) -> None:
    # Every step so far is in the ledger before the auditor looks.
    async def complete() -> bool:
        actions = {e["action"] for e in await trail_actions(system, p1_case["case_id"])}
        return {"task.acknowledged", "case.triage_overridden"} <= actions

    await wait_for(complete, within=WITHIN_S, what="the steps in the trail")
    page = await signed_in(browser, console, system, "auditor")
    await page.fill("#case-id", p1_case["case_id"])
    await page.click("#show-trail")
    await page.locator("#verdict").wait_for()
    verdict = page.locator("#verdict")
    # No key pinned yet: the entries match, but nothing passes without a pinned key.
    await page.wait_for_function("document.getElementById('verdict').dataset.state !== 'pending'")
    assert await verdict.get_attribute("data-state") == "unverified"
    assert await page.locator("#signature-status").get_attribute("data-state") == "unpinned"

    public_key = (system.var_dir / "audit-signing.pub").read_text()
    await page.fill("#pin-input", public_key)
    await page.click("#pin-save")
    await page.wait_for_function("document.getElementById('verdict').dataset.state === 'verified'")
    acknowledged = page.locator('tr[data-action="task.acknowledged"] td.proof')
    assert await acknowledged.get_attribute("data-state") == "verified"
    assert await page.locator('td.proof[data-state="failed"]').count() == 0
    trail_url = page.url.split("?")[0]
    for lang in LANGS:
        await page.goto(f"{trail_url}?lang={lang}")
        await page.wait_for_function(
            "document.getElementById('verdict').dataset.state === 'verified'"
        )
        await check_language_and_layout(page, lang, "auditor-trail")

    # A browser without Ed25519 in WebCrypto says so instead of passing.
    await without_ed25519(browser, page, trail_url)

    # The ledger's owner changes the acknowledgement behind the service's back.
    leaf_index = int(
        await page.locator('tr[data-action="task.acknowledged"]').get_attribute("data-leaf-index")
        or -1
    )
    await changed_behind_the_servers_back(system.var_dir, leaf_index)
    await page.goto(f"{trail_url}?lang=en")
    await page.wait_for_function("document.getElementById('verdict').dataset.state === 'failed'")
    failed = page.locator('td.proof[data-state="failed"]')
    assert await failed.count() == 1
    row = failed.locator("xpath=..")
    assert await row.get_attribute("data-leaf-index") == str(leaf_index)
    assert "FAILED" in await verdict.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "auditor-trail-tampered-en.png"), full_page=True)


async def without_ed25519(browser: Browser, pinned_page: Page, trail_url: str) -> None:
    key = await pinned_page.evaluate("localStorage.getItem('ocsea.audit.pinned-key')")
    cookies = await pinned_page.context.cookies()
    context = await browser.new_context()
    await context.add_cookies(cookies)  # type: ignore[arg-type]
    await context.add_init_script(
        "localStorage.setItem('ocsea.audit.pinned-key', " + json.dumps(key) + ");"
        "const realImport = crypto.subtle.importKey.bind(crypto.subtle);"
        "crypto.subtle.importKey = (format, data, algorithm, ...rest) =>"
        "  (algorithm && (algorithm === 'Ed25519' || algorithm.name === 'Ed25519'))"
        "    ? Promise.reject(new DOMException('Ed25519 unsupported', 'NotSupportedError'))"
        "    : realImport(format, data, algorithm, ...rest);"
    )
    page = await context.new_page()
    await page.goto(f"{trail_url}?lang=en")
    await page.wait_for_function("document.getElementById('verdict').dataset.state !== 'pending'")
    assert await page.locator("#verdict").get_attribute("data-state") == "unverified"
    status = page.locator("#signature-status")
    assert await status.get_attribute("data-state") == "unsupported"
    assert "cannot check Ed25519" in await status.inner_text()
    await context.close()


async def changed_behind_the_servers_back(var_dir: Path, leaf_index: int) -> None:
    async def change(conn: AsyncConnection) -> None:
        stored = await conn.scalar(
            text("SELECT entry FROM audit_entries WHERE seq = :s"), {"s": leaf_index}
        )
        entry = json.loads(stored)
        entry["actor"] = {"kind": "officer", "id": "someone-else", "agency": None}
        await conn.execute(
            text("UPDATE audit_entries SET entry = :e WHERE seq = :s"),
            {"e": canonical_json(entry).decode(), "s": leaf_index},
        )

    await tamper(f"sqlite+aiosqlite:///{var_dir / 'audit-ledger.db'}", change)
    await asyncio.sleep(0)  # nothing to wait for: the next read sees the changed row
