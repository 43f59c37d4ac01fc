"""The auditors' reads: a case's trail and its export, search, raw leaves, and proofs.

Every read of ledger entries is recorded on the access topic before it is answered (and not
answered when it cannot be), under `LEDGER_SUBJECT`: reading a case's trail must not add to
that trail. Checkpoints, the public key and proofs are hashes and sizes, no entry's content, so
reading them is not recorded. A request the ledger cannot answer as asked (a proof beyond its
size, a page too large) is refused naming the field at fault.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ocsea.runtime.access import LEDGER_SUBJECT
from ocsea.runtime.auth import Principal
from ocsea.runtime.errors import ApiError
from services.audit.domain.bundle import BundleEntry, CaseBundle
from services.audit.domain.entry import CONFLICT, OFFSET_GAP
from services.audit.ports import (
    AccessRecorder,
    CurrentCheckpoint,
    LedgerQueries,
    RawLeaf,
    SearchFilter,
    StoredEntry,
)

MAX_PAGE = 10_000
"""Most leaves one page of raw leaves holds (about 6 MB of JSON)."""


def _bad_request(code: str, message: str, field: str) -> ApiError:
    return ApiError(400, code, message, field=field)


@dataclass(frozen=True)
class Page:
    entries: list[StoredEntry]
    next_after: int | None
    """The last entry's leaf index when the page is full (there may be more); else None."""


@dataclass(frozen=True)
class LeavesPage:
    start: int
    end: int
    tree_size: int
    leaves: list[RawLeaf]


class LedgerReads:
    def __init__(
        self, ledger: LedgerQueries, checkpoints: CurrentCheckpoint, access: AccessRecorder
    ) -> None:
        self.ledger = ledger
        self.checkpoints = checkpoints
        self.access = access

    async def _record_read(self, principal: Principal, what: str) -> None:
        await self.access.viewed(LEDGER_SUBJECT, principal, reason=f"auditor read {what}")

    async def case_trail(self, case_id: uuid.UUID, principal: Principal) -> list[StoredEntry]:
        """The case's entries, by the time each event happened, then by leaf index."""
        entries = await self.ledger.case_trail(str(case_id))
        await self._record_read(principal, f"the trail of case {case_id}")
        return entries

    async def case_export(self, case_id: uuid.UUID, principal: Principal) -> CaseBundle:
        """The case's trail with each entry's inclusion proof in the current checkpoint."""
        checkpoint = await self.checkpoints.current()
        size = checkpoint.tree_size
        entries = []
        for stored in await self.ledger.case_trail(str(case_id)):
            if stored.leaf_index >= size:
                continue  # recorded after the checkpoint was read; the next export has it
            _, path = await self.ledger.inclusion_proof(stored.leaf_index, size)
            entries.append(
                BundleEntry(
                    leaf_index=stored.leaf_index,
                    leaf=stored.text,
                    inclusion_proof=[p.hex() for p in path],
                )
            )
        await self._record_read(principal, f"the export of case {case_id}")
        return CaseBundle(case_id=case_id, checkpoint=checkpoint, entries=entries)

    async def _of_action(
        self, action: str, after: int | None, limit: int, principal: Principal, what: str
    ) -> Page:
        found = await self.ledger.search(SearchFilter(action=action, after=after, limit=limit))
        await self._record_read(principal, what)
        return _page(found, limit)

    async def conflicts(self, after: int | None, limit: int, principal: Principal) -> Page:
        return await self._of_action(CONFLICT, after, limit, principal, "the conflicts")

    async def offset_gaps(self, after: int | None, limit: int, principal: Principal) -> Page:
        return await self._of_action(OFFSET_GAP, after, limit, principal, "the offset gaps")

    async def search(self, where: SearchFilter, principal: Principal) -> Page:
        for name, moment in (("since", where.since), ("until", where.until)):
            if moment is not None and moment.tzinfo is None:
                raise _bad_request("naive_time", f"{name} needs a UTC offset", name)
        found = await self.ledger.search(where)
        # Which filters, and the case searched; not the free-text values (whatever an auditor
        # typed would stay in the ledger for good).
        used = [k for k, v in vars(where).items() if v is not None and k != "limit"]
        await self._record_read(
            principal,
            f"a search by {', '.join(used) or 'nothing'}"
            + (f" in case {where.case_id}" if where.case_id else ""),
        )
        return _page(found, where.limit)

    async def leaves(self, start: int, to: int | None, principal: Principal) -> LeavesPage:
        """Raw leaves [start, to), `to` clamped to the ledger's size (default and cap: start +
        `MAX_PAGE`)."""
        end = start + MAX_PAGE if to is None else to
        if end < start:
            raise _bad_request("out_of_range", "to must not be below from", "to")
        if end - start > MAX_PAGE:
            raise _bad_request("page_too_large", f"at most {MAX_PAGE} leaves per call", "to")
        size = await self.ledger.size()
        end = min(end, size)
        leaves = await self.ledger.leaves(start, end) if start < end else []
        await self._record_read(principal, f"entries [{start}, {max(end, start)})")
        return LeavesPage(start, max(end, start), size, leaves)

    async def _require_within(self, tree_size: int, field: str) -> None:
        size = await self.ledger.size()
        if tree_size > size:
            raise _bad_request(
                "beyond_tree_size", f"{field} {tree_size} exceeds the ledger's size {size}", field
            )

    async def inclusion_proof(self, leaf_index: int, tree_size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, audit path): RFC 9162 proof that the leaf is in the tree of that size."""
        if leaf_index >= tree_size:
            raise _bad_request(
                "out_of_range", f"leaf_index must be below tree_size {tree_size}", "leaf_index"
            )
        await self._require_within(tree_size, "tree_size")
        return await self.ledger.inclusion_proof(leaf_index, tree_size)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 proof that the tree of `second` leaves extends the tree of `first`."""
        if first > second:
            raise _bad_request("out_of_range", "first must not exceed second", "first")
        await self._require_within(second, "second")
        return await self.ledger.consistency_proof(first, second)


def _page(found: list[StoredEntry], limit: int) -> Page:
    return Page(found, found[-1].leaf_index if len(found) == limit else None)
