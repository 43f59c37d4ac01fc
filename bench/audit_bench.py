"""Audit ledger benchmark: durable append rate, inclusion-proof latency at a million entries, and
the time an auditor takes to verify a million entries from scratch.

On the real local stack (`uv run ocsea stack up`); PostgreSQL runs get a database of their own,
dropped afterwards; nothing is written to the project's topics.

1. Append rate, durable (SQLite in WAL with a sync per commit; PostgreSQL with
   synchronous_commit on), for SQLite and PostgreSQL:
   - one entry per transaction, one after another (a lone event);
   - the ingest path: batches of up to 500 entries per transaction, as the Kafka consumer hands
     them over, sustained over `--sustained` entries (rates per tenth of the run shown, so a
     slowdown as the tree grows would show), with the CPU each entry cost this process and,
     on PostgreSQL, the server's backends (on a shared machine the rates follow the load, the
     CPU per entry much less; the machine's load average is printed with each table);
   - end to end: `--ingest` records published on a private topic, read by the same reliable
     consumer and recorder the service uses, until the last offset is committed.
2. A ledger of `--entries` entries (default 1,000,000) on SQLite, built through the same append
   code in transactions of 10,000 entries (the bulk path: only the batch size differs). Then
   inclusion-proof latency at that size: in the ledger (the query and the proof) and through the
   auditors' HTTP API of a separate `audit` process (auth, query, proof, JSON).
3. Full verification of that ledger from scratch by the auditor's verifier (`ocsea audit
   verify`), against a checkpoint kept at half its size: from the HTTP API and from an export
   file. Every leaf is recomputed, both tree heads rebuilt, every entry's JSON checked.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

import devstack as local_stack
from ocsea.runtime.auth import ensure_demo_principals
from ocsea.runtime.consumer import ProcessedMarkers, RawRecord, ReliableConsumer, RetryPolicy
from ocsea.runtime.kafka import ensure_topics, make_broker
from ocsea.runtime.logging import configure_logging
from ocsea.runtime.settings import Settings
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.ledger_sources import (
    ExportFileSource,
    ServiceSource,
    export_header,
    export_line,
)
from services.audit.adapters.signing_key import load_signing_key
from services.audit.domain import merkle
from services.audit.domain.entry import NewEntry
from services.audit.entrypoints.kafka import INGEST_BATCH, Recorder
from services.audit.handlers import Checkpointer, verify_ledger
from services.audit.ports import SourceLeaf

ACTIONS = ["report.received", "report.triaged", "task.assigned", "task.acknowledged", "case.viewed"]
T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def entries(count: int, start: int = 0) -> list[NewEntry]:
    """Entries shaped like the service's (a case's five steps), without building envelopes."""
    made = []
    for n in range(start, start + count):
        case = uuid.UUID(int=n // 5 + 1)
        made.append(
            NewEntry(
                dedup_key=str(uuid.uuid4()),
                fields={
                    "time": (T0 + timedelta(seconds=n)).isoformat(),
                    "action": ACTIONS[n % 5],
                    "case_id": str(case),
                    "report_id": str(case),
                    "task_id": None,
                    "agency": "erbil-cpu",
                    "actor": {"kind": "officer", "id": "officer-erbil-cpu", "agency": "erbil-cpu"},
                    "producer": "routing",
                    "source_event_id": str(uuid.uuid4()),
                    "detail": None,
                    "event_sha256": hashlib.sha256(b"%d" % n).hexdigest(),
                    "topic": "ocsea.tasks.events.v1",
                    "partition": n % 3,
                    "offset": n,
                },
            )
        )
    return made


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    sys.stdout.flush()


class PostgresDatabase:
    def __init__(self, server_url: str) -> None:
        self.server = server_url.replace("postgresql+asyncpg://", "postgresql://")
        self.name = f"ocsea_bench_{uuid.uuid4().hex[:10]}"
        self.url = server_url.rsplit("/", 1)[0] + f"/{self.name}"

    async def __aenter__(self) -> str:
        admin = await asyncpg.connect(self.server)
        await admin.execute(f'CREATE DATABASE "{self.name}"')
        await admin.close()
        return self.url

    async def __aexit__(self, *_exc: object) -> None:
        admin = await asyncpg.connect(self.server)
        try:
            # An autovacuum worker (a superuser's process, which FORCE may not end) can still be
            # analysing the tables just written: wait for it to finish rather than leave the
            # database behind.
            deadline = time.monotonic() + 120
            while True:
                try:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                    return
                except asyncpg.InsufficientPrivilegeError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await admin.close()


def load() -> str:
    return "load average " + ", ".join(f"{n:.2f}" for n in os.getloadavg())


def server_cpu_s(database: str | None) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving `database` (their process
    titles name it), read from /proc: the server's side of the cost, on this machine's stack."""
    if database is None:
        return 0.0
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if database.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


# 1. append rates ------------------------------------------------------------------------------


async def append_rates(
    url: str, serial: int, sustained: int, database: str | None = None
) -> list[list[object]]:
    """`database`: the PostgreSQL database's name, to count its backends' CPU (None: SQLite,
    which works inside this process)."""
    ledger = Ledger(url)
    await ledger.create()
    rows: list[list[object]] = []
    try:
        one_by_one = entries(serial)
        started = time.perf_counter()
        for entry in one_by_one:
            await ledger.append(entry)
        elapsed = time.perf_counter() - started
        rows.append(
            ["one entry per transaction", serial, f"{serial / elapsed:,.0f}", "", "", "", "", ""]
        )

        # Only the appends are timed, not making up the entries (the service gets them built).
        batch, tenth = INGEST_BATCH, max(INGEST_BATCH, sustained // 10)
        windows: list[float] = []
        elapsed = in_window = cpu = 0.0
        server_before = server_cpu_s(database)
        for offset in range(0, sustained, batch):
            made = entries(min(batch, sustained - offset), serial + offset)
            started, cpu_started = time.perf_counter(), time.process_time()
            await ledger.append_batch(made)
            took = time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            elapsed += took
            in_window += took
            if (offset + batch) % tenth == 0:
                windows.append(tenth / in_window)
                in_window = 0.0
        server_s = server_cpu_s(database) - server_before
        rows.append(
            [
                f"batches of {INGEST_BATCH} (the ingest path)",
                sustained,
                f"{sustained / elapsed:,.0f}",
                f"{min(windows):,.0f}",
                f"{statistics.median(windows):,.0f}",
                f"{max(windows):,.0f}",
                f"{cpu / sustained * 1e6:.0f}",
                "" if database is None else f"{server_s / sustained * 1e6:.0f}",
            ]
        )
    finally:
        await ledger.close()
    return rows


async def ingest_rate(url: str, env: dict[str, str], count: int) -> tuple[float, float]:
    """Kafka → ledger with the service's consumer and recorder, on a private topic."""
    settings = Settings(
        kafka_bootstrap=env["OCSEA_KAFKA_BOOTSTRAP"], redis_url=env["OCSEA_REDIS_URL"]
    )
    topic = f"ocsea.bench.audit.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        body = json.dumps({"not": "an envelope", "pad": "x" * 400}).encode()
        sends = [
            await producer.send(topic, body, key=str(uuid.UUID(int=n % 997)).encode())
            for n in range(count)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    ledger = Ledger(url)
    await ledger.create()
    redis = Redis.from_url(settings.redis_url)
    broker = make_broker(settings, service="bench", registry=CollectorRegistry())
    record = Recorder(ledger)
    all_recorded = asyncio.Event()
    recorded = 0

    async def recording(batch: Sequence[RawRecord]) -> None:
        nonlocal recorded
        await record(batch)
        recorded += len(batch)
        if recorded >= count:
            all_recorded.set()

    ReliableConsumer(
        broker,
        topics=[topic],
        group_id=f"ocsea-bench-{uuid.uuid4().hex[:8]}",
        raw_handler=recording,
        markers=ProcessedMarkers(redis, 600),
        retry=RetryPolicy.from_settings(settings),
    )
    started = time.perf_counter()
    await broker.start()
    try:
        await asyncio.wait_for(all_recorded.wait(), timeout=600)
        elapsed = time.perf_counter() - started
    finally:
        await broker.stop()
        await redis.aclose()
        await ledger.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    return count / elapsed, elapsed


# 2-3. a million entries ------------------------------------------------------------------------


async def build_ledger(url: str, count: int, var_dir: Path) -> tuple[float, Path, Path]:
    """The big ledger, a kept checkpoint at half its size and a stored one at its end."""
    ledger = Ledger(url)
    await ledger.create()
    key = load_signing_key(var_dir / "audit-signing.key", create=True)
    checkpointer = Checkpointer(ledger, key, "ocsea-audit")
    kept_file = var_dir / "kept.json"
    elapsed = 0.0
    chunk = 10_000
    for offset in range(0, count, chunk):
        made = entries(min(chunk, count - offset), offset)
        started = time.perf_counter()
        await ledger.append_batch(made)
        elapsed += time.perf_counter() - started
        if offset < count // 2 <= offset + chunk:
            kept_file.write_text((await checkpointer.sign_now()).model_dump_json())
        if (offset + chunk) % 100_000 == 0:
            print(f"  built {offset + chunk:,} entries", file=sys.stderr, flush=True)
    await checkpointer.sign_now()
    export = var_dir / "ledger.export"
    with export.open("w", encoding="utf-8") as out:
        head = await checkpointer.current()
        out.write(export_header(head))
        for offset in range(0, count, chunk):
            for leaf in await ledger.leaves(offset, offset + chunk):
                out.write(export_line(SourceLeaf(leaf.leaf_index, leaf.text, leaf.leaf_hash)))
    await ledger.close()
    return elapsed, kept_file, export


async def ledger_proofs(url: str, size: int, samples: int) -> list[float]:
    ledger = Ledger(url)
    try:
        root = await ledger.root(size)
        latencies = []
        for index in random.sample(range(size), samples):
            started = time.perf_counter()
            leaf, path = await ledger.inclusion_proof(index, size)
            latencies.append(time.perf_counter() - started)
            merkle.verify_inclusion(leaf, index, size, path, root)
        return latencies
    finally:
        await ledger.close()


def api_proofs(url: str, token: str, size: int, samples: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        for index in random.sample(range(size), samples):
            started = time.perf_counter()
            response = client.get(
                "/v1/audit/proofs/inclusion", params={"leaf_index": index, "tree_size": size}
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return latencies


API_SERVER = """
import sys, uvicorn
from ocsea.runtime.settings import Settings
from services.audit.bootstrap import build
uvicorn.run(build(Settings(), ingest=False), host="127.0.0.1", port=int(sys.argv[1]),
            log_config=None, access_log=False)
"""


def start_api(
    env: dict[str, str], var_dir: Path, url: str
) -> tuple[subprocess.Popen[bytes], str, str]:
    from testkit.system import free_port

    ensure_demo_principals(var_dir / "principals.json", var_dir / "demo-credentials.json", [])
    token = json.loads((var_dir / "demo-credentials.json").read_text())["auditor"]["token"]
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 (this interpreter, our own script)
        [sys.executable, "-c", API_SERVER, str(port)],
        env={
            **os.environ,
            **env,
            "OCSEA_VAR_DIR": str(var_dir),
            "OCSEA_AUDIT_DB_URL": url,
            "OCSEA_LOG_LEVEL": "WARNING",
        },
        stdout=subprocess.DEVNULL,
        stderr=(var_dir / "api.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base, token
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise RuntimeError((var_dir / "api.log").read_text()[-3000:])


def timed_verification(source: object, kept: Path) -> tuple[float, bool, int]:
    from services.audit.domain.checkpoint import Checkpoint

    trusted = Checkpoint.model_validate_json(kept.read_text())
    started = time.perf_counter()
    verdict = verify_ledger(source, trusted)  # type: ignore[arg-type]
    return time.perf_counter() - started, verdict.ok, verdict.tree_size


def latency_row(label: str, values: Sequence[float]) -> list[object]:
    return [
        label,
        len(values),
        f"{percentile(values, 0.5) * 1000:.2f}",
        f"{percentile(values, 0.99) * 1000:.2f}",
        f"{max(values) * 1000:.2f}",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serial", type=int, default=3000, help="one-by-one appends")
    parser.add_argument("--sustained", type=int, default=200_000, help="entries in batches")
    parser.add_argument("--ingest", type=int, default=50_000, help="records through Kafka")
    parser.add_argument("--entries", type=int, default=1_000_000, help="the big ledger's size")
    parser.add_argument("--proofs", type=int, default=2000, help="proof latency samples")
    parser.add_argument("--skip", nargs="*", default=[], choices=["append", "ingest", "big"])
    parser.add_argument(
        "--stores",
        nargs="*",
        default=["sqlite", "postgresql"],
        choices=["sqlite", "postgresql"],
        help="the stores the append and ingest rates are measured on",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="Keep the big ledger in this directory, and reuse it when it is already there",
    )
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    env = local_stack.service_env(local_stack.StackSettings())

    with tempfile.TemporaryDirectory(prefix="ocsea-audit-bench-") as tmp:
        work = Path(tmp)
        big_dir = args.keep or work
        stores = [name for name in ("SQLite", "PostgreSQL") if name.lower() in args.stores]
        if "append" not in args.skip:
            rows = []
            before = load()
            for name in stores:
                if name == "SQLite":
                    url = f"sqlite+aiosqlite:///{work / 'append.db'}"
                    found = await append_rates(url, args.serial, args.sustained)
                else:
                    async with PostgresDatabase(env["OCSEA_TEST_POSTGRES_URL"]) as url:
                        database = url.rsplit("/", 1)[1]
                        found = await append_rates(url, args.serial, args.sustained, database)
                rows += [[name, *row] for row in found]
            table(
                "Durable appends (entries/s; and per tenth of the sustained run; CPU µs per entry"
                f" of this process and of the database server's backends). {before} before,"
                f" {load()} after",
                [
                    "store",
                    "how",
                    "entries",
                    "entries/s",
                    "min tenth",
                    "median tenth",
                    "max tenth",
                    "CPU µs/entry (bench)",
                    "CPU µs/entry (server)",
                ],
                rows,
            )
        if "ingest" not in args.skip:
            rows = []
            before = load()
            for name in stores:
                if name == "SQLite":
                    url = f"sqlite+aiosqlite:///{work / 'ingest.db'}"
                    rate, elapsed = await ingest_rate(url, env, args.ingest)
                else:
                    async with PostgresDatabase(env["OCSEA_TEST_POSTGRES_URL"]) as url:
                        rate, elapsed = await ingest_rate(url, env, args.ingest)
                rows.append([name, args.ingest, f"{elapsed:.1f}", f"{rate:,.0f}"])
            table(
                "Kafka → ledger, committed (the service's consumer and recorder, a private topic)."
                f" {before} before, {load()} after",
                ["store", "records", "seconds", "entries/s"],
                rows,
            )
        if "big" not in args.skip:
            var_dir = big_dir / "var"
            url = f"sqlite+aiosqlite:///{big_dir / 'big.db'}"
            kept, export = var_dir / "kept.json", var_dir / "ledger.export"
            if not export.is_file():
                big_dir.mkdir(parents=True, exist_ok=True)
                build_s, kept, export = await build_ledger(url, args.entries, var_dir)
                table(
                    f"Building the {args.entries:,}-entry SQLite ledger (transactions of 10,000)",
                    ["entries", "seconds", "entries/s"],
                    [[f"{args.entries:,}", f"{build_s:.1f}", f"{args.entries / build_s:,.0f}"]],
                )
            in_ledger = await ledger_proofs(url, args.entries, args.proofs)
            process, base, token = start_api(env, var_dir, url)
            try:
                over_http = await asyncio.to_thread(
                    api_proofs, base, token, args.entries, args.proofs
                )
                table(
                    f"Inclusion proofs at {args.entries:,} entries (ms)",
                    ["where", "samples", "p50", "p99", "max"],
                    [
                        latency_row("ledger (query + proof)", in_ledger),
                        latency_row("HTTP API (auth, query, proof, JSON)", over_http),
                    ],
                )
                source = ServiceSource.connect(base, token)
                try:
                    api_s, api_ok, api_size = await asyncio.to_thread(
                        timed_verification, source, kept
                    )
                finally:
                    source.close()
            finally:
                process.terminate()
                process.wait(timeout=30)
            exported = ExportFileSource(export)
            try:
                file_s, file_ok, file_size = await asyncio.to_thread(
                    timed_verification, exported, kept
                )
            finally:
                exported.close()
            table(
                f"Verifying {args.entries:,} entries from scratch (kept checkpoint at half)",
                ["source", "entries", "verdict", "seconds", "entries/s"],
                [
                    [
                        "HTTP API",
                        f"{api_size:,}",
                        "VERIFIED" if api_ok else "FAILED",
                        f"{api_s:.1f}",
                        f"{api_size / api_s:,.0f}",
                    ],
                    [
                        "export file",
                        f"{file_size:,}",
                        "VERIFIED" if file_ok else "FAILED",
                        f"{file_s:.1f}",
                        f"{file_size / file_s:,.0f}",
                    ],
                ],
            )


if __name__ == "__main__":
    asyncio.run(main())
