"""`ocsea`: one command for every service, the whole system, and the local stack."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ocsea.runtime.logging import configure_logging
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import tracer_provider
from ocsea.stack import app as stack_app
from services.audit.cli import make_app as make_audit_app
from services.triage.cli import make_app as make_triage_app

app = typer.Typer(help="OCSEA response mechanism", no_args_is_help=True, add_completion=False)
contracts_app = typer.Typer(help="Event and API contracts", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")

app.add_typer(stack_app, name="stack", help="The local Kafka, Redis and PostgreSQL stack")


def _run(names: list[str]) -> None:
    from ocsea.runner import prepare_local, serve

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    tracer_provider("ocsea-" + ("-".join(names) if len(names) < 4 else "all"))
    for note in prepare_local(settings):
        print(note, flush=True)
    print(f"starting {', '.join(names)} (Kafka {settings.kafka_bootstrap}) …", flush=True)
    raise typer.Exit(asyncio.run(serve(settings, names)))


@app.command()
def run(
    only: Annotated[
        str | None, typer.Option(help="Comma-separated subset, e.g. intake,triage")
    ] = None,
) -> None:
    """Run all four services in one process."""
    from ocsea.runner import SERVICES

    names = [n.strip() for n in only.split(",")] if only else list(SERVICES)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise typer.BadParameter(f"unknown service(s): {', '.join(unknown)}", param_hint="--only")
    _run(names)


@app.command()
def intake() -> None:
    """Run the intake service (partner API, port 8081)."""
    _run(["intake"])


app.add_typer(
    make_triage_app(serve=lambda: _run(["triage"])),
    name="triage",
    help="Run the triage service (no command), or replay and check its rule sets",
)


@app.command()
def routing() -> None:
    """Run the routing service (officers' task API, port 8083)."""
    _run(["routing"])


app.add_typer(
    make_audit_app(serve=lambda: _run(["audit"])),
    name="audit",
    help="Run the audit service (no command), or verify and export its ledger",
)


@contracts_app.command("export")
def export_contracts() -> None:
    """Write the contracts' JSON Schemas to contracts/schemas/."""
    from contracts.schemas import export

    for path in export():
        print(path)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
