"""The exported JSON Schemas are pinned: a breaking change fails here, loudly.

Within a major version contracts change additively only. A new optional field changes the
schema but breaks nobody: re-export with `ocsea contracts export` and commit. Removing or
renaming a field, changing its type, or making a field required breaks consumers: that fails
`test_no_breaking_change` whatever the pinned files say.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.schemas import SCHEMA_DIR, all_schemas, render

CURRENT = all_schemas()
PINNED = {
    path.name.removesuffix(".schema.json"): json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(SCHEMA_DIR.glob("*.schema.json"))
}


def breaking_changes(old: dict[str, Any], new: dict[str, Any], path: str = "$") -> list[str]:
    """What a consumer built against `old` would no longer accept in `new`."""
    problems: list[str] = []
    if old.get("type") != new.get("type"):
        problems.append(f"{path}: type {old.get('type')!r} became {new.get('type')!r}")
    if "enum" in old and "enum" in new:
        removed = set(old["enum"]) - set(new["enum"])
        if removed:
            problems.append(f"{path}: enum values removed: {sorted(removed)}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, schema in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: removed")
        else:
            problems += breaking_changes(schema, new_props[name], f"{path}.{name}")
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    if newly_required:
        problems.append(f"{path}: newly required {sorted(newly_required)}")
    for key in ("$defs",):
        for name, schema in old.get(key, {}).items():
            if name in new.get(key, {}):
                problems += breaking_changes(schema, new[key][name], f"{path}.$defs.{name}")
            else:
                problems.append(f"{path}.$defs.{name}: removed")
    return problems


def test_every_contract_is_pinned() -> None:
    assert set(PINNED) == set(CURRENT), "run `ocsea contracts export` and commit the schemas"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_no_breaking_change(name: str) -> None:
    assert breaking_changes(PINNED[name], CURRENT[name]) == []


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_schema_is_current(name: str) -> None:
    pinned_text = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert pinned_text == render(CURRENT[name]), (
        f"{name} changed additively: run `ocsea contracts export` and commit"
    )


def test_breaking_change_detector_catches_removal_and_new_requirement() -> None:
    old: dict[str, Any] = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": [],
    }
    new = {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}
    assert breaking_changes(old, new) == ["$.a: removed", "$: newly required ['b']"]
    assert breaking_changes(old, {**old, "properties": {**old["properties"], "c": {}}}) == []


def test_readers_tolerate_an_added_field() -> None:
    """An event from a producer one additive change ahead reads as before: a consumer still
    on the previous version ignores the new field instead of parking the event."""
    from contracts.events import Envelope, TaskAcknowledgedData

    assert PINNED["event.task.acknowledged"].get("additionalProperties") is not False
    event = {
        "event_id": "00000000-0000-4000-8000-000000000001",
        "event_type": "task.acknowledged",
        "occurred_at": "2026-12-01T10:00:00+00:00",
        "case_id": "00000000-0000-4000-8000-000000000002",
        "producer": "routing",
        "actor": {"kind": "officer", "id": "officer-1", "added_later": 1},
        "added_to_the_envelope": "x",
        "data": {
            "task_id": "00000000-0000-4000-8000-000000000003",
            "version": 2,
            "agency_id": "erbil-cpu",
            "added_to_the_data": {"any": "thing"},
        },
    }
    envelope = Envelope.model_validate_json(json.dumps(event))
    assert "added_to_the_envelope" not in envelope.model_dump()
    acknowledged = envelope.payload(TaskAcknowledgedData)
    assert (acknowledged.version, acknowledged.agency_id) == (2, "erbil-cpu")
    # Tolerant of additions, never of a missing or wrong field.
    too_early = {**acknowledged.model_dump(mode="json"), "version": 1}
    with pytest.raises(ValueError, match="version"):
        envelope.model_copy(update={"data": too_early}).payload(TaskAcknowledgedData)
