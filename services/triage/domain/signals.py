"""What a case's reports signal, each signal with every source and report that raised it: the
types of violence (labels), the urgency factors, child-on-child abuse, and age evidence from
the source's own fields. Ticked fields and a source's vocabulary are read through the rules'
tables; sealed narratives are scanned for the rules' term lists in the four languages.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from contracts.events import AgeBasis, canonical_json
from contracts.reports import Language, RiskFlag, ViolenceType
from services.triage.domain.age import RANK_CONTENT, RANK_INDICATOR, Evidence, Side
from services.triage.domain.reports import CaseReport, report_tag
from services.triage.domain.rules import Factor, Rules, SourceValueRule
from services.triage.domain.terms import Prepared, TermMatcher, prepare


@dataclass
class Tally:
    """Keys (labels, factors) with every source and report that raised them, in order."""

    sources: dict[str, dict[str, None]] = field(default_factory=dict)
    reports: dict[str, dict[uuid.UUID, None]] = field(default_factory=dict)
    details: dict[str, dict[str, None]] = field(default_factory=dict)

    def add(
        self, key: str, source: str, report: uuid.UUID | None = None, detail: str | None = None
    ) -> None:
        self.sources.setdefault(key, {})[source] = None
        self.reports.setdefault(key, {})
        self.details.setdefault(key, {})
        if report is not None:
            self.reports[key][report] = None
        if detail:
            self.details[key][detail] = None


@dataclass
class Signals:
    """What the reports raise, before the rules weigh it."""

    labels: Tally = field(default_factory=Tally)
    factors: Tally = field(default_factory=Tally)
    child_on_child: dict[str, None] = field(default_factory=dict)
    depicted: list[Evidence] = field(default_factory=list)
    source_minor: list[Evidence] = field(default_factory=list)

    def apply(
        self,
        rule: SourceValueRule,
        source: str,
        report: uuid.UUID,
        value: str,
        *,
        depicted: bool = False,
    ) -> None:
        for violence in rule.violence_types:
            self.labels.add(violence.value, source, report)
        for flag in rule.risk_flags:
            self.factors.add(flag.value, source, report, value)
        if rule.very_young_child:
            self.factors.add(Factor.VERY_YOUNG_CHILD, source, report, value)
        if rule.child_on_child:
            self.child_on_child[f"{source}: {value}"] = None
        if rule.implies_minor:
            target = self.depicted if depicted else self.source_minor
            basis = AgeBasis.CONTENT_DEPICTS_MINOR if depicted else AgeBasis.INDICATOR
            rank = RANK_CONTENT if depicted else RANK_INDICATOR
            target.append(
                Evidence(rank, basis, None, Side.CHILD, f"{source}: {value} ({report_tag(report)})")
            )


@dataclass(frozen=True)
class Scan:
    """Which term lists a report's sealed texts matched, in which languages."""

    violence: tuple[tuple[ViolenceType, Language], ...]
    risks: tuple[tuple[RiskFlag, Language], ...]


class ScanCache:
    """Scans already made, so that a case re-triaged on every new report does not scan its
    earlier narratives again. Keyed by digests of the rules and of the texts: it holds which
    term lists matched, never the text itself. Bounded: full, it starts afresh."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._scans: dict[tuple[str, str], Scan] = {}

    def __len__(self) -> int:
        return len(self._scans)

    def scan(self, texts: Sequence[str], rules: Rules) -> Scan:
        key = (rules.digest, hashlib.sha256(canonical_json(list(texts))).hexdigest())
        cached = self._scans.get(key)
        if cached is not None:
            return cached
        scan = scan_texts(texts, rules)
        if len(self._scans) >= self.max_entries:
            self._scans.clear()
        self._scans[key] = scan
        return scan


def scan_texts(texts: Sequence[str], rules: Rules) -> Scan:
    prepared = [prepare(text) for text in texts]
    return Scan(
        violence=tuple(
            (violence, language)
            for violence, matcher in rules.violence_terms.items()
            for language in _languages(matcher, prepared)
        ),
        risks=tuple(
            (flag, language)
            for flag, matcher in rules.risk_terms.items()
            for language in _languages(matcher, prepared)
        ),
    )


def _languages(matcher: TermMatcher, texts: Sequence[Prepared]) -> list[Language]:
    found = {language for text in texts for language in matcher.languages_found(text)}
    return sorted(found, key=lambda lang: lang.value)


def collect_signals(reports: Sequence[CaseReport], rules: Rules, scans: ScanCache) -> Signals:
    """Every signal of the reports, in their order."""
    signals = Signals()
    for report in reports:
        data, rid = report.received, report.received.report_id
        for violence in data.categories:
            signals.labels.add(violence.value, "categories", rid)
        for flag in data.risk_flags:
            signals.factors.add(flag.value, "risk_flags", rid)
        if len(data.survivors) > 1:
            signals.factors.add(
                RiskFlag.MULTIPLE_VICTIMS.value,
                "survivors",
                rid,
                f"{len(data.survivors)} survivors in one report",
            )
        if data.source_escalation:
            signals.factors.add(Factor.SOURCE_ESCALATION, "source_escalation", rid)
        tables: tuple[tuple[str, Iterable[str], Mapping[str, SourceValueRule], bool], ...] = (
            ("reported_person_relationships", data.reported_person_relationships,
             rules.source.relationships, False),
            ("source_incident_types", data.source_incident_types,
             rules.source.incident_types, False),
            ("source_annotations", data.source_annotations, rules.source.annotations, False),
            ("source_file_annotations", data.source_file_annotations,
             rules.source.file_annotations, True),
        )  # fmt: skip
        for source, values, table, depicted in tables:
            for value in values:
                rule = table.get(value)
                if rule is not None:
                    signals.apply(rule, source, rid, value, depicted=depicted)
        if data.content_depicts_minor:
            signals.apply(
                rules.source.content_depicts_minor,
                "content_depicts_minor",
                rid,
                "files annotated as depicting a minor",
                depicted=True,
            )
        _scan_sealed(report, rules, signals, scans)
    return signals


def _scan_sealed(report: CaseReport, rules: Rules, signals: Signals, scans: ScanCache) -> None:
    sealed, rid = report.sealed, report.received.report_id
    if not sealed.opened:
        return
    scan = scans.scan(sealed.texts, rules)
    for violence, language in scan.violence:
        signals.labels.add(violence.value, f"narrative:{language.value}", rid)
    for flag, language in scan.risks:
        signals.factors.add(flag.value, f"narrative:{language.value}", rid)
    adult = rules.source.age.adult_age
    if any(age < adult for age in sealed.reported_person_ages):
        signals.child_on_child[f"reported person under {adult} ({report_tag(rid)})"] = None
