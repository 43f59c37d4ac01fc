"""The classification and urgency rules, case by case (DOMAIN.md; shipped sample rules).

Ages arrive at triage in two ways: as numbers (intake has already normalised "١٥ ساڵ" to 15:
those rows go through intake's own `parse_years`, so the three digit systems are covered end
to end), and as free-text survivor indicators that triage parses itself ("پۆلی ٨" with
Arabic-Indic digits, "پۆلی ۸" with Extended Arabic-Indic digits, "grade 8").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from contracts.events import (
    AgeBasis,
    AgeConfidence,
    Classification,
    Priority,
    SurvivorFacts,
)
from contracts.reports import AgeRange, RiskFlag, ViolenceType
from services.intake.domain.normalise import parse_years
from services.triage.domain.case import triage_case
from services.triage.domain.reports import CaseReport, SealedContent
from services.triage.domain.rules import shipped_rules
from testkit.triage_events import received, survivor

CSAM_TYPE = "Child Pornography (possession, manufacture, and distribution)"
ENTICEMENT = "Online Enticement of Children for Sexual Acts"
TRAFFICKING = "Child Sex Trafficking"
TOURISM = "Child Sex Tourism"
MOLESTATION = "Child Sexual Molestation"
MISLEADING_DOMAIN = "Misleading Domain Name"
MISLEADING_WORDS = "Misleading Words or Digital Images on the Internet"
UNSOLICITED = "Unsolicited Obscene Material Sent to a Child"


def years_between(born: date, on: date) -> int:
    """Completed years (what intake derives from a date of birth and the incident date)."""
    return on.year - born.year - int((on.month, on.day) < (born.month, born.day))


@dataclass(frozen=True)
class Report:
    survivors: tuple[SurvivorFacts, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    narrative: str | None = None
    reported_person_ages: tuple[int, ...] = ()


def one(*survivors: SurvivorFacts, narrative: str | None = None, **fields: Any) -> tuple[Report]:
    return (Report(survivors, fields, narrative),)


@dataclass(frozen=True)
class Row:
    id: str
    reports: tuple[Report, ...]
    classification: Classification
    age: int | None
    basis: AgeBasis
    presumed: bool = False
    confidence: AgeConfidence | None = None
    contradictory: bool = False
    child_on_child: bool = False
    priority: Priority | None = None
    factors: frozenset[str] = frozenset()  # each must be present
    labels: frozenset[ViolenceType] | None = None  # exactly these, when given
    label_sources: tuple[tuple[ViolenceType, str], ...] = ()


def stated(text: str) -> SurvivorFacts:
    return survivor(stated_age=parse_years(text))


def indicated(*texts: str) -> SurvivorFacts:
    return survivor(indicators=texts)


TF, GBV = Classification.TF_CSEA, Classification.TFGBV
B = AgeBasis
HIGH, MEDIUM, LOW = AgeConfidence.HIGH, AgeConfidence.MEDIUM, AgeConfidence.LOW

ROWS = [
    # --- ages in the three digit systems -----------------------------------------------------
    Row("stated 15, Western digits", one(stated("15")), TF, 15, B.STATED_AGE, confidence=HIGH),
    Row("stated ١٥ سنة, Arabic-Indic", one(stated("١٥ سنة")), TF, 15, B.STATED_AGE),
    Row("stated ۱۵ ساڵ, Extended Arabic-Indic", one(stated("۱۵ ساڵ")), TF, 15, B.STATED_AGE),
    Row("stated ۲۰ ساڵ, Extended: adult", one(stated("۲۰ ساڵ")), GBV, 20, B.STATED_AGE),
    Row("stated ١٨ سنة: adult on the day", one(stated("١٨ سنة")), GBV, 18, B.STATED_AGE),
    Row("indicator پۆلی ٨ (Arabic-Indic)", one(indicated("پۆلی ٨")), TF, 13, B.INDICATOR,
        confidence=MEDIUM),
    Row("indicator پۆلی ۸ (Extended)", one(indicated("پۆلی ۸")), TF, 13, B.INDICATOR),
    Row("indicator grade 8 (Western)", one(indicated("school grade 8")), TF, 13, B.INDICATOR),
    Row("indicator 8th grade", one(indicated("8th grade")), TF, 13, B.INDICATOR),
    Row("indicator الصف ٩", one(indicated("الصف ٩")), TF, 14, B.INDICATOR),
    Row("indicator pola 6 (Kurmanji): very young", one(indicated("pola 6")), TF, 11,
        B.INDICATOR, factors=frozenset({"very_young_child", "child_survivor"})),
    Row("indicator تەمەنی ١٦ ساڵ", one(indicated("تەمەنی ١٦ ساڵ")), TF, 16, B.INDICATOR),
    Row("indicator ۱۷ سنة", one(indicated("۱۷ سنة")), TF, 17, B.INDICATOR),
    Row("indicator says a child (kmr zarok)", one(indicated("zarok e")), TF, None, B.INDICATOR),
    # An indicator never establishes an adult: the age stays unclear, presumed child.
    Row("indicator looks 25 years old", one(indicated("looks 25 years old")), TF, 25,
        B.INDICATOR, presumed=True, confidence=LOW),
    # --- date of birth: the age at the abuse, not today --------------------------------------
    Row("DOB: 17 at the incident, 20 now",
        one(survivor(age_at_incident=years_between(date(2006, 3, 10), date(2023, 7, 1)))),
        TF, 17, B.DATE_OF_BIRTH, confidence=HIGH),
    Row("DOB: the day before the 18th birthday",
        one(survivor(age_at_incident=years_between(date(2005, 11, 24), date(2023, 11, 23)))),
        TF, 17, B.DATE_OF_BIRTH),
    Row("DOB: on the 18th birthday",
        one(survivor(age_at_incident=years_between(date(2005, 11, 23), date(2023, 11, 23)))),
        GBV, 18, B.DATE_OF_BIRTH),
    Row("DOB, no incident date, 16 today", one(survivor(age_at_report=16)), TF, 16,
        B.DATE_OF_BIRTH_AT_REPORT),
    Row("DOB, no incident date, 19 today: maybe a child then", one(survivor(age_at_report=19)),
        TF, 19, B.DATE_OF_BIRTH_AT_REPORT, presumed=True, confidence=LOW),
    Row("DOB, no incident date, 30 today", one(survivor(age_at_report=30)), GBV, 30,
        B.DATE_OF_BIRTH_AT_REPORT, confidence=MEDIUM),
    # --- ranges -------------------------------------------------------------------------------
    Row("range 16-20 straddles 18", one(survivor(age_range=AgeRange(min=16, max=20))), TF, 16,
        B.AGE_RANGE, presumed=True, confidence=LOW),
    Row("range 17-18 straddles 18", one(survivor(age_range=AgeRange(min=17, max=18))), TF, 17,
        B.AGE_RANGE, presumed=True),
    Row("range 13-15", one(survivor(age_range=AgeRange(min=13, max=15))), TF, 13, B.AGE_RANGE,
        confidence=MEDIUM),
    Row("range 19-25", one(survivor(age_range=AgeRange(min=19, max=25))), GBV, 19, B.AGE_RANGE),
    Row("stated 19 settles a straddling range",
        one(survivor(stated_age=19, age_range=AgeRange(min=16, max=20))), GBV, 19, B.STATED_AGE),
    # --- contradictory ------------------------------------------------------------------------
    Row("DOB 16 at the incident vs stated 20",
        one(survivor(age_at_incident=16, stated_age=20)), TF, 16, B.DATE_OF_BIRTH,
        presumed=True, contradictory=True, confidence=LOW),
    Row("range 19-25 vs stated 17",
        one(survivor(stated_age=17, age_range=AgeRange(min=19, max=25))), TF, 17, B.STATED_AGE,
        presumed=True, contradictory=True),
    Row("stated 25 vs grade 9", one(survivor(stated_age=25, indicators=("grade 9",))), TF, 14,
        B.INDICATOR, presumed=True, contradictory=True),
    Row("two reports disagree: 16 then 24",
        (Report((survivor(stated_age=16),)), Report((survivor(stated_age=24),))), TF, 16,
        B.STATED_AGE, presumed=True, contradictory=True,
        factors=frozenset({"repeat_reports"})),
    # --- no age at all ------------------------------------------------------------------------
    Row("survivor without any age", one(survivor()), TF, None, B.UNKNOWN, presumed=True,
        confidence=LOW, priority=Priority.P2),
    Row("no survivor described", (Report(fields={"survivors": ()}),), TF, None, B.UNKNOWN,
        presumed=True, priority=Priority.P4),
    Row("a later report establishes an adult age",
        (Report((survivor(),)), Report((survivor(stated_age=27),))), GBV, 27, B.STATED_AGE),
    # --- several survivors ---------------------------------------------------------------------
    Row("adult 30 and child 14", one(survivor("s1", stated_age=30), survivor("s2", stated_age=14)),
        TF, 14, B.STATED_AGE, factors=frozenset({"multiple_victims", "child_survivor"})),
    Row("adults 30 and 22", one(survivor("s1", stated_age=30), survivor("s2", stated_age=22)),
        GBV, 22, B.STATED_AGE, factors=frozenset({"multiple_victims"})),
    Row("adult 30 and one of unknown age", one(survivor("s1", stated_age=30), survivor("s2")),
        TF, None, B.UNKNOWN, presumed=True),
    Row("children 15 and 9", one(survivor("s1", stated_age=15), survivor("s2", stated_age=9)),
        TF, 9, B.STATED_AGE, factors=frozenset({"very_young_child", "multiple_victims"})),
    # --- child-on-child --------------------------------------------------------------------------
    Row("minorToMinorInteraction",
        one(stated("14"), source_annotations=("minorToMinorInteraction",)), TF, 14, B.STATED_AGE,
        child_on_child=True),
    Row("reported peer of a child", one(stated("15"), reported_person_relationships=("peer",)),
        TF, 15, B.STATED_AGE, child_on_child=True),
    Row("reported peer of an adult", one(stated("25"), reported_person_relationships=("peer",)),
        GBV, 25, B.STATED_AGE, child_on_child=False),
    Row("reported person aged 15 (sealed data)",
        (Report((survivor(stated_age=14),), reported_person_ages=(15,)),), TF, 14, B.STATED_AGE,
        child_on_child=True),
    # --- every CyberTipline incident type ----------------------------------------------------
    Row("CT: child sexual abuse material, no victim described",
        one(survivors=(), source_incident_types=(CSAM_TYPE,)), TF, None, B.INDICATOR,
        priority=Priority.P4, labels=frozenset({ViolenceType.CSAM}),
        label_sources=((ViolenceType.CSAM, "source_incident_types"),)),
    Row("CT: online enticement, victim 14", one(stated("14"), source_incident_types=(ENTICEMENT,)),
        TF, 14, B.STATED_AGE, labels=frozenset({ViolenceType.GROOMING})),
    Row("CT: child sex trafficking, victim 16",
        one(stated("16"), source_incident_types=(TRAFFICKING,)), TF, 16, B.STATED_AGE,
        priority=Priority.P1, factors=frozenset({"ongoing_abuse"})),
    Row("CT: child sex tourism", one(survivor(), source_incident_types=(TOURISM,)), TF, None,
        B.INDICATOR, factors=frozenset({"planned_meeting"}), priority=Priority.P1),
    Row("CT: child sexual molestation, victim 12",
        one(stated("12"), source_incident_types=(MOLESTATION,)), TF, 12, B.STATED_AGE,
        factors=frozenset({"offender_has_access", "very_young_child"}), priority=Priority.P1),
    Row("CT: misleading domain name, nothing else",
        one(survivors=(), source_incident_types=(MISLEADING_DOMAIN,)), TF, None, B.UNKNOWN,
        presumed=True, priority=Priority.P4, labels=frozenset()),
    Row("CT: misleading words or images, adult recipient 30",
        one(stated("30"), source_incident_types=(MISLEADING_WORDS,)), GBV, 30, B.STATED_AGE,
        priority=Priority.P3),
    Row("CT: unsolicited obscene material, adult-looking recipient",
        one(stated("19"), source_incident_types=(UNSOLICITED,)), TF, None, B.INDICATOR,
        labels=frozenset({ViolenceType.HARASSMENT})),
    Row("CT: escalateToHighPriority sets a P1 floor on an adult's case",
        one(stated("30"), source_escalation=True), GBV, 30, B.STATED_AGE, priority=Priority.P1,
        factors=frozenset({"source_escalation"})),
    Row("CT: sadistic online exploitation annotation",
        one(stated("15"), source_annotations=("sadisticOnlineExploitation", "spam")), TF, 15,
        B.STATED_AGE, factors=frozenset({"self_harm"}), priority=Priority.P1,
        labels=frozenset({ViolenceType.SEXTORTION})),
    Row("files depicting a minor, adult survivor 25", one(stated("25"), content_depicts_minor=True),
        TF, None, B.CONTENT_DEPICTS_MINOR, labels=frozenset({ViolenceType.CSAM})),
    Row("file annotated infant", one(survivors=(), source_file_annotations=("infant", "viral")),
        TF, None, B.CONTENT_DEPICTS_MINOR,
        factors=frozenset({"very_young_child", "content_spreading"})),
    # --- adult survivors: TFGBV ---------------------------------------------------------------
    Row("adult 24, image-based abuse, honour risk",
        one(stated("24"), categories=(ViolenceType.IMAGE_BASED_SEXUAL_ABUSE,),
            risk_flags=(RiskFlag.HONOUR_BASED_VIOLENCE_RISK,)),
        GBV, 24, B.STATED_AGE, priority=Priority.P2,
        labels=frozenset({ViolenceType.IMAGE_BASED_SEXUAL_ABUSE})),
    Row("adult 35, Sorani narrative: blackmail and honour",
        one(stated("35"), narrative="هەڕەشەی بڵاوکردنەوەی وێنەکانی کرد، ترسی لە ناموس هەیە"),
        GBV, 35, B.STATED_AGE, priority=Priority.P2,
        factors=frozenset({"honour_based_violence_risk"}),
        labels=frozenset({ViolenceType.SEXTORTION}),
        label_sources=((ViolenceType.SEXTORTION, "narrative:ckb"),)),
    Row("adult 19, Kurmanji narrative: suicidal",
        one(stated("19"), narrative="behsa xwekuştinê dike"), GBV, 19, B.STATED_AGE,
        priority=Priority.P1, factors=frozenset({"self_harm"})),
    Row("adult 28, Arabic narrative: extortion and hacking",
        one(stated("28"), narrative="تعرضت للابتزاز بعد اختراق حسابها"), GBV, 28, B.STATED_AGE,
        labels=frozenset({ViolenceType.SEXTORTION, ViolenceType.HACKING}),
        label_sources=((ViolenceType.HACKING, "narrative:ar"),)),
    Row("adult 40, intimate partner: no access factor",
        one(stated("40"), reported_person_relationships=("intimate_partner",)), GBV, 40,
        B.STATED_AGE, priority=Priority.P3),
    Row("child 15, English narrative: sextortion deadline",
        one(stated("15"), narrative="He threatened to share her nude photos by tonight"),
        TF, 15, B.STATED_AGE, priority=Priority.P1,
        factors=frozenset({"sextortion_deadline", "child_survivor"}),
        labels=frozenset({ViolenceType.SEXTORTION, ViolenceType.IMAGE_BASED_SEXUAL_ABUSE})),
]  # fmt: skip


def case_reports(row: Row) -> list[CaseReport]:
    reports = []
    for minutes, report in enumerate(row.reports):
        fields = dict(report.fields)
        survivors = fields.pop("survivors", report.survivors)
        data = received(minutes=minutes, **fields).model_copy(update={"survivors": survivors})
        sealed = (
            SealedContent(
                opened=True,
                texts=(report.narrative,) if report.narrative else (),
                reported_person_ages=report.reported_person_ages,
            )
            if report.narrative or report.reported_person_ages
            else SealedContent()
        )
        reports.append(CaseReport(data, sealed))
    return reports


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) >= 40
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_classification(row: Row) -> None:
    result = triage_case(case_reports(row), shipped_rules())
    assert result.classification is row.classification, result.age_note
    assert (result.age_used, result.age_basis) == (row.age, row.basis), result.survivors
    assert result.presumed_child is row.presumed, result.age_note
    assert result.child_on_child is row.child_on_child, result.child_on_child_basis
    if row.confidence is not None:
        assert result.confidence is row.confidence
    decisive = [f for f in result.survivors if (f.age, f.basis) == (row.age, row.basis)]
    assert any(f.contradictory is row.contradictory for f in decisive)
    if row.priority is not None:
        assert result.priority is row.priority, (result.score, result.factors)
    assert row.factors <= {f.name for f in result.factors}, result.factors
    if row.labels is not None:
        assert set(result.violence_types) == row.labels
    sources = {(label.type, s) for label in result.violence_labels for s in label.sources}
    assert set(row.label_sources) <= sources, result.violence_labels


def test_every_factor_names_its_points_and_sources() -> None:
    for row in ROWS:
        result = triage_case(case_reports(row), shipped_rules())
        assert result.score == sum(f.points for f in result.factors)
        for factor in result.factors:
            assert factor.points == shipped_rules().points(factor.name)
            assert factor.sources
            assert factor.source_field == factor.sources[0]
        # The case's reports, each one of them, are in the result.
        assert len(result.case_report_ids) == len(row.reports)
        assert all(isinstance(r, uuid.UUID) for r in result.case_report_ids)
