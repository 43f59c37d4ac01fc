"""Batch uploads (an NGO's monthly export): NDJSON of canonical reports, or CSV with one
report per row. Each row is read on its own: a bad row is reported with its line and field
and never stops the good ones. Whole-upload problems (unknown CSV columns, too many rows)
refuse the upload before anything is published.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from contracts.reports import BatchRowResult, BatchRowStatus, PartnerReport
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.deadline import Deadline
from services.intake.domain.refusals import Problem, Refusal

NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl",
     "application/jsonlines", "application/x-jsonlines"}
)  # fmt: skip
CSV_TYPES = frozenset({"text/csv", "application/csv"})
LIST_SEPARATOR = ";"

# CSV column → canonical field path; "[]" marks a ";"-separated list. One survivor and one
# reported person per row: a report with more of either goes as NDJSON. Without a channel,
# a row comes through the partner's own kind of channel (hotline, ngo, tipline).
CSV_COLUMNS: dict[str, str] = {
    "source_reference": "source_reference",
    "channel": "channel",
    "language": "language",
    "occurred_at": "incident.occurred_at",
    "time_zone": "incident.time_zone",
    "governorate": "incident.governorate",
    "district": "incident.district",
    "platform": "incident.platform",
    "location_description": "incident.location_description",
    "survivor_name": "survivors.0.name",
    "survivor_age": "survivors.0.age",
    "survivor_date_of_birth": "survivors.0.date_of_birth",
    "survivor_age_min": "survivors.0.age_range.min",
    "survivor_age_max": "survivors.0.age_range.max",
    "survivor_gender": "survivors.0.gender",
    "survivor_indicators": "survivors.0.indicators[]",
    "survivor_phone": "survivors.0.contact.phone",
    "survivor_email": "survivors.0.contact.email",
    "survivor_school_name": "survivors.0.school_name",
    "reported_name": "reported_persons.0.name",
    "reported_relationship": "reported_persons.0.relationship",
    "reported_platform": "reported_persons.0.online_identifiers.0.platform",
    "reported_handle": "reported_persons.0.online_identifiers.0.handle",
    "reported_url": "reported_persons.0.online_identifiers.0.url",
    "reported_phone": "reported_persons.0.contact.phone",
    "reported_email": "reported_persons.0.contact.email",
    "narrative": "narrative",
    "categories": "categories[]",
    "risk_flags": "risk_flags[]",
    "police_referral_consent": "consent.police_referral",
    "file_hashes": "files[]",
    "content_urls": "content_urls[]",
}
_TRUE = frozenset({"true", "yes", "y", "1", "نعم", "بەڵێ", "erê"})
_FALSE = frozenset({"false", "no", "n", "0", "لا", "نەخێر", "na"})


@dataclass(frozen=True)
class Row:
    """One row of an upload: its content as a canonical-shaped dict, or why it is unreadable."""

    line: int
    content: dict[str, Any] | None
    problem: Problem | None = None


@dataclass(frozen=True)
class Batch:
    rows: list[Row]
    field_names: dict[str, str]  # canonical path → the upload's own name for it (CSV column)

    def field_of(self, canonical_path: str) -> str:
        """The CSV column a canonical path came from, else the path itself."""
        if canonical_path in self.field_names:
            return self.field_names[canonical_path]
        below = [c for p, c in self.field_names.items() if p.startswith(canonical_path + ".")]
        if below:
            return below[0]
        above = [p for p in self.field_names if canonical_path.startswith(p + ".")]
        return self.field_names[max(above, key=len)] if above else canonical_path


def batch_kind(media_type: str) -> str | None:
    if media_type in NDJSON_TYPES:
        return "ndjson"
    if media_type in CSV_TYPES:
        return "csv"
    return None


# Text encodings partners' exports come in (Excel writes Arabic CSV as windows-1256), by their
# Python codec names. Others are refused: Python would also "decode" with codecs such as
# unicode_escape or punycode, which turn text into something else.
CHARSETS = frozenset(
    {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1256", "iso8859-6",
     "cp1252", "iso8859-1", "ascii"}
)  # fmt: skip


def decode(body: bytes, charset: str | None) -> str:
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = ""
    if codec not in CHARSETS:
        raise Refusal(
            415,
            "unsupported_charset",
            "the charset is not one intake reads (UTF-8, UTF-16, windows-1256, ISO-8859-6, "
            "windows-1252, ISO-8859-1)",
            "Content-Type",
        )
    try:
        # A byte order mark is not part of the first row's first column.
        return body.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        raise Refusal(
            400,
            "invalid_encoding",
            f"the upload is not valid {charset or 'UTF-8'} (byte {exc.start}); "
            "declare the charset in Content-Type",
            "body",
        ) from None


def _too_many(count: int, limit: int) -> Refusal:
    return Refusal(
        422,
        "too_many_items",
        f"{count} rows exceed the limit of {limit} per upload; split the upload",
        "rows",
    )


ReadJson = Callable[[str], Any]
"""Reads one JSON document under the channel's limits (depth, integer length, duplicate keys,
NUL…), or raises a `Refusal` naming the place; the service gives its hardened reader."""


def parse_ndjson(
    text: str, max_rows: int, read_json: ReadJson, deadline: Deadline | None = None
) -> Batch:
    """One row per non-blank line; a line that is not acceptable JSON (malformed, too deep, a
    duplicate key…) is that row's problem, with the place in the line, and the others go on."""
    # Only \n (and \r\n) end a row: `str.splitlines` would also split inside a row at
    # characters JSON allows unescaped in strings (U+2028, U+0085…).
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not lines:
        raise Refusal(422, "empty_batch", "the upload holds no rows", "body")
    if len(lines) > max_rows:
        raise _too_many(len(lines), max_rows)
    rows = []
    for number, line in lines:
        if deadline is not None:
            deadline.check()
        try:
            content = read_json(line)
        except Refusal as refused:
            rows.append(Row(number, None, Problem(refused.field or "body", refused.code,
                                                  refused.message)))  # fmt: skip
            continue
        if not isinstance(content, dict):
            rows.append(Row(number, None, Problem("body", "invalid_request", "not an object")))
            continue
        rows.append(Row(number, content))
    return Batch(rows, {})


def parse_csv(text: str, max_rows: int, deadline: Deadline | None = None) -> Batch:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise Refusal(
            422, "empty_batch", "the upload holds no header and no rows", "body"
        ) from None
    except csv.Error as exc:
        raise Refusal(400, "invalid_csv", f"line 1: {exc}", "line 1") from None
    columns = [c.strip().casefold() for c in header]
    for column in columns:
        if column not in CSV_COLUMNS:
            raise Refusal(
                422,
                "unknown_column",
                f"unknown column {column!r}; known columns: {', '.join(CSV_COLUMNS)}",
                column,
            )
    if len(set(columns)) != len(columns):
        raise Refusal(422, "duplicate_column", "a column appears twice in the header", "header")
    rows = []
    for row in _csv_rows(reader, columns):
        rows.append(row)
        if deadline is not None:
            deadline.check()
    if not rows:
        raise Refusal(422, "empty_batch", "the upload holds a header but no rows", "body")
    if len(rows) > max_rows:
        raise _too_many(len(rows), max_rows)
    names = {CSV_COLUMNS[c].removesuffix("[]"): c for c in columns}
    return Batch(rows, names)


def _csv_rows(reader: Any, columns: list[str]) -> Iterator[Row]:
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(start, None, Problem("body", "invalid_csv", str(exc)))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            yield Row(
                line,
                None,
                Problem("row", "malformed_row", f"{len(cells)} cells for {len(columns)} columns"),
            )
            continue
        yield Row(line, csv_report(dict(zip(columns, cells, strict=True))))


def csv_report(cells: dict[str, str]) -> dict[str, Any]:
    """One CSV row as a canonical-shaped dict (validation happens with every other channel)."""
    report: dict[str, Any] = {}
    for column, cell in cells.items():
        value = cell.strip()
        if not value:
            continue
        path = CSV_COLUMNS[column]
        if path == "files[]":
            _set(report, "files", [_file_of(item) for item in _items(value)])
        elif path.endswith("[]"):
            _set(report, path.removesuffix("[]"), _items(value))
        elif column == "police_referral_consent":
            _set(report, path, _boolean(value))
        else:
            _set(report, path, value)
    for person in report.get("reported_persons", []):
        for identifier in person.get("online_identifiers", []):
            identifier.setdefault("platform", report.get("incident", {}).get("platform", "unknown"))
    return report


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(LIST_SEPARATOR) if item.strip()]


def _file_of(item: str) -> dict[str, Any]:
    kind, separator, digest = item.partition(":")
    hashed = {"type": kind.strip(), "value": digest.strip()} if separator else {"value": item}
    return {"hashes": [hashed]}


def _boolean(value: str) -> bool | str:
    folded = value.casefold()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    return value  # validation names the column


def _set(target: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, creating objects, and lists where a segment is an index."""
    parts = path.split(".")
    node: Any = target
    for part, following in itertools.pairwise(parts):
        container: Any = [] if following.isdigit() else {}
        if isinstance(node, list):
            index = int(part)
            while len(node) <= index:
                node.append(container if len(node) == index else {})
            node = node[index]
        else:
            node = node.setdefault(part, container)
    if isinstance(node, list):
        node.append(value)
    else:
        node[parts[-1]] = value


@dataclass(frozen=True)
class Upload:
    """An upload read: its good rows as canonical reports, and a result for every other row."""

    good: list[tuple[int, PartnerReport]]
    refused: dict[int, BatchRowResult]


def read_upload(
    body: bytes,
    kind: str,
    charset: str | None,
    *,
    max_rows: int,
    read_json: ReadJson,
    partner_kind: str | None,
    refs: Normalisers,
    deadline: Deadline,
) -> Upload:
    """Decode, split and canonicalise an upload, row by row: a bad row gets its line and
    field (the CSV column), and never stops the good ones."""
    text = decode(body, charset)
    batch = (
        parse_csv(text, max_rows, deadline)
        if kind == "csv"
        else parse_ndjson(text, max_rows, read_json, deadline)
    )
    upload = Upload([], {})
    for row in batch.rows:
        deadline.check()
        problem = row.problem
        if kind == "csv" and row.content is not None and partner_kind:
            # An export's rows come through the partner's own channel unless they say.
            row.content.setdefault("channel", partner_kind)
        if problem is None and row.content is not None:
            try:
                upload.good.append((row.line, canonical_report(row.content, refs)))
                continue
            except Refusal as refusal:
                first = refusal.problems[0] if refusal.problems else None
                problem = first or Problem(refusal.field or "body", refusal.code, refusal.message)
        assert problem is not None
        column = batch.field_of(problem.field)
        upload.refused[row.line] = BatchRowResult(
            line=row.line,
            status=BatchRowStatus.REFUSED,
            code=problem.code,
            message=f"{column}: {problem.message}" if problem.field else problem.message,
            field=column,
        )
    return upload
