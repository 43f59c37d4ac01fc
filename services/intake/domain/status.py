"""A partner's view of its own report: its progress, never another partner's part of a case."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from contracts.reports import ReportState, ReportStatus


@dataclass(frozen=True)
class ReportStatusRecord:
    """One report as intake keeps it: its own fields, the record whose progress it shows (the
    original's, for a duplicate), and what its partner may see of the case's classification."""

    fields: dict[str, str]
    progress: dict[str, str]
    view: dict[str, str]


def partner_view(report_id: uuid.UUID, partner: str, record: ReportStatusRecord) -> ReportStatus:
    """A report as its partner may see it: its own progress, its own reference for the case,
    its own earlier reports on the case, and the classification and priority triage drew from
    its own reports alone (never from another partner's): the same answer as had no other
    partner reported the same person."""
    fields, progress, view = record.fields, record.progress, record.view
    own_linked = [r for r, other in json.loads(progress.get("linked", "[]")) if other == partner]
    state = (
        ReportState.ROUTED
        if progress.get("routed_at")
        else ReportState.TRIAGED
        if progress.get("triaged_at")
        else ReportState.RECEIVED
    )
    known = state is not ReportState.RECEIVED
    return ReportStatus.model_validate(
        {
            "report_id": str(report_id),
            "case_id": fields.get("case_ref", fields["case_id"]),
            "status": state,
            "received_at": fields["received_at"],
            "source_format": fields["source_format"],
            "classification": view.get("classification") if known else None,
            "priority": view.get("priority") if known else None,
            "triaged_at": progress.get("triaged_at"),
            "routed_at": progress.get("routed_at"),
            "duplicate_of": fields.get("duplicate_of"),
            "duplicates_received": int(fields.get("duplicates", 0)),
            "linked_to_existing_case": bool(own_linked),
            "linked_report_ids": own_linked,
        }
    )
