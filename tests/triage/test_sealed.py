"""What triage reads from a report's sealed part, and that it never lets the text out."""

from __future__ import annotations

from contracts.reports import PartnerReport, ViolenceType
from services.intake.domain.facts import personal_fields
from services.triage.domain.case import triage_case
from services.triage.domain.reports import CaseReport, SealedContent, read_sealed
from services.triage.domain.rules import shipped_rules
from services.triage.domain.signals import ScanCache, scan_texts
from tests.test_triage_domain import received, survivor


def test_intake_s_sealed_report_is_read_for_narratives_and_ages() -> None:
    # The sealed part is intake's canonical report: this pins the shape triage relies on.
    report = PartnerReport.model_validate(
        {
            "channel": "hotline",
            "narrative": "Marker Name said he will publish the photos; تعرضت للابتزاز",
            "survivors": [{"name": "Marker Name", "age": 14, "additional_info": "pola 8"}],
            "reported_persons": [{"age": 15, "additional_info": "classmate, hack*ed her account"}],
            "files": [{"additional_info": "went viral at school"}],
            "source": {"additional_info": "ongoing", "escalate_to_high_priority": True},
        }
    )
    sealed = read_sealed(personal_fields(report))
    assert sealed.opened
    assert sealed.reported_person_ages == (15,)
    assert len(sealed.texts) == 5
    result = triage_case([CaseReport(received(survivor(stated_age=14)), sealed)], shipped_rules())
    assert ViolenceType.SEXTORTION in result.violence_types
    assert {"content_spreading", "ongoing_abuse"} <= {f.name for f in result.factors}
    assert result.child_on_child  # the reported person is 15
    assert result.sealed_data_read
    # Only which term lists matched reaches the result: never the words themselves.
    assert "Marker" not in result.model_dump_json()
    assert "ابتزاز" not in result.model_dump_json()


def test_an_unexpected_shape_reads_as_nothing_rather_than_failing() -> None:
    sealed = read_sealed({"narrative": 42, "survivors": "?", "reported_persons": [{"age": "x"}]})
    assert sealed.opened
    assert sealed.texts == ()
    assert sealed.reported_person_ages == ()


def test_a_case_re_triaged_with_a_scan_cache_scans_each_narrative_once() -> None:
    first = CaseReport(
        received(), SealedContent(opened=True, texts=("he threatened to publish the photos",))
    )
    second = CaseReport(received(minutes=5))
    scans, rules = ScanCache(), shipped_rules()

    once = triage_case([first], rules, scans=scans)
    assert len(scans) == 1
    scan = scans.scan(first.sealed.texts, rules)
    again = triage_case([first, second], rules, scans=scans)

    assert len(scans) == 1  # the first narrative was not scanned again
    assert scans.scan(first.sealed.texts, rules) is scan
    assert scan == scan_texts(first.sealed.texts, rules)
    assert ViolenceType.SEXTORTION in once.violence_types
    assert ViolenceType.SEXTORTION in again.violence_types
    # Without a cache the result is the same: the cache saves work, it decides nothing.
    assert triage_case([first, second], rules) == again


def test_a_full_scan_cache_starts_afresh() -> None:
    scans, rules = ScanCache(max_entries=2), shipped_rules()
    for text in ("one", "two", "three"):
        scans.scan((text,), rules)
    assert len(scans) == 1
