"""How much Kafka work a report costs: records written to each topic and records read by each
consumer group, per report, after a benchmark run on the private stack.

    uv run python bench/kafka_census.py --bootstrap 127.0.0.1:PORT --group-prefix ocsea-bench-RUN

(`ocsea bench` prints the private Kafka's address and the run's name; its topics are emptied at
the start of each run, so right after one they hold that run's records only.) The records a
group reads are its topics' records (every group reads its topics to the end). The bare relay
of `ocsea bench` costs four writes and four reads per message: the ratio of the two is the
most the pipeline could reach of the relay's rate if its record operations cost what the
relay's do and nothing else (parsing, rules, Redis, the ledger) took any time.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import topics

RELAY_OPERATIONS_PER_MESSAGE = 8  # four stages, each one read and one write


async def census(bootstrap: str, group_prefix: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Records in each topic now, and the topics each group of the run has offsets in."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(await admin.list_topics())
    finally:
        await admin.close()
    partitions = [
        TopicPartition(str(d["topic"]), int(p["partition"]))
        for d in described
        if not d.get("error_code")
        for p in d.get("partitions", [])
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    records: dict[str, int] = defaultdict(int)
    for tp in partitions:
        records[tp.topic] += ends[tp] - starts[tp]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        readers: dict[str, list[str]] = defaultdict(list)
        for group, *_ in await admin.list_consumer_groups():
            if not str(group).startswith(group_prefix):
                continue
            offsets = await admin.list_consumer_group_offsets(group)
            for topic in sorted({tp.topic for tp in offsets}):
                readers[topic].append(str(group).removeprefix(group_prefix))
    finally:
        await admin.close()
    return dict(sorted(records.items())), dict(readers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group-prefix", required=True, help="the run's consumer groups")
    parser.add_argument(
        "--reports", type=int, help="reports in the run (default: records on the received topics)"
    )
    args = parser.parse_args()
    records, readers = asyncio.run(census(args.bootstrap, args.group_prefix))
    reports = args.reports or sum(records.get(t, 0) for t in topics.RECEIVED_BY_LANE.values())
    if not reports:
        raise SystemExit("no reports on the received topics: run `ocsea bench` first")
    writes = reads = 0.0
    print(f"{'topic':<40} {'written/report':>15} {'groups reading':>15}  groups")
    for topic, count in records.items():
        if not count or topic.startswith("__"):
            continue  # Kafka's own (offset commits of every run so far), and empty topics
        groups = readers.get(topic, [])
        writes += count / reports
        reads += count * len(groups) / reports
        print(f"{topic:<40} {count / reports:>15.2f} {len(groups):>15}  {', '.join(groups)}")
    print(
        f"\n{reports:,} reports: {writes:.1f} records written and {reads:.1f} read per report "
        f"({writes + reads:.1f} operations; the relay makes {RELAY_OPERATIONS_PER_MESSAGE} per "
        f"message: if each cost what the relay's do and nothing else took time, the pipeline "
        f"would reach {RELAY_OPERATIONS_PER_MESSAGE / (writes + reads):.0%} of the relay's rate)"
    )


if __name__ == "__main__":
    main()
