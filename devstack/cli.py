"""`ocsea stack up|down|status|reset|env` (mounted by ocsea/cli.py from a checkout);
`python -m devstack ...` runs it too."""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Iterator
from typing import Annotated

import typer

from devstack.settings import LOOPBACK, StackError, StackSettings
from devstack.stack import down, reset, service_env, status, up

app = typer.Typer(
    name="stack",
    help="The local Kafka (KRaft), Redis and PostgreSQL stack on loopback, under var/stack/.",
    no_args_is_help=True,
    add_completion=False,
)


@contextlib.contextmanager
def _cli_errors() -> Iterator[None]:
    try:
        yield
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("up")
def up_command(
    no_postgres: Annotated[
        bool, typer.Option("--no-postgres", help="Start only Kafka and Redis.")
    ] = False,
) -> None:
    """Start the stack (idempotent) and wait until every component is ready."""
    with _cli_errors():
        up(StackSettings(), with_postgres=not no_postgres)


@app.command("down")
def down_command() -> None:
    """Stop the stack gracefully; its data stays."""
    with _cli_errors():
        down(StackSettings())


@app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether each component is running and ready."""
    with _cli_errors():
        report = status(StackSettings())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for name, item in report.items():
        state = "running" if item["running"] else "stopped"
        ready = "ready" if item["ready"] else "not ready"
        pid = f"pid {item['pid']}" if item["pid"] else "-"
        password = f"  password: {item['password']}" if "password" in item else ""
        typer.echo(
            f"{name:<9} {state:<8} {ready:<10} {pid:<11} {LOOPBACK}:{item['port']:<6} "
            f"{item['data_dir']}{password}"
        )


@app.command("reset")
def reset_command() -> None:
    """Stop the stack and delete all its data (Kafka topics, Redis keys, databases)."""
    with _cli_errors():
        reset(StackSettings())


@app.command("env")
def env_command() -> None:
    """Print `export K=V` lines pointing the application at the stack."""
    with _cli_errors():
        for key, value in service_env(StackSettings()).items():
            typer.echo(f"export {key}={shlex.quote(value)}")
