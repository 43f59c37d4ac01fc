"""The rule set is validated configuration: bad files are refused with the file and entry named."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from contracts.reports import Language
from services.triage.domain.rules import SAMPLE_RULES, RulesError, load_rules
from services.triage.domain.terms import TermMatcher, tokens


def write_rules(tmp_path: Path, change: str, replace: str) -> Path:
    text = SAMPLE_RULES.read_text(encoding="utf-8")
    assert change in text, change
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(change, replace, 1), encoding="utf-8")
    return path


def test_the_shipped_sample_loads_and_names_itself() -> None:
    rules = load_rules(None)
    assert rules.version == "kri-sample-2026.1"
    assert rules.digest.startswith("sha256:")
    # Every CyberTipline incident type of DOMAIN.md is configured.
    assert len(rules.source.incident_types) == 8


@pytest.mark.parametrize(
    ("change", "replace", "named"),
    [
        ("honour_based_violence_risk = 40", "honour_based_violence_risk = -5", "not be negative"),
        ("multiple_victims = 20\n", "", "no weight for ['multiple_victims']"),
        (
            "repeat_reports = 15",
            "repeat_reports = 15\nbravery = 3",
            "unknown factor(s) ['bravery']",
        ),
        ("P1 = 80, P2 = 30", "P1 = 30, P2 = 80", "P1 > P2 > P3"),
        ('source_escalation_floor = "P1"', 'source_escalation_floor = "P0"', "source_escalation"),
        (
            'household = { risk_flags = ["offender_has_access"] }',
            'household = { risk_flags = ["offender_lives_nearby"] }',
            "relationships.household.risk_flags.0",
        ),
        (
            '[terms.risk.self_harm]\nen = ["suicid*"',
            '[terms.risk.self_harm]\nfr = ["suicid*"',
            "fr",
        ),
        ('version = "kri-sample-2026.1"', 'version = "has spaces"', "version"),
        ('stated_age = "high"\n', "", "age.confidence lacks ['stated_age']"),
        ('kmr = ["namûs*", "şeref*"]', 'kmr = ["namûs*", "*"]', "folds to nothing"),
    ],
)
def test_a_bad_rule_set_is_refused_naming_the_entry(
    tmp_path: Path, change: str, replace: str, named: str
) -> None:
    path = write_rules(tmp_path, change, replace)
    with pytest.raises(RulesError) as refused:
        load_rules(path)
    assert str(path) in str(refused.value)
    assert named in str(refused.value)


def test_a_missing_or_malformed_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="not found"):
        load_rules(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("version = ", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_rules(broken)


def test_the_digest_follows_meaning_not_formatting(tmp_path: Path) -> None:
    commented = write_rules(tmp_path, "[points]", "# a comment\n[points]")
    assert load_rules(commented).digest == load_rules(None).digest
    reweighted = write_rules(tmp_path, "repeat_reports = 15", "repeat_reports = 16")
    assert load_rules(reweighted).digest != load_rules(None).digest


def test_the_service_refuses_to_start_on_bad_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocsea.runtime.settings import Settings
    from services.triage.bootstrap import build

    path = write_rules(tmp_path, "self_harm = 100", "self_harm = -100")
    monkeypatch.setenv("OCSEA_TRIAGE_RULES_FILE", str(path))
    with pytest.raises(RulesError, match="self_harm"):
        build(Settings(var_dir=tmp_path))


def _terms(**by_language: list[str]) -> TermMatcher:
    return TermMatcher.build({Language(k): v for k, v in by_language.items()})


@pytest.mark.parametrize(
    ("terms", "text", "found"),
    [
        ({"ckb": ["هەڕەشە*"]}, "هه‌ره‌شه‌ی لێکرد", True),  # written with Arabic heh and ZWNJ
        ({"ar": ["ابتزاز"]}, "تعرضت للابتزاز", True),  # the joined article is tried without
        ({"ar": ["ابتزاز"]}, "والابتزاز مستمر", True),
        ({"kmr": ["şantaj*"]}, "SANTAJÊ dike", True),  # case and accents folded
        ({"en": ["self harm*"]}, "talks of self-harming", True),
        ({"en": ["kill herself"]}, "skills herself", False),
        ({"ar": ["خلال 24 ساعة"]}, "خلال ٢٤ ساعة", True),  # Arabic-Indic digits
        ({"ckb": ["تا ٢٤ کاتژمێر"]}, "تا ۲٤ کاتژمێر", True),  # mixed digit systems
        ({"en": ["groom*"]}, "the groom's family", True),  # a known over-match: raises only
        ({"en": ["hack*"]}, "whack", False),
    ],
)
def test_terms_match_across_scripts_and_spellings(
    terms: dict[str, list[str]], text: str, found: bool
) -> None:
    assert bool(_terms(**terms).find(tokens(text))) is found


def test_every_shipped_term_list_covers_the_four_languages() -> None:
    raw: dict[str, Any] = tomllib.loads(SAMPLE_RULES.read_text(encoding="utf-8"))
    for group in ("violence", "risk"):
        for label, lists in raw["terms"][group].items():
            assert set(lists) == {"ckb", "kmr", "ar", "en"}, f"{group}.{label}"
