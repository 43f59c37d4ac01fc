"""Where the verifier reads a ledger from (the `LedgerSource` port): the running service's
API, or an exported file.

Both are sources the verifier does not trust (see `handlers/verify.py`). A ledger export is text: a
header line (`LedgerExportHeader` as JSON: format and signed checkpoint), then one line per
leaf, in order: `<leaf index> TAB <stored leaf hash, hex> TAB <the entry's exact canonical
JSON>` (an empty third field: the stored entry is missing). Canonical JSON escapes every control
character, so it holds neither a tab nor a newline, and a line splits without parsing JSON:
at a million lines that is most of an export's reading time.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from services.audit.domain.bundle import CaseBundle, LedgerExportHeader
from services.audit.domain.checkpoint import Checkpoint
from services.audit.ports import SourceLeaf


class SourceError(RuntimeError):
    """The source answered with an error, or with something that is not what was asked for."""


def _leaf(item: dict[str, Any]) -> SourceLeaf:
    claimed = item.get("leaf_hash")
    text = item.get("leaf")
    return SourceLeaf(
        leaf_index=int(item["leaf_index"]),
        text=text if isinstance(text, str) else None,
        claimed_hash=bytes.fromhex(claimed) if isinstance(claimed, str) else None,
    )


class ServiceSource:
    """The auditors' API of a running audit service.

    The next page of leaves is fetched while the current one is being hashed, so a long
    verification is bound by whichever is slower, not by their sum.
    """

    def __init__(
        self, client: httpx.Client, description: str, *, owns_client: bool = False
    ) -> None:
        self.client = client
        self.description = description
        self._owns_client = owns_client
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-fetch")
        self._prefetched: dict[tuple[int, int], Future[list[dict[str, Any]]]] = {}

    @classmethod
    def connect(cls, url: str, token: str, timeout: float = 60.0) -> ServiceSource:
        client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
        return cls(client, url, owns_client=True)

    def close(self) -> None:
        self._prefetcher.shutdown(wait=True, cancel_futures=True)
        if self._owns_client:
            self.client.close()

    def _get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        if response.status_code != 200:
            raise SourceError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def checkpoint(self) -> Checkpoint:
        return Checkpoint.model_validate(self._get("/v1/audit/checkpoint"))

    def _get_text(self, path: str) -> str:
        response = self.client.get(path)
        if response.status_code != 200:
            raise SourceError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response.text

    def tlog_checkpoint(self) -> str:
        """The current checkpoint as a C2SP `tlog-checkpoint` signed note."""
        return self._get_text("/v1/audit/tlog/checkpoint")

    def tlog_verifier_key(self) -> str:
        return self._get_text("/v1/audit/tlog/verifier-key").strip()

    def sign_checkpoint(self) -> Checkpoint:
        response = self.client.post("/v1/audit/checkpoint")
        if response.status_code != 200:
            raise SourceError(f"POST /v1/audit/checkpoint answered {response.status_code}")
        return Checkpoint.model_validate(response.json())

    def _page(self, start: int, end: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while start + len(items) < end:
            body = self._get("/v1/audit/entries", **{"from": start + len(items), "to": end})
            page = body.get("entries", [])
            if not page:
                break  # the source has fewer leaves than its checkpoint claims
            items.extend(page)
        return items

    def leaves(self, start: int, end: int) -> Iterator[SourceLeaf]:
        pending = self._prefetched.pop((start, end), None)
        items = pending.result() if pending is not None else self._page(start, end)
        following = (end, end + (end - start))
        self._prefetched[following] = self._prefetcher.submit(self._page, *following)
        for item in items:
            yield _leaf(item)

    def consistency_proof(self, first: int, second: int) -> list[bytes] | None:
        body = self._get("/v1/audit/proofs/consistency", first=first, second=second)
        return [bytes.fromhex(h) for h in body["consistency_path"]]

    def case_bundle(self, case_id: str) -> CaseBundle:
        return CaseBundle.model_validate(self._get(f"/v1/audit/cases/{case_id}/export"))


class ExportFileSource:
    """A ledger export file; it holds no proofs, so only the leaves themselves are checked."""

    def __init__(self, path: Path) -> None:
        self.description = str(path)
        self._file = path.open("r", encoding="utf-8")
        first = self._file.readline()
        try:
            self.header = LedgerExportHeader.model_validate_json(first)
        except ValueError as exc:
            raise SourceError(f"{path} is not an ocsea ledger export: {exc}") from exc
        self._next = 0

    def close(self) -> None:
        self._file.close()

    def checkpoint(self) -> Checkpoint:
        return self.header.checkpoint

    def leaves(self, start: int, end: int) -> Iterator[SourceLeaf]:
        if start != self._next:
            raise SourceError("an export file is read in order, once")
        for _ in range(start, end):
            line = self._file.readline()
            if not line:
                return
            self._next += 1
            index, claimed, text = line.rstrip("\n").split("\t", 2)
            yield SourceLeaf(int(index), text or None, bytes.fromhex(claimed) if claimed else None)

    def consistency_proof(self, first: int, second: int) -> list[bytes] | None:
        return None


def export_header(checkpoint: Checkpoint) -> str:
    """First line of a ledger export; leaves 0…checkpoint.tree_size-1 follow, one a line."""
    return LedgerExportHeader(checkpoint=checkpoint).model_dump_json() + "\n"


def export_line(leaf: SourceLeaf) -> str:
    claimed = leaf.claimed_hash.hex() if leaf.claimed_hash is not None else ""
    return f"{leaf.leaf_index}\t{claimed}\t{leaf.text or ''}\n"


def export_pages(source: ServiceSource, size: int, page: int = 10_000) -> Iterator[SourceLeaf]:
    for start in range(0, size, page):
        yield from source.leaves(start, min(size, start + page))
