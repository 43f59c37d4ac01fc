"""One canonical report from whatever a channel delivered (a JSON-like dict).

Every channel ends here: the canonical JSON as posted, a CyberTipline document once mapped to
the same shape, a batch row. Text is normalised first (NFC; digits, ages, dates and times;
phone numbers to E.164; place, platform and language names to their ids), then the result is
validated against `PartnerReport`, so a value that cannot be read is refused with the path of
its field, never guessed at.
"""

from __future__ import annotations

import contextlib
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, TypeGuard

from pydantic import ValidationError

from contracts.reports import MAX_TEXT, PartnerReport
from services.intake.domain.normalise import (
    canonical_email,
    e164,
    fold,
    nfc,
    parse_date,
    parse_moment,
    parse_years,
    western_digits,
)
from services.intake.domain.reference import Gazetteer, Vocabulary
from services.intake.domain.refusals import (
    Refusal,
    refusal_from,
    text_refusal,
    validation_problems,
)

_HEX_HASHES = frozenset({"md5", "sha1", "sha256"})
# The longest value any normaliser reads (place descriptions; the others are shorter).
MAX_NORMALISED_TEXT = MAX_TEXT


@dataclass(frozen=True)
class Normalisers:
    """The reference data and limits the pure normalisation needs."""

    gazetteer: Gazetteer
    vocabulary: Vocabulary
    default_zone: tzinfo
    max_base64_run: int


def canonical_report(raw: Any, refs: Normalisers) -> PartnerReport:
    """The canonical report, or a `Refusal` naming the field at fault."""
    if not isinstance(raw, dict):
        raise Refusal(422, "invalid_request", "a report is a JSON object", "body")
    screened: dict[str, Any] = _screened_tree(raw, "", refs.max_base64_run)
    try:
        return PartnerReport.model_validate(_normalised(screened, refs))
    except ValidationError as exc:
        raise refusal_from(validation_problems(exc)) from None


def prepare(raw: dict[str, Any], refs: Normalisers) -> dict[str, Any]:
    """Normalise what can be read; leave the rest for validation to name. (A channel that
    calls this has screened its text for media itself, with its own paths.)"""
    return _normalised(_nfc_tree(raw), refs)


def _normalised(data: dict[str, Any], refs: Normalisers) -> dict[str, Any]:
    zone = refs.default_zone
    incident = data.get("incident")
    if isinstance(incident, dict):
        zone = _zone(incident.get("time_zone"), zone)
        # The stated offset is kept: the day it names matters for an age (see facts.py).
        _convert(incident, "occurred_at", lambda v: parse_moment(v, zone).isoformat())
        _place(incident, refs.gazetteer)
        _convert(incident, "platform", refs.vocabulary.platform)
    _convert(data, "channel", _enum_word)
    _convert(data, "language", lambda v: _or_same(refs.vocabulary.language(v), v))
    for name in ("categories", "risk_flags"):
        if isinstance(data.get(name), list):
            data[name] = [_enum_word(v) if isinstance(v, str) else v for v in data[name]]
    for survivor in _dicts(data.get("survivors")):
        _person(survivor, refs, zone)
        if isinstance(age_range := survivor.get("age_range"), dict):
            _convert(age_range, "min", parse_years)
            _convert(age_range, "max", parse_years)
    source: dict[str, Any] = data["source"] if isinstance(data.get("source"), dict) else {}
    for person in [
        *_dicts(data.get("reported_persons")),
        *_dicts(source.get("intended_recipients")),
    ]:
        _person(person, refs, zone)
    if isinstance(reporter := source.get("reporter"), dict):
        _contact(reporter.get("contact"))
    for detail in _dicts(source.get("internet_details")):
        _convert_each(detail, "phones", lambda v: e164(v) or v)
        _convert_each(detail, "emails", canonical_email)
        _ip_captures(detail, zone)
    for file in _dicts(data.get("files")):
        _convert(file, "uploaded_at", lambda v: parse_moment(v, zone).isoformat())
        _convert(file, "industry_classification", str.upper)
        for file_hash in _dicts(file.get("hashes")):
            _file_hash(file_hash)
    return data


def _person(person: dict[str, Any], refs: Normalisers, zone: tzinfo) -> None:
    _convert(person, "age", parse_years)
    _convert(person, "date_of_birth", lambda v: parse_date(v).isoformat())
    _contact(person.get("contact"))
    if isinstance(location := person.get("location"), dict):
        _place(location, refs.gazetteer)
    for identifier in _dicts(person.get("online_identifiers")):
        _convert(identifier, "platform", refs.vocabulary.platform)
    _ip_captures(person, zone)


def _contact(contact: Any) -> None:
    if isinstance(contact, dict):
        _convert(contact, "phone", lambda v: e164(v) or v)
        _convert(contact, "email", canonical_email)
        _convert_each(contact, "other_phones", lambda v: e164(v) or v)
        _convert_each(contact, "other_emails", canonical_email)


def _ip_captures(holder: dict[str, Any], zone: tzinfo) -> None:
    for capture in _dicts(holder.get("ip_captures")):
        _convert(capture, "at", lambda v: parse_moment(v, zone).isoformat())


def _place(place: dict[str, Any], gazetteer: Gazetteer) -> None:
    """Governorate and district to canonical ids; a known district (or city) fills in a missing
    governorate. An unknown district stays as written (it is sealed, never published)."""
    _convert(place, "governorate", lambda v: _or_same(gazetteer.governorate(v), v))
    district_name = place.get("district")
    district = gazetteer.district(district_name) if _normalisable(district_name) else None
    if district is not None:
        place["district"] = district.id
    if place.get("governorate") is None:
        for key in ("city", "region", "description"):
            if _normalisable(text := place.get(key)):
                found = gazetteer.district(text)
                governorate = found.governorate if found else gazetteer.governorate(text)
                if governorate is not None:
                    place["governorate"] = governorate.value
                    break
        if district is not None and place.get("governorate") is None:
            place["governorate"] = district.governorate.value


def _file_hash(file_hash: dict[str, Any]) -> None:
    _convert(file_hash, "type", fold)  # "SHA-256" → sha256, "PhotoDNA" → photodna
    if isinstance(kind := file_hash.get("type"), str) and kind in _HEX_HASHES:
        _convert(file_hash, "value", lambda v: "".join(western_digits(v).split()).casefold())


def _zone(name: Any, default: tzinfo) -> tzinfo:
    if isinstance(name, str):
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass  # validation names the field
    return default


def _enum_word(value: str) -> str:
    return "_".join(value.strip().casefold().replace("-", " ").split())


def _or_same(found: Any, value: str) -> Any:
    return found.value if found is not None else value


def _normalisable(value: Any) -> TypeGuard[str]:
    """A value worth normalising: text no longer than any normalised field may be. Longer
    text is left as it is for validation to refuse; reading megabytes of it word by word
    first would only cost time (and lists of millions of tokens)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NORMALISED_TEXT


def _convert(holder: dict[str, Any], key: str, convert: Callable[[Any], Any]) -> None:
    """Replace a text value by its normal form; unreadable values stay for validation."""
    value = holder.get(key)
    if _normalisable(value):
        with contextlib.suppress(ValueError):
            holder[key] = convert(value)


def _convert_each(holder: dict[str, Any], key: str, convert: Callable[[str], Any]) -> None:
    values = holder.get(key)
    if isinstance(values, list):
        converted = []
        for value in values:
            try:
                converted.append(convert(value) if _normalisable(value) else value)
            except ValueError:
                converted.append(value)
        holder[key] = converted


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _screened_tree(value: Any, path: str, max_base64_run: int) -> Any:
    """An NFC copy of the report, in the same walk that refuses media and forbidden
    characters with the path of the string that carries them."""
    if isinstance(value, str):
        if (refusal := text_refusal(path or "body", value, max_base64_run)) is not None:
            raise refusal
        return nfc(value)
    if isinstance(value, dict):
        return {
            key: _screened_tree(item, f"{path}.{key}" if path else key, max_base64_run)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _screened_tree(item, f"{path}.{index}" if path else str(index), max_base64_run)
            for index, item in enumerate(value)
        ]
    return value


def _nfc_tree(value: Any) -> Any:
    if isinstance(value, str):
        return nfc(value)
    if isinstance(value, dict):
        return {key: _nfc_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nfc_tree(item) for item in value]
    return value
