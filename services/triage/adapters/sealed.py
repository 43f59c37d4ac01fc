"""Opening a report's sealed personal data, in memory only, to look for terms.

Triage reads the narrative (and reported persons' ages) to find types of violence and risks
that the partner did not tick; the text never leaves this process: it is not logged, not
stored, not emitted. Only which term lists matched reaches the result, and the result says
whether the sealed part was read (`sealed_data_read`).

Unread sealed data can lower a case's priority, so only what no waiting can change counts as
unreadable: an erased case (its key destroyed), a blob under a key the key store never had (not
sealed by this deployment's intake, which stores the key before it publishes), a blob that does
not open. A key store or cache that cannot be reached raises: the consumer waits the outage out
and triages the report once the keys can be read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag

from contracts.events import EncryptedBlob, ReportReceivedData
from ocsea.runtime.crypto import CaseErasedError, CaseKeyNotFoundError
from ocsea.runtime.logging import get_logger
from services.triage.domain.reports import NOT_READ, CaseReport, SealedContent, read_sealed

log = get_logger("ocsea.triage.sealed")


class CaseOpener(Protocol):
    async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes:
        """The plaintext (`ocsea.runtime.crypto.CaseKeys.open`)."""
        ...


class SealedReader:
    """The `SealedOpener` port over the case keys (None: sealed parts are not read)."""

    def __init__(self, keys: CaseOpener | None) -> None:
        self._keys = keys

    async def read(self, received: ReportReceivedData) -> SealedContent:
        blob = received.personal
        if self._keys is None or blob is None:
            return NOT_READ
        try:
            plaintext = await self._keys.open(uuid.UUID(blob.key_id), blob)
            personal = json.loads(plaintext)
        except CaseErasedError:
            return NOT_READ  # erased: unreadable everywhere, by design
        except CaseKeyNotFoundError:
            log.warning("sealed.key_unknown", report_id=str(received.report_id))
            return NOT_READ
        except (InvalidTag, ValueError) as exc:
            # The error's type only: its message could quote the plaintext.
            log.warning(
                "sealed.unreadable", report_id=str(received.report_id), error=type(exc).__name__
            )
            return NOT_READ
        return read_sealed(personal) if isinstance(personal, dict) else NOT_READ

    async def case_reports(self, received: Sequence[ReportReceivedData]) -> list[CaseReport]:
        return [CaseReport(r, await self.read(r)) for r in received]
