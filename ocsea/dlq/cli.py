"""The `ocsea dlq` commands."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from aiokafka.errors import KafkaError

from ocsea.dlq.kafka import Parked, dlq_topics, read_parked, redrive
from ocsea.dlq.letters import (
    DlqError,
    details,
    details_text,
    dlq_topic_name,
    mark_of,
    select,
    summary,
    table,
)
from ocsea.runtime.settings import Settings

# --- the commands --------------------------------------------------------------------------

app = typer.Typer(
    help="Records parked on the .dlq topics: list, show, re-drive", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]
WithinOption = Annotated[
    float,
    typer.Option("--read-timeout", min=1, help="Seconds to read a topic to its end"),
]


def _settings() -> Settings:
    return Settings()


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"dlq: {exc}", err=True)
    return typer.Exit(1)


@app.command("list")
def list_command(
    topic: Annotated[
        str | None,
        typer.Option(help="One .dlq topic (or its source topic); default: every .dlq topic"),
    ] = None,
    json_output: JsonOption = False,
    within_s: WithinOption = 60.0,
) -> None:
    """Every parked record: its origin, event, why it was parked, whether it was re-driven."""
    settings = _settings()

    async def gather() -> list[Parked]:
        names = [dlq_topic_name(topic)] if topic else await dlq_topics(settings.kafka_bootstrap)
        return await read_parked(settings, names, within_s=within_s)

    try:
        everything = asyncio.run(gather())
    except (DlqError, KafkaError, TimeoutError) as exc:
        raise _fail(exc) from exc
    if json_output:
        rows = [
            summary(letter, mark_of(letter, parked.marks))
            for parked in everything
            for letter in parked.letters
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    for parked in everything:
        redriven = sum(mark_of(letter, parked.marks) is not None for letter in parked.letters)
        typer.echo(f"{parked.topic}: {len(parked.letters)} parked, {redriven} re-driven")
        if parked.letters:
            typer.echo(table(parked.letters, parked.marks))
    if not everything:
        typer.echo("no .dlq topics")


@app.command()
def show(
    dlq_topic: Annotated[str, typer.Argument(help="The .dlq topic (or its source topic)")],
    ref: Annotated[str, typer.Argument(help="partition:offset (or an offset)")],
    json_output: JsonOption = False,
    within_s: WithinOption = 60.0,
) -> None:
    """One parked record's metadata and headers (the payload only as size and digest)."""
    settings = _settings()
    name = dlq_topic_name(dlq_topic)
    try:
        [parked] = asyncio.run(read_parked(settings, [name], within_s=within_s))
        [letter] = select(parked.letters, [ref])
    except (DlqError, KafkaError, TimeoutError) as exc:
        raise _fail(exc) from exc
    info = details(letter, mark_of(letter, parked.marks))
    typer.echo(json.dumps(info, indent=2) if json_output else details_text(info))


@app.command("redrive")
def redrive_command(
    dlq_topic: Annotated[str, typer.Argument(help="The .dlq topic (or its source topic)")],
    offset: Annotated[
        list[str] | None,
        typer.Option("--offset", help="partition:offset (or an offset) of a record; repeatable"),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every record not re-driven yet")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be published; publish nothing")
    ] = False,
    json_output: JsonOption = False,
    within_s: WithinOption = 60.0,
) -> None:
    """Publish parked records back to their source topic, once each, after their cause is fixed.

    The copy keeps the record's key, value and event id: a consumer group that applied the
    event already skips it, so it is applied once."""
    if bool(offset) == all_:
        raise typer.BadParameter("give --offset (one or more) or --all", param_hint="--offset")
    settings = _settings()

    def say(line: str) -> None:
        typer.echo(line, err=True)

    try:
        outcome = asyncio.run(
            redrive(
                settings,
                dlq_topic_name(dlq_topic),
                None if all_ else offset,
                dry_run=dry_run,
                within_s=within_s,
                progress=say,
            )
        )
    except (DlqError, KafkaError, TimeoutError) as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(outcome.as_dict(), indent=2) if json_output else outcome.as_text())
