"""A write that would act on lost state refuses instead: routing's assignment slot is claimed
only while its projection's epoch marker is there, in one atomic step on a real Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from contracts.events import Actor, ActorKind, Envelope
from ocsea.runtime.projection import ProjectionLostError
from services.routing.adapters.redis import RoutingStore

pytestmark = pytest.mark.integration


def assignment(note: str) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        event_type="task.assigned",
        occurred_at=datetime.now(UTC),
        case_id=uuid.uuid4(),
        producer="routing",
        actor=Actor(kind=ActorKind.SYSTEM, id="routing"),
        data={"note": note},
    )


async def test_an_assignment_is_claimed_only_while_the_projection_is_present(
    stack_env: dict[str, str],
) -> None:
    redis = Redis.from_url(stack_env["OCSEA_REDIS_URL"])
    store = RoutingStore(redis, prefix=f"ocsea:test:{uuid.uuid4().hex}:")
    first, second = assignment("first"), assignment("second")
    try:
        # No epoch marker (Redis lost the projection): nothing is chosen, nothing written.
        with pytest.raises(ProjectionLostError):
            await store.claim_assignment("slot-1", first)
        assert await redis.exists(f"{store.prefix}pending-assignment:slot-1") == 0

        await store.set_epoch("present")
        assert (await store.claim_assignment("slot-1", first)).event_id == first.event_id
        # A redelivery gets the first choice back.
        assert (await store.claim_assignment("slot-1", second)).event_id == first.event_id
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{store.prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
