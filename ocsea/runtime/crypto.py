"""Personal data sealed with AES-GCM under a per-case data key (envelope encryption).

Each case gets a random 256-bit data key, kept only wrapped (AES-GCM) by the deployment's
key-encryption key, in the durable key store (`ocsea.runtime.keystore`) with Redis as its
cache: a Redis loss loses no key. Destroying a case's data key erases its personal data
everywhere it travelled (crypto-shredding) while ids and digests stay verifiable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from contracts.events import EncryptedBlob, ErasureReason, utc_now
from ocsea.runtime.keystore import Erasure, KeyStore, StoredKey
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings

if TYPE_CHECKING:
    from ocsea.runtime.service import ServiceContext

log = get_logger("ocsea.crypto")

_NONCE_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


class KeyFileMissingError(RuntimeError):
    """Deployment mode, and a key file the deployment must supply is not there."""


def load_or_create_master_key(
    path: Path, *, create: bool = True, setting: str = "OCSEA_MASTER_KEY_FILE"
) -> bytes:
    """A 32-byte key from `path`: generated (0600) on first use for a local run; with
    `create=False` (deployment mode) a missing file is refused, since a service that made
    itself a new key would seal data no other service can open, or match nothing seen before.
    `setting` names the variable that points at the file, for the error."""
    if path.is_file():
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"key {path} ({setting}) must hold exactly 32 bytes, found {len(key)}")
        return key
    if not create:
        raise KeyFileMissingError(
            f"{setting}: no key at {path}. Deployment mode (OCSEA_DEPLOYMENT=true) never "
            f"generates keys: supply the deployment's key (32 random bytes) as a secret and "
            f"point {setting} at it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def master_key_for(settings: Settings) -> bytes:
    """The deployment's key-encryption key (`OCSEA_MASTER_KEY_FILE`)."""
    return load_or_create_master_key(
        settings.resolved_master_key_file, create=not settings.deployment
    )


class CaseKeyNotFoundError(LookupError):
    """No data key for the case: the key store has never known one."""


class CaseErasedError(CaseKeyNotFoundError):
    """The case's data key was destroyed: its personal data is erased everywhere it went."""

    def __init__(self, case_id: uuid.UUID, erasure: Erasure) -> None:
        super().__init__(str(case_id))
        self.erasure = erasure


_KEY, _ERASED = b"k", b"e"


def _cached(stored: StoredKey) -> bytes:
    if stored.erasure is None:
        return _KEY + (stored.wrapped or b"")
    erasure = stored.erasure
    return (
        _ERASED
        + json.dumps(
            {
                "erased_at": erasure.erased_at.isoformat(),
                "reason": erasure.reason.value,
                "erased_by": erasure.erased_by,
                "reference": erasure.reference,
            }
        ).encode()
    )


def _from_cache(value: bytes) -> StoredKey:
    if value.startswith(_ERASED):
        fields = json.loads(value[1:])
        return StoredKey(
            wrapped=None,
            erasure=Erasure(
                erased_at=datetime.fromisoformat(fields["erased_at"]),
                reason=ErasureReason(fields["reason"]),
                erased_by=fields["erased_by"],
                reference=fields["reference"],
            ),
        )
    return StoredKey(wrapped=value[1:])


class CaseKeys:
    """Each case's data key: kept wrapped in the durable key store (`KeyStore`), with Redis
    as its cache, so losing Redis loses no key.

    A cache entry is written only after the key store has the row (`SET NX`, so a reader that
    raced an erasure cannot put the destroyed key back); an erasure overwrites the entry with
    the erasure itself. Keys that an earlier version kept in Redis alone
    (`ocsea:case-key:<case>`) are moved into the key store when first met.
    """

    def __init__(
        self,
        redis: Redis,
        master_key: bytes,
        store: KeyStore,
        *,
        cache_ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        self._redis = redis
        self._kek = AESGCM(master_key)
        # The cache is named after the master key: processes under another master key (another
        # deployment sharing the Redis, a test system, a key being rotated) never read each
        # other's wrapped keys, which they could not unwrap.
        self._cache_prefix = f"ocsea:keystore:{hashlib.sha256(master_key).hexdigest()[:16]}:case:"
        self.store = store
        self._cache_ttl_s = cache_ttl_s

    @classmethod
    def for_service(cls, context: ServiceContext, redis: Redis | None = None) -> CaseKeys:
        """The service's case keys (its Redis, or the one given), on the key store of its
        settings; the store is checked for readiness and closed with the service."""
        settings = context.settings
        keys = cls(
            redis if redis is not None else context.redis,
            master_key_for(settings),
            KeyStore.from_settings(settings),
            cache_ttl_s=settings.keystore_cache_ttl_s,
        )
        context.readiness["keystore"] = keys.store.ping
        context.on_shutdown.append(keys.store.close)
        return keys

    def cache_key(self, case_id: uuid.UUID) -> str:
        return f"{self._cache_prefix}{case_id}"

    @staticmethod
    def _legacy_key(case_id: uuid.UUID) -> str:
        return f"ocsea:case-key:{case_id}"

    def _wrap(self, case_id: uuid.UUID, data_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._kek.encrypt(nonce, data_key, case_id.bytes)

    def _unwrap(self, case_id: uuid.UUID, wrapped: bytes) -> bytes:
        return self._kek.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], case_id.bytes)

    async def _stored(self, case_id: uuid.UUID, *, create: bool) -> StoredKey:
        cached, legacy = await self._redis.mget(self.cache_key(case_id), self._legacy_key(case_id))
        if cached is not None:
            return _from_cache(_as_bytes(cached))
        if legacy is not None:  # kept by an earlier version in Redis alone: adopt it
            stored = await self.store.create(case_id, _as_bytes(legacy))
        elif create:
            stored = await self.store.create(
                case_id, self._wrap(case_id, AESGCM.generate_key(bit_length=256))
            )
        else:
            found = await self.store.get(case_id)
            if found is None:
                raise CaseKeyNotFoundError(str(case_id))
            stored = found
        await self._redis.set(
            self.cache_key(case_id), _cached(stored), nx=True, ex=self._cache_ttl_s
        )
        return stored

    async def seal(self, case_id: uuid.UUID, plaintext: bytes) -> EncryptedBlob:
        stored = await self._stored(case_id, create=True)
        if stored.wrapped is None:
            # An erased case takes no personal data any more: what arrives for it is sealed
            # under a key thrown away at once, so it is erased on arrival (and the report
            # itself still goes through).
            log.warning("case.sealed_after_erasure", case_id=str(case_id))
            key = AESGCM.generate_key(bit_length=256)
        else:
            key = self._unwrap(case_id, stored.wrapped)
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext, case_id.bytes)
        return EncryptedBlob(key_id=str(case_id), nonce=_b64(nonce), ciphertext=_b64(ciphertext))

    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes:
        """The plaintext; `CaseErasedError` once the case is erased, `CaseKeyNotFoundError`
        for a case the key store never knew, `InvalidTag` for a blob that is not the case's."""
        stored = await self._stored(case_id, create=False)
        if stored.wrapped is None:
            assert stored.erasure is not None
            raise CaseErasedError(case_id, stored.erasure)
        key = self._unwrap(case_id, stored.wrapped)
        return AESGCM(key).decrypt(_unb64(blob.nonce), _unb64(blob.ciphertext), case_id.bytes)

    async def erasure(self, case_id: uuid.UUID) -> Erasure | None:
        """The case's erasure, if it was erased (None too for a case the store never knew)."""
        try:
            return (await self._stored(case_id, create=False)).erasure
        except CaseKeyNotFoundError:
            return None

    async def erase(
        self,
        case_id: uuid.UUID,
        reason: ErasureReason,
        erased_by: str,
        reference: str | None = None,
    ) -> Erasure | None:
        """Destroy the case's data key (crypto-shredding): its personal data can no longer be
        opened anywhere. Idempotent: erasing again returns the first erasure. None: no key was
        ever known for the case (nothing to erase)."""
        legacy = await self._redis.get(self._legacy_key(case_id))
        if legacy is not None and await self.store.get(case_id) is None:
            await self.store.create(case_id, _as_bytes(legacy))
        erasure = await self.store.erase(
            case_id,
            Erasure(erased_at=utc_now(), reason=reason, erased_by=erased_by, reference=reference),
        )
        if erasure is None:
            return None
        # Overwritten, not deleted: a reader that read the key just before cannot cache it
        # again (its SET NX finds this entry).
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self.cache_key(case_id),
                _cached(StoredKey(wrapped=None, erasure=erasure)),
                ex=self._cache_ttl_s,
            )
            pipe.delete(self._legacy_key(case_id))
            await pipe.execute()
        log.info("case.key_destroyed", case_id=str(case_id), reason=erasure.reason.value)
        return erasure


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")
