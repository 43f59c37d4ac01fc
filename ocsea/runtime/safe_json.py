"""JSON from outside, parsed with limits: every malformed or hostile document is a `JsonRefused`
naming what is wrong and where, never a `RecursionError`, a `ValueError` from `int()` or a value
that breaks whatever reads it next.

The standard library's parser is kept (it is C, linear in the input); what it lets through is
refused here:

- nesting deeper than `max_depth` (default 64; a report is about 6 deep);
- integers longer than `max_int_digits` digits (Python refuses > 4,300 with a bare `ValueError`,
  and a long one costs quadratic time to convert), and non-finite numbers (`NaN`, `1e999`);
- the same key twice in one object (which one would count?);
- NUL characters and unpaired UTF-16 surrogates (`"\\ud800"`) in strings and keys, which no
  text field needs and which break encoders, databases and logs downstream;
- bytes that are not UTF-8 (RFC 8259 allows nothing else).

Paths in errors are dotted (`survivors.0.age`); the refused values themselves are never quoted,
since they may be personal data.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_INT_DIGITS = 20

# One character class, no quantifier: a linear scan of each string.
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRefused(ValueError):  # noqa: N818 (an answer to give, not a fault)
    """The document is not acceptable JSON: `code` is stable, `path` names the place."""

    def __init__(self, code: str, message: str, path: str = "") -> None:
        super().__init__(code, message, path)
        self.code, self.message, self.path = code, message, path

    def __str__(self) -> str:
        return f"{self.code} at {self.path or 'body'}: {self.message}"


class _Marker:
    """A value the parser met that is refused once its place (path) is known."""

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message


class _DuplicateKeys(dict[str, Any]):
    __slots__ = ("duplicate",)
    duplicate: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    duplicates = _DuplicateKeys(result)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            duplicates.duplicate = key
            break
        seen.add(key)
    return duplicates


def _float(text: str) -> float | _Marker:
    value = float(text)
    if math.isfinite(value):
        return value
    return _Marker("number_out_of_range", "a number too large to represent")


def _constant(name: str) -> _Marker:
    return _Marker("invalid_number", f"{name} is not a JSON number")


def _path(parts: list[str | int]) -> str:
    return ".".join(str(p) for p in parts)


def _bad_text(text: str) -> bool:
    return "\x00" in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def _text_problem(text: str, parts: list[str | int], what: str) -> JsonRefused:
    if "\x00" in text:
        return JsonRefused("nul_character", f"{what} holds a NUL character", _path(parts))
    return JsonRefused(
        "unpaired_surrogate",
        f"{what} holds an unpaired UTF-16 surrogate (an invalid \\u escape)",
        _path(parts),
    )


def _acceptable(value: Any, max_depth: int) -> bool:
    """The quick walk: no paths kept, so a sound document costs one visit per value."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _bad_text(node):
                return False
        elif isinstance(node, dict):
            if depth >= max_depth or isinstance(node, _DuplicateKeys):
                return False
            for key, item in node.items():
                if _bad_text(key):
                    return False
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            if depth >= max_depth:
                return False
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, _Marker):
            return False
    return True


def check(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Walk a parsed document (iteratively, so depth costs no stack) and refuse what `loads`
    marked, and what is too deep. A refused document is walked a second time, keeping paths,
    to name the place of its first problem."""
    if _acceptable(value, max_depth):
        return
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, parts = stack.pop()
        if isinstance(node, str):
            if _bad_text(node):
                raise _text_problem(node, parts, "the text")
        elif isinstance(node, dict):
            if len(parts) >= max_depth:
                raise JsonRefused(
                    "nesting_too_deep", f"nested deeper than {max_depth} levels", _path(parts)
                )
            if isinstance(node, _DuplicateKeys):
                raise JsonRefused(
                    "duplicate_key",
                    "the same key appears twice in one object",
                    _path([*parts, node.duplicate]),
                )
            for key, item in node.items():
                if _bad_text(key):
                    raise _text_problem(key, parts, "a key")
                stack.append((item, [*parts, key]))
        elif isinstance(node, list):
            if len(parts) >= max_depth:
                raise JsonRefused(
                    "nesting_too_deep", f"nested deeper than {max_depth} levels", _path(parts)
                )
            stack.extend((item, [*parts, index]) for index, item in enumerate(node))
        elif isinstance(node, _Marker):
            raise JsonRefused(node.code, node.message, _path(parts))


def loads(
    document: bytes | str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_int_digits: int = DEFAULT_MAX_INT_DIGITS,
) -> Any:
    """The parsed document, or `JsonRefused`. A leading UTF-8 byte order mark is allowed."""
    if isinstance(document, bytes):
        try:
            text = document.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonRefused(
                "invalid_encoding", f"not UTF-8 (byte {exc.start} cannot be read)"
            ) from None
    else:
        text = document.removeprefix("\ufeff")

    def integer(digits: str) -> int | _Marker:
        if len(digits.lstrip("-")) > max_int_digits:
            return _Marker("integer_too_large", f"an integer longer than {max_int_digits} digits")
        return int(digits)

    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=integer,
            parse_float=_float,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        raise JsonRefused(
            "invalid_json", f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        # The C scanner gives up long before the stack would: far deeper than `max_depth`.
        raise JsonRefused("nesting_too_deep", f"nested deeper than {max_depth} levels") from None
    check(value, max_depth=max_depth)
    return value
