"""Triage's side of need-to-know: the access record (published before any answer, a failed
record refusing the read) and the grounds it asks routing for with the caller's own token."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import httpx
import pytest
from faststream.kafka import KafkaBroker

from contracts import topics
from contracts.events import CaseAccessData, Envelope
from ocsea.runtime.access import (
    AccessLog,
    CaseGrounds,
    GroundsClient,
    GroundsUnavailableError,
)
from ocsea.runtime.auth import Principal, Role
from ocsea.runtime.errors import ApiError

SUPERVISOR = Principal(name="supervisor-erbil-cpu", role=Role.SUPERVISOR, agency="erbil-cpu")
AUDITOR = Principal(name="auditor", role=Role.AUDITOR)


class FakeBroker:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[tuple[str, bytes, bytes]] = []

    async def publish(self, body: bytes, *, topic: str, key: bytes, **_: Any) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.published.append((topic, key, body))


def access_log(broker: FakeBroker) -> AccessLog:
    return AccessLog(cast(KafkaBroker, broker), "triage")


async def test_a_read_is_published_on_the_access_topic_keyed_by_its_case() -> None:
    broker = FakeBroker()
    case_id, task_id, report_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    event_id = await access_log(broker).viewed(
        case_id,
        SUPERVISOR,
        reason="open task on the case",
        task_ids=[task_id],
        report_ids=[report_id],
    )
    [(topic, key, body)] = broker.published
    assert (topic, key) == (topics.ACCESS, str(case_id).encode())
    event = Envelope.model_validate_json(body)
    assert (event.event_id, event.event_type, event.case_id) == (event_id, "case.viewed", case_id)
    assert (event.actor.kind, event.actor.id, event.actor.agency) == (
        "supervisor",
        "supervisor-erbil-cpu",
        "erbil-cpu",
    )
    data = event.payload(CaseAccessData)
    assert (data.task_ids, data.report_ids, data.personal_data_shown) == (
        (task_id,),
        (report_id,),
        False,
    )


async def test_a_read_that_cannot_be_recorded_is_refused() -> None:
    with pytest.raises(ApiError) as refused:
        await access_log(FakeBroker(fail=True)).viewed(uuid.uuid4(), AUDITOR, reason="auditor")
    assert (refused.value.status, refused.value.code) == (503, "access_not_recorded")


async def test_a_refusal_stands_whether_or_not_it_is_recorded() -> None:
    broker = FakeBroker()
    case_id = uuid.uuid4()
    await access_log(broker).denied(case_id, SUPERVISOR, reason="no open task")
    [(_, _, body)] = broker.published
    event = Envelope.model_validate_json(body)
    assert (event.event_type, event.actor.kind) == ("case.access_denied", "supervisor")
    await access_log(FakeBroker(fail=True)).denied(case_id, SUPERVISOR, reason="no open task")


def routing(handler: Any) -> GroundsClient:
    return GroundsClient(
        "http://routing.test/", timeout_s=1, transport=httpx.MockTransport(handler)
    )


async def test_grounds_are_asked_for_with_the_callers_own_token() -> None:
    case_id, task_id = uuid.uuid4(), uuid.uuid4()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"case_id": str(case_id), "task_ids": [str(task_id)]})

    client = routing(handler)
    found = await client.grounds(case_id, "callers-token")
    await client.close()
    assert found == CaseGrounds(case_id=case_id, task_ids=(task_id,))
    [request] = seen
    assert str(request.url) == f"http://routing.test/v1/cases/{case_id}/grounds"
    assert request.headers["authorization"] == "Bearer callers-token"


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refusal_by_routing_is_no_grounds(status: int) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": "case_access_denied", "message": "no"})

    assert await routing(handler).grounds(uuid.uuid4(), "token") is None


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, json={"code": "error"}),
        httpx.Response(503, json={"code": "projection_rebuilding"}),
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json={"case_id": str(uuid.uuid4()), "task_ids": []}),
        # grounds for another case than the one asked about
        httpx.Response(200, json={"case_id": str(uuid.uuid4()), "task_ids": [str(uuid.uuid4())]}),
    ],
)
async def test_no_answer_from_routing_grants_nothing(answer: httpx.Response) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return answer

    with pytest.raises(GroundsUnavailableError):
        await routing(handler).grounds(uuid.uuid4(), "token")


async def test_routing_unreachable_grants_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(GroundsUnavailableError):
        await routing(handler).grounds(uuid.uuid4(), "token")


def test_the_grounds_answer_names_at_least_one_task() -> None:
    with pytest.raises(ValueError, match="task_ids"):
        CaseGrounds.model_validate_json(json.dumps({"case_id": str(uuid.uuid4()), "task_ids": []}))
