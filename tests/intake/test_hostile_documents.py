"""Hostile documents on every channel, read by the pure parsers: each is refused with a stable
code and the place of the problem (a JSON path, an element path, a line and column), quickly,
and in a batch only the bad row is refused."""

from __future__ import annotations

import time

import pytest

from ocsea.runtime import safe_json
from services.intake.domain.batch import decode, parse_ndjson, read_upload
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.cybertipline import parse_cybertipline
from services.intake.domain.deadline import Deadline, DeadlinePassed
from services.intake.domain.refusals import Refusal
from services.intake.domain.xml_document import XmlLimits, parse_document
from services.intake.handlers.reading import JsonReader

READ_JSON = JsonReader().read

GOOD = '{"channel": "ngo", "narrative": "fine"}'


def refused_json(document: bytes | str) -> tuple[str, str]:
    with pytest.raises(safe_json.JsonRefused) as caught:
        safe_json.loads(document)
    return caught.value.code, caught.value.path


@pytest.mark.parametrize(
    ("document", "code", "path"),
    [
        ("[" * 5000 + "]" * 5000, "nesting_too_deep", ""),
        ('{"a": ' * 65 + "1" + "}" * 65, "nesting_too_deep", ".".join(["a"] * 64)),
        ('{"survivors": [{"age": ' + "9" * 5000 + "}]}", "integer_too_large", "survivors.0.age"),
        ('{"channel": "ngo", "channel": "hotline"}', "duplicate_key", "channel"),
        ('{"narrative": "a\\u0000b"}', "nul_character", "narrative"),
        ('{"survivors": [{"name": "\\ud800"}]}', "unpaired_surrogate", "survivors.0.name"),
        ('{"k\\udfffey": 1}', "unpaired_surrogate", ""),
        ('{"score": NaN}', "invalid_number", "score"),
        ('{"score": 1e999}', "number_out_of_range", "score"),
        (b'{"narrative": "\xff"}', "invalid_encoding", ""),
        ('{"narrative": "unterminated}', "invalid_json", ""),
    ],
)
def test_hostile_json_is_refused_with_its_place(document: str, code: str, path: str) -> None:
    assert refused_json(document) == (code, path)


def test_the_json_limits_leave_real_documents_alone() -> None:
    document = '{"a": "\\ud83d\\ude00", "n": 12345678901234567890, "x": [' + "[" * 62 + "]" * 62
    assert safe_json.loads(document + '], "f": 1.5}')["a"] == "😀"
    assert safe_json.loads(b"\xef\xbb\xbf" + GOOD.encode()) == {
        "channel": "ngo",
        "narrative": "fine",
    }


def test_refusing_a_deep_or_huge_document_is_fast() -> None:
    for document in ("[" * 200_000, '{"a": ' + "1" * 200_000 + "}", '{"a": [1, ' * 50_000):
        started = time.perf_counter()
        with pytest.raises(safe_json.JsonRefused):
            safe_json.loads(document)
        assert time.perf_counter() - started < 1.0


def test_a_bad_ndjson_line_is_that_rows_problem_only() -> None:
    lines = [
        GOOD,
        "[" * 5000 + "]" * 5000,
        '{"channel": "ngo", "channel": "hotline"}',
        '{"channel": "ngo", "survivors": [{"age": ' + "1" * 3000 + "}]}",
        GOOD.replace("fine", "also fine"),
        '{"channel": "ngo", "narrative": "\\u0000"}',
    ]
    batch = parse_ndjson("\n".join(lines), max_rows=10, read_json=READ_JSON)
    problems = {
        r.line: (r.problem.code, r.problem.field) if r.problem else None for r in batch.rows
    }
    assert problems == {
        1: None,
        2: ("nesting_too_deep", "body"),
        3: ("duplicate_key", "channel"),
        4: ("integer_too_large", "survivors.0.age"),
        5: None,
        6: ("nul_character", "narrative"),
    }


def test_only_newlines_end_an_ndjson_row() -> None:
    # U+2028 is allowed unescaped inside a JSON string; `splitlines` would cut the row there.
    row = '{"channel": "ngo", "narrative": "one\u2028two"}'
    [only] = parse_ndjson(row + "\r\n", max_rows=2, read_json=READ_JSON).rows
    assert only.problem is None
    assert only.content == {"channel": "ngo", "narrative": "one\u2028two"}


def test_an_upload_reads_good_rows_past_bad_ones(refs: Normalisers) -> None:
    body = "\n".join([GOOD, "[" * 5000, '{"channel": "ngo", "narrative": "x\\u0000"}', GOOD + " "])
    upload = read_upload(
        body.encode(),
        "ndjson",
        None,
        max_rows=10,
        read_json=READ_JSON,
        partner_kind="ngo",
        refs=refs,
        deadline=Deadline.after(10),
    )
    assert [line for line, _ in upload.good] == [1, 4]
    assert {line: (r.code, r.field) for line, r in upload.refused.items()} == {
        2: ("nesting_too_deep", "body"),
        3: ("nul_character", "narrative"),
    }
    assert upload.refused[2].message is not None


def test_a_csv_cell_with_a_nul_is_refused_with_its_column(refs: Normalisers) -> None:
    body = b"channel,narrative,survivor_age\nngo,fine,12\nngo,bad\x00cell,13\n"
    upload = read_upload(
        body,
        "csv",
        None,
        max_rows=10,
        read_json=READ_JSON,
        partner_kind="ngo",
        refs=refs,
        deadline=Deadline.after(10),
    )
    assert [line for line, _ in upload.good] == [2]
    assert (upload.refused[3].code, upload.refused[3].field) == ("invalid_character", "narrative")


def test_reading_stops_at_the_deadline(refs: Normalisers) -> None:
    body = "\n".join([GOOD] * 50).encode()
    with pytest.raises(DeadlinePassed):
        read_upload(
            body,
            "ndjson",
            None,
            max_rows=100,
            read_json=READ_JSON,
            partner_kind=None,
            refs=refs,
            deadline=Deadline(time.monotonic() - 1),
        )


@pytest.mark.parametrize("charset", ["unicode_escape", "punycode", "utf-7", "rot13", "x-unknown"])
def test_only_text_encodings_decode_an_upload(charset: str) -> None:
    with pytest.raises(Refusal) as caught:
        decode(b"channel\nngo\n", charset)
    assert (caught.value.status, caught.value.code) == (415, "unsupported_charset")


@pytest.mark.parametrize("charset", ["utf-8", "UTF8", "windows-1256", "iso-8859-6", "utf-16"])
def test_partners_encodings_decode(charset: str) -> None:
    assert decode("channel\nngo\n".encode(charset), charset).endswith("ngo\n")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"channel": "ngo", "narrative": "a\x00b"}, "narrative"),
        ({"channel": "ngo", "survivors": [{"name": "\ud800"}]}, "survivors.0.name"),
        ({"channel": "ngo", "unknown": {"deep": ["\x00"]}}, "unknown.deep.0"),
    ],
)
def test_forbidden_characters_are_refused_on_every_channel(
    refs: Normalisers, value: dict[str, object], path: str
) -> None:
    with pytest.raises(Refusal) as caught:
        canonical_report(value, refs)
    assert (caught.value.code, caught.value.field) == ("invalid_character", path)


def test_megabytes_in_a_normalised_field_are_left_to_validation(refs: Normalisers) -> None:
    started = time.perf_counter()
    with pytest.raises(Refusal) as caught:
        canonical_report({"channel": "ngo", "survivors": [{"age": "1 a " * 500_000}]}, refs)
    assert caught.value.field == "survivors.0.age"
    assert time.perf_counter() - started < 2.0


def xml_refusal(document: bytes, refs: Normalisers, limits: XmlLimits | None = None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        parse_cybertipline(document, refs, limits or XmlLimits())
    return caught.value


def test_deep_xml_is_refused_at_the_depth_limit(refs: Normalisers) -> None:
    document = b"<report>" + b"<a>" * 3000 + b"</a>" * 3000 + b"</report>"
    refusal = xml_refusal(document, refs)
    assert (refusal.status, refusal.code) == (422, "xml_too_deep")
    assert refusal.field == "/report" + "/a" * 63


@pytest.mark.parametrize("kib", [32, 64, 128, 2047])
def test_flat_xml_is_refused_at_once(refs: Normalisers, kib: int) -> None:
    """Sibling after sibling used to cost quadratic time (minutes at 2 MiB)."""
    element = b"<x>abcdefgh</x>"
    document = b"<report>" + element * (kib * 1024 // len(element)) + b"</report>"
    started = time.perf_counter()
    refusal = xml_refusal(document, refs)
    assert time.perf_counter() - started < 0.5
    assert (refusal.status, refusal.code, refusal.field) == (
        413,
        "xml_too_many_elements",
        "/report",
    )


def test_many_unknown_elements_are_refused_before_being_kept(refs: Normalisers) -> None:
    document = b"<report>" + b"<vendorThing>x</vendorThing>" * 600 + b"</report>"
    refusal = xml_refusal(document, refs)
    assert (refusal.code, refusal.field) == ("too_many_items", "/report")


def test_the_element_limit_counts_attributes(refs: Normalisers) -> None:
    victim = b'<victim a="1" b="2"><victimPerson><age>12</age></victimPerson></victim>'
    document = b"<report>" + victim * 30 + b"</report>"
    refusal = xml_refusal(document, refs, XmlLimits(max_elements=100))
    assert (refusal.status, refusal.code, refusal.field) == (
        413,
        "xml_too_many_elements",
        "/report",
    )


def test_the_xml_limits_leave_a_real_report_alone(refs: Normalisers) -> None:
    from tests.intake.conftest import FIXTURES

    document = (FIXTURES / "cybertipline_full.xml").read_bytes()
    assert parse_document(document).tag.endswith("report")
    assert parse_cybertipline(document, refs).channel == "tipline"


def test_the_probe_string_in_xml_text_and_attributes_is_read_quickly(refs: Normalisers) -> None:
    probe = "data:a/a" + ";aaaaaaaaaa" * 7 + "!"
    document = (
        f'<report><victim note="{probe}"><victimPerson><age>{probe}</age></victimPerson></victim>'
        "</report>"
    ).encode()
    started = time.perf_counter()
    refusal = xml_refusal(document, refs)
    assert time.perf_counter() - started < 0.5
    assert refusal.field == "/report/victim/victimPerson/age"
