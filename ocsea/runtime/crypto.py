"""Personal data sealed with AES-GCM under a per-case data key (envelope encryption).

Each case gets a random 256-bit data key, stored in Redis only wrapped (AES-GCM) by the
deployment's key-encryption key. Destroying a case's data key erases its personal data
everywhere it travelled (crypto-shredding) while ids and digests stay verifiable.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from contracts.events import EncryptedBlob

_NONCE_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


def load_or_create_master_key(path: Path) -> bytes:
    """The key-encryption key; generated (0600) for the local stack on first use."""
    if path.is_file():
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"master key {path} must hold exactly 32 bytes, found {len(key)}")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class CaseKeyNotFoundError(LookupError):
    """The case's data key is gone: its personal data has been shredded."""


class CaseKeys:
    def __init__(self, redis: Redis, master_key: bytes) -> None:
        self._redis = redis
        self._kek = AESGCM(master_key)

    @staticmethod
    def _redis_key(case_id: uuid.UUID) -> str:
        return f"ocsea:case-key:{case_id}"

    async def _data_key(self, case_id: uuid.UUID, *, create: bool) -> bytes:
        stored: bytes | str | None
        if create:
            nonce = os.urandom(_NONCE_BYTES)
            wrapped = nonce + self._kek.encrypt(
                nonce, AESGCM.generate_key(bit_length=256), case_id.bytes
            )
            # One round trip on intake's hot path: NX keeps the first key when two reports on
            # one case race, and GET hands back the key the case already has.
            earlier = await self._redis.set(self._redis_key(case_id), wrapped, nx=True, get=True)
            stored = earlier if isinstance(earlier, bytes | str) else wrapped
        else:
            stored = await self._redis.get(self._redis_key(case_id))
        if stored is None:
            raise CaseKeyNotFoundError(str(case_id))
        blob = stored if isinstance(stored, bytes) else stored.encode("latin-1")
        return self._kek.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], case_id.bytes)

    async def seal(self, case_id: uuid.UUID, plaintext: bytes) -> EncryptedBlob:
        key = await self._data_key(case_id, create=True)
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext, case_id.bytes)
        return EncryptedBlob(key_id=str(case_id), nonce=_b64(nonce), ciphertext=_b64(ciphertext))

    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes:
        key = await self._data_key(case_id, create=False)
        return AESGCM(key).decrypt(_unb64(blob.nonce), _unb64(blob.ciphertext), case_id.bytes)

    async def shred(self, case_id: uuid.UUID) -> None:
        await self._redis.delete(self._redis_key(case_id))
