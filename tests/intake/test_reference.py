"""Reference data is configuration: a wrong file stops start-up with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.intake.domain.reference import Gazetteer, ReferenceDataError, Vocabulary


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_samples_load() -> None:
    assert Gazetteer.load().district_ids
    assert Vocabulary.load().platform("Insta") == "instagram"


def test_an_alias_naming_two_places_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[governorates.erbil]\naliases = ["Hewler"]\n'
        '[governorates.duhok]\naliases = ["Hewlêr"]\n[districts]\n',
    )
    with pytest.raises(
        ReferenceDataError, match=r"data\.toml: alias 'Hewlêr' of duhok also names erbil"
    ):
        Gazetteer.load(path)


def test_an_unknown_governorate_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[governorates.atlantis]\naliases = ["A"]\n[districts]\n')
    with pytest.raises(ReferenceDataError, match="atlantis"):
        Gazetteer.load(path)


def test_a_district_id_must_name_its_governorate(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[governorates.erbil]\naliases = ["Erbil"]\n[districts.soran]\naliases = ["Soran"]\n',
    )
    with pytest.raises(ReferenceDataError, match=r"'<governorate>\.<name>'"):
        Gazetteer.load(path)


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match=r"nowhere\.toml: file not found"):
        Gazetteer.load(tmp_path / "nowhere.toml")
    with pytest.raises(ReferenceDataError, match="not valid TOML"):
        Vocabulary.load(write(tmp_path, "[platforms\n"))


def test_a_domain_naming_two_platforms_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[platforms.a]\naliases = ["A"]\ndomains = ["x.com"]\n'
        '[platforms.b]\naliases = ["B"]\ndomains = ["x.com"]\n'
        "[languages]\n[relationships]\n",
    )
    with pytest.raises(ReferenceDataError, match=r"x\.com"):
        Vocabulary.load(path)


def test_vocabulary_lookups() -> None:
    vocabulary = Vocabulary.load()
    assert vocabulary.language("Badini") is not None
    assert vocabulary.language("Klingon") is None
    assert vocabulary.relationship("Step-father") == "household"
    assert vocabulary.relationship("مامۆستا") == "teacher"
    assert vocabulary.relationship("bus driver") == "other"
    assert vocabulary.platform("Some New App") == "somenewapp"
    assert vocabulary.account_from_url("https://www.instagram.com/Some.User/?igshid=1") == (
        "instagram",
        "some.user",
    )
    assert vocabulary.account_from_url("https://www.tiktok.com/@Dancer") == ("tiktok", "dancer")
    assert vocabulary.account_from_url("https://instagram.com/p/Cx1/") is None
    assert vocabulary.account_from_url("https://example.org/someone") is None
