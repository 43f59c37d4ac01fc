"""The ledger on SQLite: the writer, and the reads that must be fast, on plain `sqlite3`.

Durable and serialised: WAL with a sync on every commit, and a writer takes the write lock when
it begins (``BEGIN IMMEDIATE``), so two processes cannot interleave appends.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import DateTime, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.events import utc_now
from ocsea.runtime.telemetry import db_client_span
from services.audit.adapters.schema import audit_entries
from services.audit.adapters.sql import chunks, nodes_where, offset_rows, upsert_offsets
from services.audit.domain import merkle
from services.audit.domain.append_plan import Appended, Recorded, lookup_keys, plan_appends
from services.audit.domain.entry import NewEntry
from services.audit.domain.offsets import Partition
from services.audit.ports import RawLeaf

T = TypeVar("T")

# Durable: WAL synced on every commit. Patient: a writer in another process waits its turn.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
)


def configure_sqlite(engine: AsyncEngine) -> None:
    """The same for the SQLAlchemy engine's connections (the queries' and a writer's that
    asks for `ocsea_write`)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's `begin` event, not the driver, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("ocsea_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def select_recorded(connection: sqlite3.Connection, keys: Sequence[str]) -> dict[str, Recorded]:
    recorded: dict[str, Recorded] = {}
    for chunk in chunks(keys):
        marks = ", ".join("?" for _ in chunk)
        query = f"SELECT dedup_key, seq, entry FROM audit_entries WHERE dedup_key IN ({marks})"  # noqa: S608
        recorded.update({k: Recorded(int(v), t) for k, v, t in connection.execute(query, chunk)})
    return recorded


def select_size(connection: sqlite3.Connection) -> int:
    last = connection.execute("SELECT max(idx) FROM audit_nodes WHERE level = 0").fetchone()
    return 0 if last is None or last[0] is None else int(last[0]) + 1


def select_nodes(
    connection: sqlite3.Connection, keys: Sequence[merkle.NodeKey]
) -> dict[merkle.NodeKey, bytes]:
    nodes: dict[merkle.NodeKey, bytes] = {}
    for chunk in chunks(list(keys)):
        where = nodes_where(len(chunk), lambda _: "?")
        flat = [value for key in chunk for value in key]
        query = f"SELECT level, idx, hash FROM audit_nodes WHERE {where}"  # noqa: S608
        nodes.update({(lv, ix): bytes(h) for lv, ix, h in connection.execute(query, flat)})
    return nodes


def select_leaves(connection: sqlite3.Connection, start: int, end: int) -> list[RawLeaf]:
    rows = connection.execute(
        "SELECT n.idx, e.entry, n.hash FROM audit_nodes AS n"
        " LEFT JOIN audit_entries AS e ON e.seq = n.idx"
        " WHERE n.level = 0 AND n.idx >= ? AND n.idx < ? ORDER BY n.idx",
        (start, end),
    )
    return [RawLeaf(int(idx), entry, bytes(digest)) for idx, entry, digest in rows]


class SqliteDirect:
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
        self, entries: Sequence[NewEntry], next_offsets: Mapping[Partition, int]
    ) -> list[Appended]:
        loop = asyncio.get_running_loop()
        offsets = offset_rows(next_offsets)
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
            for pragma in SQLITE_PRAGMAS:
                connection.execute(pragma)
            self._connections[role] = connection
        return connection

    def _write(self, entries: list[NewEntry], offsets: list[dict[str, Any]]) -> list[Appended]:
        connection = self._connect("write")
        connection.execute("BEGIN IMMEDIATE")
        try:
            known = select_recorded(connection, lookup_keys(entries))
            known.update(select_recorded(connection, lookup_keys(entries, known)))
            size = select_size(connection)
            nodes = select_nodes(connection, merkle.root_nodes(size))
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
                upsert_offsets("?, ?, ?"),
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
