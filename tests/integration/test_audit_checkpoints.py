"""Checkpoints over a real ledger: signed on demand, afresh when stale, periodically while the
ledger grows; and the signing key's life (generated locally, required in a deployment)."""

from __future__ import annotations

import hashlib
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from contracts import topics
from contracts.events import Actor, ActorKind, EventType, make_event
from ocsea.runtime.consumer import Origin
from ocsea.runtime.settings import Settings
from services.audit.adapters.ledger import Ledger
from services.audit.adapters.signing_key import (
    SigningKeyError,
    load_signing_key,
    signing_key_for,
)
from services.audit.domain import merkle
from services.audit.domain.checkpoint import Checkpoint, raw_public_key, verify_checkpoint
from services.audit.domain.entry import NewEntry, event_entry
from services.audit.handlers import Checkpointer
from testkit.triage_events import received
from testkit.waiting import wait_for

pytestmark = pytest.mark.integration


def entries(count: int) -> list[NewEntry]:
    origin = Origin(topics.REPORTS_RECEIVED, 0, 0, hashlib.sha256(b"").hexdigest())
    return [
        event_entry(
            make_event(
                event_type=EventType.REPORT_RECEIVED,
                case_id=uuid.uuid4(),
                producer="intake",
                actor=Actor(kind=ActorKind.PARTNER, id="partner-hotline"),
                data=received(),
            ),
            origin,
        )
        for _ in range(count)
    ]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    store = Ledger(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    await store.create()
    yield store
    await store.close()


async def test_checkpoints_sign_the_ledgers_own_root(ledger: Ledger, tmp_path: Path) -> None:
    key = load_signing_key(tmp_path / "key.pem", create=True)
    checkpointer = Checkpointer(ledger, key, "ocsea-audit")
    empty = await checkpointer.current()
    assert (empty.tree_size, empty.root) == (0, merkle.EMPTY_ROOT)

    await ledger.append_batch(entries(5))
    first = await checkpointer.current()  # stale: signed afresh
    assert first.tree_size == 5
    leaves = await ledger.leaves(0, 5)
    assert first.root == merkle.root_from_leaf_hashes(leaf.leaf_hash for leaf in leaves)
    verify_checkpoint(first, raw_public_key(key))
    assert await checkpointer.current() == first  # unchanged ledger: the same checkpoint
    again = await checkpointer.sign_now()  # on demand: signed now, same head
    assert (again.tree_size, again.root_hash) == (first.tree_size, first.root_hash)
    stored = await ledger.latest_checkpoint()
    assert stored is not None
    assert Checkpoint.model_validate_json(stored) == again


async def test_checkpoints_are_signed_periodically_while_the_ledger_grows(
    ledger: Ledger, tmp_path: Path
) -> None:
    checkpointer = Checkpointer(
        ledger, load_signing_key(tmp_path / "key.pem", create=True), "ocsea-audit"
    )
    await checkpointer.start(interval_s=0.05)
    try:
        for size in (3, 7):
            await ledger.append_batch(entries(size - await ledger.size()))

            async def signed(expected: int = size) -> Checkpoint | None:
                stored = await ledger.latest_checkpoint()
                latest = Checkpoint.model_validate_json(stored) if stored else None
                return latest if latest and latest.tree_size == expected else None

            verify_checkpoint(await wait_for(signed, what=f"a checkpoint of size {size}"))
    finally:
        await checkpointer.stop()


def test_a_local_key_is_generated_private_and_kept(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    key = signing_key_for(settings)
    path = tmp_path / "audit-signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in path.with_suffix(".pub").read_bytes()
    assert raw_public_key(signing_key_for(settings)) == raw_public_key(key)  # not replaced


def test_a_deployments_key_must_exist_and_be_ed25519(tmp_path: Path) -> None:
    missing = Settings(var_dir=tmp_path, audit_signing_key_file=tmp_path / "absent.pem")
    with pytest.raises(SigningKeyError, match="must supply"):
        signing_key_for(missing)
    assert not (tmp_path / "absent.pem").exists()
    other = tmp_path / "ec.pem"
    other.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 key"):
        load_signing_key(other, create=False)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM key"):
        load_signing_key(tmp_path / "junk.pem", create=False)
