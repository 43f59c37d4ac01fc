"""`ocsea drill`: failure drills on a private stack (the code lives in `drills/`, imported only
when the command runs, so the services never load it). See the README's "Drills"."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer


class DrillProfile(StrEnum):
    CI = "ci"
    FULL = "full"


def drill(
    profile: Annotated[
        DrillProfile,
        typer.Option(help="ci: 250 reports per drill, minutes; full: 3,000 per drill"),
    ] = DrillProfile.CI,
    only: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated drills, e.g. kill-routing,redis-flushall (an unknown name "
            "lists them)"
        ),
    ] = None,
    reports: Annotated[
        int | None, typer.Option(min=2, help="Reports per drill, instead of the profile's")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the run's files (system log) even if all pass")
    ] = False,
) -> None:
    """Run the failure drills: each a stream of reports with one fault injected mid-stream
    (kill -9 of each service, Kafka restarted, Redis restarted, flushed, down 10 s, the
    ledger database down 30 s), then the end state checked against every 202. Prints a table
    and one JSON line; exits 1 when any zero that belongs is not one."""
    try:
        from drills.main import Options, run
    except ImportError as exc:  # an installed package without the repository's drills/
        raise typer.BadParameter(f"the drills need the repository's drills/: {exc}") from exc
    names = tuple(n.strip() for n in (only or "").split(",") if n.strip())
    options = Options(profile=profile.value, only=names, reports=reports, keep=keep)
    raise typer.Exit(asyncio.run(run(options)))
