"""The console's own behaviour against stand-in services: sign-in and sessions, CSRF, the
user's own token on every call, confirmations, roles, errors, and pages with every visible
string in the page's language."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ocsea.runtime.settings import Settings
from services.console.bootstrap import build
from tests.console.fakes import (
    CASE_ID,
    TASK_ID,
    MemoryBackend,
    demo_credentials,
    task_json,
)
from tests.console.harness import Console, csrf_token

# ----------------------------------------------------------------------------- sign-in, sessions


def test_the_start_page_is_the_sign_in_in_the_asked_language(console: Console) -> None:
    for lang, direction in (("en", "ltr"), ("ckb", "rtl"), ("ar", "rtl")):
        response = console.client.get(f"/?lang={lang}")
        assert response.status_code == 200
        assert f'<html lang="{lang}" dir="{direction}"' in response.text
        assert 'id="credential"' in response.text
    # The choice is remembered (a cookie), and used without the parameter.
    assert '<html lang="ar" dir="rtl"' in console.client.get("/").text


def test_signing_in_keeps_the_token_on_the_server_only(console: Console) -> None:
    page = console.client.get("/")
    response = console.client.post(
        "/signin",
        data={"credential": console.token("officer-erbil-cpu"), "csrf": csrf_token(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/inbox"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("ocsea_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age" not in cookie  # gone when the browser closes
    token = console.token("officer-erbil-cpu")
    inbox = console.client.get("/inbox")
    assert token not in inbox.text
    assert all(token not in c.value for c in console.client.cookies.jar)
    # Stored sealed: the session store never holds the token in the clear.
    assert console.backend.values
    assert all(token.encode() not in value for value, _ in console.backend.values.values())
    # Every service call carries the officer's own token.
    assert console.fake.authorizations() == [f"Bearer {token}"]


def test_a_wrong_credential_or_a_partner_is_refused(console: Console) -> None:
    page = console.client.get("/")
    refused = console.client.post(
        "/signin", data={"credential": "guess", "csrf": csrf_token(page.text)}
    )
    assert refused.status_code == 401
    assert "not valid" in refused.text
    page = console.client.get("/")
    partner = console.client.post(
        "/signin",
        data={"credential": console.token("partner-hotline"), "csrf": csrf_token(page.text)},
    )
    assert partner.status_code == 403
    assert "ocsea_session" not in console.client.cookies


def test_signing_in_needs_the_forms_own_csrf_token(console: Console) -> None:
    console.client.get("/")
    forged = console.client.post(
        "/signin", data={"credential": console.token("auditor"), "csrf": "forged"}
    )
    assert forged.status_code == 403
    assert "ocsea_session" not in console.client.cookies


def test_every_post_needs_the_sessions_csrf_token(console: Console) -> None:
    console.sign_in("officer-erbil-cpu")
    for path, data in (
        (f"/tasks/{TASK_ID}/acknowledge", {"confirmed": "yes"}),
        ("/signout", {}),
        (f"/tasks/{TASK_ID}/decline", {"reason": "no_capacity", "confirmed": "yes"}),
    ):
        response = console.client.post(path, data={**data, "csrf": "wrong"})
        assert response.status_code == 403, path
        assert "expired" in response.text
    assert not [c for c in console.fake.calls if c.method == "POST"]
    assert console.client.get("/inbox").status_code == 200  # still signed in


def test_a_session_ends_when_idle_after_its_lifetime_and_at_sign_out(console: Console) -> None:
    console.sign_in("officer-erbil-cpu")
    console.clock.now += 800
    assert console.client.get("/inbox").status_code == 200  # used: the idle time restarts
    console.clock.now += 800
    assert console.client.get("/inbox").status_code == 200
    console.clock.now += 901
    idle = console.client.get("/inbox")
    assert idle.status_code == 401
    assert 'id="credential"' in idle.text
    # A live poll learns it too, so the page can show the sign-in.
    assert console.client.get("/inbox?fragment=tasks").status_code == 401


def test_a_session_ends_after_its_maximum_lifetime_however_busy(console: Console) -> None:
    console.sign_in("auditor")
    for _ in range(5):
        console.clock.now += 800
        response = console.client.get("/audit")
    assert response.status_code == 401


def test_signing_out_ends_the_session_on_the_server(console: Console) -> None:
    csrf = console.sign_in("supervisor-erbil-cpu")
    session_id = console.client.cookies["ocsea_session"]
    response = console.client.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert console.backend.values == {}
    # The old cookie, replayed, opens nothing.
    console.client.cookies.set("ocsea_session", session_id)
    assert console.client.get("/supervise").status_code == 401


# ----------------------------------------------------------------------------- officers' work


def test_a_command_is_confirmed_first_then_sent_with_the_officers_token(console: Console) -> None:
    csrf = console.sign_in("officer-erbil-cpu")
    asked = console.client.post(
        f"/tasks/{TASK_ID}/decline", data={"csrf": csrf, "reason": "no_capacity"}
    )
    assert asked.status_code == 200
    assert 'id="confirm"' in asked.text
    assert "No capacity" in asked.text
    assert not [c for c in console.fake.calls if c.method == "POST"]
    done = console.client.post(
        f"/tasks/{TASK_ID}/decline",
        data={"csrf": csrf, "reason": "no_capacity", "confirmed": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/tasks/{TASK_ID}?done=decline"
    [sent] = [c for c in console.fake.calls if c.method == "POST"]
    assert sent.url.path == f"/v1/tasks/{TASK_ID}/decline"
    assert sent.headers["authorization"] == f"Bearer {console.token('officer-erbil-cpu')}"
    assert sent.content == b'{"reason":"no_capacity"}'


def test_a_decline_without_a_reason_is_refused_naming_the_field(console: Console) -> None:
    csrf = console.sign_in("officer-erbil-cpu")
    response = console.client.post(f"/tasks/{TASK_ID}/decline", data={"csrf": csrf})
    assert response.status_code == 422
    assert 'id="decline-reason" name="reason" required aria-invalid="true"' in response.text


def test_a_refused_transition_shows_the_task_as_it_is(console: Console) -> None:
    csrf = console.sign_in("officer-erbil-cpu")
    console.fake.refuse[f"/v1/tasks/{TASK_ID}/accept"] = (409, "invalid_transition")
    response = console.client.post(
        f"/tasks/{TASK_ID}/accept", data={"csrf": csrf, "confirmed": "yes"}
    )
    assert response.status_code == 409
    assert "does not allow this any more" in response.text


def test_the_inbox_pages_through_the_routing_cursor(console: Console) -> None:
    console.sign_in("officer-erbil-cpu")
    console.client.get("/inbox?sort=deadline&priority=P1&tasks_cursor=abc")
    [call] = [c for c in console.fake.calls if c.url.path == "/v1/tasks"][-1:]
    assert dict(call.url.params) == {
        "sort": "deadline",
        "limit": "25",
        "priority": "P1",
        "cursor": "abc",
    }


def test_an_overdue_task_is_marked(console: Console) -> None:
    console.fake.tasks = [task_json(ack_in_s=-90)]
    console.sign_in("officer-erbil-cpu")
    page = console.client.get("/inbox").text
    assert 'class="task-row is-overdue"' in page
    assert re.search(r"overdue by 00:0[1-3]:\d\d", page)


def test_a_refused_case_view_says_so_and_shows_nothing(console: Console) -> None:
    console.sign_in("officer-sulaymaniyah-cpu")
    console.fake.refuse["/v1/cases/"] = (403, "case_access_denied")
    response = console.client.get(f"/cases/{CASE_ID}")
    assert response.status_code == 403
    assert "This attempt has been recorded" in response.text
    assert "MARKER" not in response.text


def test_an_unreachable_service_is_a_503_page_not_a_crash(tmp_path: Path) -> None:
    credentials = demo_credentials(tmp_path)

    def down(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    app = build(
        Settings(var_dir=tmp_path),
        session_backend=MemoryBackend(),
        transport=httpx.MockTransport(down),
    )
    with TestClient(app) as client:
        page = client.get("/")
        client.post(
            "/signin",
            data={
                "credential": credentials["officer-erbil-cpu"]["token"],
                "csrf": csrf_token(page.text),
            },
        )
        response = client.get("/inbox")
    assert response.status_code == 503
    assert "not answering" in response.text


def test_roles_see_only_their_pages(console: Console) -> None:
    console.sign_in("auditor")
    assert console.client.get("/inbox").status_code == 403
    assert console.client.get(f"/tasks/{TASK_ID}").status_code == 403
    assert console.client.get(f"/cases/{CASE_ID}").status_code == 403
    assert not [c for c in console.fake.calls if "/v1/tasks" in c.url.path]


def test_a_supervisors_override_goes_to_triage_with_the_reason_and_one_key(
    console: Console,
) -> None:
    csrf = console.sign_in("supervisor-erbil-cpu")
    form = {
        "csrf": csrf,
        "priority": "P2",
        "classification": "",
        "reason_code": "risk_reassessed",
        "reason": "The deadline has passed safely",
        "idempotency_key": "k-1",
    }
    path = f"/cases/{CASE_ID}/override?task={TASK_ID}"
    asked = console.client.post(path, data=form)
    assert asked.status_code == 200
    assert 'name="idempotency_key" value="k-1"' in asked.text
    done = console.client.post(path, data={**form, "confirmed": "yes"}, follow_redirects=False)
    assert done.status_code == 303
    [sent] = [c for c in console.fake.calls if c.url.path.endswith("/override")]
    assert sent.headers["idempotency-key"] == "k-1"
    assert sent.headers["authorization"] == f"Bearer {console.token('supervisor-erbil-cpu')}"
    assert b'"priority":"P2"' in sent.content
    assert b'"reason_code":"risk_reassessed"' in sent.content


def test_an_override_without_a_reason_is_refused_before_anything_is_sent(console: Console) -> None:
    csrf = console.sign_in("supervisor-erbil-cpu")
    response = console.client.post(
        f"/cases/{CASE_ID}/override?task={TASK_ID}",
        data={"csrf": csrf, "priority": "P9", "reason_code": "other", "reason": "ok then"},
    )
    assert response.status_code == 422
    assert not [c for c in console.fake.calls if c.url.path.endswith("/override")]


def test_a_malformed_task_id_is_a_4xx_naming_the_field(console: Console) -> None:
    console.sign_in("officer-erbil-cpu")
    response = console.client.get("/tasks/not-a-uuid")
    assert response.status_code == 422
    assert "task_id" in response.text


def test_security_headers(console: Console) -> None:
    response = console.client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


# ----------------------------------------------------------------------------- languages on pages


class VisibleText(HTMLParser):
    """Text a person sees or hears (text and labelling attributes), outside what is marked
    as data (`translate="no"`), another language (`lang`), code or scripts."""

    SKIP = frozenset({"script", "style", "code"})
    VOID = frozenset({"input", "meta", "link", "br", "img", "hr"})
    SPOKEN = ("aria-label", "title", "placeholder", "alt")

    def __init__(self, page_lang: str) -> None:
        super().__init__()
        self.page_lang = page_lang
        self.stack: list[bool] = []  # for each open element: is its content exempt?
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        exempt = (
            (bool(self.stack) and self.stack[-1])
            or tag in self.SKIP
            or named.get("translate") == "no"
            or (named.get("lang") not in (None, self.page_lang))
        )
        if not exempt:
            self.found += [v for k, v in attrs if k in self.SPOKEN and v]
        if tag not in self.VOID:
            self.stack.append(exempt)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]) and data.strip():
            self.found.append(data.strip())


# Names that stay as they are in every language: codes of the domain and of the technology.
TECHNICAL = {"P1", "P2", "P3", "P4", "TF-CSEA", "TFGBV", "UTC", "IP", "PEM", "base64"}


def untranslated(html: str, lang: str) -> list[str]:
    parser = VisibleText(lang)
    parser.feed(html)
    return [
        text
        for text in parser.found
        if any(word not in TECHNICAL for word in re.findall(r"[A-Za-z][A-Za-z0-9-]*", text))
    ]


@pytest.mark.parametrize("lang", ["ckb", "ar"])
def test_every_visible_string_is_in_the_pages_language(console: Console, lang: str) -> None:
    console.fake.tasks = [
        task_json(),
        task_json(uuid.uuid4(), status="acknowledged", priority="P3", escalation_level=1),
        task_json(uuid.uuid4(), ack_in_s=-90, priority="P2"),
    ]
    pages: dict[str, str] = {"sign-in": console.client.get(f"/?lang={lang}").text}
    csrf = console.sign_in("supervisor-erbil-cpu", lang)
    for path in ("/supervise", "/inbox", f"/tasks/{TASK_ID}", f"/cases/{CASE_ID}"):
        pages[path] = console.client.get(path).text
    pages["confirm"] = console.client.post(
        f"/tasks/{TASK_ID}/escalate", data={"csrf": csrf, "reason": "risk_increased"}
    ).text
    pages["confirm override"] = console.client.post(
        f"/cases/{CASE_ID}/override?task={TASK_ID}",
        data={"csrf": csrf, "priority": "P2", "reason_code": "other", "reason": "because"},
    ).text
    pages["refused"] = console.client.get("/tasks/not-a-uuid").text
    console.client.post("/signout", data={"csrf": csrf})
    console.sign_in("auditor", lang)
    pages["/audit"] = console.client.get("/audit").text
    pages["trail"] = console.client.get(f"/audit/cases/{CASE_ID}").text
    for name, html in pages.items():
        assert f'<html lang="{lang}" dir="rtl"' in html, name
        assert untranslated(html, lang) == [], name


def test_the_english_page_would_fail_that_check() -> None:
    """The check above finds untranslated text (it is not vacuous)."""
    assert untranslated('<html lang="ckb"><p>Acknowledge</p><p translate="no">abc</p>', "ckb") == [
        "Acknowledge"
    ]
    assert untranslated('<p lang="en">English</p><input aria-label="Search">', "ar") == ["Search"]
