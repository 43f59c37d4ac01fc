"""Signing in to the running console as a person does, for tests that drive its pages."""

from __future__ import annotations

import re

import httpx

from testkit.system import RunningSystem


async def console_session(
    console: str, system: RunningSystem, principal: str
) -> tuple[dict[str, str], str]:
    """Sign in through the console's form; the session's cookie and CSRF token."""
    async with httpx.AsyncClient(base_url=console, timeout=20, follow_redirects=True) as browser:
        page = await browser.get("/signin")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce, page.text
        signed_in = await browser.post(
            "/signin", data={"credential": system.token(principal), "csrf": nonce.group(1)}
        )
        assert signed_in.status_code == 200, signed_in.text  # the landing page, redirected to
        csrf = re.search(r'name="csrf" value="([^"]+)"', signed_in.text)
        assert csrf, signed_in.text
        session = browser.cookies["ocsea_session"]
    return {"ocsea_session": session}, csrf.group(1)
