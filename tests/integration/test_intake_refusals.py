"""Refusals on every channel: a stable code, a message, the field (or element, or line), and
nothing published. The instance runs with small configured limits, so oversize bodies are
cheap to send."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from contracts import topics
from testkit.intake import Intake, envelopes, start_intake
from testkit.kafka import end_offsets, read_since

pytestmark = pytest.mark.integration

LIMITS = {
    "OCSEA_INTAKE_MAX_REPORT_BYTES": str(16 * 1024),
    "OCSEA_INTAKE_MAX_CYBERTIPLINE_BYTES": str(32 * 1024),
    "OCSEA_INTAKE_MAX_BATCH_BYTES": str(64 * 1024),
    "OCSEA_INTAKE_MAX_BATCH_ROWS": "20",
}
MEDIA = "hashes and links, never material"
BLOB = base64.b64encode(os.urandom(3000)).decode()


@pytest.fixture(scope="module")
def intake(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    running = start_intake(stack_env, tmp_path_factory.mktemp("intake-refusals"), LIMITS)
    yield running
    running.stop()


def as_json(body: Any) -> dict[str, Any]:
    import json

    return {"content": json.dumps(body).encode(), "content_type": "application/json"}


def raw(content: bytes | str, content_type: str) -> dict[str, Any]:
    data = content.encode() if isinstance(content, str) else content
    return {"content": data, "content_type": content_type}


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length: the limit must hold while streaming."""
    for start in range(0, len(data), 4096):
        yield data[start : start + 4096]


REPORT = "/v1/reports"
TIPLINE = "/v1/reports/cybertipline"
BATCH = "/v1/reports/batch"
XML_REPORT = "<report><incidentSummary><incidentType>Child Sex Trafficking</incidentType>" \
    "</incidentSummary>{}</report>"  # fmt: skip

CASES: list[tuple[str, str, dict[str, Any], int, str, str | None, str | None]] = [
    # path, name, body, status, code, field, words the message must contain
    (REPORT, "multipart upload", {"files": {"photo": ("a.jpg", b"\xff\xd8\xff", "image/jpeg")}},
     415, "media_not_accepted", "Content-Type", MEDIA),
    (REPORT, "image body", raw(b"\xff\xd8\xff\xe0", "image/jpeg"), 415, "media_not_accepted",
     "Content-Type", MEDIA),
    (REPORT, "plain text", raw("hello", "text/plain"), 415, "unsupported_media_type",
     "Content-Type", "application/json"),
    (REPORT, "data URI", as_json({"channel": "ngo", "files": [
        {"url": "data:image/png;base64,iVBORw0KGgo="}]}), 422, "media_not_accepted",
     "files.0.url", MEDIA),
    (REPORT, "base64 blob", as_json({"channel": "ngo", "narrative": BLOB}), 422,
     "media_not_accepted", "narrative", MEDIA),
    (REPORT, "oversize body", as_json({"channel": "ngo", "narrative": "x" * 17_000}), 413,
     "body_too_large", "body", "16384 bytes"),
    (REPORT, "oversize streamed body", {"content": chunked(b"{" + b" " * 20_000 + b"}"),
     "content_type": "application/json"}, 413, "body_too_large", "body", None),
    (REPORT, "too many items", as_json({"channel": "ngo", "risk_flags": ["self_harm"] * 21}),
     422, "too_many_items", "risk_flags", None),
    (REPORT, "over-long field", as_json({"channel": "ngo", "source_reference": "r" * 201}),
     422, "field_too_long", "source_reference", None),
    (REPORT, "not JSON", raw("{not json", "application/json"), 400, "invalid_json", "body",
     None),
    (REPORT, "unknown field", as_json({"channel": "ngo", "colour": "red"}), 422,
     "invalid_request", "colour", None),
    (TIPLINE, "entity expansion", raw(
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        "<report><additionalInfo>&b;</additionalInfo></report>", "application/xml"),
     422, "xml_not_allowed", "/", "DTD"),
    (TIPLINE, "external entity", raw(
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<report><additionalInfo>&x;</additionalInfo></report>", "application/xml"),
     422, "xml_not_allowed", "/", None),
    (TIPLINE, "malformed XML", raw("<report><victim></report>", "text/xml"), 400, "invalid_xml",
     "/", "line 1"),
    (TIPLINE, "data URI in an element", raw(XML_REPORT.format(
        "<additionalInfo>data:video/mp4;base64,AAAAIGZ0eXBpc29t</additionalInfo>"),
        "application/xml"), 422, "media_not_accepted", "/report/additionalInfo", MEDIA),
    (TIPLINE, "invalid age", raw(XML_REPORT.format(
        "<victim><victimPerson><age>very young</age></victimPerson></victim>"),
        "application/xml"), 422, "invalid_request", "/report/victim/victimPerson/age", None),
    (TIPLINE, "oversize document", raw(XML_REPORT.format(
        "<additionalInfo>" + "y " * 20_000 + "</additionalInfo>"), "application/xml"),
     413, "body_too_large", "body", None),
    (TIPLINE, "multipart upload",
     {"files": {"video": ("v.mp4", b"\x00\x00\x00 ftyp", "video/mp4")}}, 415,
     "media_not_accepted", "Content-Type", MEDIA),
    (TIPLINE, "JSON instead", as_json({"channel": "ngo"}), 415, "unsupported_media_type",
     "Content-Type", None),
    (BATCH, "multipart upload", {"files": {"export": ("r.csv", b"channel\nngo\n", "text/csv")}},
     415, "media_not_accepted", "Content-Type", MEDIA),
    (BATCH, "unknown type", raw("channel\nngo\n", "application/vnd.ms-excel"), 415,
     "unsupported_media_type", "Content-Type", None),
    (BATCH, "too many rows", raw("channel\n" + "ngo\n" * 21, "text/csv"), 422,
     "too_many_items", "rows", "limit of 20"),
    (BATCH, "oversize upload", raw('{"channel": "ngo"}\n' * 4000, "application/x-ndjson"),
     413, "body_too_large", "body", None),
    (BATCH, "unknown column", raw("channel,favourite_colour\nngo,red\n", "text/csv"), 422,
     "unknown_column", "favourite_colour", None),
    (BATCH, "undecodable text", raw(b"channel\n\xff\xfe\n", "text/csv"), 400,
     "invalid_encoding", "body", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "field", "words"),
    [
        pytest.param(p, b, s, c, f, w, id=f"{p.rsplit('/', 1)[-1]}: {n}")
        for p, n, b, s, c, f, w in CASES
    ],
)
async def test_refused_with_a_clear_error_and_nothing_published(
    intake: Intake,
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
    words: str | None,
) -> None:
    before = await end_offsets(intake.bootstrap, topics.REPORTS_RECEIVED)
    headers = intake.headers("hotline-a")
    if "content_type" in body:
        headers["Content-Type"] = body["content_type"]
        response = await client.post(
            f"{intake.url}{path}", content=body["content"], headers=headers
        )
    else:
        response = await client.post(f"{intake.url}{path}", files=body["files"], headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"]
    if words:
        assert words in error["message"]
    published = await read_since(intake.bootstrap, topics.REPORTS_RECEIVED, before)
    assert intake.ours(envelopes(published)) == []


async def test_the_same_body_within_the_limits_is_taken(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    """The limits refuse size, not content: just under them, the reports go in."""
    response = await client.post(
        f"{intake.url}{REPORT}",
        json={"channel": "ngo", "narrative": "x " * 7_000 + os.urandom(4).hex()},
        headers=intake.headers("hotline-a"),
    )
    assert response.status_code == 202, response.text
    rows = "".join(
        f'{{"channel": "ngo", "narrative": "row {i} {os.urandom(4).hex()}"}}\n' for i in range(20)
    )
    batch = await client.post(
        f"{intake.url}{BATCH}",
        content=rows.encode(),
        headers=intake.headers("hotline-a", **{"Content-Type": "application/x-ndjson"}),
    )
    assert batch.status_code == 202, batch.text
    assert batch.json()["accepted"] == 20
