"""Every regular expression intake applies to partners' text runs in linear time.

Three checks, so that a new pattern cannot slip through:

1. no pattern is written inline (`re.sub(r"…", …)`) in intake's code: every one is a module
   constant (or built by a module function), so the list below is complete;
2. no pattern has nested quantifiers (a repeated group that itself repeats: the shape that
   backtracks exponentially, as `(;[\\w.+-]+=?[\\w.+-]*)*` did);
3. each pattern meets pathological strings in bounded time: a backtracking pattern takes
   seconds on a hundred characters, a quadratic one hours on megabytes. The screen every
   string of every channel goes through (media, NUL, surrogates) is fed strings as long as
   the largest body any channel takes (a batch upload, 10 MiB); every pattern on its own, by
   search, anchored match and a scan of every match, strings as long as a single report's
   largest body (256 KiB), more than the normalisers ever read (they leave values over
   `canonical.MAX_NORMALISED_TEXT` characters to validation).
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from re import _parser as sre_parse
from types import ModuleType
from typing import Any

import pytest

from contracts import reports as contract_reports
from services.intake.config import IntakeSettings
from services.intake.domain import (
    batch,
    canonical,
    cybertipline,
    normalise,
    reference,
    refusals,
    xml_document,
)
from services.intake.domain.refusals import base64_run, text_refusal

INTAKE = Path(refusals.__file__).parents[1]  # the whole service, not only its domain
MODULES: list[ModuleType] = [
    normalise, refusals, canonical, batch, cybertipline, xml_document, reference
]  # fmt: skip
CHANNEL_MAX = IntakeSettings().max_batch_bytes  # the largest body any channel takes
REPORT_MAX = IntakeSettings().max_report_bytes  # the largest single report
# Linear scans take tens of milliseconds here; a pattern that is not linear takes minutes at
# these sizes. The bound is generous for a loaded machine, and far below that.
BOUND_S = 3.0


def module_patterns() -> dict[str, re.Pattern[str]]:
    found = {
        f"{m.__name__}.{name}": value
        for m in MODULES
        for name, value in vars(m).items()
        if isinstance(value, re.Pattern)
    }
    max_run = IntakeSettings().max_base64_run
    found["services.intake.domain.refusals.base64_run"] = base64_run(max_run)
    # The contract's hex digest check (contracts/reports.py), as FileHash builds it.
    found["contracts.reports.FileHash (sha256)"] = re.compile("[0-9a-f]{64}")
    return found


PATTERNS = module_patterns()


def test_the_patterns_are_found() -> None:
    names = set(PATTERNS)
    expected = ["refusals.DATA_URI", "refusals._SURROGATE", "normalise._YEARS_TOKEN",
                "normalise._PHONE_DIGITS", "normalise._WORD_SEPARATORS", "base64_run"]  # fmt: skip
    for name in expected:
        assert any(n.endswith(name) for n in names), name


def test_no_pattern_is_written_inline() -> None:
    """`re.<function>("literal", …)` in intake's code would escape the checks below."""
    functions = {"compile", "search", "match", "fullmatch", "sub", "subn", "split",
                 "findall", "finditer"}  # fmt: skip
    inline = []
    for path in sorted(INTAKE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        }
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.func.attr in functions
            ):
                continue
            in_function_body = node.func.attr == "compile" and path.name == "refusals.py"
            if node.func.attr == "compile" and (id(node) in assigned or in_function_body):
                continue  # a module constant, or the base64 run pattern's builder
            inline.append(f"{path.name}:{node.lineno}")
    assert inline == [], f"inline patterns (make them module constants): {inline}"


def _repeats(parsed: Any) -> Iterator[tuple[int, int, Any]]:
    """Every repeat in a parsed pattern: (min, max, body)."""
    for op, av in parsed:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = av
            yield low, high, body
            yield from _repeats(body)
        elif name == "SUBPATTERN":
            yield from _repeats(av[-1])
        elif name in ("ATOMIC_GROUP",):
            yield from _repeats(av)
        elif name == "BRANCH":
            for branch in av[1]:
                yield from _repeats(branch)
        elif name in ("ASSERT", "ASSERT_NOT"):
            yield from _repeats(av[1])


def nested_quantifiers(pattern: re.Pattern[str]) -> list[str]:
    """Repeats that can loop (max > 1) around a body holding a variable-length repeat."""
    found = []
    for low, high, body in _repeats(sre_parse.parse(pattern.pattern, pattern.flags)):
        if high > 1 and any(lo != hi for lo, hi, _ in _repeats(body)):
            found.append(f"{{{low},{high}}} around a variable repeat")
    return found


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_no_nested_quantifiers(name: str) -> None:
    assert nested_quantifiers(PATTERNS[name]) == []


def test_the_structural_check_catches_the_old_media_pattern() -> None:
    old = re.compile(r"data:[\w.+-]*/?[\w.+-]*(;[\w.+-]+=?[\w.+-]*)*(;base64)?,", re.IGNORECASE)
    assert nested_quantifiers(old) != []


def pathological(size: int) -> dict[str, str]:
    """Strings that make backtracking patterns blow up: long runs of what a pattern's
    repeated classes take, each ending in something that makes the match fail; the probe of
    issue 10 repeated; near-misses of the base64 run length; digits and Arabic-Indic digits;
    separators."""
    unit = "data:a/a" + ";aaaaaaaaaa" * 7 + "!"
    near_base64 = "aB3" * 341 + "!"  # 1,023 base64 characters, then a stop
    strings = {
        "issue 10 probe, repeated": unit * (size // len(unit)),
        "one data: then a long run": "data:" + "a;=" * (size // 3) + "!",
        "many data: prefixes": "data:" * (size // 5),
        "base64 near-misses": near_base64 * (size // len(near_base64)),
        "base64 run, no padding end": "A" * size + "==!",
        "digits then a letter": "1" * size + "x",
        "Arabic-Indic digits": "١" * size + "!",
        "slashes": "/" * size + "x",
        "spaces then a stop": " " * size + "\x00",
        "separators": "-_,./()' " * (size // 9),
        "letters and digits alternating": "a1" * (size // 2) + "!",
        "colons and digits": "1:" * (size // 2),
        "utm keys": "utm_" + "a" * size + "\n",
    }
    return strings


@pytest.fixture(scope="module")
def hostile() -> dict[str, str]:
    return pathological(REPORT_MAX)


# The strings that exercise the screen (the others aim at the normalisers' patterns).
SCREEN_KINDS = ("issue 10 probe, repeated", "one data: then a long run", "many data: prefixes",
                "base64 near-misses", "base64 run, no padding end", "Arabic-Indic digits",
                "spaces then a stop")  # fmt: skip


@pytest.fixture(scope="module")
def largest() -> dict[str, str]:
    return {k: v for k, v in pathological(CHANNEL_MAX).items() if k in SCREEN_KINDS}


def uses(pattern: re.Pattern[str]) -> list[Callable[[str], object]]:
    """The ways intake applies a pattern: searching, anchored matching, and consuming every
    match (findall/finditer/sub/split scan the whole string)."""

    def every_match(text: str) -> int:
        count = 0
        for count, _ in enumerate(pattern.finditer(text), start=1):
            if count >= 10_000:  # a bounded number: the time is in the scanning
                break
        return count

    return [pattern.search, pattern.match, pattern.fullmatch, every_match]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_pattern_scans_pathological_input_in_bounded_time(
    name: str, hostile: dict[str, str]
) -> None:
    pattern = PATTERNS[name]
    for kind, text in hostile.items():
        for use in uses(pattern):
            started = time.perf_counter()
            use(text)
            elapsed = time.perf_counter() - started
            assert elapsed < BOUND_S, f"{name} took {elapsed:.2f} s on {kind} ({use})"


def test_the_issue_10_probe_is_instant_and_not_taken_for_media() -> None:
    probe = "data:a/a" + ";aaaaaaaaaa" * 7 + "!"
    started = time.perf_counter()
    assert text_refusal("narrative", probe, 1024) is None
    assert time.perf_counter() - started < 0.01
    assert text_refusal("url", "data:image/png;base64,iVBORw0KGgo=", 1024) is not None


def test_the_screen_of_every_string_is_linear_at_the_largest_size(
    largest: dict[str, str],
) -> None:
    """What every string of every channel goes through, as long as the largest body."""
    for kind, text in largest.items():
        started = time.perf_counter()
        text_refusal("body", text, IntakeSettings().max_base64_run)
        elapsed = time.perf_counter() - started
        assert elapsed < BOUND_S, f"the screen took {elapsed:.2f} s on {kind}"


def test_the_contract_pattern_is_the_one_checked() -> None:
    source = Path(contract_reports.__file__).read_text(encoding="utf-8")
    assert 're.fullmatch(f"[0-9a-f]{{{length}}}", self.value)' in source
