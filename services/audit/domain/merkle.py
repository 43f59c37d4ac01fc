"""RFC 9162 (Certificate Transparency v2) Merkle tree for the audit ledger, with no I/O.

The ledger persists only the hashes of *complete* subtrees, keyed by ``(level, index)``: node
``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``. Such a node never
changes once written, so the store is append-only, an append writes O(log n) rows, and proofs and
tree heads for *any* past size come from the same rows without snapshots. A hash over a range that
is not a complete subtree (a tree head, or the right-hand sibling on a proof path) is recomputed
from the O(log n) complete subtrees that tile the range.

Every operation that reads the store comes with a twin that names the keys it will read
(``root_nodes``, ``inclusion_proof_nodes``, ``consistency_proof_nodes``, ``append_nodes_needed``),
so an async SQL store can fetch them in one query and hand the result over as a plain ``dict``::

    keys = inclusion_proof_nodes(index, size)
    nodes = await fetch(keys)  # {(level, index): hash}
    proof = inclusion_proof(index, size, nodes)

The verifiers take no store at all: they are the auditor's side and trust nothing the server says
except what the proof and a checkpoint the auditor kept can establish.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeAlias

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryNodeStore",
    "MissingNodeError",
    "Node",
    "NodeKey",
    "NodeSource",
    "NodeStore",
    "ProofError",
    "append_nodes",
    "append_nodes_needed",
    "consistency_proof",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_leaf_hashes",
    "root_nodes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""SHA-256 output size; every leaf, node and root hash has exactly this length."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Tree head of the empty tree (RFC 9162 §2.1.1: the hash of an empty string)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

NodeKey: TypeAlias = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

Node: TypeAlias = tuple[int, int, bytes]
"""``(level, index, hash)``: one row for the store to persist."""


class ProofError(ValueError):
    """A proof, or the claim it is checked against, does not hold."""


class MissingNodeError(LookupError):
    """The store lacks a node: the tree is smaller than asked, or too few keys were fetched."""

    def __init__(self, level: int, index: int) -> None:
        super().__init__(f"no stored node at level {level}, index {index}")
        self.level = level
        self.index = index


class NodeStore(Protocol):
    """Read access to complete-subtree hashes.

    Deliberately synchronous and minimal: an async store prefetches the keys named by the
    ``*_nodes`` functions and passes a ``dict`` instead, so the tree logic stays pure.
    """

    def get(self, level: int, index: int) -> bytes:
        """Hash of node ``(level, index)``; raises ``MissingNodeError`` when it is not stored."""
        ...


NodeSource: TypeAlias = NodeStore | Mapping[NodeKey, bytes]
"""A store, or a mapping ``{(level, index): hash}`` fetched in bulk from one."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 leaf hash; the 0x00 prefix keeps a leaf from passing for an interior node."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash; the 0x01 prefix separates it from leaf hashes."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


class MemoryNodeStore:
    """In-memory ``NodeStore`` for tests and tools; refuses to rewrite a node, like the ledger."""

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MemoryNodeStore:
        store = cls()
        for h in leaf_hashes:
            store.append(h)
        return store

    @property
    def size(self) -> int:
        """Leaves stored, so ``append`` knows the next leaf number as the ledger's sequence does."""
        return self._size

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise MissingNodeError(level, index) from None

    def put(self, nodes: Iterable[Node]) -> None:
        """Store nodes; rewriting one with a different hash is refused because history is fixed."""
        for level, index, value in nodes:
            _require_hash(f"node ({level}, {index})", value, ValueError)
            existing = self._nodes.setdefault((level, index), value)
            if existing != value:
                raise ValueError(f"node ({level}, {index}) is already stored with another hash")
            if level == 0:
                self._size = max(self._size, index + 1)

    def append(self, leaf_hash: bytes) -> list[Node]:
        nodes = append_nodes(self._size, leaf_hash, self)
        self.put(nodes)
        return nodes


# ---------------------------------------------------------------------------------------------
# Which complete subtrees an operation needs


def _check_size(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _range_nodes(lo: int, hi: int) -> list[NodeKey]:
    """Complete subtrees tiling leaves ``[lo, hi)``, largest (leftmost) first.

    Only called for ranges that arise in RFC 9162's recursive split, where ``lo`` is a multiple
    of a power of two at least ``hi - lo``; that alignment is what makes every tile a real node.
    """
    keys: list[NodeKey] = []
    count = hi - lo
    position = lo
    for level in range(count.bit_length() - 1, -1, -1):
        if count >> level & 1:
            keys.append((level, position >> level))
            position += 1 << level
    return keys


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf end first."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)  # largest power of two < hi - lo
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PROOF(first, D[second]) (RFC 9162 §2.1.4.1), bottom first."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, second
    whole_old_tree = True  # SUBPROOF's flag: the old tree is this very subtree, so omit it
    while first != hi:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if first <= lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            whole_old_tree = False
    if not whole_old_tree:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _keys_for(ranges: Iterable[tuple[int, int]]) -> list[NodeKey]:
    return list(dict.fromkeys(key for lo, hi in ranges for key in _range_nodes(lo, hi)))


def _check_inclusion_args(index: int, size: int) -> None:
    _check_size("index", index)
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")


def _check_consistency_args(first: int, second: int) -> None:
    if first <= 0:
        raise ValueError(f"a consistency proof needs a non-empty first tree, got size {first}")
    if first > second:
        raise ValueError(f"first size {first} exceeds second size {second}")


def root_nodes(size: int) -> list[NodeKey]:
    """Keys ``root`` reads: the peaks of the tree, at most one per set bit of ``size``."""
    _check_size("size", size)
    return _range_nodes(0, size)


def inclusion_proof_nodes(index: int, size: int) -> list[NodeKey]:
    """Keys ``inclusion_proof`` reads, without duplicates; at most about 2·log2(size)."""
    _check_inclusion_args(index, size)
    return _keys_for(_inclusion_ranges(index, size))


def consistency_proof_nodes(first: int, second: int) -> list[NodeKey]:
    """Keys ``consistency_proof`` reads, without duplicates; at most about 2·log2(second)."""
    _check_consistency_args(first, second)
    return _keys_for(_consistency_ranges(first, second))


def append_nodes_needed(size: int) -> list[NodeKey]:
    """Keys ``append_nodes`` reads: the left siblings the new leaf completes, lowest first.

    They are a subset of ``root_nodes(size)``, so a writer that fetches ``root_nodes(size)`` once
    can both append and compute the new tree head (the returned nodes supply the rest).
    """
    _check_size("size", size)
    keys: list[NodeKey] = []
    level, position = 0, size
    while position & 1:
        keys.append((level, position - 1))
        level += 1
        position >>= 1
    return keys


# ---------------------------------------------------------------------------------------------
# Prover side: build heads and proofs from stored complete subtrees


def _getter(source: NodeSource) -> Callable[[int, int], bytes]:
    """Read nodes uniformly from a store or a prefetched mapping, checking what comes back.

    A plain ``dict`` is not a ``NodeStore`` (``dict.get(level, index)`` would silently return the
    default), hence the explicit branch.
    """
    raw: Callable[[int, int], bytes]
    if isinstance(source, Mapping):
        mapping = source

        def raw(level: int, index: int) -> bytes:
            try:
                return mapping[(level, index)]
            except KeyError:
                raise MissingNodeError(level, index) from None

    else:
        raw = source.get

    def get(level: int, index: int) -> bytes:
        value = raw(level, index)
        if len(value) != HASH_SIZE:
            raise ValueError(f"stored node ({level}, {index}) is {len(value)} bytes, not 32")
        return value

    return get


def _range_hash(lo: int, hi: int, get: Callable[[int, int], bytes]) -> bytes:
    """MTH of leaves ``[lo, hi)``: RFC 9162 splits at the largest power of two, so the tiles
    fold right to left."""
    keys = _range_nodes(lo, hi)
    result = get(*keys[-1])
    for key in reversed(keys[:-1]):
        result = node_hash(get(*key), result)
    return result


def root(size: int, store: NodeSource) -> bytes:
    """Tree head for ``size`` leaves, from the peaks alone, for the current or any earlier size."""
    _check_size("size", size)
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, _getter(store))


def inclusion_proof(index: int, size: int, store: NodeSource) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree of ``size`` leaves, leaf end first (RFC 9162)."""
    _check_inclusion_args(index, size)
    get = _getter(store)
    return [_range_hash(lo, hi, get) for lo, hi in _inclusion_ranges(index, size)]


def consistency_proof(first: int, second: int, store: NodeSource) -> list[bytes]:
    """Proof that the tree of ``second`` leaves extends the one of ``first`` (RFC 9162).

    Empty when the sizes are equal; the empty first tree has no proof, as every tree extends it.
    """
    _check_consistency_args(first, second)
    get = _getter(store)
    return [_range_hash(lo, hi, get) for lo, hi in _consistency_ranges(first, second)]


def append_nodes(size: int, new_leaf_hash: bytes, store: NodeSource) -> list[Node]:
    """Nodes to persist when leaf number ``size`` (0-based) is appended, the leaf itself first.

    Returns 1 + (trailing one bits of ``size``) nodes and reads ``append_nodes_needed(size)``, so
    an append costs O(log n) regardless of the ledger's length.
    """
    _check_size("size", size)
    _require_hash("new leaf hash", new_leaf_hash, ValueError)
    get = _getter(store)
    nodes: list[Node] = [(0, size, new_leaf_hash)]
    current = new_leaf_hash
    for level, index in append_nodes_needed(size):
        current = node_hash(get(level, index), current)
        nodes.append((level + 1, index >> 1, current))
    return nodes


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """Tree head from every leaf hash in order, streaming with an O(log n) stack.

    The reference for tests and for an auditor who re-reads the whole ledger: it shares nothing
    with the stored-node code path but ``node_hash``.
    """
    stack: list[bytes] = []
    for count, h in enumerate(leaf_hashes, start=1):
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {count - 1} is {len(h)} bytes, not {HASH_SIZE}")
        # Each trailing zero bit of the new count closes one complete subtree.
        merges = count
        while not merges & 1:
            h = hashlib.sha256(_NODE_PREFIX + stack.pop() + h).digest()
            merges >>= 1
        stack.append(h)
    if not stack:
        return EMPTY_ROOT
    result = stack.pop()
    while stack:
        result = node_hash(stack.pop(), result)
    return result


# ---------------------------------------------------------------------------------------------
# Verifier side: no store, no trust in the server


def _require_hash(what: str, value: bytes, error: type[ValueError] = ProofError) -> None:
    # A short or long value would shift the byte boundaries inside SHA-256(0x01 || left || right)
    # and let one concatenation pass for another; the lengths must be fixed.
    if len(value) != HASH_SIZE:
        raise error(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _require_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, element in enumerate(proof):
        _require_hash(f"proof element {position}", element)


def _inclusion_path_length(index: int, size: int) -> int:
    """How many elements a valid inclusion proof has; only used to explain a failure."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with head ``root``.

    Runs RFC 9162 §2.1.3.2 step by step; raises ``ProofError`` naming the first check that fails.
    """
    if index < 0 or size < 0:
        raise ProofError(f"index and size must not be negative, got index {index}, size {size}")
    if index >= size:
        raise ProofError(f"leaf index {index} is not below the tree size {size}")
    _require_hash("leaf hash", leaf_hash)
    _require_hash("root", root)
    _require_proof_hashes(proof)

    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(
                f"proof has {len(proof)} elements, more than the "
                f"{_inclusion_path_length(index, size)} on the path from leaf {index} to the "
                f"root of a tree of size {size}"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(
            f"proof has {len(proof)} elements, fewer than the "
            f"{_inclusion_path_length(index, size)} on the path from leaf {index} to the "
            f"root of a tree of size {size}"
        )
    if not hmac.compare_digest(r, root):
        raise ProofError(
            f"proof for leaf {index} does not lead to the given root of the tree of size {size}"
        )


def _consistency_path_length(first: int, second: int) -> int:
    """How many elements a valid consistency proof has; only used to explain a failure."""
    shift = (first & -first).bit_length() - 1  # trailing zero bits of first
    inner = ((first - 1) ^ (second - 1)).bit_length() - shift
    border = ((first - 1) >> (inner + shift)).bit_count()
    return inner + border + (0 if first == 1 << shift else 1)


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``second`` leaves with ``second_root`` extends ``first``'s tree.

    Runs RFC 9162 §2.1.4.2 step by step for ``0 < first < second``. Equal sizes need an empty
    proof and equal roots, which are then only compared with each other. A first size of 0 is
    refused: the RFC defines no proof from the empty tree, and an auditor whose checkpoint is
    empty has nothing to check.
    """
    if first < 0 or second < 0:
        raise ProofError(f"tree sizes must not be negative, got {first} and {second}")
    if first > second:
        raise ProofError(f"first size {first} exceeds second size {second}: a log cannot shrink")
    if first == 0:
        raise ProofError("no consistency proof exists from the empty tree (size 0)")
    if first == second:
        if proof:
            raise ProofError(f"equal tree sizes need an empty proof, got {len(proof)} elements")
        if not hmac.compare_digest(first_root, second_root):
            raise ProofError(f"two different roots for the same tree size {first}")
        return
    if not proof:
        raise ProofError(f"empty proof between different tree sizes {first} and {second}")
    _require_hash("first root", first_root)
    _require_hash("second root", second_root)
    _require_proof_hashes(proof)

    path = list(proof)
    if first & (first - 1) == 0:  # the old tree is itself a node of the new one
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(
                f"proof has {len(proof)} elements, more than the "
                f"{_consistency_path_length(first, second)} needed between sizes "
                f"{first} and {second}"
            )
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(
            f"proof has {len(proof)} elements, fewer than the "
            f"{_consistency_path_length(first, second)} needed between sizes {first} and {second}"
        )
    if not hmac.compare_digest(fr, first_root):
        raise ProofError(f"proof does not reproduce the given root of the tree of size {first}")
    if not hmac.compare_digest(sr, second_root):
        raise ProofError(f"proof does not reproduce the given root of the tree of size {second}")
