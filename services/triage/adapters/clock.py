"""The `Clock` port: the system's clock, in UTC."""

from __future__ import annotations

from datetime import datetime

from contracts.events import utc_now


class SystemClock:
    def now(self) -> datetime:
        return utc_now()
