"""Keyed hashes: one report on any channel is one fingerprint; one identifier, one key."""

from __future__ import annotations

from typing import Any

from services.intake.domain.batch import parse_csv, parse_ndjson
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.matching import LinkReason, Matcher
from services.intake.handlers.reading import JsonReader

REPORT: dict[str, Any] = {
    "channel": "ngo",
    "survivors": [{"age": 14, "contact": {"phone": "0770 123 4567"}}],
    "reported_persons": [{"online_identifiers": [{"platform": "instagram", "handle": "@Bad.Guy"}]}],
    "categories": ["sextortion"],
}


def keys_of(matcher: Matcher, refs: Normalisers, raw: dict[str, Any]) -> dict[str, LinkReason]:
    report = canonical_report(raw, refs)
    return {k.digest: k.reason for k in matcher.keys("ngo-b", report)}


def test_the_same_report_on_any_channel_has_one_fingerprint(
    matcher: Matcher, refs: Normalisers
) -> None:
    as_json = canonical_report(REPORT, refs)
    [ndjson_row] = parse_ndjson(
        '{"categories": ["Sextortion"], "channel": "ngo", "survivors": [{"contact": '
        '{"phone": "+964 770 123 4567"}, "age": "١٤"}], "reported_persons": '
        '[{"online_identifiers": [{"handle": "@Bad.Guy", "platform": "IG"}]}]}',
        10,
        JsonReader().read,
    ).rows
    [csv_row] = parse_csv(
        "channel,survivor_age,survivor_phone,reported_platform,reported_handle,categories\n"
        "ngo,۱۴ ساڵ,00964-770-123-4567,Insta,@Bad.Guy,sextortion\n",
        10,
    ).rows
    assert ndjson_row.content is not None
    assert csv_row.content is not None
    fingerprints = {
        matcher.fingerprint("ngo-b", report)
        for report in (
            as_json,
            canonical_report(ndjson_row.content, refs),
            canonical_report(csv_row.content, refs),
        )
    }
    assert len(fingerprints) == 1
    assert matcher.fingerprint("hotline-a", as_json) not in fingerprints
    changed = canonical_report({**REPORT, "categories": ["grooming"]}, refs)
    assert matcher.fingerprint("ngo-b", changed) not in fingerprints


def test_identifiers_in_any_spelling_share_a_key(matcher: Matcher, refs: Normalisers) -> None:
    first = keys_of(matcher, refs, REPORT)
    respelled = keys_of(
        matcher,
        refs,
        {
            "channel": "hotline",
            "survivors": [{"contact": {"other_phones": ["٠٠٩٦٤٧٧٠١٢٣٤٥٦٧"]}}],
            "reported_persons": [
                {
                    "online_identifiers": [
                        {"platform": "Insta", "url": "https://www.instagram.com/bad.guy/?igshid=x"}
                    ]
                }
            ],
        },
    )
    assert set(first) == set(respelled)
    assert set(first.values()) == {LinkReason.SAME_SURVIVOR, LinkReason.SAME_REPORTED_ACCOUNT}


def test_the_same_handle_on_another_platform_is_another_account(
    matcher: Matcher, refs: Normalisers
) -> None:
    instagram = keys_of(matcher, refs, REPORT)
    tiktok = keys_of(
        matcher,
        refs,
        {"channel": "ngo", "reported_persons": [{"online_identifiers": [
            {"platform": "tiktok", "handle": "@Bad.Guy"}]}]},
    )  # fmt: skip
    assert not set(instagram) & set(tiktok)


def test_files_and_people_and_references(matcher: Matcher, refs: Normalisers) -> None:
    md5 = "0CC175B9C0F1B6A831C399E269772661"
    upper = keys_of(
        matcher, refs, {"channel": "ngo", "files": [{"hashes": [{"type": "MD5", "value": md5}]}]}
    )
    lower = keys_of(
        matcher,
        refs,
        {"channel": "ngo", "files": [{"hashes": [{"type": "md5", "value": md5.lower()}]}]},
    )
    assert upper == lower
    assert set(upper.values()) == {LinkReason.SAME_FILE}
    person = {
        "channel": "ngo",
        "survivors": [{"name": "Hêvî  Ahmed", "date_of_birth": "2011-05-12"}],
    }
    same_person = {
        "channel": "ngo",
        "survivors": [{"name": "hevi ahmed", "date_of_birth": "١٢/٥/٢٠١١"}],
    }
    assert keys_of(matcher, refs, person) == keys_of(matcher, refs, same_person)
    name_only = {"channel": "ngo", "survivors": [{"name": "Hêvî Ahmed"}]}
    assert keys_of(matcher, refs, name_only) == {}  # a name alone is too weak to link on
    reference = keys_of(matcher, refs, {"channel": "ngo", "source_reference": "NGO-7"})
    assert set(reference.values()) == {LinkReason.SAME_SOURCE_REFERENCE}
