"""The auditor's verifier against sources that lie in every way the drills can think of.

A source here is an in-memory ledger: the entries' text, the tree's stored leaf hashes, the
proofs it serves and its signed checkpoint can each be tampered with independently, as they can
in a database changed behind the service's back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain import merkle
from services.audit.domain.bundle import BundleEntry, CaseBundle
from services.audit.domain.checkpoint import Checkpoint, raw_public_key, sign_checkpoint
from services.audit.domain.entry import canonical_json
from services.audit.handlers.verify import verify_bundle, verify_ledger
from services.audit.ports import SourceLeaf

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
INTRUDER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(5, 37)))
AT = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
CASES = [uuid.UUID(int=n) for n in range(1, 4)]


def entry_text(seq: int, action: str = "report.received") -> str:
    return canonical_json(
        {"seq": seq, "action": action, "case_id": str(CASES[seq % 3]), "actor": {"id": "p"}}
    ).decode()


def checkpoint_of(
    store: merkle.MemoryNodeStore, size: int, key: Ed25519PrivateKey = KEY
) -> Checkpoint:
    return sign_checkpoint(
        key, origin="ocsea-audit", tree_size=size, root=merkle.root(size, store), at=AT
    )


def tree_of(texts: list[str | None]) -> merkle.MemoryNodeStore:
    return merkle.MemoryNodeStore.from_leaf_hashes(
        merkle.leaf_hash((t or "").encode()) for t in texts
    )


@dataclass
class Source:
    texts: list[str | None]
    store: merkle.MemoryNodeStore
    head: Checkpoint
    proofs: bool = True
    description: str = "memory"
    claimed: list[bytes] = field(default_factory=list)
    proof_calls: int = 0

    def __post_init__(self) -> None:
        if not self.claimed:
            self.claimed = [self.store.get(0, i) for i in range(self.head.tree_size)]

    def checkpoint(self) -> Checkpoint:
        return self.head

    def leaves(self, start: int, end: int) -> Iterator[SourceLeaf]:
        for i in range(start, min(end, len(self.texts))):
            yield SourceLeaf(i, self.texts[i], self.claimed[i])

    def consistency_proof(self, first: int, second: int) -> list[bytes] | None:
        self.proof_calls += 1
        return merkle.consistency_proof(first, second, self.store) if self.proofs else None


SIZE, KEPT = 100, 70
ORIGINAL = [entry_text(i) for i in range(SIZE)]
STORE = tree_of(list(ORIGINAL))
TRUSTED = checkpoint_of(STORE, KEPT)
HEAD = checkpoint_of(STORE, SIZE)


def behind_the_back(texts: list[str | None], **changes: object) -> Source:
    """The entries table changed; the tree and the signed head are the service's own."""
    return Source(texts=texts, store=STORE, head=HEAD, **changes)  # type: ignore[arg-type]


def modified(index: int) -> list[str | None]:
    texts: list[str | None] = list(ORIGINAL)
    forged = json.loads(ORIGINAL[index])
    forged["action"] = "case.viewed"
    texts[index] = canonical_json(forged).decode()
    return texts


def test_an_honest_ledger_verifies_and_reports_progress() -> None:
    seen: list[tuple[int, int]] = []
    verdict = verify_ledger(
        behind_the_back(list(ORIGINAL)),
        TRUSTED,
        pinned_key=raw_public_key(KEY),
        progress=lambda done, total: seen.append((done, total)),
        page=32,
    )
    assert verdict.ok, verdict.problems
    assert verdict.tree_size == SIZE
    assert seen == [(32, SIZE), (64, SIZE), (96, SIZE), (100, SIZE)]
    assert any("consistency 70 → 100: ok" in step for step in verdict.steps)


def test_a_file_without_proofs_verifies_from_its_leaves() -> None:
    verdict = verify_ledger(behind_the_back(list(ORIGINAL), proofs=False), TRUSTED)
    assert verdict.ok, verdict.problems


@pytest.mark.parametrize("kept", [0, SIZE])
def test_empty_and_current_kept_checkpoints(kept: int) -> None:
    assert verify_ledger(behind_the_back(list(ORIGINAL)), checkpoint_of(STORE, kept)).ok


def inserted(index: int) -> list[str | None]:
    forged = entry_text(index, "task.resolved")
    return [*ORIGINAL[:index], forged, *ORIGINAL[index : SIZE - 1]]


def reordered(first: int, second: int) -> list[str | None]:
    texts: list[str | None] = list(ORIGINAL)
    texts[first], texts[second] = texts[second], texts[first]
    return texts


def deleted(index: int) -> list[str | None]:
    texts: list[str | None] = list(ORIGINAL)
    texts[index] = None
    return texts


@pytest.mark.parametrize(
    ("texts", "first_bad"),
    [
        (modified(17), 17),
        (deleted(17), 17),
        (inserted(17), 17),
        (reordered(17, 40), 17),
        (modified(0), 0),
        (modified(KEPT - 1), KEPT - 1),
        (modified(85), 85),  # after the kept checkpoint: caught by the signed head
    ],
    ids=["modify", "delete", "insert", "reorder", "first", "last-kept", "after-kept"],
)
@pytest.mark.parametrize("proofs", [True, False], ids=["service", "file"])
def test_tampered_entries_fail_at_the_first_bad_index(
    texts: list[str | None], first_bad: int, proofs: bool
) -> None:
    verdict = verify_ledger(behind_the_back(texts, proofs=proofs), TRUSTED)
    assert not verdict.ok
    assert verdict.first_bad_index == first_bad, verdict.problems


def test_rewritten_leaf_hashes_are_located_by_bisection_with_proofs() -> None:
    texts = modified(23)
    forged_claims = [merkle.leaf_hash((t or "").encode()) for t in texts]
    source = behind_the_back(texts, claimed=forged_claims)
    verdict = verify_ledger(source, TRUSTED)
    assert not verdict.ok
    assert verdict.first_bad_index == 23
    assert source.proof_calls <= 1 + (KEPT.bit_length() + 1)  # O(log n) proofs, not n


def test_a_rewritten_tree_re_signed_by_the_service_still_fails() -> None:
    """The attacker recomputed every node and had the service sign the result."""
    texts = modified(23)
    forged_store = tree_of(texts)
    source = Source(texts=texts, store=forged_store, head=checkpoint_of(forged_store, SIZE))
    verdict = verify_ledger(source, TRUSTED)
    assert not verdict.ok
    assert any("not a proven extension" in p for p in verdict.problems)


def test_a_shrunk_ledger_fails() -> None:
    shorter = ORIGINAL[:50]
    source = Source(
        texts=list(shorter), store=tree_of(list(shorter)), head=checkpoint_of(STORE, 50)
    )
    verdict = verify_ledger(source, TRUSTED)
    assert not verdict.ok
    assert verdict.first_bad_index == 50
    assert "shrank" in verdict.problems[0]


def test_a_head_signed_by_another_key_fails() -> None:
    source = behind_the_back(list(ORIGINAL))
    source.head = checkpoint_of(STORE, SIZE, INTRUDER_KEY)
    verdict = verify_ledger(source, TRUSTED)
    assert not verdict.ok
    assert "not by the pinned key" in verdict.problems[0]


def test_a_forged_kept_checkpoint_is_refused() -> None:
    forged = TRUSTED.model_copy(update={"tree_size": KEPT - 1})
    verdict = verify_ledger(behind_the_back(list(ORIGINAL)), forged)
    assert not verdict.ok
    assert "kept checkpoint" in verdict.problems[0]


def test_a_source_that_skips_leaves_fails() -> None:
    source = behind_the_back(list(ORIGINAL))
    source.texts = source.texts[:60]
    verdict = verify_ledger(source, TRUSTED, page=32)
    assert not verdict.ok
    assert verdict.first_bad_index == 60


def bundle(case: uuid.UUID, texts: list[str | None] | None = None) -> CaseBundle:
    texts = texts if texts is not None else list(ORIGINAL)
    indexes = [i for i in range(SIZE) if json.loads(ORIGINAL[i])["case_id"] == str(case)]
    return CaseBundle(
        case_id=case,
        checkpoint=HEAD,
        entries=[
            BundleEntry(
                leaf_index=i,
                leaf=texts[i] or "",
                inclusion_proof=[p.hex() for p in merkle.inclusion_proof(i, SIZE, STORE)],
            )
            for i in indexes
        ],
    )


def test_a_case_bundle_verifies_offline() -> None:
    verdict = verify_bundle(bundle(CASES[1]), trusted=TRUSTED)
    assert verdict.ok, verdict.problems
    assert verdict.steps[-1].startswith(f"{len(bundle(CASES[1]).entries)} entries")


def test_a_tampered_bundle_fails_at_its_entry() -> None:
    verdict = verify_bundle(bundle(CASES[1], modified(31)))
    assert not verdict.ok
    assert verdict.first_bad_index == 31


def test_a_bundle_entry_of_another_case_fails() -> None:
    foreign = bundle(CASES[1])
    other = bundle(CASES[2]).entries[0]
    foreign.entries.append(other)
    verdict = verify_bundle(foreign)
    assert not verdict.ok
    assert verdict.first_bad_index == other.leaf_index


def test_a_bundle_signed_by_another_key_fails_against_the_kept_checkpoint() -> None:
    intruder = bundle(CASES[0])
    intruder.checkpoint = checkpoint_of(STORE, SIZE, INTRUDER_KEY)
    assert verify_bundle(intruder).ok  # self-consistent, which proves nothing...
    assert not verify_bundle(intruder, trusted=TRUSTED).ok  # ...against the pinned key
