"""Builders of received reports (`report.received`'s data), the input of triage, for the tests of
triage and of everything downstream of it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events import IncidentFacts, ReportReceivedData, SurvivorFacts
from contracts.reports import Channel, Governorate, RiskFlag

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
