"""A case's details for those with grounds on it: the access check, the access record, and the
decryption of its personal data, in that order; and the reports kept for it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from cryptography.exceptions import InvalidTag

from contracts.directory import Directory
from contracts.events import Envelope, EventType, ReportReceivedData
from ocsea.runtime.access import AccessRecord, Basis, CaseGrounds
from ocsea.runtime.auth import Principal
from ocsea.runtime.crypto import CaseErasedError, CaseKeyNotFoundError
from ocsea.runtime.errors import ApiError
from ocsea.runtime.keystore import Erasure, ErasureNotice
from ocsea.runtime.logging import get_logger
from services.routing.handlers.access import case_grounds
from services.routing.handlers.views import CaseTask, CaseView, ReportDetails
from services.routing.ports import CaseKeyring, CaseStore, TaskStore

log = get_logger("ocsea.routing")

PersonalStatus = Literal["shown", "none", "erased", "unreadable"]
_REPORT_FACTS = {
    "report_id",
    "partner_id",
    "channel",
    "language",
    "received_at",
    "incident",
    "survivors",
    "categories",
    "risk_flags",
    "police_referral_consent",
}


def case_access_denied() -> ApiError:
    # An unknown case answers alike: no one learns whether a case exists.
    return ApiError(
        403, "case_access_denied", "only someone with an open task on the case may see it"
    )


def keys_unavailable() -> ApiError:
    return ApiError(
        503,
        "keys_unavailable",
        "the case keys could not be read; nothing is shown",
        headers={"Retry-After": "5"},
    )


class CaseHandlers:
    def __init__(
        self,
        *,
        tasks: TaskStore,
        cases: CaseStore,
        keys: CaseKeyring,
        access: AccessRecord,
        directory: Directory,
        ready: Callable[[], Awaitable[None]],
    ) -> None:
        self.tasks = tasks
        self.cases = cases
        self.keys = keys
        self.access = access
        self.directory = directory
        self.ready = ready

    async def keep_report(self, event: Envelope) -> None:
        """A received report, kept for the case's view (its personal data still sealed)."""
        await self.ready()
        if event.event_type == EventType.REPORT_RECEIVED:
            await self.cases.add_report(event.case_id, event.payload(ReportReceivedData))

    async def grounds(self, case_id: uuid.UUID, principal: Principal) -> CaseGrounds:
        """The caller's open tasks on the case, which entitle them to it. Shows nothing of
        the case, so it is not itself a recorded read; refused as a view is."""
        await self.ready()
        grounds = case_grounds(principal, await self.tasks.for_case(case_id), self.directory)
        if not grounds:
            raise case_access_denied()
        return CaseGrounds(case_id=case_id, task_ids=tuple(t.task_id for t in grounds))

    async def view(self, case_id: uuid.UUID, principal: Principal) -> CaseView:
        """The case's details, personal data decrypted, for someone with an open task on it.
        Every view, and every refused attempt, is recorded on the access topic before the
        answer: a view that cannot be recorded is not answered."""
        await self.ready()
        tasks = await self.tasks.for_case(case_id)
        grounds = case_grounds(principal, tasks, self.directory)
        if not grounds:
            await self.access.denied(
                case_id, principal, reason="no open task of the caller's on this case"
            )
            raise case_access_denied()
        reports = await self.cases.reports(case_id)
        try:
            erasure = await self.keys.erasure(case_id)
        except Exception as exc:  # the key store or its cache: nothing is shown
            log.error("case.keys_unavailable", case_id=str(case_id), error=type(exc).__name__)
            raise keys_unavailable() from exc
        details: list[ReportDetails] = []
        for report in reports:
            personal, status, erasure = await self._personal(case_id, report, erasure)
            details.append(
                ReportDetails(
                    **report.model_dump(include=_REPORT_FACTS),
                    personal=personal,
                    personal_status=status,
                )
            )
        access_id = await self.access.viewed(
            case_id,
            principal,
            reason=Basis.OPEN_TASK.value,
            task_ids=(t.task_id for t in grounds),
            report_ids=(r.report_id for r in reports),
            personal_data_shown=any(d.personal_status == "shown" for d in details),
        )
        latest = await self.cases.triage(case_id)
        return CaseView(
            case_id=case_id,
            triage=latest.data if latest else None,
            reports=details,
            tasks=[
                CaseTask(
                    task_id=t.task_id,
                    agency_id=t.agency_id,
                    role=t.role,
                    status=t.status,
                    priority=t.priority,
                )
                for t in tasks
            ],
            access_event_id=access_id,
            personal_data_erased=ErasureNotice.of(erasure),
        )

    async def _personal(
        self, case_id: uuid.UUID, report: ReportReceivedData, erasure: Erasure | None
    ) -> tuple[dict[str, Any] | None, PersonalStatus, Erasure | None]:
        """The report's personal data opened, and how it stands; and the case's erasure,
        which may be learnt here (erased while the view was being made)."""
        if report.personal is None:
            return None, "none", erasure
        if erasure is not None:
            return None, "erased", erasure
        try:
            personal: dict[str, Any] = json.loads(await self.keys.open(case_id, report.personal))
        except CaseErasedError as erased:  # erased while this view was being made
            return None, "erased", erased.erasure
        except CaseKeyNotFoundError:
            return None, "unreadable", erasure  # sealed under a key the store never had
        except (InvalidTag, ValueError):
            return None, "unreadable", erasure
        except Exception as exc:
            log.error("case.keys_unavailable", case_id=str(case_id), error=type(exc).__name__)
            raise keys_unavailable() from exc
        return personal, "shown", erasure
