"""Console sessions: server-side, behind an opaque cookie; the bearer token never leaves us.

The browser holds only a random session id (HttpOnly, SameSite=Strict). The server keeps the
session under the id's SHA-256, with the user's bearer token sealed (AES-GCM) under a key
derived from the id itself: whoever reads the session store alone learns no token, and a
session id guessed from the store's keys does not exist. A session ends after
`console_session_idle_s` unused (the store's expiry, renewed on every use), after
`console_session_max_s` in any case, or at sign-out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from ocsea.runtime.auth import Principal
from services.console.ports import Session

KEY_PREFIX = "ocsea:console:session:"


class _Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    principal: Principal
    sealed_token: str
    csrf: str
    created_at: float


class SessionBackend(Protocol):
    """Where sealed sessions live: a key-value store with per-key expiry."""

    async def put(self, key: str, value: bytes, ttl_s: int) -> None: ...

    async def get(self, key: str, ttl_s: int) -> bytes | None:
        """The value, its expiry renewed to `ttl_s` from now; None when gone."""
        ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> None: ...


class RedisBackend:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def put(self, key: str, value: bytes, ttl_s: int) -> None:
        await self.redis.set(key, value, ex=ttl_s)

    async def get(self, key: str, ttl_s: int) -> bytes | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.expire(key, ttl_s)
            value, _ = await pipe.execute()
        return bytes(value) if value is not None else None

    async def delete(self, key: str) -> None:
        await self.redis.delete(key)

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


def _storage_key(session_id: str) -> str:
    return KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def _cipher(session_id: str) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"ocsea-console-session-token"
    ).derive(session_id.encode())
    return AESGCM(key)


class Sessions:
    """The console's `SessionStore`, over any `SessionBackend`."""

    def __init__(
        self,
        backend: SessionBackend,
        *,
        idle_s: int,
        max_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock

    async def start(self, principal: Principal, token: str) -> tuple[str, Session]:
        """A new session; returns its id (for the cookie only) and the session."""
        session_id = secrets.token_urlsafe(32)
        key = _storage_key(session_id)
        nonce = os.urandom(12)
        sealed = nonce + _cipher(session_id).encrypt(nonce, token.encode(), key.encode())
        session = Session(
            principal=principal,
            token=token,
            csrf=secrets.token_urlsafe(32),
            created_at=self.clock(),
        )
        stored = _Stored(
            principal=principal,
            sealed_token=base64.b64encode(sealed).decode(),
            csrf=session.csrf,
            created_at=session.created_at,
        )
        await self.backend.put(key, stored.model_dump_json().encode(), self.idle_s)
        return session_id, session

    async def find(self, session_id: str | None) -> Session | None:
        """The live session of this id (its idle time restarted), or None."""
        if not session_id or len(session_id) > 200:
            return None
        key = _storage_key(session_id)
        raw = await self.backend.get(key, self.idle_s)
        if raw is None:
            return None
        stored = _Stored.model_validate_json(raw)
        if self.clock() - stored.created_at > self.max_s:
            await self.backend.delete(key)
            return None
        sealed = base64.b64decode(stored.sealed_token)
        token = _cipher(session_id).decrypt(sealed[:12], sealed[12:], key.encode()).decode()
        return Session(
            principal=stored.principal,
            token=token,
            csrf=stored.csrf,
            created_at=stored.created_at,
        )

    async def end(self, session_id: str | None) -> None:
        if session_id:
            await self.backend.delete(_storage_key(session_id))

    async def ping(self) -> None:
        await self.backend.ping()
