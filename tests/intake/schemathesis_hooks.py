"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.intake.schemathesis_hooks): NDJSON bodies.

Intake documents an NDJSON upload as an array of canonical reports, one per line; this writes
the generated arrays that way, so the batch channel is fuzzed with structured rows.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(_context: Any, value: Any) -> bytes:
    rows = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()
