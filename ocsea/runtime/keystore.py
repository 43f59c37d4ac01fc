"""The durable store of the wrapped case data keys, and of their erasure.

Why a database table (and Redis only as its cache):

- everything else the services keep in Redis is rebuilt from Kafka after a loss; a case's data
  key cannot be rebuilt, and without it the case's personal data is gone. So the keys live
  where a Redis loss (FLUSHALL, a lost disk) cannot reach them;
- a table gives what a file per key cannot, across processes and hosts: an atomic
  insert-if-absent, so two intake replicas creating a case's first key agree on one, and one
  place to back up with the database's own tools. Locally it is a SQLite file under `var/`
  (WAL, a sync per commit, a busy timeout: intake, triage and routing processes share it); a
  deployment points `OCSEA_KEYSTORE_DB_URL` at PostgreSQL, with a role and database of its own
  (not the ledger's: the ledger's role may never delete, and this one must);
- keys are kept only wrapped (AES-GCM under the master key, `ocsea.runtime.crypto`), so the
  table and its backups open nothing without the master key, which is kept apart from them.

Erasure replaces a case's wrapped key by a tombstone in the same row (when, why as a code, the
operator's reference, who). The row stays, so views say "erased on …" rather than "unknown",
and no key can ever be created for the case again (the insert-if-absent finds the row). A
backup taken before an erasure still holds the wrapped key: the erasure is complete once such
backups have expired, so a deployment keeps this store's backups no longer than it promises
erasure within.

Lookups and creations that arrive while one is in flight wait for it and go together in the
next one (one transaction for a batch upload's new cases, not one each).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import Column, Connection, LargeBinary, MetaData, String, Table, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from contracts.events import ErasureReason, utc_now
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import instrument_engine

metadata = MetaData()

case_keys = Table(
    "ocsea_case_keys",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("wrapped_key", LargeBinary, nullable=True),  # NULL once erased
    Column("created_at", String(40), nullable=False),
    Column("erased_at", String(40), nullable=True),
    Column("erasure_reason", String(40), nullable=True),
    Column("erasure_reference", String(100), nullable=True),
    Column("erased_by", String(200), nullable=True),
)

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # a key acknowledged is a key on disk: reports are sealed with it
    "PRAGMA busy_timeout=10000",  # several processes write; each waits its turn
    "PRAGMA secure_delete=ON",  # an erased key's bytes are zeroed in the file, not left behind
)
_SCHEMA_LOCK_KEY = 0x0C5EA_CE75
"""PostgreSQL advisory lock taken while the table is created (replicas start together)."""
_IN_CHUNK = 500
MAX_BATCH = 500


@dataclass(frozen=True)
class Erasure:
    """When and why a case's data key was destroyed, and by whom (an id, never a name)."""

    erased_at: datetime
    reason: ErasureReason
    erased_by: str
    reference: str | None = None


class ErasureNotice(BaseModel):
    """What a view of an erased case shows in place of its personal data."""

    model_config = ConfigDict(frozen=True)

    erased_at: AwareDatetime = Field(description="When the case's data key was destroyed")
    reason: ErasureReason

    @classmethod
    def of(cls, erasure: Erasure | None) -> ErasureNotice | None:
        if erasure is None:
            return None
        return cls(erased_at=erasure.erased_at, reason=erasure.reason)


@dataclass(frozen=True)
class StoredKey:
    """A case's row: its wrapped data key, or, once erased, its erasure."""

    wrapped: bytes | None
    erasure: Erasure | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _stored(row: Mapping[Any, Any]) -> StoredKey:
    if row["erased_at"] is None:
        return StoredKey(wrapped=bytes(row["wrapped_key"]))
    return StoredKey(
        wrapped=None,
        erasure=Erasure(
            erased_at=datetime.fromisoformat(row["erased_at"]),
            reason=ErasureReason(row["erasure_reason"]),
            erased_by=row["erased_by"],
            reference=row["erasure_reference"],
        ),
    )


A = TypeVar("A")
R = TypeVar("R")


class _Coalesced(Generic[A, R]):
    """Calls keyed by case: sent at once when nothing is in flight, otherwise queued and sent
    together when the call in flight returns. The same case asked twice is asked once."""

    def __init__(
        self,
        run: Callable[[dict[uuid.UUID, A]], Awaitable[Mapping[uuid.UUID, R]]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._queue: dict[uuid.UUID, tuple[A, list[asyncio.Future[R | None]]]] = {}
        self._drain: asyncio.Task[None] | None = None

    async def __call__(self, case_id: uuid.UUID, argument: A) -> R | None:
        future: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        queued = self._queue.setdefault(case_id, (argument, []))
        queued[1].append(future)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_queue())
        return await future

    async def _drain_queue(self) -> None:
        while self._queue:
            batch = dict(islice(self._queue.items(), self._max_batch))
            for case_id in batch:
                del self._queue[case_id]
            waiting = [f for _, futures in batch.values() for f in futures if not f.done()]
            try:
                results = await self._run({k: argument for k, (argument, _) in batch.items()})
            except Exception as exc:  # every caller of the batch gets the failure
                for future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for case_id, (_, futures) in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(results.get(case_id))


class KeyStore:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            database = url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(url)
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)
        instrument_engine(self.engine)
        self._is_postgres = self.engine.dialect.name == "postgresql"
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._find: _Coalesced[None, StoredKey] = _Coalesced(self._find_many)
        self._create: _Coalesced[bytes, StoredKey] = _Coalesced(self._create_many)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        return cls(settings.resolved_keystore_db_url)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """Readiness: the store answers (and has its table)."""
        await self._ensure_schema()
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def get(self, case_id: uuid.UUID) -> StoredKey | None:
        """The case's row; None when the store knows no key of the case."""
        return await self._find(case_id, None)

    async def create(self, case_id: uuid.UUID, wrapped: bytes) -> StoredKey:
        """Store `wrapped` as the case's key unless the case has a row already; either way,
        the row that won (an earlier key, or the erasure of the case)."""
        found = await self._create(case_id, wrapped)
        if found is None:  # the insert-if-absent leaves a row, whoever wrote it
            raise RuntimeError("the key store lost a row it had just written")
        return found

    async def erase(self, case_id: uuid.UUID, erasure: Erasure) -> Erasure | None:
        """Destroy the case's wrapped key, leaving the tombstone. The first erasure stands: a
        repeated one changes nothing and returns it. None: the store knows no such case."""
        await self._ensure_schema()
        async with self._writing() as connection:
            await connection.execute(
                case_keys.update()
                .where(case_keys.c.case_id == str(case_id), case_keys.c.erased_at.is_(None))
                .values(
                    wrapped_key=None,
                    erased_at=_iso(erasure.erased_at),
                    erasure_reason=erasure.reason.value,
                    erasure_reference=erasure.reference,
                    erased_by=erasure.erased_by,
                )
            )
            found = (await self._select(connection, [case_id])).get(case_id)
        if not self._is_postgres:
            # The WAL still holds the page with the key until a checkpoint copies it back.
            async with self.engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return found.erasure if found is not None else None

    # -- internals --------------------------------------------------------------------------

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            async with self._writing() as connection:
                if self._is_postgres:
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
                    )
                await connection.run_sync(metadata.create_all)
            self._schema_ready = True

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            connection = await connection.execution_options(ocsea_write=True)
            async with connection.begin():
                yield connection

    @staticmethod
    async def _select(
        connection: AsyncConnection, case_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, StoredKey]:
        found: dict[uuid.UUID, StoredKey] = {}
        wanted = iter([str(c) for c in case_ids])
        while chunk := list(islice(wanted, _IN_CHUNK)):
            rows = await connection.execute(select(case_keys).where(case_keys.c.case_id.in_(chunk)))
            for row in rows.mappings():
                found[uuid.UUID(row["case_id"])] = _stored(row)
        return found

    async def _find_many(self, wanted: dict[uuid.UUID, None]) -> dict[uuid.UUID, StoredKey]:
        await self._ensure_schema()
        async with self.engine.connect() as connection:
            return await self._select(connection, wanted)

    async def _create_many(self, wrapped: dict[uuid.UUID, bytes]) -> dict[uuid.UUID, StoredKey]:
        await self._ensure_schema()
        now = _iso(utc_now())
        rows = [
            {"case_id": str(case_id), "wrapped_key": key, "created_at": now}
            for case_id, key in wrapped.items()
        ]
        insert = (postgresql.insert if self._is_postgres else sqlite.insert)(case_keys)
        async with self._writing() as connection:
            await connection.execute(
                insert.on_conflict_do_nothing(index_elements=["case_id"]), rows
            )
            return await self._select(connection, wrapped)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL with a sync per commit; a writer takes the write lock as it begins (so two
    processes' insert-if-absent never deadlock upgrading a read lock); reads take none."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("ocsea_write", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
