"""The inbox API's paging and sorting, on an isolated routing service (real Kafka and Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from contracts.events import Priority
from testkit.routing_harness import (
    Isolation,
    RoutingInstance,
    claimed_redis_db,
    publish,
    routing_instance,
    short_directory,
    triaged_event,
)
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

CASES = 13
OFFICER = "officer-cpu"


@pytest.fixture(scope="module")
async def routing(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RoutingInstance]:
    """One routing service with CASES tasks for the child protection unit."""
    directory = short_directory(p1_ack=600, p2_ack=600)
    async with claimed_redis_db(stack_env) as db:
        isolation = Isolation.create(tmp_path_factory.mktemp("inbox"), directory, db)
        async with routing_instance(stack_env, isolation) as instance:
            priorities = list(Priority)
            events = [triaged_event(priority=priorities[n % len(priorities)]) for n in range(CASES)]
            await publish(stack_env["OCSEA_KAFKA_BOOTSTRAP"], instance.topics.triaged, events)

            async def all_assigned() -> bool:
                response = await instance.client.get("/v1/tasks", headers=instance.headers(OFFICER))
                return bool(response.headers.get("X-Total-Count") == str(CASES))

            await wait_for(all_assigned, within=30, what="every task assigned")
            yield instance


async def get(routing: RoutingInstance, url: str, **params: str) -> httpx.Response:
    return await routing.client.get(url, params=params, headers=routing.headers(OFFICER))


def ids(tasks: list[dict[str, Any]]) -> list[str]:
    return [t["task_id"] for t in tasks]


async def test_without_a_limit_the_inbox_is_every_task_as_before(routing: RoutingInstance) -> None:
    response = await get(routing, "/v1/tasks")
    assert response.status_code == 200
    tasks = response.json()
    assert len(tasks) == CASES
    assert response.headers["X-Total-Count"] == str(CASES)
    assert "X-Next-Cursor" not in response.headers
    assert "Link" not in response.headers
    ranks = [t["priority"] for t in tasks]
    assert ranks == sorted(ranks)  # most urgent first


@pytest.mark.parametrize("sort", ["urgency", "deadline", "overdue", "newest"])
async def test_pages_follow_one_another_in_the_unpaged_order(
    routing: RoutingInstance, sort: str
) -> None:
    everything = (await get(routing, "/v1/tasks", sort=sort)).json()
    pages: list[list[dict[str, Any]]] = []
    response = await get(routing, "/v1/tasks", sort=sort, limit="5")
    while True:
        assert response.status_code == 200, response.text
        assert response.headers["X-Total-Count"] == str(CASES)
        pages.append(response.json())
        if "X-Next-Cursor" not in response.headers:
            break
        # The Link header names the next page with every parameter kept.
        link = response.headers["Link"]
        assert link.endswith('>; rel="next"')
        next_url = httpx.URL(link[1 : link.index(">")])
        assert next_url.params["cursor"] == response.headers["X-Next-Cursor"]
        assert next_url.params["sort"] == sort
        response = await routing.client.get(
            next_url.raw_path.decode(), headers=routing.headers(OFFICER)
        )
    assert [len(p) for p in pages] == [5, 5, 3]
    assert [t for page in pages for t in ids(page)] == ids(everything)


async def test_a_cursor_alone_pages_by_the_default_size(routing: RoutingInstance) -> None:
    first = await get(routing, "/v1/tasks", limit="2")
    rest = await get(routing, "/v1/tasks", cursor=first.headers["X-Next-Cursor"])
    assert len(rest.json()) == CASES - 2
    assert "X-Next-Cursor" not in rest.headers


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"sort": "sideways"}, "sort"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"cursor": "!!"}, "cursor"),
    ],
)
async def test_bad_paging_parameters_are_a_422_naming_the_field(
    routing: RoutingInstance, params: dict[str, str], field: str
) -> None:
    response = await get(routing, "/v1/tasks", **params)
    assert response.status_code == 422
    assert response.json()["field"] == field


async def test_a_cursor_of_another_order_is_refused(routing: RoutingInstance) -> None:
    first = await get(routing, "/v1/tasks", sort="newest", limit="2")
    response = await get(
        routing, "/v1/tasks", sort="urgency", cursor=first.headers["X-Next-Cursor"]
    )
    assert response.status_code == 422
    assert response.json()["field"] == "cursor"
    assert "sorted by newest" in response.json()["message"]
