"""The auditor's side: check a ledger, or a case bundle, trusting nothing the server says.

The one thing trusted is a checkpoint the auditor kept (and the key it was signed with). From a
source that can be lying (the running service, or a file exported from it) the verifier takes
the current signed checkpoint and every leaf, recomputes every leaf hash and both tree heads,
and accepts only if they reproduce the kept checkpoint and the current one, signed by the same
key. Anything the source claims beyond that (its stored leaf hashes, its consistency proofs) is
used only to *locate* a failure, and only after it has been authenticated against a trusted
root, so a lying source can hide where the damage is but never make damage pass.

It also counts what the ledger itself recorded as suspect, conflicts and offset gaps: they do not
make a ledger fail (they are facts it holds, intact), but an auditor should look at them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.audit.domain import merkle
from services.audit.domain.bundle import CaseBundle
from services.audit.domain.checkpoint import (
    Checkpoint,
    CheckpointError,
    pinned_key_of,
    verify_checkpoint,
)
from services.audit.domain.entry import CONFLICT, OFFSET_GAP
from services.audit.ports import LedgerSource, Progress, SourceLeaf

__all__ = ["LedgerSource", "SourceLeaf", "Verdict", "verify_bundle", "verify_ledger"]


# "action" sorts first among an entry's keys, so its canonical JSON starts with it.
_CONFLICT_LEAF = f'{{"action":"{CONFLICT}"'
_GAP_LEAF = f'{{"action":"{OFFSET_GAP}"'


@dataclass
class Verdict:
    ok: bool
    tree_size: int = 0
    first_bad_index: int | None = None
    problems: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    conflicts: int = 0
    """Entries recording a record that claimed a recorded key with other bytes."""
    offset_gaps: int = 0
    """Entries recording offsets of a partition the ledger never received."""

    def count_recorded(self, text: str) -> None:
        if text.startswith(_CONFLICT_LEAF):
            self.conflicts += 1
        elif text.startswith(_GAP_LEAF):
            self.offset_gaps += 1

    def note_recorded(self) -> None:
        if self.conflicts or self.offset_gaps:
            self.steps.append(
                f"to look into: {self.conflicts} conflict(s) (a recorded key claimed with other "
                f"bytes) and {self.offset_gaps} offset gap(s) recorded "
                "(GET /v1/audit/conflicts, /v1/audit/gaps)"
            )

    def fail(self, problem: str, index: int | None = None) -> None:
        self.ok = False
        self.problems.append(problem)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index


class _StreamingRoot:
    """RFC 9162 tree head over leaves added one by one; readable at any point."""

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.count = 0

    def add(self, leaf: bytes) -> None:
        self.count += 1
        merges, node = self.count, leaf
        while not merges & 1:
            node = hashlib.sha256(b"\x01" + self._stack.pop() + node).digest()
            merges >>= 1
        self._stack.append(node)

    def root(self) -> bytes:
        if not self._stack:
            return merkle.EMPTY_ROOT
        result = self._stack[-1]
        for node in reversed(self._stack[:-1]):
            result = merkle.node_hash(node, result)
        return result


class _LevelStore:
    """Every complete subtree of a list of leaf hashes, to compute any prefix's root quickly."""

    def __init__(self, leaf_hashes: bytes) -> None:
        level = [leaf_hashes[i : i + 32] for i in range(0, len(leaf_hashes), 32)]
        self._levels = [level]
        while len(level) > 1:
            level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self._levels.append(level)

    def get(self, level: int, index: int) -> bytes:
        try:
            return self._levels[level][index]
        except IndexError:
            raise merkle.MissingNodeError(level, index) from None


def _hashes(packed: bytes | bytearray, count: int) -> Iterator[bytes]:
    view = memoryview(packed)
    for i in range(count):
        yield bytes(view[i * 32 : (i + 1) * 32])


def _check_head(
    verdict: Verdict, source: LedgerSource, trusted: Checkpoint, pinned: bytes
) -> Checkpoint | None:
    try:
        head = source.checkpoint()
    except Exception as exc:  # what a lying or broken source returns is not to be trusted
        verdict.fail(f"cannot read the source's checkpoint: {exc}")
        return None
    try:
        verify_checkpoint(head, pinned)
    except CheckpointError as exc:
        verdict.fail(f"the source's checkpoint: {exc}")
        return None
    if head.origin != trusted.origin:
        verdict.fail(
            f"the source is ledger {head.origin!r}, the kept checkpoint is {trusted.origin!r}"
        )
        return None
    verdict.steps.append(
        f"source's checkpoint: size {head.tree_size}, root {head.root_hash[:16]}…, "
        f"signed {head.timestamp}: signature ok"
    )
    if head.tree_size < trusted.tree_size:
        verdict.fail(
            f"the ledger shrank: it has {head.tree_size} entries, the kept checkpoint "
            f"{trusted.tree_size}",
            head.tree_size,
        )
        return None
    return head


def _check_consistency(
    verdict: Verdict, source: LedgerSource, trusted: Checkpoint, head: Checkpoint
) -> bool:
    """Whether the source proved its head extends the kept one (before reading any leaf)."""
    if trusted.tree_size == 0:
        verdict.steps.append("consistency: the kept checkpoint is empty; every ledger extends it")
        return True
    try:
        if trusted.tree_size == head.tree_size:
            proof: list[bytes] | None = []
        else:
            proof = source.consistency_proof(trusted.tree_size, head.tree_size)
        if proof is None:
            verdict.steps.append("consistency: checked from the leaves themselves (no proofs)")
            return True
        merkle.verify_consistency(trusted.tree_size, head.tree_size, trusted.root, head.root, proof)
    except Exception as exc:
        verdict.fail(
            f"the source's checkpoint (size {head.tree_size}) is not a proven extension of the "
            f"kept one (size {trusted.tree_size}): {exc}"
        )
        return False
    verdict.steps.append(f"consistency {trusted.tree_size} → {head.tree_size}: ok")
    return True


def _read_leaves(
    verdict: Verdict,
    source: LedgerSource,
    size: int,
    kept_size: int,
    progress: Progress | None,
    page: int,
) -> tuple[bytearray, bytearray, bytes, bytes]:
    """Recompute every leaf; returns (recomputed, claimed, root at kept_size, root at size)."""
    recomputed, claimed = bytearray(), bytearray()
    tree = _StreamingRoot()
    kept_root = merkle.EMPTY_ROOT
    expected = 0
    for start in range(0, size, page):
        end = min(size, start + page)
        for leaf in source.leaves(start, end):
            if leaf.leaf_index != expected:
                verdict.fail(
                    f"the source skipped leaf {expected} (next came {leaf.leaf_index})", expected
                )
                return recomputed, claimed, kept_root, b""
            text = leaf.text
            if text is None:
                verdict.fail(f"entry {expected} is missing", expected)
                data = b""
            else:
                data = text.encode()
                _check_entry(verdict, expected, text)
                verdict.count_recorded(text)
            digest = merkle.leaf_hash(data)
            recomputed += digest
            claimed += leaf.claimed_hash if leaf.claimed_hash is not None else bytes(32)
            tree.add(digest)
            expected += 1
            if expected == kept_size:
                kept_root = tree.root()
        if expected != end:
            verdict.fail(f"the source returned leaves up to {expected}, not {end}", expected)
            return recomputed, claimed, kept_root, b""
        if progress is not None:
            progress(expected, size)
    return recomputed, claimed, kept_root, tree.root()


def _check_entry(verdict: Verdict, index: int, text: str) -> None:
    # Canonical JSON sorts keys, so a sound entry holds `"seq":<index>,` right before
    # "source_event_id"; finding it is far cheaper than parsing a million entries, and only a
    # miss is worth parsing for a precise message. (Integrity itself is the roots' job.)
    if f'"seq":{index},"source_event_id"' in text:
        return
    try:
        entry = json.loads(text)
    except ValueError:
        verdict.fail(f"entry {index} is not JSON", index)
        return
    if not isinstance(entry, dict) or entry.get("seq") != index:
        found = entry.get("seq") if isinstance(entry, dict) else None
        verdict.fail(f"entry {index} says it is entry {found}", index)


def _locate(
    source: LedgerSource, recomputed: bytearray, claimed: bytearray, anchor: Checkpoint
) -> int | None:
    """The first leaf whose recomputed hash differs from the original, if it can be proven.

    1. The source's stored leaf hashes, if they reproduce the trusted root, are the original
       ones, and the first difference is the first bad leaf.
    2. Otherwise, bisection: a prefix is intact if the source proves it consistent with the
       trusted root; O(log n) proofs find the longest prefix that is. If not even one leaf can
       be proven, the source's own tree was rewritten and nothing can be pinned down.
    """
    size = anchor.tree_size
    if merkle.root_from_leaf_hashes(_hashes(claimed, size)) == anchor.root:
        pairs = zip(_hashes(recomputed, size), _hashes(claimed, size), strict=True)
        return next((i for i, (mine, theirs) in enumerate(pairs) if mine != theirs), None)
    levels = _LevelStore(bytes(recomputed[: size * 32]))

    def intact(prefix: int) -> bool:
        proof = source.consistency_proof(prefix, size)
        if proof is None:
            raise LookupError("the source gives no proofs")
        mine = merkle.root(prefix, levels)
        try:
            merkle.verify_consistency(prefix, size, mine, anchor.root, proof)
        except merkle.ProofError:
            return False
        return True

    good, bad = 0, size  # invariant: prefix `good` proven intact, prefix `bad` is not
    try:
        while bad - good > 1:
            middle = (good + bad) // 2
            if intact(middle):
                good = middle
            else:
                bad = middle
    except Exception:
        return None
    return good if good > 0 else None


def verify_ledger(
    source: LedgerSource,
    trusted: Checkpoint,
    *,
    pinned_key: bytes | None = None,
    progress: Progress | None = None,
    page: int = 10_000,
) -> Verdict:
    """Check every leaf of the source against the kept checkpoint and the source's own."""
    verdict = Verdict(ok=True)
    try:
        verify_checkpoint(trusted, pinned_key)
    except CheckpointError as exc:
        verdict.fail(f"the kept checkpoint: {exc}")
        return verdict
    pinned = pinned_key_of(trusted)
    verdict.steps.append(
        f"kept checkpoint: size {trusted.tree_size}, root {trusted.root_hash[:16]}…, "
        f"signed {trusted.timestamp} by key {trusted.key_id[:16]}…: signature ok"
    )
    head = _check_head(verdict, source, trusted, pinned)
    if head is None:
        return verdict
    verdict.tree_size = head.tree_size
    consistent = _check_consistency(verdict, source, trusted, head)
    recomputed, claimed, kept_root, head_root = _read_leaves(
        verdict, source, head.tree_size, trusted.tree_size, progress, page
    )
    if len(recomputed) != head.tree_size * 32:
        return verdict
    kept_ok = trusted.tree_size == 0 or kept_root == trusted.root
    head_ok = head_root == head.root
    if kept_ok:
        verdict.steps.append(
            f"the recomputed leaves reproduce the kept checkpoint's root (size {trusted.tree_size})"
        )
    else:
        verdict.fail(
            f"the recomputed leaves do not reproduce the kept checkpoint's root "
            f"(size {trusted.tree_size}): entries before {trusted.tree_size} were changed"
        )
    if head_ok:
        verdict.steps.append(
            f"the recomputed leaves reproduce the source's checkpoint root (size {head.tree_size})"
        )
    else:
        verdict.fail(
            f"the recomputed leaves do not reproduce the source's checkpoint root "
            f"(size {head.tree_size})"
        )
    verdict.note_recorded()
    if not (kept_ok and head_ok):
        # Locate against the kept checkpoint when its own prefix fails: it is the one root
        # trusted outright. Otherwise the damage lies beyond it, under the source's head.
        anchor = trusted if not kept_ok else head
        located = (
            _locate(source, recomputed, claimed, anchor) if consistent or not kept_ok else None
        )
        if located is not None:
            verdict.fail(f"leaf {located} is not the leaf the checkpoints signed", located)
        elif verdict.first_bad_index is None:
            verdict.problems.append(
                "the source's own tree was rewritten too, so where the damage starts cannot be "
                "proven from here"
            )
    return verdict


def verify_bundle(
    bundle: CaseBundle, *, trusted: Checkpoint | None = None, pinned_key: bytes | None = None
) -> Verdict:
    """Check a case bundle offline: its checkpoint's signature, and every entry's inclusion."""
    verdict = Verdict(ok=True, tree_size=bundle.checkpoint.tree_size)
    if trusted is not None:
        try:
            verify_checkpoint(trusted, pinned_key)
        except CheckpointError as exc:
            verdict.fail(f"the kept checkpoint: {exc}")
            return verdict
        pinned_key = pinned_key_of(trusted)
    checkpoint = bundle.checkpoint
    try:
        verify_checkpoint(checkpoint, pinned_key)
    except CheckpointError as exc:
        verdict.fail(f"the bundle's checkpoint: {exc}")
        return verdict
    pin_note = (
        "pinned key" if pinned_key is not None else "its own key (not pinned: compare key_id)"
    )
    verdict.steps.append(
        f"bundle checkpoint: size {checkpoint.tree_size}, root {checkpoint.root_hash[:16]}…, "
        f"key {checkpoint.key_id[:16]}…: signature ok against {pin_note}"
    )
    if (
        trusted is not None
        and trusted.tree_size == checkpoint.tree_size
        and trusted.root_hash != checkpoint.root_hash
    ):
        verdict.fail("the bundle and the kept checkpoint sign two roots for the same size")
    for item in bundle.entries:
        index = item.leaf_index
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(item.leaf.encode()),
                index,
                checkpoint.tree_size,
                [bytes.fromhex(p) for p in item.inclusion_proof],
                checkpoint.root,
            )
        except (merkle.ProofError, ValueError) as exc:
            verdict.fail(f"entry {index}: {exc}", index)
            continue
        _check_entry(verdict, index, item.leaf)
        verdict.count_recorded(item.leaf)
        try:
            case_id = json.loads(item.leaf).get("case_id")
        except (ValueError, AttributeError):
            continue
        if case_id != str(bundle.case_id):
            verdict.fail(f"entry {index} belongs to case {case_id}, not {bundle.case_id}", index)
    if verdict.ok:
        verdict.steps.append(
            f"{len(bundle.entries)} entries of case {bundle.case_id}: each proven included"
        )
    verdict.note_recorded()
    return verdict
