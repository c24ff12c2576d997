"""The I/O contract at the gateway: each record of a request is checked against the version's input schema.

A validator is compiled once per schema (a list of small closures), so the per-request cost is one pass over
the fields. Violations name the record, the field and the rule, e.g. ``record 3: field 'amount': expected a
number, got 'abc'``. A field the schema does not name is refused by default, with the closest known name
(``field 'amout': unknown field (did you mean 'amount'?)``), or counted when the schema says
``unknown_fields: count``. Integers must fit in 64 bits.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Violation:
    record: int
    field: str
    rule: str

    def __str__(self) -> str:
        return f"record {self.record}: field {self.field!r}: {self.rule}"


Check = Callable[[Any], str | None]
INT64 = 2**63


def _type_check(kind: str) -> Check:
    def number(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"expected a number, got {v!r}"
        if isinstance(v, float) and not math.isfinite(v):
            return f"expected a finite number, got {v!r}"
        return None

    def integer(v: Any) -> str | None:
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            return f"expected an integer, got {v!r}"
        if not -INT64 <= v < INT64:
            return f"expected a 64-bit integer, got {v!r}"
        return None

    def string(v: Any) -> str | None:
        return None if isinstance(v, str) else f"expected a string, got {v!r}"

    def boolean(v: Any) -> str | None:
        return None if isinstance(v, bool) else f"expected true or false, got {v!r}"

    return {"float": number, "integer": integer, "string": string, "boolean": boolean, "datetime": string}[kind]


def _minimum(lo: float) -> Check:
    return lambda v: None if v >= lo else f"below the minimum {lo}: {v!r}"


def _maximum(hi: float) -> Check:
    return lambda v: None if v <= hi else f"above the maximum {hi}: {v!r}"


def _enum(allowed: frozenset[Any]) -> Check:
    shown = sorted(map(str, allowed))
    return lambda v: None if v in allowed else f"not one of {shown}: {v!r}"


class InputValidator:
    """Checks records (dicts) against a tether input schema: types, required fields, ranges, enums and fields
    the schema does not name."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.fields: list[tuple[str, bool, list[Check]]] = []
        for f in schema["fields"]:
            checks = [_type_check(f["type"])]
            if "minimum" in f:
                checks.append(_minimum(f["minimum"]))
            if "maximum" in f:
                checks.append(_maximum(f["maximum"]))
            if "enum" in f:
                checks.append(_enum(frozenset(f["enum"])))
            self.fields.append((f["name"], bool(f.get("required", True)), checks))
        self.names = frozenset(name for name, _, _ in self.fields)
        self.refuse_unknown = schema.get("unknown_fields", "refuse") == "refuse"
        #: Unknown fields accepted (and dropped by the model) under ``unknown_fields: count``.
        self.unknown_seen = 0

    def validate(self, records: list[Any]) -> list[Violation]:
        out: list[Violation] = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                out.append(Violation(i, "*", f"expected an object, got {type(rec).__name__}"))
                continue
            if len(rec) > len(self.names) or not rec.keys() <= self.names:
                for extra in (k for k in rec if k not in self.names):
                    if self.refuse_unknown:
                        out.append(Violation(i, str(extra), self._unknown(str(extra))))
                    else:
                        self.unknown_seen += 1
            for name, required, checks in self.fields:
                v = rec.get(name)
                if v is None:
                    if required:
                        out.append(Violation(i, name, "required and missing"))
                    continue
                for check in checks:
                    problem = check(v)
                    if problem:
                        out.append(Violation(i, name, problem))
                        break
        return out

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, sorted(self.names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known fields: {', '.join(sorted(self.names))}"
        return "unknown field, refused by the version's contract" + hint
