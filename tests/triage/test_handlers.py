"""Triage's use cases over in-memory ports (`fakes.py`): a received report triaged once and
published after it is recorded, redeliveries, lanes, a supervisor's override (refused without
grounds, published under their name with them), re-triage under an override, and the case view
with its access record. No broker, no Redis, no routing: milliseconds."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from contracts import topics
from contracts.events import (
    Classification,
    Envelope,
    EventType,
    OverrideReason,
    Priority,
    ReportReceivedData,
    ReportTriagedData,
    derived_event_id,
)
from contracts.reports import Channel, RiskFlag
from contracts.topics import Lane
from ocsea.runtime.auth import Principal, Role
from ocsea.runtime.errors import ApiError
from services.triage.handlers import OverrideCommand
from testkit.triage_events import received
from tests.triage.events import received_event
from tests.triage.fakes import NOW, AccessNotRecordedError, World

SUPERVISOR = Principal(name="supervisor-erbil-cpu", role=Role.SUPERVISOR, agency="erbil-cpu")
OUTSIDER = Principal(name="supervisor-kri-legal-aid", role=Role.SUPERVISOR, agency="kri-legal-aid")
AUDITOR = Principal(name="auditor", role=Role.AUDITOR)
HOLDER_TOKEN, OUTSIDER_TOKEN, AUDITOR_TOKEN = "holder-token", "outsider-token", "auditor-token"
REASON = "Marker-7f3a: the family moved her to safety"


@pytest.fixture
def world() -> World:
    return World()


async def deliver(
    world: World, case_id: uuid.UUID, data: ReportReceivedData, lane: Lane = Lane.LIVE
) -> Envelope:
    envelope = received_event(case_id, data)
    await world.handlers.report_received(envelope, lane)
    return envelope


def override(case_id: uuid.UUID, key: str | None = "key-1", **values: object) -> OverrideCommand:
    return OverrideCommand(
        case_id=case_id,
        reason_code=OverrideReason.RISK_REASSESSED,
        reason=REASON,
        idempotency_key=key,
        **values,  # type: ignore[arg-type]
    )


def triaged(events: list[Envelope]) -> ReportTriagedData:
    [result] = [e for e in events if e.event_type == EventType.REPORT_TRIAGED]
    return result.payload(ReportTriagedData)


# ------------------------------------------------------------------------ a received report


async def test_a_report_is_recorded_before_its_result_is_published_and_marked_after(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    envelope = await deliver(world, case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))

    # Recorded under the lock, published after it, marked published once the broker took it.
    assert world.journal == [
        "lock",
        "take_report",
        "record report",
        "unlock",
        "publish report.triaged",
        "mark_published report",
    ]
    [(topic, event)] = world.publisher.published
    assert topic == topics.REPORTS_TRIAGED
    assert event.event_id == derived_event_id(str(envelope.event_id), EventType.REPORT_TRIAGED)
    assert triaged([event]).priority is Priority.P1  # child (30) + sextortion deadline (60)
    assert await world.state.current(case_id) == triaged([event])
    waited = (NOW - received().received_at).total_seconds()
    assert world.figures.reports == [(Channel.HOTLINE, Lane.LIVE, "P1", waited)]
    assert world.figures.counted == ["report.triaged"]


async def test_a_redelivered_report_publishes_its_triaged_event_once(world: World) -> None:
    case_id = uuid.uuid4()
    envelope = await deliver(world, case_id, received())
    world.journal.clear()

    await world.handlers.report_received(envelope, Lane.LIVE)

    assert world.publisher.types == ["report.triaged"]
    assert world.journal == ["lock", "take_report", "unlock"]  # nothing recorded, nothing sent
    assert len(await world.state.history(case_id)) == 1


async def test_a_redelivery_after_a_failed_publish_sends_the_recorded_event(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    envelope = received_event(case_id, received())
    world.publisher.failures = 1
    with pytest.raises(ConnectionError):
        await world.handlers.report_received(envelope, Lane.LIVE)
    [recorded] = await world.state.history(case_id)
    assert world.publisher.published == []
    assert "mark_published report" not in world.journal

    # The consumer delivers it again, later: the event recorded then goes out, not a new one,
    # and once it is out a further delivery sends nothing.
    world.clock.moment = NOW + timedelta(hours=1)
    await world.handlers.report_received(envelope, Lane.LIVE)
    await world.handlers.report_received(envelope, Lane.LIVE)

    assert world.publisher.events == [recorded]
    assert recorded.occurred_at == NOW  # made at the first attempt
    assert recorded.event_id == derived_event_id(str(envelope.event_id), EventType.REPORT_TRIAGED)
    assert world.journal.count("record report") == 1


async def test_bulk_results_stay_in_their_lane_unless_urgent(world: World) -> None:
    calm, urgent = uuid.uuid4(), uuid.uuid4()
    await deliver(world, calm, received().model_copy(update={"survivors": ()}), Lane.BULK)
    await deliver(world, urgent, received(flags=(RiskFlag.IMMINENT_DANGER,)), Lane.BULK)

    by_case = {event.case_id: topic for topic, event in world.publisher.published}
    assert by_case == {calm: topics.REPORTS_TRIAGED_BULK, urgent: topics.REPORTS_TRIAGED}
    assert [lane for _c, lane, _p, _w in world.figures.reports] == [Lane.BULK, Lane.BULK]


# ------------------------------------------------------------------------ a supervisor's override


async def test_an_override_without_grounds_is_refused_recorded_and_publishes_nothing(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))
    world.grounds.grant(case_id, HOLDER_TOKEN)  # someone else's task: no grounds for OUTSIDER
    before = await world.state.current(case_id)
    published = list(world.publisher.published)

    with pytest.raises(ApiError) as refused:
        await world.handlers.override(
            override(case_id, priority=Priority.P4), OUTSIDER, OUTSIDER_TOKEN
        )
    with pytest.raises(ApiError) as unknown:
        await world.handlers.override(
            override(uuid.uuid4(), priority=Priority.P4), OUTSIDER, OUTSIDER_TOKEN
        )

    # Refused exactly as an unknown case is, and the refusal is on the record.
    assert (refused.value.status, refused.value.code) == (404, "case_not_found")
    assert (unknown.value.status, unknown.value.code, unknown.value.message) == (
        refused.value.status,
        refused.value.code,
        refused.value.message,
    )
    assert [(e.kind, e.case_id, e.who, e.reason) for e in world.access.entries[:1]] == [
        ("denied", case_id, OUTSIDER.name, "override without an open task of the caller's")
    ]
    assert world.publisher.published == published
    assert await world.state.current(case_id) == before
    assert world.keys.sealed == []  # the reason was not even sealed


async def test_an_override_with_grounds_is_published_under_the_supervisors_name(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))
    world.grounds.grant(case_id, HOLDER_TOKEN)
    world.journal.clear()

    result = await world.handlers.override(
        override(case_id, priority=Priority.P2), SUPERVISOR, HOLDER_TOKEN
    )

    assert result.priority is Priority.P2
    assert result.override is not None
    assert result.override.by == SUPERVISOR.name
    new = world.publisher.events[1:]
    assert [e.event_type for e in new] == [
        "case.triage_overridden",
        "case.reclassified",
        "report.triaged",
    ]
    # Published first, recorded (as published) only then, all under the case's lock.
    assert world.journal == [
        "lock",
        "publish case.triage_overridden",
        "publish case.reclassified",
        "publish report.triaged",
        "record override published",
        "unlock",
    ]
    # The change is recorded by its own event, naming the supervisor; the reason is sealed.
    overridden = new[0]
    assert overridden.actor.id == SUPERVISOR.name
    assert overridden.actor.agency == SUPERVISOR.agency
    assert (overridden.data["old_priority"], overridden.data["new_priority"]) == ("P1", "P2")
    assert world.keys.sealed == [(case_id, REASON.encode())]
    assert all("Marker-7f3a" not in e.model_dump_json() for e in new)
    assert world.access.entries == []  # nothing refused
    assert await world.state.current(case_id) == result


async def test_a_retried_override_is_the_same_override(world: World) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))
    world.grounds.grant(case_id, HOLDER_TOKEN)
    first = await world.handlers.override(
        override(case_id, priority=Priority.P2), SUPERVISOR, HOLDER_TOKEN
    )
    count = len(world.publisher.published)

    again = await world.handlers.override(
        override(case_id, priority=Priority.P2), SUPERVISOR, HOLDER_TOKEN
    )

    assert again == first
    assert len(world.publisher.published) == count


async def test_an_override_the_broker_did_not_take_leaves_the_case_as_it_was(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))
    world.grounds.grant(case_id, HOLDER_TOKEN)
    before = await world.state.current(case_id)
    world.publisher.failures = 1

    with pytest.raises(ApiError) as failed:
        await world.handlers.override(
            override(case_id, priority=Priority.P2), SUPERVISOR, HOLDER_TOKEN
        )

    assert (failed.value.status, failed.value.code) == (503, "broker_unavailable")
    assert failed.value.headers == {"Retry-After": "5"}
    assert await world.state.current(case_id) == before
    assert not [j for j in world.journal if j.startswith("record override")]
    # Retried with the same key: the same override, with the ids a consumer would recognise.
    result = await world.handlers.override(
        override(case_id, priority=Priority.P2), SUPERVISOR, HOLDER_TOKEN
    )
    assert result.override is not None
    overridden = world.publisher.events[1]
    assert overridden.event_id == derived_event_id(
        str(result.override.override_id), EventType.CASE_TRIAGE_OVERRIDDEN
    )


async def test_an_override_must_change_something(world: World) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received())
    world.grounds.grant(case_id, HOLDER_TOKEN)

    with pytest.raises(ApiError) as empty:
        await world.handlers.override(override(case_id), SUPERVISOR, HOLDER_TOKEN)

    assert (empty.value.status, empty.value.code, empty.value.field) == (
        422,
        "nothing_to_override",
        "classification",
    )
    assert world.publisher.types == ["report.triaged"]


async def test_a_later_report_re_triages_under_the_override_in_force(world: World) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))  # P1
    world.grounds.grant(case_id, HOLDER_TOKEN)
    made = await world.handlers.override(
        override(case_id, priority=Priority.P2), SUPERVISOR, HOLDER_TOKEN
    )
    assert made.override is not None
    count = len(world.publisher.published)

    # Another report, nothing more urgent than what the supervisor saw (the rules say P1 as
    # they did then, with repeat_reports): the override holds.
    await deliver(world, case_id, received(minutes=5))

    later = world.publisher.events[count:]
    assert [e.event_type for e in later] == ["report.triaged"]  # no reclassification
    result = triaged(later)
    assert (result.priority, result.score) == (Priority.P2, 105)
    assert result.override is not None
    assert result.override.override_id == made.override.override_id
    assert result.override.superseded == ()
    assert len(result.case_report_ids) == 2


async def test_later_evidence_more_urgent_than_an_override_supersedes_it(world: World) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received())  # a child, nothing else: P2
    world.grounds.grant(case_id, HOLDER_TOKEN)
    made = await world.handlers.override(
        override(case_id, priority=Priority.P3, classification=Classification.TF_CSEA),
        SUPERVISOR,
        HOLDER_TOKEN,
    )
    assert made.priority is Priority.P3
    count = len(world.publisher.published)

    await deliver(world, case_id, received(flags=(RiskFlag.IMMINENT_DANGER,), minutes=5))

    later = world.publisher.events[count:]
    assert [e.event_type for e in later] == ["case.reclassified", "report.triaged"]
    assert (later[0].data["old_priority"], later[0].data["new_priority"]) == ("P3", "P1")
    assert later[0].data["trigger"] == "new_report"
    result = triaged(later)
    assert result.priority is Priority.P1
    assert result.override is not None
    assert result.override.superseded == ("priority",)


# ------------------------------------------------------------------------ the case view


async def test_a_holder_reads_the_case_and_the_read_is_recorded_first(world: World) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received())
    task_id = world.grounds.grant(case_id, HOLDER_TOKEN)

    shown = await world.handlers.case_triage(case_id, SUPERVISOR, HOLDER_TOKEN)

    assert shown.current == await world.state.current(case_id)
    assert [e.event_type for e in shown.history] == ["report.triaged"]
    assert shown.erasure is None
    [entry] = world.access.entries
    assert (entry.kind, entry.who, entry.task_ids) == ("viewed", SUPERVISOR.name, (task_id,))
    assert entry.reason == "open task on the case"
    assert entry.report_ids == shown.current.case_report_ids


async def test_an_auditor_reads_on_the_role_and_others_not_at_all(world: World) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received())

    await world.handlers.case_triage(case_id, AUDITOR, AUDITOR_TOKEN)
    with pytest.raises(ApiError) as partner:
        await world.handlers.case_triage(
            case_id, Principal(name="partner-hotline", role=Role.PARTNER), "partner-token"
        )
    with pytest.raises(ApiError) as outsider:
        await world.handlers.case_triage(case_id, OUTSIDER, OUTSIDER_TOKEN)

    assert [(e.kind, e.who, e.reason) for e in world.access.entries] == [
        ("viewed", AUDITOR.name, "auditor, read-only"),
        ("denied", OUTSIDER.name, "no open task of the caller's on this case"),
    ]
    assert (partner.value.status, partner.value.code) == (403, "forbidden")
    assert (outsider.value.status, outsider.value.code) == (404, "case_not_found")


async def test_nothing_is_shown_when_the_read_cannot_be_recorded_or_checked(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    await deliver(world, case_id, received())
    world.grounds.grant(case_id, HOLDER_TOKEN)

    world.access.failing = True
    with pytest.raises(AccessNotRecordedError):
        await world.handlers.case_triage(case_id, SUPERVISOR, HOLDER_TOKEN)
    world.access.failing, world.grounds.unavailable = False, True
    with pytest.raises(ApiError) as unchecked:
        await world.handlers.case_triage(case_id, SUPERVISOR, HOLDER_TOKEN)
    world.grounds.unavailable, world.keys.unreadable = False, True
    with pytest.raises(ApiError) as no_keys:
        await world.handlers.case_triage(case_id, SUPERVISOR, HOLDER_TOKEN)

    assert (unchecked.value.status, unchecked.value.code) == (503, "access_not_checked")
    assert (no_keys.value.status, no_keys.value.code) == (503, "keys_unavailable")
    assert world.access.entries == []
