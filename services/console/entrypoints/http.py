"""The console's pages and forms over HTTP: each route reads the request, calls its use case
(`handlers.py`) and renders the answer (`pages.py`); the exception handlers turn what stops a
use case into the page that explains it."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from contracts.events import Priority, TaskStatus
from contracts.tasks import Command, InboxSort
from services.console.domain.i18n import catalogs, choose_language
from services.console.domain.pages import refusal_message, refusal_status
from services.console.entrypoints.pages import LANG_COOKIE, SIGNIN_COOKIE, Pages, View
from services.console.handlers import (
    Console,
    FormRejectedError,
    RoleRefusedError,
    SignInRefused,
    SignInRequiredError,
    landing,
)
from services.console.ports import ServiceCallError

router = APIRouter()


def get_console(request: Request) -> Console:
    """The use cases bootstrap composed."""
    console: Console = request.app.state.console
    return console


def get_pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


async def view_of(request: Request) -> View:
    """The request's language (`?lang=`, the remembered choice, the browser's) and session."""
    pages = get_pages(request)
    query = request.query_params.get("lang")
    lang = choose_language(
        query, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    session = await get_console(request).find_session(request.cookies.get(pages.session_cookie))
    return View(request, lang, catalogs()[lang], session, query is not None)


async def form_of(request: Request) -> dict[str, str]:
    """A posted form's text fields (the console's forms have no files)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


CurrentView = Annotated[View, Depends(view_of)]
Handlers = Annotated[Console, Depends(get_console)]
Renderer = Annotated[Pages, Depends(get_pages)]


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "service": "console"}


@router.get("/readyz", include_in_schema=False)
async def readyz(console: Handlers) -> JSONResponse:
    try:
        await console.ready()
    except Exception as exc:
        checks = {"sessions": f"unavailable: {type(exc).__name__}"}
        return JSONResponse({"ready": False, "checks": checks}, status_code=503)
    return JSONResponse({"ready": True, "checks": {"sessions": "ok"}})


# ---------------------------------------------------------------------- sign-in


@router.get("/", response_class=HTMLResponse)
async def home(view: CurrentView, pages: Renderer) -> Response:
    if view.session is None:
        return pages.signin(view)
    return RedirectResponse(landing(view.session.principal), status_code=303)


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(view: CurrentView, pages: Renderer) -> Response:
    return pages.signin(view)


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request,
    view: CurrentView,
    console: Handlers,
    pages: Renderer,
    credential: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    outcome = await console.sign_in(
        credential,
        csrf,
        expected_csrf=request.cookies.get(SIGNIN_COOKIE, ""),
        previous_session_id=request.cookies.get(pages.session_cookie),
    )
    if isinstance(outcome, SignInRefused):
        return pages.signin(view, outcome.status, outcome.message)
    response = RedirectResponse(outcome.location, status_code=303)
    pages.set_cookie(response, pages.session_cookie, outcome.session_id, None)
    response.delete_cookie(SIGNIN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/signout")
async def signout(
    request: Request, view: CurrentView, console: Handlers, pages: Renderer
) -> Response:
    await console.sign_out(
        view.visit, await form_of(request), request.cookies.get(pages.session_cookie)
    )
    response = RedirectResponse("/?signed_out=1", status_code=303)
    pages.forget_session(response)
    return response


# ---------------------------------------------------------------------- inboxes


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(
    view: CurrentView,
    console: Handlers,
    pages: Renderer,
    sort: InboxSort = InboxSort.URGENCY,
    status: TaskStatus | None = None,
    priority: Priority | None = None,
    tasks_cursor: Annotated[str | None, Query(max_length=1000)] = None,
    fragment: str | None = None,
) -> Response:
    page = await console.inbox(
        view.visit,
        sort=sort,
        status=status,
        priority=priority,
        cursor=tasks_cursor,
        fragment=fragment,
    )
    return pages.show(view, page)


@router.get("/supervise", response_class=HTMLResponse)
async def supervise(
    view: CurrentView,
    console: Handlers,
    pages: Renderer,
    escalations_cursor: Annotated[str | None, Query(max_length=1000)] = None,
    tasks_cursor: Annotated[str | None, Query(max_length=1000)] = None,
    # The region console.js refreshes; only the page's own regions exist.
    fragment: Literal["escalations", "tasks"] | None = None,
) -> Response:
    page = await console.supervise(
        view.visit,
        escalations_cursor=escalations_cursor,
        tasks_cursor=tasks_cursor,
        fragment=fragment,
    )
    return pages.show(view, page)


# ---------------------------------------------------------------------- tasks and cases


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task(
    task_id: uuid.UUID, view: CurrentView, console: Handlers, pages: Renderer
) -> Response:
    return pages.show(view, await console.task(view.visit, task_id))


@router.post("/tasks/{task_id}/{command}", response_class=HTMLResponse)
async def command(
    task_id: uuid.UUID,
    command: Command,
    request: Request,
    view: CurrentView,
    console: Handlers,
    pages: Renderer,
) -> Response:
    outcome = await console.give_command(view.visit, task_id, command, await form_of(request))
    return pages.show(view, outcome)


@router.post("/cases/{case_id}/override", response_class=HTMLResponse)
async def override(
    case_id: uuid.UUID,
    request: Request,
    view: CurrentView,
    console: Handlers,
    pages: Renderer,
    task_id: Annotated[uuid.UUID, Query(alias="task")],
) -> Response:
    outcome = await console.override(view.visit, case_id, task_id, await form_of(request))
    return pages.show(view, outcome)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case(
    case_id: uuid.UUID, view: CurrentView, console: Handlers, pages: Renderer
) -> Response:
    return pages.show(view, await console.case(view.visit, case_id))


# ---------------------------------------------------------------------- auditors


@router.get("/audit", response_class=HTMLResponse)
async def audit_home(
    view: CurrentView,
    console: Handlers,
    pages: Renderer,
    case_id: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    return pages.show(view, await console.audit_home(view.visit, case_id))


@router.get("/audit/cases/{case_id}", response_class=HTMLResponse)
async def audit_case(
    case_id: uuid.UUID, view: CurrentView, console: Handlers, pages: Renderer
) -> Response:
    return pages.show(view, await console.audit_case(view.visit, case_id))


# ---------------------------------------------------------------------- what stops a page


async def _to_sign_in(request: Request, _exc: Exception) -> Response:
    if request.query_params.get("fragment"):
        return Response(status_code=401)  # console.js reloads, which shows the sign-in
    return get_pages(request).signin(await view_of(request), 401, "signin.required")


async def _not_for_role(request: Request, _exc: Exception) -> Response:
    view = await view_of(request)
    return get_pages(request).render(view, "error.html", 403, message="error.not_for_role")


async def _bad_form(request: Request, _exc: Exception) -> Response:
    view = await view_of(request)
    return get_pages(request).render(view, "error.html", 403, message="error.bad_form")


async def _service_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceCallError)
    view = await view_of(request)
    return get_pages(request).render(
        view, "error.html", refusal_status(exc.status), message=refusal_message(exc.code)
    )


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    if request.url.path.startswith(("/healthz", "/readyz")):
        return JSONResponse({"code": "invalid_request", "field": field}, status_code=422)
    view = await view_of(request)
    return get_pages(request).render(
        view, "error.html", 422, message="error.invalid_request", field=field
    )


def install_exception_handlers(app: FastAPI) -> None:
    """The console answers people with pages, not JSON: each refusal its own page."""
    app.add_exception_handler(SignInRequiredError, _to_sign_in)
    app.add_exception_handler(RoleRefusedError, _not_for_role)
    app.add_exception_handler(FormRejectedError, _bad_form)
    app.add_exception_handler(ServiceCallError, _service_refused)
    app.add_exception_handler(RequestValidationError, _invalid_request)
