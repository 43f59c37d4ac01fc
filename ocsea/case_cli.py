"""`ocsea case erase`: an operator erases a case's personal data, through routing's API.

It calls `POST /v1/cases/{case_id}/erasure` rather than touching the key store itself: the
endpoint is where the operator is authenticated, the erasure is published as `case.erased`
for the ledger, and the key store's credentials and the master key stay with the services,
never on an operator's machine.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import httpx
import typer

from contracts.events import ErasureReason
from ocsea.runtime.settings import Settings

app = typer.Typer(name="case", help="Operators' acts on a case", no_args_is_help=True)


def _routing_url() -> str:
    settings = Settings()
    return f"http://{settings.host}:{settings.routing_port}"


def _token(token: str | None) -> str:
    if token:
        return token
    credentials = Settings().var_dir / "demo-credentials.json"
    if credentials.is_file():
        demo = json.loads(credentials.read_text()).get("operator", {}).get("token")
        if isinstance(demo, str):
            return demo
    raise typer.BadParameter(
        "give an operator's token (or set OCSEA_OPERATOR_TOKEN)", param_hint="--token"
    )


@app.command("erase")
def erase(
    case_id: Annotated[uuid.UUID, typer.Argument(help="The case whose personal data to erase")],
    reason: Annotated[ErasureReason, typer.Option(help="Why (a code, never words)")],
    reference: Annotated[
        str | None,
        typer.Option(help="Your record of the request, e.g. a ticket id (letters, digits, ._:-)"),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="OCSEA_ROUTING_URL", help="Routing; default: this host's", show_default=False
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="OCSEA_OPERATOR_TOKEN",
            help="An operator's bearer token; default: the local demo operator's",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Destroy the case's data key: its personal data can no longer be opened anywhere, every
    view of it says so, and the ledger records the erasure. Final; repeating it changes
    nothing."""
    body: dict[str, str] = {"reason": reason.value}
    if reference is not None:
        body["reference"] = reference
    target = f"{(url or _routing_url()).rstrip('/')}/v1/cases/{case_id}/erasure"
    try:
        response = httpx.post(
            target, json=body, headers={"Authorization": f"Bearer {_token(token)}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        typer.echo(f"error: routing did not answer ({type(exc).__name__}): {target}", err=True)
        raise typer.Exit(1) from exc
    if response.status_code != 200:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        typer.echo(f"error: {response.status_code}: {message}", err=True)
        raise typer.Exit(1)
    done = response.json()
    typer.echo(
        f"erased: case {done['case_id']} at {done['erased_at']} ({done['reason']}); "
        f"recorded as event {done['event_id']}"
    )
