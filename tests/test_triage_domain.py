"""Builders of received reports for triage tests (imported by other suites too), and the
single-report entry point's basic behaviour. The rules' full coverage is in tests/triage/."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import (
    AgeBasis,
    Classification,
    IncidentFacts,
    Priority,
    ReportReceivedData,
    SurvivorFacts,
)
from contracts.reports import Channel, Governorate, RiskFlag
from services.triage.domain.case import triage

BASE_TIME = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def received(
    *survivors: SurvivorFacts, flags: tuple[RiskFlag, ...] = (), **fields: Any
) -> ReportReceivedData:
    """A received report; one 15-year-old survivor unless survivors are given.

    `fields` sets any other ReportReceivedData field; `minutes` shifts `received_at`.
    """
    minutes = fields.pop("minutes", 0)
    data: dict[str, Any] = {
        "report_id": uuid.uuid4(),
        "partner_id": "partner",
        "channel": Channel.HOTLINE,
        "received_at": BASE_TIME + timedelta(minutes=minutes),
        "incident": IncidentFacts(governorate=Governorate.ERBIL),
        "survivors": survivors or (SurvivorFacts(survivor_ref="s1", stated_age=15),),
        "risk_flags": flags,
        **fields,
    }
    return ReportReceivedData.model_validate(data)


def survivor(ref: str = "s1", **facts: Any) -> SurvivorFacts:
    return SurvivorFacts.model_validate({"survivor_ref": ref, **facts})


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
