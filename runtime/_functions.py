"""The functions an expression can call, and how values read as text.

Each function takes the :class:`~dagentic.bounds.Allowance` of the resolution it runs in
first and pays for its work before doing it: what it reads, what it builds, and the
length of the integers it computes with (see :mod:`dagentic.bounds`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .bounds import MAX_EXPRESSION_SIZE, MAX_INT_BITS, Allowance, LimitError, json_text
from .errors import EvaluationError

__all__ = ["FUNCTIONS", "as_text", "check_bits", "checked", "render_text", "type_name"]

MAX_NUMBER_TEXT = 100  # characters int() reads
MAX_ROUND_DIGITS = 400  # round() to more digits changes nothing for the numbers allowed


def type_name(value: Any) -> str:
    """The expression language's name for a value's type (string, object, list...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__


# --------------------------------------------------------------------------- functions
# Each is called as fn(allowance, *arguments) and pays for its work before doing it.


def _len(allowance: Allowance, value: Any) -> int:
    if isinstance(value, str | Mapping | Sequence):
        return len(value)
    raise EvaluationError(f"len() needs a string, list or object, got {type_name(value)}")


def _str_fn(name: str, fn: Callable[..., Any], *, builds: bool = False) -> Callable[..., Any]:
    def call(allowance: Allowance, value: Any, *args: Any) -> Any:
        if not isinstance(value, str):
            raise EvaluationError(f"{name}() needs a string, got {type_name(value)}")
        for arg in args:
            if not isinstance(arg, str):
                raise EvaluationError(f"{name}() needs string arguments, got {type_name(arg)}")
        allowance.read(value, f"{name}()")
        if builds:  # a letter's other case may be up to three characters
            allowance.build(len(value) * (1 if value.isascii() else 3), f"{name}()")
        return fn(value, *args)

    return call


def _split(allowance: Allowance, value: Any, separator: Any = None) -> list[str]:
    if not isinstance(value, str):
        raise EvaluationError(f"split() needs a string, got {type_name(value)}")
    if separator is not None and not isinstance(separator, str):
        raise EvaluationError(f"split() needs string arguments, got {type_name(separator)}")
    allowance.read(value, "split()")
    if separator:
        parts = value.count(separator) + 1
        allowance.build(len(value) - (parts - 1) * len(separator) + parts, "split()")
    else:  # at most one part per two characters
        allowance.build(len(value) + (len(value) + 1) // 2, "split()")
    return value.split(separator)


def _contains(allowance: Allowance, container: Any, item: Any) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            return False
        allowance.read(container, "contains()")  # and its lower-case copy, dropped at once
        return item.lower() in container.lower()
    if isinstance(container, Mapping):
        if isinstance(item, str):
            allowance.read(item, "contains()")
        return item in container
    if isinstance(container, Sequence):
        allowance.size_of(container, "contains()")
        return item in container
    raise EvaluationError(f"contains() needs a string, list or object, got {type_name(container)}")


def _join(allowance: Allowance, items: Any, separator: Any = ",") -> str:
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise EvaluationError(f"join() needs a list, got {type_name(items)}")
    if not isinstance(separator, str):
        raise EvaluationError(f"join() needs a string separator, got {type_name(separator)}")
    allowance.spend(len(items), "join()")
    allowance.build(len(separator) * max(len(items) - 1, 0), "join()")
    return separator.join([_text(allowance, item, "join()") for item in items])


def _replace(allowance: Allowance, value: Any, old: Any, new: Any) -> str:
    for arg in (value, old, new):
        if not isinstance(arg, str):
            raise EvaluationError(f"replace() needs strings, got {type_name(arg)}")
    allowance.read(value, "replace()")
    count = value.count(old) if old else len(value) + 1
    allowance.build(len(value) + count * (len(new) - len(old)), "replace()")
    return value.replace(old, new)


def _keys(allowance: Allowance, value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        raise EvaluationError(f"keys() needs an object, got {type_name(value)}")
    allowance.build(len(value), "keys()")
    return list(value.keys())


def _values(allowance: Allowance, value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        raise EvaluationError(f"values() needs an object, got {type_name(value)}")
    allowance.build(len(value), "values()")
    return list(value.values())


def _numbers(name: str, fn: Callable[[list[Any]], Any]) -> Callable[..., Any]:
    def call(allowance: Allowance, *args: Any) -> Any:
        items = args[0] if len(args) == 1 and isinstance(args[0], Sequence) else args
        if isinstance(items, str) or not items:
            raise EvaluationError(f"{name}() needs a non-empty list of numbers")
        allowance.spend(len(items), f"{name}()")
        return fn(list(items))

    return call


def _sorted(allowance: Allowance, items: Any) -> list[Any]:
    if not isinstance(items, str | Mapping | Sequence):
        raise EvaluationError(f"sorted() needs a list, got {type_name(items)}")
    count = len(items)
    allowance.size_of(items, "sorted()")
    allowance.spend(count * max(count.bit_length(), 1), "sorted()")
    allowance.build(count, "sorted()")
    return sorted(items)


def _abs(allowance: Allowance, value: Any) -> Any:
    check_bits(value, "abs()")
    return abs(value)


def _round(allowance: Allowance, value: Any, digits: Any = None) -> float | int:
    check_bits(value, "round()")
    places = 0
    if digits is not None:
        if not isinstance(digits, int | float) or isinstance(digits, bool):
            raise EvaluationError(f"round() needs a number of digits, got {type_name(digits)}")
        # Past MAX_ROUND_DIGITS either way the result is the same, and computing
        # 10**digits for a huge count would not end.
        places = max(-MAX_ROUND_DIGITS, min(MAX_ROUND_DIGITS, int(digits)))
    return checked(round(value, places) if places else round(value), "round()")


def _int(allowance: Allowance, value: Any) -> int:
    if isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
        raise LimitError(f"int() reads numbers of at most {MAX_NUMBER_TEXT} characters")
    check_bits(value, "int()")
    return checked(int(value), "int()")


def _float(allowance: Allowance, value: Any) -> float:
    if isinstance(value, str):
        allowance.read(value, "float()")
    check_bits(value, "float()")
    return float(value)


def _str(allowance: Allowance, value: Any) -> str:
    return value if isinstance(value, str) else _text(allowance, value, "str()")


def _to_json(allowance: Allowance, value: Any) -> str:
    try:
        text = json_text(value, allowance.built, sort_keys=True, ensure_ascii=True, allow_nan=False)
    except LimitError:
        raise
    except ValueError as exc:
        raise EvaluationError(f"tojson(): {exc}") from None
    if text is None:
        raise allowance.exceeded("tojson()")
    allowance.build(len(text), "tojson()")
    return text


def _from_json(allowance: Allowance, value: Any) -> Any:
    if not isinstance(value, str):
        raise EvaluationError(f"fromjson() needs a string, got {type_name(value)}")
    # What JSON text decodes to has at most as many characters and items as the text.
    allowance.read(value, "fromjson()")
    allowance.build(len(value), "fromjson()")
    try:
        return json.loads(value, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"fromjson(): not JSON: {exc.msg}") from exc


def _json_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_TEXT:  # past MAX_INT_BITS anyway; reading it costs more
        raise LimitError(f"fromjson() would build a number of more than {MAX_INT_BITS} bits")
    return checked(int(digits), "fromjson()")


def check_bits(value: Any, what: str) -> None:
    """Refuse an integer too long to compute with: its cost grows with its length."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise LimitError(f"{what} cannot take a number of more than {MAX_INT_BITS} bits")


def checked(value: Any, what: str) -> Any:
    """``value``, unless it is an integer longer than an expression may build."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise LimitError(f"{what} would build a number of more than {MAX_INT_BITS} bits")
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": _len,
    "contains": _contains,
    "startswith": _str_fn("startswith", str.startswith),
    "endswith": _str_fn("endswith", str.endswith),
    "lower": _str_fn("lower", str.lower, builds=True),
    "upper": _str_fn("upper", str.upper, builds=True),
    "strip": _str_fn("strip", str.strip, builds=True),
    "split": _split,
    "replace": _replace,
    "join": _join,
    "keys": _keys,
    "values": _values,
    "min": _numbers("min", min),
    "max": _numbers("max", max),
    "sum": _numbers("sum", math.fsum),
    "abs": _abs,
    "round": _round,
    "int": _int,
    "float": _float,
    "str": _str,
    "bool": lambda allowance, value: bool(value),
    "sorted": _sorted,
    "tojson": _to_json,
    "fromjson": _from_json,
}
"""Every function an expression can call, each as ``fn(allowance, *arguments)`` (the
:class:`~dagentic.bounds.Allowance` it pays its work from). ``default(x, fallback)`` is
handled specially: it yields ``fallback`` when ``x`` is null or cannot be read (e.g. a
skipped step)."""

# --------------------------------------------------------------------------- text


def as_text(value: Any, limit: int) -> str | None:
    """How ``value`` reads inside a longer string, or None if longer than ``limit``."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:  # writing it costs time quadratic in its length
            raise LimitError(f"a number of more than {MAX_INT_BITS} bits cannot be written as text")
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, Mapping | list | tuple):
        return json_text(value, limit)
    else:
        text = str(value)
    return text if len(text) <= limit else None


def _text(allowance: Allowance, value: Any, what: str) -> str:
    """``value`` as text, paid for as something the current expression builds."""
    text = as_text(value, allowance.built)
    if text is None:
        raise allowance.exceeded(what)
    allowance.build(len(text), what)
    return text


def render_text(value: Any) -> str:
    """How a value reads inside a longer string: strings as they are, null as nothing,
    numbers and booleans as in JSON, lists and objects as JSON. Raises
    :class:`~dagentic.errors.EvaluationError` past :data:`MAX_EXPRESSION_SIZE` characters."""
    text = as_text(value, MAX_EXPRESSION_SIZE)
    if text is None:
        raise LimitError(f"the text would be longer than {MAX_EXPRESSION_SIZE:,} characters")
    return text
