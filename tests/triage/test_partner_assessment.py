"""What a partner may be shown of a shared case: the rules over its own reports alone, never a
sign that another partner reported the same person (`partner_assessment`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.events import (
    Classification,
    OverrideReason,
    PartnerAssessment,
    Priority,
    ReportReceivedData,
    TriageOverrideInfo,
)
from contracts.reports import RiskFlag
from services.triage.domain.case import own_reports, partner_assessment, triage_case
from services.triage.domain.reports import CaseReport, canonical_order
from services.triage.domain.rules import shipped_rules
from testkit.triage_events import received, survivor

RULES = shipped_rules()
HOTLINE, NGO = "partner-hotline", "partner-ngo"


def hotline_child_in_danger() -> ReportReceivedData:
    """Alone: a 15-year-old with a sextortion deadline, P1."""
    return received(
        survivor(stated_age=15), flags=(RiskFlag.SEXTORTION_DEADLINE,), partner_id=HOTLINE
    )


def ngo_report(*links: ReportReceivedData, minutes: int = 5, **fields: Any) -> ReportReceivedData:
    """Alone: a survivor stated to be 19, several victims (20 points), TFGBV P3; with one
    more report counted (`repeat_reports`, 15) it would be P2."""
    return received(
        survivor(stated_age=19),
        flags=(RiskFlag.MULTIPLE_VICTIMS,),
        partner_id=NGO,
        minutes=minutes,
        linked_report_ids=tuple(r.report_id for r in links),
        link_reasons=("same_survivor",) if links else (),
        **fields,
    )


def alone(*reports: ReportReceivedData) -> tuple[Classification, Priority]:
    result = triage_case([CaseReport(r) for r in reports], RULES)
    return result.classification, result.priority


def shown(assessment: PartnerAssessment | None) -> tuple[Classification, Priority]:
    assert assessment is not None
    return assessment.classification, assessment.priority


def test_a_lone_partners_assessment_is_the_cases_result() -> None:
    report = hotline_child_in_danger()
    result = triage_case([CaseReport(report)], RULES)
    assert result.partner_assessment == PartnerAssessment(
        partner_id=HOTLINE, classification=Classification.TF_CSEA, priority=Priority.P1
    )


def test_a_partner_joining_anothers_case_is_assessed_as_if_alone() -> None:
    first = hotline_child_in_danger()
    joined = ngo_report(first)
    result = triage_case(
        [CaseReport(first), CaseReport(joined)], RULES, trigger_report_id=joined.report_id
    )
    # Inside the mechanism the case combines both: a child, P1.
    assert (result.classification, result.priority) == (Classification.TF_CSEA, Priority.P1)
    assert result.partner_assessment is not None
    assert result.partner_assessment.partner_id == NGO
    # The NGO is shown what its report gives alone: not the child, not the hotline's flag,
    # and not the hotline's report counted as a repeat report (that would make it P2).
    lone = ngo_report()
    assert alone(lone) == (Classification.TFGBV, Priority.P3)
    assert shown(result.partner_assessment) == alone(lone)
    assert alone(joined) == (Classification.TFGBV, Priority.P2)  # what the link would add


def test_the_earlier_partner_is_assessed_on_its_own_reports_only() -> None:
    first = hotline_child_in_danger()
    joined = ngo_report(first)
    # The hotline's second report links to both; only the hotline's own pair counts for it.
    again = received(
        survivor(stated_age=15), partner_id=HOTLINE, minutes=9, linked_report_ids=(
            first.report_id, joined.report_id)
    )  # fmt: skip
    result = triage_case([CaseReport(r) for r in (first, joined, again)], RULES)
    assert result.report_id == again.report_id
    assert result.partner_assessment is not None
    assert result.partner_assessment.partner_id == HOTLINE
    own_pair = again.model_copy(update={"linked_report_ids": (first.report_id,)})
    assert shown(result.partner_assessment) == alone(first, own_pair)


def test_a_partners_own_reports_combine_and_keep_their_links_to_each_other() -> None:
    first = hotline_child_in_danger()
    mine = ngo_report(first)
    second = ngo_report(first, mine, minutes=8)
    reports = [CaseReport(r) for r in (first, mine, second)]
    own = own_reports(reports, NGO)
    assert [r.received.report_id for r in own] == [mine.report_id, second.report_id]
    assert own[0].received.linked_report_ids == ()
    assert own[0].received.link_reasons == ()
    assert own[1].received.linked_report_ids == (mine.report_id,)
    result = triage_case(reports, RULES, trigger_report_id=second.report_id)
    # Its two reports count as repeat reports of each other (20 + 15): P2, still TFGBV.
    assert shown(result.partner_assessment) == (Classification.TFGBV, Priority.P2)
    assert shown(result.partner_assessment) == alone(ngo_report(), ngo_report(mine, minutes=8))


def test_links_outside_the_case_are_left_out_even_for_a_lone_partner() -> None:
    # The report also matched a case elsewhere: whose report that is, triage cannot tell.
    elsewhere = uuid.uuid4()
    report = received(survivor(stated_age=19), flags=(RiskFlag.MULTIPLE_VICTIMS,),
                      partner_id=NGO, linked_report_ids=(elsewhere,))  # fmt: skip
    result = triage_case([CaseReport(report)], RULES)
    assert result.priority is Priority.P2  # the case counts the linked report
    assert shown(result.partner_assessment) == (Classification.TFGBV, Priority.P3)


def test_without_a_survivor_a_link_to_another_partner_would_turn_p4_into_p3() -> None:
    first = hotline_child_in_danger()
    account_only = received(partner_id=NGO, minutes=3, linked_report_ids=(first.report_id,))
    account_only = account_only.model_copy(update={"survivors": ()})
    result = triage_case(
        [CaseReport(first), CaseReport(account_only)],
        RULES,
        trigger_report_id=account_only.report_id,
    )
    lone = account_only.model_copy(update={"linked_report_ids": ()})
    assert alone(lone)[1] is Priority.P4
    assert shown(result.partner_assessment) == alone(lone)


def supervisor_override(priority: Priority, computed: Priority) -> TriageOverrideInfo:
    return TriageOverrideInfo(
        override_id=uuid.uuid4(),
        by="supervisor",
        at=datetime(2026, 11, 23, 10, tzinfo=UTC),
        reason_code=OverrideReason.RISK_REASSESSED,
        priority=priority,
        computed_classification=Classification.TF_CSEA,
        computed_priority=computed,
    )


def test_an_override_is_shown_only_to_a_partner_whose_reports_are_the_whole_case() -> None:
    report = received(survivor(stated_age=15), partner_id=HOTLINE)  # P2 by the rules
    lowered = supervisor_override(Priority.P3, Priority.P2)
    result = triage_case([CaseReport(report)], RULES, override=lowered)
    assert result.priority is Priority.P3
    assert shown(result.partner_assessment) == (Classification.TF_CSEA, Priority.P3)

    # Decided on a case another partner also reported: the NGO is shown its own rules' view.
    joined = ngo_report(report)
    shared = triage_case([CaseReport(report), CaseReport(joined)], RULES, override=lowered)
    assert shared.report_id == joined.report_id
    assert shown(shared.partner_assessment) == alone(ngo_report())


def test_a_result_for_a_report_outside_the_reports_has_no_assessment() -> None:
    report = CaseReport(hotline_child_in_danger())
    result = triage_case([report], RULES, trigger_report_id=uuid.uuid4())
    assert result.partner_assessment is None
    assert partner_assessment(canonical_order([report]), result, RULES) is None


def test_the_assessment_carries_classification_and_priority_only() -> None:
    # Nothing personal, and nothing from the case (score, factors, other reports) travels in it.
    assert set(PartnerAssessment.model_fields) == {"partner_id", "classification", "priority"}


def test_the_assessment_is_reproducible() -> None:
    first = hotline_child_in_danger()
    joined = ngo_report(first)
    reports = [CaseReport(first), CaseReport(joined)]
    once = triage_case(reports, RULES, trigger_report_id=joined.report_id)
    again = triage_case(list(reversed(reports)), RULES, trigger_report_id=joined.report_id)
    assert once.model_dump_json() == again.model_dump_json()
