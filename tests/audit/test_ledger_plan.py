"""Planning an append (no I/O): the rows a batch writes, and the tree it leaves behind, which the
PostgreSQL writer keeps to plan its next batch without reading the database."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain import merkle
from services.audit.domain.append_plan import Recorded, TreeState, plan_appends
from services.audit.domain.entry import NewEntry, canonical_json, finalize

RECORDED = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)


def new_entry(key: str) -> NewEntry:
    return NewEntry(
        dedup_key=key,
        fields={
            "time": (RECORDED - timedelta(minutes=5)).isoformat(),
            "action": "report.received",
            "case_id": None,
            "report_id": None,
            "task_id": None,
            "agency": None,
            "actor": {"kind": "partner", "id": "partner-hotline", "agency": None},
            "producer": "intake",
            "source_event_id": None,
            "detail": None,
            "event_sha256": hashlib.sha256(key.encode()).hexdigest(),
            "topic": "t",
            "partition": 0,
            "offset": 0,
        },
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8))
def test_batches_planned_on_the_last_tree_make_the_rfc_tree(batch_sizes: list[int]) -> None:
    store = merkle.MemoryNodeStore()
    tree = TreeState(0, {})
    serial = 0
    for count in batch_sizes:
        batch = [new_entry(f"e{serial + n}") for n in range(count)]
        serial += count
        plan = plan_appends(batch, {}, tree.size, tree.peaks, RECORDED)
        assert [r.leaf_index for r in plan.results] == list(range(tree.size, tree.size + count))
        for row in plan.entry_rows:
            assert row["leaf_hash"] == merkle.leaf_hash(row["entry"].encode())
            store.append(row["leaf_hash"])
        # The planned nodes are exactly those the reference tree stores for the new leaves.
        assert all(store.get(r["level"], r["idx"]) == r["hash"] for r in plan.node_rows)
        tree = plan.tree
        assert tree.size == store.size
        assert tree.peaks == {key: store.get(*key) for key in merkle.root_nodes(tree.size)}
        assert merkle.root(tree.size, tree.peaks) == merkle.root(store.size, store)


def test_recorded_and_repeated_keys_take_no_leaf_and_leave_the_tree_as_it_was() -> None:
    first = plan_appends([new_entry("a"), new_entry("b")], {}, 0, {}, RECORDED)
    recorded = {row["dedup_key"]: Recorded(row["seq"], row["entry"]) for row in first.entry_rows}
    again = plan_appends(
        [new_entry("a"), new_entry("c"), new_entry("c")],
        recorded,
        first.tree.size,
        first.tree.peaks,
        RECORDED,
    )
    assert [(r.leaf_index, r.created) for r in again.results] == [(0, False), (2, True), (2, False)]
    assert [row["dedup_key"] for row in again.entry_rows] == ["c"]
    assert again.tree.size == 3
    nothing = plan_appends([new_entry("a")], recorded, 3, again.tree.peaks, RECORDED)
    assert nothing.entry_rows == []
    assert nothing.node_rows == []
    assert nothing.tree == again.tree


def test_the_planned_leaf_is_the_finalized_entry() -> None:
    entry = new_entry("a")
    plan = plan_appends([entry], {}, 5, _peaks_of(5), RECORDED)
    row = plan.entry_rows[0]
    assert row["seq"] == 5
    assert row["entry"] == canonical_json(finalize(entry, seq=5, recorded_at=RECORDED)).decode()


def _peaks_of(size: int) -> dict[merkle.NodeKey, bytes]:
    store = merkle.MemoryNodeStore.from_leaf_hashes(
        merkle.leaf_hash(b"%d" % n) for n in range(size)
    )
    return {key: store.get(*key) for key in merkle.root_nodes(size)}
