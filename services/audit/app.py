"""Audit transport: every project topic in, one ledger entry per record, and the auditors' API.

Ingest takes records raw, a batch at a time (`ReliableConsumer` raw mode): building an entry
never fails, so what can fail is the database, and then the batch is retried until it is
written, never skipped and never dead-lettered. Each batch is one transaction (entries and their
Merkle nodes), and its offsets are committed only once that is durable. Event topics and the
side topics (`.dlq` twins, dispatch feeds) are read by two consumer groups, so a flood on one
never queues the other behind it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge

from contracts.events import utc_now
from contracts.reports import ErrorBody
from ocsea.runtime.access import LEDGER_SUBJECT, AccessLog
from ocsea.runtime.auth import AuditorPrincipal, Principal, PrincipalStore
from ocsea.runtime.consumer import RawRecord
from ocsea.runtime.errors import error_response
from ocsea.runtime.kafka import project_topics
from ocsea.runtime.logging import get_logger
from ocsea.runtime.metrics import refresh_periodically
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.audit.domain import merkle
from services.audit.domain.checkpoint import Checkpoint, PublicKey
from services.audit.domain.entry import (
    CONFLICT,
    OFFSET_GAP,
    NewEntry,
    TopicRole,
    record_entry,
    role_of,
)
from services.audit.domain.offsets import with_gap_entries
from services.audit.gaps import OffsetWatch
from services.audit.ledger import Appended, Ledger, SearchFilter
from services.audit.metrics import LedgerFigures
from services.audit.schema import expect_schema
from services.audit.signing import Checkpointer, signing_key_for
from services.audit.wire import (
    BundleEntry,
    CaseBundle,
    CaseTrail,
    ConsistencyProof,
    EntriesPage,
    InclusionProof,
    SearchPage,
    TrailEntry,
)

log = get_logger("ocsea.audit")

MAX_PAGE = 10_000
"""Most leaves one `/v1/audit/entries` call returns (about 6 MB of JSON)."""
MAX_LEAF_INDEX = 2**63 - 1
"""The largest leaf index either ledger database stores (a signed 64-bit integer): a larger one
in a query is refused (422, naming the field) rather than overflowing the driver."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


AfterLeaf = Annotated[
    int | None, Query(ge=-1, le=MAX_LEAF_INDEX, description="Leaf index to continue after")
]
PageLimit = Annotated[int, Query(ge=1, le=1000)]


def _bad_request(code: str, message: str, field: str) -> HTTPException:
    return HTTPException(400, {"code": code, "message": message, "field": field})


INGEST_BATCH = 500
"""Most records per ingest transaction: a backlog goes in at thousands a second, while building
a batch's entries holds the event loop for tens of milliseconds at most."""


class Recorder:
    """The ingest handler: a batch of records in, their entries appended in one transaction.

    A full batch means a backlog (a restart, a replay, an outage behind us). Catching up then
    pauses between batches so that it takes at most `share` of the time: the ledger is never on
    a case's critical path, and in a single-process run (`ocsea run`) routing a live report must
    not wait behind the audit's catch-up.
    """

    def __init__(
        self,
        ledger: Ledger,
        registry: CollectorRegistry | None = None,
        *,
        share: float = 1.0,
        full_batch: int = INGEST_BATCH,
    ) -> None:
        self.ledger = ledger
        self.share = share
        self.full_batch = full_batch
        self.appended = Counter(
            "ocsea_audit_entries_appended",
            "Ledger entries appended, by action",
            ["action"],
            registry=registry,
        )
        self.tree_size = Gauge(
            "ocsea_audit_tree_size", "Entries in the ledger's Merkle tree", registry=registry
        )
        self.conflicts = Counter(
            "ocsea_audit_conflicts",
            "Records kept as conflicts: a recorded key (an event id) with other bytes",
            ["topic"],
            registry=registry,
        )
        self.offset_gaps = Counter(
            "ocsea_audit_offset_gaps",
            "Gaps in a partition's offsets: records the ledger never received",
            ["topic"],
            registry=registry,
        )
        self.missing_records = Counter(
            "ocsea_audit_missing_records",
            "Records in the offset gaps the ledger recorded",
            ["topic"],
            registry=registry,
        )
        self.offsets = OffsetWatch(ledger)

    async def __call__(self, batch: Sequence[RawRecord]) -> None:
        started = time.monotonic()
        received_at = utc_now()
        gaps, following = await self.offsets.check([raw.origin for raw in batch])
        entries = with_gap_entries(
            [record_entry(raw, received_at=received_at) for raw in batch],
            gaps,
            noticed_at=received_at,
        )
        results = await self.ledger.append_batch(entries, following)
        self.offsets.advance(following)
        # One log line per batch: the ledger itself is the per-entry record, and a line per
        # entry cost more than appending it while the service catches up on a backlog. What
        # must not pass unnoticed (a conflict, a gap) gets a warning of its own.
        for entry, result in zip(entries, results, strict=True):
            if result.created:
                self._count(entry, result)
        created = [r.leaf_index for r in results if r.created]
        if created:
            self.tree_size.set(max(created) + 1)
        log.info(
            "audit.recorded",
            records=len(batch),
            appended=len(created),
            first_leaf=min(created, default=None),
            last_leaf=max(created, default=None),
        )
        if len(batch) >= self.full_batch and self.share < 1:
            busy = time.monotonic() - started
            await asyncio.sleep(busy * (1 / self.share - 1))

    def _count(self, entry: NewEntry, result: Appended) -> None:
        topic = str(entry.fields["topic"])
        if result.conflict_with is not None:
            self.appended.labels(action=CONFLICT).inc()
            self.conflicts.labels(topic=topic).inc()
            log.warning(
                "audit.conflict",
                contested_key=entry.dedup_key,
                topic=topic,
                partition=entry.fields["partition"],
                offset=entry.fields["offset"],
                leaf_index=result.leaf_index,
                recorded_leaf_index=result.conflict_with,
            )
            return
        self.appended.labels(action=entry.action).inc()
        if entry.action == OFFSET_GAP:
            detail = entry.fields["detail"]
            self.offset_gaps.labels(topic=topic).inc()
            self.missing_records.labels(topic=topic).inc(detail["missing_records"])
            log.warning(
                "audit.offset_gap",
                topic=topic,
                partition=entry.fields["partition"],
                first_missing_offset=detail["first_missing_offset"],
                next_offset_seen=detail["next_offset_seen"],
                missing_records=detail["missing_records"],
                leaf_index=result.leaf_index,
            )


def build(settings: Settings, *, ingest: bool = True) -> FastAPI:
    """The audit service; `ingest=False` serves the API over an existing ledger only (tools,
    tests and benchmarks that must not pull the shared topics into their ledger)."""
    context = ServiceContext.create("audit", settings)
    ledger = Ledger(settings.resolved_audit_db_url)
    checkpointer = Checkpointer(ledger, signing_key_for(settings), settings.audit_log_origin)
    context.readiness["database"] = ledger.ping
    # Where the service's role may only read and add rows, the owner made the tables.
    context.on_startup.append(
        ledger.create if settings.audit_db_create_schema else partial(expect_schema, ledger)
    )
    context.on_shutdown.append(ledger.close)

    record = Recorder(ledger, context.registry, share=settings.audit_ingest_share)

    if ingest:
        everything = project_topics()
        event_topics = [t for t in everything if role_of(t) is TopicRole.EVENTS]
        side_topics = [t for t in everything if role_of(t) is not TopicRole.EVENTS]
        context.consume(*event_topics, raw_handler=record, raw_batch_size=INGEST_BATCH)
        context.consume(
            *side_topics,
            raw_handler=record,
            raw_batch_size=INGEST_BATCH,
            group_suffix="dlq-dispatch",
        )

        async def start_checkpoints() -> None:
            await checkpointer.start(settings.audit_checkpoint_interval_s)

        context.on_startup.append(start_checkpoints)
        context.on_shutdown.append(checkpointer.stop)
        figures = LedgerFigures(
            context.registry,
            ledger,
            tree_size=record.tree_size,
            checkpoint_interval_s=settings.audit_checkpoint_interval_s,
        )
        refresh_periodically(context, "ledger", figures.refresh)

    app = create_http_app(
        context,
        title="ocsea audit",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    _routes(app, ledger, checkpointer, AccessLog(context.broker, "audit"))
    return app


def _routes(
    app: FastAPI, ledger: Ledger, checkpointer: Checkpointer, access_log: AccessLog
) -> None:
    async def record_read(principal: Principal, what: str) -> None:
        """Every read of ledger entries is recorded on the access topic before it is answered
        (503 when it cannot be), under `LEDGER_SUBJECT`: reading a case's trail must not add
        to that trail. Checkpoints, the public key and proofs are hashes and sizes, no entry's
        content, so reading them is not recorded."""
        await access_log.viewed(LEDGER_SUBJECT, principal, reason=f"auditor read {what}")

    async def damaged(_request: Request, exc: Exception) -> JSONResponse:
        # Only a ledger changed behind the service's back lacks a node it wrote itself.
        log.error("audit.ledger_damaged", error=str(exc))
        return error_response(
            500, "ledger_damaged", f"the ledger's Merkle tree is incomplete: {exc}"
        )

    app.add_exception_handler(merkle.MissingNodeError, damaged)

    async def require_within(tree_size: int, field: str) -> None:
        size = await ledger.size()
        if tree_size > size:
            raise _bad_request(
                "beyond_tree_size", f"{field} {tree_size} exceeds the ledger's size {size}", field
            )

    @app.get(
        "/v1/audit/cases/{case_id}/trail",
        response_model=CaseTrail,
        responses=_ERRORS,
        tags=["audit"],
    )
    async def case_trail(case_id: uuid.UUID, principal: AuditorPrincipal) -> CaseTrail:
        """The case's ledger entries, each with its leaf index.

        Ordered by the time the event happened, then by leaf index. (Leaf order is the order
        the ledger learned of events, which across topics need not be causal.) Includes the
        case's dead-lettered and dispatched records, so a step that failed shows too.
        """
        entries = await ledger.case_trail(str(case_id))
        await record_read(principal, f"the trail of case {case_id}")
        return CaseTrail(
            case_id=case_id,
            entries=[
                TrailEntry(leaf_index=e.leaf_index, leaf_hash=e.leaf_hash, entry=e.entry)
                for e in entries
            ],
        )

    @app.get(
        "/v1/audit/cases/{case_id}/export",
        response_model=CaseBundle,
        responses=_ERRORS,
        tags=["audit"],
    )
    async def case_export(case_id: uuid.UUID, principal: AuditorPrincipal) -> CaseBundle:
        """The case's trail as a bundle that verifies offline (`ocsea audit verify FILE`):
        every entry's exact leaf with its inclusion proof in the signed checkpoint included."""
        checkpoint = await checkpointer.current()
        size = checkpoint.tree_size
        entries = []
        for stored in await ledger.case_trail(str(case_id)):
            if stored.leaf_index >= size:
                continue  # recorded after the checkpoint was read; the next export has it
            _, path = await ledger.inclusion_proof(stored.leaf_index, size)
            entries.append(
                BundleEntry(
                    leaf_index=stored.leaf_index,
                    leaf=stored.text,
                    inclusion_proof=[p.hex() for p in path],
                )
            )
        await record_read(principal, f"the export of case {case_id}")
        return CaseBundle(case_id=case_id, checkpoint=checkpoint, entries=entries)

    @app.get("/v1/audit/checkpoint", response_model=Checkpoint, responses=_ERRORS, tags=["audit"])
    async def latest_checkpoint(_principal: AuditorPrincipal) -> Checkpoint:
        """The latest signed tree head (size, root hash, timestamp, Ed25519 signature).

        Signed afresh when the ledger has grown since the last one. Keep it: `ocsea audit
        verify --checkpoint` later proves the ledger still extends it, unchanged.
        """
        return await checkpointer.current()

    @app.post("/v1/audit/checkpoint", response_model=Checkpoint, responses=_ERRORS, tags=["audit"])
    async def new_checkpoint(_principal: AuditorPrincipal) -> Checkpoint:
        """Sign a checkpoint of the ledger as it is now, with a fresh timestamp."""
        return await checkpointer.sign_now()

    @app.get("/v1/audit/public-key", response_model=PublicKey, responses=_ERRORS, tags=["audit"])
    async def public_key(_principal: AuditorPrincipal) -> PublicKey:
        """The Ed25519 key checkpoints are signed with (compare `key_id` out of band)."""
        return checkpointer.public_key

    text_answer: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {}}}}

    @app.get(
        "/v1/audit/tlog/checkpoint",
        response_class=PlainTextResponse,
        responses={**text_answer, **_ERRORS},
        tags=["audit"],
    )
    async def tlog_checkpoint(_principal: AuditorPrincipal) -> PlainTextResponse:
        """The current checkpoint as a C2SP `tlog-checkpoint` signed note (origin, tree size,
        base64 RFC 6962 root; a signature line by the ledger's key), for standard
        transparency-log verifiers and witnesses. Check it with `/v1/audit/tlog/verifier-key`."""
        return PlainTextResponse(await checkpointer.tlog_checkpoint())

    @app.get(
        "/v1/audit/tlog/verifier-key",
        response_class=PlainTextResponse,
        responses={**text_answer, **_ERRORS},
        tags=["audit"],
    )
    async def tlog_verifier_key(_principal: AuditorPrincipal) -> PlainTextResponse:
        """The checkpoint key as a signed-note verifier key, `<origin>+<key hash>+<key>`
        (the same Ed25519 key as `/v1/audit/public-key`: compare it out of band)."""
        return PlainTextResponse(checkpointer.verifier_key + "\n")

    async def entries_of(
        principal: AuditorPrincipal, action: str, after: int | None, limit: int, what: str
    ) -> SearchPage:
        found = await ledger.search(SearchFilter(action=action, after=after, limit=limit))
        await record_read(principal, what)
        return SearchPage(
            entries=[
                TrailEntry(leaf_index=e.leaf_index, leaf_hash=e.leaf_hash, entry=e.entry)
                for e in found
            ],
            next_after=found[-1].leaf_index if len(found) == limit else None,
        )

    @app.get("/v1/audit/conflicts", response_model=SearchPage, responses=_ERRORS, tags=["audit"])
    async def conflicts(
        principal: AuditorPrincipal, after: AfterLeaf = None, limit: PageLimit = 100
    ) -> SearchPage:
        """Records that claimed a recorded entry's key (an event id) with other bytes, in leaf
        order. The first one recorded keeps the key; each conflict keeps what the other claims
        (ids, actor, time, topic, partition, offset, digest) and names the contested key, the
        recorded leaf with its digest and coordinates, and the fields that differ."""
        return await entries_of(principal, CONFLICT, after, limit, "the conflicts")

    @app.get("/v1/audit/gaps", response_model=SearchPage, responses=_ERRORS, tags=["audit"])
    async def offset_gaps(
        principal: AuditorPrincipal, after: AfterLeaf = None, limit: PageLimit = 100
    ) -> SearchPage:
        """Offsets of a partition the ledger never received (deleted before it read them, or
        skipped by a moved consumer offset), in leaf order: topic, partition, the first missing
        offset, the next one seen and how many are missing."""
        return await entries_of(principal, OFFSET_GAP, after, limit, "the offset gaps")

    @app.get(
        "/v1/audit/proofs/inclusion",
        response_model=InclusionProof,
        responses=_ERRORS,
        tags=["audit"],
    )
    async def inclusion_proof(
        _principal: AuditorPrincipal,
        leaf_index: Annotated[int, Query(ge=0)],
        tree_size: Annotated[int, Query(ge=1)],
    ) -> InclusionProof:
        """RFC 9162 proof that leaf `leaf_index` is in the tree of `tree_size` leaves."""
        if leaf_index >= tree_size:
            raise _bad_request(
                "out_of_range", f"leaf_index must be below tree_size {tree_size}", "leaf_index"
            )
        await require_within(tree_size, "tree_size")
        leaf, path = await ledger.inclusion_proof(leaf_index, tree_size)
        return InclusionProof(
            leaf_index=leaf_index,
            tree_size=tree_size,
            leaf_hash=leaf.hex(),
            audit_path=[p.hex() for p in path],
        )

    @app.get(
        "/v1/audit/proofs/consistency",
        response_model=ConsistencyProof,
        responses=_ERRORS,
        tags=["audit"],
    )
    async def consistency_proof(
        _principal: AuditorPrincipal,
        first: Annotated[int, Query(ge=1, description="The earlier size (no proof exists from 0)")],
        second: Annotated[int, Query(ge=1)],
    ) -> ConsistencyProof:
        """RFC 9162 proof that the tree of `second` leaves extends the tree of `first`."""
        if first > second:
            raise _bad_request("out_of_range", "first must not exceed second", "first")
        await require_within(second, "second")
        path = await ledger.consistency_proof(first, second)
        return ConsistencyProof(
            first=first, second=second, consistency_path=[p.hex() for p in path]
        )

    @app.get(
        "/v1/audit/entries",
        response_model=EntriesPage,
        responses=_ERRORS,
        tags=["audit"],
    )
    async def raw_entries(
        principal: AuditorPrincipal,
        start: Annotated[int, Query(alias="from", ge=0, description="First leaf index")],
        to: Annotated[
            int | None,
            Query(description=f"Exclusive end; default and cap: from + {MAX_PAGE}"),
        ] = None,
    ) -> Response:
        """Raw leaves [from, to) with their exact canonical text, so anyone can recompute the
        tree. `to` is clamped to the ledger's size; page with `from` = the previous `to`."""
        end = start + MAX_PAGE if to is None else to
        if end < start:
            raise _bad_request("out_of_range", "to must not be below from", "to")
        if end - start > MAX_PAGE:
            raise _bad_request("page_too_large", f"at most {MAX_PAGE} leaves per call", "to")
        size = await ledger.size()
        end = min(end, size)
        leaves = await ledger.leaves(start, end) if start < end else []
        await record_read(principal, f"entries [{start}, {max(end, start)})")
        # Built by hand: validating 10,000 response models per page cost more than the query.
        body = {
            "from": start,
            "to": max(end, start),
            "tree_size": size,
            "entries": [
                {
                    "leaf_index": leaf.leaf_index,
                    "leaf": leaf.text,
                    "leaf_hash": leaf.leaf_hash.hex(),
                }
                for leaf in leaves
            ],
        }
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    @app.get("/v1/audit/search", response_model=SearchPage, responses=_ERRORS, tags=["audit"])
    async def search(
        principal: AuditorPrincipal,
        actor: Annotated[str | None, Query(max_length=200, description="Actor id")] = None,
        action: Annotated[str | None, Query(max_length=100, examples=["task.assigned"])] = None,
        agency: Annotated[
            str | None,
            Query(max_length=150, description="The actor's agency, or the agency a task is for"),
        ] = None,
        case_id: uuid.UUID | None = None,
        since: Annotated[
            datetime | None, Query(description="Event time, inclusive (with a UTC offset)")
        ] = None,
        until: Annotated[datetime | None, Query(description="Event time, exclusive")] = None,
        after: Annotated[
            int | None,
            Query(ge=-1, le=MAX_LEAF_INDEX, description="Leaf index to continue after"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> SearchPage:
        """Entries matching every given filter, in leaf order, a page at a time."""
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise _bad_request("naive_time", f"{name} needs a UTC offset", name)
        where = SearchFilter(
            actor=actor,
            action=action,
            agency=agency,
            case_id=str(case_id) if case_id else None,
            since=since,
            until=until,
            after=after,
            limit=limit,
        )
        found = await ledger.search(where)
        # Which filters, and the case searched; not the free-text values (whatever an auditor
        # typed would stay in the ledger for good).
        used = [k for k, v in vars(where).items() if v is not None and k != "limit"]
        await record_read(
            principal,
            f"a search by {', '.join(used) or 'nothing'}"
            + (f" in case {case_id}" if case_id else ""),
        )
        return SearchPage(
            entries=[
                TrailEntry(leaf_index=e.leaf_index, leaf_hash=e.leaf_hash, entry=e.entry)
                for e in found
            ],
            next_after=found[-1].leaf_index if len(found) == limit else None,
        )
