"""The normalisers: every spelling of a value reaches the same canonical value (hypothesis)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.reports import Governorate
from ocsea.text import ARABIC_INDIC_DIGITS, EXTENDED_ARABIC_INDIC_DIGITS, nfc, western_digits
from services.intake.domain.normalise import (
    canonical_handle,
    canonical_url,
    e164,
    parse_date,
    parse_datetime,
    parse_years,
)
from services.intake.domain.reference import Gazetteer

BAGHDAD = ZoneInfo("Asia/Baghdad")
DIGIT_SETS = ("0123456789", ARABIC_INDIC_DIGITS, EXTENDED_ARABIC_INDIC_DIGITS)
GAZETTEER = Gazetteer.load()
PLACES = GAZETTEER.places

digit_sets = st.sampled_from(DIGIT_SETS)
invisible = st.sampled_from(["", "\u200f", "\u200e", "\u061c"])
spaces = st.sampled_from(["", " ", "  ", "\u00a0"])


def spell(number: int | str, digits: str, *, width: int = 0) -> str:
    return str(number).zfill(width).translate(str.maketrans("0123456789", digits))


def test_the_digit_ranges_are_the_unicode_blocks() -> None:
    assert [hex(ord(c)) for c in ARABIC_INDIC_DIGITS] == [hex(0x0660 + i) for i in range(10)]
    assert [hex(ord(c)) for c in EXTENDED_ARABIC_INDIC_DIGITS] == [
        hex(0x06F0 + i) for i in range(10)
    ]


@given(st.integers(min_value=0, max_value=10**12), digit_sets)
def test_any_digit_set_reads_as_western(number: int, digits: str) -> None:
    assert western_digits(spell(number, digits)) == str(number)


@given(
    st.integers(min_value=0, max_value=130),
    digit_sets,
    st.sampled_from(["", "ساڵ", "سال", "سنة", "سنوات", "عام", "years", "yrs", "years old", "y/o"]),
    st.sampled_from(["", "age", "aged", "عمر", "تەمەن"]),
    spaces,
    invisible,
)
def test_years_in_every_script_and_with_year_words(
    years: int, digits: str, word: str, prefix: str, gap: str, mark: str
) -> None:
    text = f"{prefix}{gap if prefix else ''}{mark}{spell(years, digits)}{mark}{gap}{word}"
    assert parse_years(text) == years


@given(st.integers(min_value=131, max_value=10**6), digit_sets)
def test_impossible_ages_are_refused(years: int, digits: str) -> None:
    with pytest.raises(ValueError, match="between"):
        parse_years(spell(years, digits))


@pytest.mark.parametrize("text", ["fifteen", "15 or 16", "15.5", "-3", "", "15 ساڵ 3", "15 kg"])
def test_unreadable_ages_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a number of years"):
        parse_years(text)


def test_booleans_are_not_ages() -> None:
    with pytest.raises(ValueError, match="expected a number of years"):
        parse_years(True)


@given(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    digit_sets,
    st.sampled_from(["{y}-{m}-{d}", "{y}/{m}/{d}", "{d}/{m}/{y}", "{d}-{m}-{y}", "{d}.{m}.{y}"]),
    st.booleans(),
    invisible,
)
def test_dates_in_every_script_and_layout(
    day: date, digits: str, layout: str, padded: bool, mark: str
) -> None:
    width = 2 if padded else 0
    text = layout.format(
        y=spell(day.year, digits),
        m=spell(day.month, digits, width=width),
        d=spell(day.day, digits, width=width),
    )
    assert parse_date(mark + text + mark) == day


@pytest.mark.parametrize("text", ["31/02/2010", "2010-13-01", "12/2010", "yesterday", "2010"])
def test_impossible_or_partial_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_date(text)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    digit_sets,
    st.sampled_from(["T", " "]),
)
def test_local_times_are_baghdad_time_in_utc(moment: datetime, digits: str, separator: str) -> None:
    moment = moment.replace(microsecond=0)
    text = (
        spell(moment.date().isoformat(), digits)
        + separator
        + spell(moment.strftime("%H:%M:%S"), digits)
    )
    parsed = parse_datetime(text, BAGHDAD)
    assert parsed.utcoffset() == timedelta(0)
    assert parsed == moment.replace(tzinfo=BAGHDAD).astimezone(UTC)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m)),
)
def test_a_stated_offset_wins_over_the_default_zone(moment: datetime, offset: timedelta) -> None:
    from datetime import timezone

    aware = moment.replace(microsecond=0, tzinfo=timezone(offset))
    parsed = parse_datetime(aware.isoformat(), BAGHDAD)
    assert parsed == aware
    assert parsed.tzinfo == UTC


def test_a_date_alone_is_the_start_of_that_local_day() -> None:
    assert parse_datetime("٢٠٢٦-١١-٢٠", BAGHDAD) == datetime(2026, 11, 19, 21, 0, tzinfo=UTC)


iraqi_mobile = st.from_regex(r"7[3-9][0-9]{8}", fullmatch=True)
iraqi_landline = st.sampled_from(["66", "53", "62", "60"]).flatmap(
    lambda area: st.from_regex(r"[2-9][0-9]{6}", fullmatch=True).map(lambda rest: area + rest)
)


def grouped(digits: str, separator: str) -> str:
    """The digits as people write them: groups of three or four."""
    parts, rest = [], digits
    while rest:
        size = 4 if len(rest) in (4, 8) else 3
        parts.append(rest[:size])
        rest = rest[size:]
    return separator.join(parts)


@given(
    st.one_of(iraqi_mobile, iraqi_landline),
    st.sampled_from(["+964{n}", "00964{n}", "964{n}", "0{n}", "{n}", "+964 0{n}", "(0{n})"]),
    st.sampled_from(["", " ", "-", ".", "\u00a0"]),
    digit_sets,
    invisible,
)
def test_iraqi_numbers_reach_one_e164_form(
    national: str, layout: str, separator: str, digits: str, mark: str
) -> None:
    text = mark + spell(layout.format(n=grouped(national, separator)), digits) + mark
    assert e164(text) == f"+964{national}"


@given(st.one_of(iraqi_mobile, iraqi_landline))
def test_e164_is_idempotent(national: str) -> None:
    first = e164("0" + national)
    assert first is not None
    assert e164(first) == first


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("075012345", None),  # a mobile number one digit short
        ("12345", None),
        ("call me", None),
    ],
)
def test_foreign_and_implausible_numbers(text: str, expected: str | None) -> None:
    assert e164(text) == expected


place_aliases = [
    (g.value, alias) for g, entry in PLACES.governorates.items() for alias in entry.aliases
]
district_aliases = [(d, alias) for d, entry in PLACES.districts.items() for alias in entry.aliases]


def respelled(alias: str, data: st.DataObject) -> str:
    """An alias as a partner might type it: other case, decomposed, with tatweel and noise."""
    draw = data.draw
    text = draw(st.sampled_from([alias, alias.upper(), alias.lower(), alias.title()]))
    if draw(st.booleans()):
        text = unicodedata.normalize("NFD", text)
    if draw(st.booleans()) and any("\u0600" <= c <= "\u06ff" for c in text) and len(text) > 2:
        text = text[:2] + "\u0640" + text[2:]  # tatweel, a pure lengthening mark
    text = draw(st.sampled_from(["", " ", "  "])) + text + draw(st.sampled_from(["", " ", "."]))
    return text


@given(st.sampled_from(place_aliases), st.data())
def test_every_governorate_spelling_reaches_its_id(
    entry: tuple[str, str], data: st.DataObject
) -> None:
    governorate, alias = entry
    text = respelled(alias, data)
    noise = data.draw(st.sampled_from(["", "Governorate", "محافظة", "پارێزگای", "Province"]))
    text = f"{noise} {text}" if noise in ("محافظة", "پارێزگای") else f"{text} {noise}"
    assert GAZETTEER.governorate(text) == Governorate(governorate)


@given(st.sampled_from(district_aliases), st.data())
def test_every_district_spelling_reaches_its_id(
    entry: tuple[str, str], data: st.DataObject
) -> None:
    district, alias = entry
    found = GAZETTEER.district(respelled(alias, data))
    assert found is not None
    assert found.id == district
    assert found.governorate.value == district.split(".")[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Hewlêr", "erbil"), ("أربيل", "erbil"), ("هەولێر", "erbil"), ("Slemani", "sulaymaniyah"),
     ("السليمانية", "sulaymaniyah"), ("سلێمانی", "sulaymaniyah"), ("Dohuk", "duhok"),
     ("دهۆک", "duhok"), ("گەرمیان", "garmiyan"), ("كرميان", "garmiyan"), ("Zaxo", "zakho")],
)  # fmt: skip
def test_the_three_languages_spellings(text: str, expected: str) -> None:
    assert GAZETTEER.governorate(text) == Governorate(expected)


def test_a_governorate_name_as_district_means_its_centre() -> None:
    found = GAZETTEER.district("Erbil")
    assert found is not None
    assert found.id == "erbil.centre"


def test_unknown_places_are_not_guessed() -> None:
    assert GAZETTEER.governorate("Atlantis") is None
    assert GAZETTEER.district("Atlantis") is None


url_paths = st.lists(st.from_regex(r"[a-z0-9_.-]{1,12}", fullmatch=True), max_size=4)


@given(
    st.sampled_from(["example.org", "instagram.com", "t.me"]),
    url_paths,
    st.sampled_from(["http://", "https://", "", "HTTPS://"]),
    st.sampled_from(["", "www.", "m."]),
    st.sampled_from(["", "/"]),
    st.sampled_from(["", "#top", "?utm_source=x", "?fbclid=abc&igshid=1"]),
)
def test_url_spellings_share_one_matching_key(
    host: str, path: list[str], scheme: str, prefix: str, slash: str, noise: str
) -> None:
    plain = f"https://{host}/{'/'.join(path)}"
    variant = f"{scheme}{prefix}{host.upper() if scheme else host}/{'/'.join(path)}{slash}{noise}"
    assert canonical_url(variant) == canonical_url(plain)
    assert canonical_url(canonical_url(variant)) == canonical_url(plain)


def test_meaningful_query_parameters_stay_and_are_ordered() -> None:
    assert canonical_url("https://x.org/p?b=2&a=1") == canonical_url("x.org/p?a=1&b=2")
    assert canonical_url("https://x.org/p?a=1") != canonical_url("https://x.org/p?a=2")


@given(st.from_regex(r"[A-Za-z0-9_.]{1,30}", fullmatch=True), st.sampled_from(["", "@", " @"]))
def test_handles_compare_without_at_sign_case_or_spaces(handle: str, at: str) -> None:
    assert canonical_handle(f"{at}{handle} ") == canonical_handle(handle.lower())
    assert canonical_handle(canonical_handle(handle)) == canonical_handle(handle)


@given(st.text())
def test_nfc_is_idempotent_and_canonical(text: str) -> None:
    once = nfc(text)
    assert nfc(once) == once
    assert unicodedata.is_normalized("NFC", once)
