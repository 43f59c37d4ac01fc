"""Fuzzing the three channels' readers with hypothesis: whatever a partner sends, a channel
answers with a canonical report or a refusal (a 4xx naming the place at fault), never with
another exception, and quickly. Structure-aware: the generated documents are real reports
with parts replaced by hostile values, so the fuzzing reaches past the first syntax check.

`OCSEA_FUZZ_EXAMPLES` sets the examples per test (CI's bounded profile uses the default);
`OCSEA_FUZZ_EXAMPLES=5000 uv run pytest tests/intake/test_channel_fuzz.py` is the long run."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import time
import xml.etree.ElementTree as ET
from typing import Any

from defusedxml.ElementTree import fromstring as parse_trusted_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.reports import PartnerReport
from ocsea.runtime import safe_json
from services.intake.domain.batch import CSV_COLUMNS, read_upload
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.cybertipline import parse_cybertipline
from services.intake.domain.deadline import Deadline
from services.intake.domain.refusals import Refusal
from services.intake.handlers.reading import JsonReader
from tests.intake.conftest import FIXTURES

EXAMPLES = int(os.environ.get("OCSEA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # bounded below per example, with a margin for a loaded CI machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Well beyond what any one document takes on a quiet machine (a few ms), well below a stall.
SECONDS_PER_DOCUMENT = 2.0

# Values that have broken parsers before, mixed with anything at all.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "data:a/a" + ";aaaaaaaaaa" * 7 + "!",
            "\x00",
            "\ud800",
            "\ufeff",
            "A" * 2000,
            "QUJD" * 400,
            "9" * 5000,
            "-1",
            "1e999",
            "NaN",
            "2026-02-30",
            "0000-00-00T25:61:61",
            "+964 750 123 4567",
            "٠٧٥٠١٢٣٤٥٦٧",
            "هەولێر",
            "Duhok",
            "<![CDATA[x]]>",
            "&amp;&lt;",
            "\u202e\u2028\u0085",
            "",
            " ",
        ]
    ),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    HOSTILE_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

BASE_REPORT: dict[str, Any] = {
    "source_reference": "FUZZ-1",
    "channel": "hotline",
    "language": "ckb",
    "incident": {
        "occurred_at": "2026-11-20T21:30:00+03:00",
        "governorate": "erbil",
        "district": "erbil.soran",
        "platform": "instagram",
    },
    "survivors": [{"name": "Survivor", "age": 15, "gender": "female"}],
    "reported_persons": [{"contact": {"phone": "+9647501234567"}, "relationship": "stranger"}],
    "categories": ["sextortion"],
    "risk_flags": ["sextortion_deadline"],
    "narrative": "threatened to share images tonight",
    "files": [{"file_name": "a.jpg", "hashes": [{"type": "md5", "value": "0" * 32}]}],
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document that a mutation can replace."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


REPORT_PATHS = _paths(BASE_REPORT)


@st.composite
def mutated_reports(draw: st.DrawFn) -> Any:
    """The base report with a few of its values (or new keys) replaced by anything."""
    report = copy.deepcopy(BASE_REPORT)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if draw(st.booleans()):
            path = draw(st.sampled_from(REPORT_PATHS))
            holder: Any = report
            try:
                for step in path[:-1]:
                    holder = holder[step]
                holder[path[-1]] = draw(JSON_VALUES)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation changed the shape above this path
        else:
            report[draw(st.text(max_size=12))] = draw(JSON_VALUES)
    return report


def mangled(document: bytes, noise_size: int) -> st.SearchStrategy[bytes]:
    """Any bytes at all, or a real document cut short, or with bytes spliced in."""
    return st.one_of(
        st.binary(max_size=noise_size),
        st.integers(0, len(document)).map(lambda cut: document[:cut]),
        st.tuples(st.integers(0, len(document)), st.binary(min_size=1, max_size=8)).map(
            lambda splice: document[: splice[0]] + splice[1] + document[splice[0] :]
        ),
    )


def _bounded(started: float) -> None:
    took = time.perf_counter() - started
    assert took < SECONDS_PER_DOCUMENT, f"one document took {took:.2f} s"


def _is_an_answer(refusal: Refusal) -> None:
    assert 400 <= refusal.status < 500, refusal
    assert refusal.code
    assert refusal.message
    assert refusal.field is not None or refusal.problems, refusal


def read_json_channel(body: bytes, refs: Normalisers) -> PartnerReport | Refusal:
    """What `POST /v1/reports` does with a body, short of publishing it."""
    try:
        raw = safe_json.loads(body)
    except safe_json.JsonRefused as refused:
        return Refusal(400, refused.code, refused.message, refused.path or "body")
    try:
        return canonical_report(raw, refs)
    except Refusal as refusal:
        return refusal


@FUZZ
@given(report=mutated_reports())
def test_any_json_report_is_read_or_refused_with_its_field(refs: Normalisers, report: Any) -> None:
    started = time.perf_counter()
    # ASCII escapes carry every string, unpaired surrogates included, as a partner could send.
    outcome = read_json_channel(json.dumps(report).encode(), refs)
    _bounded(started)
    if isinstance(outcome, Refusal):
        _is_an_answer(outcome)
    else:
        assert outcome.channel is not None


@FUZZ
@given(data=st.data())
def test_any_bytes_on_the_json_channel_are_refused_or_read(
    refs: Normalisers, data: st.DataObject
) -> None:
    body = data.draw(mangled(json.dumps(BASE_REPORT).encode(), noise_size=200))
    started = time.perf_counter()
    outcome = read_json_channel(body, refs)
    _bounded(started)
    if isinstance(outcome, Refusal):
        _is_an_answer(outcome)


# --- CyberTipline XML ---------------------------------------------------------------------

TIPLINE_DOCUMENT = (FIXTURES / "cybertipline_full.xml").read_bytes()
TIPLINE_TREE = parse_trusted_fixture(TIPLINE_DOCUMENT)
XML_TEXT = HOSTILE_TEXT.map(
    # Text XML 1.0 can carry at all: the others are refused by the parser, tested below.
    lambda text: "".join(
        c for c in text if c in "\t\n\r" or ("\x20" <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd")
    )
)


@st.composite
def mutated_tipline_documents(draw: st.DrawFn) -> bytes:
    """The full CyberTipline fixture with elements' text or attributes replaced, elements
    removed or repeated."""
    root = copy.deepcopy(TIPLINE_TREE)
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        nodes = list(root.iter())
        node = nodes[draw(st.integers(0, len(nodes) - 1))]
        action = draw(st.sampled_from(["text", "attribute", "remove", "repeat", "child"]))
        if action == "text":
            node.text = draw(XML_TEXT)
        elif action == "attribute":
            node.set(draw(st.sampled_from(["type", "hashType", "verified", "x"])), draw(XML_TEXT))
        elif action in ("remove", "repeat"):
            parents = [p for p in root.iter() if node in list(p)]
            if parents:
                if action == "remove":
                    parents[0].remove(node)
                else:
                    parents[0].append(copy.deepcopy(node))
        else:
            child = ET.SubElement(node, draw(st.sampled_from(["age", "email", "x", "url"])))
            child.text = draw(XML_TEXT)
    return bytes(ET.tostring(root, encoding="utf-8"))


def read_tipline(body: bytes, refs: Normalisers) -> PartnerReport | Refusal:
    try:
        return parse_cybertipline(body, refs, deadline=Deadline.after(10))
    except Refusal as refusal:
        return refusal


@FUZZ
@given(document=mutated_tipline_documents())
def test_any_tipline_document_is_read_or_refused_at_its_element(
    refs: Normalisers, document: bytes
) -> None:
    started = time.perf_counter()
    outcome = read_tipline(document, refs)
    _bounded(started)
    if isinstance(outcome, Refusal):
        _is_an_answer(outcome)
        fields = [outcome.field or ""] + [p.field for p in outcome.problems]
        assert all(field.startswith("/") for field in fields if field), outcome
    else:
        assert outcome.channel == "tipline"


@FUZZ
@given(data=st.data())
def test_any_bytes_on_the_tipline_channel_are_refused_or_read(
    refs: Normalisers, data: st.DataObject
) -> None:
    body = data.draw(mangled(TIPLINE_DOCUMENT, noise_size=300))
    started = time.perf_counter()
    outcome = read_tipline(body, refs)
    _bounded(started)
    if isinstance(outcome, Refusal):
        _is_an_answer(outcome)


# --- batch uploads ------------------------------------------------------------------------

NDJSON_ROWS = st.one_of(
    mutated_reports().map(lambda r: json.dumps(r, ensure_ascii=False)),
    st.text(max_size=60).map(lambda text: text.replace("\n", " ")),
    st.just("[" * 5000),
    st.just('{"channel": "ngo", "channel": "ngo"}'),
)


@FUZZ
@given(rows=st.lists(NDJSON_ROWS, min_size=1, max_size=6))
def test_every_ndjson_line_gets_its_own_answer(refs: Normalisers, rows: list[str]) -> None:
    body = "\n".join(rows).encode("utf-8", errors="surrogatepass")
    started = time.perf_counter()
    try:
        upload = read_upload(
            body,
            "ndjson",
            None,
            max_rows=10,
            read_json=JsonReader().read,
            partner_kind="ngo",
            refs=refs,
            deadline=Deadline.after(10),
        )
    except Refusal as refusal:
        _bounded(started)
        _is_an_answer(refusal)  # the whole upload: not text, or no rows at all
        return
    _bounded(started)
    lines = {n for n, line in enumerate(body.decode().split("\n"), start=1) if line.strip()}
    good = {line for line, _ in upload.good}
    assert good.isdisjoint(upload.refused)
    assert good | set(upload.refused) == lines  # no row is lost, none is answered twice
    for result in upload.refused.values():
        assert result.code
        assert result.field


CSV_CELL = HOSTILE_TEXT.map(lambda text: text.replace("\x00", "")) | st.sampled_from(["\x00", ""])


@FUZZ
@given(
    columns=st.lists(st.sampled_from(sorted(CSV_COLUMNS)), min_size=1, max_size=6, unique=True),
    data=st.data(),
)
def test_every_csv_record_gets_its_own_answer(
    refs: Normalisers, columns: list[str], data: st.DataObject
) -> None:
    rows = data.draw(
        st.lists(st.lists(CSV_CELL, min_size=len(columns), max_size=len(columns)), max_size=5)
    )
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(rows)
    body = text.getvalue().encode("utf-8", errors="surrogatepass")
    started = time.perf_counter()
    try:
        upload = read_upload(
            body,
            "csv",
            None,
            max_rows=10,
            read_json=JsonReader().read,
            partner_kind="ngo",
            refs=refs,
            deadline=Deadline.after(10),
        )
    except Refusal as refusal:
        _bounded(started)
        _is_an_answer(refusal)
        return
    _bounded(started)
    good = {line for line, _ in upload.good}
    assert good.isdisjoint(upload.refused)
    answered = len(good) + len(upload.refused)
    assert answered <= len(rows)
    assert answered >= sum(1 for row in rows if any(cell.strip() for cell in row))
    for result in upload.refused.values():
        assert result.code
        assert result.field


def test_a_hash_type_that_is_not_text_is_refused_not_a_crash(refs: Normalisers) -> None:
    # Found by the fuzzer: a list as a file hash's type raised TypeError (a 500) in normalising.
    report = {**BASE_REPORT, "files": [{"hashes": [{"type": ["md5"], "value": "0" * 32}]}]}
    outcome = read_json_channel(json.dumps(report).encode(), refs)
    assert isinstance(outcome, Refusal)
    assert outcome.status == 422
    assert [p.field for p in outcome.problems] == ["files.0.hashes.0.type"]
