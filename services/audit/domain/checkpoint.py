"""Signed checkpoints (tree heads): what an auditor keeps, and how anyone checks one.

A checkpoint commits the ledger to its first ``tree_size`` entries through their Merkle root.
It is signed with Ed25519 over a small text note, so a verifier in any language can rebuild the
signed bytes from the JSON fields alone::

    ocsea-audit-checkpoint/v1
    <origin>
    <tree_size in decimal>
    <root hash, 64 lowercase hex digits>
    <timestamp, RFC 3339 UTC, e.g. 2026-11-20T18:30:00.123Z>

(each line ends with ``\\n``). The checkpoint carries its public key so a saved copy is
self-contained, but a key inside a document proves nothing by itself: verifiers pin the key
(the one in the checkpoint the auditor kept, or one obtained out of band) and compare.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ConfigDict, Field

CHECKPOINT_FORMAT = "ocsea-audit-checkpoint/v1"
ORIGIN_PATTERN = r"^[A-Za-z0-9._:/-]{1,100}$"
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


class CheckpointError(ValueError):
    """A checkpoint is malformed, wrongly signed, or signed by another key than the pinned one."""


class PublicKey(BaseModel):
    """The ledger's published verification key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: str = Field(default="Ed25519", pattern="^Ed25519$")
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the raw public key")
    public_key: str = Field(description="The raw 32-byte Ed25519 public key, base64")


class Checkpoint(BaseModel):
    """A signed tree head: the ledger's first `tree_size` entries have Merkle root `root_hash`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: str = Field(pattern=ORIGIN_PATTERN, description="Which ledger this is")
    tree_size: int = Field(ge=0)
    root_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="RFC 9162 tree head, hex")
    timestamp: str = Field(description="When it was signed, RFC 3339 UTC, exactly as signed")
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the raw public key")
    public_key: str = Field(description="The raw Ed25519 public key, base64 (pin it; see docs)")
    signature: str = Field(description="Ed25519 signature of the checkpoint note, base64")

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.root_hash)


def key_id_of(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_of(private_key: Ed25519PrivateKey) -> PublicKey:
    raw = raw_public_key(private_key)
    return PublicKey(key_id=key_id_of(raw), public_key=base64.b64encode(raw).decode())


def signed_note(origin: str, tree_size: int, root_hash: str, timestamp: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return f"{CHECKPOINT_FORMAT}\n{origin}\n{tree_size}\n{root_hash}\n{timestamp}\n".encode()


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign_checkpoint(
    private_key: Ed25519PrivateKey, *, origin: str, tree_size: int, root: bytes, at: datetime
) -> Checkpoint:
    timestamp = format_timestamp(at)
    root_hash = root.hex()
    raw = raw_public_key(private_key)
    signature = private_key.sign(signed_note(origin, tree_size, root_hash, timestamp))
    return Checkpoint(
        origin=origin,
        tree_size=tree_size,
        root_hash=root_hash,
        timestamp=timestamp,
        key_id=key_id_of(raw),
        public_key=base64.b64encode(raw).decode(),
        signature=base64.b64encode(signature).decode(),
    )


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's {what} is not valid base64") from exc


def verify_checkpoint(checkpoint: Checkpoint, pinned_key: bytes | None = None) -> None:
    """Check the signature, and that the signer is the pinned key when one is given.

    Without a pinned key this only shows that the checkpoint is internally consistent; that is
    worth something only if the auditor compares `key_id` with the key they trust.
    """
    raw = _b64(checkpoint.public_key, "public key")
    if len(raw) != 32:
        raise CheckpointError(f"the checkpoint's public key is {len(raw)} bytes, not 32")
    if key_id_of(raw) != checkpoint.key_id:
        raise CheckpointError("the checkpoint's key_id is not the SHA-256 of its public key")
    if pinned_key is not None and raw != pinned_key:
        raise CheckpointError(
            f"the checkpoint is signed by key {checkpoint.key_id[:16]}…, not by the pinned key "
            f"{key_id_of(pinned_key)[:16]}…"
        )
    if not _TIMESTAMP.fullmatch(checkpoint.timestamp):
        raise CheckpointError(f"the checkpoint's timestamp {checkpoint.timestamp!r} is not UTC")
    note = signed_note(
        checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash, checkpoint.timestamp
    )
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(
            _b64(checkpoint.signature, "signature"), note
        )
    except InvalidSignature as exc:
        raise CheckpointError(
            f"the checkpoint's signature does not verify (size {checkpoint.tree_size})"
        ) from exc


def pinned_key_of(checkpoint: Checkpoint) -> bytes:
    """The raw key a kept checkpoint was signed with, to pin for everything checked after it."""
    return _b64(checkpoint.public_key, "public key")
