"""Planning conflicts (no I/O): the same key with the same bytes is a redelivery and adds
nothing; with other bytes it is a conflict entry, whichever version came first, and never
replaces the recorded one."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

from contracts import topics
from contracts.events import Actor, ActorKind, CaseAccessData, Envelope, EventType, make_event
from ocsea.runtime.consumer import Origin
from services.audit.domain import merkle
from services.audit.domain.append_plan import Recorded, lookup_keys, plan_appends
from services.audit.domain.entry import CONFLICT, NewEntry, conflict_key, event_entry
from services.audit.handlers.verify import Verdict

RECORDED = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)


def viewed(viewer: str, *, event_id: uuid.UUID | None = None, case_id: uuid.UUID) -> Envelope:
    return make_event(
        event_type=EventType.CASE_VIEWED,
        event_id=event_id,
        case_id=case_id,
        producer="routing",
        actor=Actor(kind=ActorKind.OFFICER, id=viewer, agency="erbil-cpu"),
        data=CaseAccessData(viewer=viewer, role="officer", agency="erbil-cpu", reason="open task"),
        occurred_at=RECORDED - timedelta(minutes=1),
    )


def entry_of(envelope: Envelope, offset: int) -> NewEntry:
    body = envelope.model_dump_json().encode()
    origin = Origin(topics.ACCESS, 2, offset, hashlib.sha256(body).hexdigest())
    return event_entry(envelope, origin)


def pair() -> tuple[NewEntry, NewEntry]:
    """A real access record, and a forgery under its event id that hides who looked."""
    case = uuid.uuid4()
    real = viewed("officer-erbil-cpu", case_id=case)
    forged = viewed("officer-duhok-cpu", event_id=real.event_id, case_id=case)
    return entry_of(forged, 10), entry_of(real, 11)


def test_lookup_asks_for_conflict_keys_only_of_recorded_keys() -> None:
    forged, real = pair()
    batch = [forged, real, real]
    assert lookup_keys(batch) == [forged.dedup_key]
    assert lookup_keys(batch, {}) == []  # none recorded: none can have a recorded conflict
    recorded = {forged.dedup_key: Recorded(0, "{}")}
    assert lookup_keys(batch, recorded) == [conflict_key(forged), conflict_key(real)]
    assert conflict_key(forged) != conflict_key(real)


def test_a_forgery_ahead_of_the_real_event_keeps_the_id_and_the_real_one_is_a_conflict() -> None:
    forged, real = pair()
    plan = plan_appends([forged, real, real, forged], {}, 0, {}, RECORDED)
    assert [(r.leaf_index, r.created, r.conflict_with) for r in plan.results] == [
        (0, True, None),
        (1, True, 0),
        (1, False, 0),  # the same other version again: its conflict is recorded already
        (0, False, None),  # the first version again: a redelivery
    ]
    first, conflict = (json.loads(row["entry"]) for row in plan.entry_rows)
    assert first["source_event_id"] == forged.dedup_key
    assert first["event_sha256"] == forged.fields["event_sha256"]
    assert conflict["action"] == CONFLICT
    assert conflict["source_event_id"] is None  # contested: not taken as fact
    assert (conflict["topic"], conflict["partition"], conflict["offset"]) == (topics.ACCESS, 2, 11)
    assert conflict["event_sha256"] == real.fields["event_sha256"]
    assert conflict["actor"]["id"] == "officer-erbil-cpu"  # what the other version claims
    assert conflict["case_id"] == real.case_id
    assert conflict["detail"] == {
        "contested_key": real.dedup_key,
        "claimed_action": "case.viewed",
        "claimed_detail": None,
        "recorded_leaf_index": 0,
        "recorded_sha256": forged.fields["event_sha256"],
        "recorded_topic": topics.ACCESS,
        "recorded_partition": 2,
        "recorded_offset": 10,
        "differing_fields": ["actor"],
    }
    assert plan.entry_rows[1]["dedup_key"] == conflict_key(real)
    assert plan.entry_rows[1]["action"] == CONFLICT
    assert plan.entry_rows[1]["source_event_id"] is None
    # Both are leaves of the tree like any other entry.
    hashes = [merkle.leaf_hash(row["entry"].encode()) for row in plan.entry_rows]
    assert merkle.root(plan.tree.size, plan.tree.peaks) == merkle.root_from_leaf_hashes(hashes)


def test_versions_recorded_earlier_are_compared_as_stored() -> None:
    forged, real = pair()
    first = plan_appends([forged], {}, 0, {}, RECORDED)
    known = {row["dedup_key"]: Recorded(row["seq"], row["entry"]) for row in first.entry_rows}
    later = plan_appends([real], known, 1, first.tree.peaks, RECORDED)
    assert [(r.leaf_index, r.created, r.conflict_with) for r in later.results] == [(1, True, 0)]
    known |= {row["dedup_key"]: Recorded(row["seq"], row["entry"]) for row in later.entry_rows}
    third = entry_of(
        viewed("someone", event_id=uuid.UUID(real.dedup_key), case_id=uuid.uuid4()), 12
    )
    again = plan_appends([real, forged, third], known, 2, later.tree.peaks, RECORDED)
    assert [(r.leaf_index, r.created, r.conflict_with) for r in again.results] == [
        (1, False, 0),
        (0, False, None),
        (2, True, 0),  # a third version is a conflict of its own
    ]
    detail = json.loads(again.entry_rows[0]["entry"])["detail"]
    assert detail["differing_fields"] == ["actor", "case_id"]


def test_the_verifier_counts_what_the_ledger_recorded_as_suspect() -> None:
    forged, real = pair()
    plan = plan_appends([forged, real], {}, 0, {}, RECORDED)
    verdict = Verdict(ok=True)
    for row in plan.entry_rows:
        verdict.count_recorded(row["entry"])
    verdict.note_recorded()
    assert (verdict.conflicts, verdict.offset_gaps) == (1, 0)
    assert "1 conflict(s)" in verdict.steps[-1]
