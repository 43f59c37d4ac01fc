"""Refusals: what intake turns away, with a stable code and the place of the problem.

Media bytes are refused in any form. The mechanism takes hashes and links, never material:
holding abuse material would re-victimise the child and make the system itself a store of it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from dataclasses import dataclass
from functools import cache

from pydantic import ValidationError

MEDIA_MESSAGE = (
    "the mechanism takes hashes and links, never material: describe files by their hashes "
    "(files[].hashes) and where they were seen (files[].url), and do not attach them"
)
# Patterns applied to partners' text are linear by construction: one character class per
# quantifier, no quantified group, possessive where a failed match could otherwise backtrack,
# and a lookbehind so a run is only ever scanned from its first character. (The data: URI
# pattern used to be `(;[\w.+-]+=?[\w.+-]*)*`, whose nested quantifiers backtracked
# exponentially on "data:a/a;aaaaaaaaaa;aaaaaaaaaa…!".) `tests/intake/test_linear_patterns.py`
# feeds every pattern here a pathological string of the largest size a channel takes.
#
# A data: URI is "data:" then the media type and parameters (letters, digits, `.+-/=;`) up to
# the comma that starts the content: `data:image/png;base64,…`, `data:;charset=utf-8,…`. It is
# looked for in the lower-cased text: a case-sensitive literal prefix lets the engine skip
# ahead, where IGNORECASE would try every position (ten times slower on megabytes).
DATA_URI = re.compile(r"data:[\w.+/=;-]*+,")
_BASE64_CHARACTER = "A-Za-z0-9+/_-"
_DIGIT = re.compile("[0-9]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (`field`), what (`code`), and why."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass(eq=False)
class Refusal(Exception):  # noqa: N818 (an answer to give, not a fault)
    """Input intake will not take; nothing has been published or stored for it."""

    status: int
    code: str
    message: str
    field: str | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)
    headers: dict[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code} at {self.field}: {self.message}"


def media_refusal(path: str) -> Refusal:
    return Refusal(422, "media_not_accepted", f"{path}: {MEDIA_MESSAGE}", path)


# The first bytes of image, video, audio and archive files.
_MEDIA_MAGIC = (
    b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"\x1aE\xdf\xa3", b"%PDF", b"PK\x03\x04",
    b"BM", b"II*\x00", b"MM\x00*", b"ID3", b"OggS", b"fLaC",
)  # fmt: skip


@cache
def base64_run(min_length: int) -> re.Pattern[str]:
    """A maximal run of at least `min_length` base64 characters (with its padding): the
    lookbehind makes each run be tried once, from its start, so the scan stays linear."""
    c = _BASE64_CHARACTER
    return re.compile(rf"(?<![{c}])[{c}]{{{min_length},}}+={{0,2}}")


def carries_media(text: str, max_base64_run: int) -> bool:
    """A data: URI, or a run of base64 long enough to be a file rather than a hash."""
    if ":" in text and DATA_URI.search(text.lower()):
        return True
    return len(text) >= max_base64_run and _carries_encoded_file(text, max_base64_run)


def _carries_encoded_file(text: str, max_base64_run: int) -> bool:
    runs = base64_run(max_base64_run).finditer(text)
    return any(_looks_like_encoded_file(run.group()) for run in runs)


def _looks_like_encoded_file(run: str) -> bool:
    """Encoded bytes, not a long URL path or a repeated word: either it decodes to a known
    file header, or it has base64's mix of cases and digits with few slashes (a path's
    segments put a slash every few characters; base64 has one in 64 on average)."""
    head = run[:64].rstrip("=")
    head = head[: len(head) - len(head) % 4]
    try:
        decoded = base64.b64decode(head.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.startswith(_MEDIA_MAGIC) or decoded[4:8] == b"ftyp":
        return True
    # str methods, not a loop over characters: a run can be megabytes long.
    mixed = run.lower() != run and run.upper() != run and _DIGIT.search(run) is not None
    return mixed and run.count("/") < len(run) / 20


def text_refusal(path: str, text: str, max_base64_run: int) -> Refusal | None:
    """Why one string of a report is refused, if it is: media, or a character no text field
    needs and which breaks encoders, databases and logs downstream (NUL, an unpaired UTF-16
    surrogate). Each check is one linear scan in C."""
    if carries_media(text, max_base64_run):
        return media_refusal(path)
    if "\x00" in text:
        what = "a NUL character"
    elif not text.isascii() and _SURROGATE.search(text):
        what = "an unpaired UTF-16 surrogate"
    else:
        return None
    return Refusal(422, "invalid_character", f"{path}: the text holds {what}", path)


_TOO_LONG_CODES = {"string_too_long": "field_too_long", "too_long": "too_many_items"}


def validation_problems(exc: ValidationError) -> list[Problem]:
    """Pydantic's errors as problems. Messages name the rule, never the value, which may be
    personal data."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(part) for part in error.get("loc", ())) or "body"
        code = _TOO_LONG_CODES.get(str(error.get("type")), "invalid_request")
        problems.append(Problem(path, code, str(error.get("msg"))))
    return problems


def refusal_from(problems: list[Problem], status: int = 422) -> Refusal:
    first = problems[0]
    return Refusal(status, first.code, f"{first.field}: {first.message}", first.field, problems)
