"""Signing checkpoints: tree heads of the ledger, on demand, whenever a stale one is asked for,
and periodically while the ledger grows."""

from __future__ import annotations

import asyncio
import contextlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.events import utc_now
from ocsea.runtime.logging import get_logger
from services.audit.domain import signed_note
from services.audit.domain.checkpoint import (
    Checkpoint,
    public_key_of,
    raw_public_key,
    sign_checkpoint,
)
from services.audit.ports import CheckpointLog, Clock

log = get_logger("ocsea.audit.checkpoints")


class Checkpointer:
    def __init__(
        self,
        ledger: CheckpointLog,
        key: Ed25519PrivateKey,
        origin: str,
        clock: Clock = utc_now,
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
        """Sign a checkpoint of the ledger as it is now, and keep it."""
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
        """Keep a checkpoint no older than `interval_s` while the ledger grows."""
        self._task = asyncio.create_task(self._every(interval_s), name="audit-checkpoints")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
