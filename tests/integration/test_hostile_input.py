"""Issue 10's probes against a real running intake (real Kafka and Redis, intake's default
limits): every one answers a 4xx JSON error naming the field, element or line, in under
100 ms; a batch keeps its good rows; and intake's event loop keeps answering while it reads
the largest document a channel takes.

The time is the client's, request to answer. A stall would show in every attempt; the best
of five keeps a machine busy with other work from failing a probe that is not slow.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from testkit.intake import Intake, start_intake

pytestmark = pytest.mark.integration

PROBE = "data:a/a" + ";aaaaaaaaaa" * 7 + "!"  # backtracked for 9 s in the old media check
LIMIT_S = 0.100
REPORT, TIPLINE, BATCH = "/v1/reports", "/v1/reports/cybertipline", "/v1/reports/batch"
JSON, XML, NDJSON, CSV = "application/json", "application/xml", "application/x-ndjson", "text/csv"


@pytest.fixture(scope="module")
def intake(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    running = start_intake(
        stack_env,
        tmp_path_factory.mktemp("intake-hostile"),
        {"OCSEA_LOG_LEVEL": "INFO", "OCSEA_INTAKE_RATE_LIMIT_BURST": "2000"},
    )
    yield running
    running.stop()


def flat_xml(kib: int) -> bytes:
    element = b"<x>abcdefgh</x>"
    return b"<report>" + element * (kib * 1024 // len(element)) + b"</report>"


def victim(age: str, attribute: str = "") -> str:
    return (
        f"<report><victim{attribute}><victimPerson><age>{age}</age></victimPerson></victim>"
        "</report>"
    )


# name, path, content type, body, status, code, field
PROBES: list[tuple[str, str, str, bytes, int, str, str]] = [
    ("probe string in an unknown JSON field", REPORT, JSON,
     json.dumps({"channel": "ngo", "colour": PROBE}).encode(), 422, "invalid_request", "colour"),
    ("probe string in a JSON age", REPORT, JSON,
     json.dumps({"channel": "ngo", "survivors": [{"age": PROBE}]}).encode(), 422,
     "invalid_request", "survivors.0.age"),
    ("probe string in XML text", TIPLINE, XML, victim(PROBE).encode(), 422, "invalid_request",
     "/report/victim/victimPerson/age"),
    ("probe string in an XML attribute", TIPLINE, XML,
     victim("very young", f' note="{PROBE}"').encode(), 422, "invalid_request",
     "/report/victim/victimPerson/age"),
    ("probe string in a CSV cell", BATCH, CSV, f"channel,survivor_age\nngo,{PROBE}\n".encode(),
     422, "no_valid_rows", "rows"),
    ("probe string in an NDJSON row", BATCH, NDJSON,
     json.dumps({"channel": "ngo", "colour": PROBE}).encode(), 422, "no_valid_rows", "rows"),
    ("JSON nested 5,000 deep", REPORT, JSON, b"[" * 5000 + b"]" * 5000, 422, "nesting_too_deep",
     "body"),
    ("JSON object nested 65 deep", REPORT, JSON,
     b'{"channel": "ngo", "source": ' + b'{"a": ' * 64 + b"1" + b"}" * 65, 422,
     "nesting_too_deep", "source" + ".a" * 63),
    ("an integer of 5,000 digits", REPORT, JSON,
     b'{"channel": "ngo", "survivors": [{"age": ' + b"7" * 5000 + b"}]}", 422,
     "integer_too_large", "survivors.0.age"),
    ("CyberTipline XML nested 3,000 deep", TIPLINE, XML,
     b"<report>" + b"<a>" * 3000 + b"</a>" * 3000 + b"</report>", 422, "xml_too_deep",
     "/report" + "/a" * 63),
    ("flat CyberTipline XML, 32 KB", TIPLINE, XML, flat_xml(32), 413, "xml_too_many_elements",
     "/report"),
    ("flat CyberTipline XML, 64 KB", TIPLINE, XML, flat_xml(64), 413, "xml_too_many_elements",
     "/report"),
    ("flat CyberTipline XML, 128 KB", TIPLINE, XML, flat_xml(128), 413,
     "xml_too_many_elements", "/report"),
    ("flat CyberTipline XML, 2 MiB", TIPLINE, XML, flat_xml(2047), 413,
     "xml_too_many_elements", "/report"),
    ("invalid UTF-8", REPORT, JSON, b'{"channel": "ngo", "narrative": "\xc3\x28"}', 400,
     "invalid_encoding", "body"),
    ("an unpaired surrogate", REPORT, JSON, b'{"channel": "ngo", "narrative": "\\ud83d!"}', 422,
     "unpaired_surrogate", "narrative"),
    ("a NUL character", REPORT, JSON, b'{"channel": "ngo", "narrative": "a\\u0000b"}', 422,
     "nul_character", "narrative"),
    ("a duplicate key", REPORT, JSON, b'{"channel": "ngo", "channel": "hotline"}', 422,
     "duplicate_key", "channel"),
    ("JSON in another charset", REPORT, "application/json; charset=utf-16",
     '{"channel": "ngo"}'.encode("utf-16"), 415, "unsupported_charset", "Content-Type"),
    ("text/plain to the JSON channel", REPORT, "text/plain", b'{"channel": "ngo"}', 415,
     "unsupported_media_type", "Content-Type"),
    ("JSON to the XML channel", TIPLINE, JSON, b'{"channel": "ngo"}', 415,
     "unsupported_media_type", "Content-Type"),
    ("an upload in a decoding that is not a charset", BATCH, f"{CSV}; charset=unicode_escape",
     b"channel\nngo\n", 415, "unsupported_charset", "Content-Type"),
    ("an XML entity declaration", TIPLINE, XML,
     b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><report>&a;</report>', 422,
     "xml_not_allowed", "/"),
]  # fmt: skip


async def timed_post(
    client: httpx.AsyncClient, intake: Intake, path: str, content_type: str, body: bytes
) -> tuple[httpx.Response, float]:
    """The best of five attempts (each a new request, same body)."""
    best: tuple[httpx.Response, float] | None = None
    for _ in range(5):
        started = time.perf_counter()
        response = await client.post(
            f"{intake.url}{path}",
            content=body,
            headers=intake.headers("hotline-a", **{"Content-Type": content_type}),
        )
        elapsed = time.perf_counter() - started
        if best is None or elapsed < best[1]:
            best = (response, elapsed)
    assert best is not None
    return best


@pytest.mark.parametrize(
    ("path", "content_type", "body", "status", "code", "field"),
    [pytest.param(*probe[1:], id=probe[0]) for probe in PROBES],
)
async def test_each_probe_is_refused_quickly_naming_the_place(
    intake: Intake,
    client: httpx.AsyncClient,
    path: str,
    content_type: str,
    body: bytes,
    status: int,
    code: str,
    field: str,
) -> None:
    response, elapsed = await timed_post(client, intake, path, content_type, body)
    assert response.status_code == status, response.text
    error = response.json()
    assert (error["code"], error["field"]) == (code, field), error
    assert error["message"]
    assert elapsed < LIMIT_S, f"{elapsed * 1000:.0f} ms"


async def test_the_probe_string_as_a_narrative_is_simply_taken(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    """Text that only looks like the start of a data: URI is text."""
    body = {"channel": "ngo", "narrative": f"{PROBE} {uuid.uuid4().hex}"}
    response = await client.post(
        f"{intake.url}{REPORT}", json=body, headers=intake.headers("hotline-a")
    )
    assert response.status_code == 202, response.text


async def test_a_bad_line_in_a_batch_is_its_own_problem(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex
    lines = [
        json.dumps({"channel": "ngo", "narrative": f"first {tag}"}),
        "[" * 5000 + "]" * 5000,
        '{"channel": "ngo", "narrative": "dup", "narrative": "again"}',
        '{"channel": "ngo", "survivors": [{"age": ' + "9" * 5000 + "}]}",
        json.dumps({"channel": "ngo", "colour": PROBE}),
        json.dumps({"channel": "ngo", "narrative": f"last {tag}"}),
    ]
    started = time.perf_counter()
    response = await client.post(
        f"{intake.url}{BATCH}",
        content="\n".join(lines).encode(),
        headers=intake.headers("ngo-b", **{"Content-Type": NDJSON}),
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["accepted"], result["refused"]) == (2, 4)
    rows = {r["line"]: r for r in result["rows"]}
    assert [rows[n]["status"] for n in range(1, 7)] == [
        "accepted", "refused", "refused", "refused", "refused", "accepted"
    ]  # fmt: skip
    assert [(rows[n]["code"], rows[n]["field"]) for n in (2, 3, 4, 5)] == [
        ("nesting_too_deep", "body"),
        ("duplicate_key", "narrative"),
        ("integer_too_large", "survivors.0.age"),
        ("invalid_request", "colour"),
    ]
    assert elapsed < 5, f"{elapsed:.1f} s"


def largest_document() -> bytes:
    """A valid CyberTipline report as big as the channel takes (2 MiB) with as many elements
    as it allows: 50 victims, each with 190 further details."""
    details = "".join(f"<detail{i}>{'n' * 180}</detail{i}>" for i in range(190))
    victims = "".join(
        f"<victim><victimPerson><age>{10 + i % 8}</age></victimPerson>{details}</victim>"
        for i in range(50)
    )
    document = f"<report><reportId>BIG-{uuid.uuid4().hex}</reportId>{victims}</report>"
    return document.encode()


async def test_the_event_loop_answers_while_the_largest_document_is_read(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    document = largest_document()
    assert 1.5 * 1024 * 1024 < len(document) <= 2 * 1024 * 1024
    # What is measured is intake's event loop: this process's own collector stays out of it.
    gc.collect()
    gc.disable()
    try:
        await check_health_while_reading(intake, client, document)
    finally:
        gc.enable()


async def check_health_while_reading(
    intake: Intake, client: httpx.AsyncClient, document: bytes
) -> None:
    began = time.perf_counter()
    upload = asyncio.ensure_future(
        client.post(
            f"{intake.url}{TIPLINE}",
            content=document,
            headers=intake.headers("tipline-c", **{"Content-Type": XML}),
            timeout=60,
        )
    )
    pauses = []
    while not upload.done():
        started = time.perf_counter()
        health = await client.get(f"{intake.url}/healthz")
        pauses.append(time.perf_counter() - started)
        assert health.status_code == 200
    response = upload.result()
    # Read whole, then sealed: at 2 MiB it is larger than one Kafka event may be (1 MiB by
    # default), which is a refusal naming that, not a 503 asking for a retry that cannot work.
    assert response.status_code == 413, response.text[:500]
    assert response.json()["code"] == "too_large_to_publish"
    took = time.perf_counter() - began
    # The first check shares this test's own event loop with sending the 2 MiB body.
    pauses = pauses[1:]
    assert len(pauses) >= 3, "the document was read too fast to observe"
    # Read on the event loop, one health check would have waited for (nearly) all of it. On
    # an idle machine each answers in milliseconds; a machine running much else stretches
    # every step, hence a bound relative to the whole.
    assert max(pauses) < max(0.1, took / 3), (
        f"health answered after {max(pauses) * 1000:.0f} ms of {took * 1000:.0f} ms"
    )
