"""Triage's case state after Redis lost it, over in-memory ports (`fakes.py`): the guard
rebuilds it from the topics before a use case reads it; the reports, history, current result
and override in force come back as they were; a redelivered input whose events are on Kafka
publishes nothing, one whose events are partly there publishes those very bytes and makes only
the rest; a rebuild overwrites nothing written meanwhile, and folding twice changes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from contracts import topics
from contracts.events import (
    Envelope,
    EventType,
    OverrideReason,
    Priority,
    ReportReceivedData,
    ReportTriagedData,
    derived_event_id,
)
from contracts.reports import RiskFlag
from contracts.topics import Lane
from ocsea.runtime.auth import Principal, Role
from services.triage.domain.lanes import RECEIVED_TOPICS, TRIAGED_TOPICS
from services.triage.domain.rebuild import StateFold, report_cause
from services.triage.handlers import OverrideCommand, rebuild_state
from testkit.triage_events import received
from tests.triage.events import received_event
from tests.triage.fakes import InMemoryCaseState, KafkaLog, World

SUPERVISOR = Principal(name="supervisor-erbil-cpu", role=Role.SUPERVISOR, agency="erbil-cpu")
AUDITOR = Principal(name="auditor", role=Role.AUDITOR)
HOLDER_TOKEN = "holder-token"


@pytest.fixture
def world() -> World:
    return World()


def lower_to(priority: Priority, case_id: uuid.UUID) -> OverrideCommand:
    return OverrideCommand(
        case_id=case_id,
        reason_code=OverrideReason.RISK_REASSESSED,
        reason="the family moved her to safety",
        priority=priority,
        idempotency_key="key-1",
    )


def later(world: World, minutes: int = 1) -> None:
    world.clock.moment += timedelta(minutes=minutes)


def assert_no_id_with_other_bytes(kafka: KafkaLog) -> None:
    again = {i: v for i, v in kafka.values_by_id().items() if len(v) > 1}
    assert again == {}, "an event id went out again with other bytes"


async def a_case_with_an_override(world: World) -> tuple[uuid.UUID, Envelope, Envelope]:
    """A P1 report, a supervisor's override to P2, and a later report under it."""
    case_id = uuid.uuid4()
    first = received_event(case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,)))
    await world.receive(first)
    world.grounds.grant(case_id, HOLDER_TOKEN)
    later(world)
    await world.handlers.override(lower_to(Priority.P2, case_id), SUPERVISOR, HOLDER_TOKEN)
    later(world)
    second = received_event(case_id, received(minutes=5))
    await world.receive(second)
    return case_id, first, second


async def test_a_lost_state_comes_back_as_it_was_before_a_case_is_read(world: World) -> None:
    case_id, _first, _second = await a_case_with_an_override(world)
    before = world.state.snapshot()
    assert before[case_id].override is not None
    published = list(world.publisher.published)

    world.lose_redis()
    shown = await world.handlers.case_triage(case_id, AUDITOR, "auditor-token")

    # The guard rebuilt it before the read: reports, outcomes, published marks, the current
    # result, the override in force and the history, exactly as they were kept.
    assert world.guard.rebuilds == 1
    assert world.state.snapshot() == before
    assert shown.current.priority is Priority.P2
    assert shown.current.override is not None
    assert len(shown.current.case_report_ids) == 2
    assert [e.event_type for e in shown.history] == [
        "report.triaged",
        "case.triage_overridden",
        "case.reclassified",
        "report.triaged",
        "report.triaged",
    ]
    assert world.publisher.published == published  # a rebuild publishes nothing


async def test_a_redelivered_report_after_a_loss_publishes_nothing(world: World) -> None:
    _case_id, first, second = await a_case_with_an_override(world)
    count = len(world.publisher.published)

    world.lose_redis()
    later(world, 60)
    await world.handlers.report_received(first, Lane.LIVE)  # no processed marker left either
    await world.handlers.report_received(second, Lane.LIVE)

    assert world.guard.rebuilds == 1
    assert len(world.publisher.published) == count
    assert_no_id_with_other_bytes(world.kafka)


async def test_a_retried_override_after_a_loss_is_the_same_override(world: World) -> None:
    case_id = uuid.uuid4()
    await world.receive(received_event(case_id, received(flags=(RiskFlag.SEXTORTION_DEADLINE,))))
    world.grounds.grant(case_id, HOLDER_TOKEN)
    made = await world.handlers.override(lower_to(Priority.P3, case_id), SUPERVISOR, HOLDER_TOKEN)
    count = len(world.publisher.published)

    world.lose_redis()
    later(world, 60)
    again = await world.handlers.override(lower_to(Priority.P3, case_id), SUPERVISOR, HOLDER_TOKEN)

    assert again == made
    assert len(world.publisher.published) == count
    assert world.guard.rebuilds == 1


async def test_a_new_report_after_a_loss_combines_the_earlier_ones_under_the_override(
    world: World,
) -> None:
    case_id, first, second = await a_case_with_an_override(world)
    [made] = [e for _t, e in world.publisher.published if e.event_type == "case.triage_overridden"]

    world.lose_redis()
    later(world)
    third = received_event(case_id, received(minutes=10))
    await world.receive(third)

    [result] = [
        e.payload(ReportTriagedData)
        for _t, e in world.publisher.published
        if e.event_id == derived_event_id(str(third.event_id), EventType.REPORT_TRIAGED)
    ]
    assert set(result.case_report_ids) == {
        first.payload(ReportReceivedData).report_id,
        second.payload(ReportReceivedData).report_id,
        third.payload(ReportReceivedData).report_id,
    }
    assert result.override is not None
    assert str(result.override.override_id) == made.data["override_id"]
    assert result.priority is Priority.P2  # the override holds


async def test_an_input_partly_on_kafka_republishes_those_bytes_and_makes_the_rest(
    world: World,
) -> None:
    case_id = uuid.uuid4()
    await world.receive(received_event(case_id, received()))  # a child: P2
    later(world)
    urgent = received_event(case_id, received(flags=(RiskFlag.IMMINENT_DANGER,), minutes=5))
    # The process dies between the reclassification's publish and the result's.
    world.publisher.refused = {EventType.REPORT_TRIAGED.value}
    with pytest.raises(ConnectionError):
        await world.receive(urgent)
    [change] = [e for _t, e in world.publisher.published if e.event_type == "case.reclassified"]

    world.lose_redis()
    world.publisher.refused = set()
    later(world, 60)  # made again now, the events would carry another time
    await world.handlers.report_received(urgent, Lane.LIVE)

    assert_no_id_with_other_bytes(world.kafka)
    types = [e.event_type for _t, e in world.publisher.published]
    assert types == ["report.triaged", "case.reclassified", "case.reclassified", "report.triaged"]
    assert world.publisher.published[2][1] == change  # the very event, again
    result = world.publisher.published[3][1]
    assert result.event_id == derived_event_id(str(urgent.event_id), EventType.REPORT_TRIAGED)
    assert result.payload(ReportTriagedData).priority is Priority.P1
    # Recorded whole, once: the history has each event once, and a redelivery sends nothing.
    history = [e.event_id for e in await world.state.history(case_id)]
    assert len(history) == len(set(history)) == 3
    await world.handlers.report_received(urgent, Lane.LIVE)
    assert len(world.publisher.published) == 4


async def test_a_late_rebuild_overwrites_nothing_written_meanwhile(world: World) -> None:
    case_id = uuid.uuid4()
    await world.receive(received_event(case_id, received()))
    as_read_then = world.kafka.copy()  # another process's rebuild read the topics here ...
    later(world)
    await world.receive(received_event(case_id, received(flags=(RiskFlag.IMMINENT_DANGER,))))
    newer = world.state.snapshot()

    await rebuild_state(as_read_then, world.state)  # ... and writes only now

    assert world.state.snapshot() == newer
    current = await world.state.current(case_id)
    assert current is not None
    assert current.priority is Priority.P1


async def test_folding_twice_or_with_redeliveries_changes_nothing(world: World) -> None:
    await a_case_with_an_override(world)
    await world.receive(received_event(uuid.uuid4(), received()), Lane.BULK)
    once = InMemoryCaseState([])
    await rebuild_state(world.kafka, once)

    twice = InMemoryCaseState([])
    await rebuild_state(world.kafka, twice)
    await rebuild_state(world.kafka, twice)
    # Every record delivered twice (an at-least-once producer), in another order of topics.
    doubled = KafkaLog(
        [r for r in world.kafka.records if r[0] in TRIAGED_TOPICS] + world.kafka.records * 2
    )
    redelivered = InMemoryCaseState([])
    await rebuild_state(doubled, redelivered)

    assert once.snapshot() == twice.snapshot() == redelivered.snapshot() == world.state.snapshot()


async def test_results_of_both_lanes_fold_into_one_current_result(world: World) -> None:
    case_id = uuid.uuid4()
    calm = received_event(case_id, received().model_copy(update={"survivors": ()}))
    await world.receive(calm, Lane.BULK)
    later(world)
    urgent = received_event(case_id, received(flags=(RiskFlag.IMMINENT_DANGER,), minutes=5))
    await world.receive(urgent, Lane.BULK)
    assert {t for t, _e in world.publisher.published} == {
        topics.REPORTS_TRIAGED_BULK,
        topics.REPORTS_TRIAGED,  # the urgent result jumped to the live lane
    }

    fold = StateFold()
    async for event in world.kafka.read([*RECEIVED_TOPICS, *TRIAGED_TOPICS]):
        fold.add(event)
    [case] = fold.cases()

    assert case.current == await world.state.current(case_id)
    assert case.current is not None
    assert case.current.priority is Priority.P1
    assert case.published == {
        report_cause(calm.payload(ReportReceivedData).report_id),
        report_cause(urgent.payload(ReportReceivedData).report_id),
    }
    assert case.override is None
