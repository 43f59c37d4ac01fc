"""The canonical JSON channel's mapping: normalised first, then validated, refusals named."""

from __future__ import annotations

import base64
import os
import unicodedata
from datetime import UTC, date, datetime
from typing import Any

import pytest

from contracts.reports import Channel, Governorate, Language, RiskFlag, ViolenceType
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.refusals import Refusal

SPELLED_OUT: dict[str, Any] = {
    "channel": "Hotline",
    "language": "Sorani",
    "incident": {
        "occurred_at": "٢٠٢٦-١١-٢٠ ٢١:٣٠",
        "governorate": "هەولێر",
        "district": "سۆران",
        "platform": "Insta",
    },
    "survivors": [
        {
            "age": "١٥ ساڵ",
            "date_of_birth": "١٢/٥/٢٠١١",
            "age_range": {"min": "۱۴", "max": "16 years"},
            "contact": {"phone": "0750 123 4567", "email": "Some.One@Example.ORG"},
            "location": {"city": "Zaxo"},
        }
    ],
    "reported_persons": [
        {"online_identifiers": [{"platform": "IG", "handle": "@Someone"}], "age": "٢٤"}
    ],
    "categories": ["Sextortion", "image-based sexual abuse"],
    "risk_flags": ["Sextortion Deadline"],
    "files": [{"hashes": [{"type": "SHA-256", "value": "CA978112" * 8}]}],
}


def test_every_spelling_is_normalised(refs: Normalisers) -> None:
    report = canonical_report(SPELLED_OUT, refs)
    assert report.channel is Channel.HOTLINE
    assert report.language is Language.CKB
    assert report.incident.occurred_at == datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    assert report.incident.governorate is Governorate.ERBIL
    assert report.incident.district == "erbil.soran"
    assert report.incident.platform == "instagram"
    survivor = report.survivors[0]
    assert survivor.age == 15
    assert survivor.date_of_birth == date(2011, 5, 12)
    assert survivor.age_range is not None
    assert (survivor.age_range.min, survivor.age_range.max) == (14, 16)
    assert survivor.contact is not None
    assert survivor.contact.phone == "+9647501234567"
    assert survivor.contact.email == "some.one@example.org"
    assert survivor.location is not None
    assert survivor.location.governorate is Governorate.ZAKHO
    assert report.reported_persons[0].online_identifiers[0].platform == "instagram"
    assert report.reported_persons[0].age == 24
    assert report.categories == [ViolenceType.SEXTORTION, ViolenceType.IMAGE_BASED_SEXUAL_ABUSE]
    assert report.risk_flags == [RiskFlag.SEXTORTION_DEADLINE]
    assert report.files[0].hashes[0].value == "ca978112" * 8


def test_a_stated_time_zone_reads_local_times(refs: Normalisers) -> None:
    report = canonical_report(
        {
            "channel": "ngo",
            "incident": {"occurred_at": "2026-07-01 12:00", "time_zone": "Europe/Berlin"},
        },
        refs,
    )
    assert report.incident.occurred_at == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


def test_a_district_fills_in_its_governorate(refs: Normalisers) -> None:
    report = canonical_report({"channel": "ngo", "incident": {"district": "Qaladiza"}}, refs)
    assert report.incident.governorate is Governorate.RAPARIN
    assert report.incident.district == "raparin.pshdar"


def test_text_is_nfc(refs: Normalisers) -> None:
    decomposed = unicodedata.normalize("NFD", "Hêvî Çiya")
    report = canonical_report({"channel": "ngo", "narrative": decomposed}, refs)
    assert report.narrative == unicodedata.normalize("NFC", decomposed)
    assert report.narrative != decomposed


def refusal(refs: Normalisers, raw: Any) -> Refusal:
    with pytest.raises(Refusal) as caught:
        canonical_report(raw, refs)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ({"channel": "ngo", "narrative": "x" * 20_001}, "field_too_long", "narrative"),
        ({"channel": "ngo", "survivors": [{}] * 51}, "too_many_items", "survivors"),
        (
            {"channel": "ngo", "survivors": [{"name": "n" * 501}]},
            "field_too_long",
            "survivors.0.name",
        ),
        ({"channel": "ngo", "colour": "red"}, "invalid_request", "colour"),
        ({"channel": "ngo", "survivors": [{"age": "fifteen"}]}, "invalid_request",
         "survivors.0.age"),
        ({"channel": "ngo", "survivors": [{"age": "٢٠٠"}]}, "invalid_request", "survivors.0.age"),
        ({"channel": "ngo", "incident": {"time_zone": "Mars/Olympus"}}, "invalid_request",
         "incident.time_zone"),
        ({"channel": "ngo", "files": [{"hashes": [{"type": "md5", "value": "abc"}]}]},
         "invalid_request", "files.0.hashes.0"),
        ({"channel": "ngo", "incident": {"governorate": "Atlantis"}}, "invalid_request",
         "incident.governorate"),
        ([1, 2], "invalid_request", "body"),
    ],
)  # fmt: skip
def test_refusals_name_their_field(refs: Normalisers, raw: Any, code: str, field: str) -> None:
    refused = refusal(refs, raw)
    assert (refused.status, refused.code, refused.field) == (422, code, field)
    assert refused.message


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"channel": "ngo", "narrative": "see data:image/jpeg;base64,/9j/4AAQSkZJRg=="},
         "narrative"),
        ({"channel": "ngo", "files": [{"url": "DATA:video/mp4;base64,AAAAIGZ0eXA="}]},
         "files.0.url"),
        ({"channel": "ngo", "survivors": [{"indicators": ["data:,hello"]}]},
         "survivors.0.indicators.0"),
        ({"channel": "ngo", "files": [{"photo": base64.b64encode(os.urandom(3000)).decode()}]},
         "files.0.photo"),
        ({"channel": "ngo", "narrative": base64.b64encode(b"\xff\xd8\xff" + bytes(2000)).decode()},
         "narrative"),
    ],
)  # fmt: skip
def test_media_in_any_field_is_refused(refs: Normalisers, raw: Any, field: str) -> None:
    refused = refusal(refs, raw)
    assert (refused.status, refused.code, refused.field) == (422, "media_not_accepted", field)
    assert "hashes and links, never material" in refused.message


def test_hashes_and_long_urls_are_not_mistaken_for_media(refs: Normalisers) -> None:
    report = canonical_report(
        {
            "channel": "ngo",
            "files": [{"hashes": [{"type": "photodna", "value": "A" * 300}]}],
            "content_urls": ["https://example.org/" + "/".join(["segment"] * 200)],
        },
        refs,
    )
    assert report.files[0].hashes[0].value == "A" * 300


def test_messages_never_quote_the_value(refs: Normalisers) -> None:
    marker = "Marker-Zhyan-07501234567"
    refused = refusal(refs, {"channel": "ngo", "survivors": [{"age": marker}]})
    assert marker not in refused.message
    assert all(marker not in p.message for p in refused.problems)
