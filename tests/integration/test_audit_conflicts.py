"""A ledger that cannot be fooled, on SQLite and the real PostgreSQL: an event id claimed twice
with different bytes is recorded as a conflict (whichever came first keeps the id, the other is
never dropped); the offsets expected next on each partition advance with the entries."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from contracts import topics
from contracts.events import Actor, ActorKind, CaseAccessData, Envelope, EventType, make_event
from ocsea.runtime.consumer import Origin
from services.audit.adapters.ledger import Ledger
from services.audit.domain import merkle
from services.audit.domain.entry import CONFLICT, NewEntry, event_entry
from services.audit.ports import SearchFilter

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "sqlite-memory", "postgresql"])
async def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> AsyncIterator[Ledger]:
    """The three write paths: SQLite on its own threads, the SQLAlchemy path (an in-memory
    SQLite), and PostgreSQL (one statement per batch, or the locked long way)."""
    url = {
        "sqlite": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}",
        "sqlite-memory": "sqlite+aiosqlite:///:memory:",
        "postgresql": postgres_url,
    }[request.param]
    store = Ledger(url)
    await store.create()
    yield store
    await store.close()


def access_event(viewer: str, case_id: uuid.UUID, event_id: uuid.UUID | None = None) -> Envelope:
    return make_event(
        event_type=EventType.CASE_VIEWED,
        event_id=event_id,
        case_id=case_id,
        producer="routing",
        actor=Actor(kind=ActorKind.OFFICER, id=viewer, agency="erbil-cpu"),
        data=CaseAccessData(viewer=viewer, role="officer", agency="erbil-cpu", reason="open task"),
    )


def as_entry(envelope: Envelope, offset: int) -> NewEntry:
    body = envelope.model_dump_json().encode()
    return event_entry(envelope, Origin(topics.ACCESS, 0, offset, hashlib.sha256(body).hexdigest()))


def versions(case_id: uuid.UUID) -> tuple[Envelope, Envelope, Envelope]:
    """A real access record and two forgeries under its event id."""
    real = access_event("officer-erbil-cpu", case_id)
    forged = access_event("officer-duhok-cpu", case_id, real.event_id)
    another = access_event("officer-sulaymaniyah-cpu", case_id, real.event_id)
    return real, forged, another


async def assert_sound(ledger: Ledger) -> list[dict[str, Any]]:
    """Dense leaves whose stored tree is the RFC tree of their entries; returns the entries."""
    size = await ledger.size()
    leaves = await ledger.leaves(0, size)
    assert [leaf.leaf_index for leaf in leaves] == list(range(size))
    texts = [leaf.text for leaf in leaves if leaf.text is not None]
    hashes = [merkle.leaf_hash(t.encode()) for t in texts]
    assert hashes == [leaf.leaf_hash for leaf in leaves]
    assert await ledger.root(size) == merkle.root_from_leaf_hashes(hashes)
    return [json.loads(t) for t in texts]


async def test_a_forgery_recorded_first_keeps_the_id_and_the_real_event_is_a_conflict(
    ledger: Ledger,
) -> None:
    case = uuid.uuid4()
    real, forged, another = versions(case)
    await ledger.append_batch([as_entry(access_event("x", uuid.uuid4()), 0)])
    [first] = await ledger.append_batch([as_entry(forged, 1)])
    [conflict] = await ledger.append_batch([as_entry(real, 2)])
    assert (first.leaf_index, first.created, first.conflict_with) == (1, True, None)
    assert (conflict.leaf_index, conflict.created, conflict.conflict_with) == (2, True, 1)

    # Redeliveries of either version add nothing; a third version is a conflict of its own.
    again = await ledger.append_batch(
        [as_entry(real, 3), as_entry(forged, 4), as_entry(another, 5)]
    )
    assert [(r.leaf_index, r.created, r.conflict_with) for r in again] == [
        (2, False, 1),
        (1, False, None),
        (3, True, 1),
    ]
    entries = await assert_sound(ledger)
    assert [e["action"] for e in entries] == ["case.viewed", "case.viewed", CONFLICT, CONFLICT]
    assert entries[1]["event_sha256"] == as_entry(forged, 1).fields["event_sha256"]
    assert entries[2]["event_sha256"] == as_entry(real, 2).fields["event_sha256"]
    assert entries[2]["detail"]["recorded_leaf_index"] == 1
    assert entries[2]["detail"]["contested_key"] == str(real.event_id)

    # Both versions are in the case's trail, and the conflicts can be listed on their own.
    trail = await ledger.case_trail(str(case))
    assert sorted(e.entry["action"] for e in trail) == ["case.viewed", CONFLICT, CONFLICT]
    listed = await ledger.search(SearchFilter(action=CONFLICT))
    assert [e.leaf_index for e in listed] == [2, 3]


async def test_a_conflict_inside_one_batch(ledger: Ledger) -> None:
    real, forged, _ = versions(uuid.uuid4())
    await ledger.append_batch([as_entry(access_event("x", uuid.uuid4()), 0)])  # a known tree
    results = await ledger.append_batch(
        [as_entry(forged, 1), as_entry(real, 2), as_entry(real, 3), as_entry(forged, 4)]
    )
    assert [(r.leaf_index, r.created, r.conflict_with) for r in results] == [
        (1, True, None),
        (2, True, 1),
        (2, False, 1),
        (1, False, None),
    ]
    entries = await assert_sound(ledger)
    assert [e["action"] for e in entries] == ["case.viewed", "case.viewed", CONFLICT]
    assert entries[2]["offset"] == 2
    assert entries[2]["detail"]["recorded_offset"] == 1


async def test_on_postgresql_conflicts_take_the_right_path(postgres_url: str) -> None:
    """A conflict within a batch needs no lookup: still one statement. A conflict with a
    recorded entry is noticed by the statement's check and sorted out on the long path."""
    ledger = Ledger(postgres_url)
    statements: list[str] = []

    @event.listens_for(ledger.engine.sync_engine, "connect")
    def _log_queries(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda logged: statements.append(logged.query)
        )

    await ledger.create()
    try:
        real, forged, another = versions(uuid.uuid4())
        await ledger.append_batch([as_entry(access_event("x", uuid.uuid4()), 0)])
        before = len(statements)
        results = await ledger.append_batch([as_entry(forged, 1), as_entry(real, 2)], {})
        assert [(r.created, r.conflict_with) for r in results] == [(True, None), (True, 1)]
        assert len(statements) - before == 1
        before = len(statements)
        [third] = await ledger.append_batch([as_entry(another, 3)])
        assert (third.leaf_index, third.created, third.conflict_with) == (3, True, 1)
        assert len(statements) - before > 1
        await assert_sound(ledger)
    finally:
        await ledger.close()


async def test_expected_offsets_advance_with_the_batch_and_never_back(ledger: Ledger) -> None:
    entries = [as_entry(access_event("x", uuid.uuid4()), n) for n in range(3)]
    access, dlq = (topics.ACCESS, 0), (topics.dlq_of(topics.ACCESS), 1)
    assert await ledger.next_offsets([access, dlq]) == {}
    await ledger.append_batch(entries[:2], {access: 2, dlq: 40})
    assert await ledger.next_offsets([access, dlq]) == {access: 2, dlq: 40}
    # A redelivered batch (older offsets, nothing new to append) moves nothing back...
    await ledger.append_batch(entries[:1], {access: 1})
    assert await ledger.next_offsets([access]) == {access: 2}
    # ...and a later one moves its partition on.
    await ledger.append_batch(entries[2:], {access: 3})
    assert await ledger.next_offsets([access, dlq, ("elsewhere", 0)]) == {access: 3, dlq: 40}
    assert await ledger.size() == 3
