"""`ocsea bench`: the end-to-end benchmark (its code lives in `bench/e2e/`, imported only when
the command runs, so the services never load it). `python -m ocsea.bench_cli` runs it too."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

PHASE_HELP = (
    "Comma-separated phases to run (in this order): baseline (bare aiokafka relay), batch "
    "(batch-channel throughput), single (POST /v1/reports throughput), p1 (a live P1 behind a "
    "bulk backlog), fixed (latency at a steady rate)"
)


def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Small counts, every phase bounded: under a minute")
    ] = False,
    reports: Annotated[
        int | None, typer.Option(help="Reports through the batch channel (100,000; quick 3,000)")
    ] = None,
    singles: Annotated[
        int | None, typer.Option(help="Reports through POST /v1/reports (10,000; quick 500)")
    ] = None,
    backlog: Annotated[
        int | None, typer.Option(help="Bulk backlog ahead of the live P1 (100,000; quick 2,000)")
    ] = None,
    baseline_messages: Annotated[
        int | None, typer.Option(help="Messages through the bare relay (20,000; quick 3,000)")
    ] = None,
    rate: Annotated[float, typer.Option(help="Reports/s offered in the fixed-load phase")] = 200,
    seconds: Annotated[
        float | None, typer.Option(help="Length of the fixed-load phase (60 s; quick 10 s)")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Connections posting single reports")] = 32,
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per batch upload (1,000; quick 250)")
    ] = None,
    batch_concurrency: Annotated[int, typer.Option(help="Batch uploads in flight")] = 2,
    replicas: Annotated[
        str | None, typer.Option(help="Passed to `ocsea run`, e.g. triage=2,routing=2")
    ] = None,
    single_process: Annotated[
        bool, typer.Option("--single-process", help="Passed to `ocsea run`: one process")
    ] = False,
    lane_processes: Annotated[
        bool,
        typer.Option(help="Passed to `ocsea run`: bulk lanes in processes of their own"),
    ] = True,
    partitions: Annotated[int, typer.Option(help="Partitions per topic (private stack)")] = 6,
    phases: Annotated[str, typer.Option(help=PHASE_HELP)] = "baseline,batch,single,p1,fixed",
    stall: Annotated[
        float | None,
        typer.Option(help="End a phase when no task appeared for this many seconds"),
    ] = None,
    drain: Annotated[
        float | None,
        typer.Option(
            help="After the live P1 has its task, wait at most this many seconds for the "
            "backlog to drain (its drain rate is measured over that time)"
        ),
    ] = None,
    profile: Annotated[
        bool, typer.Option("--profile", help="py-spy each service during the batch phase")
    ] = False,
    env: Annotated[
        list[str] | None,
        typer.Option(help="OCSEA_NAME=value for the system under test (repeatable)"),
    ] = None,
    temp_stack: Annotated[
        bool,
        typer.Option("--temp-stack", help="A throwaway Kafka and Redis, not the kept private one"),
    ] = False,
    stop_stack: Annotated[
        bool, typer.Option("--stop-stack", help="Stop the kept private Kafka and Redis; exit")
    ] = False,
    intake_url: Annotated[
        str | None,
        typer.Option(help="Measure a running system instead (its topics get every report)"),
    ] = None,
    kafka: Annotated[str, typer.Option(help="That system's Kafka")] = "127.0.0.1:9092",
    var_dir: Annotated[
        Path | None, typer.Option(help="That system's var/ (credentials, pid files)")
    ] = None,
    credentials: Annotated[
        Path | None, typer.Option(help="That system's demo-credentials.json")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the run's directory (log, ledger)")
    ] = False,
) -> None:
    """Measure the whole system end to end: throughput through the batch channel and
    POST /v1/reports against a bare aiokafka relay, latency at a steady load, a live P1 behind
    a bulk backlog, CPU and memory per service. Prints a table, then one JSON line."""
    try:
        from bench.e2e.main import Options, run
        from bench.e2e.system import stop_kept_stack
    except ImportError as exc:  # an installed package without the repository's bench/
        raise typer.BadParameter(f"the benchmark needs the repository's bench/: {exc}") from exc
    if stop_stack:
        stop_kept_stack(lambda line: typer.echo(line, err=True))
        return
    options = Options(
        quick=quick,
        reports=reports,
        singles=singles,
        backlog=backlog,
        baseline_messages=baseline_messages,
        rate=rate,
        seconds=seconds,
        concurrency=concurrency,
        batch_size=batch_size,
        batch_concurrency=batch_concurrency,
        replicas=replicas,
        single_process=single_process,
        lane_processes=lane_processes,
        partitions=partitions,
        phases=tuple(p.strip() for p in phases.split(",") if p.strip()),
        stall_s=stall,
        drain_s=drain,
        temp_stack=temp_stack,
        intake_url=intake_url,
        kafka=kafka,
        var_dir=var_dir,
        credentials=credentials,
        env=tuple(env or ()),
        profile=profile,
        keep=keep,
    )
    raise typer.Exit(asyncio.run(run(options)))


app = typer.Typer(add_completion=False)
app.command()(bench)

if __name__ == "__main__":
    app()
