"""`ocsea triage …`: run the service, and the rule-set tools.

ocsea triage                     run the triage service (same as `ocsea triage serve`)
ocsea triage replay --rules FILE [--from T1] [--to T2] [--json]
                                 what a candidate rule set would change on past reports
ocsea triage check-rules FILE    validate a rule set, print its version and digest
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from contracts import topics
from ocsea.runtime.cli import service_command


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            "expected an ISO 8601 date or date-time, e.g. 2026-11-20T00:00:00+03:00",
            param_hint=option,
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def make_app(serve: Callable[[], None]) -> typer.Typer:
    app = service_command(
        help_text="The triage service (run with no command), and its rule-set tools.",
        serves="the triage service (port 8082)",
        serve=serve,
    )

    @app.command()
    def replay(
        rules: Annotated[Path, typer.Option(help="The candidate rule set (TOML)")],
        from_: Annotated[
            str | None,
            typer.Option("--from", help="Reports received from (ISO 8601; default: all)"),
        ] = None,
        to: Annotated[
            str | None, typer.Option("--to", help="…and before (ISO 8601; default: now)")
        ] = None,
        baseline: Annotated[
            Path | None, typer.Option(help="Rules to compare with; default: the configured ones")
        ] = None,
        topic: Annotated[str, typer.Option(help="Where the received reports are")] = (
            topics.REPORTS_RECEIVED
        ),
        read_sealed: Annotated[
            bool, typer.Option(help="Read sealed narratives for terms, as the service does")
        ] = True,
        json_output: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    ) -> None:
        """Show what a candidate rule set would change on past reports; publishes nothing."""
        from redis.asyncio import Redis

        from ocsea.runtime.crypto import CaseKeys
        from ocsea.runtime.keystore import KeyStore
        from ocsea.runtime.settings import Settings
        from services.triage.adapters.kafka import KafkaReceivedHistory
        from services.triage.adapters.sealed import SealedReader
        from services.triage.config import TriageSettings
        from services.triage.domain.rules import RulesError, load_rules
        from services.triage.handlers import replay_rules

        from_at, to_at = _moment(from_, "--from"), _moment(to, "--to")
        settings, triage_settings = Settings(), TriageSettings()
        try:
            candidate = load_rules(rules)
            current = load_rules(baseline or triage_settings.rules_file)
        except RulesError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc

        async def run() -> str:
            redis = Redis.from_url(settings.redis_url)
            store = KeyStore.from_settings(settings)
            try:
                # Read-only: an absent master key is not created, absent case keys are not.
                key_file = settings.resolved_master_key_file
                keys = (
                    CaseKeys(redis, key_file.read_bytes(), store)
                    if read_sealed and key_file.is_file()
                    else None
                )
                summary = await replay_rules(
                    KafkaReceivedHistory(settings.kafka_bootstrap, topic),
                    SealedReader(keys),
                    baseline=current,
                    candidate=candidate,
                    from_at=from_at,
                    to_at=to_at,
                )
            finally:
                await redis.aclose()
                await store.close()
            return summary.as_json() if json_output else summary.as_text()

        try:
            typer.echo(asyncio.run(run()))
        except (LookupError, TimeoutError) as exc:
            typer.echo(f"replay failed: {exc}", err=True)
            raise typer.Exit(1) from exc

    @app.command("check-rules")
    def check_rules(rules: Annotated[Path, typer.Argument(help="A rule set (TOML)")]) -> None:
        """Validate a rule set and print its version and digest."""
        from services.triage.domain.rules import RulesError, load_rules

        try:
            loaded = load_rules(rules)
        except RulesError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        typer.echo(f"{loaded.version} {loaded.digest}")

    return app
