"""The auditors' API: each route parses the request, calls a use case (`handlers/`), answers.

Every route admits auditors only. What is recorded of each read, and what is refused, is the
use cases' business (`handlers/reads.py`).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from ocsea.runtime.auth import AuditorPrincipal
from ocsea.runtime.errors import error_response, error_responses
from ocsea.runtime.logging import get_logger
from services.audit.domain.bundle import CaseBundle
from services.audit.domain.checkpoint import Checkpoint, PublicKey
from services.audit.entrypoints.wire import (
    CaseTrail,
    ConsistencyProof,
    EntriesPage,
    InclusionProof,
    SearchPage,
    TrailEntry,
)
from services.audit.handlers import AuditHandlers, Page
from services.audit.handlers.reads import MAX_PAGE
from services.audit.ports import SearchFilter, StoredEntry

log = get_logger("ocsea.audit")

MAX_LEAF_INDEX = 2**63 - 1
"""The largest leaf index either ledger database stores (a signed 64-bit integer): a larger one
in a query is refused (422, naming the field) rather than overflowing the driver."""

_ERRORS = error_responses(
    400, 401, 403, 422, s400="A range the ledger cannot answer as asked; `field` names it"
)
_TEXT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/plain": {}}}}

AfterLeaf = Annotated[
    int | None, Query(ge=-1, le=MAX_LEAF_INDEX, description="Leaf index to continue after")
]
PageLimit = Annotated[int, Query(ge=1, le=1000)]


def get_handlers(request: Request) -> AuditHandlers:
    handlers: AuditHandlers = request.app.state.audit
    return handlers


Handlers = Annotated[AuditHandlers, Depends(get_handlers)]

router = APIRouter(tags=["audit"])


async def on_ledger_damaged(_request: Request, exc: Exception) -> JSONResponse:
    """Only a ledger changed behind the service's back lacks a node it wrote itself."""
    log.error("audit.ledger_damaged", error=str(exc))
    return error_response(500, "ledger_damaged", f"the ledger's Merkle tree is incomplete: {exc}")


def _trail_entries(found: list[StoredEntry]) -> list[TrailEntry]:
    return [
        TrailEntry(leaf_index=e.leaf_index, leaf_hash=e.leaf_hash, entry=e.entry) for e in found
    ]


def _search_page(page: Page) -> SearchPage:
    return SearchPage(entries=_trail_entries(page.entries), next_after=page.next_after)


@router.get("/v1/audit/cases/{case_id}/trail", response_model=CaseTrail, responses=_ERRORS)
async def case_trail(
    case_id: uuid.UUID, principal: AuditorPrincipal, handlers: Handlers
) -> CaseTrail:
    """The case's ledger entries, each with its leaf index.

    Ordered by the time the event happened, then by leaf index. (Leaf order is the order
    the ledger learned of events, which across topics need not be causal.) Includes the
    case's dead-lettered and dispatched records, so a step that failed shows too.
    """
    entries = await handlers.reads.case_trail(case_id, principal)
    return CaseTrail(case_id=case_id, entries=_trail_entries(entries))


@router.get("/v1/audit/cases/{case_id}/export", response_model=CaseBundle, responses=_ERRORS)
async def case_export(
    case_id: uuid.UUID, principal: AuditorPrincipal, handlers: Handlers
) -> CaseBundle:
    """The case's trail as a bundle that verifies offline (`ocsea audit verify FILE`):
    every entry's exact leaf with its inclusion proof in the signed checkpoint included."""
    return await handlers.reads.case_export(case_id, principal)


@router.get("/v1/audit/checkpoint", response_model=Checkpoint, responses=_ERRORS)
async def latest_checkpoint(_principal: AuditorPrincipal, handlers: Handlers) -> Checkpoint:
    """The latest signed tree head (size, root hash, timestamp, Ed25519 signature).

    Signed afresh when the ledger has grown since the last one. Keep it: `ocsea audit
    verify --checkpoint` later proves the ledger still extends it, unchanged.
    """
    return await handlers.checkpoints.current()


@router.post("/v1/audit/checkpoint", response_model=Checkpoint, responses=_ERRORS)
async def new_checkpoint(_principal: AuditorPrincipal, handlers: Handlers) -> Checkpoint:
    """Sign a checkpoint of the ledger as it is now, with a fresh timestamp."""
    return await handlers.checkpoints.sign_now()


@router.get("/v1/audit/public-key", response_model=PublicKey, responses=_ERRORS)
async def public_key(_principal: AuditorPrincipal, handlers: Handlers) -> PublicKey:
    """The Ed25519 key checkpoints are signed with (compare `key_id` out of band)."""
    return handlers.checkpoints.public_key


@router.get(
    "/v1/audit/tlog/checkpoint", response_class=PlainTextResponse, responses={**_TEXT, **_ERRORS}
)
async def tlog_checkpoint(_principal: AuditorPrincipal, handlers: Handlers) -> PlainTextResponse:
    """The current checkpoint as a C2SP `tlog-checkpoint` signed note (origin, tree size,
    base64 RFC 6962 root; a signature line by the ledger's key), for standard
    transparency-log verifiers and witnesses. Check it with `/v1/audit/tlog/verifier-key`."""
    return PlainTextResponse(await handlers.checkpoints.tlog_checkpoint())


@router.get(
    "/v1/audit/tlog/verifier-key",
    response_class=PlainTextResponse,
    responses={**_TEXT, **_ERRORS},
)
async def tlog_verifier_key(_principal: AuditorPrincipal, handlers: Handlers) -> PlainTextResponse:
    """The checkpoint key as a signed-note verifier key, `<origin>+<key hash>+<key>`
    (the same Ed25519 key as `/v1/audit/public-key`: compare it out of band)."""
    return PlainTextResponse(handlers.checkpoints.verifier_key + "\n")


@router.get("/v1/audit/conflicts", response_model=SearchPage, responses=_ERRORS)
async def conflicts(
    principal: AuditorPrincipal,
    handlers: Handlers,
    after: AfterLeaf = None,
    limit: PageLimit = 100,
) -> SearchPage:
    """Records that claimed a recorded entry's key (an event id) with other bytes, in leaf
    order. The first one recorded keeps the key; each conflict keeps what the other claims
    (ids, actor, time, topic, partition, offset, digest) and names the contested key, the
    recorded leaf with its digest and coordinates, and the fields that differ."""
    return _search_page(await handlers.reads.conflicts(after, limit, principal))


@router.get("/v1/audit/gaps", response_model=SearchPage, responses=_ERRORS)
async def offset_gaps(
    principal: AuditorPrincipal,
    handlers: Handlers,
    after: AfterLeaf = None,
    limit: PageLimit = 100,
) -> SearchPage:
    """Offsets of a partition the ledger never received (deleted before it read them, or
    skipped by a moved consumer offset), in leaf order: topic, partition, the first missing
    offset, the next one seen and how many are missing."""
    return _search_page(await handlers.reads.offset_gaps(after, limit, principal))


@router.get("/v1/audit/proofs/inclusion", response_model=InclusionProof, responses=_ERRORS)
async def inclusion_proof(
    _principal: AuditorPrincipal,
    handlers: Handlers,
    leaf_index: Annotated[int, Query(ge=0)],
    tree_size: Annotated[int, Query(ge=1)],
) -> InclusionProof:
    """RFC 9162 proof that leaf `leaf_index` is in the tree of `tree_size` leaves."""
    leaf, path = await handlers.reads.inclusion_proof(leaf_index, tree_size)
    return InclusionProof(
        leaf_index=leaf_index,
        tree_size=tree_size,
        leaf_hash=leaf.hex(),
        audit_path=[p.hex() for p in path],
    )


@router.get("/v1/audit/proofs/consistency", response_model=ConsistencyProof, responses=_ERRORS)
async def consistency_proof(
    _principal: AuditorPrincipal,
    handlers: Handlers,
    first: Annotated[int, Query(ge=1, description="The earlier size (no proof exists from 0)")],
    second: Annotated[int, Query(ge=1)],
) -> ConsistencyProof:
    """RFC 9162 proof that the tree of `second` leaves extends the tree of `first`."""
    path = await handlers.reads.consistency_proof(first, second)
    return ConsistencyProof(first=first, second=second, consistency_path=[p.hex() for p in path])


@router.get("/v1/audit/entries", response_model=EntriesPage, responses=_ERRORS)
async def raw_entries(
    principal: AuditorPrincipal,
    handlers: Handlers,
    start: Annotated[int, Query(alias="from", ge=0, description="First leaf index")],
    to: Annotated[
        int | None,
        Query(description=f"Exclusive end; default and cap: from + {MAX_PAGE}"),
    ] = None,
) -> Response:
    """Raw leaves [from, to) with their exact canonical text, so anyone can recompute the
    tree. `to` is clamped to the ledger's size; page with `from` = the previous `to`."""
    page = await handlers.reads.leaves(start, to, principal)
    # Built by hand: validating 10,000 response models per page cost more than the query.
    body = {
        "from": page.start,
        "to": page.end,
        "tree_size": page.tree_size,
        "entries": [
            {"leaf_index": leaf.leaf_index, "leaf": leaf.text, "leaf_hash": leaf.leaf_hash.hex()}
            for leaf in page.leaves
        ],
    }
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")


@router.get("/v1/audit/search", response_model=SearchPage, responses=_ERRORS)
async def search(
    principal: AuditorPrincipal,
    handlers: Handlers,
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
    after: AfterLeaf = None,
    limit: PageLimit = 100,
) -> SearchPage:
    """Entries matching every given filter, in leaf order, a page at a time."""
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
    return _search_page(await handlers.reads.search(where, principal))
