"""The ledger's storage: append-only tables in SQLite (default) or PostgreSQL.

Three tables, none of which is ever updated:

- ``audit_entries``: one row per entry (``seq`` is the leaf index), its canonical JSON, and
  copies of a few fields for search;
- ``audit_nodes``: the Merkle tree as complete-subtree hashes keyed ``(level, idx)`` (see
  ``domain/merkle.py``). An append writes the leaf and the 0…log2(n) nodes it completes **in the
  same transaction** as the entry, so the tree never lags the entries, a proof for any size is
  one indexed SELECT of O(log n) keys, and nothing is ever recomputed;
- ``audit_checkpoints``: every signed tree head handed out.

The database refuses UPDATE and DELETE on all three (triggers), so a bug or a careless operator
cannot rewrite history without first switching the protection off, which verification against
an earlier checkpoint then detects. A fourth table, ``audit_offsets``, is bookkeeping rather than
history: the offset the ledger expects next on each partition (see ``domain/offsets.py``),
advanced in the same transaction as the entries, so a gap is noticed across restarts too.

A record whose key is recorded already adds nothing when it is the same record again (same
digest), and becomes a ``conflict`` entry when its bytes differ (``domain/entry.py``): the
first one recorded keeps the key, the other is never dropped and never replaces it.

Appends are group-committed: concurrent ``append`` calls that arrive while a transaction is being
written share the next one (one durable commit for many entries). They are serialised by an
in-process lock plus, on PostgreSQL, a transaction-scoped advisory lock, so replicas sharing a
database still produce dense leaf indexes; on SQLite the transaction takes the write lock at once
(``BEGIN IMMEDIATE``). The caller (the Kafka consumer) commits its offset only after ``append``
returned, i.e. after the entry and its nodes are durable. On PostgreSQL a batch is, in the usual
case, one statement and one round trip: the writer remembers the tree it committed last, and the
statement checks the database still holds it before inserting (see ``_PostgresAppender``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    event,
    func,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

from contracts.events import utc_now
from ocsea.runtime.telemetry import db_client_span, instrument_engine
from services.audit.domain import merkle
from services.audit.domain.entry import (
    NewEntry,
    canonical_json,
    conflict_entry,
    conflict_key,
    finalize,
    is_redelivery,
)
from services.audit.domain.offsets import Partition

metadata = MetaData()
T = TypeVar("T")

_BigInt = BigInteger().with_variant(Integer, "sqlite")

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", _BigInt, primary_key=True, autoincrement=False),
    Column("dedup_key", String(512), nullable=False, unique=True),
    Column("source_event_id", String(64)),
    Column("case_id", String(64)),
    Column("action", String(100), nullable=False, index=True),
    Column("actor_id", String(200), nullable=False, index=True),
    Column("actor_agency", String(150), index=True),
    Column("subject_agency", String(150), index=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("entry", Text, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Index("ix_audit_entries_case_time", "case_id", "occurred_at", "seq"),
)

audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,  # the rows live in the key's B-tree: one lookup, half the pages
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", _BigInt, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False),
    Column("checkpoint", Text, nullable=False),
)

audit_offsets = Table(
    "audit_offsets",
    metadata,
    Column("topic", String(255), primary_key=True),
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
    Column("next_offset", _BigInt, nullable=False),
)

APPEND_ONLY_TABLES = ("audit_entries", "audit_nodes", "audit_checkpoints")


def _sqlite_guards(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, 'audit ledger tables are append-only'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, 'audit ledger tables are append-only'); END""",
    ]


_POSTGRES_FUNCTION = """CREATE OR REPLACE FUNCTION ocsea_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit ledger tables are append-only'; END $$"""


def _postgres_guards(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
        f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
            ON {table} FOR EACH STATEMENT EXECUTE FUNCTION ocsea_audit_append_only()""",
    ]


ADVISORY_LOCK_KEY = 0x0C5EA
"""The PostgreSQL advisory lock every writer of the ledger holds while it appends."""
# Durable: WAL synced on every commit. Patient: a writer in another process waits its turn.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
)
_IN_CHUNK = 500  # bound the parameters of one IN (...) list
MAX_BATCH = 2000
"""Most entries one group commit writes; more waiting callers share the next one."""


class LedgerLayoutError(RuntimeError):
    """The database holds an audit ledger in a layout this code does not write."""


@dataclass(frozen=True)
class Appended:
    leaf_index: int
    created: bool
    conflict_with: int | None = None
    """For a record that contests a recorded entry's key: that entry's leaf index (the leaf
    given is then the conflict entry's)."""


@dataclass(frozen=True)
class Recorded:
    """An entry already in the ledger (or earlier in the batch), as the planner compares it."""

    leaf_index: int
    text: str

    @functools.cached_property
    def entry(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed


@dataclass(frozen=True)
class StoredEntry:
    leaf_index: int
    text: str
    leaf_hash: str

    @property
    def entry(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed


@dataclass(frozen=True)
class RawLeaf:
    """Leaf ``leaf_index`` as stored: the entry's exact text (None if the row is missing) and
    the tree's leaf hash for it (what the node table holds; the verifier recomputes it)."""

    leaf_index: int
    text: str | None
    leaf_hash: bytes


@dataclass
class _Pending:
    entry: NewEntry
    future: asyncio.Future[Appended]


@dataclass
class SearchFilter:
    actor: str | None = None
    action: str | None = None
    agency: str | None = None
    case_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class TreeState:
    """A tree as a writer needs it to append: its size and its peaks (the hashes of
    ``merkle.root_nodes(size)``, from which every node an append reads can be derived)."""

    size: int
    peaks: dict[merkle.NodeKey, bytes]


@dataclass
class AppendPlan:
    results: list[Appended]
    entry_rows: list[dict[str, Any]]
    node_rows: list[dict[str, Any]]
    tree: TreeState
    """The tree once these rows are written."""


def lookup_keys(
    entries: Sequence[NewEntry], known: Mapping[str, Recorded] | None = None
) -> list[str]:
    """The keys whose recorded entries planning `entries` needs, in two rounds: first each
    entry's own key; then, for the entries whose key `known` (the first round's answer) holds,
    the key their conflict entry would have, so the same other version again adds nothing.
    (Only a recorded key can have a recorded conflict: the usual batch needs one round.)"""
    if known is None:
        return list(dict.fromkeys(e.dedup_key for e in entries))
    return list(dict.fromkeys(conflict_key(e) for e in entries if e.dedup_key in known))


def plan_appends(
    entries: Sequence[NewEntry],
    known: Mapping[str, Recorded],
    size: int,
    nodes: dict[merkle.NodeKey, bytes],
    recorded_at: datetime,
) -> AppendPlan:
    """The rows appending `entries` to a tree of `size` leaves writes (no I/O).

    `known` maps the already recorded keys among `lookup_keys` to their entries;
    `nodes` must hold ``merkle.root_nodes(size)``, from which every node an append reads can
    be derived. An entry whose key is known adds nothing if it is the same record again, and
    is appended as a conflict entry if its bytes differ.
    """
    known = dict(known)
    nodes = dict(nodes)
    plan = AppendPlan([], [], [], TreeState(size, {}))
    for new in entries:
        contested: int | None = None
        recorded = known.get(new.dedup_key)
        if recorded is not None:
            if is_redelivery(new, recorded.entry):
                plan.results.append(Appended(recorded.leaf_index, False))
                continue
            contested = recorded.leaf_index
            new = conflict_entry(new, recorded.entry)
            again = known.get(new.dedup_key)
            if again is not None:  # this other version is recorded as a conflict already
                plan.results.append(Appended(again.leaf_index, False, contested))
                continue
        seq = size
        encoded = canonical_json(finalize(new, seq=seq, recorded_at=recorded_at))
        leaf = merkle.leaf_hash(encoded)
        for level, index, value in merkle.append_nodes(seq, leaf, nodes):
            nodes[(level, index)] = value
            plan.node_rows.append({"level": level, "idx": index, "hash": value})
        plan.entry_rows.append(
            {
                "seq": seq,
                "dedup_key": new.dedup_key,
                "source_event_id": new.source_event_id,
                "case_id": new.case_id,
                "action": new.action,
                "actor_id": new.actor_id,
                "actor_agency": new.actor_agency,
                "subject_agency": new.subject_agency,
                "occurred_at": new.occurred_at.astimezone(UTC),
                "recorded_at": recorded_at,
                "entry": encoded.decode(),
                "leaf_hash": leaf,
            }
        )
        known[new.dedup_key] = Recorded(seq, encoded.decode())
        plan.results.append(Appended(seq, True, contested))
        size += 1
    # A peak missing from `nodes` (a damaged ledger) stays missing: appending fails only once
    # it needs that node, as it did when every append read the peaks from the database.
    peaks = {key: nodes[key] for key in merkle.root_nodes(size) if key in nodes}
    plan.tree = TreeState(size, peaks)
    return plan


def _upsert_offsets(values: str) -> str:
    """Advance partitions' expected offsets, never back (a redelivered batch is older)."""
    return (
        f"INSERT INTO audit_offsets (topic, partition_id, next_offset) VALUES ({values})"  # noqa: S608 (placeholders)
        " ON CONFLICT (topic, partition_id) DO UPDATE SET next_offset = CASE"
        " WHEN excluded.next_offset > audit_offsets.next_offset THEN excluded.next_offset"
        " ELSE audit_offsets.next_offset END"
    )


def _offset_rows(next_offsets: Mapping[Partition, int] | None) -> list[dict[str, Any]]:
    return [
        {"topic": topic, "partition_id": partition, "next_offset": offset}
        for (topic, partition), offset in sorted((next_offsets or {}).items())
    ]


def _select_recorded(connection: sqlite3.Connection, keys: Sequence[str]) -> dict[str, Recorded]:
    recorded: dict[str, Recorded] = {}
    for chunk in _chunks(keys, _IN_CHUNK):
        marks = ", ".join("?" for _ in chunk)
        query = f"SELECT dedup_key, seq, entry FROM audit_entries WHERE dedup_key IN ({marks})"  # noqa: S608
        recorded.update({k: Recorded(int(v), t) for k, v, t in connection.execute(query, chunk)})
    return recorded


def _select_size(connection: sqlite3.Connection) -> int:
    last = connection.execute("SELECT max(idx) FROM audit_nodes WHERE level = 0").fetchone()
    return 0 if last is None or last[0] is None else int(last[0]) + 1


def _select_nodes(
    connection: sqlite3.Connection, keys: Sequence[merkle.NodeKey]
) -> dict[merkle.NodeKey, bytes]:
    nodes: dict[merkle.NodeKey, bytes] = {}
    for chunk in _chunks(list(keys), _IN_CHUNK):
        where = nodes_where(len(chunk), lambda _: "?")
        flat = [value for key in chunk for value in key]
        query = f"SELECT level, idx, hash FROM audit_nodes WHERE {where}"  # noqa: S608
        nodes.update({(lv, ix): bytes(h) for lv, ix, h in connection.execute(query, flat)})
    return nodes


def _select_leaves(connection: sqlite3.Connection, start: int, end: int) -> list[RawLeaf]:
    rows = connection.execute(
        "SELECT n.idx, e.entry, n.hash FROM audit_nodes AS n"
        " LEFT JOIN audit_entries AS e ON e.seq = n.idx"
        " WHERE n.level = 0 AND n.idx >= ? AND n.idx < ? ORDER BY n.idx",
        (start, end),
    )
    return [RawLeaf(int(idx), entry, bytes(digest)) for idx, entry, digest in rows]


class _SqliteDirect:
    """SQLite through plain `sqlite3` connections, each on a thread of its own: one writer
    (appends are serialised anyway) and one reader (WAL lets it run beside the writer).

    A whole append transaction (dedup lookup, tree peaks, inserts, commit), or a whole proof
    query, is one call on its thread. Through the async driver each statement, and each
    cursor operation, was a thread round trip: an append cost ten times its commit, and a
    proof four hand-offs of the interpreter lock.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-sqlite-write")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-sqlite-read")
        self._connections: dict[str, sqlite3.Connection] = {}
        dialect = sqlite.dialect()
        moment = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
        assert moment is not None
        self._moment = moment
        entry_columns = [c.name for c in audit_entries.columns]
        self._insert_entry = (
            f"INSERT INTO audit_entries ({', '.join(entry_columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in entry_columns)})"
        )
        self._entry_columns = entry_columns

    @db_client_span("sqlite", "BATCH", "audit_entries")
    async def write(
        self, entries: Sequence[NewEntry], offsets: list[dict[str, Any]]
    ) -> list[Appended]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._write, list(entries), offsets)

    def read_now(self, query: Callable[..., T], *args: Any) -> T:
        """Run a point query (a size, a proof's nodes: a few index lookups, tens of
        microseconds) on the caller's thread: a hand-off to another thread costs more than it,
        and a proof's latency is the auditors' API's main promise."""
        return query(self._connect("point"), *args)

    async def read(self, query: Callable[..., T], *args: Any) -> T:
        """Run `query(connection, *args)` on the reader's thread (a page of leaves)."""

        def run() -> T:
            return query(self._connect("read"), *args)

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    def _connect(self, role: str) -> sqlite3.Connection:
        connection = self._connections.get(role)
        if connection is None:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for pragma in _SQLITE_PRAGMAS:
                connection.execute(pragma)
            self._connections[role] = connection
        return connection

    def _write(self, entries: list[NewEntry], offsets: list[dict[str, Any]]) -> list[Appended]:
        connection = self._connect("write")
        connection.execute("BEGIN IMMEDIATE")
        try:
            known = _select_recorded(connection, lookup_keys(entries))
            known.update(_select_recorded(connection, lookup_keys(entries, known)))
            size = _select_size(connection)
            nodes = _select_nodes(connection, merkle.root_nodes(size))
            plan = plan_appends(entries, known, size, nodes, utc_now())
            if plan.entry_rows:
                connection.executemany(
                    self._insert_entry,
                    [
                        tuple(
                            self._moment(row[c]) if c in ("occurred_at", "recorded_at") else row[c]
                            for c in self._entry_columns
                        )
                        for row in plan.entry_rows
                    ],
                )
                connection.executemany(
                    "INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)",
                    [(r["level"], r["idx"], r["hash"]) for r in plan.node_rows],
                )
            connection.executemany(
                _upsert_offsets("?, ?, ?"),
                [(r["topic"], r["partition_id"], r["next_offset"]) for r in offsets],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return plan.results

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        point = self._connections.pop("point", None)
        if point is not None:
            point.close()
        for role, thread in (("write", self._writer), ("read", self._reader)):

            def close_connection(role: str = role) -> None:
                connection = self._connections.pop(role, None)
                if connection is not None:
                    connection.close()

            await loop.run_in_executor(thread, close_connection)
            thread.shutdown(wait=True)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _array_type(column: Column[Any], dialect: Dialect) -> str:
    """The column's PostgreSQL type for an array parameter, without its length: an explicit cast
    to VARCHAR(n) would cut an overlong value short silently, where the insert refuses it."""
    return column.type.compile(dialect=dialect).split("(")[0] + "[]"


def _append_statement(dialect: Dialect) -> str:
    """One statement that appends a planned batch only if the tree is still the one it was
    planned on: same size, same peaks, none of its dedup keys recorded. It returns whether it
    wrote; outside a transaction block it is a transaction of its own (all rows or none), and
    its reply comes after the commit, so a returned ``true`` is durable.

    Parameters: $1 the advisory lock key, $2 the expected size, $3-$5 the expected peaks (levels,
    indexes, hashes), then one array per column of ``audit_entries``, of ``audit_nodes`` and of
    ``audit_offsets`` (the partitions' offsets expected next, advanced with the batch).

    The checks read the statement's snapshot, taken before the lock is granted. A writer that
    committed in between is caught all the same: the first leaf index it used is this batch's
    first, so the inserts hit the primary key and the statement fails as a whole.
    """
    entry_columns, node_columns = list(audit_entries.columns), list(audit_nodes.columns)
    offset_columns = list(audit_offsets.columns)
    first_entry = 6
    first_node = first_entry + len(entry_columns)
    first_offset = first_node + len(node_columns)
    dedup = first_entry + [c.name for c in entry_columns].index("dedup_key")
    keys = f"${dedup}::{_array_type(audit_entries.c.dedup_key, dialect)}"

    def names(columns: list[Column[Any]]) -> str:
        return ", ".join(c.name for c in columns)

    def arrays(columns: list[Column[Any]], first: int) -> str:
        return ", ".join(f"${first + n}::{_array_type(c, dialect)}" for n, c in enumerate(columns))

    return f"""
        WITH turn AS MATERIALIZED (SELECT pg_advisory_xact_lock($1::bigint)),
        state AS MATERIALIZED (
            SELECT
                (SELECT coalesce(max(idx) + 1, 0) FROM audit_nodes WHERE level = 0) = $2::bigint
                AND NOT EXISTS (SELECT FROM audit_entries WHERE dedup_key = ANY({keys}))
                AND (
                    SELECT count(*)
                    FROM unnest($3::smallint[], $4::bigint[], $5::bytea[]) AS p(level, idx, hash)
                    JOIN audit_nodes AS n
                      ON n.level = p.level AND n.idx = p.idx AND n.hash = p.hash
                ) = cardinality($3::smallint[])
                AS ok
            FROM turn
        ),
        entries AS (
            INSERT INTO audit_entries ({names(entry_columns)})
            SELECT * FROM unnest({arrays(entry_columns, first_entry)})
            WHERE (SELECT ok FROM state)
        ),
        nodes AS (
            INSERT INTO audit_nodes ({names(node_columns)})
            SELECT * FROM unnest({arrays(node_columns, first_node)})
            WHERE (SELECT ok FROM state)
        ),
        offsets AS (
            INSERT INTO audit_offsets ({names(offset_columns)})
            SELECT * FROM unnest({arrays(offset_columns, first_offset)})
            WHERE (SELECT ok FROM state)
            ON CONFLICT (topic, partition_id) DO UPDATE
            SET next_offset = greatest(audit_offsets.next_offset, excluded.next_offset)
        )
        SELECT ok FROM state
    """  # noqa: S608 (names and types from the table definitions above, values as parameters)


class _PostgresAppender:
    """Appends on PostgreSQL in one round trip per batch.

    The writer keeps the tree it last committed (size and peaks), plans the next batch on it
    and sends it as one statement (`_append_statement`) that checks the database still holds that
    tree and inserts every entry and node row from column arrays. The first batch, a batch after
    a failure, and a batch whose check fails (some of its entries are recorded already: a
    redelivery) or whose insert collides (a replica appended in between) go the long way: a
    transaction that takes the lock, reads the recorded keys, the size and the peaks, and then
    sends the same statement.

    Why: at 500 entries a batch, the transaction of seven statements with a row-at-a-time insert
    per table cost the server about 63 µs of CPU per entry, one multi-row insert about 35 µs;
    and on a busy machine every further round trip waits for the server process to be
    scheduled. Plain asyncpg on one kept connection, not SQLAlchemy: the column arrays go
    straight to asyncpg's binary codecs, and a pool checkout (with its liveness ping) cost as
    much as the statement.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._tree: TreeState | None = None
        self._statement = _append_statement(engine.dialect)

    @db_client_span("postgresql", "BATCH", "audit_entries")
    async def write(
        self, entries: Sequence[NewEntry], offsets: list[dict[str, Any]]
    ) -> list[Appended]:
        if not entries:
            return []
        if self._connection is None:
            self._connection = await self._engine.connect()
        connection = self._connection
        try:
            raw = await connection.get_raw_connection()
            return await self._write(raw.driver_connection, entries, offsets)
        except BaseException:
            # Whatever failed, the commit's outcome may be unknown: start over from the database.
            self._connection, self._tree = None, None
            await connection.invalidate()
            await connection.close()
            raise

    async def _write(
        self, pg: Any, entries: Sequence[NewEntry], offsets: list[dict[str, Any]]
    ) -> list[Appended]:
        tree = self._tree
        self._tree = None  # known again only once this batch's outcome is
        if tree is not None:
            # Planned as if no key were recorded: the statement checks that none is (a
            # redelivery, or another version of a recorded event, takes the long way).
            plan = plan_appends(entries, {}, tree.size, tree.peaks, utc_now())
            try:
                if await self._insert(pg, tree, plan, offsets):
                    self._tree = plan.tree
                    return plan.results
            except asyncpg.UniqueViolationError:
                pass  # another writer appended first; the locked path below sorts it out
        async with pg.transaction():
            # Replicas sharing the database take turns, so leaf indexes stay dense.
            await pg.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
            known = await self._recorded(pg, lookup_keys(entries))
            if known:
                known.update(await self._recorded(pg, lookup_keys(entries, known)))
            last = await pg.fetchval("SELECT max(idx) FROM audit_nodes WHERE level = 0")
            size = 0 if last is None else int(last) + 1
            peaks = merkle.root_nodes(size)
            rows = await pg.fetch(
                "SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) IN"
                " (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
                [level for level, _ in peaks],
                [index for _, index in peaks],
            )
            tree = TreeState(size, {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows})
            plan = plan_appends(entries, known, tree.size, tree.peaks, utc_now())
            if (plan.entry_rows or offsets) and not await self._insert(pg, tree, plan, offsets):
                # Only a writer that ignores the lock (someone by hand) gets here; the caller
                # retries, and the next attempt reads the ledger afresh.
                raise RuntimeError("the audit ledger changed while this writer held its lock")
        self._tree = plan.tree
        return plan.results

    @staticmethod
    async def _recorded(pg: Any, keys: list[str]) -> dict[str, Recorded]:
        rows = await pg.fetch(
            "SELECT dedup_key, seq, entry FROM audit_entries WHERE dedup_key = ANY($1::text[])",
            keys,
        )
        return {row["dedup_key"]: Recorded(int(row["seq"]), row["entry"]) for row in rows}

    async def _insert(
        self, pg: Any, tree: TreeState, plan: AppendPlan, offsets: list[dict[str, Any]]
    ) -> bool:
        peaks = list(tree.peaks.items())
        # `fetch`, not `fetchval`: no row limit on the portal, the plain run-to-completion path.
        rows = await pg.fetch(
            self._statement,
            ADVISORY_LOCK_KEY,
            tree.size,
            [level for (level, _), _ in peaks],
            [index for (_, index), _ in peaks],
            [value for _, value in peaks],
            *([row[c.name] for row in plan.entry_rows] for c in audit_entries.columns),
            *([row[c.name] for row in plan.node_rows] for c in audit_nodes.columns),
            *([row[c.name] for row in offsets] for c in audit_offsets.columns),
        )
        return bool(rows[0][0])

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class Ledger:
    def __init__(self, url: str, *, max_batch: int = MAX_BATCH) -> None:
        if url.startswith("sqlite"):
            database = url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self._sqlite: _SqliteDirect | None = None
        self._postgres: _PostgresAppender | None = None
        if url.startswith("sqlite"):
            # Reads run without a transaction (one SELECT is atomic), so a connection going
            # back to the pool has nothing to roll back: skipping that halves a proof's latency.
            self.engine: AsyncEngine = create_async_engine(url, pool_reset_on_return=None)
            _configure_sqlite(self.engine)
            file = self.engine.url.database
            if file and file != ":memory:":
                self._sqlite = _SqliteDirect(file)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)
        instrument_engine(self.engine)  # client spans when tracing is on
        self._is_postgres = self.engine.dialect.name == "postgresql"
        if self._is_postgres:
            self._postgres = _PostgresAppender(self.engine)
        self._append_lock = asyncio.Lock()
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._max_batch = max_batch

    # -- lifecycle --------------------------------------------------------------------------

    async def create(self) -> None:
        async with self._write_transaction() as conn:
            await conn.run_sync(_check_layout)
            await conn.run_sync(metadata.create_all)
            statements = [_POSTGRES_FUNCTION] if self._is_postgres else []
            for table in APPEND_ONLY_TABLES:
                statements += (
                    _postgres_guards(table) if self._is_postgres else _sqlite_guards(table)
                )
            for statement in statements:
                await conn.execute(text(statement))

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._postgres is not None:
            await self._postgres.close()
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # -- appending --------------------------------------------------------------------------

    async def append(self, entry: NewEntry) -> Appended:
        """Append one entry durably (group-committed with concurrent callers).

        Returns its leaf index, and whether it was new: an entry whose `dedup_key` is already
        recorded (a redelivered event) adds nothing and returns the existing index.
        """
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(entry, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="audit-ledger-writer")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self.append_batch([p.entry for p in batch])
            except Exception as exc:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            else:
                for pending, result in zip(batch, results, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(result)

    async def append_batch(
        self,
        entries: Sequence[NewEntry],
        next_offsets: Mapping[Partition, int] | None = None,
    ) -> list[Appended]:
        """Append entries in order in one transaction: all of them durable, or none.

        `next_offsets` advances the offsets expected next on the batch's partitions (never
        back) in the same transaction, so they always match what the ledger holds.
        """
        offsets = _offset_rows(next_offsets)
        async with self._append_lock:
            if self._sqlite is not None:
                return await self._sqlite.write(entries, offsets)
            if self._postgres is not None:
                return await self._postgres.write(entries, offsets)
            async with self._write_transaction() as conn:
                known = await self._known_keys(conn, lookup_keys(entries))
                known.update(await self._known_keys(conn, lookup_keys(entries, known)))
                size = await self._size(conn)
                nodes = await self._fetch_nodes(conn, merkle.root_nodes(size))
                plan = plan_appends(entries, known, size, nodes, utc_now())
                if plan.entry_rows:
                    await conn.execute(audit_entries.insert(), plan.entry_rows)
                    await conn.execute(audit_nodes.insert(), plan.node_rows)
                if offsets:
                    values = ":topic, :partition_id, :next_offset"
                    await conn.execute(text(_upsert_offsets(values)), offsets)
                return plan.results

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(ocsea_write=True)
            async with conn.begin():
                yield conn

    @staticmethod
    async def _known_keys(conn: AsyncConnection, keys: Sequence[str]) -> dict[str, Recorded]:
        known: dict[str, Recorded] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), _IN_CHUNK):
            rows = await conn.execute(
                select(audit_entries.c.dedup_key, audit_entries.c.seq, audit_entries.c.entry).where(
                    audit_entries.c.dedup_key.in_(chunk)
                )
            )
            known.update({key: Recorded(int(seq), entry) for key, seq, entry in rows})
        return known

    async def next_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The offset expected next on each of `partitions` that the ledger has seen."""
        wanted = set(partitions)
        topics = sorted({topic for topic, _ in wanted})
        if not topics:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    audit_offsets.c.topic, audit_offsets.c.partition_id, audit_offsets.c.next_offset
                ).where(audit_offsets.c.topic.in_(topics))
            )
            found = {(topic, int(part)): int(offset) for topic, part, offset in rows}
        return {key: offset for key, offset in found.items() if key in wanted}

    @staticmethod
    async def _size(conn: AsyncConnection) -> int:
        last = await conn.scalar(
            select(func.max(audit_nodes.c.idx)).where(audit_nodes.c.level == 0)
        )
        return 0 if last is None else int(last) + 1

    @staticmethod
    async def _fetch_nodes(
        conn: AsyncConnection, keys: Sequence[merkle.NodeKey]
    ) -> dict[merkle.NodeKey, bytes]:
        nodes: dict[merkle.NodeKey, bytes] = {}
        for chunk in _chunks(list(keys), _IN_CHUNK):
            flat = [value for key in chunk for value in key]
            params = {f"p{n}": value for n, value in enumerate(flat)}
            rows = await conn.execute(_nodes_query(len(chunk)), params)
            nodes.update({(int(level), int(idx)): bytes(value) for level, idx, value in rows})
        return nodes

    # -- the tree -----------------------------------------------------------------------------

    async def size(self) -> int:
        """Leaves in the tree (entries are only ever appended together with their leaf)."""
        if self._sqlite is not None:
            return self._sqlite.read_now(_select_size)
        async with self.engine.connect() as conn:
            return await self._size(conn)

    async def nodes(self, keys: Sequence[merkle.NodeKey]) -> dict[merkle.NodeKey, bytes]:
        """The stored nodes among `keys`, in one SELECT (per 500 keys)."""
        if self._sqlite is not None:
            return self._sqlite.read_now(_select_nodes, keys)
        async with self.engine.connect() as conn:
            return await self._fetch_nodes(conn, keys)

    async def root(self, size: int) -> bytes:
        return merkle.root(size, await self.nodes(merkle.root_nodes(size)))

    async def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, audit path) of leaf `index` in the tree of `size` leaves; one SELECT."""
        nodes = await self.nodes([(0, index), *merkle.inclusion_proof_nodes(index, size)])
        if (0, index) not in nodes:
            raise merkle.MissingNodeError(0, index)
        return nodes[(0, index)], merkle.inclusion_proof(index, size, nodes)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        nodes = await self.nodes(merkle.consistency_proof_nodes(first, second))
        return merkle.consistency_proof(first, second, nodes)

    # -- reading entries ----------------------------------------------------------------------

    async def leaves(self, start: int, end: int) -> list[RawLeaf]:
        """Leaves [start, end) as stored; an entry row that has gone missing shows as None."""
        if self._sqlite is not None:
            return await self._sqlite.read(_select_leaves, start, end)
        query = (
            select(audit_nodes.c.idx, audit_entries.c.entry, audit_nodes.c.hash)
            .select_from(
                audit_nodes.outerjoin(audit_entries, audit_entries.c.seq == audit_nodes.c.idx)
            )
            .where(audit_nodes.c.level == 0, audit_nodes.c.idx >= start, audit_nodes.c.idx < end)
            .order_by(audit_nodes.c.idx)
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [RawLeaf(int(idx), entry, bytes(digest)) for idx, entry, digest in rows]

    async def case_trail(self, case_id: str) -> list[StoredEntry]:
        """A case's entries in the order things happened: by event time, then leaf index.

        Leaf order is the order the audit service learned of events, which across topics
        need not be causal (a task event can be fetched before the report it came from).
        """
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
                .where(audit_entries.c.case_id == case_id)
                .order_by(audit_entries.c.occurred_at, audit_entries.c.seq)
            )
            return [_stored(seq, entry, digest) for seq, entry, digest in rows]

    async def search(self, query: SearchFilter) -> list[StoredEntry]:
        """Entries matching every given filter, in leaf order, after leaf `after`."""
        conditions = []
        if query.actor is not None:
            conditions.append(audit_entries.c.actor_id == query.actor)
        if query.action is not None:
            conditions.append(audit_entries.c.action == query.action)
        if query.agency is not None:
            conditions.append(
                or_(
                    audit_entries.c.actor_agency == query.agency,
                    audit_entries.c.subject_agency == query.agency,
                )
            )
        if query.case_id is not None:
            conditions.append(audit_entries.c.case_id == query.case_id)
        if query.since is not None:
            conditions.append(audit_entries.c.occurred_at >= query.since.astimezone(UTC))
        if query.until is not None:
            conditions.append(audit_entries.c.occurred_at < query.until.astimezone(UTC))
        if query.after is not None:
            conditions.append(audit_entries.c.seq > query.after)
        statement = (
            select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
            .where(and_(True, *conditions))
            .order_by(audit_entries.c.seq)
            .limit(query.limit)
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(statement)
            return [_stored(seq, entry, digest) for seq, entry, digest in rows]

    # -- checkpoints --------------------------------------------------------------------------

    async def add_checkpoint(
        self, *, tree_size: int, key_id: str, signed_at: datetime, checkpoint: str
    ) -> None:
        async with self._write_transaction() as conn:
            await conn.execute(
                audit_checkpoints.insert().values(
                    tree_size=tree_size,
                    key_id=key_id,
                    signed_at=signed_at.astimezone(UTC),
                    checkpoint=checkpoint,
                )
            )

    async def latest_checkpoint(self) -> str | None:
        async with self.engine.connect() as conn:
            stored: str | None = await conn.scalar(
                select(audit_checkpoints.c.checkpoint)
                .order_by(audit_checkpoints.c.id.desc())
                .limit(1)
            )
            return stored


def nodes_where(count: int, mark: Callable[[int], str]) -> str:
    """`WHERE` of a SELECT of `count` nodes by key, as point lookups joined by OR: SQLite plans
    that as one primary-key search per key, but a row-value `IN` list as a full table scan."""
    return " OR ".join(f"(level = {mark(2 * n)} AND idx = {mark(2 * n + 1)})" for n in range(count))


@functools.lru_cache(maxsize=256)
def _nodes_query(count: int) -> TextClause:
    """SELECT of `count` nodes by key. Written once per count and cached: compiling an expanding
    IN on every call cost more than the query itself (a proof's latency budget)."""
    where = nodes_where(count, lambda n: f":p{n}")
    return text(f"SELECT level, idx, hash FROM audit_nodes WHERE {where}")  # noqa: S608


def _stored(seq: int, entry: str, digest: bytes) -> StoredEntry:
    return StoredEntry(int(seq), entry, bytes(digest).hex())


def _check_layout(conn: Connection) -> None:
    tables = inspect(conn).get_table_names()
    if "audit_entries" in tables:
        columns = {c["name"] for c in inspect(conn).get_columns("audit_entries")}
        if "dedup_key" not in columns or "audit_nodes" not in tables:
            raise LedgerLayoutError(
                "this database holds an audit ledger from an earlier development layout "
                "(no Merkle node table); move it aside and let the service start a new one"
            )


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Durable and serialised SQLite: WAL with a sync per commit, and writers that take the
    write lock when they begin (so two processes cannot interleave appends)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's `begin` event, not the driver, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("ocsea_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
