"""Urgency: the sum of named factors, each counted once with every source that raised it, and
the priority it gives.

Weights are never negative, so an added fact never lowers the score; thresholds and floors (an
identified survivor, the source's own escalation) give the priority, and the result says how.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.events import Priority, SurvivorAgeFinding, UrgencyFactor, more_urgent
from services.triage.domain.age import NOT_A_SURVIVOR
from services.triage.domain.reports import CaseReport
from services.triage.domain.rules import Factor, Rules
from services.triage.domain.signals import Tally


def add_case_factors(
    factors: Tally,
    ordered: Sequence[CaseReport],
    findings: Sequence[SurvivorAgeFinding],
    rules: Rules,
) -> None:
    """Add the factors of the case as a whole to the reports' own: a child survivor, a very
    young child, repeated reports."""
    survivor_children = [f for f in findings if f.child and f.survivor not in NOT_A_SURVIVOR]
    if survivor_children:
        factors.add(
            Factor.CHILD_SURVIVOR,
            "survivors",
            None,
            ", ".join(f"{f.survivor} ({f.basis.value})" for f in survivor_children),
        )
    very_young = rules.source.age.very_young_below
    for finding in findings:
        if finding.child and finding.age is not None and finding.age < very_young:
            factors.add(
                Factor.VERY_YOUNG_CHILD,
                finding.basis.value,
                None,
                f"{finding.survivor} aged {finding.age} < {very_young}",
            )
    order = [r.received.report_id for r in ordered]
    case_reports = dict.fromkeys(order)
    for report in ordered:
        case_reports.update(dict.fromkeys(report.received.linked_report_ids))
    if len(case_reports) > 1:
        factors.add(
            Factor.REPEAT_REPORTS,
            "linked_report_ids" if len(order) == 1 else "case_reports",
            None,
            f"{len(case_reports)} reports on the case",
        )


def _factor(name: str, points: int, tally: Tally, order: Sequence[uuid.UUID]) -> UrgencyFactor:
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


def weighed_factors(
    factors: Tally, order: Sequence[uuid.UUID], rules: Rules
) -> tuple[UrgencyFactor, ...]:
    """Every factor raised, with its points, heaviest first."""
    return tuple(
        sorted(
            (_factor(name, rules.points(name), factors, order) for name in factors.sources),
            key=lambda f: (-f.points, f.name),
        )
    )


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


@dataclass(frozen=True)
class Urgency:
    factors: tuple[UrgencyFactor, ...]
    score: int
    priority: Priority
    floor: Priority | None
    basis: str


def urgency(ordered: Sequence[CaseReport], factors: Tally, rules: Rules) -> Urgency:
    """The case's urgency from every factor raised (`factors`, with the case's own added)."""
    weighed = weighed_factors(factors, [r.received.report_id for r in ordered], rules)
    score = sum(f.points for f in weighed)
    priority, floor, basis = priority_for(
        score,
        identified_survivor=any(r.received.survivors for r in ordered),
        escalated=any(r.received.source_escalation for r in ordered),
        rules=rules,
    )
    return Urgency(weighed, score, priority, floor, basis)
