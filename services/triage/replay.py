"""Replaying a candidate rule set over past received reports, without publishing anything.

`ocsea triage replay --rules FILE --from T1 --to T2` reads `ocsea.reports.received.v1` from
Kafka (no consumer group, nothing committed, no producer), combines each case's reports the
way the live service does, and compares the baseline rules' result with the candidate's for
every case that received a report in [T1, T2): counts by old -> new priority and
classification, and the cases that would change. A case's reports before T1 count as
evidence (as they did live); reports from T2 on are left out. Supervisors' overrides are not
replayed: the comparison is of rules against rules.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from contracts.events import Envelope, EventType, ReportReceivedData, ReportTriagedData
from ocsea.runtime.topic_reader import partitions_of, read_to_end
from services.triage.domain import CaseReport, triage_case
from services.triage.rules import Rules
from services.triage.sealed import SealedReader


@dataclass(frozen=True)
class RecordedReport:
    timestamp_ms: int
    case_id: uuid.UUID
    received: ReportReceivedData


@dataclass(frozen=True)
class Recording:
    reports: list[RecordedReport]
    skipped: int


async def read_received(
    bootstrap: str, topic: str, *, until_ms: int | None, within_s: float = 120.0
) -> Recording:
    """Every `report.received` on the topic up to its end as of now (and before `until_ms`)."""
    if not await partitions_of(bootstrap, [topic]):
        raise LookupError(f"topic {topic} does not exist")
    records = [
        record
        async for batch in read_to_end(bootstrap, [topic], within_s=within_s)
        for record in batch
    ]
    reports, skipped = [], 0
    # Kafka keeps one case's reports in order within its partition; across partitions the
    # broker's timestamps order them.
    for record in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
        if until_ms is not None and record.timestamp >= until_ms:
            continue
        try:
            envelope = Envelope.model_validate_json(record.value or b"")
            if envelope.event_type != EventType.REPORT_RECEIVED:
                skipped += 1
                continue
            received = envelope.payload(ReportReceivedData)
        except ValidationError:
            skipped += 1
            continue
        reports.append(RecordedReport(record.timestamp, envelope.case_id, received))
    return Recording(reports, skipped)


@dataclass(frozen=True)
class Outcome:
    classification: str
    priority: str
    score: int

    @classmethod
    def of(cls, result: ReportTriagedData) -> Outcome:
        return cls(result.classification.value, result.priority.value, result.score)


@dataclass(frozen=True)
class CaseComparison:
    case_id: str
    reports: int
    old: Outcome
    new: Outcome

    @property
    def changed(self) -> bool:
        return (self.old.classification, self.old.priority) != (
            self.new.classification,
            self.new.priority,
        )


@dataclass
class ReplaySummary:
    baseline_version: str
    baseline_digest: str
    candidate_version: str
    candidate_digest: str
    reports_read: int
    reports_in_range: int
    skipped: int
    sealed_read: int
    cases: list[CaseComparison] = field(default_factory=list)

    @property
    def priority_transitions(self) -> dict[str, int]:
        counts = Counter(f"{c.old.priority} -> {c.new.priority}" for c in self.cases)
        return dict(sorted(counts.items()))

    @property
    def classification_transitions(self) -> dict[str, int]:
        counts = Counter(f"{c.old.classification} -> {c.new.classification}" for c in self.cases)
        return dict(sorted(counts.items()))

    @property
    def changed(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.changed]

    def as_json(self) -> str:
        document = {
            "baseline": {"version": self.baseline_version, "digest": self.baseline_digest},
            "candidate": {"version": self.candidate_version, "digest": self.candidate_digest},
            "reports_read": self.reports_read,
            "reports_in_range": self.reports_in_range,
            "skipped": self.skipped,
            "sealed_read": self.sealed_read,
            "cases": len(self.cases),
            "priority_transitions": self.priority_transitions,
            "classification_transitions": self.classification_transitions,
            "changed": [asdict(c) for c in self.changed],
            "published": 0,
        }
        return json.dumps(document, indent=2, sort_keys=True)

    def as_text(self) -> str:
        lines = [
            f"candidate rules {self.candidate_version} ({self.candidate_digest[:19]}…) against "
            f"baseline {self.baseline_version} ({self.baseline_digest[:19]}…)",
            f"reports read {self.reports_read}, in range {self.reports_in_range}, skipped "
            f"{self.skipped}; sealed parts read {self.sealed_read}; cases in range "
            f"{len(self.cases)}",
            "nothing was published",
            "",
            f"{'priority (old -> new)':<32}{'cases':>6}",
        ]
        lines += [f"{k:<32}{v:>6}" for k, v in self.priority_transitions.items()]
        lines += ["", f"{'classification (old -> new)':<32}{'cases':>6}"]
        lines += [f"{k:<32}{v:>6}" for k, v in self.classification_transitions.items()]
        lines += ["", f"cases that would change: {len(self.changed)}"]
        if self.changed:
            lines.append(f"{'case_id':<38}{'classification':<24}{'priority':<12}score")
        for c in self.changed:
            lines.append(
                f"{c.case_id:<38}{c.old.classification + ' -> ' + c.new.classification:<24}"
                f"{c.old.priority + ' -> ' + c.new.priority:<12}{c.old.score} -> {c.new.score}"
            )
        return "\n".join(lines)


def compare(
    reports: Sequence[CaseReport],
    timestamps_ms: Sequence[int],
    case_ids: Sequence[uuid.UUID],
    *,
    baseline: Rules,
    candidate: Rules,
    from_ms: int | None,
    skipped: int = 0,
) -> ReplaySummary:
    """Pure: each case with a report in range, under both rule sets, on the same inputs."""
    by_case: dict[uuid.UUID, list[CaseReport]] = {}
    in_range: dict[uuid.UUID, int] = {}
    for report, timestamp, case_id in zip(reports, timestamps_ms, case_ids, strict=True):
        by_case.setdefault(case_id, []).append(report)
        if from_ms is None or timestamp >= from_ms:
            in_range[case_id] = in_range.get(case_id, 0) + 1
    summary = ReplaySummary(
        baseline_version=baseline.version,
        baseline_digest=baseline.digest,
        candidate_version=candidate.version,
        candidate_digest=candidate.digest,
        reports_read=len(reports),
        reports_in_range=sum(in_range.values()),
        skipped=skipped,
        sealed_read=sum(1 for r in reports if r.sealed.opened),
    )
    for case_id in sorted(in_range, key=str):
        combined = by_case[case_id]
        summary.cases.append(
            CaseComparison(
                case_id=str(case_id),
                reports=len(combined),
                old=Outcome.of(triage_case(combined, baseline)),
                new=Outcome.of(triage_case(combined, candidate)),
            )
        )
    return summary


async def replay(
    *,
    bootstrap: str,
    topic: str,
    baseline: Rules,
    candidate: Rules,
    from_at: datetime | None,
    to_at: datetime | None,
    sealed: SealedReader,
) -> ReplaySummary:
    def ms(moment: datetime | None) -> int | None:
        return int(moment.astimezone(UTC).timestamp() * 1000) if moment else None

    recording = await read_received(bootstrap, topic, until_ms=ms(to_at))
    reports = [CaseReport(r.received, await sealed.read(r.received)) for r in recording.reports]
    return compare(
        reports,
        [r.timestamp_ms for r in recording.reports],
        [r.case_id for r in recording.reports],
        baseline=baseline,
        candidate=candidate,
        from_ms=ms(from_at),
        skipped=recording.skipped,
    )
