"""Opening a report's sealed part with its case's key, to rebuild intake's state (in memory
only: what is derived from it is keyed hashes)."""

from __future__ import annotations

import uuid

from cryptography.exceptions import InvalidTag

from contracts.events import EncryptedBlob
from ocsea.runtime.crypto import CaseErasedError, CaseKeyNotFoundError, CaseKeys
from services.intake.ports import CaseNotKnown


class SealedParts:
    """The `SealedOpener` port on the case keys."""

    def __init__(self, keys: CaseKeys) -> None:
        self._keys = keys

    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes | None:
        try:
            return await self._keys.open(case_id, blob)
        except CaseErasedError:
            return None
        except CaseKeyNotFoundError as exc:
            raise CaseNotKnown(str(case_id)) from exc
        except (InvalidTag, ValueError):
            return None  # not sealed under the case's key, or not base64
