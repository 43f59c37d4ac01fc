"""A supervisor's override: what it records, and how it holds against the rules' own result.

An override holds until the rules' own result becomes more protective than it was when the
supervisor decided (a child where they computed an adult, a more urgent priority): new evidence
is then not silently ignored, and the result says which field was superseded.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from contracts.events import (
    CaseTriageOverriddenData,
    Classification,
    EncryptedBlob,
    OverrideReason,
    Priority,
    ReportTriagedData,
    TriageOverrideInfo,
)


def override_info(
    *,
    override_id: uuid.UUID,
    by: str,
    at: datetime,
    reason_code: OverrideReason,
    classification: Classification | None,
    priority: Priority | None,
    computed: ReportTriagedData,
) -> TriageOverrideInfo:
    """The override as it stays in force: the supervisor's values beside the rules' own
    result when they decided (`computed`, the case's result without any override)."""
    return TriageOverrideInfo(
        override_id=override_id,
        by=by,
        at=at,
        reason_code=reason_code,
        classification=classification,
        priority=priority,
        computed_classification=computed.classification,
        computed_priority=computed.priority,
    )


def overridden_data(
    info: TriageOverrideInfo,
    *,
    result: ReportTriagedData,
    computed: ReportTriagedData,
    previous: ReportTriagedData | None,
    note: EncryptedBlob,
) -> CaseTriageOverriddenData:
    """The override's event: old (the case's last result, or the rules' own when it had
    none), new, and what the rules computed."""
    old = previous or computed
    return CaseTriageOverriddenData(
        report_id=result.report_id,
        override_id=info.override_id,
        reason_code=info.reason_code,
        note=note,
        classification=info.classification,
        priority=info.priority,
        old_classification=old.classification,
        new_classification=result.classification,
        old_priority=old.priority,
        new_priority=result.priority,
        computed_classification=computed.classification,
        computed_priority=computed.priority,
        rules_version=result.rules_version,
    )


def recorded_override(result: ReportTriagedData) -> TriageOverrideInfo | None:
    """The override in force as it was recorded when made, from a result made under it (which
    adds what the rules say now, and what of it later evidence superseded)."""
    if result.override is None:
        return None
    return result.override.model_copy(
        update={"superseded": (), "current_classification": None, "current_priority": None}
    )


def apply_override(result: ReportTriagedData, override: TriageOverrideInfo) -> ReportTriagedData:
    """The supervisor's values, unless evidence since the override is more protective (the
    result then says which field was superseded)."""
    superseded: list[str] = []
    classification = result.classification
    if override.classification is not None:
        newly_child = (
            result.classification is Classification.TF_CSEA
            and override.computed_classification is Classification.TFGBV
            and override.classification is Classification.TFGBV
        )
        if newly_child:
            superseded.append("classification")
        else:
            classification = override.classification
    priority = result.priority
    if override.priority is not None:
        rules_now = result.priority.rank
        if rules_now < override.computed_priority.rank and rules_now < override.priority.rank:
            superseded.append("priority")
        else:
            priority = override.priority
    info = override.model_copy(
        update={
            "superseded": tuple(superseded),
            "current_classification": result.classification,
            "current_priority": result.priority,
        }
    )
    note = f"supervisor override ({override.reason_code.value})"
    if superseded:
        note += f", superseded for {', '.join(superseded)} by later evidence"
    return result.model_copy(
        update={
            "classification": classification,
            "presumed_child": result.presumed_child and classification is result.classification,
            "priority": priority,
            "priority_basis": f"{result.priority_basis}; {note}: {priority.value}",
            "age_note": (
                result.age_note
                if classification is result.classification
                else f"{note}: {classification.value} (rules: {result.age_note})"
            ),
            "override": info,
        }
    )
