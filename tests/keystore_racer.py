"""A process creating case keys, as an intake replica does: run by tests/test_case_keys.py in
processes of their own (spawned, so this module imports only what such a process needs)."""

from __future__ import annotations

import asyncio
import os
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from ocsea.runtime.keystore import KeyStore


def create_keys(url: str, case_ids: list[str], start: Barrier, results: Queue[object]) -> None:
    """Create the cases' first keys once every racer is ready; put what it was handed back."""

    async def run() -> dict[str, bytes]:
        keystore = KeyStore(url)
        try:
            await keystore.ping()  # connected, the table there: the race is on the keys alone
            start.wait(timeout=120)
            made = await asyncio.gather(
                *(keystore.create(uuid.UUID(c), os.urandom(60)) for c in case_ids)
            )
        finally:
            await keystore.close()
        return {c: m.wrapped or b"" for c, m in zip(case_ids, made, strict=True)}

    results.put(asyncio.run(run()))
