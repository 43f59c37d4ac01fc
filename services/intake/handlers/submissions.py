"""Intake's use cases: accept a report on any channel, accept a batch, a partner's report
status, and the status projection following triage and routing.

Each submission: rate-limit and reserve the Idempotency-Key in one step (a retry gets the
first answer, a simultaneous twin is told the request is in progress); read the body with
limits (beside the event loop when large); accept the reports (`acceptance.py`); remember and
answer. Nothing is published or remembered for a refused request, and its key is released.

Every use case passes the projection guard first: intake's Redis state is a projection of
Kafka, rebuilt once (`rebuild.py`) when its epoch marker is found gone.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from contracts.events import (
    Envelope,
    EventType,
    ReportTriagedData,
    SourceFormat,
    TaskAssignedData,
)
from contracts.reports import (
    BatchResult,
    BatchRowResult,
    BatchRowStatus,
    PartnerReport,
    ReportAccepted,
    ReportStatus,
)
from contracts.topics import Lane
from ocsea.runtime.auth import Principal
from ocsea.runtime.errors import ApiError
from services.intake.config import IntakeSettings
from services.intake.domain.batch import Upload, read_upload
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.cybertipline import parse_cybertipline
from services.intake.domain.deadline import Deadline
from services.intake.domain.planning import Outcome, Prepared
from services.intake.domain.refusals import Problem, Refusal
from services.intake.domain.status import partner_view
from services.intake.domain.xml_document import XmlLimits
from services.intake.handlers.acceptance import Acceptance, Acceptor
from services.intake.handlers.reading import JsonReader, read_beside_loop
from services.intake.ports import (
    Admissions,
    Clock,
    Figures,
    ProjectionCheck,
    RateLimit,
    Reservation,
    StatusProjection,
    StoredAnswer,
)

# What a 503 for a report the broker did not take asks the partner to wait.
BROKER_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Submission:
    """One request to a channel, as the transport read it (limits and media checked)."""

    principal: Principal
    body: bytes
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Answer:
    """What to answer: a model, or the first answer to the request replayed as it was."""

    status: int
    body: BaseModel | dict[str, Any]


def too_large_to_publish() -> Refusal:
    return Refusal(
        413,
        "too_large_to_publish",
        "the report, once sealed, is larger than the broker takes in one event; send "
        "fewer or shorter details",
        "body",
    )


def broker_unavailable(what: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    return ApiError(
        503,
        "broker_unavailable",
        f"{what}. Retry later with the same request (and Idempotency-Key)",
        errors=errors or [],
        headers={"Retry-After": str(BROKER_RETRY_AFTER_S)},
    )


@dataclass
class Intake:
    config: IntakeSettings
    acceptor: Acceptor
    admissions: Admissions
    status: StatusProjection
    guard: ProjectionCheck
    figures: Figures
    clock: Clock
    refs: Normalisers
    json: JsonReader
    xml_limits: XmlLimits

    # --- channels --------------------------------------------------------------------------

    async def submit_json(self, submission: Submission) -> Answer:
        """One report in the canonical partner JSON."""
        partner = submission.principal.name

        def read(_deadline: Deadline) -> Prepared:
            raw = self.json.read_body(submission.body)
            return self.acceptor.prepare(partner, canonical_report(raw, self.refs))

        return await self._submit_one(submission, "json", SourceFormat.PARTNER_JSON, read)

    async def submit_cybertipline(self, submission: Submission) -> Answer:
        """One NCMEC CyberTipline `<report>` document."""
        partner = submission.principal.name

        def read(deadline: Deadline) -> Prepared:
            report = parse_cybertipline(submission.body, self.refs, self.xml_limits, deadline)
            return self.acceptor.prepare(partner, report)

        return await self._submit_one(
            submission, "cybertipline", SourceFormat.CYBERTIPLINE_XML, read
        )

    async def submit_batch(self, submission: Submission, kind: str, charset: str | None) -> Answer:
        """Many reports (NDJSON or CSV), into the bulk lane: a result per row."""
        principal = submission.principal
        body = submission.body
        admitted = await self._admit(principal, submission.idempotency_key, f"batch-{kind}", body)
        if isinstance(admitted, Answer):
            return admitted
        partner_kind = principal.partner_kind.value if principal.partner_kind else None

        def read(deadline: Deadline) -> tuple[Upload, list[Prepared]]:
            upload = read_upload(
                body,
                kind,
                charset,
                max_rows=self.config.max_batch_rows,
                read_json=self.json.read,
                partner_kind=partner_kind,
                refs=self.refs,
                deadline=deadline,
            )
            return upload, [self.acceptor.prepare(principal.name, r) for _, r in upload.good]

        async with self._reserved(admitted):
            upload, prepared = await read_beside_loop(
                read, size=len(body), timeout_s=self.config.parse_timeout_s
            )
            return await self._accept_batch(principal, upload, prepared, admitted)

    # --- the partner's view ----------------------------------------------------------------

    async def report_status(self, principal: Principal, report_id: uuid.UUID) -> ReportStatus:
        await self._admit(principal, None, "status", b"")
        record = await self.status.report_view(report_id)
        if record is None or record.fields["partner"] != principal.name:
            # Another partner's report is as absent as one that never existed.
            raise Refusal(
                404, "report_not_found", "you submitted no report with this id", "report_id"
            )
        return partner_view(report_id, principal.name, record)

    async def on_progress(self, envelope: Envelope) -> None:
        """Triage results (both lanes) and task assignments, for the partners' status view."""
        await self.guard.ensure()
        if envelope.event_type == EventType.REPORT_TRIAGED:
            triaged = envelope.payload(ReportTriagedData)
            await self.status.mark_triaged(
                triaged.report_id,
                envelope.case_id,
                envelope.occurred_at,
                self.clock.now(),
                own=triaged.partner_assessment,
                case_result=(triaged.classification.value, triaged.priority.value),
            )
        elif envelope.event_type == EventType.TASK_ASSIGNED:
            task = envelope.payload(TaskAssignedData)
            await self.status.mark_routed(task.report_id, envelope.case_id, envelope.occurred_at)

    # --- steps -----------------------------------------------------------------------------

    async def _admit(
        self, principal: Principal, key: str | None, channel: str, body: bytes
    ) -> Reservation | Answer | None:
        """Rate-limit the request and reserve its Idempotency-Key, in one round trip, before
        any work: a retry of an answered request gets the first answer (replay), and of two
        simultaneous requests with one key only one goes ahead. The state is rebuilt first if
        Redis lost it (checked at most once a second)."""
        await self.guard.ensure()
        limit = RateLimit(
            principal.rate_limit_per_minute or self.config.rate_limit_per_minute,
            principal.rate_limit_burst or self.config.rate_limit_burst,
        )
        reservation = None
        if key:
            matcher = self.acceptor.matcher
            reservation = Reservation(
                principal.name,
                matcher.idempotency_key(principal.name, key),
                matcher.request(channel, body),
                uuid.uuid4().hex,
            )
        digest = reservation.request_digest if reservation else None
        admission = await self.admissions.admit(principal.name, limit, reservation)
        if admission.wait_s:
            raise Refusal(
                429,
                "rate_limited",
                f"this partner's rate limit ({limit.per_minute} per minute) is reached; "
                f"retry in {admission.wait_s} s",
                headers={"Retry-After": str(admission.wait_s)},
            )
        held = admission.earlier.request_digest if admission.earlier else None
        held = held or admission.in_progress_digest
        if held is not None and held != digest:
            raise Refusal(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; a new report needs "
                "a new key",
                "Idempotency-Key",
            )
        if admission.earlier is not None:
            return Answer(admission.earlier.status, admission.earlier.body)
        if admission.in_progress_digest is not None:
            raise Refusal(
                409,
                "request_in_progress",
                "a request with this Idempotency-Key is being handled; retry shortly for "
                "its answer",
                "Idempotency-Key",
                headers={"Retry-After": "1"},
            )
        return reservation

    @contextlib.asynccontextmanager
    async def _reserved(self, reservation: Reservation | None) -> AsyncIterator[None]:
        """Give the key back if the request ends without an answer to remember (a refusal,
        a 503, an error): nothing is remembered for a request that was not taken."""
        try:
            yield
        except BaseException:
            if reservation is not None:
                await self.admissions.release(reservation)
            raise

    async def _submit_one(
        self,
        submission: Submission,
        channel: str,
        source_format: SourceFormat,
        read: Callable[[Deadline], Prepared],
    ) -> Answer:
        principal, body = submission.principal, submission.body
        admitted = await self._admit(principal, submission.idempotency_key, channel, body)
        if isinstance(admitted, Answer):
            return admitted
        async with self._reserved(admitted):
            report = await read_beside_loop(
                read, size=len(body), timeout_s=self.config.parse_timeout_s
            )
            return await self._accept_one(principal, report, source_format, admitted)

    async def _accept_one(
        self,
        principal: Principal,
        report: Prepared,
        source_format: SourceFormat,
        reservation: Reservation | None,
    ) -> Answer:
        # The event carries the key's keyed digests: its answer can be restored from Kafka.
        acceptance = await self.acceptor.accept(
            principal.name,
            [report],
            source_format,
            Lane.LIVE,
            reservation.digests if reservation else None,
        )
        [outcome] = acceptance.outcomes
        self._count(source_format, report.report, Lane.LIVE, outcome)
        if outcome.unavailable:
            raise broker_unavailable("the report was not stored; nothing was kept")
        if outcome.too_large:
            raise too_large_to_publish()
        accepted = ReportAccepted(
            report_id=str(outcome.report_id),
            case_id=str(outcome.case_ref),
            duplicate_of=str(outcome.duplicate_of) if outcome.duplicate_of else None,
        )
        return await self._answer(acceptance, reservation, 202, accepted)

    async def _accept_batch(
        self,
        principal: Principal,
        upload: Upload,
        prepared: list[Prepared],
        reservation: Reservation | None,
    ) -> Answer:
        results = dict(upload.refused)
        good = upload.good
        acceptance = (
            await self.acceptor.accept(principal.name, prepared, SourceFormat.BATCH, Lane.BULK)
            if good
            else None
        )
        for (line, row), outcome in zip(
            good, acceptance.outcomes if acceptance else [], strict=True
        ):
            self._count(SourceFormat.BATCH, row, Lane.BULK, outcome)
            results[line] = _row_result(line, outcome)
        rows = [results[line] for line in sorted(results)]
        missed = [r for r in rows if r.code == "broker_unavailable"]
        if missed:
            if acceptance is not None:
                await self.acceptor.remember(acceptance)
            raise broker_unavailable(
                f"{len(missed)} of {len(rows)} rows were not stored. Rows that were are "
                "recognised as duplicates when the same upload is sent again",
                [{"line": str(r.line), "code": "broker_unavailable", "field": "row",
                  "message": r.message or ""} for r in missed],
            )  # fmt: skip
        if acceptance is None:
            raise Refusal(
                422,
                "no_valid_rows",
                f"none of the {len(rows)} rows could be accepted; see errors",
                "rows",
                [Problem(r.field or "row", r.code or "invalid_request",
                         f"line {r.line}: {r.message}") for r in rows],
            )  # fmt: skip
        result = BatchResult(
            accepted=sum(r.status is BatchRowStatus.ACCEPTED for r in rows),
            duplicates=sum(r.status is BatchRowStatus.DUPLICATE for r in rows),
            refused=sum(r.status is BatchRowStatus.REFUSED for r in rows),
            rows=rows,
        )
        return await self._answer(acceptance, reservation, 202, result)

    async def _answer(
        self,
        acceptance: Acceptance,
        reservation: Reservation | None,
        status: int,
        model: BaseModel,
    ) -> Answer:
        """Remember the request's reports and its answer (one round trip), then answer."""
        stored = None
        if reservation is not None:
            content = model.model_dump(mode="json")
            stored = (reservation, StoredAnswer(reservation.request_digest, status, content))
        await self.acceptor.remember(acceptance, stored)
        return Answer(status, model)

    def _count(
        self, source_format: SourceFormat, report: PartnerReport, lane: Lane, outcome: Outcome
    ) -> None:
        self.figures.report(source_format.value, report.channel.value, lane.value, outcome.kind)


def _row_result(line: int, outcome: Outcome) -> BatchRowResult:
    if outcome.unavailable:
        return BatchRowResult(
            line=line,
            status=BatchRowStatus.REFUSED,
            code="broker_unavailable",
            message="not stored: the broker did not take it",
        )
    if outcome.too_large:
        refusal = too_large_to_publish()
        return BatchRowResult(
            line=line,
            status=BatchRowStatus.REFUSED,
            code=refusal.code,
            message=refusal.message,
            field="row",
        )
    return BatchRowResult(
        line=line,
        status=BatchRowStatus.DUPLICATE if outcome.duplicate_of else BatchRowStatus.ACCEPTED,
        report_id=str(outcome.report_id),
        case_id=str(outcome.case_ref),
        duplicate_of=str(outcome.duplicate_of) if outcome.duplicate_of else None,
    )
