"""The routing policy, case by case, against the shipped sample directory (and small variants)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from contracts.directory import (
    SAMPLE_DIRECTORY,
    Directory,
    DirectoryError,
    load_directory,
)
from contracts.events import AgencyType, Classification, Priority, ReportTriagedData
from contracts.reports import Governorate, Language, ViolenceType
from services.routing.domain.policy import CaseFacts, Requirement, place, required_roles

SAMPLE = load_directory()
RULES = SAMPLE.policy


def facts(**overrides: Any) -> CaseFacts:
    values: dict[str, Any] = {
        "classification": Classification.TF_CSEA,
        "priority": Priority.P1,
        "governorate": Governorate.ERBIL,
        "language": Language.CKB,
    }
    values.update(overrides)
    for key in ("violence_types", "factors"):
        if key in values:
            values[key] = frozenset(values[key])
    return CaseFacts(**values)


def roles(case: CaseFacts) -> list[AgencyType]:
    return [r.role for r in required_roles(case, RULES).needed]


def placed(
    case: CaseFacts,
    role: AgencyType,
    load: Mapping[str, int] | None = None,
    exclude: tuple[str, ...] = (),
    directory: Directory = SAMPLE,
) -> tuple[str, str, tuple[str, ...]]:
    placement = place(Requirement(role, "test"), case, directory, load or {}, exclude)
    return placement.agency.id, placement.unit.id, placement.criteria


# ------------------------------------------------------------------ which actors


def test_tf_csea_without_offence_goes_to_child_protection_only() -> None:
    requirements = required_roles(facts(violence_types=[ViolenceType.CYBERBULLYING]), RULES)
    assert [r.role for r in requirements.needed] == [AgencyType.CHILD_PROTECTION]
    assert any("police" in note for note in requirements.not_needed)


@pytest.mark.parametrize(
    "offence",
    [
        ViolenceType.CSAM,
        ViolenceType.GROOMING,
        ViolenceType.SEXTORTION,
        ViolenceType.LIVE_STREAMED_ABUSE,
    ],
)
def test_tf_csea_offences_bring_in_police(offence: ViolenceType) -> None:
    requirements = required_roles(facts(violence_types=[offence]), RULES)
    assert [r.role for r in requirements.needed] == [
        AgencyType.CHILD_PROTECTION,
        AgencyType.POLICE,
    ]
    assert offence.value in requirements.needed[1].why


def test_an_offence_named_by_a_triage_factor_brings_in_police() -> None:
    assert AgencyType.POLICE in roles(facts(factors=["trafficking"]))


def test_child_on_child_leaves_police_to_child_protection_unless_life_is_threatened() -> None:
    case = facts(violence_types=[ViolenceType.CSAM], child_on_child=True)
    requirements = required_roles(case, RULES)
    assert [r.role for r in requirements.needed] == [AgencyType.CHILD_PROTECTION]
    assert any("both parties are children" in note for note in requirements.not_needed)
    threatened = facts(
        violence_types=[ViolenceType.CSAM], child_on_child=True, factors=["imminent_danger"]
    )
    assert AgencyType.POLICE in roles(threatened)


def test_tfgbv_without_consent_never_goes_to_police() -> None:
    for consent in (None, False):
        case = facts(
            classification=Classification.TFGBV,
            violence_types=[ViolenceType.SEXTORTION],
            police_referral_consent=consent,
        )
        requirements = required_roles(case, RULES)
        assert [r.role for r in requirements.needed] == [AgencyType.GBV_CASE_MANAGEMENT]
        assert any("consent" in note for note in requirements.not_needed)


def test_tfgbv_with_consent_goes_to_police_too() -> None:
    case = facts(classification=Classification.TFGBV, police_referral_consent=True)
    requirements = required_roles(case, RULES)
    assert [r.role for r in requirements.needed] == [
        AgencyType.GBV_CASE_MANAGEMENT,
        AgencyType.POLICE,
    ]
    assert "consented" in requirements.needed[1].why


def test_tfgbv_threat_to_life_goes_to_police_without_consent() -> None:
    case = facts(
        classification=Classification.TFGBV,
        police_referral_consent=False,
        factors=["imminent_danger"],
    )
    requirements = required_roles(case, RULES)
    assert AgencyType.POLICE in [r.role for r in requirements.needed]
    assert "threat to life" in requirements.needed[-1].why


@pytest.mark.parametrize("classification", list(Classification))
def test_legal_aid_where_sought(classification: Classification) -> None:
    assert AgencyType.LEGAL not in roles(facts(classification=classification))
    assert AgencyType.LEGAL in roles(facts(classification=classification, legal_aid_sought=True))
    assert AgencyType.LEGAL in roles(
        facts(classification=classification, factors=["legal_aid_sought"])
    )


# ------------------------------------------------------------------ which unit


def test_area_matching_picks_the_unit_covering_the_governorate() -> None:
    assert placed(facts(governorate=Governorate.SULAYMANIYAH), AgencyType.CHILD_PROTECTION)[:2] == (
        "sulaymaniyah-cpu",
        "sulaymaniyah-cpu-city",
    )
    assert placed(facts(governorate=Governorate.RAPARIN), AgencyType.CHILD_PROTECTION)[:2] == (
        "sulaymaniyah-cpu",
        "garmiyan-raparin-cpu",
    )
    agency, unit, criteria = placed(
        facts(governorate=Governorate.ZAKHO, language=Language.KMR), AgencyType.POLICE
    )
    assert (agency, unit) == ("krg-cybercrime", "cybercrime-duhok")
    assert "police unit covering zakho" in criteria
    assert "speaks kmr" in criteria


def test_language_matching_beats_load() -> None:
    # Only team 1 speaks English: it gets the case although it is busier.
    _, unit, criteria = placed(
        facts(language=Language.EN),
        AgencyType.CHILD_PROTECTION,
        load={"erbil-cpu-team-1": 10, "erbil-cpu-team-2": 0},
    )
    assert unit == "erbil-cpu-team-1"
    assert "speaks en" in criteria


def test_no_unit_speaking_the_language_still_gets_a_covering_unit_and_says_so() -> None:
    _, unit, criteria = placed(
        facts(governorate=Governorate.DUHOK, language=Language.CKB), AgencyType.CHILD_PROTECTION
    )
    assert unit == "duhok-cpu-team"
    assert "no covering unit speaks ckb" in criteria


def test_load_balancing_prefers_the_least_loaded_unit() -> None:
    busy_first = {"erbil-cpu-team-1": 5, "erbil-cpu-team-2": 2}
    assert placed(facts(), AgencyType.CHILD_PROTECTION, busy_first)[1] == "erbil-cpu-team-2"
    busy_second = {"erbil-cpu-team-1": 1, "erbil-cpu-team-2": 2}
    _, unit, criteria = placed(facts(), AgencyType.CHILD_PROTECTION, busy_second)
    assert unit == "erbil-cpu-team-1"
    assert "load 1/15, least loaded of 2 eligible units" in criteria


def test_load_is_relative_to_capacity_and_full_units_are_passed_over() -> None:
    # Sulaymaniyah police for a TFGBV case: cybercrime (capacity 20) or DCVAW (capacity 20).
    case = facts(classification=Classification.TFGBV, governorate=Governorate.SULAYMANIYAH)
    full = {"cybercrime-sulaymaniyah": 20, "dcvaw-sulaymaniyah-duhok": 19}
    assert placed(case, AgencyType.POLICE, full)[1] == "dcvaw-sulaymaniyah-duhok"
    both_full = {"cybercrime-sulaymaniyah": 25, "dcvaw-sulaymaniyah-duhok": 21}
    _, unit, criteria = placed(case, AgencyType.POLICE, both_full)
    assert unit == "dcvaw-sulaymaniyah-duhok"  # 21/20 < 25/20
    assert any("all eligible units at capacity" in c for c in criteria)


def test_units_handle_only_their_classifications() -> None:
    # DCVAW takes adult survivors only: a child's case goes to cybercrime whatever the load.
    load = {"cybercrime-erbil": 19, "dcvaw-erbil": 0}
    assert placed(facts(), AgencyType.POLICE, load)[0] == "krg-cybercrime"
    adult = facts(classification=Classification.TFGBV)
    assert placed(adult, AgencyType.POLICE, load)[0] == "krg-dcvaw"


def test_units_that_gave_the_task_back_are_skipped() -> None:
    _, unit, criteria = placed(facts(), AgencyType.CHILD_PROTECTION, exclude=("erbil-cpu-team-2",))
    assert unit == "erbil-cpu-team-1"
    assert any("erbil-cpu-team-2" in c for c in criteria)


def test_no_matching_unit_goes_to_the_coordinator() -> None:
    all_erbil = ("erbil-cpu-team-1", "erbil-cpu-team-2")
    agency, _, criteria = placed(facts(), AgencyType.CHILD_PROTECTION, exclude=all_erbil)
    assert agency == "kri-coordination"
    assert criteria[-1] == "routed to the coordinator, who assigns a child_protection unit"
    agency, _, criteria = placed(facts(governorate=None), AgencyType.CHILD_PROTECTION)
    assert agency == "kri-coordination"
    assert "area unknown" in criteria


def test_no_unit_of_the_type_in_the_area_goes_to_the_coordinator() -> None:
    document = tomllib.loads(SAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    for agency in document["agencies"]:
        if agency["type"] == "gbv_case_management":
            agency["units"] = [u for u in agency["units"] if "duhok" not in u["governorates"]]
    directory = Directory.model_validate(document)
    case = facts(classification=Classification.TFGBV, governorate=Governorate.DUHOK)
    coordinator, unit, criteria = placed(case, AgencyType.GBV_CASE_MANAGEMENT, directory=directory)
    assert (coordinator, unit) == ("kri-coordination", "coordination-desk")
    assert "no gbv_case_management unit handling TFGBV covers duhok" in criteria


def test_every_placement_says_why() -> None:
    placement = place(
        Requirement(AgencyType.POLICE, "TF-CSEA offence(s): sextortion"), facts(), SAMPLE, {}
    )
    assert placement.reason.startswith("needed: TF-CSEA offence(s): sextortion; ")
    assert len(placement.criteria) >= 3


# ------------------------------------------------------------------ the directory itself


def sample_document() -> dict[str, Any]:
    return tomllib.loads(SAMPLE_DIRECTORY.read_text(encoding="utf-8"))


def toml(document: Mapping[str, Any], prefix: str = "") -> list[str]:
    """A small TOML writer for the directory's shapes (tables, arrays of tables, values)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in document.items() if not _is_table(v)]
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += [f"[{name}]", *toml(value, name + ".")]
        elif _is_table(value):
            for item in value:
                lines += [f"[[{name}]]", *toml(item, name + ".")]
    return lines


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and isinstance(value[0], dict)
    )


def write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "directory.toml"
    path.write_text("\n".join(toml(document)) + "\n", encoding="utf-8")
    return path


def test_sample_directory_round_trips_through_the_test_writer(tmp_path: Path) -> None:
    assert load_directory(write(tmp_path, sample_document())) == SAMPLE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["agencies"][1]["units"].append(d["agencies"][0]["units"][0]),
            "unit ids must be unique",
        ),
        (lambda d: d.update(coordinator="erbil-cpu"), "must have type coordination"),
        (lambda d: d.update(coordinator="nobody"), "is not an agency"),
        (lambda d: d["response_times"].pop("P2"), "lacks priorities: P2"),
        (lambda d: d["agencies"][0].update(supervisors=[]), "lists no supervisors"),
        (
            lambda d: d["agencies"][0].update(delivery={"webhook_url": "https://x.example/hook"}),
            "needs webhook_secret_env",
        ),
        (lambda d: d["agencies"][0]["units"][0].update(capacity=0), "capacity"),
        (lambda d: d["agencies"][0]["units"][0].update(governorates=["atlantis"]), "governorates"),
        (lambda d: d["sla"].update(warning_fraction=1.5), "warning_fraction"),
    ],
)
def test_an_inconsistent_directory_is_refused_with_a_clear_error(
    tmp_path: Path, change: Any, message: str
) -> None:
    document = sample_document()
    change(document)
    with pytest.raises(DirectoryError) as refused:
        load_directory(write(tmp_path, document))
    assert message in str(refused.value)


def test_a_webhook_key_missing_from_the_environment_stops_start_up(tmp_path: Path) -> None:
    document = sample_document()
    document["agencies"][0]["delivery"] = {
        "webhook_url": "https://cases.example/hook",
        "webhook_secret_env": "OCSEA_TEST_WEBHOOK_KEY",
    }
    path = write(tmp_path, document)
    with pytest.raises(DirectoryError, match="erbil-cpu: OCSEA_TEST_WEBHOOK_KEY"):
        load_directory(path, environ={})
    directory = load_directory(path, environ={"OCSEA_TEST_WEBHOOK_KEY": "k"})
    assert directory.webhook_secret(directory.agencies[0], {"OCSEA_TEST_WEBHOOK_KEY": "k"}) == b"k"


def test_a_district_bound_unit_takes_only_cases_known_to_be_in_its_districts(
    tmp_path: Path,
) -> None:
    document = sample_document()
    [erbil_cpu] = [a for a in document["agencies"] if a["id"] == "erbil-cpu"]
    for unit in erbil_cpu["units"]:
        unit["districts"] = ["erbil.koya"] if unit["id"] == "erbil-cpu-team-2" else []
        unit["languages"] = ["ckb"]
    directory = load_directory(write(tmp_path, document))
    # Team 2 is less loaded, so it wins wherever it may take the case.
    load = {"erbil-cpu-team-1": 10, "erbil-cpu-team-2": 0}

    in_koya = placed(facts(district="erbil.koya"), AgencyType.CHILD_PROTECTION, load, (), directory)
    elsewhere = placed(
        facts(district="erbil.centre"), AgencyType.CHILD_PROTECTION, load, (), directory
    )
    unknown = placed(facts(district=None), AgencyType.CHILD_PROTECTION, load, (), directory)

    assert in_koya[:2] == ("erbil-cpu", "erbil-cpu-team-2")
    assert elsewhere[:2] == ("erbil-cpu", "erbil-cpu-team-1")
    assert unknown[:2] == ("erbil-cpu", "erbil-cpu-team-1")


def test_the_district_travels_from_the_triage_result_into_the_case_facts() -> None:
    triaged = ReportTriagedData.model_validate(
        {
            "report_id": "00000000-0000-4000-8000-000000000001",
            "classification": "TF-CSEA",
            "presumed_child": False,
            "age_used": 14,
            "age_basis": "stated_age",
            "priority": "P1",
            "score": 90,
            "governorate": "erbil",
            "district": "erbil.koya",
            "rules_version": "test",
        }
    )
    assert CaseFacts.from_triaged(triaged).district == "erbil.koya"
