"""Export of the contracts' JSON Schemas (pinned by tests/test_contracts.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contracts.events import EVENT_DATA_MODELS, Envelope
from contracts.reports import BatchResult, ErrorBody, PartnerReport, ReportAccepted, ReportStatus

SCHEMA_DIR = Path(__file__).parent / "schemas"


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema for every model that crosses a boundary."""
    models: dict[str, type[BaseModel]] = {
        "envelope": Envelope,
        "partner-report": PartnerReport,
        "report-accepted": ReportAccepted,
        "report-status": ReportStatus,
        "batch-result": BatchResult,
        "error": ErrorBody,
    }
    for event_type, model in EVENT_DATA_MODELS.items():
        models[f"event.{event_type.value}"] = model
    return {name: model.model_json_schema() for name, model in models.items()}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in sorted(all_schemas().items()):
        path = directory / f"{name}.schema.json"
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
