"""Audit entries: what the ledger records of each event, canonically encoded.

An entry names ids, the action and a digest of the event's exact bytes; never the event's
personal content. Its canonical JSON (sorted keys, no spaces, UTF-8) is the Merkle leaf.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from contracts.events import Envelope


def canonical_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_for(
    *,
    seq: int,
    envelope: Envelope,
    recorded_at: datetime,
    topic: str,
    partition: int,
    offset: int,
    event_sha256: str,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": envelope.occurred_at.isoformat(),
        "recorded_at": recorded_at.isoformat(),
        "case_id": str(envelope.case_id),
        "report_id": str(envelope.report_id) if envelope.report_id else None,
        "actor": envelope.actor.model_dump(mode="json"),
        "action": envelope.event_type,
        "producer": envelope.producer,
        "source_event_id": str(envelope.event_id),
        "event_sha256": event_sha256,
        "topic": topic,
        "partition": partition,
        "offset": offset,
    }
