"""Accepting reports, with the broker, key store and index replaced by fakes: a batch's rows
are published together, each request to its lane, each partner answered with its own
reference for a case, and a row the broker cannot take is that row's answer alone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from contracts import topics
from contracts.events import SourceFormat
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.matching import Matcher
from services.intake.domain.planning import Delivery
from services.intake.handlers.acceptance import Acceptor
from services.intake.ports import EventTooLarge
from tests.intake.fakes import SECRET, FakePublisher, MemoryStore, World


def acceptor(
    refs: Normalisers, broker: FakePublisher, store: MemoryStore | None = None
) -> Acceptor:
    world = World(refs)
    world.publisher = broker
    if store is not None:
        world.store = store
    return world.acceptor()


def report(refs: Normalisers, narrative: str, phone: str | None = None) -> Any:
    body: dict[str, Any] = {"channel": "ngo", "narrative": narrative}
    if phone:
        body["survivors"] = [{"contact": {"phone": phone}}]
    return canonical_report(body, refs)


async def test_a_batch_is_published_with_all_its_rows_in_flight_together(
    refs: Normalisers,
) -> None:
    rows = 40
    broker = FakePublisher(together=rows)
    intake = acceptor(refs, broker)
    prepared = [intake.prepare("ngo-b", report(refs, f"row {i}")) for i in range(rows)]
    acceptance = await intake.accept("ngo-b", prepared, SourceFormat.BATCH, topics.Lane.BULK)
    assert broker.most_in_flight == rows  # not one awaited send after another
    assert [o.delivery for o in acceptance.outcomes] == [Delivery.PUBLISHED] * rows
    assert {t for t, _ in broker.sent} == {topics.REPORTS_RECEIVED_BULK}
    assert len(acceptance.accepted) == rows
    assert {a.lane for a in acceptance.accepted} == {"bulk"}


async def test_a_single_report_goes_to_the_live_lane(refs: Normalisers) -> None:
    broker = FakePublisher()
    intake = acceptor(refs, broker)
    prepared = intake.prepare("hotline-a", report(refs, "one"))
    acceptance = await intake.accept(
        "hotline-a", [prepared], SourceFormat.PARTNER_JSON, topics.Lane.LIVE
    )
    assert [t for t, _ in broker.sent] == [topics.REPORTS_RECEIVED]
    [outcome] = acceptance.outcomes
    assert outcome.published
    assert outcome.case_ref == outcome.case_id  # it opened the case


async def test_a_row_the_broker_does_not_take_is_that_rows_answer(refs: Normalisers) -> None:
    broker = FakePublisher(together=3, failures={1: TimeoutError(), 2: EventTooLarge()})
    intake = acceptor(refs, broker)
    prepared = [intake.prepare("ngo-b", report(refs, f"row {i}")) for i in range(3)]
    acceptance = await intake.accept("ngo-b", prepared, SourceFormat.BATCH, topics.Lane.BULK)
    deliveries = {o.report_id: o.delivery for o in acceptance.outcomes}
    published_order = [
        next(o for o in acceptance.outcomes if str(o.report_id).encode() in message)
        for _, message in broker.sent
    ]
    assert [deliveries[o.report_id] for o in published_order] == [
        Delivery.PUBLISHED, Delivery.UNAVAILABLE, Delivery.TOO_LARGE
    ]  # fmt: skip
    # Only what the broker acknowledged is remembered.
    assert [a.report_id for a in acceptance.accepted] == [published_order[0].report_id]


async def test_each_partner_holds_its_own_reference_for_a_shared_case(
    refs: Normalisers,
) -> None:
    matcher = Matcher(SECRET, refs.vocabulary)
    phone = "0750 123 4567"
    [survivor_key] = matcher.keys("any", report(refs, "x", phone))
    case_id = uuid.uuid4()
    store = MemoryStore(links={survivor_key.digest: case_id}, openers={case_id: "hotline-a"})

    async def joined(partner: str, narrative: str) -> tuple[uuid.UUID, uuid.UUID]:
        intake = acceptor(refs, FakePublisher(), store)
        prepared = intake.prepare(partner, report(refs, narrative, phone))
        acceptance = await intake.accept(
            partner, [prepared], SourceFormat.PARTNER_JSON, topics.Lane.LIVE
        )
        [outcome] = acceptance.outcomes
        return outcome.case_id, outcome.case_ref

    opener = await joined("hotline-a", "the opener's second report")
    ngo_first = await joined("ngo-b", "first")
    ngo_second = await joined("ngo-b", "second")
    tipline = await joined("tipline-c", "first")
    # One case inside the mechanism...
    assert {opener[0], ngo_first[0], ngo_second[0], tipline[0]} == {case_id}
    # ...and a reference per partner: the opener's is the case id, each other's its own,
    # the same for all of one partner's reports, shaped like the case ids intake derives.
    assert opener[1] == case_id
    assert ngo_first[1] == ngo_second[1]
    assert len({opener[1], ngo_first[1], tipline[1]}) == 3
    assert ngo_first[1].version == tipline[1].version == 5


def test_the_partner_reference_is_keyed(refs: Normalisers) -> None:
    case_id = uuid.uuid4()
    one = Matcher(SECRET, refs.vocabulary).case_reference("ngo-b", case_id)
    other = Matcher(b"t" * 32, refs.vocabulary).case_reference("ngo-b", case_id)
    assert one != other
    assert one.version == 5


@pytest.mark.parametrize("partner", ["hotline-a", "ngo-b"])
def test_a_new_case_id_cannot_be_worked_out_from_the_report_id(
    refs: Normalisers, partner: str
) -> None:
    """Both ids come from the keyed fingerprint, neither from the other: a partner cannot
    compute, from its report id, the case id its report would have opened."""
    from services.intake.domain.facts import new_case_id_for, report_id_for

    intake = acceptor(refs, FakePublisher())
    prepared = intake.prepare(partner, report(refs, "x"))
    report_id = report_id_for(partner, prepared.fingerprint)
    case_id = new_case_id_for(partner, prepared.fingerprint)
    from contracts.events import derived_event_id

    assert case_id != derived_event_id("intake", "case", str(report_id))


async def test_a_report_too_large_to_carry_is_refused_before_sealing(refs: Normalisers) -> None:
    broker = FakePublisher()
    intake = acceptor(refs, broker)
    intake.max_event_bytes = 64 * 1024
    big = intake.prepare("tipline-c", report(refs, "x " * 9_000 + "end"))
    small = intake.prepare("tipline-c", report(refs, "small"))
    big = type(big)(big.report, big.fingerprint, big.keys, big.personal * 6)  # ~108 KB sealed
    acceptance = await intake.accept(
        "tipline-c", [big, small], SourceFormat.BATCH, topics.Lane.BULK
    )
    assert [o.delivery for o in acceptance.outcomes] == [Delivery.TOO_LARGE, Delivery.PUBLISHED]
    assert len(broker.sent) == 1
