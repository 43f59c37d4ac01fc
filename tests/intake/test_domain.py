"""What travels in the clear (ages, area, categories, flags, source facts) and what is sealed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.events import SourceFormat
from contracts.reports import Governorate
from services.intake.domain.canonical import Normalisers, canonical_report
from services.intake.domain.facts import Linking, Normalised, normalise
from tests.intake.conftest import BAGHDAD

RECEIVED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def run(refs: Normalisers, raw: dict[str, Any], linking: Linking | None = None) -> Normalised:
    return normalise(
        canonical_report(raw, refs),
        partner_id="hotline-a",
        report_id=uuid.uuid4(),
        received_at=RECEIVED,
        source_format=SourceFormat.PARTNER_JSON,
        zone=BAGHDAD,
        gazetteer=refs.gazetteer,
        vocabulary=refs.vocabulary,
        linking=linking or Linking(),
    )


def age_at(refs: Normalisers, occurred_at: str, born: str) -> int | None:
    clear = run(
        refs,
        {
            "channel": "hotline",
            "incident": {"occurred_at": occurred_at},
            "survivors": [{"date_of_birth": born}],
        },
    ).clear
    assert clear.survivors[0].age_at_report is None
    return clear.survivors[0].age_at_incident


def test_age_at_the_incident_counts_the_local_day(refs: Normalisers) -> None:
    # 01:30 on 12 May in Erbil (no offset given: Asia/Baghdad): the 15th birthday has come.
    assert age_at(refs, "2026-05-12 01:30", "2011-05-12") == 15
    assert age_at(refs, "2026-05-11 23:30", "2011-05-12") == 14


def test_a_birthday_in_one_zone_only_gives_the_younger_age(refs: Normalisers) -> None:
    # 22:30 UTC on 11 May is 12 May in Erbil: 14 by the source's day, 15 by the survivor's.
    assert age_at(refs, "2026-05-11T22:30:00Z", "2011-05-12") == 14
    assert age_at(refs, "2026-05-12T22:30:00Z", "2011-05-12") == 15


def test_without_an_incident_date_the_age_at_report_is_an_upper_bound(refs: Normalisers) -> None:
    clear = run(refs, {"channel": "hotline", "survivors": [{"date_of_birth": "2008-12-01"}]}).clear
    assert clear.survivors[0].age_at_incident is None
    assert clear.survivors[0].age_at_report == 17


def test_a_birth_after_the_incident_gives_no_age(refs: Normalisers) -> None:
    clear = run(
        refs,
        {
            "channel": "hotline",
            "incident": {"occurred_at": "2020-01-01T12:00:00+03:00"},
            "survivors": [{"date_of_birth": "2021-01-01", "age": 9}],
        },
    ).clear
    assert clear.survivors[0].age_at_incident is None
    assert clear.survivors[0].stated_age == 9


def test_files_depict_a_minor_by_grade_annotation_or_statement(refs: Normalisers) -> None:
    def depicts(file: dict[str, Any]) -> bool:
        return run(refs, {"channel": "tipline", "files": [file]}).clear.content_depicts_minor

    assert depicts({"industry_classification": "A2"})
    assert depicts({"annotations": ["Infant"]})
    assert depicts({"depicts_minor": True})
    assert not depicts({"annotations": ["viral"]})


def test_source_facts_travel_verbatim(refs: Normalisers) -> None:
    clear = run(
        refs,
        {
            "channel": "tipline",
            "files": [{"annotations": ["viral", "liveStreaming"]}, {"annotations": ["viral"]}],
            "reported_persons": [
                {"relationship": "Step-father"},
                {"relationship": "teacher"},
                {"relationship": "stepfather"},
                {"relationship": "the man from the shop"},
            ],
            "source": {
                "incident_types": ["Child Sex Trafficking"],
                "annotations": ["minorToMinorInteraction"],
                "escalate_to_high_priority": True,
            },
        },
    ).clear
    assert clear.source_incident_types == ("Child Sex Trafficking",)
    assert clear.source_annotations == ("minorToMinorInteraction",)
    assert clear.source_escalation is True
    assert clear.source_file_annotations == ("viral", "liveStreaming")
    assert clear.file_count == 2
    assert clear.reported_person_count == 4
    assert clear.reported_person_relationships == ("household", "teacher", "other")


def test_the_area_is_the_incidents_else_the_survivors(refs: Normalisers) -> None:
    own = run(refs, {"channel": "ngo", "incident": {"governorate": "Halabja"}}).clear
    assert own.incident.governorate is Governorate.HALABJA
    lives = run(refs, {"channel": "ngo", "survivors": [{"location": {"district": "Ranya"}}]})
    assert lives.clear.incident.governorate is Governorate.RAPARIN
    assert lives.clear.incident.district == "raparin.ranya"
    unknown = run(refs, {"channel": "ngo", "incident": {"district": "Street of the Marker"}})
    assert unknown.clear.incident.district is None  # free text stays sealed
    assert unknown.personal["incident"]["district"] == "Street of the Marker"


def test_linking_travels_in_the_clear(refs: Normalisers) -> None:
    earlier = (uuid.uuid4(), uuid.uuid4())
    clear = run(refs, {"channel": "ngo"}, Linking(earlier, ("same_survivor",))).clear
    assert clear.linked_report_ids == earlier
    assert clear.link_reasons == ("same_survivor",)


def test_personal_values_are_sealed_and_never_in_the_clear(refs: Normalisers) -> None:
    markers = [f"mk{i:02d}x" for i in range(18)]  # lower case: e-mails are folded
    raw = {
        "channel": "hotline",
        "source_reference": "HL-1",
        "incident": {
            "occurred_at": "2026-11-20T21:30:00+03:00",
            "governorate": "erbil",
            "location_description": markers[0],
            "time_description": markers[1],
        },
        "survivors": [
            {
                "name": markers[2],
                "age": 15,
                "date_of_birth": "2011-05-12",
                "gender": markers[3],
                "contact": {"phone": "0750 999 0001", "email": f"{markers[4]}@example.org"},
                "school_name": markers[5],
                "location": {"city": markers[6]},
                "online_identifiers": [{"platform": "x", "handle": markers[7]}],
            }
        ],
        "reported_persons": [
            {
                "name": markers[8],
                "relationship": markers[9],
                "online_identifiers": [{"platform": "instagram", "url": f"https://i.com/{markers[10]}"}],
                "ip_captures": [{"ip": markers[11]}],
            }
        ],
        "narrative": markers[12],
        "files": [
            {"hashes": [{"type": "photodna", "value": markers[13]}], "file_name": markers[14]}
        ],
        "content_urls": [f"https://example.org/{markers[15]}"],
        "source": {
            "escalation_reason": markers[16], "raw": [{"path": "/x", "content": markers[17]}]
        },
    }  # fmt: skip
    result = run(refs, raw)
    clear = result.clear.model_dump_json()
    sealed = json.dumps(result.personal, ensure_ascii=False)
    assert [m for m in markers if m in clear] == []
    assert [m for m in markers if m not in sealed] == []
    assert "+9647509990001" in sealed
    assert "+9647509990001" not in clear
    assert result.personal["survivors"][0]["survivor_ref"] == result.clear.survivors[0].survivor_ref
