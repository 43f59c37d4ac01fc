"""The ledger's storage on SQLite and on the real PostgreSQL: append with its Merkle nodes in one
transaction, dedupe, prove, search, and refuse edits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from contracts.events import Actor, ActorKind, EventType
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.schema import APPEND_ONLY_TABLES, LedgerLayoutError
from services.audit.domain import merkle
from services.audit.domain.entry import canonical_json
from services.audit.ports import SearchFilter
from testkit.audit import entry, event

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> AsyncIterator[Ledger]:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    store = Ledger(sqlite_url if request.param == "sqlite" else postgres_url)
    await store.create()
    yield store
    await store.close()


async def test_appends_dense_indexes_and_ignores_redelivery(ledger: Ledger) -> None:
    case_a, case_b = uuid.uuid4(), uuid.uuid4()
    first, second, third = event(case_a), event(case_b), event(case_a)
    results = [await ledger.append(entry(e, i)) for i, e in enumerate([first, second, third])]
    assert [(r.leaf_index, r.created) for r in results] == [(0, True), (1, True), (2, True)]
    again = await ledger.append(entry(first, offset=9))
    assert (again.leaf_index, again.created) == (0, False)
    assert await ledger.size() == 3

    trail = await ledger.case_trail(str(case_a))
    assert [e.leaf_index for e in trail] == [0, 2]
    assert [e.entry["source_event_id"] for e in trail] == [str(first.event_id), str(third.event_id)]
    for stored in trail:
        assert stored.entry["seq"] == stored.leaf_index
        assert stored.leaf_hash == merkle.leaf_hash(canonical_json(stored.entry)).hex()


async def test_the_stored_tree_is_the_rfc_tree_of_the_entries(ledger: Ledger) -> None:
    size = 37
    await ledger.append_batch([entry(event(uuid.uuid4())) for _ in range(size)])
    leaves = await ledger.leaves(0, size + 5)
    assert [leaf.leaf_index for leaf in leaves] == list(range(size))
    hashes = [merkle.leaf_hash(leaf.text.encode()) for leaf in leaves if leaf.text]
    assert hashes == [leaf.leaf_hash for leaf in leaves]
    roots = [merkle.root_from_leaf_hashes(hashes[:n]) for n in range(size + 1)]
    for n in range(size + 1):
        assert await ledger.root(n) == roots[n]
    for n in (1, 2, 5, 16, 31, size):
        for index in {0, n // 2, n - 1}:
            leaf, path = await ledger.inclusion_proof(index, n)
            assert leaf == hashes[index]
            merkle.verify_inclusion(leaf, index, n, path, roots[n])
        for first in {1, n // 3 or 1, n}:
            proof = await ledger.consistency_proof(first, n)
            merkle.verify_consistency(first, n, roots[first], roots[n], proof)


async def test_concurrent_appends_share_commits_and_stay_dense(ledger: Ledger) -> None:
    events = [event(uuid.uuid4()) for _ in range(150)]
    # Every event twice, all at once: the writer batches them; duplicates add nothing.
    results = await asyncio.gather(*(ledger.append(entry(e)) for e in events + events))
    created = [r for r in results if r.created]
    assert sorted(r.leaf_index for r in created) == list(range(150))
    by_event: dict[uuid.UUID, set[int]] = {}
    for envelope, result in zip(events + events, results, strict=True):
        by_event.setdefault(envelope.event_id, set()).add(result.leaf_index)
    assert all(len(indexes) == 1 for indexes in by_event.values())
    leaves = await ledger.leaves(0, 150)
    hashes = [merkle.leaf_hash(leaf.text.encode()) for leaf in leaves if leaf.text]
    assert await ledger.root(150) == merkle.root_from_leaf_hashes(hashes)


async def test_entry_and_nodes_are_written_together_or_not_at_all(ledger: Ledger) -> None:
    await ledger.append(entry(event(uuid.uuid4())))
    # A node already where the next append's parent node would go makes its insert fail...
    async with ledger.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO audit_nodes (level, idx, hash) VALUES (1, 0, :h)"),
            {"h": bytes(32)},
        )
    with pytest.raises(Exception, match=r"(?i)unique|duplicate key"):
        await ledger.append(entry(event(uuid.uuid4())))
    # ...and the entry written before it in the same transaction is gone with it.
    async with ledger.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM audit_entries")) == 1


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
async def test_storage_refuses_update_and_delete(ledger: Ledger, table: str, verb: str) -> None:
    await ledger.append(entry(event(uuid.uuid4())))
    await ledger.add_checkpoint(tree_size=1, key_id="0" * 64, signed_at=T0, checkpoint="{}")
    column = {"audit_entries": "action", "audit_nodes": "hash", "audit_checkpoints": "key_id"}
    # Table and column names come from the parameters above, not from input.
    statement = (
        f"UPDATE {table} SET {column[table]} = {column[table]}"  # noqa: S608
        if verb == "UPDATE"
        else f"DELETE FROM {table}"  # noqa: S608
    )
    with pytest.raises(DBAPIError, match="append-only"):
        async with ledger.engine.begin() as conn:
            await conn.execute(text(statement))
    assert await ledger.size() == 1


async def test_search_by_actor_action_agency_case_and_time(ledger: Ledger) -> None:
    case = uuid.uuid4()
    officer = Actor(kind=ActorKind.OFFICER, id="officer-erbil-cpu", agency="erbil-cpu")
    steps = [
        event(case, at=T0),
        event(case, event_type=EventType.REPORT_TRIAGED, at=T0 + timedelta(minutes=1)),
        event(case, actor=officer, event_type=EventType.CASE_VIEWED, at=T0 + timedelta(hours=1)),
        event(uuid.uuid4(), actor=officer, event_type=EventType.CASE_VIEWED, at=T0),
    ]
    await ledger.append_batch([entry(e) for e in steps])

    async def indexes(**filters: object) -> list[int]:
        found = await ledger.search(SearchFilter(**filters))  # type: ignore[arg-type]
        return [e.leaf_index for e in found]

    assert await indexes(actor="officer-erbil-cpu") == [2, 3]
    assert await indexes(action="report.triaged") == [1]
    assert await indexes(agency="erbil-cpu") == [2, 3]
    assert await indexes(case_id=str(case)) == [0, 1, 2]
    assert await indexes(since=T0 + timedelta(minutes=1), until=T0 + timedelta(hours=2)) == [1, 2]
    assert await indexes(agency="erbil-cpu", case_id=str(case)) == [2]
    assert await indexes(after=1, limit=1) == [2]
    assert await indexes(actor="nobody") == []


async def test_trail_is_in_event_time_order_whatever_the_arrival_order(ledger: Ledger) -> None:
    case = uuid.uuid4()
    later = event(case, event_type=EventType.TASK_ASSIGNED, at=T0 + timedelta(seconds=2))
    earlier = event(case, at=T0)
    await ledger.append_batch([entry(later), entry(earlier)])
    trail = await ledger.case_trail(str(case))
    assert [(e.leaf_index, e.entry["action"]) for e in trail] == [
        (1, "report.received"),
        (0, "task.assigned"),
    ]


async def test_checkpoints_are_kept_latest_last(ledger: Ledger) -> None:
    assert await ledger.latest_checkpoint() is None
    for size in (1, 2):
        await ledger.add_checkpoint(
            tree_size=size, key_id="0" * 64, signed_at=T0, checkpoint=f'{{"size": {size}}}'
        )
    assert await ledger.latest_checkpoint() == '{"size": 2}'


async def test_a_ledger_of_an_earlier_layout_is_refused_clearly(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    old = Ledger(url)
    async with old.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE audit_entries (seq INTEGER PRIMARY KEY)"))
    with pytest.raises(LedgerLayoutError, match="earlier development layout"):
        await old.create()
    await old.close()
