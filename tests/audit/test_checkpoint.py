"""Signed checkpoints: the exact signed bytes, and every way a checkpoint can be wrong."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.audit.domain.checkpoint import (
    Checkpoint,
    CheckpointError,
    pinned_key_of,
    public_key_of,
    raw_public_key,
    sign_checkpoint,
    signed_note,
    verify_checkpoint,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ROOT = hashlib.sha256(b"root").digest()
AT = datetime(2026, 11, 20, 21, 30, 5, 123456, tzinfo=timezone(timedelta(hours=3)))


def signed(**changes: object) -> Checkpoint:
    checkpoint = sign_checkpoint(KEY, origin="ocsea-audit", tree_size=42, root=ROOT, at=AT)
    return checkpoint.model_copy(update=changes)


def test_the_signature_covers_a_note_anyone_can_rebuild() -> None:
    checkpoint = signed()
    assert checkpoint.timestamp == "2026-11-20T18:30:05.123Z"
    note = (
        "ocsea-audit-checkpoint/v1\nocsea-audit\n42\n" + ROOT.hex() + "\n2026-11-20T18:30:05.123Z\n"
    ).encode()
    assert signed_note("ocsea-audit", 42, ROOT.hex(), checkpoint.timestamp) == note
    # Checked with the bare primitive, as another language's verifier would.
    Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint.public_key)).verify(
        base64.b64decode(checkpoint.signature), note
    )
    assert checkpoint.key_id == hashlib.sha256(raw_public_key(KEY)).hexdigest()
    assert public_key_of(KEY).key_id == checkpoint.key_id
    verify_checkpoint(checkpoint, raw_public_key(KEY))
    assert pinned_key_of(checkpoint) == raw_public_key(KEY)


@pytest.mark.parametrize(
    "changes",
    [
        {"tree_size": 43},
        {"root_hash": hashlib.sha256(b"other").hexdigest()},
        {"origin": "another-ledger"},
        {"timestamp": "2026-11-20T18:30:06.123Z"},
    ],
    ids=["size", "root", "origin", "timestamp"],
)
def test_any_changed_field_breaks_the_signature(changes: dict[str, object]) -> None:
    with pytest.raises(CheckpointError, match="signature does not verify"):
        verify_checkpoint(signed(**changes))


def test_a_checkpoint_signed_by_another_key_is_refused_when_a_key_is_pinned() -> None:
    other = sign_checkpoint(OTHER_KEY, origin="ocsea-audit", tree_size=42, root=ROOT, at=AT)
    verify_checkpoint(other)  # internally consistent...
    with pytest.raises(CheckpointError, match="not by the pinned key"):
        verify_checkpoint(other, raw_public_key(KEY))  # ...but not the ledger's key


def test_a_swapped_public_key_or_key_id_is_refused() -> None:
    other_public = base64.b64encode(raw_public_key(OTHER_KEY)).decode()
    with pytest.raises(CheckpointError, match="key_id"):
        verify_checkpoint(signed(public_key=other_public))
    other_id = hashlib.sha256(raw_public_key(OTHER_KEY)).hexdigest()
    with pytest.raises(CheckpointError, match="signature"):
        verify_checkpoint(signed(public_key=other_public, key_id=other_id))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"signature": "not base64!"}, "not valid base64"),
        ({"public_key": base64.b64encode(b"short").decode()}, "not 32"),
        ({"timestamp": "2026-11-20T21:30:05+03:00"}, "not UTC"),
    ],
)
def test_malformed_fields_are_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(signed(**changes))


def test_an_empty_ledger_has_a_checkpoint_too() -> None:
    empty = sign_checkpoint(
        KEY, origin="ocsea-audit", tree_size=0, root=hashlib.sha256(b"").digest(), at=AT
    )
    verify_checkpoint(empty, raw_public_key(KEY))
    assert empty.tree_size == 0
    assert Checkpoint.model_validate_json(empty.model_dump_json()) == empty
    assert datetime.fromisoformat(empty.timestamp).astimezone(UTC) == AT.replace(microsecond=123000)
