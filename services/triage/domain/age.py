"""Age at the time of the abuse (DOMAIN.md): the evidence about each survivor, ranked, and the
finding it gives.

Evidence is ranked, strongest first: date of birth with the incident date; date of birth with
the report date when that already makes a child; stated age; age range; indicators (school
grade, an age or "child" written in any of the four languages and three digit systems); files
annotated as depicting a minor. No evidence, evidence that contradicts itself about childhood,
or evidence that leaves the age unclear (a range straddling 18, an adult age today with no
incident date) means presumed child, and the result says why. A survivor's evidence is pooled
across the case's reports by `survivor_ref`, so a later report can establish an age.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from contracts.events import AgeBasis, Classification, SurvivorAgeFinding, SurvivorFacts
from services.triage.domain.reports import CaseReport, report_tag
from services.triage.domain.rules import Rules
from services.triage.domain.terms import tokens


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


# Findings about no named survivor: files depicting a minor, the source's own word, nothing.
DEPICTED, SOURCE, UNKNOWN = "depicted", "source", "unknown"
NOT_A_SURVIVOR = frozenset({DEPICTED, SOURCE, UNKNOWN})

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


def decisive_finding(findings: Sequence[SurvivorAgeFinding]) -> SurvivorAgeFinding:
    """The finding the case's age rests on: the youngest established child, else the youngest
    presumed child; with no child, the youngest adult."""
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


def age_note(classification: Classification, decisive: SurvivorAgeFinding) -> str:
    """The classification's reason in words."""
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


def survivor_findings(reports: Sequence[CaseReport], rules: Rules) -> list[SurvivorAgeFinding]:
    """Each survivor's finding, from the evidence of every report that names them."""
    pooled: dict[str, list[Evidence]] = {}
    for report in reports:
        for facts in report.received.survivors:
            tag = report_tag(report.received.report_id, facts.survivor_ref)
            pooled.setdefault(facts.survivor_ref, []).extend(survivor_evidence(facts, tag, rules))
    return [assess(ref, evidence, rules) for ref, evidence in pooled.items()]
