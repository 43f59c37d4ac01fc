"""Languages of the console: catalogs, the choice of language, numerals and Baghdad time. Pure.

Catalogs are TOML files in `services/console/translations/`, one per language, with the same
keys. English is the source. A `[meta]` table names the language and its direction, and
`reviewed` lists the keys a native speaker has confirmed; every other key of a non-English
catalog is a draft that needs review (`Catalog.needs_review`). Domain words follow the
Luxembourg Terminology Guidelines ("child sexual abuse material", never "child pornography";
"survivor").
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

# The catalogs stay beside the templates, at the console package's top level.
TRANSLATIONS = Path(__file__).parents[1] / "translations"
BAGHDAD = ZoneInfo("Asia/Baghdad")


class Lang(StrEnum):
    EN = "en"
    CKB = "ckb"
    AR = "ar"


DEFAULT_LANG = Lang.EN

# CLDR's default numbering system: Sorani and Arabic write Arabic-Indic digits.
_DIGITS = {
    Lang.EN: "0123456789",
    Lang.CKB: "٠١٢٣٤٥٦٧٨٩",
    Lang.AR: "٠١٢٣٤٥٦٧٨٩",
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class MissingTranslationError(KeyError):
    pass


@dataclass(frozen=True)
class Catalog:
    lang: Lang
    name: str
    """The language's own name for itself."""
    direction: str
    messages: Mapping[str, str]
    reviewed: frozenset[str] = field(default_factory=frozenset)

    @property
    def needs_review(self) -> frozenset[str]:
        if self.lang is DEFAULT_LANG:
            return frozenset()
        return frozenset(self.messages) - self.reviewed

    @property
    def digits(self) -> str:
        return _DIGITS[self.lang]

    def text(self, key: str, **params: object) -> str:
        """The message for `key`, its `{name}` placeholders filled (numbers in our digits)."""
        try:
            message = self.messages[key]
        except KeyError as exc:
            raise MissingTranslationError(f"{self.lang.value}: no message {key!r}") from exc
        return _PLACEHOLDER.sub(lambda m: self.localise(params[m.group(1)]), message)

    def label(self, group: str, code: str | None) -> str:
        """A code's name (a priority, a status, an outcome…): the code itself when the
        catalog has none, e.g. a code a deployment's own directory added."""
        if code is None:
            return self.text("common.none")
        return self.messages.get(f"{group}.{code}", code)

    def localise(self, value: object) -> str:
        text = str(value)
        if self.lang is DEFAULT_LANG:
            return text
        return text.translate(str.maketrans(string.digits, self.digits))

    def time(self, moment: datetime | str | None) -> str:
        """Date and time in Baghdad, e.g. 2026-11-20 21:30, in the language's digits."""
        if moment is None:
            return self.text("common.none")
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        return self.localise(moment.astimezone(BAGHDAD).strftime("%Y-%m-%d %H:%M"))


def _parse(path: Path) -> Catalog:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    meta = raw.pop("meta")
    messages: dict[str, str] = {}

    def flatten(prefix: str, table: Mapping[str, object]) -> None:
        for key, value in table.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                flatten(f"{name}.", value)
            else:
                messages[name] = str(value)

    flatten("", raw)
    return Catalog(
        lang=Lang(meta["lang"]),
        name=str(meta["name"]),
        direction=str(meta["direction"]),
        messages=messages,
        reviewed=frozenset(meta.get("reviewed", ())),
    )


@cache
def catalogs() -> Mapping[Lang, Catalog]:
    return {lang: _parse(TRANSLATIONS / f"{lang.value}.toml") for lang in Lang}


def parse_lang(value: str | None) -> Lang | None:
    """A supported language from a tag such as `ar`, `ar-IQ` or `ckb`; None otherwise."""
    if not value:
        return None
    primary = value.strip().lower().replace("_", "-").split("-")[0]
    try:
        return Lang(primary)
    except ValueError:
        return None


def accepted_languages(header: str | None) -> list[Lang]:
    """Supported languages of an Accept-Language header, most preferred first."""
    ranked: list[tuple[float, int, Lang]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        lang = parse_lang(tag)
        if lang is not None and quality > 0:
            ranked.append((-quality, position, lang))
    return [lang for _, _, lang in sorted(ranked)]


def choose_language(query: str | None, remembered: str | None, accept_language: str | None) -> Lang:
    """The `lang` query parameter, else the user's remembered choice, else the browser's
    preference, else English."""
    for candidate in (parse_lang(query), parse_lang(remembered)):
        if candidate is not None:
            return candidate
    return next(iter(accepted_languages(accept_language)), DEFAULT_LANG)


def missing_keys(all_catalogs: Iterable[Catalog]) -> dict[Lang, set[str]]:
    """For each catalog, the keys another catalog has and it lacks."""
    found = list(all_catalogs)
    every = set().union(*(c.messages for c in found))
    return {c.lang: every - set(c.messages) for c in found}
