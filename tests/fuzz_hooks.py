"""Schemathesis hooks for fuzzing the running system (SCHEMATHESIS_HOOKS=tests.fuzz_hooks).

Generated requests that only ever carry random ids and codes stop at validation, at the
access rule's 404 and at the "not a code of the directory" 422. The test seeds a case and
passes what it knows in `OCSEA_FUZZ_CONTEXT` (JSON):

- `values`: name → real values (the seeded case's `case_id`, its `task_id`, the directory's
  reason codes, ...). The first is the schema's example for every parameter and body field of
  that name, and a generated path or query parameter, or a top-level field of a JSON body,
  takes one of them about half the time, so requests also reach the handlers' deeper code: a
  real task's state machine, a real case's triage, its ledger trail.
- `cookies`: `[[path prefix, {name: value}], ...]`; each request gets the cookies of the
  longest prefix its path starts with (the console's sessions: the auditor's for `/audit`,
  a supervisor's elsewhere). Cookies, not a header: they are kept across redirects.
- `examples`: "METHOD path" → a JSON body to send as the operation's example (one that
  passes validation, where generated bodies rarely do).
- `forms`: path → {field: [values]}. The console reads its command forms by hand, so its
  OpenAPI document does not describe them; they are described here (the session's CSRF token
  among the values), so generated commands get past the CSRF check to the handler.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

CONTEXT: dict[str, Any] = json.loads(os.environ.get("OCSEA_FUZZ_CONTEXT") or "{}")
VALUES: dict[str, list[str]] = CONTEXT.get("values", {})
COOKIES: list[tuple[str, dict[str, str]]] = sorted(
    ((prefix, cookies) for prefix, cookies in CONTEXT.get("cookies", [])),
    key=lambda item: len(item[0]),
    reverse=True,
)
FORMS: dict[str, dict[str, list[str]]] = CONTEXT.get("forms", {})
EXAMPLES: dict[str, Any] = CONTEXT.get("examples", {})


def with_real_values(generated: Any) -> st.SearchStrategy[Any]:
    """The generated mapping, or the same with every known name set to one of its values."""
    names = [name for name in VALUES if isinstance(generated, dict) and name in generated]
    if not names:
        return st.just(generated)
    real = st.fixed_dictionaries({name: st.sampled_from(VALUES[name]) for name in names})
    return st.one_of(st.just(generated), real.map(lambda chosen: {**generated, **chosen}))


@schemathesis.hook
def flatmap_path_parameters(_context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    return with_real_values(path_parameters)


@schemathesis.hook
def flatmap_query(_context: Any, query: Any) -> st.SearchStrategy[Any]:
    return with_real_values(query)


@schemathesis.hook
def flatmap_body(_context: Any, body: Any) -> st.SearchStrategy[Any]:
    return with_real_values(body)


@schemathesis.hook
def before_load_schema(_context: Any, raw_schema: dict[str, Any]) -> None:
    """Real values as the schema's examples (the examples phase then sends each of them, so
    every run reaches the seeded case, whatever the fuzzing phase draws), and the console's
    forms."""
    paths: dict[str, dict[str, Any]] = raw_schema.get("paths", {})
    for operations in paths.values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") in VALUES:
                    parameter["example"] = VALUES[parameter["name"]][0]
    for model in raw_schema.get("components", {}).get("schemas", {}).values():
        for name, field in model.get("properties", {}).items():
            if name in VALUES:
                field["example"] = VALUES[name][0]
    for label, body in EXAMPLES.items():
        method, path = label.split(" ", 1)
        content = paths[path][method.lower()]["requestBody"]["content"]
        content["application/json"]["example"] = body
    for path, fields in FORMS.items():
        operation = paths.get(path, {}).get("post")
        if operation is None or "requestBody" in operation:
            continue
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {name: {"enum": values} for name, values in fields.items()},
                        "required": ["csrf"] if "csrf" in fields else [],
                    },
                    "example": {name: values[0] for name, values in fields.items()},
                }
            },
        }


@schemathesis.hook
def before_call(_context: Any, case: Any, _kwargs: dict[str, Any]) -> None:
    for prefix, cookies in COOKIES:
        if case.path.startswith(prefix):
            case.cookies = {**(case.cookies or {}), **cookies}
            return
