"""Reference data intake matches names against: places, platforms, languages, relationships.

Both files are configuration a deployment edits (`places.toml`, `vocabulary.toml` beside this
module are clearly marked samples). They are validated when the service starts: an unknown
governorate, a malformed district id, or one alias leading to two places stops start-up with a
message naming the file and the entry.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.reports import Governorate, Language
from services.intake.domain.normalise import canonical_handle, clean, fold, fold_words

HERE = Path(__file__).parent
SAMPLE_PLACES = HERE / "places.toml"
SAMPLE_VOCABULARY = HERE / "vocabulary.toml"

# Generic words around place names: "Erbil Governorate", "محافظة أربيل", "پارێزگای هەولێر".
PLACE_NOISE = frozenset(
    fold(w)
    for w in (
        "governorate", "province", "muhafazat", "administration", "district", "qada", "city",
        "al", "as", "el", "region", "kurdistan",
        "محافظة", "محافظه", "ادارة", "إدارة", "قضاء", "مدينة", "اقليم", "إقليم", "كوردستان",
        "كردستان", "پارێزگای", "پارێزگا", "ئیدارەی", "قەزای", "شاری", "هەرێمی", "کوردستان",
    )
)  # fmt: skip
CENTRE_DISTRICT = "centre"


# Partners send the same few names again and again ("Instagram", "هەولێر"): their folded
# keys are remembered, up to a bound, and only for texts as short as names are, so junk cannot
# make the memory grow.
_FOLD_MEMO_TEXT_LENGTH = 200


@lru_cache(maxsize=8_192)
def _folded_memo(text: str, noise: frozenset[str]) -> str:
    return fold_words(text, noise)


def folded(text: str, noise: frozenset[str] = frozenset()) -> str:
    """`fold_words`, remembered for short texts."""
    if len(text) > _FOLD_MEMO_TEXT_LENGTH:
        return fold_words(text, noise)
    return _folded_memo(text, noise)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aliases: list[str] = Field(min_length=1)


class _PlatformEntry(_Entry):
    domains: list[str] = Field(default_factory=list)


class PlacesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    governorates: dict[Governorate, _Entry]
    districts: dict[str, _Entry]

    @field_validator("districts")
    @classmethod
    def _district_ids(cls, value: dict[str, _Entry]) -> dict[str, _Entry]:
        for district_id in value:
            governorate, _, name = district_id.partition(".")
            if governorate not in Governorate.__members__.values() or not name:
                raise ValueError(
                    f"district id {district_id!r} must be '<governorate>.<name>' with a "
                    f"governorate among {', '.join(g.value for g in Governorate)}"
                )
        return value


class VocabularyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platforms: dict[str, _PlatformEntry]
    languages: dict[Language, _Entry]
    relationships: dict[str, _Entry]


class ReferenceDataError(ValueError):
    """A reference data file is missing or wrong; the message names the file and the entry."""


def _load_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReferenceDataError(f"{path}: file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ReferenceDataError(f"{path}: not valid TOML: {exc}") from exc


def _index(
    path: Path, entries: Iterable[tuple[str, list[str]]], noise: frozenset[str]
) -> dict[str, str]:
    """Folded alias → id; an alias that folds to two ids is an error, not a coin toss."""
    index: dict[str, str] = {}
    for entry_id, aliases in entries:
        for alias in [entry_id, *aliases]:
            key = fold_words(alias, noise)
            if not key:
                raise ReferenceDataError(f"{path}: alias {alias!r} of {entry_id} is empty")
            if index.setdefault(key, entry_id) != entry_id:
                raise ReferenceDataError(
                    f"{path}: alias {alias!r} of {entry_id} also names {index[key]}"
                )
    return index


@dataclass(frozen=True)
class District:
    id: str
    governorate: Governorate


class Gazetteer:
    """KRI governorates and districts by any of their spellings."""

    def __init__(self, places: PlacesFile, path: Path) -> None:
        self._governorates = _index(
            path, ((g.value, e.aliases) for g, e in places.governorates.items()), PLACE_NOISE
        )
        self._districts = _index(
            path, ((d, e.aliases) for d, e in places.districts.items()), PLACE_NOISE
        )
        self.district_ids = frozenset(places.districts)
        self.places = places

    @classmethod
    def load(cls, path: Path | None = None) -> Gazetteer:
        path = path or SAMPLE_PLACES
        try:
            return cls(PlacesFile.model_validate(_load_toml(path)), path)
        except ValidationError as exc:
            raise ReferenceDataError(f"{path}: {exc}") from exc

    def governorate(self, name: str) -> Governorate | None:
        found = self._governorates.get(folded(name, PLACE_NOISE))
        return Governorate(found) if found else None

    def district(self, name: str) -> District | None:
        """A district by name; a governorate's own name means its centre district."""
        key = folded(name, PLACE_NOISE)
        found = self._districts.get(key)
        if found is None and (governorate := self._governorates.get(key)):
            centre = f"{governorate}.{CENTRE_DISTRICT}"
            found = centre if centre in self.district_ids else None
        if found is None:
            return None
        return District(found, Governorate(found.partition(".")[0]))


class Vocabulary:
    """Platforms, languages and relationships by the names partners use for them."""

    def __init__(self, vocabulary: VocabularyFile, path: Path) -> None:
        self._platforms = _index(
            path, ((p, e.aliases) for p, e in vocabulary.platforms.items()), frozenset()
        )
        self._languages = _index(
            path, ((lang.value, e.aliases) for lang, e in vocabulary.languages.items()), frozenset()
        )
        self._relationships = _index(
            path, ((r, e.aliases) for r, e in vocabulary.relationships.items()), frozenset()
        )
        self._domains: dict[str, str] = {}
        for platform, entry in vocabulary.platforms.items():
            for domain in entry.domains:
                if self._domains.setdefault(domain.casefold(), platform) != platform:
                    raise ReferenceDataError(f"{path}: domain {domain!r} names two platforms")

    @classmethod
    def load(cls, path: Path | None = None) -> Vocabulary:
        path = path or SAMPLE_VOCABULARY
        try:
            return cls(VocabularyFile.model_validate(_load_toml(path)), path)
        except ValidationError as exc:
            raise ReferenceDataError(f"{path}: {exc}") from exc

    def platform(self, name: str) -> str:
        """A platform's id; a platform not in the vocabulary keeps its folded name."""
        key = folded(name)
        return self._platforms.get(key, key or clean(name).casefold())

    def language(self, name: str) -> Language | None:
        found = self._languages.get(folded(name))
        return Language(found) if found else None

    def relationship(self, text: str) -> str:
        """One of the relationship ids, or "other" for anything the vocabulary lacks."""
        return self._relationships.get(folded(text), "other")

    def account_from_url(self, url: str) -> tuple[str, str] | None:
        """(platform, handle) from a profile URL of a known platform, e.g.
        instagram.com/some.user → ("instagram", "some.user"); None when unclear."""
        text = clean(url)
        try:
            parts = urlsplit(text if "://" in text else "https://" + text)
            host = (parts.hostname or "").casefold()
        except ValueError:
            return None
        for prefix in ("www.", "m.", "mobile.", "web."):
            host = host.removeprefix(prefix)
        platform = self._domains.get(host)
        if platform is None:
            return None
        segments = [s for s in parts.path.split("/") if s]
        handle = _handle_in_path(platform, segments, parse_qs(parts.query))
        return (platform, canonical_handle(handle)) if handle else None


# Path segments that are pages of a platform, not accounts.
_NOT_ACCOUNTS = frozenset(
    {"p", "reel", "reels", "stories", "explore", "watch", "share", "sharer", "video", "status",
     "groups", "events", "hashtag", "tv", "s", "login", "home", "search", "joinchat", "c"}
)  # fmt: skip
_ACCOUNT_PATH_PREFIXES: Mapping[str, str] = {"snapchat": "add", "youtube": "channel"}


def _handle_in_path(platform: str, segments: list[str], query: dict[str, list[str]]) -> str | None:
    if platform == "facebook" and segments[:1] == ["profile.php"]:
        return "id:" + query["id"][0] if query.get("id") else None
    prefix = _ACCOUNT_PATH_PREFIXES.get(platform)
    if prefix and len(segments) >= 2 and segments[0] == prefix:
        return segments[1]
    if not segments or segments[0].casefold() in _NOT_ACCOUNTS:
        return None
    return segments[0]
