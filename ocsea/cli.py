"""`ocsea`: one command for every service, the whole system, and the local stack."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import structlog
import typer
import uvloop

from ocsea.bench_cli import bench as bench_command
from ocsea.case_cli import app as case_app
from ocsea.dlq.cli import app as dlq_app
from ocsea.drill_cli import drill as drill_command
from ocsea.runtime.logging import configure_logging, get_logger
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import tracer_provider
from ocsea.stack_cli import mount as mount_stack
from ocsea.stack_cli import use_local_stack_redis
from ocsea.topic_plan import main as topic_plan_command
from services.audit.entrypoints.cli import make_app as make_audit_app
from services.triage.entrypoints.cli import make_app as make_triage_app

app = typer.Typer(help="OCSEA response mechanism", no_args_is_help=True, add_completion=False)
contracts_app = typer.Typer(help="Event and API contracts", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")

mount_stack(app)  # `ocsea stack`: devstack/ of the checkout, imported when it runs
app.command("bench")(bench_command)
app.command("drill")(drill_command)
app.command("topics", help="Make a cluster's topics match a topic plan (deploy/kafka/topics.toml)")(
    topic_plan_command
)
app.add_typer(dlq_app, name="dlq", help="Records parked on the .dlq topics: list, show, re-drive")
app.add_typer(case_app, name="case", help="Operators' acts on a case: erase its personal data")


def _settings() -> Settings:
    use_local_stack_redis()  # the local stack's Redis asks for a password
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


def _run(names: list[str]) -> NoReturn:
    """The named services in this process, on one event loop."""
    from ocsea.runner import prepare_local, serve

    settings = _settings()
    tracer_provider("ocsea-" + ("-".join(names) if len(names) < 4 else "all"))
    for note in prepare_local(settings):
        print(note, flush=True)
    print(f"starting {', '.join(names)} (Kafka {settings.kafka_bootstrap}) …", flush=True)
    raise typer.Exit(_until_done(serve(settings, names)))


def _until_done(main: Coroutine[Any, Any, int]) -> int:
    """Run a service's event loop; a crash is logged as one JSON line (the traceback without
    local variables, which may hold secrets or case data) and exits 1."""
    try:
        # uvloop: the services' work is mostly socket round trips (Kafka, Redis, HTTP), which
        # it does at a fraction of the standard loop's CPU.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    except Exception:
        get_logger("ocsea.run").exception("service.crashed")
        return 1


@app.command()
def run(
    only: Annotated[
        str | None, typer.Option(help="Comma-separated subset, e.g. intake,triage")
    ] = None,
    replicas: Annotated[
        str | None,
        typer.Option(
            help="Processes per service, e.g. triage=2,routing=2: replicas of an HTTP service "
            "share its port (SO_REUSEPORT) and split its Kafka partitions"
        ),
    ] = None,
    single_process: Annotated[
        bool, typer.Option("--single-process", help="All services in this one process")
    ] = False,
    lane_processes: Annotated[
        bool,
        typer.Option(
            help="Give triage's and routing's bulk lane processes of their own, at a lower CPU "
            "priority, so a backlog never takes the CPU a live report needs"
        ),
    ] = True,
) -> None:
    """Run the services, each in its own supervised process (restarted if it dies)."""
    from ocsea import runner

    try:
        names, notes = runner.select_services(only)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from exc
    try:
        counts = runner.parse_replicas(replicas, names)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replicas") from exc
    if single_process and replicas:
        raise typer.BadParameter("replicas need a process each", param_hint="--replicas")
    for note in notes:
        print(note, flush=True)
    if single_process:
        _run(names)
    settings = _settings()
    busy = runner.ports_in_use(settings, names)
    if busy:
        print(
            f"cannot start: port in use for {', '.join(busy)}. Is another `ocsea run` still "
            "running or stopping? (OCSEA_<SERVICE>_PORT moves a service)",
            flush=True,
        )
        raise typer.Exit(1)
    for note in runner.prepare_local(settings):
        print(note, flush=True)
    children = runner.child_specs(settings, counts, lane_processes=lane_processes)
    processes = len(children)
    print(
        f"starting {', '.join(names)} as {processes} processes "
        f"(Kafka {settings.kafka_bootstrap}; pid files in {runner.run_dir(settings)}) …",
        flush=True,
    )
    raise typer.Exit(asyncio.run(runner.supervise(settings, counts, lane_processes=lane_processes)))


@app.command("serve-one", hidden=True)
def serve_one(
    name: str,
    replica: Annotated[int, typer.Option(min=0)] = 0,
    reuse_port: Annotated[bool, typer.Option("--reuse-port")] = False,
    ready_file: Annotated[Path | None, typer.Option()] = None,
    lanes: Annotated[str | None, typer.Option(help="all, live or bulk")] = None,
) -> None:
    """One service process, as `ocsea run` starts it (local files already prepared)."""
    from ocsea.runner import SERVICES, serve_one

    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}", param_hint="NAME")
    settings = _settings()
    if lanes is not None:
        if lanes not in ("all", "live", "bulk"):
            raise typer.BadParameter("choose all, live or bulk", param_hint="--lanes")
        settings = settings.model_copy(update={"serve_lanes": lanes})
    # Every log line of the process names its service, lane and replica.
    structlog.contextvars.bind_contextvars(
        service=name, replica=replica, lanes=settings.serve_lanes
    )
    tracer_provider(f"ocsea-{name}")
    raise typer.Exit(
        _until_done(serve_one(settings, name, reuse_port=reuse_port, ready_file=ready_file))
    )


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
