"""The checkpoint signing key (Ed25519, PEM) and the task that signs checkpoints.

A deployment supplies its key through `OCSEA_AUDIT_SIGNING_KEY_FILE` (it must exist: a service
that silently made itself a new key would sign checkpoints nobody can pin). The local stack gets
one generated under var/ on first use, with its public half beside it for auditors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from contracts.events import utc_now
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings
from services.audit.domain import signed_note
from services.audit.domain.checkpoint import (
    Checkpoint,
    public_key_of,
    raw_public_key,
    sign_checkpoint,
)
from services.audit.ledger import Ledger

log = get_logger("ocsea.audit.checkpoints")


class SigningKeyError(RuntimeError):
    """The configured signing key is missing or is not an Ed25519 private key."""


def load_signing_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    if not path.is_file():
        if not create:
            raise SigningKeyError(
                f"audit signing key {path} not found (OCSEA_AUDIT_SIGNING_KEY_FILE): a "
                "deployment must supply its Ed25519 key (PEM); only a local run, with neither "
                "OCSEA_DEPLOYMENT nor OCSEA_AUDIT_SIGNING_KEY_FILE set, has one generated"
            )
        return _generate(path)
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"audit signing key {path} is not an unencrypted PEM key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"audit signing key {path} is not an Ed25519 key")
    return key


def signing_key_for(settings: Settings) -> Ed25519PrivateKey:
    # A configured path, or deployment mode, means the deployment supplies the key.
    local = settings.audit_signing_key_file is None and not settings.deployment
    return load_signing_key(settings.resolved_audit_signing_key_file, create=local)


def _generate(path: Path) -> Ed25519PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    path.with_suffix(".pub").write_bytes(public_pem)
    log.info("audit.signing_key_created", path=str(path))
    return key


class Checkpointer:
    """Signs tree heads of the ledger: on demand, whenever a stale one is asked for, and
    periodically while the ledger grows."""

    def __init__(
        self,
        ledger: Ledger,
        key: Ed25519PrivateKey,
        origin: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.ledger = ledger
        self.key = key
        self.origin = origin
        self.clock = clock
        self.public_key = public_key_of(key)
        self.verifier_key = signed_note.verifier_key(origin, raw_public_key(key))
        """The same key as a C2SP signed-note verifier key, named by the origin."""
        self._task: asyncio.Task[None] | None = None

    async def sign_now(self) -> Checkpoint:
        size = await self.ledger.size()
        root = await self.ledger.root(size)
        at = self.clock()
        checkpoint = sign_checkpoint(self.key, origin=self.origin, tree_size=size, root=root, at=at)
        await self.ledger.add_checkpoint(
            tree_size=size,
            key_id=checkpoint.key_id,
            signed_at=at,
            checkpoint=checkpoint.model_dump_json(),
        )
        log.info("audit.checkpoint_signed", tree_size=size, root_hash=checkpoint.root_hash)
        return checkpoint

    async def current(self) -> Checkpoint:
        """The latest checkpoint, signed afresh if the ledger has grown since (or the key
        changed), so an auditor never gets a head that leaves out recorded entries."""
        stored = await self.ledger.latest_checkpoint()
        if stored is not None:
            latest = Checkpoint.model_validate_json(stored)
            if (
                latest.tree_size == await self.ledger.size()
                and latest.origin == self.origin
                and latest.key_id == self.public_key.key_id
            ):
                return latest
        return await self.sign_now()

    async def tlog_checkpoint(self) -> str:
        """The current checkpoint's tree head as a C2SP `tlog-checkpoint` signed note. Not
        stored: the note has no timestamp and Ed25519 is deterministic, so a tree head always
        gives the same note."""
        head = await self.current()
        return signed_note.tlog_checkpoint(
            self.key, origin=head.origin, tree_size=head.tree_size, root=head.root
        )

    async def _every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.current()
            except Exception:
                log.exception("audit.checkpoint_failed")

    async def start(self, interval_s: float) -> None:
        self._task = asyncio.create_task(self._every(interval_s), name="audit-checkpoints")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
