"""The console app on stand-in services (`fakes`), driven through its pages as a browser does;
the `console` fixture (conftest.py) builds one for each test."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi.testclient import TestClient

from tests.console.fakes import Clock, FakeServices, MemoryBackend


@dataclass
class Console:
    client: TestClient
    fake: FakeServices
    credentials: dict[str, dict[str, str]]
    backend: MemoryBackend
    clock: Clock

    def token(self, who: str) -> str:
        return self.credentials[who]["token"]

    def sign_in(self, who: str, lang: str = "en") -> str:
        """Sign in through the form; returns the page's CSRF token."""
        page = self.client.get(f"/?lang={lang}")
        nonce = csrf_token(page.text)
        response = self.client.post(
            "/signin", data={"credential": self.token(who), "csrf": nonce}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        landing = self.client.get(response.headers["location"])
        assert landing.status_code == 200, landing.text
        return csrf_token(landing.text)


def csrf_token(html: str) -> str:
    """The CSRF token of a page's form."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)
