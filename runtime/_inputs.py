"""Plan inputs: given values converted to their declared types, defaults filled in.

Apart from the executor so that validation (:mod:`.subplans`) and the executor both use
it without importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .bounds import load_json
from .errors import PlanError, Problem
from .plan import InputSpec, Plan

__all__ = ["coerce_input", "first_message", "resolve_inputs"]

_INPUT_TYPES: dict[str, TypeAdapter[Any]] = {
    "string": TypeAdapter(str),
    "integer": TypeAdapter(int),
    "number": TypeAdapter(float),
    "boolean": TypeAdapter(bool),
    "array": TypeAdapter(list),
    "object": TypeAdapter(dict),
}


def resolve_inputs(plan: Plan, given: Mapping[str, Any]) -> dict[str, Any]:
    """Plan inputs from ``given`` (strings from a command line are converted to the
    declared type) and defaults. Raises :class:`PlanError` listing every bad input."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in plan.inputs:
            declared = ", ".join(sorted(plan.inputs)) or "none"
            problems.append(
                Problem(f"unknown input '{name}' (plan '{plan.name}' declares: {declared})")
            )
    for name, spec in plan.inputs.items():
        if name not in given:
            if spec.required:
                problems.append(
                    Problem(f"input '{name}' is required (give it with -i {name}=VALUE)")
                )
            values[name] = spec.default
            continue
        try:
            values[name] = coerce_input(spec, given[name])
        except json.JSONDecodeError:
            example = '["a", "b"]' if spec.type == "array" else '{"key": "value"}'
            problems.append(
                Problem(
                    f"input '{name}' must be {spec.type}, given as JSON, "
                    f"e.g. -i {name}='{example}'; got {given[name]!r}"
                )
            )
        except (ValidationError, ValueError) as exc:
            problems.append(
                Problem(
                    f"input '{name}' must be {spec.type}, got {given[name]!r}: {first_message(exc)}"
                )
            )
    if problems:
        raise PlanError(problems)
    return values


def coerce_input(spec: InputSpec, value: Any) -> Any:
    if spec.type in ("array", "object") and isinstance(value, str):
        value = load_json(value)
    value = _INPUT_TYPES[spec.type].validate_python(value)
    if spec.enum is not None and value not in spec.enum:
        raise ValueError(f"not one of {', '.join(json.dumps(v) for v in spec.enum)}")
    return value


def first_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return exc.errors(include_url=False)[0]["msg"]
    return str(exc)
