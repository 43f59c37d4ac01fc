"""Tests for the RFC 9162 Merkle tree behind the audit ledger.

Three independent sources keep each other honest: the public transparency-dev/merkle conformance
vectors (the verifiers, and the prover on the tree those vectors were made from), a literal
transcription of the RFC's recursive definitions (the prover), and the streaming reference
``root_from_leaf_hashes`` (tree heads).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryNodeStore,
    MissingNodeError,
    NodeKey,
    ProofError,
    append_nodes,
    append_nodes_needed,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    root,
    root_from_leaf_hashes,
    root_nodes,
    verify_consistency,
    verify_inclusion,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT / ".." / "shared" / "testdata" / "merkle"
NO_VECTORS = f"Merkle conformance vectors not found at {VECTORS}"

# The tree the conformance vectors were generated from: transparency-dev/merkle's testonly leaf
# inputs (the RFC 6962 reference tree), with its published tree heads for sizes 1..8.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

# One ledger of POOL_SIZE leaves serves every property test: proofs for sizes up to MAX_SIZE are
# taken from a store that has since grown further, as the audit service will do.
MAX_SIZE = 300
POOL_SIZE = 2 * MAX_SIZE
POOL = [leaf_hash(b"audit entry %d" % i) for i in range(POOL_SIZE)]
STORE = MemoryNodeStore.from_leaf_hashes(POOL)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


# ---------------------------------------------------------------------------------------------
# RFC 9162 §2.1, transcribed literally (recursive slicing), as an oracle for small trees


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(rfc_mth(leaves[:k]), rfc_mth(leaves[k:]))


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*rfc_path(m, leaves[:k]), rfc_mth(leaves[k:])]
    return [*rfc_path(m - k, leaves[k:]), rfc_mth(leaves[:k])]


def rfc_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [rfc_mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*rfc_subproof(m, leaves[:k], whole), rfc_mth(leaves[k:])]
    return [*rfc_subproof(m - k, leaves[k:], False), rfc_mth(leaves[:k])]


def rfc_consistency(m: int, leaves: list[bytes]) -> list[bytes]:
    return rfc_subproof(m, leaves, True)


# ---------------------------------------------------------------------------------------------
# Helpers


class RecordingStore:
    """Wraps a store and records the keys read, to check the ``*_nodes`` functions are exact."""

    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.reads: list[NodeKey] = []

    def get(self, level: int, index: int) -> bytes:
        self.reads.append((level, index))
        return self.inner.get(level, index)


def fetch(keys: list[NodeKey], store: MemoryNodeStore = STORE) -> dict[NodeKey, bytes]:
    """What the SQL store's single SELECT would return."""
    return {key: store.get(*key) for key in keys}


def flip_bit(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _proof(case: dict[str, Any]) -> list[bytes]:
    # Go's encoder writes a nil proof as null.
    return [_b64(p) for p in case["proof"] or []]


def _vector_params(kind: str, pattern: str = "*.json") -> list[Any]:
    if not VECTORS.is_dir():
        return [pytest.param(None, id=f"{kind}-absent", marks=pytest.mark.skip(reason=NO_VECTORS))]
    folder = VECTORS / kind
    return [
        pytest.param(path, id=path.relative_to(folder).as_posix())
        for path in sorted(folder.rglob(pattern))
    ]


def _happy_paths(kind: str) -> list[Any]:
    """Happy-path vectors of the numbered folders, which all come from the reference tree."""
    return [
        param
        for param in _vector_params(kind, "happy-path.json")
        if param.values[0] is None or param.values[0].parent.name.isdigit()
    ]


# ---------------------------------------------------------------------------------------------
# Conformance vectors


def test_vector_folder_is_populated() -> None:
    if not VECTORS.is_dir():
        pytest.skip(NO_VECTORS)
    for kind in ("inclusion", "consistency"):
        cases = [_load(p) for p in (VECTORS / kind).rglob("*.json")]
        # Both outcomes must be exercised, or a verifier that always (or never) raises would pass.
        assert {case["wantErr"] for case in cases} == {True, False}, kind
    assert len(_happy_paths("inclusion")) == 5
    assert len(_happy_paths("consistency")) == 5


@pytest.mark.parametrize("path", _vector_params("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    case = _load(path)
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        _proof(case),
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_params("consistency"))
def test_consistency_vector(path: Path) -> None:
    case = _load(path)
    args = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        _proof(case),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_reference_tree_heads() -> None:
    hashes = [leaf_hash(entry) for entry in REFERENCE_LEAVES]
    store = MemoryNodeStore.from_leaf_hashes(hashes)
    for size, expected in enumerate(REFERENCE_ROOTS, start=1):
        assert root_from_leaf_hashes(hashes[:size]) == expected
        assert root(size, store) == expected
        assert rfc_mth(hashes[:size]) == expected


@pytest.mark.parametrize("path", _happy_paths("inclusion"))
def test_prover_reproduces_inclusion_vector(path: Path) -> None:
    case = _load(path)
    index, size = case["leafIdx"], case["treeSize"]
    store = MemoryNodeStore.from_leaf_hashes(leaf_hash(entry) for entry in REFERENCE_LEAVES)
    # The vector must really be about the reference tree, or the comparison proves nothing.
    assert _b64(case["leafHash"]) == store.get(0, index)
    assert _b64(case["root"]) == root(size, store)
    assert inclusion_proof(index, size, store) == _proof(case)


@pytest.mark.parametrize("path", _happy_paths("consistency"))
def test_prover_reproduces_consistency_vector(path: Path) -> None:
    case = _load(path)
    first, second = case["size1"], case["size2"]
    store = MemoryNodeStore.from_leaf_hashes(leaf_hash(entry) for entry in REFERENCE_LEAVES)
    assert _b64(case["root1"]) == root(first, store)
    assert _b64(case["root2"]) == root(second, store)
    assert consistency_proof(first, second, store) == _proof(case)


# ---------------------------------------------------------------------------------------------
# Hashing and tree heads


def test_hash_definitions() -> None:
    left, right = b"L" * 32, b"R" * 32
    assert leaf_hash(b"entry") == hashlib.sha256(b"\x00entry").digest()
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_empty_tree() -> None:
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert root(0, MemoryNodeStore()) == EMPTY_ROOT
    assert root_nodes(0) == []


def test_root_from_leaf_hashes_streams_any_iterable() -> None:
    assert root_from_leaf_hashes(iter(POOL)) == root(POOL_SIZE, STORE)


def test_root_from_leaf_hashes_rejects_bad_leaf() -> None:
    with pytest.raises(ValueError, match="leaf hash 1 is 31 bytes"):
        root_from_leaf_hashes([POOL[0], POOL[1][:31]])


@PROPERTY_SETTINGS
@given(size=st.integers(0, MAX_SIZE))
def test_root_matches_references(size: int) -> None:
    expected = root_from_leaf_hashes(POOL[:size])
    assert expected == rfc_mth(POOL[:size])
    assert root(size, STORE) == expected
    assert root(size, fetch(root_nodes(size))) == expected
    assert len(root_nodes(size)) == size.bit_count()


# ---------------------------------------------------------------------------------------------
# Appending


def test_append_returns_the_completed_subtrees() -> None:
    store = MemoryNodeStore()
    assert store.append(POOL[0]) == [(0, 0, POOL[0])]
    assert store.append(POOL[1]) == [(0, 1, POOL[1]), (1, 0, node_hash(POOL[0], POOL[1]))]
    assert store.append(POOL[2]) == [(0, 2, POOL[2])]
    nodes = store.append(POOL[3])
    assert [(level, index) for level, index, _ in nodes] == [(0, 3), (1, 1), (2, 0)]
    assert nodes[-1][2] == root_from_leaf_hashes(POOL[:4])
    assert store.size == 4
    assert len(store) == 7


@PROPERTY_SETTINGS
@given(size=st.integers(0, POOL_SIZE - 1))
def test_append_reads_exactly_the_announced_keys(size: int) -> None:
    recorder = RecordingStore(STORE)
    nodes = append_nodes(size, POOL[size], recorder)
    needed = append_nodes_needed(size)
    assert recorder.reads == needed
    assert set(needed) <= set(root_nodes(size))
    # Trailing one bits of size = subtrees the new leaf completes.
    assert len(nodes) == 1 + len(needed) == 1 + (size ^ (size + 1)).bit_length() - 1
    assert nodes == [(level, index, STORE.get(level, index)) for level, index, _ in nodes]
    # Fetching root_nodes(size) once is enough to append and sign the new head.
    fetched = fetch(root_nodes(size))
    after = {**fetched, **{(level, index): value for level, index, value in nodes}}
    assert append_nodes(size, POOL[size], fetched) == nodes
    assert root(size + 1, after) == root_from_leaf_hashes(POOL[: size + 1])


def test_memory_store_refuses_rewriting_history() -> None:
    store = MemoryNodeStore.from_leaf_hashes(POOL[:4])
    store.put([(1, 0, node_hash(POOL[0], POOL[1]))])  # same value: idempotent
    with pytest.raises(ValueError, match="already stored"):
        store.put([(1, 0, POOL[0])])
    with pytest.raises(ValueError, match="already stored"):
        store.put(append_nodes(0, POOL[9], store))  # another leaf 0
    with pytest.raises(ValueError, match="31 bytes"):
        store.put([(0, 10, POOL[0][:31])])


def test_append_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="33 bytes"):
        append_nodes(0, POOL[0] + b"x", MemoryNodeStore())
    with pytest.raises(ValueError, match="negative"):
        append_nodes(-1, POOL[0], MemoryNodeStore())
    with pytest.raises(MissingNodeError):
        append_nodes(1, POOL[1], MemoryNodeStore())


# ---------------------------------------------------------------------------------------------
# Proof generation


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


@st.composite
def first_and_second(draw: st.DrawFn) -> tuple[int, int]:
    second = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, second)), second


@PROPERTY_SETTINGS
@given(index_and_size())
def test_inclusion_proof_matches_rfc_and_announced_keys(args: tuple[int, int]) -> None:
    index, size = args
    recorder = RecordingStore(STORE)
    proof = inclusion_proof(index, size, recorder)
    keys = inclusion_proof_nodes(index, size)
    assert proof == rfc_path(index, POOL[:size])
    assert set(recorder.reads) == set(keys)
    assert len(keys) == len(set(keys)) <= 2 * size.bit_length()
    assert inclusion_proof(index, size, fetch(keys)) == proof


@PROPERTY_SETTINGS
@given(first_and_second())
def test_consistency_proof_matches_rfc_and_announced_keys(args: tuple[int, int]) -> None:
    first, second = args
    recorder = RecordingStore(STORE)
    proof = consistency_proof(first, second, recorder)
    keys = consistency_proof_nodes(first, second)
    assert proof == rfc_consistency(first, POOL[:second])
    assert set(recorder.reads) == set(keys)
    assert len(keys) == len(set(keys)) <= 2 * second.bit_length()
    assert consistency_proof(first, second, fetch(keys)) == proof


def test_prover_rejects_impossible_requests() -> None:
    with pytest.raises(ValueError, match="not in a tree of size 5"):
        inclusion_proof(5, 5, STORE)
    with pytest.raises(ValueError, match="negative"):
        inclusion_proof_nodes(-1, 5)
    with pytest.raises(ValueError, match="non-empty first tree"):
        consistency_proof(0, 5, STORE)
    with pytest.raises(ValueError, match="exceeds"):
        consistency_proof_nodes(6, 5)
    with pytest.raises(ValueError, match="negative"):
        root(-1, STORE)
    assert consistency_proof(7, 7, STORE) == []


def test_missing_nodes_are_reported() -> None:
    keys = inclusion_proof_nodes(3, 11)
    partial = fetch(keys[1:])
    with pytest.raises(MissingNodeError) as raised:
        inclusion_proof(3, 11, partial)
    assert (raised.value.level, raised.value.index) == keys[0]
    small = MemoryNodeStore.from_leaf_hashes(POOL[:10])
    with pytest.raises(MissingNodeError):
        root(11, small)


def test_corrupt_stored_node_is_refused() -> None:
    nodes = fetch(root_nodes(6))
    nodes[(1, 2)] = nodes[(1, 2)][:20]
    with pytest.raises(ValueError, match="20 bytes"):
        root(6, nodes)


# ---------------------------------------------------------------------------------------------
# Verification: valid proofs pass, every tampering fails

hashes32 = st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE)


@PROPERTY_SETTINGS
@given(index_and_size(), st.data())
def test_inclusion_verifies_and_resists_tampering(args: tuple[int, int], data: Any) -> None:
    index, size = args
    proof = inclusion_proof(index, size, STORE)
    head = root(size, STORE)
    leaf = POOL[index]
    verify_inclusion(leaf, index, size, proof, head)

    for position, element in enumerate(proof):
        bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label=f"bit in element {position}")
        tampered = [*proof[:position], flip_bit(element, bit), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, tampered, head)
    for position in range(len(proof)):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof[:position] + proof[position + 1 :], head)
    extra = data.draw(hashes32, label="inserted element")
    for position in range(len(proof) + 1):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, [*proof[:position], extra, *proof[position:]], head)

    other_index = data.draw(st.integers(0, size).filter(lambda i: i != index), label="index")
    with pytest.raises(ProofError):
        verify_inclusion(leaf, other_index, size, proof, head)
    # A different size is checked against that size's head: what an auditor holding a checkpoint
    # for it would do. (Against the original head, a size with the same path shape computes the
    # same value, which is why the head, not the proof, pins the size.)
    other_size = data.draw(st.integers(index + 1, POOL_SIZE).filter(lambda n: n != size))
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, other_size, proof, root(other_size, STORE))
    with pytest.raises(ProofError):
        verify_inclusion(flip_bit(leaf, data.draw(st.integers(0, 255))), index, size, proof, head)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, flip_bit(head, data.draw(st.integers(0, 255))))


@PROPERTY_SETTINGS
@given(first_and_second(), st.data())
def test_consistency_verifies_and_resists_tampering(args: tuple[int, int], data: Any) -> None:
    first, second = args
    proof = consistency_proof(first, second, STORE)
    head1, head2 = root(first, STORE), root(second, STORE)
    verify_consistency(first, second, head1, head2, proof)

    for position, element in enumerate(proof):
        bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label=f"bit in element {position}")
        tampered = [*proof[:position], flip_bit(element, bit), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(first, second, head1, head2, tampered)
    for position in range(len(proof)):
        with pytest.raises(ProofError):
            verify_consistency(
                first, second, head1, head2, proof[:position] + proof[position + 1 :]
            )
    extra = data.draw(hashes32, label="inserted element")
    for position in range(len(proof) + 1):
        with pytest.raises(ProofError):
            verify_consistency(
                first, second, head1, head2, [*proof[:position], extra, *proof[position:]]
            )

    other_first = data.draw(st.integers(0, second).filter(lambda n: n != first), label="first")
    with pytest.raises(ProofError):
        verify_consistency(other_first, second, root(other_first, STORE), head2, proof)
    other_second = data.draw(st.integers(first, POOL_SIZE).filter(lambda n: n != second))
    with pytest.raises(ProofError):
        verify_consistency(first, other_second, head1, root(other_second, STORE), proof)
    if first != second:
        with pytest.raises(ProofError):
            verify_consistency(first, second, head2, head1, proof)
    with pytest.raises(ProofError):
        verify_consistency(
            first, second, flip_bit(head1, data.draw(st.integers(0, 255))), head2, proof
        )
    with pytest.raises(ProofError):
        verify_consistency(
            first, second, head1, flip_bit(head2, data.draw(st.integers(0, 255))), proof
        )


# ---------------------------------------------------------------------------------------------
# Verification: explicit edge cases and their reasons


def test_inclusion_edge_cases() -> None:
    head = root(5, STORE)
    proof = inclusion_proof(2, 5, STORE)
    verify_inclusion(POOL[0], 0, 1, [], POOL[0])  # a one-leaf tree's head is its leaf
    with pytest.raises(ProofError, match="not below the tree size 5"):
        verify_inclusion(POOL[5], 5, 5, proof, head)
    with pytest.raises(ProofError, match="not below the tree size 0"):
        verify_inclusion(POOL[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="negative"):
        verify_inclusion(POOL[0], -1, 5, proof, head)
    with pytest.raises(ProofError, match="leaf hash is 31 bytes"):
        verify_inclusion(POOL[2][:31], 2, 5, proof, head)
    with pytest.raises(ProofError, match="root is 0 bytes"):
        verify_inclusion(POOL[2], 2, 5, proof, b"")
    with pytest.raises(ProofError, match="proof element 1 is 0 bytes"):
        verify_inclusion(POOL[2], 2, 5, [proof[0], b"", *proof[1:]], head)
    with pytest.raises(ProofError, match="4 elements, more than the 3"):
        verify_inclusion(POOL[2], 2, 5, [*proof, head], head)
    with pytest.raises(ProofError, match="2 elements, fewer than the 3"):
        verify_inclusion(POOL[2], 2, 5, proof[:2], head)
    with pytest.raises(ProofError, match="does not lead to the given root"):
        verify_inclusion(POOL[3], 2, 5, proof, head)


def test_consistency_edge_cases() -> None:
    head3, head7 = root(3, STORE), root(7, STORE)
    proof = consistency_proof(3, 7, STORE)
    verify_consistency(7, 7, head7, head7, [])
    with pytest.raises(ProofError, match="cannot shrink"):
        verify_consistency(7, 3, head7, head3, proof)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 7, EMPTY_ROOT, head7, [])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="negative"):
        verify_consistency(-1, 7, head3, head7, proof)
    with pytest.raises(ProofError, match="need an empty proof"):
        verify_consistency(7, 7, head7, head7, [head7])
    with pytest.raises(ProofError, match="two different roots for the same tree size 7"):
        verify_consistency(7, 7, head7, head3, [])
    with pytest.raises(ProofError, match="empty proof between"):
        verify_consistency(3, 7, head3, head7, [])
    with pytest.raises(ProofError, match="first root is 9 bytes"):
        verify_consistency(3, 7, head3[:9], head7, proof)
    with pytest.raises(ProofError, match="proof element 0 is 0 bytes"):
        verify_consistency(3, 7, head3, head7, [b"", *proof])
    expected = len(proof)
    with pytest.raises(ProofError, match=f"more than the {expected} needed"):
        verify_consistency(3, 7, head3, head7, [*proof, head7])
    with pytest.raises(ProofError, match=f"fewer than the {expected} needed"):
        verify_consistency(3, 7, head3, head7, proof[:-1])
    with pytest.raises(ProofError, match="root of the tree of size 3"):
        verify_consistency(3, 7, root(4, STORE), head7, proof)
    with pytest.raises(ProofError, match="root of the tree of size 7"):
        verify_consistency(3, 7, head3, root(6, STORE), proof)
    # A power-of-two first tree is a node of the second, so its head is not repeated in the proof.
    assert consistency_proof(4, 7, STORE)[0] != root(4, STORE)
    verify_consistency(4, 7, root(4, STORE), head7, consistency_proof(4, 7, STORE))


def test_proof_error_is_a_value_error() -> None:
    assert issubclass(ProofError, ValueError)
