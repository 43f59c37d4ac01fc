"""A case's change of classification or priority, with old, new and why in words."""

from __future__ import annotations

from contracts.events import CaseReclassifiedData, ReclassificationTrigger, ReportTriagedData


def reclassification(
    previous: ReportTriagedData | None,
    current: ReportTriagedData,
    *,
    trigger: ReclassificationTrigger,
) -> CaseReclassifiedData | None:
    """The change event when classification or priority moved, with old, new and why."""
    if previous is None or (
        previous.classification is current.classification and previous.priority is current.priority
    ):
        return None
    reasons = []
    if trigger is ReclassificationTrigger.OVERRIDE and current.override is not None:
        reasons.append(f"supervisor override ({current.override.reason_code.value})")
    if previous.classification is not current.classification:
        reasons.append(
            f"classification {previous.classification.value} -> "
            f"{current.classification.value}: {current.age_note}"
        )
    if previous.priority is not current.priority:
        before = {f.name: f.points for f in previous.factors}
        after = {f.name: f.points for f in current.factors}
        added = [f"{name} (+{points})" for name, points in after.items() if name not in before]
        removed = [f"{name} (-{points})" for name, points in before.items() if name not in after]
        change = ", ".join(added + removed)
        reasons.append(
            f"priority {previous.priority.value} -> {current.priority.value}: score "
            f"{previous.score} -> {current.score}" + (f" ({change})" if change else "")
        )
    return CaseReclassifiedData(
        report_id=current.report_id,
        old_classification=previous.classification,
        new_classification=current.classification,
        old_priority=previous.priority,
        new_priority=current.priority,
        reason="; ".join(reasons),
        rules_version=current.rules_version,
        trigger=trigger,
        old_score=previous.score,
        new_score=current.score,
        inputs_digest=current.inputs_digest,
    )
