"""The foundation age rule and urgency, as pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from contracts.events import (
    AgeBasis,
    Classification,
    IncidentFacts,
    Priority,
    ReportReceivedData,
    SurvivorFacts,
)
from contracts.reports import AgeRange, Channel, RiskFlag
from services.triage.domain import triage


def received(*survivors: SurvivorFacts, flags: tuple[RiskFlag, ...] = ()) -> ReportReceivedData:
    return ReportReceivedData(
        report_id=uuid.uuid4(),
        partner_id="partner",
        channel=Channel.HOTLINE,
        received_at=datetime(2026, 11, 23, tzinfo=UTC),
        incident=IncidentFacts(),
        survivors=survivors or (SurvivorFacts(survivor_ref="s1", stated_age=15),),
        risk_flags=flags,
    )


def survivor(**kwargs: object) -> SurvivorFacts:
    return SurvivorFacts.model_validate({"survivor_ref": "s1", **kwargs})


@pytest.mark.parametrize(
    ("facts", "classification", "age", "basis"),
    [
        (survivor(stated_age=15), Classification.TF_CSEA, 15, AgeBasis.STATED_AGE),
        (survivor(stated_age=17), Classification.TF_CSEA, 17, AgeBasis.STATED_AGE),
        (survivor(stated_age=18), Classification.TFGBV, 18, AgeBasis.STATED_AGE),
        (survivor(), Classification.TF_CSEA, None, AgeBasis.UNKNOWN),
        # Minor at the incident, adult when reporting: the incident decides.
        (
            survivor(age_at_incident=16, stated_age=20),
            Classification.TF_CSEA,
            16,
            AgeBasis.DATE_OF_BIRTH,
        ),
        (
            survivor(age_range=AgeRange(min=16, max=20)),
            Classification.TF_CSEA,
            16,
            AgeBasis.AGE_RANGE,
        ),
        (
            survivor(age_range=AgeRange(min=19, max=25)),
            Classification.TFGBV,
            19,
            AgeBasis.AGE_RANGE,
        ),
    ],
)
def test_age_at_incident_decides(
    facts: SurvivorFacts, classification: Classification, age: int | None, basis: AgeBasis
) -> None:
    result = triage(received(facts))
    assert result.classification is classification
    assert result.age_used == age
    assert result.age_basis is basis
    assert result.presumed_child is (basis is AgeBasis.UNKNOWN)


def test_any_child_among_several_survivors_makes_it_tf_csea() -> None:
    adult = SurvivorFacts(survivor_ref="s1", stated_age=30)
    child = SurvivorFacts(survivor_ref="s2", stated_age=14)
    result = triage(received(adult, child))
    assert result.classification is Classification.TF_CSEA
    assert result.age_used == 14


def test_risk_flags_raise_priority_and_are_explained() -> None:
    plain = triage(received(survivor(stated_age=30)))
    danger = triage(received(survivor(stated_age=30), flags=(RiskFlag.IMMINENT_DANGER,)))
    assert plain.priority is Priority.P3
    assert danger.priority is Priority.P1
    assert [(f.name, f.source_field) for f in danger.factors] == [("imminent_danger", "risk_flags")]
    assert danger.score > plain.score


def test_report_without_survivor_is_information_only() -> None:
    report = received().model_copy(update={"survivors": ()})
    result = triage(report)
    assert result.priority is Priority.P4
    assert result.classification is Classification.TF_CSEA  # unknown age: presumed child
