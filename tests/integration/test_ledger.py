"""The ledger's storage on SQLite and on the real PostgreSQL: append, dedupe, refuse edits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from contracts.events import Actor, ActorKind, Envelope, EventType, make_event
from services.audit.domain.entry import canonical_json
from services.audit.domain.merkle import leaf_hash
from services.audit.ledger import Ledger
from tests.test_triage_domain import received

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> AsyncIterator[Ledger]:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    store = Ledger(sqlite_url if request.param == "sqlite" else postgres_url)
    await store.create()
    yield store
    await store.close()


def event(case_id: uuid.UUID) -> Envelope:
    return make_event(
        event_type=EventType.REPORT_RECEIVED,
        case_id=case_id,
        producer="intake",
        actor=Actor(kind=ActorKind.PARTNER, id="partner-hotline"),
        data=received(),
    )


async def test_appends_dense_indexes_and_ignores_redelivery(ledger: Ledger) -> None:
    case_a, case_b = uuid.uuid4(), uuid.uuid4()
    first, second, third = event(case_a), event(case_b), event(case_a)
    results = [
        await ledger.append(e, topic="t", partition=0, offset=i, event_sha256="00" * 32)
        for i, e in enumerate([first, second, third])
    ]
    assert results == [(0, True), (1, True), (2, True)]
    again = await ledger.append(first, topic="t", partition=0, offset=9, event_sha256="11" * 32)
    assert again == (0, False)
    assert await ledger.size() == 3

    trail = await ledger.case_trail(str(case_a))
    assert [e.leaf_index for e in trail] == [0, 2]
    assert [e.entry["source_event_id"] for e in trail] == [str(first.event_id), str(third.event_id)]
    for stored in trail:
        assert stored.leaf_hash == leaf_hash(canonical_json(stored.entry)).hex()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_entries SET action = 'forged'", "DELETE FROM audit_entries"],
)
async def test_storage_refuses_update_and_delete(ledger: Ledger, statement: str) -> None:
    await ledger.append(event(uuid.uuid4()), topic="t", partition=0, offset=0, event_sha256="")
    with pytest.raises(DBAPIError, match="append-only"):
        async with ledger.engine.begin() as conn:
            await conn.execute(text(statement))
    assert await ledger.size() == 1
