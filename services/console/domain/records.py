"""A case's records as the pages show them: a report's personal part as labelled fields, and an
audit trail's rows with which of them the bundle proves. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    """Field names from the outermost in; list positions are left out."""
    position: tuple[int, ...]
    """1-based positions in the lists passed through (a second survivor: (2,))."""
    value: str


def flatten(
    value: Any, path: tuple[str, ...] = (), position: tuple[int, ...] = ()
) -> Iterator[Field]:
    """A nested record (a report's personal part) as labelled leaf values, in order."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from flatten(inner, (*path, str(key)), position)
    elif isinstance(value, list):
        for index, inner in enumerate(value, start=1):
            yield from flatten(inner, path, (*position, index) if len(value) > 1 else position)
    elif value is not None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        yield Field(path, position, text)


def case_reports(case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A case's reports, each with its personal part (when routing released it) as fields."""
    return [
        {**report, "fields": list(flatten(report["personal"])) if report["personal"] else []}
        for report in case["reports"]
    ]


def leaf_fields(leaf_text: str) -> dict[str, Any]:
    """An audit leaf's entry, for display (the browser checks the exact text, not this)."""
    parsed: dict[str, Any] = json.loads(leaf_text)
    return parsed


def trail_rows(trail: Mapping[str, Any], bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trail's entries in its order; an entry the bundle proves shows its exact leaf (what
    the browser verifies), any other the trail's own account of it, marked unproven."""
    proven = {e["leaf_index"]: e for e in bundle["entries"]}
    rows = []
    for entry in trail["entries"]:
        leaf = proven.get(entry["leaf_index"])
        shown = leaf_fields(leaf["leaf"]) if leaf else entry["entry"]
        rows.append({"leaf_index": entry["leaf_index"], "entry": shown, "proven": bool(leaf)})
    return rows
