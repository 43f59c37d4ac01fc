"""The web console: officers', supervisors' and auditors' pages over the services' APIs.

Server-rendered (Jinja2) with a little JavaScript of our own for countdowns, live updates and
the auditor's in-browser checks; every asset is served from `static/`. Each page calls the
services with the signed-in user's own bearer token, kept server-side (`sessions.py`).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import httpx
from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from redis.asyncio import Redis

from contracts.directory import Directory, load_directory
from contracts.events import Classification, OverrideReason, Priority, TaskStatus, utc_now
from contracts.tasks import Command, InboxSort
from ocsea.runtime.auth import Principal, PrincipalStore, Role
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import instrument_http_app
from services.console.api import Api, ApiError
from services.console.i18n import Catalog, Lang, catalogs, choose_language
from services.console.sessions import RedisBackend, Session, SessionBackend, Sessions
from services.console.views import (
    CODE_FIELD,
    countdown,
    flatten,
    leaf_fields,
    may_give,
    offered_commands,
    open_deadline,
)

log = get_logger("ocsea.console")

HERE = Path(__file__).parent
PAGE_SIZE = 25
LANG_COOKIE = "ocsea_lang"
SIGNIN_COOKIE = "ocsea_signin"
STAFF = (Role.OFFICER, Role.SUPERVISOR)
CONSOLE_ROLES = (Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR)

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


class SignInRequiredError(Exception):
    pass


class RoleRefusedError(Exception):
    pass


class FormRejectedError(Exception):
    """A form the console did not hand out (a CSRF token that does not match)."""


@dataclass
class View:
    """What every page knows: the language, the user, and how to say things."""

    request: Request
    lang: Lang
    catalog: Catalog
    session: Session | None
    lang_from_query: bool

    @property
    def principal(self) -> Principal | None:
        return self.session.principal if self.session else None

    def url(self, path: str, **params: object) -> str:
        kept = {k: str(v) for k, v in params.items() if v is not None and v != ""}
        return f"{path}?{urlencode(kept)}" if kept else path

    def lang_url(self, lang: Lang) -> str:
        params = dict(self.request.query_params)
        params.pop("fragment", None)
        params["lang"] = lang.value
        return f"{self.request.url.path}?{urlencode(params)}"


async def _current_view(request: Request) -> View:
    view: View = await request.app.state.view_of(request)
    return view


CurrentView = Annotated[View, Depends(_current_view)]


def build(
    settings: Settings,
    *,
    session_backend: SessionBackend | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    directory: Directory | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The console app. Tests may pass a session backend, a transport to the services and a
    clock."""
    directory = directory or load_directory(settings.routing_directory_file)
    backend = session_backend or RedisBackend(Redis.from_url(settings.redis_url))
    sessions = Sessions(
        backend,
        idle_s=settings.console_session_idle_s,
        max_s=settings.console_session_max_s,
        clock=clock,
    )
    api = Api(settings, transport)
    cookie_name = "__Host-ocsea_session" if settings.console_secure_cookies else "ocsea_session"
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    principals: PrincipalStore | None = None

    def principal_store() -> PrincipalStore:
        # Read when first needed: the local run creates the file as it starts the services.
        nonlocal principals
        if principals is None:
            principals = PrincipalStore.load(settings.resolved_principals_file)
        return principals

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        api.open()
        try:
            yield
        finally:
            await api.close()
            if isinstance(backend, RedisBackend):
                await backend.close()

    app = FastAPI(title="ocsea console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # ------------------------------------------------------------------ every page

    def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=settings.console_secure_cookies,
        )

    async def view_of(request: Request) -> View:
        query = request.query_params.get("lang")
        lang = choose_language(
            query, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
        )
        session = await sessions.find(request.cookies.get(cookie_name))
        return View(request, lang, catalogs()[lang], session, query is not None)

    app.state.view_of = view_of

    def render(
        view: View, template: str, http_status: int = 200, /, **context: Any
    ) -> HTMLResponse:
        catalog = view.catalog
        html = templates.get_template(template).render(
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
            poll_ms=int(settings.console_poll_interval_s * 1000),
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
            set_cookie(response, LANG_COOKIE, view.lang.value, 365 * 86400)
        return response

    def signed_in(view: View, *roles: Role) -> Session:
        if view.session is None:
            raise SignInRequiredError
        if view.session.principal.role not in roles:
            raise RoleRefusedError
        return view.session

    async def checked_form(request: Request, session: Session) -> Mapping[str, str]:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not session.csrf_ok(fields.get("csrf")):
            raise FormRejectedError
        return fields

    @app.exception_handler(SignInRequiredError)
    async def to_sign_in(request: Request, _exc: Exception) -> Response:
        if request.query_params.get("fragment"):
            return Response(status_code=401)  # console.js reloads, which shows the sign-in
        view = await view_of(request)
        return signin_page(view, status=401, message="signin.required")

    @app.exception_handler(RoleRefusedError)
    async def not_for_role(request: Request, _exc: Exception) -> Response:
        return render(await view_of(request), "error.html", 403, message="error.not_for_role")

    @app.exception_handler(FormRejectedError)
    async def bad_form(request: Request, _exc: Exception) -> Response:
        return render(await view_of(request), "error.html", 403, message="error.bad_form")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        message = {
            "case_access_denied": "error.case_access_denied",
            "task_not_found": "error.task_not_found",
            "service_unavailable": "error.service_unavailable",
            "unauthenticated": "error.credential_revoked",
        }.get(exc.code, "error.service_refused")
        status = exc.status if exc.status < 500 else 503
        return render(await view_of(request), "error.html", status, message=message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        if request.url.path.startswith("/healthz") or request.url.path.startswith("/readyz"):
            return JSONResponse({"code": "invalid_request", "field": field}, status_code=422)
        view = await view_of(request)
        return render(view, "error.html", 422, message="error.invalid_request", field=field)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            await backend.ping()
        except Exception as exc:
            checks = {"sessions": f"unavailable: {type(exc).__name__}"}
            return JSONResponse({"ready": False, "checks": checks}, status_code=503)
        return JSONResponse({"ready": True, "checks": {"sessions": "ok"}})

    # ------------------------------------------------------------------ sign-in

    def signin_page(view: View, status: int = 200, message: str | None = None) -> HTMLResponse:
        nonce = secrets.token_urlsafe(24)
        response = render(view, "signin.html", status, signin_csrf=nonce, message=message)
        set_cookie(response, SIGNIN_COOKIE, nonce, 3600)
        return response

    def landing(principal: Principal) -> str:
        return {Role.SUPERVISOR: "/supervise", Role.AUDITOR: "/audit"}.get(principal.role, "/inbox")

    @app.get("/", response_class=HTMLResponse)
    async def home(view: CurrentView) -> Response:
        if view.session is None:
            return signin_page(view)
        return RedirectResponse(landing(view.session.principal), status_code=303)

    @app.get("/signin", response_class=HTMLResponse)
    async def signin_form(view: CurrentView) -> Response:
        return signin_page(view)

    @app.post("/signin", response_class=HTMLResponse)
    async def signin(
        request: Request,
        view: CurrentView,
        credential: Annotated[str, Form(max_length=500)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        expected = request.cookies.get(SIGNIN_COOKIE, "")
        if not expected or not secrets.compare_digest(expected.encode(), csrf.encode()):
            return signin_page(view, 403, "error.bad_form")
        token = credential.strip()
        principal = principal_store().authenticate(token) if token else None
        if principal is None:
            log.info("console.signin_refused")
            return signin_page(view, 401, "signin.invalid")
        if principal.role not in CONSOLE_ROLES:
            return signin_page(view, 403, "error.not_for_role")
        await sessions.end(request.cookies.get(cookie_name))  # no session fixation
        session_id, _ = await sessions.start(principal, token)
        log.info("console.signed_in", principal=principal.name, role=principal.role.value)
        response = RedirectResponse(landing(principal), status_code=303)
        set_cookie(response, cookie_name, session_id, None)
        response.delete_cookie(SIGNIN_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.post("/signout")
    async def signout(request: Request, view: CurrentView) -> Response:
        if view.session is not None:
            await checked_form(request, view.session)
            await sessions.end(request.cookies.get(cookie_name))
            log.info("console.signed_out", principal=view.session.principal.name)
        response = RedirectResponse("/?signed_out=1", status_code=303)
        response.delete_cookie(
            cookie_name,
            path="/",
            httponly=True,
            samesite="strict",
            secure=settings.console_secure_cookies,
        )
        return response

    # ------------------------------------------------------------------ officers' inbox

    async def task_table(
        view: View,
        session: Session,
        *,
        region: str,
        sort: InboxSort,
        escalated: bool | None = None,
        status: TaskStatus | None = None,
        priority: Priority | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params = {"sort": sort.value, "limit": str(PAGE_SIZE)}
        for name, value in (("escalated", escalated), ("status", status), ("priority", priority)):
            if value is not None:
                params[name] = str(value).lower() if isinstance(value, bool) else str(value)
        if cursor:
            params["cursor"] = cursor
        page = await api.tasks(session.token, params)
        now = utc_now()
        rows = []
        for task in page.tasks:
            deadline = open_deadline(task, now)
            rows.append(
                {"task": task, "deadline": deadline, "countdown": countdown(view.catalog, deadline)}
            )
        own = dict(view.request.query_params)
        own.pop("fragment", None)
        next_url = view.url(view.request.url.path, **{**own, f"{region}_cursor": page.next_cursor})
        first_url = view.url(view.request.url.path, **{**own, f"{region}_cursor": None})
        return {
            "region": region,
            "rows": rows,
            "total": page.total,
            "next_url": next_url if page.next_cursor else None,
            "first_url": first_url if cursor else None,
            "poll_url": view.url(view.request.url.path, **{**own, "fragment": region}),
        }

    @app.get("/inbox", response_class=HTMLResponse)
    async def inbox(
        view: CurrentView,
        sort: InboxSort = InboxSort.URGENCY,
        status: TaskStatus | None = None,
        priority: Priority | None = None,
        tasks_cursor: Annotated[str | None, Query(max_length=1000)] = None,
        fragment: str | None = None,
    ) -> Response:
        session = signed_in(view, *STAFF)
        table = await task_table(
            view,
            session,
            region="tasks",
            sort=sort,
            status=status,
            priority=priority,
            cursor=tasks_cursor,
        )
        if fragment:
            return render(view, "_tasks.html", table=table)
        return render(
            view,
            "inbox.html",
            sort=sort,
            sorts=list(InboxSort),
            status=status,
            statuses=list(TaskStatus),
            priority=priority,
            priorities=list(Priority),
            table=table,
        )

    @app.get("/supervise", response_class=HTMLResponse)
    async def supervise(
        view: CurrentView,
        escalations_cursor: Annotated[str | None, Query(max_length=1000)] = None,
        tasks_cursor: Annotated[str | None, Query(max_length=1000)] = None,
        # The region console.js refreshes; only the page's own regions exist.
        fragment: Literal["escalations", "tasks"] | None = None,
    ) -> Response:
        session = signed_in(view, Role.SUPERVISOR)
        tables = {}
        for region, escalated, cursor in (
            ("escalations", True, escalations_cursor),
            ("tasks", None, tasks_cursor),
        ):
            if fragment in (None, region):
                tables[region] = await task_table(
                    view,
                    session,
                    region=region,
                    sort=InboxSort.OVERDUE,
                    escalated=escalated,
                    cursor=cursor,
                )
        if fragment:
            return render(view, "_tasks.html", table=tables[fragment])
        return render(view, "supervise.html", tables=tables)

    # ------------------------------------------------------------------ a task and its commands

    async def task_page(
        view: View,
        session: Session,
        task_id: uuid.UUID,
        *,
        status: int = 200,
        error: str | None = None,
        error_field: str | None = None,
    ) -> HTMLResponse:
        task = await api.task(session.token, task_id)
        now = utc_now()
        triage = None
        if session.principal.role is Role.SUPERVISOR:
            try:
                triage = await api.case_triage(session.token, uuid.UUID(task["case_id"]))
            except ApiError as exc:
                if exc.status not in (403, 404):  # the page works without it
                    raise
        return render(
            view,
            "task.html",
            status,
            task=task,
            deadline=open_deadline(task, now),
            countdown_text=countdown(view.catalog, open_deadline(task, now)),
            commands=offered_commands(task, session.principal.role),
            code_field=CODE_FIELD,
            codes={
                Command.DECLINE: directory.decline_reasons,
                Command.RESOLVE: directory.outcome_codes,
                Command.ESCALATE: directory.escalation_reasons,
            },
            triage=triage,
            priorities=list(Priority),
            classifications=list(Classification),
            override_reasons=list(OverrideReason),
            idempotency_key=uuid.uuid4().hex,
            done=view.request.query_params.get("done"),
            error=error,
            error_field=error_field,
        )

    @app.get("/tasks/{task_id}", response_class=HTMLResponse)
    async def task(task_id: uuid.UUID, view: CurrentView) -> Response:
        session = signed_in(view, *STAFF)
        return await task_page(view, session, task_id)

    @app.post("/tasks/{task_id}/{command}", response_class=HTMLResponse)
    async def command(
        task_id: uuid.UUID, command: Command, request: Request, view: CurrentView
    ) -> Response:
        session = signed_in(view, *STAFF)
        form = await checked_form(request, session)
        if not may_give(session.principal.role, command):
            raise RoleRefusedError
        field = CODE_FIELD.get(command)
        code = form.get(field, "") if field else ""
        if field and command is not Command.ESCALATE and not code:
            return await task_page(
                view, session, task_id, status=422, error="error.choose_code", error_field=field
            )
        if form.get("confirmed") != "yes":
            task = await api.task(session.token, task_id)
            return render(
                view,
                "confirm.html",
                task=task,
                command=command,
                field=field,
                code=code,
                csrf=session.csrf,
                action=f"/tasks/{task_id}/{command.value}",
                back=f"/tasks/{task_id}",
                question=f"confirm.{command.value}",
                code_label=view.catalog.label(f"code.{field}", code) if code else None,
            )
        body = {field: code} if field and code else None
        try:
            await api.command(session.token, task_id, command.value, body)
        except ApiError as exc:
            if exc.status in (409, 422, 503) or exc.code == "forbidden":
                message = {
                    "invalid_transition": "error.invalid_transition",
                    "forbidden": "error.not_allowed",
                    "invalid_request": "error.choose_code",
                }.get(exc.code, "error.not_recorded")
                return await task_page(
                    view, session, task_id, status=exc.status, error=message, error_field=exc.field
                )
            raise
        return RedirectResponse(f"/tasks/{task_id}?done={command.value}", status_code=303)

    # ------------------------------------------------------------------ supervisors' override

    @app.post("/cases/{case_id}/override", response_class=HTMLResponse)
    async def override(
        case_id: uuid.UUID,
        request: Request,
        view: CurrentView,
        task_id: Annotated[uuid.UUID, Query(alias="task")],
    ) -> Response:
        session = signed_in(view, Role.SUPERVISOR)
        form = await checked_form(request, session)
        body: dict[str, Any] = {
            "priority": form.get("priority") or None,
            "classification": form.get("classification") or None,
            "reason_code": form.get("reason_code", ""),
            "reason": form.get("reason", "").strip(),
        }
        problem = None
        if body["priority"] not in (None, *Priority):
            problem = ("error.invalid_request", "priority")
        elif body["classification"] not in (None, *Classification):
            problem = ("error.invalid_request", "classification")
        elif body["priority"] is None and body["classification"] is None:
            problem = ("error.override_nothing", "priority")
        elif body["reason_code"] not in set(OverrideReason):
            problem = ("error.override_reason_code", "reason_code")
        elif len(body["reason"]) < 3:
            problem = ("error.override_reason", "reason")
        if problem:
            return await task_page(
                view, session, task_id, status=422, error=problem[0], error_field=problem[1]
            )
        key = form.get("idempotency_key") or uuid.uuid4().hex
        if form.get("confirmed") != "yes":
            task = await api.task(session.token, task_id)
            return render(
                view,
                "confirm_override.html",
                task=task,
                body=body,
                idempotency_key=key,
                csrf=session.csrf,
                action=f"/cases/{case_id}/override?task={task_id}",
                back=f"/tasks/{task_id}",
            )
        try:
            await api.override(session.token, case_id, body, key)
        except ApiError as exc:
            if exc.status in (422, 503):
                return await task_page(
                    view,
                    session,
                    task_id,
                    status=exc.status,
                    error="error.not_recorded",
                    error_field=exc.field,
                )
            raise
        return RedirectResponse(f"/tasks/{task_id}?done=overridden", status_code=303)

    # ------------------------------------------------------------------ a case

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    async def case(case_id: uuid.UUID, view: CurrentView) -> Response:
        session = signed_in(view, *STAFF)
        found = await api.case(session.token, case_id)
        reports = [
            {**report, "fields": list(flatten(report["personal"])) if report["personal"] else []}
            for report in found["reports"]
        ]
        return render(view, "case.html", case=found, reports=reports)

    # ------------------------------------------------------------------ auditors

    @app.get("/audit", response_class=HTMLResponse)
    async def audit_home(
        view: CurrentView, case_id: Annotated[str | None, Query(max_length=100)] = None
    ) -> Response:
        session = signed_in(view, Role.AUDITOR)
        if case_id:
            try:
                return RedirectResponse(f"/audit/cases/{uuid.UUID(case_id.strip())}", 303)
            except ValueError:
                checkpoint = await api.checkpoint(session.token)
                return render(view, "audit.html", 422, checkpoint=checkpoint, error="error.case_id")
        checkpoint = await api.checkpoint(session.token)
        return render(view, "audit.html", checkpoint=checkpoint, error=None)

    @app.get("/audit/cases/{case_id}", response_class=HTMLResponse)
    async def audit_case(case_id: uuid.UUID, view: CurrentView) -> Response:
        session = signed_in(view, Role.AUDITOR)
        bundle = await api.case_bundle(session.token, case_id)
        trail = await api.trail(session.token, case_id)
        proven = {e["leaf_index"]: e for e in bundle["entries"]}
        size = bundle["checkpoint"]["tree_size"]
        rows = []
        for entry in trail["entries"]:
            leaf = proven.get(entry["leaf_index"])
            shown = leaf_fields(leaf["leaf"]) if leaf else entry["entry"]
            rows.append({"leaf_index": entry["leaf_index"], "entry": shown, "proven": bool(leaf)})
        return render(
            view,
            "audit_case.html",
            case_id=case_id,
            rows=rows,
            checkpoint=bundle["checkpoint"],
            bundle=bundle,
            tree_size=size,
        )

    # Server spans as the services have them (nothing when tracing is off).
    instrument_http_app(app)
    return app
