"""I/O signatures: the typed fields a model version takes and returns.

A schema is ``{"fields": [{"name", "type", "required", "enum"?, "minimum"?, "maximum"?}], "unknown_fields"?}``
with types
``float``, ``integer``, ``string``, ``boolean`` and ``datetime``. tether infers types and required-ness from
the training data and from the model's output on a few rows; declared ranges and enums come from the user
(``--input-schema``). The gateway validates every request against it. ``unknown_fields`` says what the
gateway does with a field the schema does not name: ``refuse`` (the default: a 422 naming it, with the
closest known name) or ``count`` (accepted, dropped before the model, counted per version).
"""

from __future__ import annotations

from typing import Any

from tether.core.errors import InvalidInputError

TYPES = ("float", "integer", "string", "boolean", "datetime")
UNKNOWN_FIELDS = ("refuse", "count")


def type_of_arrow(arrow_type: str) -> str:
    t = arrow_type.lower()
    if t.startswith(("int", "uint")):
        return "integer"
    if t.startswith(("float", "double", "halffloat", "decimal")):
        return "float"
    if t in ("bool", "boolean"):
        return "boolean"
    if t.startswith(("timestamp", "date")):
        return "datetime"
    return "string"


def type_of_dtype(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    return {"i": "integer", "u": "integer", "f": "float", "b": "boolean", "M": "datetime"}.get(kind, "string")


def from_data_schema(
    columns: list[dict[str, Any]], *, exclude: list[str], null_counts: dict[str, int]
) -> dict[str, Any]:
    fields = []
    for c in columns:
        if c["name"] in exclude:
            continue
        fields.append(
            {
                "name": c["name"],
                "type": type_of_arrow(c["type"]),
                "required": null_counts.get(c["name"], 0) == 0,
            }
        )
    return {"fields": fields}


def validate_schema(schema: Any, *, what: str) -> dict[str, Any]:
    """Check a user-supplied schema and return it normalised; raise `InvalidInputError` naming the problem."""
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list) or not schema["fields"]:
        raise InvalidInputError(f"{what} must be a mapping with a non-empty 'fields' list")
    names = set()
    out = []
    for i, f in enumerate(schema["fields"]):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise InvalidInputError(f"{what}: field {i} needs a 'name'")
        if f["name"] in names:
            raise InvalidInputError(f"{what}: field {f['name']!r} is listed twice")
        names.add(f["name"])
        if f.get("type") not in TYPES:
            raise InvalidInputError(
                f"{what}: field {f['name']!r} has type {f.get('type')!r}",
                hint=f"use one of {', '.join(TYPES)}",
            )
        unknown = set(f) - {"name", "type", "required", "enum", "minimum", "maximum", "description"}
        if unknown:
            raise InvalidInputError(f"{what}: field {f['name']!r} has unknown keys {sorted(unknown)}")
        g = {"name": f["name"], "type": f["type"], "required": bool(f.get("required", True))}
        for k in ("enum", "minimum", "maximum", "description"):
            if k in f:
                g[k] = f[k]
        out.append(g)
    extra = set(schema) - {"fields", "unknown_fields"}
    if extra:
        raise InvalidInputError(f"{what} has unknown keys {sorted(extra)}", hint="use 'fields' and 'unknown_fields'")
    result: dict[str, Any] = {"fields": out}
    if "unknown_fields" in schema:
        if schema["unknown_fields"] not in UNKNOWN_FIELDS:
            raise InvalidInputError(
                f"{what}: unknown_fields is {schema['unknown_fields']!r}",
                hint=f"use one of {', '.join(UNKNOWN_FIELDS)}",
            )
        result["unknown_fields"] = schema["unknown_fields"]
    return result
