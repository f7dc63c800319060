"""What plans, expressions and values may consume, and the helpers that hold them to it.

Plans, tool outputs and model replies are hostile, so every resource is bounded before it
is spent, never measured after:

- **A plan** (a YAML file, a dict, a model's JSON reply) has at most :data:`MAX_PLAN_BYTES`
  bytes of YAML, :data:`MAX_PLAN_NODES` keys, items and values (YAML aliases expanded;
  at most :data:`MAX_PLAN_ALIASES` aliases), values nested at most :data:`MAX_PLAN_DEPTH`
  levels and at most :data:`MAX_STEPS` steps.
- **An expression** builds at most :data:`MAX_EXPRESSION_SIZE` characters and items
  (string characters, list and object entries) and computes with integers of at most
  :data:`MAX_INT_BITS` bits. A text with ``${{ }}`` parts is at most
  :data:`MAX_EXPRESSION_SIZE` characters.
- **A resolution** (a step's arguments, the plan's outputs, one ``when``, ``foreach`` or
  ``assert``) yields values holding at most :data:`MAX_RESOLUTION_SIZE` characters and
  items in all (values read from other steps included, each time they are used), and does
  at most :data:`MAX_WORK` units of work (a unit: an item or a character an operation
  visits, compares or sorts, or :data:`CHARACTERS_PER_UNIT` characters of a string it
  scans), so no evaluation holds the event loop for long.
- **A value a tool returns** is cut to :data:`MAX_VALUE_DEPTH` levels and
  :data:`MAX_VALUE_SIZE` characters and items (shared parts counted each time they
  appear); a marker string says what was cut, so a result is shown cut, never lost.
- **A run** keeps at most :data:`MAX_RUN_OUTPUT_SIZE` characters and items of step outputs
  in all, as :func:`deep_size` counts them (a ``foreach`` step's list: one per item, plus
  each item's output); the ``max_run_output_size`` setting changes it. A step, or a
  ``foreach`` item, whose output would take the run past it fails with ``resource_limit``
  instead of being kept, and once nothing is left no tool is called. The message of an
  error a run keeps is at most :data:`MAX_ERROR_SIZE` characters (cut with a marker).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import EvaluationError

__all__ = [
    "CHARACTERS_PER_UNIT",
    "MAX_ERROR_SIZE",
    "MAX_EXPRESSION_SIZE",
    "MAX_INT_BITS",
    "MAX_PLAN_ALIASES",
    "MAX_PLAN_BYTES",
    "MAX_PLAN_DEPTH",
    "MAX_PLAN_NODES",
    "MAX_RESOLUTION_SIZE",
    "MAX_RUN_OUTPUT_SIZE",
    "MAX_STEPS",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_SIZE",
    "MAX_WORK",
    "Allowance",
    "LimitError",
    "cut_and_size",
    "cut_value",
    "deep_size",
    "json_text",
    "load_json",
    "located",
    "plan_data_problem",
    "too_deep",
    "too_many_nodes",
    "too_many_steps",
]

MAX_PLAN_BYTES = 1 << 20  # 1 MiB of YAML
MAX_PLAN_NODES = 100_000  # keys, items and values of a plan, aliases expanded
MAX_PLAN_ALIASES = 100  # YAML aliases (*name) in a plan file
MAX_PLAN_DEPTH = 64  # levels of nested mappings and lists in a plan
MAX_STEPS = 10_000  # steps of one plan
MAX_EXPRESSION_SIZE = 1_000_000  # characters and items one expression may build
MAX_RESOLUTION_SIZE = 10_000_000  # ... that a step's arguments (or outputs) hold in all
MAX_WORK = 10_000_000  # units of work of one resolution
CHARACTERS_PER_UNIT = 16  # reading this many characters is one unit of work
MAX_INT_BITS = 256  # integers an expression may compute with
MAX_VALUE_DEPTH = 64  # levels of a tool's output kept
MAX_VALUE_SIZE = 10_000_000  # characters and items of a tool's output kept
# ... of all the step outputs one run keeps: ten outputs of the largest size. In memory that
# is about 100 MB of text, 1.3-2 GB of records or numbers (13-20 bytes an item), at worst
# about 7 GB (lists of empty objects, 72 bytes an item); setting max_run_output_size.
MAX_RUN_OUTPUT_SIZE = 10 * MAX_VALUE_SIZE
MAX_ERROR_SIZE = 10_000  # characters of one error message a run keeps

_CONTAINERS = (dict, list, tuple)
_NESTED = (Mapping, list, tuple)
_SCALARS = frozenset({str, int, float, bool, type(None)})


class LimitError(EvaluationError):
    """An expression would pass one of the bounds above. ``default()`` never hides it."""


class Allowance:
    """What one resolution may still spend. Every charge is made before the work it pays
    for; a charge that does not fit raises :class:`LimitError` naming what asked for it.

    ``built`` is what the current expression may still build (reset by :meth:`start`),
    ``total`` what the values the resolution yields may still hold, ``work`` its units of
    work.
    """

    __slots__ = ("_sizes", "built", "total", "work")

    def __init__(self) -> None:
        self.built = MAX_EXPRESSION_SIZE
        self.total = MAX_RESOLUTION_SIZE
        self.work = MAX_WORK
        self._sizes: dict[int, tuple[Any, int]] | None = None

    def start(self) -> None:
        """A new expression begins: it may build :data:`MAX_EXPRESSION_SIZE` again."""
        self.built = MAX_EXPRESSION_SIZE

    def build(self, amount: int, what: str) -> None:
        """Pay for ``amount`` characters and items that ``what`` is about to build."""
        if amount > self.built:
            raise self.exceeded(what)
        self.built -= amount

    def exceeded(self, what: str) -> LimitError:
        """The error of ``what`` building more than the current expression may."""
        return LimitError(
            f"{what} would build more than {MAX_EXPRESSION_SIZE:,} characters and items in "
            "one expression; do large data work in a tool step"
        )

    def spend(self, amount: int, what: str) -> None:
        """Pay for ``amount`` units of work ``what`` is about to do."""
        if amount > self.work:
            raise LimitError(
                f"{what} would do more than {MAX_WORK:,} units of work in one evaluation; "
                "do large data work in a tool step"
            )
        self.work -= amount

    def read(self, text: str, what: str) -> None:
        """Pay for reading (scanning, copying, comparing) ``text``."""
        self.spend(len(text) // CHARACTERS_PER_UNIT + 1, what)

    def size_of(self, value: Any, what: str) -> int:
        """The deep size of ``value`` (see :func:`deep_size`), paid as work each time:
        what reads a value (compares it, looks through it) costs at most as much.
        Measured once per object and resolution, never further than the work left."""
        if type(value) not in _CONTAINERS:
            size = len(value) if type(value) is str else 1
        else:
            sizes = self._sizes
            if sizes is None:
                sizes = self._sizes = {}
            known = sizes.get(id(value))
            if known is None:
                size = deep_size(value, self.work)
                sizes[id(value)] = (value, size)  # kept, so its id stays its own
            else:
                size = known[1]
        self.spend(size, what)
        return size

    def hold(self, value: Any, what: str) -> Any:
        """Pay for ``value`` becoming part of what the resolution yields: its deep size,
        values read from the scope included (a value counts each time it is used)."""
        kind = type(value)
        if kind is str:
            size = len(value)
        elif kind is dict or kind is list or kind is tuple:
            size = deep_size(value, self.total)
        else:
            size = 1
        if size > self.total:
            raise LimitError(
                f"{what} would hold more than {MAX_RESOLUTION_SIZE:,} characters and items in "
                "all (a value counts each time it is used); pass less data, or do large data "
                "work in a tool step"
            )
        self.total -= size
        return value


def deep_size(value: Any, limit: int) -> int:
    """Characters and items in ``value``: every string's length, every list, tuple and
    object entry and object key's length, 1 for anything else; shared parts count each
    time they appear. Counting stops past ``limit``, so a huge value costs no more."""
    kind = type(value)
    if kind is str:
        return len(value)
    if kind is not dict and kind is not list and kind is not tuple:
        return 1
    total = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        total += len(item)
        if type(item) is dict:
            try:
                total += sum(map(len, item))
            except TypeError:  # a key that is not a string
                total += len(item)
            children: Any = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is str:
                total += len(child)
            elif kind is dict or kind is list or kind is tuple:
                push(child)
            else:
                total += 1
        if total > limit:
            break
    return total


# --------------------------------------------------------------------------- JSON text


class _TooLong(Exception):
    pass


def json_text(
    value: Any,
    limit: int,
    *,
    sort_keys: bool = False,
    ensure_ascii: bool = False,
    allow_nan: bool = True,
) -> str | None:
    """``json.dumps(value, default=str, ...)``, or None when it would be longer than
    ``limit`` characters; the text is measured as it is written, so a huge value costs no
    more than ``limit``. Integers of more than :data:`MAX_INT_BITS` bits raise
    :class:`LimitError` (writing them costs time quadratic in their length)."""
    if _small(value, limit):
        return json.dumps(
            value, default=str, sort_keys=sort_keys, ensure_ascii=ensure_ascii, allow_nan=allow_nan
        )
    chunks: list[str] = []
    length = 0
    try:
        for chunk in _encode(value, sort_keys, ensure_ascii, allow_nan, limit):
            length += len(chunk)
            if length > limit:
                return None
            chunks.append(chunk)
    except _TooLong:
        return None
    return "".join(chunks)


def _small(value: Any, limit: int) -> bool:
    """Whether ``value``'s JSON text surely fits ``limit``: plain JSON data with few enough
    items and characters that even escaping every character could not pass it. Raises
    for an integer too long to write."""
    budget = limit // 12  # "\ud83d\ude00" is 12 characters for one
    stack: list[Any] = [[value]]
    spent = 0
    while stack:
        item = stack.pop()
        if type(item) is dict:
            try:
                spent += 2 * len(item) + 1 + sum(map(len, item))
            except TypeError:
                return False  # a key that is not a string: written slowly, with care
            children: Any = item.values()
        else:
            spent += len(item) + 1
            children = item
        for child in children:
            kind = type(child)
            if kind is str:
                spent += len(child)
            elif kind is dict or kind is list or kind is tuple:
                stack.append(child)
            elif kind is int:
                _check_int_text(child)
                spent += 7  # at most 78 digits
            elif kind is float or kind is bool or child is None:
                spent += 3  # at most 24 characters
            else:
                return False  # default=str can write anything
        if spent > budget:
            return False
    return True


def _check_int_text(number: int) -> None:
    if number.bit_length() > MAX_INT_BITS:
        raise LimitError(f"a number of more than {MAX_INT_BITS} bits cannot be written as text")


def _encode(
    value: Any, sort_keys: bool, ensure_ascii: bool, allow_nan: bool, limit: int
) -> Iterator[str]:
    """JSON text of ``value`` piece by piece (the json module's pure-Python encoder writes
    integers without asking, so this is its own)."""
    encoder: Any = json.encoder
    quote = encoder.encode_basestring_ascii if ensure_ascii else encoder.encode_basestring
    on_path: set[int] = set()

    def scalar(item: Any) -> str | None:
        if isinstance(item, str):
            if len(item) > limit:
                raise _TooLong
            return quote(item)
        if item is None:
            return "null"
        if item is True:
            return "true"
        if item is False:
            return "false"
        if isinstance(item, int):
            _check_int_text(item)
            return int.__repr__(item)
        if isinstance(item, float):
            if math.isfinite(item):
                return float.__repr__(item)
            if not allow_nan:
                raise ValueError(f"Out of range float values are not JSON compliant: {item!r}")
            return "NaN" if item != item else ("Infinity" if item > 0 else "-Infinity")
        return None

    def encode(item: Any) -> Iterator[str]:
        text = scalar(item)
        if text is not None:
            yield text
            return
        if isinstance(item, Mapping | list | tuple):
            if id(item) in on_path:
                raise ValueError("Circular reference detected")
            on_path.add(id(item))
            if isinstance(item, Mapping):
                yield "{"
                pairs = sorted(item.items()) if sort_keys else item.items()
                for index, (key, child) in enumerate(pairs):
                    name = key if isinstance(key, str) else _key_text(key)
                    yield (", " if index else "") + quote(name) + ": "
                    yield from encode(child)
                yield "}"
            else:
                yield "["
                for index, child in enumerate(item):
                    if index:
                        yield ", "
                    yield from encode(child)
                yield "]"
            on_path.discard(id(item))
            return
        text = str(item)  # what default=str writes
        if len(text) > limit:
            raise _TooLong
        yield quote(text)

    return encode(value)


def _key_text(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        _check_int_text(key)
        return int.__repr__(key)
    if isinstance(key, float):
        return float.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def load_json(text: str) -> Any:
    """``json.loads(text)``; text nested too deeply to read raises ValueError, not
    RecursionError (Python's reader recurses once per level)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the JSON nests too deeply to be read") from None


# --------------------------------------------------------------------------- cutting values


def cut_value(value: Any, depth: int = MAX_VALUE_DEPTH, size: int = MAX_VALUE_SIZE) -> Any:
    """``value`` itself when it nests at most ``depth`` levels and holds at most ``size``
    characters and items (shared parts counted each time they appear); otherwise a copy
    cut to fit, with a marker string where something was cut. Never raises, never
    recurses further than ``depth``, and costs at most about ``size`` steps."""
    return cut_and_size(value, depth, size)[0]


def cut_and_size(
    value: Any, depth: int = MAX_VALUE_DEPTH, size: int = MAX_VALUE_SIZE
) -> tuple[Any, int | None]:
    """:func:`cut_value`, and the :func:`deep_size` of ``value`` when it was not cut
    (measured in the same walk: what a tool returns is measured once), else None."""
    measured = _fitting_size(value, depth, size)
    if measured is not None:
        return value, measured
    return _cut(value, depth, [size], f"<cut: nested deeper than {depth} levels>"), None


def _fitting_size(value: Any, depth: int, size: int) -> int | None:
    """The deep size of ``value`` if it fits ``depth`` and ``size`` (object keys' characters
    not counted against ``size``, as :func:`_cut` keeps them whole), else None."""
    kind = type(value)
    if kind is not dict and kind is not list and kind is not tuple:
        if kind is not str:
            return 1
        return len(value) if len(value) <= size else None
    stack: list[tuple[Any, int]] = [(value, 0)]
    total = keys = 0
    while stack:
        item, level = stack.pop()  # a container
        total += len(item)
        if level >= depth or total > size:
            return None
        if type(item) is dict:
            try:
                keys += sum(map(len, item))
            except TypeError:  # a key that is not a string
                keys += len(item)
            children: Any = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is str:
                total += len(child)
            elif kind is dict or kind is list or kind is tuple:
                stack.append((child, level + 1))
            else:
                total += 1
        if total > size:
            return None
    return total + keys


def _cut(item: Any, depth: int, left: list[int], too_deep: str) -> Any:
    """``item`` cut to ``depth`` more levels and ``left[0]`` more characters and items."""
    kind = type(item)
    if kind is str:
        if len(item) <= left[0]:
            left[0] -= len(item)
            return item
        kept, left[0] = item[: max(left[0], 0)], 0
        return f"{kept}<cut: {len(item) - len(kept):,} more characters>"
    if kind is not dict and kind is not list and kind is not tuple:
        left[0] -= 1
        return item
    if depth <= 0:
        left[0] -= 1
        return too_deep
    if kind is dict:
        result: dict[Any, Any] = {}
        for index, (key, child) in enumerate(item.items()):
            if left[0] <= 0:
                result["<cut>"] = f"{len(item) - index:,} more keys"
                break
            left[0] -= 1
            result[key] = _cut(child, depth - 1, left, too_deep)
        return result
    items: list[Any] = []
    for index, child in enumerate(item):
        if left[0] <= 0:
            items.append(f"<cut: {len(item) - index:,} more items>")
            break
        left[0] -= 1
        items.append(_cut(child, depth - 1, left, too_deep))
    return items


# --------------------------------------------------------------------------- plan data


def plan_data_problem(data: Any, *, walk: bool = True) -> tuple[tuple[str | int, ...], str] | None:
    """Where and how plan data (a Python caller's dict, a model's JSON reply) passes the
    plan bounds, or None. ``walk=False`` checks only the number of steps (a plan file's
    nesting and nodes were bounded as it was read). Costs at most MAX_PLAN_NODES steps."""
    if isinstance(data, Mapping):
        steps = data.get("steps")
        if isinstance(steps, list) and len(steps) > MAX_STEPS:
            return ("steps",), too_many_steps(len(steps))
    if not walk or _within_plan_bounds(data):
        return None
    return _locate_plan_problem(data)


def _within_plan_bounds(data: Any) -> bool:
    """Nesting and nodes as a plan file counts them: a mapping entry is two nodes."""
    if not isinstance(data, Mapping | list | tuple):
        return True
    nodes = 1
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth >= MAX_PLAN_DEPTH:
            return False
        if isinstance(item, Mapping):
            nodes += 2 * len(item)
            children: Any = item.values()
        else:
            nodes += len(item)
            children = item
        if nodes > MAX_PLAN_NODES:
            return False
        if _SCALARS.issuperset(map(type, children)):
            continue  # the common case, decided at C speed
        for child in children:
            if isinstance(child, _NESTED):
                stack.append((child, depth + 1))
    return True


def _locate_plan_problem(data: Any) -> tuple[tuple[str | int, ...], str]:
    """The path where data that is not within the plan bounds first passes one."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    nodes = 1
    while stack:
        item, path = stack.pop()
        if len(path) >= MAX_PLAN_DEPTH:
            return path, too_deep()
        pairs = list(item.items() if isinstance(item, Mapping) else enumerate(item))
        for key, child in pairs:
            nodes += 2 if isinstance(item, Mapping) else 1
            if nodes > MAX_PLAN_NODES:
                return (*path, key), too_many_nodes()
            if isinstance(child, _NESTED):
                stack.append((child, (*path, key)))
    return (), too_many_nodes()  # not reached: the data passed a bound


def located(path: tuple[str | int, ...], message: str) -> str:
    """``message`` after the path it is about, as ``steps[0].args.x: message``."""
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return f"{where.lstrip('.')}: {message}" if where else message


def too_deep() -> str:
    return (
        f"this value nests deeper than {MAX_PLAN_DEPTH} levels, the most a plan may; "
        "flatten it, or pass deep data as an input or read it with a tool step"
    )


def too_many_nodes() -> str:
    return (
        f"the plan has more than {MAX_PLAN_NODES:,} keys, items and values (aliases "
        "expanded), the most a plan may; pass large data as an input or read it with a "
        "tool step"
    )


def too_many_steps(count: int) -> str:
    return (
        f"the plan has {count:,} steps; a plan may have at most {MAX_STEPS:,}: split it "
        "into several plans, or run one step over a list with foreach"
    )
