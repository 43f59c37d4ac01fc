"""Triage's pure rules: classification by age at the time of the abuse, and urgency.

This is the foundation rule set: age evidence is used strongest first, an unknown age means
presumed child, and any child among the survivors makes the case TF-CSEA. Urgency is a sum of
named factors; risk flags can only raise it.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import (
    AgeBasis,
    Classification,
    Priority,
    ReportReceivedData,
    ReportTriagedData,
    SurvivorFacts,
    UrgencyFactor,
)
from contracts.reports import RiskFlag

RULES_VERSION = "foundation-1"
ADULT_AGE = 18

RISK_FLAG_POINTS: dict[RiskFlag, int] = {
    RiskFlag.IMMINENT_DANGER: 100,
    RiskFlag.SELF_HARM: 100,
    RiskFlag.ONGOING_ABUSE: 80,
    RiskFlag.SEXTORTION_DEADLINE: 60,
    RiskFlag.PLANNED_MEETING: 60,
    RiskFlag.LIVE_STREAMED: 60,
    RiskFlag.OFFENDER_HAS_ACCESS: 40,
    RiskFlag.CONTENT_SPREADING: 40,
    RiskFlag.HONOUR_BASED_VIOLENCE_RISK: 40,
    RiskFlag.MULTIPLE_VICTIMS: 20,
}
CHILD_POINTS = 30
PRIORITY_THRESHOLDS: tuple[tuple[int, Priority], ...] = (
    (80, Priority.P1),
    (30, Priority.P2),
    (1, Priority.P3),
)


@dataclass(frozen=True)
class AgeFinding:
    age: int | None
    basis: AgeBasis

    @property
    def is_child(self) -> bool:
        """Unknown age is presumed child; an age range counts by its lower bound."""
        return self.age is None or self.age < ADULT_AGE


def survivor_age(survivor: SurvivorFacts) -> AgeFinding:
    if survivor.age_at_incident is not None:
        return AgeFinding(survivor.age_at_incident, AgeBasis.DATE_OF_BIRTH)
    if survivor.stated_age is not None:
        return AgeFinding(survivor.stated_age, AgeBasis.STATED_AGE)
    if survivor.age_range is not None:
        # The safer end for the child: a range straddling 18 is treated as a child.
        return AgeFinding(survivor.age_range.min, AgeBasis.AGE_RANGE)
    return AgeFinding(None, AgeBasis.UNKNOWN)


def classify(survivors: tuple[SurvivorFacts, ...]) -> tuple[Classification, AgeFinding]:
    """TF-CSEA if any survivor was (or may have been) a child at the time of the abuse."""
    findings = [survivor_age(s) for s in survivors] or [AgeFinding(None, AgeBasis.UNKNOWN)]
    children = [f for f in findings if f.is_child]
    if children:
        # The youngest known child decides; an unknown age outranks nothing known.
        known = [f for f in children if f.age is not None]
        decisive = min(known, key=lambda f: f.age or 0) if known else children[0]
        return Classification.TF_CSEA, decisive
    return Classification.TFGBV, min(findings, key=lambda f: f.age or 0)


def urgency(
    received: ReportReceivedData, classification: Classification
) -> tuple[int, Priority, tuple[UrgencyFactor, ...]]:
    """Score = sum of named factors; a report without an identified survivor is P4 unless raised."""
    factors = [
        UrgencyFactor(name=flag.value, points=RISK_FLAG_POINTS[flag], source_field="risk_flags")
        for flag in received.risk_flags
    ]
    if classification is Classification.TF_CSEA and received.survivors:
        factors.append(
            UrgencyFactor(name="child_survivor", points=CHILD_POINTS, source_field="survivors")
        )
    score = sum(f.points for f in factors)
    for threshold, priority in PRIORITY_THRESHOLDS:
        if score >= threshold:
            return score, priority, tuple(factors)
    return score, Priority.P3 if received.survivors else Priority.P4, tuple(factors)


def triage(received: ReportReceivedData) -> ReportTriagedData:
    classification, finding = classify(received.survivors)
    score, priority, factors = urgency(received, classification)
    return ReportTriagedData(
        report_id=received.report_id,
        classification=classification,
        presumed_child=finding.basis is AgeBasis.UNKNOWN,
        age_used=finding.age,
        age_basis=finding.basis,
        priority=priority,
        score=score,
        factors=factors,
        violence_types=received.categories,
        governorate=received.incident.governorate,
        language=received.language,
        police_referral_consent=received.police_referral_consent,
        rules_version=RULES_VERSION,
    )
