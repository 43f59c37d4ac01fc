"""Pure normalisers: text, digits, ages, dates, times, phones, e-mails, URLs and handles.

Partners in the KRI write the same fact in many ways: "15", "١٥ سنة" (Arabic-Indic digits,
Arabic year word), "۱۵ ساڵ" (Extended Arabic-Indic digits, Kurdish year word), "+964 750 123
4567" or "0750-123-4567". Each function here maps those spellings to one canonical value, or
raises `ValueError` with a message that names the expected form (never the value itself,
which may be personal data).

Every pattern here is module level and linear by construction (a quantifier applies to one
character class, never to a group that itself repeats): `tests/intake/test_linear_patterns.py`
checks that, and times each against pathological input of the largest size a channel takes.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from datetime import UTC, date, datetime, time, tzinfo
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from ocsea.text import clean, fold, nfc, western_digits

__all__ = ["clean", "fold", "nfc", "western_digits"]

# Words that may surround a number of years: "age 15", "١٥ سنة", "۱۵ ساڵ", "15 years old".
YEAR_WORDS = frozenset(
    {
        "year", "years", "yr", "yrs", "y", "yo", "old", "age", "aged",
        "سنة", "سنه", "سنوات", "سنين", "عام", "أعوام", "اعوام", "عمر", "العمر", "عمره",
        "عمرها", "بعمر",
        "ساڵ", "سال", "ساڵان", "سالان", "ساڵە", "ساڵی", "تەمەن", "تەمەنی", "ته\u0645ەن",
        "sal", "salî", "salê", "temen",
    }
)  # fmt: skip
_YEARS_TOKEN = re.compile(r"\d+|[^\W\d_]+|\S")
_WHITESPACE = re.compile(r"\s+")
_REPEATED_SLASHES = re.compile(r"/{2,}")
_WORD_SEPARATORS = re.compile(r"[\s\-_,./()']+")

MIN_YEARS, MAX_YEARS = 0, 130


def parse_years(value: int | str) -> int:
    """A number of years from an integer or text such as "١٥ ساڵ", "۱۵ سنة", "age 15"."""
    if isinstance(value, bool):
        raise ValueError("expected a number of years")
    if isinstance(value, int):
        number = value
    else:
        text = western_digits(clean(value)).casefold().replace("y/o", "yo")
        tokens = _YEARS_TOKEN.findall(text)
        numbers = [t for t in tokens if t.isdigit()]
        words = [t for t in tokens if not t.isdigit()]
        if len(numbers) != 1 or any(w not in YEAR_WORDS for w in words):
            raise ValueError("expected a number of years, e.g. 15 or ١٥ ساڵ")
        number = int(numbers[0])
    if not MIN_YEARS <= number <= MAX_YEARS:
        raise ValueError(f"years must be between {MIN_YEARS} and {MAX_YEARS}")
    return number


_YMD = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_DMY = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def _date_part(text: str) -> date | None:
    if match := _YMD.fullmatch(text):
        year, month, day = (int(g) for g in match.groups())
    elif match := _DMY.fullmatch(text):
        # Iraq writes dates day first; month-first is never assumed.
        day, month, year = (int(g) for g in match.groups())
    else:
        return None
    return date(year, month, day)


def parse_date(value: date | str) -> date:
    """A calendar date: YYYY-MM-DD, or day first DD/MM/YYYY, in any of the three digit sets."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = western_digits(clean(value))
    try:
        parsed = _date_part(text)
    except ValueError as exc:
        raise ValueError("not a calendar date") from exc
    if parsed is None:
        raise ValueError("expected a date as YYYY-MM-DD or DD/MM/YYYY")
    return parsed


def parse_moment(value: datetime | str, zone: tzinfo) -> datetime:
    """A moment, keeping the offset it was stated with. Text without an offset is local time
    in `zone`; a date alone is the start of that day there."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = western_digits(clean(value))
        moment = _local_datetime(text)
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def parse_datetime(value: datetime | str, zone: tzinfo) -> datetime:
    """`parse_moment`, in UTC."""
    return parse_moment(value, zone).astimezone(UTC)


def _local_datetime(text: str) -> datetime:
    date_text, _, time_text = text.replace("T", " ", 1).partition(" ")
    try:
        day = _date_part(date_text)
        if day is not None:
            clock = time()
            if time_text:
                match = _TIME.fullmatch(time_text.strip())
                if match is None:
                    return datetime.fromisoformat(text)
                hour, minute, second = match.groups()
                clock = time(int(hour), int(minute), int(second or 0))
            return datetime.combine(day, clock)
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-11-20T21:30:00+03:00") from exc


def local_date(moment: datetime, zone: tzinfo) -> date:
    """The calendar day of a moment where it happened (ages turn over on local days)."""
    return moment.astimezone(zone).date()


IRAQ_CALLING_CODE = "964"
_PHONE_JUNK = re.compile(r"[\s\-().\u00a0/]")
_PHONE_DIGITS = re.compile(r"\+?\d{6,20}")


def e164(phone: str) -> str | None:
    """An Iraqi number in E.164 (+964…); other numbers with their country code kept.

    Accepts "+964 750 123 4567", "00964…", "964…", "0750 123 4567" and "750 123 4567".
    Iraqi mobile numbers have 10 national digits starting with 7, landlines 8 or 9.
    None when the text is not a plausible number (it is then kept as written, unmatched).
    """
    text = western_digits(clean(phone))
    compact = _PHONE_JUNK.sub("", text)
    if not _PHONE_DIGITS.fullmatch(compact):
        return None
    if compact.startswith("+"):
        full = compact[1:]
    elif compact.startswith("00"):
        full = compact[2:]
    elif compact.startswith(IRAQ_CALLING_CODE):
        full = compact
    elif compact.startswith("0"):
        full = IRAQ_CALLING_CODE + compact[1:]
    else:
        full = IRAQ_CALLING_CODE + compact
    if full.startswith(IRAQ_CALLING_CODE):
        national = full[len(IRAQ_CALLING_CODE) :].removeprefix("0")
        valid = len(national) == 10 if national.startswith("7") else len(national) in (8, 9)
        return f"+{IRAQ_CALLING_CODE}{national}" if valid else None
    return f"+{full}" if 8 <= len(full) <= 15 else None


def canonical_email(email: str) -> str:
    return clean(email).casefold()


def canonical_handle(handle: str) -> str:
    """A handle as platforms compare them: no '@', no spaces, case folded, NFKC."""
    text = unicodedata.normalize("NFKC", clean(handle)).casefold()
    return _WHITESPACE.sub("", text).lstrip("@")


_TRACKING_PARAMS = re.compile(
    r"^(utm_.*|fbclid|gclid|igshid|igsh|mibextid|si|ref|ref_src|s|feature|_rdr)$"
)
_HOST_PREFIXES = ("www.", "m.", "mobile.", "web.", "mbasic.")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """A URL as a matching key: scheme and 'www.' dropped, host lower-case (IDNA), default
    port, fragment, trailing slash and tracking parameters removed, query sorted."""
    text = clean(url)
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return text.casefold()
    scheme = parts.scheme.casefold()
    if scheme not in _DEFAULT_PORTS:
        return text.casefold()
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    host = host.casefold()
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix):
            host = host[len(prefix) :]
            break
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(unquote(_REPEATED_SLASHES.sub("/", parts.path)), safe="/@:+~!$&'()*,;=-._")
    path = path.rstrip("/")
    query = urlencode(
        sorted(
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not _TRACKING_PARAMS.match(k.casefold())
        )
    )
    return netloc + path + (f"?{query}" if query else "")


def fold_words(text: str, ignore: frozenset[str] = frozenset()) -> str:
    """`fold`, word by word, leaving out generic words such as "governorate" or "محافظة"."""
    words = _WORD_SEPARATORS.split(text)
    kept = [_drop_article(f) for f in (fold(w) for w in words) if f and f not in ignore]
    return "".join(kept)


def _drop_article(folded: str) -> str:
    # The Arabic article is written joined to its noun: السليمانية = سليمانية.
    return folded[2:] if folded.startswith("ال") and len(folded) > 4 else folded
