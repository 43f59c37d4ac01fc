"""A case's triage: its reports combined into one result, and what a partner may be shown of it.

Reports of one case concern the same survivor(s) (intake links them), so the rules run over
all of them at once: classification by age at the time of the abuse (`age`), types of violence
and urgency from every source (`signals`, `urgency`), and the supervisor's override in force
(`overrides`). Any child among the survivors makes the case TF-CSEA.

The result is a function of (reports, rules, override) only: no clock, no randomness, so the
same inputs and rules give the same bytes; `inputs_digest` pins the inputs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace

from contracts.events import (
    Classification,
    PartnerAssessment,
    ReportReceivedData,
    ReportTriagedData,
    TriageOverrideInfo,
    ViolenceLabel,
)
from contracts.reports import ViolenceType
from services.triage.domain.age import (
    DEPICTED,
    SOURCE,
    UNKNOWN,
    age_note,
    assess,
    decisive_finding,
    survivor_findings,
)
from services.triage.domain.overrides import apply_override
from services.triage.domain.reports import CaseReport, canonical_order, inputs_digest
from services.triage.domain.rules import Rules, shipped_rules
from services.triage.domain.signals import ScanCache, collect_signals
from services.triage.domain.urgency import add_case_factors, urgency


def triage_case(
    reports: Iterable[CaseReport],
    rules: Rules,
    *,
    trigger_report_id: uuid.UUID | None = None,
    override: TriageOverrideInfo | None = None,
    scans: ScanCache | None = None,
) -> ReportTriagedData:
    """The case's combined triage result: a pure function of its reports, rules and override,
    with the assessment its report's partner may be shown (`partner_assessment`).

    `scans` keeps narratives' scans from one call to the next (a service re-triages a case
    on every report); without it, a call scans each narrative once for itself."""
    ordered = canonical_order(reports)
    if not ordered:
        raise ValueError("a case has at least one report")
    scans = scans if scans is not None else ScanCache()
    result = _case_result(
        ordered, rules, scans, trigger_report_id=trigger_report_id, override=override
    )
    return result.model_copy(
        update={"partner_assessment": partner_assessment(ordered, result, rules, override, scans)}
    )


def triage(received: ReportReceivedData, rules: Rules | None = None) -> ReportTriagedData:
    """One report on its own (a case's first report)."""
    return triage_case([CaseReport(received)], rules or shipped_rules())


def _case_result(
    ordered: Sequence[CaseReport],
    rules: Rules,
    scans: ScanCache,
    *,
    trigger_report_id: uuid.UUID | None,
    override: TriageOverrideInfo | None,
) -> ReportTriagedData:
    """The rules over reports already in canonical order (at least one)."""
    order = [r.received.report_id for r in ordered]
    signals = collect_signals(ordered, rules, scans)

    findings = survivor_findings(ordered, rules)
    if signals.depicted:
        findings.append(assess(DEPICTED, signals.depicted, rules))
    if signals.source_minor:
        findings.append(assess(SOURCE, signals.source_minor, rules))
    if not findings:
        findings.append(assess(UNKNOWN, (), rules))
    classification = (
        Classification.TF_CSEA if any(f.child for f in findings) else Classification.TFGBV
    )
    decisive = decisive_finding(findings)

    add_case_factors(signals.factors, ordered, findings, rules)
    urgent = urgency(ordered, signals.factors, rules)
    labels = tuple(
        ViolenceLabel(type=v, sources=tuple(signals.labels.sources[v.value]))
        for v in ViolenceType
        if v.value in signals.labels.sources
    )
    child_on_child = classification is Classification.TF_CSEA and bool(signals.child_on_child)
    consent = [
        r.received.police_referral_consent
        for r in ordered
        if r.received.police_referral_consent is not None
    ]
    # The incident's place, from the first report that names one: its district (a gazetteer
    # id, never free text) lies in that governorate, for units that cover only some districts.
    area = next((r.received.incident for r in ordered if r.received.incident.governorate), None)
    result = ReportTriagedData(
        report_id=trigger_report_id or order[-1],
        classification=classification,
        presumed_child=classification is Classification.TF_CSEA and decisive.presumed_child,
        age_used=decisive.age,
        age_basis=decisive.basis,
        priority=urgent.priority,
        score=urgent.score,
        factors=urgent.factors,
        violence_types=tuple(label.type for label in labels),
        governorate=area.governorate if area else None,
        district=area.district if area else None,
        language=next((r.received.language for r in ordered if r.received.language), None),
        police_referral_consent=consent[-1] if consent else None,
        rules_version=rules.version,
        confidence=decisive.confidence,
        age_note=age_note(classification, decisive),
        survivors=tuple(findings),
        child_on_child=child_on_child,
        child_on_child_basis=tuple(signals.child_on_child) if child_on_child else (),
        violence_labels=labels,
        priority_basis=urgent.basis,
        priority_floor=urgent.floor,
        case_report_ids=tuple(order),
        sealed_data_read=any(r.sealed.opened for r in ordered),
        inputs_digest=inputs_digest(ordered, override),
        rules_digest=rules.digest,
    )
    return apply_override(result, override) if override else result


# ---------------------------------------------------------------------------------------------
# What a partner may be shown


def own_reports(reports: Iterable[CaseReport], partner_id: str) -> list[CaseReport]:
    """The partner's own reports of a case, as they would be had no other partner reported:
    links to reports not among them are left out, since they may be another partner's and the
    rules count linked reports (`repeat_reports`)."""
    mine = [r for r in reports if r.received.partner_id == partner_id]
    ids = {r.received.report_id for r in mine}

    def alone(report: CaseReport) -> CaseReport:
        links = report.received.linked_report_ids
        if all(link in ids for link in links):
            return report
        kept = tuple(link for link in links if link in ids)
        reasons = report.received.link_reasons if kept else ()
        received = report.received.model_copy(
            update={"linked_report_ids": kept, "link_reasons": reasons}
        )
        return replace(report, received=received)

    return [alone(r) for r in mine]


def partner_assessment(
    ordered: Sequence[CaseReport],
    result: ReportTriagedData,
    rules: Rules,
    override: TriageOverrideInfo | None = None,
    scans: ScanCache | None = None,
) -> PartnerAssessment | None:
    """The classification and priority drawn only from the reports of the partner whose report
    caused `result` (None if that report is not among `ordered`).

    A partner must never learn that another partner reported the same person, so what it is
    shown is what the rules make of its own reports alone. The supervisor's override counts
    only when every report of the case is the partner's: it was decided on the whole case."""
    partner = next(
        (r.received.partner_id for r in ordered if r.received.report_id == result.report_id), None
    )
    if partner is None:
        return None
    own = own_reports(ordered, partner)
    only_its_own = len(own) == len(ordered)
    if only_its_own and all(a is b for a, b in zip(own, ordered, strict=True)):
        # Nothing of anyone else's went into the case's result: it is the partner's own.
        source = result
    else:
        source = _case_result(
            own,
            rules,
            scans if scans is not None else ScanCache(),
            trigger_report_id=None,
            override=override if only_its_own else None,
        )
    return PartnerAssessment(
        partner_id=partner, classification=source.classification, priority=source.priority
    )
