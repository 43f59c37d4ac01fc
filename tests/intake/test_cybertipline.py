"""CyberTipline XML: every section mapped with nothing lost; unsafe XML refused; errors carry
the element path."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, date, datetime

import pytest
from defusedxml.ElementTree import fromstring

from contracts.reports import Channel, Governorate, HashType, IndustryClassification
from services.intake.domain.canonical import Normalisers
from services.intake.domain.cybertipline import parse_cybertipline
from services.intake.domain.normalise import e164, parse_datetime, parse_years
from services.intake.domain.refusals import Refusal
from tests.intake.conftest import BAGHDAD, FIXTURES

FULL = (FIXTURES / "cybertipline_full.xml").read_bytes()
# Boolean elements whose meaning is mapped (to annotations or flags), checked one by one.
FLAGS = {
    "sextortion", "csamSolicitation", "minorToMinorInteraction", "spam",
    "sadisticOnlineExploitation", "viral", "infant", "generativeAi", "liveStreaming",
    "potentialMeme", "publiclyAvailable", "possibleProxy",
}  # fmt: skip
XSI = "{http://www.w3.org/2001/XMLSchema-instance}"


def forms(value: str) -> set[str]:
    """The ways a value may legitimately appear once normalised."""
    found = {value, value.casefold()}
    for convert in (e164, lambda v: str(parse_years(v))):
        try:
            if converted := convert(value):
                found.add(converted)
        except ValueError:
            pass
    with contextlib.suppress(ValueError):
        found.add(parse_datetime(value, BAGHDAD).isoformat().replace("+00:00", "Z"))
    return found


def test_every_section_maps_and_nothing_is_lost(refs: Normalisers) -> None:
    report = parse_cybertipline(FULL, refs)
    dump = json.dumps(report.model_dump(mode="json"), ensure_ascii=False)
    folded = dump.casefold()
    missing = []
    for node in fromstring(FULL).iter():
        tag = node.tag.rsplit("}", 1)[-1]
        values = [v for k, v in node.attrib.items() if not k.startswith(XSI)]
        if len(node) == 0 and tag not in FLAGS and (node.text or "").strip():
            values.append((node.text or "").strip())
        for value in values:
            if not any(form in dump or form.casefold() in folded for form in forms(value)):
                missing.append(f"{tag}: {value}")
    assert missing == []


def test_the_sections_land_in_their_canonical_fields(refs: Normalisers) -> None:
    report = parse_cybertipline(FULL, refs)
    assert report.channel is Channel.TIPLINE
    assert report.source_reference == "MK-CT-REPORT-0001"
    # incidentSummary
    assert report.incident.occurred_at == datetime(2026, 3, 1, 23, 45, tzinfo=UTC)
    assert report.incident.platform == "instagram"
    assert report.source is not None
    assert report.source.incident_types == ["Online Enticement of Children for Sexual Acts"]
    assert report.source.annotations == [
        "sextortion",
        "minorToMinorInteraction",
        "sadisticOnlineExploitation",
    ]
    assert report.source.escalate_to_high_priority is True
    assert [c.value for c in report.categories] == ["grooming", "sextortion"]
    # internetDetails, one per kind
    assert [d.kind for d in report.source.internet_details] == [
        "web_page", "chat_im", "email", "cell_phone",
    ]  # fmt: skip
    assert report.source.internet_details[3].phones == ["+9647501112233"]
    # victims: age in Arabic-Indic digits, phone in Arabic-Indic digits, school, location
    first, second = report.survivors
    assert first.age == 14
    assert first.contact is not None
    assert first.contact.phone == "+9647701234567"
    assert first.school_name == "MK-school-name"
    assert first.location is not None
    assert first.location.governorate is Governorate.ERBIL  # Soran, written in Kurdish
    assert first.online_identifiers[0].platform == "instagram"  # the reporting service
    assert second.date_of_birth == date(2011, 3, 2)
    # the reported person and an associated account
    [reported] = report.reported_persons
    assert reported.age == 24
    assert reported.online_identifiers[0].handle == "MK_reported_handle"
    assert reported.online_identifiers[-1].platform == "snapchat"
    assert reported.ip_captures[0].port == 443
    assert reported.details["deviceId/idValue"] == "MK-device-imei"
    # files: hashes by type, annotations, classification
    first_file, second_file = report.files
    assert [h.type for h in first_file.hashes] == [HashType.MD5, HashType.SHA1, HashType.PHOTODNA]
    assert first_file.hashes[0].value == "0cc175b9c0f1b6a831c399e269772661"
    assert first_file.annotations == ["viral", "generativeAi"]
    assert first_file.industry_classification is IndustryClassification.B1
    assert first_file.publicly_available is False
    assert second_file.hashes[1].type is HashType.OTHER
    assert second_file.details["originalFileHash[2]/@hashType"] == "TLSH"
    # sections without a canonical field: details; unknown elements: raw, verbatim
    assert report.source.details["lawEnforcement/caseNumber"] == "MK-case-number"
    assert report.source.reporter is not None
    assert report.source.reporter.details["companyTemplate"] == "MK-company-template"
    assert report.narrative == "MK-report-additional-info"
    raw = {r.path: r.content for r in report.source.raw}
    assert raw == {
        "/report/@vendorVersion": "MK-root-attribute",
        "/report/vendorExtension": '<vendorExtension priority="MK-vendor-attribute">'
        "<note>MK-unknown-element-text</note></vendorExtension>",
    }


def minimal(body: str) -> bytes:
    return f"<report><incidentSummary><incidentType>Child Sex Trafficking</incidentType>{body}" \
        "</incidentSummary></report>".encode()  # fmt: skip


@pytest.mark.parametrize(
    ("element", "escalated"),
    [
        ("<escalateToHighPriority>false</escalateToHighPriority>", False),
        ("<escalateToHighPriority/>", True),
        ("<escalateToHighPriority>true</escalateToHighPriority>", True),
        ("", False),
    ],
)
def test_escalation(refs: Normalisers, element: str, escalated: bool) -> None:
    report = parse_cybertipline(minimal(element), refs)
    assert report.source is not None
    assert report.source.escalate_to_high_priority is escalated
    assert report.source.incident_types == ["Child Sex Trafficking"]
    assert report.categories == []  # no violence type is certain from trafficking alone


def refusal(refs: Normalisers, body: bytes) -> Refusal:
    with pytest.raises(Refusal) as caught:
        parse_cybertipline(body, refs)
    return caught.value


@pytest.mark.parametrize(
    "document",
    [
        # billion laughs
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<report><additionalInfo>&b;</additionalInfo></report>",
        # external entity (XXE)
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<report><additionalInfo>&x;</additionalInfo></report>",
        # external DTD
        '<?xml version="1.0"?><!DOCTYPE report SYSTEM "http://example.org/evil.dtd"><report/>',
        # a DTD alone
        "<!DOCTYPE report><report/>",
    ],
)
def test_dtds_and_entities_are_refused(refs: Normalisers, document: str) -> None:
    refused = refusal(refs, document.encode())
    assert (refused.status, refused.code) == (422, "xml_not_allowed")
    assert "root:" not in refused.message


def test_malformed_xml_names_line_and_column(refs: Normalisers) -> None:
    refused = refusal(refs, b"<report>\n  <victim>\n</report>")
    assert (refused.status, refused.code) == (400, "invalid_xml")
    assert "line 3" in refused.message


def test_another_root_is_refused(refs: Normalisers) -> None:
    refused = refusal(refs, b"<reportResponse/>")
    assert (refused.status, refused.code, refused.field) == (
        422, "not_a_cybertipline_report", "/reportResponse",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (
            "<report><victim/><victim><victimPerson><age>old</age></victimPerson></victim>"
            "</report>",
            "/report/victim[2]/victimPerson/age",
        ),
        (
            '<report><fileDetails><originalFileHash hashType="MD5">xyz</originalFileHash>'
            "</fileDetails></report>",
            "/report/fileDetails/originalFileHash",
        ),
        (
            "<report><incidentSummary><incidentDateTime>soon</incidentDateTime>"
            "</incidentSummary></report>",
            "/report/incidentSummary/incidentDateTime",
        ),
        (
            "<report><victim><schoolName>" + "s" * 501 + "</schoolName></victim></report>",
            "/report/victim",
        ),
    ],
)
def test_errors_carry_the_element_path(refs: Normalisers, document: str, path: str) -> None:
    refused = refusal(refs, document.encode())
    assert refused.status == 422
    assert refused.field == path


def test_media_inside_the_document_is_refused(refs: Normalisers) -> None:
    document = (
        "<report><fileDetails><fileName>a.jpg</fileName>"
        "<additionalInfo>data:image/jpeg;base64,/9j/4AAQ</additionalInfo></fileDetails></report>"
    )
    refused = refusal(refs, document.encode())
    assert (refused.code, refused.field) == (
        "media_not_accepted",
        "/report/fileDetails/additionalInfo",
    )
