"""The console's languages: every message in every language, every code named, the choice of
language, numerals and Baghdad time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.directory import load_directory
from contracts.events import (
    ActorKind,
    AgeBasis,
    AgencyType,
    Classification,
    ErasureReason,
    EventType,
    OverrideReason,
    Priority,
    SlaDeadline,
    TaskStatus,
)
from contracts.reports import Channel, Governorate, Language, PartnerReport, ViolenceType
from contracts.tasks import InboxSort
from ocsea.runtime.auth import Role
from services.audit.domain.entry import DEAD_LETTERED, DISPATCHED, UNREADABLE_RECORD
from services.console.domain.i18n import (
    Lang,
    MissingTranslationError,
    accepted_languages,
    catalogs,
    choose_language,
    missing_keys,
)
from services.console.domain.tasks import CODE_FIELD, OFFERED
from services.triage.domain.rules import FACTOR_NAMES

CONSOLE = Path(__file__).resolve().parents[2] / "services" / "console"
REGIONS = ("tasks", "escalations")


def test_every_catalog_has_every_message() -> None:
    assert missing_keys(catalogs().values()) == {lang: set() for lang in Lang}


def test_every_message_the_templates_and_scripts_use_exists() -> None:
    used: set[str] = set()
    for template in (CONSOLE / "templates").glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", template.read_text()))
    for script in (CONSOLE / "static").glob("*.js"):
        used |= set(re.findall(r"""["']((?:js|countdown)\.[a-z_.]+)["']""", script.read_text()))
    for module in CONSOLE.rglob("*.py"):
        code = module.read_text()
        used |= set(re.findall(r'"((?:error|signin|done|confirm)\.[a-z_]+)"', code))
    assert used, "no message found: the pattern no longer matches the templates"
    # Keys built at render time ("action." ~ command) are checked below, whole.
    used = {key for key in used if not key.endswith((".", "_", ".html"))}
    used |= {
        f"{prefix}.{command.value}"
        for command in OFFERED
        for prefix in ("action", "confirm", "done")
    }
    used |= {f"action_code.{command.value}" for command in CODE_FIELD}
    used |= {f"tasks.caption.{r}" for r in REGIONS} | {f"supervise.heading.{r}" for r in REGIONS}
    used |= {f"case.personal_{status}" for status in ("none", "erased", "unreadable")}
    english = catalogs()[Lang.EN].messages
    assert sorted(used - english.keys()) == []


def _codes() -> dict[str, set[str]]:
    directory = load_directory()
    fields: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            fields.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(PartnerReport.model_json_schema())
    return {
        "priority": {p.value for p in Priority},
        "classification": {c.value for c in Classification},
        "status": {s.value for s in TaskStatus},
        "deadline": {d.value for d in SlaDeadline},
        "sort": {s.value for s in InboxSort},
        "role": {r.value for r in Role},
        "agency_type": {a.value for a in AgencyType},
        "override_reason": {r.value for r in OverrideReason},
        "erasure_reason": {r.value for r in ErasureReason},
        "age_basis": {a.value for a in AgeBasis},
        "channel": {c.value for c in Channel},
        "language": {lang.value for lang in Language},
        "governorate": {g.value for g in Governorate},
        "violence": {v.value for v in ViolenceType},
        "factor": set(FACTOR_NAMES),
        "actor_kind": {k.value for k in ActorKind},
        "event": {e.value for e in EventType} | {DEAD_LETTERED, DISPATCHED, UNREADABLE_RECORD},
        "code.reason": set(directory.decline_reasons) | set(directory.escalation_reasons),
        "code.outcome": set(directory.outcome_codes),
        "field": fields | {"survivor_ref"},
    }


@pytest.mark.parametrize("lang", list(Lang))
def test_every_code_the_pages_show_has_a_name_in_every_language(lang: Lang) -> None:
    messages = catalogs()[lang].messages
    missing = {
        f"{group}.{code}"
        for group, codes in _codes().items()
        for code in codes
        if f"{group}.{code}" not in messages
    }
    assert sorted(missing) == []


def test_drafted_translations_are_marked_for_native_review() -> None:
    assert catalogs()[Lang.EN].needs_review == frozenset()
    for lang in (Lang.CKB, Lang.AR):
        catalog = catalogs()[lang]
        source = (CONSOLE / "translations" / f"{lang.value}.toml").read_text()
        assert "NEEDS NATIVE REVIEW" in source
        # Nothing is confirmed yet: every message is listed as a draft.
        assert catalog.needs_review == frozenset(catalog.messages)
        assert catalog.direction == "rtl"


def test_luxembourg_guidelines_terms() -> None:
    english = " ".join(catalogs()[Lang.EN].messages.values()).lower()
    assert "child pornography" not in english
    assert catalogs()[Lang.EN].messages["violence.csam"] == "Child sexual abuse material"
    assert "الإباحية" not in " ".join(catalogs()[Lang.AR].messages.values())


@pytest.mark.parametrize(
    ("query", "remembered", "accept", "expected"),
    [
        ("ckb", "ar", "en", Lang.CKB),  # the query parameter first
        (None, "ar", "ckb", Lang.AR),  # then the remembered choice
        ("xx", "ar", None, Lang.AR),  # an unknown query is ignored
        (None, None, "fr-FR,ar-IQ;q=0.8,en;q=0.5", Lang.AR),  # then Accept-Language by quality
        (None, None, "en;q=0.2, ckb-IQ", Lang.CKB),
        (None, None, "fr", Lang.EN),  # else English
        (None, None, None, Lang.EN),
        (None, None, "ar;q=0, en", Lang.EN),
    ],
)
def test_choosing_the_language(
    query: str | None, remembered: str | None, accept: str | None, expected: Lang
) -> None:
    assert choose_language(query, remembered, accept) is expected


def test_accept_language_with_a_bad_quality_is_not_taken() -> None:
    assert accepted_languages("ar;q=high, en") == [Lang.EN]


def test_times_are_in_baghdad_with_the_languages_own_digits() -> None:
    moment = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
    assert catalogs()[Lang.EN].time(moment) == "2026-11-20 21:30"
    assert catalogs()[Lang.AR].time(moment) == "٢٠٢٦-١١-٢٠ ٢١:٣٠"
    assert catalogs()[Lang.CKB].time("2026-11-20T18:30:00Z") == "٢٠٢٦-١١-٢٠ ٢١:٣٠"
    assert catalogs()[Lang.AR].text("countdown.left", time="00:14:59") == "متبقٍّ ٠٠:١٤:٥٩"


def test_a_missing_message_is_an_error_and_an_unknown_code_shows_as_itself() -> None:
    with pytest.raises(MissingTranslationError):
        catalogs()[Lang.EN].text("no.such.message")
    assert catalogs()[Lang.AR].label("code.outcome", "deployment_specific") == "deployment_specific"
