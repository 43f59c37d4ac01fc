"""What the rules read: a case's reports, as they travelled in the clear and as far as triage
could unseal them, in one canonical order, with a digest of exactly those inputs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.events import ReportReceivedData, TriageOverrideInfo, canonical_json


@dataclass(frozen=True)
class SealedContent:
    """What triage reads, in memory only, from a report's sealed personal data.

    Never logged, never emitted: only which term lists matched (and a reported person's being
    under 18) reach the result.
    """

    opened: bool = False
    texts: tuple[str, ...] = ()
    reported_person_ages: tuple[int, ...] = ()


NOT_READ = SealedContent()

# Free-text places of the sealed canonical report that may describe what happened.
_TEXT_PATHS: tuple[tuple[str, ...], ...] = (
    ("narrative",),
    ("source", "additional_info"),
    ("source", "escalation_reason"),
)
_LIST_TEXT_FIELDS = {
    "survivors": "additional_info",
    "reported_persons": "additional_info",
    "files": "additional_info",
}


def read_sealed(personal: Mapping[str, Any]) -> SealedContent:
    """Pick the narrative texts and reported persons' ages out of the sealed report."""
    texts: list[str] = []
    for path in _TEXT_PATHS:
        node: Any = personal
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, str) and node.strip():
            texts.append(node)
    for list_name, text_field in _LIST_TEXT_FIELDS.items():
        for item in personal.get(list_name) or ():
            if isinstance(item, Mapping) and isinstance(item.get(text_field), str):
                texts.append(item[text_field])
    ages = tuple(
        p["age"]
        for p in personal.get("reported_persons") or ()
        if isinstance(p, Mapping) and isinstance(p.get("age"), int)
    )
    return SealedContent(opened=True, texts=tuple(texts), reported_person_ages=ages)


@dataclass(frozen=True)
class CaseReport:
    """One report of the case: what travelled in the clear, and what triage could unseal."""

    received: ReportReceivedData
    sealed: SealedContent = NOT_READ


def canonical_order(reports: Iterable[CaseReport]) -> list[CaseReport]:
    """Received order, one entry per report: the same set always combines the same way."""
    unique = {r.received.report_id: r for r in reports}
    return sorted(
        unique.values(), key=lambda r: (r.received.received_at, str(r.received.report_id))
    )


def inputs_digest(reports: Sequence[CaseReport], override: TriageOverrideInfo | None) -> str:
    """A digest of exactly what the rules saw: the received events (sealed part as ciphertext),
    whether the sealed part could be read, and the override in force."""
    document = {
        "reports": [
            {
                "received": r.received.model_dump(mode="json", exclude_defaults=True),
                "sealed_read": r.sealed.opened,
            }
            for r in canonical_order(reports)
        ],
        "override": (
            override.model_dump(
                mode="json",
                exclude={"superseded", "current_classification", "current_priority"},
            )
            if override
            else None
        ),
    }
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


def report_tag(report: uuid.UUID, survivor_ref: str | None = None) -> str:
    """How evidence names where it came from: a short report id (and the survivor's ref)."""
    short = f"report {str(report)[:8]}"
    return f"{short} {survivor_ref}" if survivor_ref else short
