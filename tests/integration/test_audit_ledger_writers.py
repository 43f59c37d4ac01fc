"""The ledger's writers on SQLite and the real PostgreSQL: a writer that plans on the tree it last
committed still gets dense leaf indexes when a replica shares its database, a redelivered batch
still adds nothing, and on PostgreSQL a batch is one statement once the writer knows the tree."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from contracts.events import utc_now
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.postgres import ADVISORY_LOCK_KEY
from services.audit.adapters.schema import audit_entries, audit_nodes
from services.audit.domain import merkle
from services.audit.domain.append_plan import Appended, plan_appends
from services.audit.domain.entry import NewEntry
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    return postgres_url


@pytest.fixture
async def writers(db_url: str) -> AsyncIterator[tuple[Ledger, Ledger]]:
    """Two ledgers on one database, as two replicas of the audit service would be."""
    first, second = Ledger(db_url), Ledger(db_url)
    await first.create()
    await second.create()
    yield first, second
    await first.close()
    await second.close()


def entries(count: int, *, actor: str = "partner-hotline") -> list[NewEntry]:
    made = []
    for _ in range(count):
        key = str(uuid.uuid4())
        made.append(
            NewEntry(
                dedup_key=key,
                fields={
                    "time": T0.isoformat(),
                    "action": "report.received",
                    "case_id": str(uuid.uuid4()),
                    "report_id": None,
                    "task_id": None,
                    "agency": None,
                    "actor": {"kind": "partner", "id": actor, "agency": None},
                    "producer": "intake",
                    "source_event_id": key,
                    "detail": None,
                    "event_sha256": hashlib.sha256(key.encode()).hexdigest(),
                    "topic": "ocsea.reports.received.v1",
                    "partition": 0,
                    "offset": 0,
                },
            )
        )
    return made


async def assert_sound(ledger: Ledger, keys: list[str]) -> None:
    """Every key once, at dense indexes, and the stored tree is the RFC tree of the leaves."""
    size = await ledger.size()
    assert size == len(keys)
    leaves = await ledger.leaves(0, size)
    assert [leaf.leaf_index for leaf in leaves] == list(range(size))
    texts = [leaf.text for leaf in leaves]
    assert None not in texts
    hashes = [merkle.leaf_hash(t.encode()) for t in texts if t is not None]
    assert hashes == [leaf.leaf_hash for leaf in leaves]
    assert await ledger.root(size) == merkle.root_from_leaf_hashes(hashes)
    async with ledger.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT dedup_key FROM audit_entries"))).scalars()
        assert sorted(stored) == sorted(keys)


async def test_replicas_sharing_a_database_take_turns_and_stay_dense(
    writers: tuple[Ledger, Ledger],
) -> None:
    first, second = writers
    keys: list[str] = []
    results: list[Appended] = []

    async def append(ledger: Ledger, count: int) -> None:
        batch = entries(count)
        keys.extend(e.dedup_key for e in batch)
        results.extend(await ledger.append_batch(batch))

    # Alternating: each writer's remembered tree is out of date at every other batch.
    for count in (3, 5, 1, 8, 2):
        await append(first, count)
        await append(second, count)
    # At once: the two race for the same leaf indexes.
    for _ in range(4):
        await asyncio.gather(append(first, 7), append(second, 6))
    assert sorted(r.leaf_index for r in results) == list(range(len(keys)))
    assert all(r.created for r in results)
    await assert_sound(first, keys)


async def test_a_redelivered_batch_adds_nothing_after_the_writer_moved_on(
    writers: tuple[Ledger, Ledger],
) -> None:
    ledger, _ = writers
    delivered, later = entries(4), entries(3)
    first = await ledger.append_batch(delivered)
    await ledger.append_batch(later)
    fresh = entries(2)
    # The same records again (a consumer that restarted before committing its offsets), with
    # new ones among them: the old keep their indexes, the new continue the sequence.
    again = await ledger.append_batch([delivered[1], fresh[0], delivered[3], fresh[1]])
    assert [(r.leaf_index, r.created) for r in again] == [
        (first[1].leaf_index, False),
        (7, True),
        (first[3].leaf_index, False),
        (8, True),
    ]
    following = entries(2)
    assert [r.leaf_index for r in await ledger.append_batch(following)] == [9, 10]
    await assert_sound(ledger, [e.dedup_key for e in delivered + later + fresh + following])


async def test_on_postgresql_a_batch_is_one_statement_once_the_writer_knows_the_tree(
    postgres_url: str,
) -> None:
    ledger = Ledger(postgres_url)
    statements: list[str] = []

    @event.listens_for(ledger.engine.sync_engine, "connect")
    def _log_queries(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda logged: statements.append(logged.query)
        )

    await ledger.create()
    try:
        appended: list[NewEntry] = []
        sent: list[int] = []
        for count in (500, 500, 1, 37):
            batch = entries(count)
            before = len(statements)
            await ledger.append_batch(batch)
            sent.append(len(statements) - before)
            appended += batch
        # The first batch reads the tree (lock, keys, size, peaks); every later one is a
        # single statement: one round trip, its own commit.
        assert sent[0] > 1
        assert sent[1:] == [1, 1, 1], statements[-3:]

        # A redelivered entry sends its batch the long way, and still adds nothing.
        new, redelivered = entries(1), appended[3]
        before = len(statements)
        again = await ledger.append_batch([*new, redelivered])
        assert [(r.leaf_index, r.created) for r in again] == [(len(appended), True), (3, False)]
        assert len(statements) - before > 1
        await assert_sound(ledger, [e.dedup_key for e in appended + new])
    finally:
        await ledger.close()


async def test_on_postgresql_an_overlong_value_is_refused_not_cut_and_the_writer_recovers(
    postgres_url: str,
) -> None:
    ledger = Ledger(postgres_url)
    await ledger.create()
    try:
        good = entries(3)
        await ledger.append_batch(good)
        # audit_entries.actor_id is VARCHAR(200): the batch fails whole, nothing is shortened.
        with pytest.raises(Exception, match=r"(?i)too long"):
            await ledger.append_batch(entries(2) + entries(1, actor="a" * 201))
        assert await ledger.size() == 3
        after = entries(2)
        assert [r.leaf_index for r in await ledger.append_batch(after)] == [3, 4]
        await assert_sound(ledger, [e.dedup_key for e in good + after])
    finally:
        await ledger.close()


async def test_on_postgresql_a_writer_overtaken_while_it_waits_for_the_lock_goes_the_long_way(
    postgres_url: str,
) -> None:
    ledger, replica = Ledger(postgres_url), Ledger(postgres_url)
    await ledger.create()
    try:
        first, theirs, mine = entries(5), entries(3), entries(2)
        await ledger.append_batch(first)  # the writer now knows the tree: 5 leaves
        size = await replica.size()
        planned = plan_appends(
            theirs, {}, size, await replica.nodes(merkle.root_nodes(size)), utc_now()
        )
        async with replica.engine.begin() as conn:
            # A replica holds the lock and appends, as the long way does...
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            appending = asyncio.create_task(ledger.append_batch(mine))
            await wait_for(lambda: _lock_waiters(replica), what="the writer to wait for the lock")
            await conn.execute(audit_entries.insert(), planned.entry_rows)
            await conn.execute(audit_nodes.insert(), planned.node_rows)
        # ...and commits while the writer's statement, its snapshot taken, waits for the lock:
        # its checks pass on what it saw, its inserts collide, and it reads the ledger afresh.
        results = await appending
        assert [(r.leaf_index, r.created) for r in results] == [(8, True), (9, True)]
        await assert_sound(ledger, [e.dedup_key for e in first + theirs + mine])
    finally:
        await ledger.close()
        await replica.close()


async def _lock_waiters(ledger: Ledger) -> int:
    async with ledger.engine.connect() as conn:
        waiting = await conn.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
        return int(waiting or 0)
