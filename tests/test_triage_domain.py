"""The single-report entry point's basic behaviour. The rules' full coverage is in tests/triage/;
the builders of received reports are in `testkit.triage_events`."""

from __future__ import annotations

from contracts.events import AgeBasis, Classification, IncidentFacts, Priority
from contracts.reports import Governorate, RiskFlag
from services.triage.domain.case import triage
from testkit.triage_events import received


def test_one_report_is_triaged_with_the_shipped_rules() -> None:
    result = triage(received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))
    assert result.classification is Classification.TF_CSEA
    assert (result.age_used, result.age_basis) == (15, AgeBasis.STATED_AGE)
    assert result.priority is Priority.P1  # child (30) + sextortion deadline (60)
    assert result.rules_version == "kri-sample-2026.1"
    assert result.inputs_digest
    assert result.rules_digest


def test_report_without_survivor_is_information_only() -> None:
    result = triage(received().model_copy(update={"survivors": ()}))
    assert result.priority is Priority.P4
    assert result.classification is Classification.TF_CSEA  # unknown age: presumed child
    assert result.presumed_child


def test_the_incident_district_travels_with_its_governorate() -> None:
    in_koya = received(incident=IncidentFacts(governorate=Governorate.ERBIL, district="erbil.koya"))
    placeless = received(incident=IncidentFacts(district="erbil.koya"))

    assert (triage(in_koya).governorate, triage(in_koya).district) == (
        Governorate.ERBIL,
        "erbil.koya",
    )
    # A district without its governorate is not used: routing matches districts within one.
    assert (triage(placeless).governorate, triage(placeless).district) == (None, None)
