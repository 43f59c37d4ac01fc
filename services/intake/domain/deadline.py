"""A deadline the readers check as they go: a document that takes too long to read stops
being read rather than running on unseen (see `handlers/reading.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass


class DeadlinePassed(Exception):  # noqa: N818 (a condition, not a fault)
    """Reading took longer than the request may."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic()

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise DeadlinePassed
