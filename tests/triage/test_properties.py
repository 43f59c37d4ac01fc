"""Properties of the rules, over generated cases (Hypothesis).

- Adding any risk factor (a flag, a relationship, a source annotation or incident type, a
  file tag, the source's escalation, a narrative term, another linked report) never lowers the
  score or the priority.
- Removing age evidence never turns TF-CSEA into TFGBV. "Removing" is read as the rules must
  honour it: making a survivor's age unknown (all of their evidence gone), or dropping a piece
  of evidence that says "adult". Dropping a piece that says "child" can of course leave an
  adult (a 16 and a 24 contradict each other: presumed child; without the 16 the survivor is
  24), and so can dropping a piece that only makes the age unclear.
- Identical inputs and rules give identical results, byte for byte, whatever order the case's
  reports are given in and however often the rules are loaded; the digest tells inputs apart.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.events import (
    Classification,
    IncidentFacts,
    ReportReceivedData,
    SurvivorFacts,
)
from contracts.reports import AgeRange, Channel, RiskFlag, ViolenceType
from services.triage.domain.case import triage_case
from services.triage.domain.reports import CaseReport, SealedContent
from services.triage.domain.rules import load_rules, shipped_rules

RULES = shipped_rules()
FRESH_RULES = load_rules(None)  # loaded again: a rule set is a value, not an object
ADULT = RULES.source.age.adult_age
MARGIN = RULES.source.age.report_age_adult_margin

INDICATORS = [
    "پۆلی ٨", "پۆلی ۸", "grade 11", "الصف ٦", "pola 9", "١٦ ساڵ", "age 25", "zarok",
    "looks about 30 years old", "university", "قاصر",
]  # fmt: skip
NARRATIVES = [
    "He threatened to share her photos by tonight",
    "هەڕەشەی بڵاوکردنەوەی وێنەکانی کرد",
    "تعرضت للابتزاز وتفكر بالانتحار",
    "behsa xwekuştinê dike",
    "nothing in particular",
    "ناموس",
]
RELATIONSHIPS = ["household", "family", "teacher", "peer", "stranger", "online_only", "other"]
ANNOTATIONS = ["sextortion", "csamSolicitation", "minorToMinorInteraction", "spam",
               "sadisticOnlineExploitation", "somethingNew"]  # fmt: skip
INCIDENT_TYPES = [*RULES.source.incident_types, "An incident type nobody configured"]
FILE_TAGS = ["viral", "liveStreaming", "infant", "generativeAi", "potentialMeme"]
ages = st.integers(min_value=0, max_value=90)


def subset(values: list[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(st.sampled_from(values), max_size=3, unique=True).map(tuple)


# Built once: strategies made inside a draw are rebuilt (and re-validated) on every example.
MAYBE_AGE = st.none() | ages
RANGES = st.none() | ages.flatmap(
    lambda low: st.integers(low, low + 10).map(lambda high: AgeRange(min=low, max=high))
)
SURVIVOR_INDICATORS = st.lists(st.sampled_from(INDICATORS), max_size=2).map(tuple)
SUBSETS = {
    "categories": subset(list(ViolenceType)),
    "risk_flags": subset(list(RiskFlag)),
    "source_incident_types": subset(INCIDENT_TYPES),
    "source_annotations": subset(ANNOTATIONS),
    "source_file_annotations": subset(FILE_TAGS),
    "reported_person_relationships": subset(RELATIONSHIPS),
}
TEXTS = st.lists(st.sampled_from(NARRATIVES), max_size=2).map(tuple)
PERSON_AGES = st.lists(ages, max_size=2).map(tuple)


def survivors(ref: str) -> st.SearchStrategy[SurvivorFacts]:
    return st.builds(
        SurvivorFacts,
        survivor_ref=st.just(ref),
        age_at_incident=MAYBE_AGE,
        age_at_report=MAYBE_AGE,
        stated_age=MAYBE_AGE,
        age_range=RANGES,
        indicators=SURVIVOR_INDICATORS,
    )


SURVIVORS = [survivors(f"s{i + 1}") for i in range(3)]


@st.composite
def reports(draw: st.DrawFn, index: int) -> CaseReport:
    count = draw(st.integers(0, 3))
    data = ReportReceivedData.model_validate(
        {
            # Distinct per report: one report id is one report (a redelivery, never new facts).
            "report_id": uuid.UUID(int=(index << 64) + draw(st.integers(1, 2**64 - 1))),
            "partner_id": "partner",
            "channel": Channel.HOTLINE,
            "received_at": datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=index),
            "incident": IncidentFacts(),
            "survivors": tuple(draw(SURVIVORS[i]) for i in range(count)),
            "source_escalation": draw(st.booleans()),
            "content_depicts_minor": draw(st.booleans()),
            **{name: draw(strategy) for name, strategy in SUBSETS.items()},
        }
    )
    opened = draw(st.booleans())
    sealed = (
        SealedContent(opened=True, texts=draw(TEXTS), reported_person_ages=draw(PERSON_AGES))
        if opened
        else SealedContent()
    )
    return CaseReport(data, sealed)


@st.composite
def cases(draw: st.DrawFn) -> list[CaseReport]:
    return [draw(reports(i)) for i in range(draw(st.integers(1, 3)))]


def _update(report: CaseReport, **changes: Any) -> CaseReport:
    return CaseReport(report.received.model_copy(update=changes), report.sealed)


def _append(report: CaseReport, field: str, value: Any) -> CaseReport:
    current = getattr(report.received, field)
    return _update(report, **{field: current if value in current else (*current, value)})


@st.composite
def added_risk(draw: st.DrawFn, case: list[CaseReport]) -> list[CaseReport]:
    """The same case with one more risk factor in one of its reports."""
    index = draw(st.integers(0, len(case) - 1))
    report = case[index]
    kind = draw(
        st.sampled_from(
            ["flag", "relationship", "annotation", "incident", "file", "escalation", "narrative",
             "linked"]
        )
    )  # fmt: skip
    if kind == "flag":
        report = _append(report, "risk_flags", draw(st.sampled_from(list(RiskFlag))))
    elif kind == "relationship":
        report = _append(
            report, "reported_person_relationships", draw(st.sampled_from(RELATIONSHIPS))
        )
    elif kind == "annotation":
        report = _append(report, "source_annotations", draw(st.sampled_from(ANNOTATIONS)))
    elif kind == "incident":
        report = _append(report, "source_incident_types", draw(st.sampled_from(INCIDENT_TYPES)))
    elif kind == "file":
        report = _append(report, "source_file_annotations", draw(st.sampled_from(FILE_TAGS)))
    elif kind == "escalation":
        report = _update(report, source_escalation=True)
    elif kind == "narrative":
        sealed = report.sealed
        text = draw(st.sampled_from(NARRATIVES))
        report = CaseReport(
            report.received,
            SealedContent(True, (*sealed.texts, text), sealed.reported_person_ages),
        )
    else:
        report = _append(report, "linked_report_ids", uuid.UUID(int=draw(st.integers(1, 2**64))))
    return [report if i == index else r for i, r in enumerate(case)]


PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(data=st.data())
def test_adding_a_risk_factor_never_lowers_the_score_or_priority(data: st.DataObject) -> None:
    case = data.draw(cases())
    more = data.draw(added_risk(case))
    before, after = triage_case(case, RULES), triage_case(more, RULES)
    assert after.score >= before.score, (before.factors, after.factors)
    assert after.priority.rank <= before.priority.rank


def _without_age(facts: SurvivorFacts) -> SurvivorFacts:
    return SurvivorFacts(survivor_ref=facts.survivor_ref)


@PROPERTY
@given(data=st.data())
def test_making_ages_unknown_never_turns_tf_csea_into_tfgbv(data: st.DataObject) -> None:
    case = data.draw(cases())
    refs = sorted({s.survivor_ref for r in case for s in r.received.survivors})
    forgotten = set(data.draw(st.lists(st.sampled_from(refs), unique=True))) if refs else set()
    less = [
        _update(
            r,
            survivors=tuple(
                _without_age(s) if s.survivor_ref in forgotten else s for s in r.received.survivors
            ),
        )
        for r in case
    ]
    if triage_case(case, RULES).classification is Classification.TF_CSEA:
        assert triage_case(less, RULES).classification is Classification.TF_CSEA


def _adult_fields(facts: SurvivorFacts) -> list[str]:
    """The pieces of a survivor's evidence that, alone, say "adult at the abuse"."""
    found = []
    if facts.age_at_incident is not None and facts.age_at_incident >= ADULT:
        found.append("age_at_incident")
    if facts.stated_age is not None and facts.stated_age >= ADULT:
        found.append("stated_age")
    if facts.age_range is not None and facts.age_range.min >= ADULT:
        found.append("age_range")
    if facts.age_at_report is not None and facts.age_at_report >= ADULT + MARGIN:
        found.append("age_at_report")
    return found


@PROPERTY
@given(data=st.data())
def test_dropping_adult_evidence_never_turns_tf_csea_into_tfgbv(data: st.DataObject) -> None:
    case = data.draw(cases())
    pieces = [
        (i, j, name)
        for i, r in enumerate(case)
        for j, s in enumerate(r.received.survivors)
        for name in _adult_fields(s)
    ]
    if not pieces or triage_case(case, RULES).classification is not Classification.TF_CSEA:
        return
    i, j, name = data.draw(st.sampled_from(pieces))
    survivors_i = list(case[i].received.survivors)
    survivors_i[j] = survivors_i[j].model_copy(update={name: None})
    less = [_update(r, survivors=tuple(survivors_i)) if k == i else r for k, r in enumerate(case)]
    assert triage_case(less, RULES).classification is Classification.TF_CSEA


@PROPERTY
@given(case=cases(), order=st.randoms(use_true_random=False))
def test_identical_inputs_and_rules_give_identical_bytes(
    case: list[CaseReport], order: Any
) -> None:
    shuffled = list(case)
    order.shuffle(shuffled)
    first = triage_case(case, RULES).model_dump_json()
    assert triage_case(shuffled, RULES).model_dump_json() == first
    assert triage_case(case, FRESH_RULES).model_dump_json() == first


@PROPERTY
@given(case=cases(), flag=st.sampled_from(list(RiskFlag)))
def test_the_digest_tells_different_inputs_apart(case: list[CaseReport], flag: RiskFlag) -> None:
    changed = [_append(case[0], "risk_flags", flag), *case[1:]]
    same_flags = flag in case[0].received.risk_flags
    digests = {triage_case(c, RULES).inputs_digest for c in (case, changed)}
    assert len(digests) == (1 if same_flags else 2)
