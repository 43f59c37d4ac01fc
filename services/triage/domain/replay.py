"""Comparing a candidate rule set with the baseline on the same past reports (`ocsea triage
replay`): each case that received a report in the range, under both rule sets, and the summary
printed. A case's reports before the range count as evidence (as they did live). Supervisors'
overrides are not replayed: the comparison is of rules against rules.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from contracts.events import ReportTriagedData
from services.triage.domain.case import triage_case
from services.triage.domain.reports import CaseReport
from services.triage.domain.rules import Rules


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
