"""Planning an append, with no I/O: which entries a batch adds, at which leaf indexes, which of
its records are conflicts, and which Merkle nodes and rows appending them writes.

A record whose key is recorded already adds nothing when it is the same record again (same
digest), and becomes a ``conflict`` entry when its bytes differ (``entry.py``): the first one
recorded keeps the key, the other is never dropped and never replaces it. (The gaps in a
partition's offsets come as entries of their own, from ``offsets.py``.)

Every ledger writer plans with `plan_appends`, then writes the rows it returns in one
transaction; the planner is the one place that decides what an append means.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.audit.domain import merkle
from services.audit.domain.entry import (
    NewEntry,
    canonical_json,
    conflict_entry,
    conflict_key,
    finalize,
    is_redelivery,
)


@dataclass(frozen=True)
class Appended:
    leaf_index: int
    created: bool
    conflict_with: int | None = None
    """For a record that contests a recorded entry's key: that entry's leaf index (the leaf
    given is then the conflict entry's)."""


@dataclass(frozen=True)
class Recorded:
    """An entry already in the ledger (or earlier in the batch), as the planner compares it."""

    leaf_index: int
    text: str

    @functools.cached_property
    def entry(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed


@dataclass(frozen=True)
class TreeState:
    """A tree as a writer needs it to append: its size and its peaks (the hashes of
    ``merkle.root_nodes(size)``, from which every node an append reads can be derived)."""

    size: int
    peaks: dict[merkle.NodeKey, bytes]


@dataclass
class AppendPlan:
    results: list[Appended]
    """One per entry planned, in order: its leaf index, whether it is new, what it contests."""
    entry_rows: list[dict[str, Any]]
    """Each new entry as the ledger keeps it: its leaf index (`seq`), key, canonical text and
    leaf hash, and copies of the fields it is searched by."""
    node_rows: list[dict[str, Any]]
    """The Merkle nodes the new leaves complete: `level`, `idx`, `hash`."""
    tree: TreeState
    """The tree once these rows are written."""


def lookup_keys(
    entries: Sequence[NewEntry], known: Mapping[str, Recorded] | None = None
) -> list[str]:
    """The keys whose recorded entries planning `entries` needs, in two rounds: first each
    entry's own key; then, for the entries whose key `known` (the first round's answer) holds,
    the key their conflict entry would have, so the same other version again adds nothing.
    (Only a recorded key can have a recorded conflict: the usual batch needs one round.)"""
    if known is None:
        return list(dict.fromkeys(e.dedup_key for e in entries))
    return list(dict.fromkeys(conflict_key(e) for e in entries if e.dedup_key in known))


def plan_appends(
    entries: Sequence[NewEntry],
    known: Mapping[str, Recorded],
    size: int,
    nodes: dict[merkle.NodeKey, bytes],
    recorded_at: datetime,
) -> AppendPlan:
    """The rows appending `entries` to a tree of `size` leaves writes.

    `known` maps the already recorded keys among `lookup_keys` to their entries;
    `nodes` must hold ``merkle.root_nodes(size)``, from which every node an append reads can
    be derived. An entry whose key is known adds nothing if it is the same record again, and
    is appended as a conflict entry if its bytes differ.
    """
    known = dict(known)
    nodes = dict(nodes)
    plan = AppendPlan([], [], [], TreeState(size, {}))
    for new in entries:
        contested: int | None = None
        recorded = known.get(new.dedup_key)
        if recorded is not None:
            if is_redelivery(new, recorded.entry):
                plan.results.append(Appended(recorded.leaf_index, False))
                continue
            contested = recorded.leaf_index
            new = conflict_entry(new, recorded.entry)
            again = known.get(new.dedup_key)
            if again is not None:  # this other version is recorded as a conflict already
                plan.results.append(Appended(again.leaf_index, False, contested))
                continue
        seq = size
        encoded = canonical_json(finalize(new, seq=seq, recorded_at=recorded_at))
        leaf = merkle.leaf_hash(encoded)
        for level, index, value in merkle.append_nodes(seq, leaf, nodes):
            nodes[(level, index)] = value
            plan.node_rows.append({"level": level, "idx": index, "hash": value})
        plan.entry_rows.append(
            {
                "seq": seq,
                "dedup_key": new.dedup_key,
                "source_event_id": new.source_event_id,
                "case_id": new.case_id,
                "action": new.action,
                "actor_id": new.actor_id,
                "actor_agency": new.actor_agency,
                "subject_agency": new.subject_agency,
                "occurred_at": new.occurred_at.astimezone(UTC),
                "recorded_at": recorded_at,
                "entry": encoded.decode(),
                "leaf_hash": leaf,
            }
        )
        known[new.dedup_key] = Recorded(seq, encoded.decode())
        plan.results.append(Appended(seq, True, contested))
        size += 1
    # A peak missing from `nodes` (a damaged ledger) stays missing: appending fails only once
    # it needs that node, as it did when every append read the peaks from the database.
    peaks = {key: nodes[key] for key in merkle.root_nodes(size) if key in nodes}
    plan.tree = TreeState(size, peaks)
    return plan
