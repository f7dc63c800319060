"""``${{ expr }}`` expressions: a small, safe language over JSON data.

An expression is parsed with :func:`ast.parse` and then checked node by node against a
short allowlist; what passes is compiled into plain Python closures. Nothing is ever
handed to ``eval``/``exec``, attribute access is dictionary lookup (never ``getattr``),
and the only callables are the functions in :data:`FUNCTIONS`. So no expression can reach
Python internals, import anything or call anything else.

The language:

- names ``inputs``, ``steps`` and, inside ``foreach``, ``item``; also ``true``, ``false``,
  ``null`` (and Python's ``True``/``False``/``None``);
- ``a.b`` and ``a["b"]`` read a key, ``a[0]`` / ``a[-1]`` / ``a[1:3]`` index a list or string;
- literals: strings, numbers, lists, dicts;
- ``== != < <= > >= in not in``, ``and or not``, ``+ - * / // %``, ``x if cond else y``;
- the functions in :data:`FUNCTIONS`.

A value that is exactly one ``${{ }}`` keeps the expression's type; an expression inside a
longer string is interpolated as text (strings as is, ``null`` as empty, numbers and
booleans as in JSON, lists and dicts as JSON).
"""

from __future__ import annotations

import ast
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import EvaluationError, ExpressionError

__all__ = [
    "FUNCTIONS",
    "Expression",
    "Reference",
    "Template",
    "compile_expression",
    "compile_template",
    "contains_expression",
    "render_text",
    "type_name",
]

MAX_SOURCE = 4096  # characters in one expression
MAX_SIZE = 1_000_000  # characters and items an expression may build by `*`, join, replace
MAX_INT_BITS = 256  # integers an expression may build
ROOTS = ("inputs", "steps", "item")
STEP_FIELDS = ("output", "status", "error", "attempts", "duration")
_CONSTANT_NAMES = {"true": True, "false": False, "null": None}
_OPEN = "${{"
_CLOSE = "}}"

Scope = Mapping[str, Any]
_Fn = Callable[[Scope], Any]


@dataclass(frozen=True, slots=True)
class Reference:
    """A static reference an expression makes: ``steps.<id>`` or ``inputs.<name>``."""

    root: str
    key: str | None
    field: str | None = None


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


def _len(value: Any) -> int:
    if isinstance(value, str | Mapping | Sequence):
        return len(value)
    raise EvaluationError(f"len() needs a string, list or object, got {type_name(value)}")


def _str_fn(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(value: Any, *args: Any) -> Any:
        if not isinstance(value, str):
            raise EvaluationError(f"{name}() needs a string, got {type_name(value)}")
        for arg in args:
            if not isinstance(arg, str):
                raise EvaluationError(f"{name}() needs string arguments, got {type_name(arg)}")
        return fn(value, *args)

    return call


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item.lower() in container.lower()
    if isinstance(container, Mapping | Sequence):
        return item in container
    raise EvaluationError(f"contains() needs a string, list or object, got {type_name(container)}")


def _join(items: Any, separator: Any = ",") -> str:
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise EvaluationError(f"join() needs a list, got {type_name(items)}")
    if not isinstance(separator, str):
        raise EvaluationError(f"join() needs a string separator, got {type_name(separator)}")
    if len(separator) * max(len(items) - 1, 0) > MAX_SIZE:
        raise EvaluationError(f"join() would build more than {MAX_SIZE:,} characters")
    return separator.join(render_text(i) for i in items)


def _replace(value: Any, old: Any, new: Any) -> str:
    for arg in (value, old, new):
        if not isinstance(arg, str):
            raise EvaluationError(f"replace() needs strings, got {type_name(arg)}")
    grows = (value.count(old) if old else len(value) + 1) * (len(new) - len(old))
    if grows > MAX_SIZE:
        raise EvaluationError(f"replace() would add more than {MAX_SIZE:,} characters")
    return value.replace(old, new)


def _keys(value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        raise EvaluationError(f"keys() needs an object, got {type_name(value)}")
    return list(value.keys())


def _values(value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        raise EvaluationError(f"values() needs an object, got {type_name(value)}")
    return list(value.values())


def _numbers(name: str, fn: Callable[[list[Any]], Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        items = args[0] if len(args) == 1 and isinstance(args[0], Sequence) else args
        if isinstance(items, str) or not items:
            raise EvaluationError(f"{name}() needs a non-empty list of numbers")
        return fn(list(items))

    return call


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str, allow_nan=False)
    except ValueError as exc:
        raise EvaluationError(f"tojson(): {exc}") from None


def _from_json(value: Any) -> Any:
    if not isinstance(value, str):
        raise EvaluationError(f"fromjson() needs a string, got {type_name(value)}")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"fromjson(): not JSON: {exc.msg}") from exc


def _round(value: Any, digits: Any = 0) -> float | int:
    return round(value, int(digits)) if digits else round(value)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": _len,
    "contains": _contains,
    "startswith": _str_fn("startswith", str.startswith),
    "endswith": _str_fn("endswith", str.endswith),
    "lower": _str_fn("lower", str.lower),
    "upper": _str_fn("upper", str.upper),
    "strip": _str_fn("strip", str.strip),
    "split": _str_fn("split", str.split),
    "replace": _replace,
    "join": _join,
    "keys": _keys,
    "values": _values,
    "min": _numbers("min", min),
    "max": _numbers("max", max),
    "sum": _numbers("sum", math.fsum),
    "abs": abs,
    "round": _round,
    "int": int,
    "float": float,
    "str": lambda value: render_text(value),
    "bool": bool,
    "sorted": lambda items: sorted(items),
    "tojson": _to_json,
    "fromjson": _from_json,
}
"""Every function an expression can call. ``default(x, fallback)`` is handled specially:
it yields ``fallback`` when ``x`` is null or cannot be read (e.g. a skipped step)."""

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: operator.contains(b, a),
    ast.NotIn: lambda a, b: not operator.contains(b, a),
}
_SYMBOLS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Invert: "~",
}


# --------------------------------------------------------------------------- compiler


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self.references: list[Reference] = []

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} in expression '{self.source}'")

    def compile(self, node: ast.AST) -> _Fn:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"{_describe(node)} is not allowed")
        return method(node)

    # literals
    def _Constant(self, node: ast.Constant) -> _Fn:
        value = node.value
        if not isinstance(value, str | int | float | bool | type(None)):
            raise self.fail(f"the literal {ast.unparse(node)} is not allowed")
        return lambda scope: value

    def _List(self, node: ast.List | ast.Tuple) -> _Fn:
        items = [self.compile(e) for e in node.elts]
        return lambda scope: [item(scope) for item in items]

    _Tuple = _List

    def _Dict(self, node: ast.Dict) -> _Fn:
        if any(k is None for k in node.keys):
            raise self.fail("'**' unpacking is not allowed")
        pairs = [
            (self.compile(k), self.compile(v)) for k, v in zip(node.keys, node.values, strict=True)
        ]

        def build(scope: Scope) -> dict[str, Any]:
            result = {}
            for key, value in pairs:
                name = key(scope)
                if not isinstance(name, str):
                    raise EvaluationError(f"object keys must be strings, not {type_name(name)}")
                result[name] = value(scope)
            return result

        return build

    # names and access
    def _Name(self, node: ast.Name) -> _Fn:
        name = node.id
        if name in _CONSTANT_NAMES:
            value = _CONSTANT_NAMES[name]
            return lambda scope: value
        if name not in ROOTS:
            raise self.fail(f"unknown name '{name}' (use inputs, steps or item)")
        if name == "item":
            self.references.append(Reference("item", None))
        if name == "steps":
            raise self.fail("'steps' must be followed by a step id, e.g. steps.fetch.output")
        return self._root(name)

    @staticmethod
    def _root(name: str) -> _Fn:

        def read(scope: Scope) -> Any:
            try:
                return scope[name]
            except KeyError:
                raise EvaluationError(f"'{name}' is not available here") from None

        return read

    def _Attribute(self, node: ast.Attribute) -> _Fn:
        return self._access(node, node.value, node.attr)

    def _Subscript(self, node: ast.Subscript) -> _Fn:
        index = node.slice
        if isinstance(index, ast.Slice):
            return self._slice(node, index)
        if isinstance(index, ast.Constant) and isinstance(index.value, str | int):
            if isinstance(index.value, bool):
                raise self.fail("an index must be a string or an integer")
            return self._access(node, node.value, index.value)
        return self._access(node, node.value, None, self.compile(index))

    def _access(
        self, node: ast.AST, base: ast.AST, key: str | int | None, dynamic: _Fn | None = None
    ) -> _Fn:
        if isinstance(key, str) and key.startswith("_"):
            raise self.fail(f"'{key}': names starting with '_' are not allowed")
        self._note_reference(node)
        if isinstance(base, ast.Name) and base.id == "steps":
            get_base = self._root("steps")
        else:
            get_base = self.compile(base)
        text = ast.unparse(base)

        if dynamic is None:

            def read(scope: Scope) -> Any:
                return _lookup(get_base(scope), key, text)
        else:

            def read(scope: Scope) -> Any:
                index = dynamic(scope)
                if isinstance(index, str) and index.startswith("_"):
                    raise EvaluationError(f"'{index}': keys starting with '_' are not allowed")
                return _lookup(get_base(scope), index, text)

        return read

    def _slice(self, node: ast.Subscript, index: ast.Slice) -> _Fn:
        get_base = self.compile(node.value)
        bounds = [
            self.compile(b) if b is not None else None
            for b in (index.lower, index.upper, index.step)
        ]

        def read(scope: Scope) -> Any:
            value = get_base(scope)
            if not isinstance(value, str | Sequence) or isinstance(value, Mapping):
                raise EvaluationError(
                    f"cannot slice {type_name(value)} '{ast.unparse(node.value)}'"
                )
            lo, hi, step = (b(scope) if b else None for b in bounds)
            for bound in (lo, hi, step):
                if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
                    raise EvaluationError("slice bounds must be integers")
            if step == 0:
                raise EvaluationError("a slice step cannot be zero")
            return value[lo:hi:step]

        return read

    def _note_reference(self, node: ast.AST) -> None:
        """Record steps.<id>[.field] / inputs.<name> when `node` is such a chain."""
        chain: list[Any] = []
        current = node
        while True:
            if isinstance(current, ast.Attribute):
                chain.append(current.attr)
                current = current.value
            elif isinstance(current, ast.Subscript):
                s = current.slice
                chain.append(s.value if isinstance(s, ast.Constant) else None)
                current = current.value
            else:
                break
        if not isinstance(current, ast.Name) or current.id not in ("steps", "inputs"):
            return
        chain.reverse()
        if len(chain) == 1 or (current.id == "inputs" and len(chain) >= 1):
            key = chain[0]
            if not isinstance(key, str):
                raise self.fail(
                    f"'{current.id}' must be followed by a fixed name "
                    f"(e.g. {current.id}.name) so dependencies are known"
                )
            if current.id == "inputs" and len(chain) == 1:
                self.references.append(Reference("inputs", key))
            elif current.id == "steps":
                self.references.append(Reference("steps", key))
        elif current.id == "steps" and len(chain) == 2:
            key, attr = chain
            if not isinstance(key, str):
                raise self.fail(
                    "'steps' must be followed by a fixed step id "
                    "(e.g. steps.fetch.output) so dependencies are known"
                )
            self.references.append(Reference("steps", key, attr))

    # operators
    def _BoolOp(self, node: ast.BoolOp) -> _Fn:
        values = [self.compile(v) for v in node.values]
        if isinstance(node.op, ast.And):

            def both(scope: Scope) -> Any:
                result: Any = True
                for v in values:
                    result = v(scope)
                    if not result:
                        return result
                return result

            return both

        def either(scope: Scope) -> Any:
            result: Any = False
            for v in values:
                result = v(scope)
                if result:
                    return result
            return result

        return either

    def _UnaryOp(self, node: ast.UnaryOp) -> _Fn:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda scope: not operand(scope)
        if isinstance(node.op, ast.USub):
            return lambda scope: _arith(operator.neg, "-", operand(scope))
        if isinstance(node.op, ast.UAdd):
            return lambda scope: _arith(operator.pos, "+", operand(scope))
        raise self.fail(f"the operator '{_SYMBOLS.get(type(node.op), '?')}' is not allowed")

    def _BinOp(self, node: ast.BinOp) -> _Fn:
        fn = _BINOPS.get(type(node.op))
        symbol = _SYMBOLS.get(type(node.op), "?")
        if fn is None:
            raise self.fail(f"the operator '{symbol}' is not allowed")
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda scope: _arith(fn, symbol, left(scope), right(scope))

    def _Compare(self, node: ast.Compare) -> _Fn:
        ops = []
        for op in node.ops:
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise self.fail(f"the comparison '{_SYMBOLS.get(type(op), '?')}' is not allowed")
            ops.append(fn)
        left = self.compile(node.left)
        rights = [self.compile(c) for c in node.comparators]
        text = self.source

        def compare(scope: Scope) -> bool:
            a = left(scope)
            for fn, right in zip(ops, rights, strict=True):
                b = right(scope)
                try:
                    if not fn(a, b):
                        return False
                except TypeError as exc:
                    raise EvaluationError(
                        f"cannot compare {type_name(a)} with {type_name(b)} in '{text}'"
                    ) from exc
                a = b
            return True

        return compare

    def _IfExp(self, node: ast.IfExp) -> _Fn:
        test, body, orelse = (self.compile(n) for n in (node.test, node.body, node.orelse))
        return lambda scope: body(scope) if test(scope) else orelse(scope)

    def _Call(self, node: ast.Call) -> _Fn:
        if not isinstance(node.func, ast.Name):
            raise self.fail(
                "only the built-in functions can be called, by name, e.g. "
                "len(x); methods and other callables cannot"
            )
        name = node.func.id
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes plain positional arguments only")
        args = [self.compile(a) for a in node.args]
        if name == "default":
            if len(args) != 2:
                raise self.fail("default() takes two arguments: default(value, fallback)")
            value, fallback = args

            def default(scope: Scope) -> Any:
                try:
                    result = value(scope)
                except EvaluationError:
                    return fallback(scope)
                return fallback(scope) if result is None else result

            return default
        fn = FUNCTIONS.get(name)
        if fn is None:
            known = ", ".join(sorted([*FUNCTIONS, "default"]))
            raise self.fail(f"unknown function '{name}' (known: {known})")

        def call(scope: Scope) -> Any:
            values = [a(scope) for a in args]
            try:
                return fn(*values)
            except EvaluationError:
                raise
            except (TypeError, ValueError, OverflowError) as exc:
                raise EvaluationError(f"{name}() failed: {exc}") from exc

        return call


def _describe(node: ast.AST) -> str:
    kinds = {
        "Lambda": "a lambda",
        "ListComp": "a comprehension",
        "DictComp": "a comprehension",
        "SetComp": "a comprehension",
        "GeneratorExp": "a generator",
        "Await": "'await'",
        "NamedExpr": "':='",
        "JoinedStr": "an f-string",
        "Starred": "'*' unpacking",
        "Set": "a set literal",
        "Yield": "'yield'",
        "YieldFrom": "'yield'",
    }
    return kinds.get(type(node).__name__, f"'{ast.unparse(node)}'")


def _show(value: Any, limit: int = 60) -> str:
    """A short, safe repr for messages (huge ints cannot even be printed)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<a {type_name(value)}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _lookup(base: Any, key: Any, text: str) -> Any:
    if isinstance(base, Mapping):
        try:
            return base[key]
        except KeyError:
            keys = ", ".join(sorted(map(str, base))[:20]) or "none"
            raise EvaluationError(f"'{text}' has no key {_show(key)} (keys: {keys})") from None
        except TypeError:
            raise EvaluationError(f"{_show(key)} cannot be a key of '{text}'") from None
    if isinstance(base, Sequence):
        if not isinstance(key, int) or isinstance(key, bool):
            raise EvaluationError(
                f"'{text}' is a {type_name(base)}; index it with an integer, not {_show(key)}"
            )
        try:
            return base[key]
        except IndexError:
            raise EvaluationError(
                f"'{text}' has {len(base)} items; index {_show(key)} is out of range"
            ) from None
    raise EvaluationError(f"cannot read {_show(key)} of '{text}': it is {type_name(base)}")


def _deep_size(value: Any, budget: int) -> int:
    """Characters and items in ``value``, counting shared parts each time they appear, up
    to ``budget`` (it stops counting there, so huge values cost no more than the budget)."""
    total = 0
    stack = [value]
    while stack and total <= budget:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def _arith(fn: Callable[..., Any], symbol: str, *operands: Any) -> Any:
    for operand in operands:
        if not isinstance(operand, int | float | str | list):
            raise EvaluationError(f"'{symbol}' cannot take {type_name(operand)}")
    if symbol == "%" and isinstance(operands[0], str):
        raise EvaluationError("'%' is for numbers; build text with ${{ }} interpolation or join()")
    if (
        symbol == "+"
        and all(isinstance(o, str | list) for o in operands)
        and sum(len(o) for o in operands) > MAX_SIZE
    ):
        raise EvaluationError(f"'+' would build more than {MAX_SIZE:,} items")
    if symbol == "*" and any(isinstance(o, str | list) for o in operands):
        count = next((o for o in operands if isinstance(o, int)), 1)
        sized = next(o for o in operands if isinstance(o, str | list))
        if _deep_size(sized, MAX_SIZE) * max(count, 0) > MAX_SIZE:
            raise EvaluationError(f"'*' would build more than {MAX_SIZE:,} items")
    if (
        symbol == "*"
        and all(isinstance(o, int) for o in operands)
        and sum(abs(o).bit_length() for o in operands) > MAX_INT_BITS
    ):
        raise EvaluationError(f"'*' would build a number of more than {MAX_INT_BITS} bits")
    try:
        result = fn(*operands)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        kinds = " and ".join(type_name(o) for o in operands)
        raise EvaluationError(f"'{symbol}' failed on {kinds}: {exc}") from exc
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise EvaluationError(f"'{symbol}' built a number of more than {MAX_INT_BITS} bits")
    return result


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class Expression:
    """One compiled expression. Call :meth:`evaluate` with a scope of JSON data."""

    source: str
    references: tuple[Reference, ...]
    _fn: _Fn = field(repr=False, compare=False)

    def evaluate(self, scope: Scope) -> Any:
        try:
            return self._fn(scope)
        except EvaluationError as exc:
            raise EvaluationError(f"{exc.message} (in '${{{{ {self.source} }}}}')") from None
        except RecursionError:
            raise EvaluationError(f"'${{{{ {self.source} }}}}' nests too deeply") from None
        except (ArithmeticError, LookupError, TypeError, ValueError, MemoryError) as exc:
            # A safety net: the language's own checks should have caught this first.
            raise EvaluationError(
                f"'${{{{ {self.source} }}}}' failed: {type(exc).__name__}: {exc}"
            ) from None


def compile_expression(source: str) -> Expression:
    """Compile the text between ``${{`` and ``}}``. Raises :class:`ExpressionError`."""
    text = source.strip()
    if not text:
        raise ExpressionError("empty expression '${{ }}'")
    if len(text) > MAX_SOURCE:
        raise ExpressionError(f"expression is longer than {MAX_SOURCE} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"invalid expression '{text}': {exc.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ExpressionError(f"invalid expression '{text[:80]}'") from None
    compiler = _Compiler(text)
    try:
        fn = compiler.compile(tree.body)
    except RecursionError:
        raise ExpressionError(f"expression '{text[:80]}...' nests too deeply") from None
    return Expression(text, tuple(dict.fromkeys(compiler.references)), fn)


def contains_expression(value: str) -> bool:
    return _OPEN in value


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``${{ }}`` parts. ``whole`` is set when it is exactly one expression."""

    parts: tuple[str | Expression, ...]
    whole: Expression | None

    @property
    def expressions(self) -> list[Expression]:
        return [p for p in self.parts if isinstance(p, Expression)]

    def render(self, scope: Scope) -> Any:
        if self.whole is not None:
            return self.whole.evaluate(scope)
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = part.evaluate(scope)
            try:
                pieces.append(render_text(value))
            except ValueError as exc:  # e.g. an integer too long to print
                raise EvaluationError(
                    f"'${{{{ {part.source} }}}}' cannot be written as text: {exc}"
                ) from None
        return "".join(pieces)


def compile_template(text: str) -> Template:
    """Split ``text`` into literal parts and expressions. Raises :class:`ExpressionError`."""
    parts: list[str | Expression] = []
    position = 0
    while True:
        start = text.find(_OPEN, position)
        if start < 0:
            parts.append(text[position:])
            break
        end = text.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            raise ExpressionError(f"'${{{{' at character {start + 1} is never closed with '}}}}'")
        parts.append(text[position:start])
        parts.append(compile_expression(text[start + len(_OPEN) : end]))
        position = end + len(_CLOSE)
    parts = [p for p in parts if p != ""]
    # Whitespace around a single expression (such as the newline a YAML `|` block ends
    # with) does not make it text.
    core = [p for p in parts if not (isinstance(p, str) and not p.strip())]
    whole = core[0] if len(core) == 1 and isinstance(core[0], Expression) else None
    return Template(tuple(parts), whole)


def render_text(value: Any) -> str:
    """How a value reads inside a longer string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)
