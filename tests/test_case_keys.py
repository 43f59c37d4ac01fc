"""Case data keys: kept in the durable key store, Redis only their cache.

Against the real Redis (a database of the test's own, which it may flush, or a throw-away
redis-server it may FLUSHALL and strip of its data files) and a real key store: a SQLite file,
as a local run keeps it, and PostgreSQL, as a deployment does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError

from contracts.events import ErasureReason
from devstack import StackSettings
from devstack import postgres as local_postgres
from devstack import redis as local_redis
from ocsea.runtime.crypto import CaseErasedError, CaseKeyNotFoundError, CaseKeys
from ocsea.runtime.keystore import Erasure, KeyStore
from testkit.routing_harness import claimed_redis_db, redis_url
from testkit.system import free_port
from tests.keystore_racer import create_keys

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'case-keys.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def redis(stack_env: dict[str, str]) -> AsyncIterator[Redis]:
    """A Redis database of this test's own: flushing it touches no one else."""
    async with claimed_redis_db(stack_env) as db:
        client = Redis.from_url(redis_url(stack_env, db))
        try:
            yield client
        finally:
            await client.aclose()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[KeyStore]:
    keystore = KeyStore(store_url)
    try:
        yield keystore
    finally:
        await keystore.close()


MASTER = os.urandom(32)


RACERS = 3


async def test_replicas_racing_on_new_cases_agree_on_one_key_each(store_url: str) -> None:
    cases = [str(uuid.uuid4()) for _ in range(200)]
    context = get_context("spawn")
    start, results = context.Barrier(RACERS), context.Queue()
    racers = [
        context.Process(target=create_keys, args=(store_url, cases, start, results))
        for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    try:
        handed = [await asyncio.to_thread(results.get, timeout=180) for _ in racers]
    finally:
        for racer in racers:
            racer.join(timeout=30)
    first, *others = handed
    assert all(len(key) == 60 for key in first.values())
    assert all(other == first for other in others), "two replicas hold different keys"
    keystore = KeyStore(store_url)
    try:
        stored = [await keystore.get(uuid.UUID(c)) for c in cases]
    finally:
        await keystore.close()
    assert [s.wrapped if s else None for s in stored] == [first[c] for c in cases]


async def test_sealed_data_opens_after_redis_lost_its_cached_keys(
    redis: Redis, store: KeyStore
) -> None:
    keys = CaseKeys(redis, MASTER, store)
    cases = [uuid.uuid4() for _ in range(50)]
    sealed = await asyncio.gather(*(keys.seal(c, f"narrative of {c}".encode()) for c in cases))
    await redis.flushdb()  # the test's own database: everything Redis held is gone
    assert await redis.dbsize() == 0
    opened = await asyncio.gather(*(keys.open(c, b) for c, b in zip(cases, sealed, strict=True)))
    assert opened == [f"narrative of {c}".encode() for c in cases]
    assert await redis.dbsize() == len(cases)  # the cache filled again, from the key store
    # Sealed again after the loss: under the same key, not a new one.
    again = await keys.seal(cases[0], b"a later report")
    await redis.flushdb()
    assert await keys.open(cases[0], again) == b"a later report"
    assert await keys.open(cases[0], sealed[0]) == f"narrative of {cases[0]}".encode()


async def test_a_case_the_store_never_knew_has_no_key(redis: Redis, store: KeyStore) -> None:
    keys = CaseKeys(redis, MASTER, store)
    sealed = await keys.seal(uuid.uuid4(), b"elsewhere")
    stranger = uuid.uuid4()
    with pytest.raises(CaseKeyNotFoundError) as caught:
        await keys.open(stranger, sealed)
    assert not isinstance(caught.value, CaseErasedError)
    assert await keys.erasure(stranger) is None
    assert await keys.erase(stranger, ErasureReason.OTHER, "operator") is None
    assert await store.get(stranger) is None  # erasing a stranger leaves no row behind


async def test_an_erased_case_opens_no_more_wherever_its_key_was_cached(
    redis: Redis, store: KeyStore
) -> None:
    keys = CaseKeys(redis, MASTER, store)
    other_process = CaseKeys(redis, MASTER, store)
    case_id, bystander = uuid.uuid4(), uuid.uuid4()
    sealed = await keys.seal(case_id, b"Survivor Name")
    kept = await keys.seal(bystander, b"another case")
    assert await other_process.open(case_id, sealed) == b"Survivor Name"  # cached now
    held = await store.get(case_id)
    assert held is not None
    assert held.wrapped is not None

    erasure = await keys.erase(
        case_id, ErasureReason.DATA_SUBJECT_REQUEST, "operator", reference="DSR-2026-7"
    )
    assert erasure is not None
    assert erasure.reason is ErasureReason.DATA_SUBJECT_REQUEST
    assert erasure.reference == "DSR-2026-7"
    for reader in (keys, other_process):
        with pytest.raises(CaseErasedError) as caught:
            await reader.open(case_id, sealed)
        assert caught.value.erasure == erasure
        assert await reader.erasure(case_id) == erasure
    stored = await store.get(case_id)
    assert stored is not None
    assert stored.wrapped is None  # the key itself is gone from the store
    assert stored.erasure == erasure

    await redis.flushdb()  # and Redis forgets: the store still says erased, and when
    with pytest.raises(CaseErasedError) as caught:
        await other_process.open(case_id, sealed)
    assert caught.value.erasure == erasure
    assert await keys.open(bystander, kept) == b"another case"

    # Final: a second erasure changes nothing, and what arrives later is erased on arrival.
    assert await keys.erase(case_id, ErasureReason.OTHER, "someone-else") == erasure
    later = await keys.seal(case_id, b"a report after the erasure")
    with pytest.raises(CaseErasedError):
        await keys.open(case_id, later)
    if store.engine.dialect.name == "sqlite":
        database = Path(str(store.engine.url.database))
        written = b"".join(
            p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file()
        )
        # secure_delete and the checkpoint: no copy of the wrapped key stays in the files.
        assert held.wrapped not in written


async def test_readers_racing_an_erasure_cannot_bring_the_key_back(
    redis: Redis, store: KeyStore
) -> None:
    keys = CaseKeys(redis, MASTER, store)
    case_id = uuid.uuid4()
    sealed = await keys.seal(case_id, b"text")
    before = await store.get(case_id)
    assert before is not None
    assert before.wrapped is not None
    for _ in range(5):  # readers that missed the cache, their fills landing around the erasure
        await redis.flushdb()
        readers = [asyncio.ensure_future(keys.open(case_id, sealed)) for _ in range(20)]
        erased = await keys.erase(case_id, ErasureReason.LEGAL_ORDER, "operator")
        await asyncio.gather(*readers, return_exceptions=True)
        assert erased is not None
        with pytest.raises(CaseErasedError):
            await keys.open(case_id, sealed)


async def test_a_key_an_earlier_version_kept_in_redis_alone_moves_into_the_store(
    redis: Redis, store: KeyStore, tmp_path: Path
) -> None:
    keys = CaseKeys(redis, MASTER, store)
    case_id = uuid.uuid4()
    # What the previous CaseKeys stored: the wrapped key at ocsea:case-key:<case>, nowhere else.
    other = CaseKeys(redis, MASTER, KeyStore(f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"))
    sealed = await other.seal(case_id, b"from before")
    wrapped = await redis.get(other.cache_key(case_id))
    assert wrapped is not None
    await redis.flushdb()
    await redis.set(f"ocsea:case-key:{case_id}", wrapped[1:])
    await other.store.close()

    assert await keys.open(case_id, sealed) == b"from before"
    assert await store.get(case_id) is not None
    await redis.flushdb()
    assert await keys.open(case_id, sealed) == b"from before"


# -- a Redis of its own: FLUSHALL, its data files deleted, restarted ----------------------------


@contextlib.contextmanager
def throwaway_redis(data_dir: Path, port: int, password: str) -> Iterator[str]:
    """A redis-server of this test's own (append-only file on, a password), until the block
    ends; the URL to reach it."""
    redis_server = local_redis.find_server()
    assert redis_server is not None, "needs redis-server (installed by `ocsea stack up`)"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            str(redis_server),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--requirepass", password,
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not local_redis.ping(port, password=password):
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer within 30 s"
            with contextlib.suppress(subprocess.TimeoutExpired):  # an exit ends the wait
                process.wait(timeout=0.05)
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_keys_survive_flushall_and_the_loss_of_redis_data_files(
    store: KeyStore, tmp_path: Path
) -> None:
    port, password, data = free_port(), secrets.token_hex(16), tmp_path / "redis-data"
    cases = [uuid.uuid4() for _ in range(20)]
    with throwaway_redis(data, port, password) as url:
        client = Redis.from_url(url)
        try:
            keys = CaseKeys(client, MASTER, store)
            sealed = [await keys.seal(c, c.bytes) for c in cases]
            assert await client.dbsize() == len(cases)
            await client.flushall()
        finally:
            await client.aclose()
    assert any(data.iterdir()), "redis-server wrote no data files"
    shutil.rmtree(data)
    with throwaway_redis(data, port, password) as url:
        client = Redis.from_url(url)
        try:
            assert await client.dbsize() == 0
            keys = CaseKeys(client, MASTER, store)
            assert [await keys.open(c, b) for c, b in zip(cases, sealed, strict=True)] == [
                c.bytes for c in cases
            ]
        finally:
            await client.aclose()


# -- the deployment's key store: its own role and database (deploy/postgres/keys.sql) -----------

KEYS_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres" / "keys.sql"


async def test_the_deployments_key_store_role_keeps_and_erases_keys_in_its_own_database(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    del stack_env  # the stack (and its PostgreSQL) is up
    bindir = local_postgres.find_bindir()
    assert bindir is not None
    sockets = local_postgres.paths(StackSettings()).sockets
    tag = uuid.uuid4().hex[:8]
    database, role, stranger = f"ocsea_keys_{tag}", f"ocsea_keys_{tag}", f"ocsea_other_{tag}"
    (tmp_path / "keys.pw").write_text(f"keys-{tag}-secret")

    def as_superuser(*args: str) -> None:
        done = subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-h", str(sockets), "-U", "postgres", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    as_superuser(
        "-d", "postgres", "-v", f"keys_database={database}", "-v", f"keys_role={role}",
        "-v", f"keys_password_file={tmp_path / 'keys.pw'}", "-f", str(KEYS_SQL),
    )  # fmt: skip
    try:
        as_superuser("-d", "postgres", "-c", f"CREATE ROLE {stranger} LOGIN PASSWORD 'x-{tag}'")
        keystore = KeyStore(
            f"postgresql+asyncpg://{role}:keys-{tag}-secret@127.0.0.1:5432/{database}"
        )
        try:
            await keystore.ping()  # the role creates its table itself
            case_id = uuid.uuid4()
            made = await keystore.create(case_id, b"w" * 60)
            assert made.wrapped == b"w" * 60
            erasure = Erasure(
                erased_at=datetime.now(UTC), reason=ErasureReason.OTHER, erased_by="operator"
            )
            assert await keystore.erase(case_id, erasure) == erasure
            stored = await keystore.get(case_id)
            assert stored is not None
            assert stored.wrapped is None
        finally:
            await keystore.close()
        # Nobody else may even connect to it.
        other = KeyStore(f"postgresql+asyncpg://{stranger}:x-{tag}@127.0.0.1:5432/{database}")
        try:
            with pytest.raises(DBAPIError, match="permission denied"):
                await other.ping()
        finally:
            await other.close()
    finally:
        as_superuser("-d", "postgres", "-c", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        as_superuser(
            "-d", "postgres", "-c", f'DROP ROLE IF EXISTS "{role}"',
            "-c", f'DROP ROLE IF EXISTS "{stranger}"',
        )  # fmt: skip
