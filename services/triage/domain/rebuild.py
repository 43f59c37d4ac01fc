"""A case's triage state folded back from the topics, after Redis lost it; and how an input's
events are settled when some of them are already on Kafka.

Kafka holds everything triage keeps per case: the received reports (both lanes' received
topics) and every event triage published (both lanes' triaged topics: results,
reclassifications, overrides). Folding them gives back a case's reports, its history, its
current result (the latest `report.triaged`) and the override in force (the one that result
carries), and, for each input (a cause: `report:<id>`, `override:<id>`), the events of it that
are on Kafka. Output ids derive from their cause, so each cause's events are found by id.

An input whose events are all on Kafka (its `report.triaged`, published last, is there) is
published: a redelivery of it publishes nothing. One whose events are only partly there (the
process died between two publishes) keeps those very events; re-processing it makes only the
rest anew (`settle`), so no event id ever goes out again with other bytes.

Pure: no clock, no I/O; folding the same events twice gives the same state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from contracts.events import (
    CaseTriageOverriddenData,
    Envelope,
    EventType,
    ReportReceivedData,
    ReportTriagedData,
    TriageOverrideInfo,
    derived_event_id,
)
from services.triage.domain.overrides import recorded_override

PRODUCED = (EventType.CASE_TRIAGE_OVERRIDDEN, EventType.CASE_RECLASSIFIED, EventType.REPORT_TRIAGED)
"""What triage publishes for one input, in the order it publishes them."""


def report_cause(report_id: uuid.UUID) -> str:
    return f"report:{report_id}"


def override_cause(override_id: uuid.UUID) -> str:
    return f"override:{override_id}"


def is_complete(events: Sequence[Envelope]) -> bool:
    """Whether an input's events are all there: its result is always the last of them."""
    return bool(events) and events[-1].event_type == EventType.REPORT_TRIAGED


def settle(computed: Sequence[Envelope], published: Sequence[Envelope]) -> list[Envelope]:
    """An input's events: those already published as they were published (they are the first
    of the input's events, published in order), then the ones made now that are not among
    them."""
    known = {e.event_id for e in published}
    return [*published, *(e for e in computed if e.event_id not in known)]


@dataclass(frozen=True)
class RebuiltCase:
    """A case's state as the topics tell it."""

    case_id: uuid.UUID
    reports: tuple[ReportReceivedData, ...]
    outcomes: Mapping[str, tuple[Envelope, ...]]
    published: frozenset[str]
    history: tuple[Envelope, ...]
    current: ReportTriagedData | None
    override: TriageOverrideInfo | None


@dataclass
class _Found:
    received: list[tuple[uuid.UUID, ReportReceivedData]] = field(default_factory=list)
    produced: dict[uuid.UUID, Envelope] = field(default_factory=dict)  # first seen, in order


@dataclass
class StateFold:
    """Topic events folded by case. Each partition's events come in order; how the topics'
    partitions interleave does not matter (a case's history is ordered by when its events were
    made)."""

    events: int = 0
    skipped: int = 0
    _cases: dict[uuid.UUID, _Found] = field(default_factory=dict)

    def add(self, event: Envelope) -> None:
        self.events += 1
        try:
            if event.event_type == EventType.REPORT_RECEIVED:
                data = event.payload(ReportReceivedData)
                self._case(event.case_id).received.append((event.event_id, data))
            elif event.event_type in PRODUCED and event.producer == "triage":
                # An override is read now, so that a malformed one is left out; a result only
                # if it is its case's latest (reading every result would double the work).
                if event.event_type == EventType.CASE_TRIAGE_OVERRIDDEN:
                    event.payload(CaseTriageOverriddenData)
                # A republished event (a redelivery) is the same event: the first one counts.
                self._case(event.case_id).produced.setdefault(event.event_id, event)
        except ValidationError:
            self.skipped += 1

    def _case(self, case_id: uuid.UUID) -> _Found:
        return self._cases.setdefault(case_id, _Found())

    def cases(self) -> list[RebuiltCase]:
        return [
            rebuilt_case(case_id, found.received, found.produced.values())
            for case_id, found in self._cases.items()
        ]


def rebuilt_case(
    case_id: uuid.UUID,
    received: Iterable[tuple[uuid.UUID, ReportReceivedData]],
    produced: Iterable[Envelope],
) -> RebuiltCase:
    """One case from its received reports (with their events' ids) and the events triage
    published for it (each once, in the order they were read)."""
    produced = list(produced)
    by_id = {e.event_id: e for e in produced}

    def found(cause_id: uuid.UUID | str, types: Sequence[EventType]) -> tuple[Envelope, ...]:
        ids = (derived_event_id(str(cause_id), t) for t in types)
        return tuple(by_id[i] for i in ids if i in by_id)

    reports: dict[uuid.UUID, ReportReceivedData] = {}
    outcomes: dict[str, tuple[Envelope, ...]] = {}
    for event_id, data in received:
        reports.setdefault(data.report_id, data)
        cause = report_cause(data.report_id)
        events = found(event_id, PRODUCED[1:])
        # A report delivered in two envelopes was triaged once, under one of them.
        if events and not is_complete(outcomes.get(cause, ())):
            outcomes[cause] = events
    for event in produced:
        if event.event_type == EventType.CASE_TRIAGE_OVERRIDDEN:
            override_id = event.payload(CaseTriageOverriddenData).override_id
            outcomes[override_cause(override_id)] = found(override_id, PRODUCED)

    published = frozenset(cause for cause, events in outcomes.items() if is_complete(events))
    # A partly published input's events join the history when it is handled again, whole.
    pending = {e.event_id for c, es in outcomes.items() if c not in published for e in es}
    # Results of both lanes interleave by when they were made (stable: read order for ties).
    history = sorted(
        (e for e in produced if e.event_id not in pending), key=lambda e: e.occurred_at
    )
    current = _latest_result(history)
    return RebuiltCase(
        case_id=case_id,
        reports=tuple(reports.values()),
        outcomes=outcomes,
        published=published,
        history=tuple(history),
        current=current,
        override=None if current is None else recorded_override(current),
    )


def _latest_result(history: Sequence[Envelope]) -> ReportTriagedData | None:
    for event in reversed(history):
        if event.event_type == EventType.REPORT_TRIAGED:
            try:
                return event.payload(ReportTriagedData)
            except ValidationError:
                continue  # not a result any consumer took: the one before it stands
    return None
