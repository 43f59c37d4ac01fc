"""Delivery to agencies' own systems: every routed task on its actor type's dispatch topic
(and the agency's own topic); signed webhooks with retries and backoff against a local
receiver; a delivery record per task; a hanging webhook never holds up another agency's."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from contracts.events import AgencyType, Envelope, EventType
from contracts.reports import ViolenceType
from services.routing.adapters.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from testkit.kafka import read_all
from testkit.routing_harness import (
    Isolation,
    claimed_redis_db,
    envelopes,
    publish,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

CASES = 4
KEYS = {"OCSEA_TEST_WEBHOOK_CPU": "cpu-secret", "OCSEA_TEST_WEBHOOK_POLICE": "police-secret"}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Receiver:
    """An agency's system on 127.0.0.1: /flaky fails each delivery twice, /hang never answers."""

    calls: list[tuple[str, dict[str, str], bytes, datetime]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.calls.append((scope["path"], headers, body, datetime.now(UTC)))
        status = 200
        if scope["path"] == "/hang":
            await asyncio.sleep(30)
        elif scope["path"] == "/flaky":
            event_id = headers.get("x-ocsea-event-id", "")
            self.failures[event_id] = self.failures.get(event_id, 0) + 1
            status = 503 if self.failures[event_id] <= 2 else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@contextlib.asynccontextmanager
async def receiver_on_localhost() -> AsyncIterator[tuple[Receiver, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    receiver = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: _started(server), what="the webhook receiver")
    try:
        yield receiver, port
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, timeout=10)


async def _started(server: uvicorn.Server) -> bool:
    return bool(server.started)


@pytest.fixture
async def redis_db(stack_env: dict[str, str]) -> AsyncIterator[int]:
    async with claimed_redis_db(stack_env) as db:
        yield db


async def test_tasks_reach_dispatch_topics_and_signed_webhooks_and_a_hanging_one_blocks_none(
    stack_env: dict[str, str], tmp_path: Path, redis_db: int
) -> None:
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    async with receiver_on_localhost() as (receiver, port):
        namespace_topic = f"ocsea.test.agency-cpu.{port}"
        directory = short_directory(
            p1_ack=600,
            cpu_delivery=(
                "[agencies.delivery]\n"
                f'kafka_topic = "{namespace_topic}"\n'
                f'webhook_url = "http://127.0.0.1:{port}/flaky?token=never-recorded"\n'
                'webhook_secret_env = "OCSEA_TEST_WEBHOOK_CPU"\n'
            ),
            police_delivery=(
                "[agencies.delivery]\n"
                f'webhook_url = "http://127.0.0.1:{port}/hang"\n'
                'webhook_secret_env = "OCSEA_TEST_WEBHOOK_POLICE"\n'
            ),
        )
        isolation = Isolation.create(tmp_path, directory, redis_db)
        async with routing_instance(stack_env, isolation, environ=KEYS) as routing:
            cases = [triaged_event(violence_types=[ViolenceType.SEXTORTION]) for _ in range(CASES)]
            await publish(bootstrap, routing.topics.triaged, cases)

            async def records() -> list[Envelope] | None:
                events = envelopes(await read_all(bootstrap, routing.topics.tasks))
                found = [e for e in events if e.event_type == EventType.TASK_DELIVERED]
                return found if len(found) >= 2 * CASES else None

            delivered = await wait_for(records, within=30, what="a delivery record per task")
            events = envelopes(await read_all(bootstrap, routing.topics.tasks))
            assigned = {
                e.data["task_id"]: e for e in events if e.event_type == EventType.TASK_ASSIGNED
            }
            cpu_task = next(t for t, e in assigned.items() if e.data["agency_id"] == "cpu")

            async def recorded_on_the_task() -> dict[str, str] | None:
                view = await routing.client.get(
                    f"/v1/tasks/{cpu_task}", headers=routing.headers("officer-cpu")
                )
                deliveries: dict[str, str] = view.json()["deliveries"]
                return deliveries or None

            assert await wait_for(recorded_on_the_task, what="the record on the task") == {
                "webhook": "delivered"
            }
            dispatched = {
                agency_type: envelopes(await read_all(bootstrap, topic))
                for agency_type, topic in routing.topics.dispatch.items()
            }
            own_topic = envelopes(await read_all(bootstrap, namespace_topic))

    by_agency: dict[str, list[Envelope]] = {"cpu": [], "police": []}
    for record in delivered:
        by_agency[record.data["agency_id"]].append(record)
    assert len(by_agency["cpu"]) == len(by_agency["police"]) == CASES
    for record in by_agency["cpu"]:
        assert (record.data["outcome"], record.data["attempts"]) == ("delivered", 3)
        assert record.data["status_code"] == 200
        assert record.data["destination"] == f"http://127.0.0.1:{port}/flaky"  # no token
    for record in by_agency["police"]:
        assert (record.data["outcome"], record.data["attempts"]) == ("failed", 3)
        assert record.data["error"] == "ReadTimeout"
    # The hanging police webhook held up nothing: every child protection delivery was done
    # before the first police delivery had even given up.
    assert max(r.occurred_at for r in by_agency["cpu"]) < min(
        r.occurred_at for r in by_agency["police"]
    )

    # Each delivery signed with its agency's key over the exact bytes of the assigned event;
    # retries came with backoff, not at once.
    flaky = [c for c in receiver.calls if c[0] == "/flaky"]
    assert len(flaky) == 3 * CASES
    for _, headers, body, _at in flaky:
        assert verify(
            b"cpu-secret",
            headers[TIMESTAMP_HEADER.lower()],
            body,
            headers[SIGNATURE_HEADER.lower()],
        )
        assert not verify(
            b"police-secret",
            headers[TIMESTAMP_HEADER.lower()],
            body,
            headers[SIGNATURE_HEADER.lower()],
        )
        sent = Envelope.model_validate_json(body)
        assert sent == assigned[sent.data["task_id"]]
        assert headers["x-ocsea-event-id"] == str(sent.event_id)
    for event_id in {h["x-ocsea-event-id"] for _, h, _, _ in flaky}:
        times = sorted(at for _, h, _, at in flaky if h["x-ocsea-event-id"] == event_id)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert gaps[0] >= 0.15, gaps  # backoff 0.2 s
        assert gaps[1] >= 0.3, gaps  # then 0.4 s

    # Every task on its actor type's topic, and the agency's own topic.
    assert {e.data["task_id"] for e in dispatched[AgencyType.CHILD_PROTECTION]} == {
        t for t, e in assigned.items() if e.data["agency_id"] == "cpu"
    }
    assert {e.data["task_id"] for e in dispatched[AgencyType.POLICE]} == {
        t for t, e in assigned.items() if e.data["agency_id"] == "police"
    }
    assert dispatched[AgencyType.LEGAL] == []
    assert dispatched[AgencyType.GBV_CASE_MANAGEMENT] == []
    assert {e.event_id for e in own_topic} == {
        e.event_id for e in dispatched[AgencyType.CHILD_PROTECTION]
    }
