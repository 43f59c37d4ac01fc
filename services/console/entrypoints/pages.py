"""Rendering the console's pages: Jinja2 templates in the page's language, under the console's
security headers, with its cookies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ocsea.runtime.auth import Principal
from ocsea.runtime.settings import Settings
from services.console.domain.i18n import Catalog, Lang, catalogs
from services.console.handlers import Page, Redirect, Visit
from services.console.ports import Session

CONSOLE = Path(__file__).resolve().parents[1]
TEMPLATES = CONSOLE / "templates"
STATIC = CONSOLE / "static"
LANG_COOKIE = "ocsea_lang"
SIGNIN_COOKIE = "ocsea_signin"
SIGNIN_NONCE_MAX_AGE_S = 3600
LANG_MAX_AGE_S = 365 * 86400

# Scripts, styles and requests only from the console itself; nothing inline, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Pages carry case data: never kept by the browser or a proxy.
    "Cache-Control": "no-store",
}


@dataclass
class View:
    """What every page knows: the request, the language, the user, and how to say things."""

    request: Request
    lang: Lang
    catalog: Catalog
    session: Session | None
    lang_from_query: bool

    @property
    def principal(self) -> Principal | None:
        return self.session.principal if self.session else None

    @property
    def visit(self) -> Visit:
        """What the use cases take of the request."""
        query = dict(self.request.query_params)
        return Visit(self.session, self.catalog, self.request.url.path, query)

    def lang_url(self, lang: Lang) -> str:
        params = dict(self.request.query_params)
        params.pop("fragment", None)
        params["lang"] = lang.value
        return f"{self.request.url.path}?{urlencode(params)}"


class Pages:
    def __init__(self, settings: Settings) -> None:
        self.secure_cookies = settings.console_secure_cookies
        # `__Host-` binds the cookie to this host and path "/", but needs TLS.
        self.session_cookie = "__Host-ocsea_session" if self.secure_cookies else "ocsea_session"
        self.poll_ms = int(settings.console_poll_interval_s * 1000)
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure_cookies,
        )

    def forget_session(self, response: Response) -> None:
        response.delete_cookie(
            self.session_cookie,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure_cookies,
        )

    def render(
        self, view: View, template: str, http_status: int = 200, /, **context: Any
    ) -> HTMLResponse:
        catalog = view.catalog
        html = self.templates.get_template(template).render(
            view=view,
            lang=view.lang.value,
            catalog=catalog,
            t=catalog.text,
            label=catalog.label,
            time=catalog.time,
            num=catalog.localise,
            languages=[catalogs()[lang] for lang in Lang],
            session=view.session,
            principal=view.principal,
            poll_ms=self.poll_ms,
            # Messages console.js needs, their {placeholders} left for it to fill.
            js_strings={
                key: message
                for key, message in catalog.messages.items()
                if key.startswith(("js.", "countdown."))
            },
            **context,
        )
        response = HTMLResponse(html, status_code=http_status, headers=SECURITY_HEADERS)
        if view.lang_from_query:
            self.set_cookie(response, LANG_COOKIE, view.lang.value, LANG_MAX_AGE_S)
        return response

    def show(self, view: View, outcome: Page | Redirect) -> Response:
        if isinstance(outcome, Redirect):
            return RedirectResponse(outcome.location, status_code=303)
        return self.render(view, outcome.template, outcome.status, **outcome.context)

    def signin(self, view: View, status: int = 200, message: str | None = None) -> HTMLResponse:
        """The sign-in form, with a nonce of its own (in a cookie too): a form posted from
        anywhere else is refused."""
        nonce = secrets.token_urlsafe(24)
        response = self.render(view, "signin.html", status, signin_csrf=nonce, message=message)
        self.set_cookie(response, SIGNIN_COOKIE, nonce, SIGNIN_NONCE_MAX_AGE_S)
        return response
