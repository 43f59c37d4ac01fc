"""Batch uploads: NDJSON and CSV read row by row; lines and columns named in every error."""

from __future__ import annotations

import pytest

from services.intake.domain.batch import CSV_COLUMNS, csv_report, decode, parse_csv, parse_ndjson
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.refusals import Refusal
from services.intake.handlers.reading import JsonReader

READ_JSON = JsonReader().read


def test_ndjson_rows_keep_their_line_numbers() -> None:
    text = '{"channel": "ngo"}\n\n{not json}\n[1]\n{"channel": "hotline"}\n'
    batch = parse_ndjson(text, max_rows=10, read_json=READ_JSON)
    assert [(r.line, r.problem.code if r.problem else None) for r in batch.rows] == [
        (1, None),
        (3, "invalid_json"),
        (4, "invalid_request"),
        (5, None),
    ]


def test_csv_rows_keep_their_physical_line_numbers() -> None:
    text = (
        "channel,narrative,survivor_age\n"
        'ngo,"a narrative\nover two lines",15\n'
        "ngo,short,\n"
        "ngo,too,many,cells\n"
        "\n"
        "ngo,last,١٥ ساڵ\n"
    )
    batch = parse_csv(text, max_rows=10)
    assert [r.line for r in batch.rows] == [2, 4, 5, 7]
    assert batch.rows[2].problem is not None
    assert batch.rows[2].problem.code == "malformed_row"
    assert batch.rows[0].content == {
        "channel": "ngo",
        "narrative": "a narrative\nover two lines",
        "survivors": [{"age": "15"}],
    }


def test_csv_cells_become_a_canonical_report(refs: Normalisers) -> None:
    cells = dict.fromkeys(CSV_COLUMNS, "")
    cells |= {
        "channel": "NGO",
        "governorate": "دهۆک",
        "survivor_age": "١٤",
        "survivor_phone": "0770 123 4567",
        "survivor_indicators": "grade 8; lives with uncle",
        "reported_handle": "@someone",
        "platform": "Insta",
        "categories": "sextortion; grooming",
        "police_referral_consent": "نەخێر",
        "file_hashes": "md5:0CC175B9C0F1B6A831C399E269772661; sha1:" + "a" * 40,
    }
    report = canonical_report(csv_report(cells), refs)
    assert report.incident.governorate is not None
    assert report.incident.governorate.value == "duhok"
    assert report.survivors[0].age == 14
    assert report.survivors[0].indicators == ["grade 8", "lives with uncle"]
    identifier = report.reported_persons[0].online_identifiers[0]
    assert (identifier.platform, identifier.handle) == ("instagram", "@someone")
    assert report.consent.police_referral is False
    assert [h.value for f in report.files for h in f.hashes] == [
        "0cc175b9c0f1b6a831c399e269772661",
        "a" * 40,
    ]


def test_unknown_columns_refuse_the_whole_upload() -> None:
    with pytest.raises(Refusal) as caught:
        parse_csv("channel,favourite_colour\nngo,red\n", max_rows=10)
    assert (caught.value.code, caught.value.field) == ("unknown_column", "favourite_colour")


def test_too_many_rows_refuse_the_whole_upload() -> None:
    with pytest.raises(Refusal) as caught:
        parse_ndjson('{"channel": "ngo"}\n' * 11, max_rows=10, read_json=READ_JSON)
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        422,
        "too_many_items",
        "rows",
    )
    with pytest.raises(Refusal):
        parse_csv("channel\n" + "ngo\n" * 11, max_rows=10)


@pytest.mark.parametrize("text", ["", "\n\n", "channel\n"])
def test_empty_uploads_are_refused(text: str) -> None:
    def parse() -> object:
        if text.startswith("channel"):
            return parse_csv(text, max_rows=10)
        return parse_ndjson(text, max_rows=10, read_json=READ_JSON)

    with pytest.raises(Refusal) as caught:
        parse()
    assert caught.value.code == "empty_batch"


def test_canonical_paths_map_back_to_columns() -> None:
    batch = parse_csv("channel,survivor_age_min,survivor_age_max,reported_handle\nngo,,,\n", 10)
    assert batch.field_of("survivors.0.age_range.min") == "survivor_age_min"
    assert batch.field_of("survivors.0.age_range") == "survivor_age_min"
    assert batch.field_of("reported_persons.0.online_identifiers.0.handle") == "reported_handle"
    assert batch.field_of("narrative") == "narrative"


def test_declared_charsets_are_honoured() -> None:
    assert decode("سلێمانی".encode("utf-8-sig"), None) == "سلێمانی"
    assert decode("أربيل".encode("cp1256"), "windows-1256") == "أربيل"
    with pytest.raises(Refusal) as caught:
        decode(b"\xff\xfe\xfa", "utf-8")
    assert caught.value.code == "invalid_encoding"
