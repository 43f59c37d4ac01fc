"""Refusals: what intake turns away, with a stable code and the place of the problem.

Media bytes are refused in any form. The mechanism takes hashes and links, never material:
holding abuse material would re-victimise the child and make the system itself a store of it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

MEDIA_MESSAGE = (
    "the mechanism takes hashes and links, never material: describe files by their hashes "
    "(files[].hashes) and where they were seen (files[].url), and do not attach them"
)
_DATA_URI = re.compile(r"data:[\w.+-]*/?[\w.+-]*(;[\w.+-]+=?[\w.+-]*)*(;base64)?,", re.IGNORECASE)


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


def carries_media(text: str, max_base64_run: int) -> bool:
    """A data: URI, or a run of base64 long enough to be a file rather than a hash."""
    if "data:" in text.lower() and _DATA_URI.search(text):
        return True
    if len(text) < max_base64_run:
        return False
    runs = re.finditer(rf"[A-Za-z0-9+/_-]{{{max_base64_run},}}={{0,2}}", text)
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
    mixed = (
        any(c.isupper() for c in run)
        and any(c.islower() for c in run)
        and any(c.isdigit() for c in run)
    )
    return mixed and run.count("/") < len(run) / 20


def strings_in(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON value, with its dotted path."""
    if isinstance(value, str):
        yield path or "body", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings_in(item, f"{path}.{index}" if path else str(index))


def find_media(value: Any, max_base64_run: int) -> str | None:
    """The path of the first string carrying media, if any."""
    for path, text in strings_in(value):
        if carries_media(text, max_base64_run):
            return path
    return None


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
