"""Pure figures: percentiles, latency summaries, rates, the replicas option, the table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SERVICES = ("intake", "triage", "routing", "audit")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least p% of values at or below it);
    None for no values. p99 of 100 values is the 99th smallest, never an interpolation."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100]: {p}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Latency:
    """Latencies in ms. Reports still waiting when the measurement ended count with the time
    they had waited (a lower bound), so a stalled system cannot look fast: `missing` says how
    many, and the figures are then "at least"."""

    count: int
    missing: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def complete(self) -> bool:
        return self.missing == 0


def summarise(done_ms: Sequence[float], waiting_ms: Sequence[float] = ()) -> Latency:
    values = [*done_ms, *waiting_ms]
    return Latency(
        count=len(values),
        missing=len(waiting_ms),
        p50_ms=percentile(values, 50),
        p99_ms=percentile(values, 99),
        max_ms=max(values) if values else None,
    )


def rate(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 and count > 0 else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def parse_replicas(text: str | None) -> dict[str, int]:
    """`triage=2,routing=2` → {"triage": 2, "routing": 2}; a clear error for anything else."""
    if not text:
        return {}
    replicas: dict[str, int] = {}
    for item in text.split(","):
        name, separator, count = item.strip().partition("=")
        if not separator or name not in SERVICES or not count.isdigit() or int(count) < 1:
            raise ValueError(
                f"--replicas: {item.strip()!r} is not <service>=<count> with service one of "
                f"{', '.join(SERVICES)} and count at least 1"
            )
        replicas[name] = int(count)
    return replicas


def service_of(label: str) -> str:
    """`triage-2` → `triage`, `triage-bulk-0` → `triage` (a process label is
    `<service>[-bulk]-<replica>`); others unchanged."""
    name, _, replica = label.rpartition("-")
    return name.removesuffix("-bulk") if name and replica.isdigit() else label


def per_10k(value: float, reports: int) -> float | None:
    return value * 10_000 / reports if reports else None


def fmt(value: float | None, digits: int = 0, *, at_least: bool = False) -> str:
    if value is None:
        return "n/a"
    return ("≥ " if at_least else "") + f"{value:,.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rounded(figures: Mapping[str, object], digits: int = 3) -> dict[str, object]:
    """The JSON line's figures, floats rounded so the line stays readable."""
    out: dict[str, object] = {}
    for key, value in figures.items():
        if isinstance(value, float):
            out[key] = round(value, digits)
        elif isinstance(value, Mapping):
            out[key] = rounded(value, digits)
        else:
            out[key] = value
    return out
