"""Re-triage on combined evidence, reclassification events, supervisors' overrides, replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from contracts.events import (
    Classification,
    OverrideReason,
    Priority,
    ReclassificationTrigger,
    TriageOverrideInfo,
)
from contracts.reports import RiskFlag
from services.triage.domain.case import triage_case
from services.triage.domain.reclassification import reclassification
from services.triage.domain.replay import compare
from services.triage.domain.reports import CaseReport
from services.triage.domain.rules import SAMPLE_RULES, load_rules, shipped_rules
from testkit.triage_events import received, survivor

RULES = shipped_rules()


def test_a_younger_age_reclassifies_with_old_new_and_why() -> None:
    first = received(survivor(stated_age=22))
    second = received(survivor(stated_age=16), minutes=5)
    before = triage_case([CaseReport(first)], RULES)
    after = triage_case([CaseReport(first), CaseReport(second)], RULES)
    assert (before.classification, before.priority) == (Classification.TFGBV, Priority.P3)
    assert after.classification is Classification.TF_CSEA
    assert after.report_id == second.report_id
    assert after.case_report_ids == (first.report_id, second.report_id)
    change = reclassification(before, after, trigger=ReclassificationTrigger.NEW_REPORT)
    assert change is not None
    assert (change.old_classification, change.new_classification) == (
        Classification.TFGBV,
        Classification.TF_CSEA,
    )
    assert (change.old_priority, change.new_priority) == (Priority.P3, Priority.P2)
    assert "stated_age: 16" in change.reason
    assert "child_survivor (+30)" in change.reason
    assert change.inputs_digest == after.inputs_digest


def test_a_new_risk_factor_raises_priority_and_an_unchanged_case_emits_nothing() -> None:
    first = received(survivor(stated_age=15))
    same = received(survivor(stated_age=15), minutes=1)
    danger = received(survivor(stated_age=15), minutes=2, flags=(RiskFlag.IMMINENT_DANGER,))
    base = triage_case([CaseReport(first)], RULES)
    unchanged = triage_case([CaseReport(first), CaseReport(same)], RULES)
    # A second report adds `repeat_reports` points, not enough to change priority here.
    assert unchanged.score > base.score
    assert reclassification(base, unchanged, trigger=ReclassificationTrigger.NEW_REPORT) is None
    raised = triage_case([CaseReport(r) for r in (first, same, danger)], RULES)
    change = reclassification(unchanged, raised, trigger=ReclassificationTrigger.NEW_REPORT)
    assert change is not None
    assert (change.old_priority, change.new_priority) == (Priority.P2, Priority.P1)
    assert "imminent_danger (+100)" in change.reason


def test_a_later_report_establishing_an_adult_age_reclassifies_to_tfgbv() -> None:
    first = received(survivor())
    second = received(survivor(stated_age=31), minutes=3)
    before = triage_case([CaseReport(first)], RULES)
    after = triage_case([CaseReport(first), CaseReport(second)], RULES)
    assert before.presumed_child
    assert after.classification is Classification.TFGBV
    change = reclassification(before, after, trigger=ReclassificationTrigger.NEW_REPORT)
    assert change is not None
    assert change.new_classification is Classification.TFGBV


def override(**fields: object) -> TriageOverrideInfo:
    return TriageOverrideInfo.model_validate(
        {
            "override_id": uuid.uuid4(),
            "by": "supervisor",
            "at": datetime(2026, 11, 23, 10, tzinfo=UTC),
            "reason_code": OverrideReason.RISK_REASSESSED,
            **fields,
        }
    )


def test_an_override_holds_and_is_explained() -> None:
    report = received(survivor(stated_age=15), flags=(RiskFlag.IMMINENT_DANGER,))
    computed = triage_case([CaseReport(report)], RULES)
    assert computed.priority is Priority.P1
    lowered = override(
        priority=Priority.P3,
        computed_classification=computed.classification,
        computed_priority=computed.priority,
    )
    result = triage_case([CaseReport(report)], RULES, override=lowered)
    assert result.priority is Priority.P3
    assert result.classification is Classification.TF_CSEA
    assert result.score == computed.score  # the factors stay the rules' own
    assert result.override is not None
    assert result.override.current_priority is Priority.P1
    assert result.override.superseded == ()
    assert "supervisor override (risk_reassessed)" in (result.priority_basis or "")
    assert result.inputs_digest != computed.inputs_digest
    change = reclassification(computed, result, trigger=ReclassificationTrigger.OVERRIDE)
    assert change is not None
    assert change.reason.startswith("supervisor override (risk_reassessed)")
    # Another report with no new risk: the override still holds.
    again = received(survivor(stated_age=15), minutes=1)
    later = triage_case([CaseReport(report), CaseReport(again)], RULES, override=lowered)
    assert later.priority is Priority.P3


def test_later_evidence_more_protective_than_the_override_supersedes_it() -> None:
    adult = received(survivor(stated_age=25))
    computed = triage_case([CaseReport(adult)], RULES)
    to_adult = override(
        classification=Classification.TFGBV,
        priority=Priority.P4,
        reason_code=OverrideReason.AGE_ESTABLISHED,
        computed_classification=computed.classification,
        computed_priority=computed.priority,
    )
    assert triage_case([CaseReport(adult)], RULES, override=to_adult).priority is Priority.P4
    child = received(survivor("s2", stated_age=12), minutes=1, flags=(RiskFlag.SELF_HARM,))
    result = triage_case([CaseReport(adult), CaseReport(child)], RULES, override=to_adult)
    assert result.classification is Classification.TF_CSEA
    assert result.priority is Priority.P1
    assert result.override is not None
    assert result.override.superseded == ("classification", "priority")


def test_replay_compares_two_rule_sets_on_the_same_inputs(tmp_path: Path) -> None:
    honour = (RiskFlag.HONOUR_BASED_VIOLENCE_RISK,)
    reports = [
        received(survivor(stated_age=15), flags=honour),  # 30 + 40 = 70: P2, 30 + 60: P1
        received(survivor(stated_age=30), flags=honour),  # 40: P2 either way
        received(survivor(stated_age=15)),  # 30: P2 either way
        received(survivor(stated_age=14), flags=honour),  # outside the range
    ]
    cases = [uuid.uuid4() for _ in reports]
    text = SAMPLE_RULES.read_text(encoding="utf-8")
    candidate_file = tmp_path / "candidate.toml"
    candidate_file.write_text(
        text.replace("honour_based_violence_risk = 40", "honour_based_violence_risk = 60").replace(
            'version = "kri-sample-2026.1"', 'version = "kri-sample-2026.2"'
        ),
        encoding="utf-8",
    )
    summary = compare(
        [CaseReport(r) for r in reports],
        [1_000, 2_000, 3_000, 500],
        cases,
        baseline=RULES,
        candidate=load_rules(candidate_file),
        from_ms=1_000,
    )
    assert summary.reports_in_range == 3
    assert summary.priority_transitions == {"P2 -> P1": 1, "P2 -> P2": 2}
    assert summary.classification_transitions == {"TF-CSEA -> TF-CSEA": 2, "TFGBV -> TFGBV": 1}
    assert [c.case_id for c in summary.changed] == [str(cases[0])]
    assert (summary.changed[0].old.score, summary.changed[0].new.score) == (70, 90)
    text_out = summary.as_text()
    assert f"{cases[0]}" in text_out
    assert "P2 -> P1" in text_out
    assert str(cases[3]) not in text_out
