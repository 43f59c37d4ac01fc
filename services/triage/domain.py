"""Triage's pure rules: classification by age at the time of the abuse, types of violence, and
an explainable, reproducible urgency, for one case's combined reports.

- Age (DOMAIN.md): the age at the abuse decides. Evidence is ranked, strongest first: date of
  birth with the incident date; date of birth with the report date when that already makes a
  child; stated age; age range; indicators (school grade, an age or "child" written in any of
  the four languages and three digit systems); files annotated as depicting a minor. No
  evidence, evidence that contradicts itself about childhood, or evidence that leaves the age
  unclear (a range straddling 18, an adult age today with no incident date) means presumed
  child, and the result says why. Any child among the survivors makes the case TF-CSEA.
- Reports of one case concern the same survivor(s) (intake links them): a survivor's evidence
  is pooled across reports by `survivor_ref`, so a later report can establish an age.
- Urgency is the sum of named factors, each counted once with every source that raised it;
  weights are never negative, so an added fact never lowers the score; thresholds and floors
  (an identified survivor, the source's own escalation) give the priority.
- The result is a function of (reports, rules, override) only: no clock, no randomness, so the
  same inputs and rules give the same bytes; `inputs_digest` pins the inputs.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cache
from typing import Any

from contracts.events import (
    AgeBasis,
    CaseReclassifiedData,
    Classification,
    PartnerAssessment,
    Priority,
    ReclassificationTrigger,
    ReportReceivedData,
    ReportTriagedData,
    SurvivorAgeFinding,
    SurvivorFacts,
    TriageOverrideInfo,
    UrgencyFactor,
    ViolenceLabel,
    canonical_json,
    more_urgent,
)
from contracts.reports import Language, RiskFlag, ViolenceType
from services.triage.rules import Factor, Rules, SourceValueRule, load_rules
from services.triage.terms import Prepared, TermMatcher, prepare, tokens

# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class SealedContent:
    """What triage reads, in memory only, from a report's sealed personal data.

    Never logged, never emitted: only which term lists matched (and a reported person's being
    under 18) reach the result.
    """

    opened: bool = False
    texts: tuple[str, ...] = ()
    reported_person_ages: tuple[int, ...] = ()


NOT_READ = SealedContent()

# Free-text places of the sealed canonical report that may describe what happened.
_TEXT_PATHS: tuple[tuple[str, ...], ...] = (
    ("narrative",),
    ("source", "additional_info"),
    ("source", "escalation_reason"),
)
_LIST_TEXT_FIELDS = {
    "survivors": "additional_info",
    "reported_persons": "additional_info",
    "files": "additional_info",
}


def read_sealed(personal: Mapping[str, Any]) -> SealedContent:
    """Pick the narrative texts and reported persons' ages out of the sealed report."""
    texts: list[str] = []
    for path in _TEXT_PATHS:
        node: Any = personal
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, str) and node.strip():
            texts.append(node)
    for list_name, text_field in _LIST_TEXT_FIELDS.items():
        for item in personal.get(list_name) or ():
            if isinstance(item, Mapping) and isinstance(item.get(text_field), str):
                texts.append(item[text_field])
    ages = tuple(
        p["age"]
        for p in personal.get("reported_persons") or ()
        if isinstance(p, Mapping) and isinstance(p.get("age"), int)
    )
    return SealedContent(opened=True, texts=tuple(texts), reported_person_ages=ages)


@dataclass(frozen=True)
class CaseReport:
    """One report of the case: what travelled in the clear, and what triage could unseal."""

    received: ReportReceivedData
    sealed: SealedContent = NOT_READ


def canonical_order(reports: Iterable[CaseReport]) -> list[CaseReport]:
    """Received order, one entry per report: the same set always combines the same way."""
    unique = {r.received.report_id: r for r in reports}
    return sorted(
        unique.values(), key=lambda r: (r.received.received_at, str(r.received.report_id))
    )


def inputs_digest(reports: Sequence[CaseReport], override: TriageOverrideInfo | None) -> str:
    """A digest of exactly what the rules saw: the received events (sealed part as ciphertext),
    whether the sealed part could be read, and the override in force."""
    document = {
        "reports": [
            {
                "received": r.received.model_dump(mode="json", exclude_defaults=True),
                "sealed_read": r.sealed.opened,
            }
            for r in canonical_order(reports)
        ],
        "override": (
            override.model_dump(
                mode="json",
                exclude={"superseded", "current_classification", "current_priority"},
            )
            if override
            else None
        ),
    }
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


# ---------------------------------------------------------------------------------------------
# Age


class Side(Enum):
    CHILD = "child"
    ADULT = "adult"
    UNCLEAR = "unclear"


@dataclass(frozen=True)
class Evidence:
    rank: int  # 0 = strongest
    basis: AgeBasis
    age: int | None
    side: Side
    description: str


RANK_DOB_AT_INCIDENT = 0
RANK_DOB_AT_REPORT_CHILD = 1
RANK_STATED = 2
RANK_RANGE = 3
RANK_INDICATOR = 4
RANK_DOB_AT_REPORT_ADULT = 5
RANK_CONTENT = 6

_NUMBER = re.compile(r"^(\d{1,3})\D{0,4}$")


def _number(word: str) -> int | None:
    match = _NUMBER.match(word)
    return int(match.group(1)) if match else None


def indicator_ages(text: str, rules: Rules) -> list[tuple[int | None, str]]:
    """Ages an indicator gives: a school grade ("پۆلی ٨", "grade 8", "8th grade"), an age with a
    year word ("١٥ ساڵ", "age 15"), or a word meaning "a child" (no age). Any digit system."""
    words = tokens(text)
    indicator = rules.source.indicators
    found: list[tuple[int | None, str]] = []
    used: set[int] = set()
    for match in rules.grade_words.find(words):
        for position in (match.end, match.start - 1):
            if 0 <= position < len(words) and position not in used:
                grade = _number(words[position])
                if grade is not None and 1 <= grade <= indicator.max_grade:
                    used.add(position)
                    age = grade + indicator.grade_age_offset
                    found.append((age, f"school grade {grade} (about {age})"))
                    break
    for match in rules.year_words.find(words):
        for position in (match.end, match.start - 1):
            if 0 <= position < len(words) and position not in used:
                years = _number(words[position])
                if years is not None and years <= 130:
                    used.add(position)
                    found.append((years, f"age {years} written in an indicator"))
                    break
    for minor in rules.minor_terms.find(words):
        found.append((None, f"says a child ({minor.language.value}: {minor.term})"))
    return found


def survivor_evidence(facts: SurvivorFacts, tag: str, rules: Rules) -> list[Evidence]:
    adult = rules.source.age.adult_age
    margin = rules.source.age.report_age_adult_margin
    found: list[Evidence] = []
    if facts.age_at_incident is not None:
        age = facts.age_at_incident
        found.append(
            Evidence(
                RANK_DOB_AT_INCIDENT,
                AgeBasis.DATE_OF_BIRTH,
                age,
                Side.CHILD if age < adult else Side.ADULT,
                f"date_of_birth: {age} at the incident ({tag})",
            )
        )
    if facts.age_at_report is not None:
        age = facts.age_at_report
        if age < adult:
            side, rank, note = Side.CHILD, RANK_DOB_AT_REPORT_CHILD, "so younger at the incident"
        elif age >= adult + margin:
            side, rank, note = Side.ADULT, RANK_DOB_AT_REPORT_ADULT, "incident date unknown"
        else:
            side, rank, note = (
                Side.UNCLEAR,
                RANK_DOB_AT_REPORT_ADULT,
                f"incident date unknown: may have been under {adult} then",
            )
        found.append(
            Evidence(
                rank,
                AgeBasis.DATE_OF_BIRTH_AT_REPORT,
                age,
                side,
                f"date_of_birth: {age} on the report day, {note} ({tag})",
            )
        )
    if facts.stated_age is not None:
        age = facts.stated_age
        found.append(
            Evidence(
                RANK_STATED,
                AgeBasis.STATED_AGE,
                age,
                Side.CHILD if age < adult else Side.ADULT,
                f"stated_age: {age} ({tag})",
            )
        )
    if facts.age_range is not None:
        low, high = facts.age_range.min, facts.age_range.max
        if high < adult:
            side, note = Side.CHILD, ""
        elif low >= adult:
            side, note = Side.ADULT, ""
        else:
            side, note = Side.UNCLEAR, f", straddles {adult}"
        found.append(
            Evidence(
                RANK_RANGE, AgeBasis.AGE_RANGE, low, side, f"age_range: {low}-{high}{note} ({tag})"
            )
        )
    for text in facts.indicators:
        for indicated, description in indicator_ages(text, rules):
            # An indicator can show a child; it never establishes an adult (safer for the child).
            side = Side.CHILD if indicated is None or indicated < adult else Side.UNCLEAR
            found.append(
                Evidence(
                    RANK_INDICATOR,
                    AgeBasis.INDICATOR,
                    indicated,
                    side,
                    f"indicator: {description} ({tag})",
                )
            )
    return found


def _evidence_order(e: Evidence) -> tuple[int, int, str]:
    return (e.rank, e.age if e.age is not None else -1, e.description)


def assess(survivor: str, evidence: Sequence[Evidence], rules: Rules) -> SurvivorAgeFinding:
    """One survivor's finding from all the evidence about them."""
    age_rules = rules.source.age
    ranked = sorted(evidence, key=_evidence_order)
    described = tuple(e.description for e in ranked)
    if not ranked:
        return SurvivorAgeFinding(
            survivor=survivor,
            child=True,
            presumed_child=True,
            age=None,
            basis=AgeBasis.UNKNOWN,
            confidence=age_rules.presumed_confidence,
            evidence=("no age evidence: presumed child",),
        )
    says_child = [e for e in ranked if e.side is Side.CHILD]
    says_adult = [e for e in ranked if e.side is Side.ADULT]
    strongest = ranked[0]
    if says_child:
        chosen = says_child[0]
        contradictory = bool(says_adult)
        return SurvivorAgeFinding(
            survivor=survivor,
            child=True,
            presumed_child=contradictory,
            age=chosen.age,
            basis=chosen.basis,
            confidence=(
                age_rules.presumed_confidence
                if contradictory
                else age_rules.confidence[chosen.basis]
            ),
            contradictory=contradictory,
            evidence=described,
        )
    if strongest.side is Side.ADULT:
        return SurvivorAgeFinding(
            survivor=survivor,
            child=False,
            presumed_child=False,
            age=strongest.age,
            basis=strongest.basis,
            confidence=age_rules.confidence[strongest.basis],
            evidence=described,
        )
    # The strongest evidence leaves the age unclear: presumed child until it is established.
    return SurvivorAgeFinding(
        survivor=survivor,
        child=True,
        presumed_child=True,
        age=strongest.age,
        basis=strongest.basis,
        confidence=age_rules.presumed_confidence,
        evidence=described,
    )


def _decisive(findings: Sequence[SurvivorAgeFinding]) -> SurvivorAgeFinding:
    children = [f for f in findings if f.child]
    if not children:
        return min(findings, key=lambda f: (f.age if f.age is not None else 0, f.survivor))
    for presumed in (False, True):
        group = [f for f in children if f.presumed_child is presumed]
        aged = [f for f in group if f.age is not None]
        if aged:
            return min(aged, key=lambda f: (f.age or 0, f.survivor))
        if group:
            return group[0]
    raise AssertionError("unreachable")  # pragma: no cover


def _age_note(classification: Classification, decisive: SurvivorAgeFinding) -> str:
    first = decisive.evidence[0] if decisive.evidence else decisive.basis.value
    if classification is Classification.TFGBV:
        return f"every survivor was an adult at the abuse; youngest: {first}"
    if decisive.contradictory:
        return (
            f"presumed child: the age evidence contradicts itself ({'; '.join(decisive.evidence)})"
        )
    if decisive.presumed_child and decisive.basis is AgeBasis.UNKNOWN:
        return "presumed child: no age evidence"
    if decisive.presumed_child:
        return f"presumed child: the age is unclear ({first})"
    return f"child at the abuse: {first}"


# ---------------------------------------------------------------------------------------------
# Labels, factors and their sources


@dataclass
class _Tally:
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
class _Signals:
    labels: _Tally = field(default_factory=_Tally)
    factors: _Tally = field(default_factory=_Tally)
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
                Evidence(rank, basis, None, Side.CHILD, f"{source}: {value} ({_tag(report)})")
            )


def _tag(report: uuid.UUID, survivor_ref: str | None = None) -> str:
    short = f"report {str(report)[:8]}"
    return f"{short} {survivor_ref}" if survivor_ref else short


def _collect(reports: Sequence[CaseReport], rules: Rules) -> _Signals:
    signals = _Signals()
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
        _scan_sealed(report, rules, signals)
    return signals


def _scan_sealed(report: CaseReport, rules: Rules, signals: _Signals) -> None:
    sealed, rid = report.sealed, report.received.report_id
    if not sealed.opened:
        return
    scan = _scan_texts(sealed.texts, rules)
    for violence, language in scan.violence:
        signals.labels.add(violence.value, f"narrative:{language.value}", rid)
    for flag, language in scan.risks:
        signals.factors.add(flag.value, f"narrative:{language.value}", rid)
    adult = rules.source.age.adult_age
    if any(age < adult for age in sealed.reported_person_ages):
        signals.child_on_child[f"reported person under {adult} ({_tag(rid)})"] = None


@dataclass(frozen=True)
class _Scan:
    violence: tuple[tuple[ViolenceType, Language], ...]
    risks: tuple[tuple[RiskFlag, Language], ...]


# A case is re-triaged on every new report: its earlier narratives are not scanned again.
# Keyed by digests, so the cache holds which term lists matched, never the text itself.
_SCANS: dict[tuple[str, str], _Scan] = {}
_MAX_SCANS = 10_000


def _scan_texts(texts: Sequence[str], rules: Rules) -> _Scan:
    key = (rules.digest, hashlib.sha256(canonical_json(list(texts))).hexdigest())
    cached = _SCANS.get(key)
    if cached is not None:
        return cached
    prepared = [prepare(text) for text in texts]
    scan = _Scan(
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
    if len(_SCANS) >= _MAX_SCANS:
        _SCANS.clear()
    _SCANS[key] = scan
    return scan


def _languages(matcher: TermMatcher, texts: Sequence[Prepared]) -> list[Language]:
    found = {language for text in texts for language in matcher.languages_found(text)}
    return sorted(found, key=lambda lang: lang.value)


def _survivor_findings(reports: Sequence[CaseReport], rules: Rules) -> list[SurvivorAgeFinding]:
    pooled: dict[str, list[Evidence]] = {}
    for report in reports:
        for facts in report.received.survivors:
            tag = _tag(report.received.report_id, facts.survivor_ref)
            pooled.setdefault(facts.survivor_ref, []).extend(survivor_evidence(facts, tag, rules))
    return [assess(ref, evidence, rules) for ref, evidence in pooled.items()]


# ---------------------------------------------------------------------------------------------
# Priority


def priority_for(
    score: int, *, identified_survivor: bool, escalated: bool, rules: Rules
) -> tuple[Priority, Priority | None, str]:
    """The priority, the floor in force (if any), and the reasoning in words."""
    rules_priority = rules.source.priority
    by_score = next(
        (
            p
            for p in (Priority.P1, Priority.P2, Priority.P3)
            if score >= rules_priority.thresholds[p]
        ),
        None,
    )
    if by_score is not None:
        basis = f"score {score} >= {rules_priority.thresholds[by_score]} ({by_score.value})"
    else:
        by_score = Priority.P4
        basis = f"score {score} below every threshold (P4)"
    priority, floor = by_score, None
    floors = []
    if identified_survivor:
        floors.append((rules_priority.identified_survivor_floor, "an identified survivor"))
    if escalated:
        floors.append((rules_priority.source_escalation_floor, "the source's escalation"))
    for level, why in floors:
        floor = level if floor is None else more_urgent(floor, level)
        if level.rank < priority.rank:
            priority = level
            basis += f"; raised to {level.value} by {why}"
    return priority, floor, basis


# ---------------------------------------------------------------------------------------------
# The case's result


def _factor(name: str, points: int, tally: _Tally, order: Sequence[uuid.UUID]) -> UrgencyFactor:
    sources = tuple(tally.sources[name])
    ranked_reports = sorted(tally.reports[name], key=lambda r: order.index(r))
    details = tuple(tally.details[name])
    return UrgencyFactor(
        name=name,
        points=points,
        source_field=sources[0],
        sources=sources,
        report_ids=tuple(ranked_reports),
        detail="; ".join(details) if details else None,
    )


def triage_case(
    reports: Iterable[CaseReport],
    rules: Rules,
    *,
    trigger_report_id: uuid.UUID | None = None,
    override: TriageOverrideInfo | None = None,
) -> ReportTriagedData:
    """The case's combined triage result: a pure function of its reports, rules and override,
    with the assessment its report's partner may be shown (`partner_assessment`)."""
    ordered = canonical_order(reports)
    if not ordered:
        raise ValueError("a case has at least one report")
    result = _case_result(ordered, rules, trigger_report_id=trigger_report_id, override=override)
    return result.model_copy(
        update={"partner_assessment": partner_assessment(ordered, result, rules, override)}
    )


def _case_result(
    ordered: Sequence[CaseReport],
    rules: Rules,
    *,
    trigger_report_id: uuid.UUID | None,
    override: TriageOverrideInfo | None,
) -> ReportTriagedData:
    """The rules over reports already in canonical order (at least one)."""
    order = [r.received.report_id for r in ordered]
    signals = _collect(ordered, rules)

    findings = _survivor_findings(ordered, rules)
    if signals.depicted:
        findings.append(assess("depicted", signals.depicted, rules))
    if signals.source_minor:
        findings.append(assess("source", signals.source_minor, rules))
    if not findings:
        findings.append(assess("unknown", (), rules))
    classification = (
        Classification.TF_CSEA if any(f.child for f in findings) else Classification.TFGBV
    )
    decisive = _decisive(findings)

    identified = any(r.received.survivors for r in ordered)
    survivor_children = [
        f for f in findings if f.child and f.survivor not in {"depicted", "source", "unknown"}
    ]
    if survivor_children:
        signals.factors.add(
            Factor.CHILD_SURVIVOR,
            "survivors",
            None,
            ", ".join(f"{f.survivor} ({f.basis.value})" for f in survivor_children),
        )
    very_young = rules.source.age.very_young_below
    for finding in findings:
        if finding.child and finding.age is not None and finding.age < very_young:
            signals.factors.add(
                Factor.VERY_YOUNG_CHILD,
                finding.basis.value,
                None,
                f"{finding.survivor} aged {finding.age} < {very_young}",
            )
    case_reports = dict.fromkeys(order)
    for report in ordered:
        case_reports.update(dict.fromkeys(report.received.linked_report_ids))
    if len(case_reports) > 1:
        signals.factors.add(
            Factor.REPEAT_REPORTS,
            "linked_report_ids" if len(order) == 1 else "case_reports",
            None,
            f"{len(case_reports)} reports on the case",
        )

    factors = sorted(
        (
            _factor(name, rules.points(name), signals.factors, order)
            for name in signals.factors.sources
        ),
        key=lambda f: (-f.points, f.name),
    )
    score = sum(f.points for f in factors)
    escalated = any(r.received.source_escalation for r in ordered)
    priority, floor, priority_basis = priority_for(
        score, identified_survivor=identified, escalated=escalated, rules=rules
    )
    labels = tuple(
        ViolenceLabel(type=v, sources=tuple(signals.labels.sources[v.value]))
        for v in ViolenceType
        if v.value in signals.labels.sources
    )
    child_on_child = classification is Classification.TF_CSEA and bool(signals.child_on_child)
    consent = [
        r.received.police_referral_consent
        for r in ordered
        if r.received.police_referral_consent is not None
    ]
    result = ReportTriagedData(
        report_id=trigger_report_id or order[-1],
        classification=classification,
        presumed_child=classification is Classification.TF_CSEA and decisive.presumed_child,
        age_used=decisive.age,
        age_basis=decisive.basis,
        priority=priority,
        score=score,
        factors=tuple(factors),
        violence_types=tuple(label.type for label in labels),
        governorate=next(
            (r.received.incident.governorate for r in ordered if r.received.incident.governorate),
            None,
        ),
        language=next((r.received.language for r in ordered if r.received.language), None),
        police_referral_consent=consent[-1] if consent else None,
        rules_version=rules.version,
        confidence=decisive.confidence,
        age_note=_age_note(classification, decisive),
        survivors=tuple(findings),
        child_on_child=child_on_child,
        child_on_child_basis=tuple(signals.child_on_child) if child_on_child else (),
        violence_labels=labels,
        priority_basis=priority_basis,
        priority_floor=floor,
        case_report_ids=tuple(order),
        sealed_data_read=any(r.sealed.opened for r in ordered),
        inputs_digest=inputs_digest(ordered, override),
        rules_digest=rules.digest,
    )
    return apply_override(result, override) if override else result


# ---------------------------------------------------------------------------------------------
# What a partner may be shown


def own_reports(reports: Iterable[CaseReport], partner_id: str) -> list[CaseReport]:
    """The partner's own reports of a case, as they would be had no other partner reported:
    links to reports not among them are left out, since they may be another partner's and the
    rules count linked reports (`repeat_reports`)."""
    mine = [r for r in reports if r.received.partner_id == partner_id]
    ids = {r.received.report_id for r in mine}

    def alone(report: CaseReport) -> CaseReport:
        links = report.received.linked_report_ids
        if all(link in ids for link in links):
            return report
        kept = tuple(link for link in links if link in ids)
        reasons = report.received.link_reasons if kept else ()
        received = report.received.model_copy(
            update={"linked_report_ids": kept, "link_reasons": reasons}
        )
        return replace(report, received=received)

    return [alone(r) for r in mine]


def partner_assessment(
    ordered: Sequence[CaseReport],
    result: ReportTriagedData,
    rules: Rules,
    override: TriageOverrideInfo | None = None,
) -> PartnerAssessment | None:
    """The classification and priority drawn only from the reports of the partner whose report
    caused `result` (None if that report is not among `ordered`).

    A partner must never learn that another partner reported the same person, so what it is
    shown is what the rules make of its own reports alone. The supervisor's override counts
    only when every report of the case is the partner's: it was decided on the whole case."""
    partner = next(
        (r.received.partner_id for r in ordered if r.received.report_id == result.report_id), None
    )
    if partner is None:
        return None
    own = own_reports(ordered, partner)
    only_its_own = len(own) == len(ordered)
    if only_its_own and all(a is b for a, b in zip(own, ordered, strict=True)):
        # Nothing of anyone else's went into the case's result: it is the partner's own.
        source = result
    else:
        source = _case_result(
            own, rules, trigger_report_id=None, override=override if only_its_own else None
        )
    return PartnerAssessment(
        partner_id=partner, classification=source.classification, priority=source.priority
    )


def apply_override(result: ReportTriagedData, override: TriageOverrideInfo) -> ReportTriagedData:
    """The supervisor's values, unless evidence since the override is more protective.

    An override holds until the rules' own result becomes more protective than it was when the
    supervisor decided (a child where they computed an adult, a more urgent priority): new
    evidence is then not silently ignored, and the result says which field was superseded.
    """
    superseded: list[str] = []
    classification = result.classification
    if override.classification is not None:
        newly_child = (
            result.classification is Classification.TF_CSEA
            and override.computed_classification is Classification.TFGBV
            and override.classification is Classification.TFGBV
        )
        if newly_child:
            superseded.append("classification")
        else:
            classification = override.classification
    priority = result.priority
    if override.priority is not None:
        rules_now = result.priority.rank
        if rules_now < override.computed_priority.rank and rules_now < override.priority.rank:
            superseded.append("priority")
        else:
            priority = override.priority
    info = override.model_copy(
        update={
            "superseded": tuple(superseded),
            "current_classification": result.classification,
            "current_priority": result.priority,
        }
    )
    note = f"supervisor override ({override.reason_code.value})"
    if superseded:
        note += f", superseded for {', '.join(superseded)} by later evidence"
    return result.model_copy(
        update={
            "classification": classification,
            "presumed_child": result.presumed_child and classification is result.classification,
            "priority": priority,
            "priority_basis": f"{result.priority_basis}; {note}: {priority.value}",
            "age_note": (
                result.age_note
                if classification is result.classification
                else f"{note}: {classification.value} (rules: {result.age_note})"
            ),
            "override": info,
        }
    )


def reclassification(
    previous: ReportTriagedData | None,
    current: ReportTriagedData,
    *,
    trigger: ReclassificationTrigger,
) -> CaseReclassifiedData | None:
    """The change event when classification or priority moved, with old, new and why."""
    if previous is None or (
        previous.classification is current.classification and previous.priority is current.priority
    ):
        return None
    reasons = []
    if trigger is ReclassificationTrigger.OVERRIDE and current.override is not None:
        reasons.append(f"supervisor override ({current.override.reason_code.value})")
    if previous.classification is not current.classification:
        reasons.append(
            f"classification {previous.classification.value} -> "
            f"{current.classification.value}: {current.age_note}"
        )
    if previous.priority is not current.priority:
        before = {f.name: f.points for f in previous.factors}
        after = {f.name: f.points for f in current.factors}
        added = [f"{name} (+{points})" for name, points in after.items() if name not in before]
        removed = [f"{name} (-{points})" for name, points in before.items() if name not in after]
        change = ", ".join(added + removed)
        reasons.append(
            f"priority {previous.priority.value} -> {current.priority.value}: score "
            f"{previous.score} -> {current.score}" + (f" ({change})" if change else "")
        )
    return CaseReclassifiedData(
        report_id=current.report_id,
        old_classification=previous.classification,
        new_classification=current.classification,
        old_priority=previous.priority,
        new_priority=current.priority,
        reason="; ".join(reasons),
        rules_version=current.rules_version,
        trigger=trigger,
        old_score=previous.score,
        new_score=current.score,
        inputs_digest=current.inputs_digest,
    )


@cache
def shipped_rules() -> Rules:
    return load_rules(None)


def triage(received: ReportReceivedData, rules: Rules | None = None) -> ReportTriagedData:
    """One report on its own (a case's first report)."""
    return triage_case([CaseReport(received)], rules or shipped_rules())
