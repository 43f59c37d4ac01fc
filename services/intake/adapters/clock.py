"""The system's clock (UTC)."""

from __future__ import annotations

from datetime import datetime

from contracts.events import utc_now


class SystemClock:
    def now(self) -> datetime:
        return utc_now()
