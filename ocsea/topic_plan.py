"""A deployment's Kafka topics and their scale-out settings, from a file (deploy/kafka/topics.toml).

The services create a topic they find missing (`ensure_topics`), with the partition count and
replication factor of their settings and the broker's defaults for everything else. A
deployment decides more than that: how many partitions each topic has (the most replicas of a
consumer that can share the work), three replicas, and `min.insync.replicas=2`, so an event the
producers' `acks=all` reports as written survives the loss of a broker. This module makes a
cluster match the file, before the services start:

    ocsea topics deploy/kafka/topics.toml           # create and configure
    ocsea topics deploy/kafka/topics.toml --check   # only report differences

It creates the missing topics, and sets each existing topic's configuration to the file's (the
whole set: a config the file does not name returns to the broker's default). It never changes a
partition count: Kafka cannot take partitions away, and adding some moves keys, so a case's next
events would land on another partition than its earlier ones and could be consumed before them.
A topic with fewer partitions than the file asks is reported, to be raised by hand with the
producers stopped and the consumers drained (deploy/README.md).
"""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ocsea.runtime.settings import Settings


class TopicSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: int = Field(ge=1)
    replication_factor: int = Field(ge=1)
    config: dict[str, str] = Field(default_factory=dict)


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int | None = Field(default=None, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    config: dict[str, str] = Field(default_factory=dict)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: _Defaults = Field(default_factory=_Defaults)
    topics: dict[str, dict[str, Any]]


class TopicPlanError(ValueError):
    pass


def load_plan(path: Path) -> dict[str, TopicSpec]:
    """Each topic of the file with the defaults filled in (a topic's own `config` entries
    override the default ones)."""
    try:
        raw = _File.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
        plan = {}
        for name, own in raw.topics.items():
            merged = raw.defaults.model_dump(exclude_none=True) | own
            merged["config"] = raw.defaults.config | own.get("config", {})
            plan[name] = TopicSpec.model_validate(merged)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise TopicPlanError(f"topic plan {path}: {exc}") from exc
    return plan


@dataclass
class PlanReport:
    """What differed from the plan: what was (or, checking only, would be) made to match, and
    what only an operator can change."""

    matched: list[str] = field(default_factory=list)
    by_hand: list[str] = field(default_factory=list)


async def apply_plan(
    bootstrap: str, plan: dict[str, TopicSpec], *, check_only: bool = False
) -> PlanReport:
    """Make the cluster match `plan`, or with `check_only` only say where it differs."""
    report = PlanReport()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = await _described(admin, set(plan))
        missing = {name: spec for name, spec in sorted(plan.items()) if name not in existing}
        report.matched += [f"{name}: {'missing' if check_only else 'created'}" for name in missing]
        if not check_only and missing:
            await _create(admin, missing)
            await _until_visible(admin, missing)
        for name, partitions in sorted(existing.items()):
            spec = plan[name]
            if len(partitions) < spec.partitions:
                report.by_hand.append(
                    f"{name}: {len(partitions)} partitions, the plan asks {spec.partitions} "
                    "(add them with producers stopped and consumers drained)"
                )
            replicas = min(len(p["replicas"]) for p in partitions)
            if replicas < spec.replication_factor:
                report.by_hand.append(
                    f"{name}: replication factor {replicas}, the plan asks "
                    f"{spec.replication_factor} (reassign the partitions)"
                )
        current = await _own_configs(admin, sorted(existing))
        drifted = {n: plan[n].config for n in sorted(existing) if current[n] != plan[n].config}
        verb = "differs from" if check_only else "set to"
        report.matched += [f"{n}: config {current[n]} {verb} {c}" for n, c in drifted.items()]
        if drifted and not check_only:
            responses = await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n, c) for n, c in drifted.items()]
            )
            for response in responses:
                for code, message, _kind, name in response.resources:
                    if code:
                        raise TopicPlanError(f"cannot configure {name}: error {code} {message}")
        return report
    finally:
        await admin.close()


async def _described(admin: AIOKafkaAdminClient, names: set[str]) -> dict[str, list[Any]]:
    """The partitions of those of `names` that exist. Only existing topics are described: a
    metadata request for a missing one makes a broker that auto-creates topics create it, with
    its default partition count."""
    present = sorted(names & set(await admin.list_topics()))
    described = await admin.describe_topics(present) if present else []
    return {str(t["topic"]): list(t["partitions"]) for t in described if not t["error_code"]}


async def _create(admin: AIOKafkaAdminClient, specs: dict[str, TopicSpec]) -> None:
    if not specs:
        return
    response = await admin.create_topics(
        [
            NewTopic(name, spec.partitions, spec.replication_factor, topic_configs=spec.config)
            for name, spec in specs.items()
        ]
    )
    for name, code, *message in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise TopicPlanError(f"cannot create Kafka topic {name}: error {code} {message}")


async def _until_visible(admin: AIOKafkaAdminClient, specs: dict[str, TopicSpec]) -> None:
    """Return once the cluster's metadata shows the new topics with all their partitions: the
    controller accepts a topic before every broker knows it, and the services that start next
    must find it."""
    deadline = asyncio.get_running_loop().time() + VISIBLE_WITHIN_S
    while True:
        seen = {name: len(p) for name, p in (await _described(admin, set(specs))).items()}
        if all(seen.get(name) == spec.partitions for name, spec in specs.items()):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TopicPlanError(f"created topics not visible after {VISIBLE_WITHIN_S} s: {seen}")
        await asyncio.sleep(0.2)


VISIBLE_WITHIN_S = 60.0

_TOPIC_CONFIG_SOURCE = 1
"""DescribeConfigs' `config_source` of a value set on the topic itself (DYNAMIC_TOPIC_CONFIG)."""


async def _own_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The settings set on each topic itself (not inherited from the broker)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, None) for name in names]
    found: dict[str, dict[str, str]] = {name: {} for name in names}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            name = str(resource["resource_name"])
            for entry in resource["config_entries"]:
                if entry["config_source"] == _TOPIC_CONFIG_SOURCE:
                    found[name][str(entry["config_names"])] = str(entry["config_value"])
    return found


def main(
    path: Annotated[Path, typer.Argument(help="The topic plan (TOML)")],
    check: Annotated[bool, typer.Option("--check", help="Only report differences")] = False,
) -> None:
    """Create the deployment's Kafka topics and set their configuration (OCSEA_KAFKA_BOOTSTRAP)."""
    try:
        plan = load_plan(path)
    except TopicPlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    report = asyncio.run(apply_plan(Settings().kafka_bootstrap, plan, check_only=check))
    for line in report.matched:
        typer.echo(line)
    for line in report.by_hand:
        typer.echo(f"by hand: {line}")
    # Checking fails on any difference; applying, on what it could not make match.
    raise typer.Exit(1 if report.by_hand or (check and report.matched) else 0)


if __name__ == "__main__":
    typer.run(main)
