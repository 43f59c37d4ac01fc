"""Intake throughput and latency: `POST /v1/reports` at several concurrencies, real stack.

    uv run python bench/intake_bench.py                       # own intake, own Kafka+Redis
    uv run python bench/intake_bench.py --concurrency 1,8,32 --seconds 10
    uv run python bench/intake_bench.py --shared-stack        # on `ocsea stack up`'s stack
    uv run python bench/intake_bench.py --url http://127.0.0.1:8081 --token <partner token>

Every request is a distinct, realistic hotline report (Kurdish and Arabic-Indic spellings,
a phone number, a handle, a narrative), so each one is normalised, matched, sealed, published
to Kafka with acks=all and answered 202 only after the broker acknowledged it. By default the
script starts a real Kafka and Redis of its own (the local stack's scripts, its own ports and a
temporary directory) and intake alone on them (`testkit/intake_serve.py`), with a rate limit high
enough not to interfere: tens of thousands of benchmark reports must not land in the shared
topics, which every new consumer group (every test session) replays from the beginning.

The client is a minimal keep-alive HTTP/1.1 client on asyncio streams: a general-purpose
client would spend more CPU than the server on this machine and measure itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import TopicPartition

import devstack as local_stack
from contracts import topics
from testkit.intake import start_intake
from testkit.stack import own_stack


def report(number: int, run: str) -> bytes:
    phone = f"0750{number % 10_000_000:07d}"
    body = {
        "source_reference": f"BENCH-{run}-{number}",
        "channel": "hotline",
        "language": "ckb",
        "incident": {
            "occurred_at": "٢٠٢٦-١١-٢٠ ٢١:٣٠",
            "governorate": "هەولێر",
            "district": "Soran",
            "platform": "Instagram",
        },
        "survivors": [
            {"name": f"Bench Survivor {number}", "age": "١٥ ساڵ", "contact": {"phone": phone}}
        ],
        "reported_persons": [
            {
                "relationship": "online",
                "online_identifiers": [{"platform": "IG", "handle": f"@bench_{run}_{number}"}],
            }
        ],
        "categories": ["sextortion"],
        "risk_flags": ["sextortion_deadline"],
        "narrative": f"Bench narrative {number}: " + "threatened to share images " * 12,
    }
    return json.dumps(body, ensure_ascii=False).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection: send a POST, read status and body."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


@dataclass
class Result:
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    server_cpu_s: float | None = None

    @property
    def cpu_ms_per_report(self) -> float | None:
        if self.server_cpu_s is None or not self.latencies_ms:
            return None
        return self.server_cpu_s * 1000 / len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc), to report server CPU per report."""
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def run_level(
    url: str,
    token: str,
    concurrency: int,
    seconds: float,
    run: str,
    counter: list[int],
    server_pid: int | None = None,
) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = Result(concurrency, seconds)
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        connection = Connection(host, port, token)
        try:
            while time.perf_counter() < deadline:
                counter[0] += 1
                body = report(counter[0], run)
                started = time.perf_counter()
                status = await connection.post("/v1/reports", body)
                elapsed = (time.perf_counter() - started) * 1000
                if status == 202:
                    result.latencies_ms.append(elapsed)
                else:
                    result.errors[status] = result.errors.get(status, 0) + 1
        finally:
            await connection.close()

    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    cpu_after = cpu_seconds(server_pid)
    if cpu_before is not None and cpu_after is not None:
        result.server_cpu_s = cpu_after - cpu_before
    return result


async def status_projection_caught_up(bootstrap: str, group: str, within: float = 120) -> None:
    """A fresh intake first reads the triage and routing history into its status projection;
    measuring during that catch-up would measure the catch-up."""
    from aiokafka.admin import AIOKafkaAdminClient

    from testkit.kafka import end_offsets

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            ends = {
                (topic, p): end
                for topic in (*topics.TRIAGED_BY_LANE.values(), topics.TASKS_EVENTS)
                for p, end in (await end_offsets(bootstrap, topic)).items()
            }
            lag = sum(
                end - (committed[tp].offset if tp in committed else 0)
                for tp, end in ((TopicPartition(t, p), e) for (t, p), e in ends.items())
            )
            if lag <= 50:  # other sessions keep writing to the shared topics
                return
            await asyncio.sleep(1)
        print(f"  (the status projection still lags after {within:.0f} s)", file=sys.stderr)
    finally:
        await admin.close()


def table(results: list[Result]) -> str:
    lines = [
        "| concurrency | reports/s | p50 ms | p90 ms | p99 ms | max ms | accepted | errors "
        "| intake CPU ms/report |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) or "0"
        cpu = f"{r.cpu_ms_per_report:.2f}" if r.cpu_ms_per_report is not None else "n/a"
        lines.append(
            f"| {r.concurrency} | {r.throughput:,.0f} | {r.percentile(50):.1f} | "
            f"{r.percentile(90):.1f} | {r.percentile(99):.1f} | "
            f"{max(r.latencies_ms, default=0):.1f} | {len(r.latencies_ms):,} | {errors} | {cpu} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="A running intake; default: start one of our own")
    parser.add_argument("--token", help="A partner's bearer token for --url")
    parser.add_argument("--concurrency", default="1,4,16,32,64", help="Comma-separated levels")
    parser.add_argument("--seconds", type=float, default=8.0, help="Per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="Seconds before measuring")
    parser.add_argument(
        "--shared-stack",
        action="store_true",
        help="Use the local stack of `ocsea stack up` instead of a stack of the benchmark's own",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    with contextlib.ExitStack() as cleanup:
        await measure(args, levels, cleanup)


async def measure(
    args: argparse.Namespace, levels: list[int], cleanup: contextlib.ExitStack
) -> None:
    intake = None
    if args.url:
        if not args.token:
            raise SystemExit("--url needs --token")
        url, token = args.url, args.token
    else:
        var_dir = Path(tempfile.mkdtemp(prefix="intake-bench-"))
        if args.shared_stack:
            settings = local_stack.StackSettings()
            local_stack.up(settings, with_postgres=False)
        else:
            print("  starting a Kafka and Redis of the benchmark's own…", file=sys.stderr)
            settings = cleanup.enter_context(own_stack(var_dir / "stack"))
        intake = start_intake(
            local_stack.service_env(settings),
            var_dir,
            {
                "OCSEA_LOG_LEVEL": "INFO",
                "OCSEA_TRACE_FILE": "",
                "OCSEA_INTAKE_RATE_LIMIT_PER_MINUTE": "100000000",
                "OCSEA_INTAKE_RATE_LIMIT_BURST": "1000000",
                # One group across runs: a run reads only the events since the last one.
                "OCSEA_CONSUMER_GROUP_PREFIX": "ocsea-bench",
            },
        )
        url, token = intake.url, intake.tokens["hotline-a"]
        group = f"{intake.env['OCSEA_CONSUMER_GROUP_PREFIX']}.intake.status"
        print("  waiting for the status projection to catch up…", file=sys.stderr, flush=True)
        await status_projection_caught_up(intake.bootstrap, group)
    run = uuid.uuid4().hex[:8]
    counter = [0]
    try:
        pid = intake.process.pid if intake is not None else None
        await run_level(url, token, max(levels), args.warmup, run, counter)
        results = []
        for level in levels:
            result = await run_level(url, token, level, args.seconds, run, counter, pid)
            results.append(result)
            print(
                f"  concurrency {level:>3}: {result.throughput:,.0f} reports/s, "
                f"p99 {result.percentile(99):.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if intake is not None:
            intake.stop()
    print(f"\nPOST /v1/reports, {args.seconds:.0f} s per level, 202 only after the broker's ack\n")
    print(table(results))
    if results:
        best = max(results, key=lambda r: r.throughput)
        print(
            f"\nbest: {best.throughput:,.0f} reports/s at concurrency {best.concurrency}; "
            f"median of p50s {statistics.median(r.percentile(50) for r in results):.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
