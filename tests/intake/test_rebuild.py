"""Intake's Redis state rebuilt from Kafka after Redis lost it (issue #11.2), on in-memory
ports: the broker keeps what reached it, the store loses everything (a FLUSHALL), and the next
request or event finds the projection's epoch marker gone and folds the topics back first.

Before the fold, a partner's retry of an accepted report was made afresh (another time,
another nonce): one event id, two versions on the topic, a conflict in the audit ledger; a
later report of the same survivor opened a new case; the partner's status was gone.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import topics
from contracts.events import (
    Actor,
    ActorKind,
    AgeBasis,
    AgencyType,
    Classification,
    Envelope,
    EventType,
    PartnerAssessment,
    Priority,
    ReportTriagedData,
    TaskAssignedData,
    make_event,
)
from contracts.reports import PartnerKind, ReportAccepted, ReportState
from services.intake.config import IntakeSettings
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.cybertipline import parse_cybertipline
from services.intake.domain.deadline import Deadline
from services.intake.domain.facts import personal_fields, report_from_personal
from services.intake.domain.matching import Matcher
from services.intake.domain.rebuild import Recorded, RestoredState, StateFold, Windows
from services.intake.domain.refusals import Refusal
from services.intake.domain.xml_document import XmlLimits
from services.intake.handlers.submissions import Answer, Submission
from tests.intake.fakes import SECRET, START, Killed, World, partner

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEM = Actor(kind=ActorKind.SYSTEM, id="test")


def report_body(phone: str = "0750 123 4567", narrative: str = "threats tonight") -> bytes:
    return json.dumps(
        {
            "channel": "hotline",
            "language": "ckb",
            "incident": {"occurred_at": "2026-11-20T21:30:00+03:00", "governorate": "erbil"},
            "survivors": [{"age": 15, "name": "Shilan", "contact": {"phone": phone}}],
            "categories": ["sextortion"],
            "narrative": narrative,
        }
    ).encode()


def submission(
    key: str | None = "key-1", body: bytes | None = None, who: str = "hotline-a"
) -> Submission:
    kind = PartnerKind.HOTLINE if who.startswith("hotline") else PartnerKind.NGO
    return Submission(partner(who, kind), body or report_body(), key)


def answer_json(answer: Answer) -> dict[str, Any]:
    assert answer.status == 202
    body = answer.body
    return body if isinstance(body, dict) else body.model_dump(mode="json")


def sent_events(world: World) -> list[Envelope]:
    return [Envelope.model_validate_json(body) for body in world.publisher.bodies()]


@pytest.fixture
def world(refs: Normalisers) -> World:
    return World(refs)


# --- a retry of a report already on Kafka ----------------------------------------------------


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_publishes_nothing(
    world: World,
) -> None:
    first = answer_json(await world.intake().submit_json(submission()))
    world.lose_state()
    world.clock.advance(120)  # a retry made afresh would carry another time

    retry = await world.intake().submit_json(submission())

    assert answer_json(retry) == first
    assert len(world.publisher.sent) == 1  # answered from the restored answer
    assert world.guard.rebuilds == 1


async def test_the_same_key_with_another_report_is_still_refused_after_a_rebuild(
    world: World,
) -> None:
    await world.intake().submit_json(submission())
    world.lose_state()
    with pytest.raises(Refusal) as caught:
        await world.intake().submit_json(submission(body=report_body(narrative="another")))
    assert (caught.value.status, caught.value.code) == (422, "idempotency_key_reused")
    assert len(world.publisher.sent) == 1


async def test_a_resubmission_without_a_key_is_a_duplicate_and_publishes_nothing(
    world: World,
) -> None:
    first = answer_json(await world.intake().submit_json(submission(None)))
    world.lose_state()

    again = answer_json(await world.intake().submit_json(submission(None)))

    assert again["duplicate_of"] == first["report_id"]
    assert again["case_id"] == first["case_id"]
    assert len(world.publisher.sent) == 1


async def test_a_report_of_an_erased_case_is_sent_again_byte_for_byte(world: World) -> None:
    """Its sealed part no longer opens, so neither its duplicate record nor its matching can
    be derived again: the event itself is held as it is on Kafka."""
    first = answer_json(await world.intake().submit_json(submission(None)))
    [event] = sent_events(world)
    world.sealer.erased.add(event.case_id)
    world.lose_state()
    world.clock.advance(3600)

    again = answer_json(await world.intake().submit_json(submission(None)))

    original, resent = world.publisher.bodies()
    assert resent == original  # one event id, one version
    assert again == first


async def test_an_event_that_never_was_remembered_is_folded_back_too(world: World) -> None:
    """Published, then the process died before remembering (and Redis was lost as well)."""
    world.store.fail_record = Killed()
    with pytest.raises(Killed):
        await world.intake().submit_json(submission())
    world.store.fail_record = None
    world.lose_state()

    answer = answer_json(await world.intake().submit_json(submission()))

    [event] = sent_events(world)
    assert answer == {
        "report_id": str(event.report_id),
        "case_id": str(event.case_id),
        "duplicate_of": None,
    }
    assert len(world.publisher.sent) == 1


# --- matching -------------------------------------------------------------------------------


async def test_a_later_report_of_the_same_survivor_joins_the_case(world: World) -> None:
    first = answer_json(await world.intake().submit_json(submission(None)))
    world.lose_state()

    later = await world.intake().submit_json(
        submission(None, report_body(phone="+964 750 123 4567", narrative="she wrote again"))
    )

    assert answer_json(later)["case_id"] == first["case_id"]
    opening, joining = sent_events(world)
    assert joining.case_id == opening.case_id
    assert joining.data["link_reasons"] == ["same_survivor"]
    assert joining.data["linked_report_ids"] == [first["report_id"]]


async def test_another_partner_joining_after_a_rebuild_gets_its_own_reference(
    world: World,
) -> None:
    first = answer_json(await world.intake().submit_json(submission(None)))
    world.lose_state()

    other = answer_json(
        await world.intake().submit_json(
            submission(None, report_body(narrative="ngo report"), who="ngo-b")
        )
    )

    opening, joining = sent_events(world)
    assert joining.case_id == opening.case_id  # one case inside the mechanism
    assert other["case_id"] != first["case_id"]  # but never the other partner's reference
    assert other["case_id"] == str(
        Matcher(SECRET, world.refs.vocabulary).case_reference("ngo-b", opening.case_id)
    )


async def test_a_case_whose_key_was_erased_no_longer_matches(world: World) -> None:
    await world.intake().submit_json(submission(None))
    [opening] = sent_events(world)
    world.sealer.erased.add(opening.case_id)
    world.lose_state()

    await world.intake().submit_json(submission(None, report_body(narrative="again")))

    _, later = sent_events(world)
    assert later.case_id != opening.case_id
    assert later.data["link_reasons"] == []


# --- the partners' status ---------------------------------------------------------------------


def triaged(case_id: uuid.UUID, report_id: uuid.UUID, at: datetime, own: str | None) -> Envelope:
    return make_event(
        event_type=EventType.REPORT_TRIAGED,
        case_id=case_id,
        report_id=report_id,
        producer="triage",
        actor=SYSTEM,
        occurred_at=at,
        data=ReportTriagedData(
            report_id=report_id,
            classification=Classification.TF_CSEA,
            presumed_child=False,
            age_used=15,
            age_basis=AgeBasis.STATED_AGE,
            priority=Priority.P2,
            score=40,
            rules_version="test",
            partner_assessment=(
                PartnerAssessment(
                    partner_id=own, classification=Classification.TF_CSEA, priority=Priority.P3
                )
                if own
                else None
            ),
        ),
    )


def assigned(case_id: uuid.UUID, report_id: uuid.UUID, at: datetime) -> Envelope:
    return make_event(
        event_type=EventType.TASK_ASSIGNED,
        case_id=case_id,
        report_id=report_id,
        producer="routing",
        actor=SYSTEM,
        occurred_at=at,
        data=TaskAssignedData(
            task_id=uuid.uuid4(),
            report_id=report_id,
            agency_id="erbil-cpu",
            agency_type=AgencyType.CHILD_PROTECTION,
            classification=Classification.TF_CSEA,
            priority=Priority.P2,
            reason="test",
            acknowledge_due_at=at,
            first_action_due_at=at,
        ),
    )


async def test_a_partners_status_is_folded_back_with_its_progress(world: World) -> None:
    intake = world.intake()
    first = answer_json(await intake.submit_json(submission(None)))
    [event] = sent_events(world)
    assert event.report_id is not None
    triaged_at, routed_at = START + timedelta(seconds=5), START + timedelta(seconds=9)
    world.history.progress += [
        (topics.REPORTS_TRIAGED, triaged(event.case_id, event.report_id, triaged_at, "hotline-a")),
        (topics.TASKS_EVENTS, assigned(event.case_id, event.report_id, routed_at)),
    ]
    world.lose_state()

    status = await world.intake().report_status(partner(), event.report_id)

    assert status.status is ReportState.ROUTED
    assert str(status.case_id) == first["case_id"]
    assert (status.triaged_at, status.routed_at) == (triaged_at, routed_at)
    assert status.received_at == START
    # What triage drew from this partner's own reports, never the case's combined result.
    assert (status.classification, status.priority) == (Classification.TF_CSEA, Priority.P3)
    assert world.guard.rebuilds == 1


async def test_an_event_passes_the_guard_before_it_is_applied(world: World) -> None:
    await world.intake().submit_json(submission(None))
    [event] = sent_events(world)
    assert event.report_id is not None
    world.lose_state()

    await world.intake().on_progress(triaged(event.case_id, event.report_id, START, None))

    assert world.guard.rebuilds == 1
    assert "triaged_at" in world.store.statuses[event.report_id]


async def test_another_deployments_reports_on_the_shared_topics_are_left_alone(
    world: World,
) -> None:
    """A case this deployment never held a key for is not its own (intake keeps a key, or
    its erasure, for every case it sealed for): none of its state is written."""
    await world.intake().submit_json(submission())
    [event] = sent_events(world)
    world.sealer.unknown.add(event.case_id)
    world.lose_state()

    unsealed = event.model_copy(update={"data": {**event.data, "personal": None}})
    world.history.progress.append((topics.REPORTS_RECEIVED, unsealed))  # not intake's making

    counts = await world.rebuild()()

    assert (counts["reports"], counts["foreign"]) == (0, 2)
    assert world.store.statuses == {}
    assert world.store.held == {}
    assert world.store.answers == {}


# --- the fold itself ------------------------------------------------------------------------


def windows(**overrides: int) -> Windows:
    config = IntakeSettings()
    values = {
        "duplicate_s": config.duplicate_window_s,
        "link_s": config.link_ttl_s,
        "held_s": config.held_event_ttl_s,
        "idempotency_s": config.idempotency_ttl_s,
        "max_linked_reports": config.max_linked_reports,
    } | overrides
    return Windows(**values)


async def fold_of(
    world: World, records: list[Recorded], now: datetime, **overrides: int
) -> RestoredState:
    fold = StateFold(Matcher(SECRET, world.refs.vocabulary), windows(**overrides), now)
    for recorded in records:
        sealed = fold.sealed(recorded)
        fold.add(recorded, await world.sealer.open(*sealed) if sealed else None)
    return fold.state()


async def three_reports(world: World) -> None:
    intake = world.intake()
    await intake.submit_json(submission("k1"))
    world.clock.advance(60)
    await intake.submit_json(submission("k2", report_body(narrative="second")))
    world.clock.advance(60)
    await intake.submit_json(submission("k3", report_body(phone="0751 000 0000")))


async def test_the_fold_does_not_depend_on_the_order_it_reads_the_topics_in(
    world: World,
) -> None:
    await three_reports(world)
    records = world.history.records()
    now = world.clock.now()
    assert await fold_of(world, records, now) == await fold_of(world, records[::-1], now)


async def test_folding_twice_restores_the_same_and_overwrites_nothing_newer(
    world: World,
) -> None:
    await three_reports(world)
    [first, second, third] = sent_events(world)
    assert first.report_id is not None
    world.lose_state()
    # Newer state written meanwhile by a live event in another replica.
    world.store.statuses[first.report_id] = {"triaged_at": "2030-01-01T00:00:00+00:00"}

    def everything() -> str:
        store = world.store
        kept = (store.links, store.duplicates, store.held, store.answers, store.statuses)
        return repr(kept) + repr(store.case_reports) + repr(store.openers)

    rebuild = world.rebuild()
    await rebuild()
    after_once = everything()
    await rebuild()

    assert everything() == after_once
    status = world.store.statuses[first.report_id]
    assert status["triaged_at"] == "2030-01-01T00:00:00+00:00"
    assert status["case_id"] == str(first.case_id)
    assert [r.report_id for r in world.store.case_reports[first.case_id]] == [
        first.report_id,
        second.report_id,
    ]
    assert [r.report_id for r in world.store.case_reports[third.case_id]] == [third.report_id]
    assert len(world.store.answers) == 3


async def test_a_key_whose_link_another_replica_wrote_meanwhile_keeps_it(world: World) -> None:
    await world.intake().submit_json(submission(None))
    world.lose_state()
    elsewhere = uuid.uuid4()
    matcher = Matcher(SECRET, world.refs.vocabulary)
    report = canonical_report(json.loads(report_body()), world.refs)
    [key] = matcher.keys("hotline-a", report)
    world.store.links[key.digest] = elsewhere

    await world.rebuild()()

    assert world.store.links[key.digest] == elsewhere


async def test_what_expired_is_not_written_again_and_old_events_are_not_held(
    world: World,
) -> None:
    await world.intake().submit_json(submission())
    [event] = sent_events(world)
    world.sealer.erased.add(event.case_id)
    records = world.history.records()

    soon = await fold_of(world, records, START + timedelta(days=1))
    [report] = soon.reports
    assert report.held is not None
    assert report.fingerprint is None
    assert report.held.event.model_dump_json().encode() == world.publisher.bodies()[0]
    assert [a.key_digest for a in soon.answers] == [
        Matcher(SECRET, world.refs.vocabulary).idempotency_key("hotline-a", "key-1")
    ]

    later = await fold_of(world, records, START + timedelta(days=30))
    [report] = later.reports
    assert report.held is None  # past the held window: a retry makes the event afresh
    assert later.answers == []  # past the Idempotency-Key's window

    gone = await fold_of(world, records, START + timedelta(days=3650))
    assert gone == RestoredState([], [], [], [])


async def test_a_batchs_rows_restore_no_answer_but_are_recognised(world: World) -> None:
    rows = b'{"channel": "ngo", "narrative": "row 1"}\n{"channel": "ngo", "narrative": "row 2"}'
    ngo = partner("ngo-b", PartnerKind.NGO)
    await world.intake().submit_batch(Submission(ngo, rows, "batch-1"), "ndjson", None)
    world.lose_state()

    again = answer_json(
        await world.intake().submit_batch(Submission(ngo, rows, "batch-1"), "ndjson", None)
    )

    assert (again["accepted"], again["duplicates"]) == (0, 2)
    assert len(world.publisher.sent) == 2
    assert all(e.data["idempotency"] is None for e in sent_events(world))


async def test_a_sealed_part_that_is_not_the_events_report_is_not_matched(
    world: World,
) -> None:
    """The fingerprint derived again must give the event's report id; anything else (another
    version's sealed shape, a tampered event) is not trusted for matching."""
    await world.intake().submit_json(submission(None))
    [recorded] = world.history.records()
    fold = StateFold(Matcher(SECRET, world.refs.vocabulary), windows(), world.clock.now())
    other = personal_fields(canonical_report(json.loads(report_body(narrative="x")), world.refs))
    fold.add(recorded, json.dumps(other).encode())

    [report] = fold.state().reports
    assert report.fingerprint is None
    assert fold.state().links == []


def test_a_sealed_canonical_report_gives_back_its_fingerprint_and_keys(
    refs: Normalisers,
) -> None:
    matcher = Matcher(SECRET, refs.vocabulary)
    xml = (FIXTURES / "cybertipline_full.xml").read_bytes()
    reports = [
        parse_cybertipline(xml, refs, XmlLimits(64, 10_000), Deadline.after(10)),
        canonical_report(json.loads(report_body()), refs),
        canonical_report({"channel": "ngo", "narrative": "only words"}, refs),
    ]
    for report in reports:
        back = report_from_personal(json.loads(json.dumps(personal_fields(report))))
        assert back is not None
        assert matcher.fingerprint("p", back) == matcher.fingerprint("p", report)
        assert matcher.keys("p", back) == matcher.keys("p", report)
    assert len(matcher.keys("p", reports[0])) > 5


async def test_a_retry_of_an_accepted_report_is_its_answer_or_the_same_bytes(
    world: World,
) -> None:
    """Whatever the retry (same key, another key, no key), the topic never gets a second
    version of the report's event."""
    first = answer_json(await world.intake().submit_json(submission("key-1")))
    world.lose_state()
    for key in ("key-1", "key-2", None):
        answer = answer_json(await world.intake().submit_json(submission(key)))
        assert answer["case_id"] == first["case_id"]
        assert first["report_id"] in (answer["report_id"], answer["duplicate_of"])
    bodies = world.publisher.bodies()
    assert len(set(bodies)) == 1
    ReportAccepted.model_validate(first)
