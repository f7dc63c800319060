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

Every operation is paid for before it runs (see :mod:`dagentic.bounds`): what an
expression builds, the integers it computes with and the work of one resolution are
bounded, and a limit passed is an :class:`~dagentic.errors.EvaluationError` naming the
operation and the expression.

A value that is exactly one ``${{ }}`` keeps the expression's type; an expression inside a
longer string is interpolated as text (strings as is, ``null`` as empty, numbers and
booleans as in JSON, lists and dicts as JSON).
"""

from __future__ import annotations

import ast
import heapq
import operator
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._functions import FUNCTIONS, as_text, check_bits, checked, render_text, type_name
from .bounds import MAX_EXPRESSION_SIZE, MAX_INT_BITS, Allowance, LimitError
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
ROOTS = ("inputs", "steps", "item")
STEP_FIELDS = ("output", "status", "error", "attempts", "duration")
_CONSTANT_NAMES = {"true": True, "false": False, "null": None}
_OPEN = "${{"
_CLOSE = "}}"

_CONTAINERS = (Mapping, list, tuple)
_PLAIN = frozenset({int, float, bool, type(None)})
Scope = Mapping[str, Any]
_Fn = Callable[[Scope, Allowance], Any]


@dataclass(frozen=True, slots=True)
class Reference:
    """A static reference an expression makes: ``steps.<id>`` or ``inputs.<name>``."""

    root: str
    key: str | None
    field: str | None = None


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
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
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
        compiled: _Fn = method(node)
        return compiled

    # literals
    def _Constant(self, node: ast.Constant) -> _Fn:
        value = node.value
        if not isinstance(value, str | int | float | bool | type(None)):
            raise self.fail(f"the literal {ast.unparse(node)} is not allowed")
        return lambda scope, allowance: value

    def _List(self, node: ast.List | ast.Tuple) -> _Fn:
        items = [self.compile(e) for e in node.elts]
        count = len(items)

        def build(scope: Scope, allowance: Allowance) -> list[Any]:
            allowance.build(count, "a list")
            return [item(scope, allowance) for item in items]

        return build

    _Tuple = _List

    def _Dict(self, node: ast.Dict) -> _Fn:
        keys = [k for k in node.keys if k is not None]
        if len(keys) < len(node.keys):
            raise self.fail("'**' unpacking is not allowed")
        pairs = [(self.compile(k), self.compile(v)) for k, v in zip(keys, node.values, strict=True)]

        def build(scope: Scope, allowance: Allowance) -> dict[str, Any]:
            allowance.build(len(pairs), "an object")
            result = {}
            for key, value in pairs:
                name = key(scope, allowance)
                if not isinstance(name, str):
                    raise EvaluationError(f"object keys must be strings, not {type_name(name)}")
                result[name] = value(scope, allowance)
            return result

        return build

    # names and access
    def _Name(self, node: ast.Name) -> _Fn:
        name = node.id
        if name in _CONSTANT_NAMES:
            value = _CONSTANT_NAMES[name]
            return lambda scope, allowance: value
        if name not in ROOTS:
            raise self.fail(f"unknown name '{name}' (use inputs, steps or item)")
        if name == "item":
            self.references.append(Reference("item", None))
        if name == "steps":
            raise self.fail("'steps' must be followed by a step id, e.g. steps.fetch.output")
        return self._root(name)

    @staticmethod
    def _root(name: str) -> _Fn:

        def read(scope: Scope, allowance: Allowance) -> Any:
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

            def read(scope: Scope, allowance: Allowance) -> Any:
                return _lookup(get_base(scope, allowance), key, text, allowance)
        else:

            def read(scope: Scope, allowance: Allowance) -> Any:
                index = dynamic(scope, allowance)
                if isinstance(index, str) and index.startswith("_"):
                    raise EvaluationError(f"'{index}': keys starting with '_' are not allowed")
                return _lookup(get_base(scope, allowance), index, text, allowance)

        return read

    def _slice(self, node: ast.Subscript, index: ast.Slice) -> _Fn:
        get_base = self.compile(node.value)
        bounds = [
            self.compile(b) if b is not None else None
            for b in (index.lower, index.upper, index.step)
        ]

        def read(scope: Scope, allowance: Allowance) -> Any:
            value = get_base(scope, allowance)
            if not isinstance(value, str | Sequence) or isinstance(value, Mapping):
                raise EvaluationError(
                    f"cannot slice {type_name(value)} '{ast.unparse(node.value)}'"
                )
            lo, hi, step = (b(scope, allowance) if b else None for b in bounds)
            for bound in (lo, hi, step):
                if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
                    raise EvaluationError("slice bounds must be integers")
            if step == 0:
                raise EvaluationError("a slice step cannot be zero")
            allowance.build(len(range(len(value))[lo:hi:step]), "a slice")
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

            def both(scope: Scope, allowance: Allowance) -> Any:
                result: Any = True
                for v in values:
                    result = v(scope, allowance)
                    if not result:
                        return result
                return result

            return both

        def either(scope: Scope, allowance: Allowance) -> Any:
            result: Any = False
            for v in values:
                result = v(scope, allowance)
                if result:
                    return result
            return result

        return either

    def _UnaryOp(self, node: ast.UnaryOp) -> _Fn:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda scope, allowance: not operand(scope, allowance)
        if isinstance(node.op, ast.USub):
            return lambda scope, allowance: _arith(
                allowance, operator.neg, "-", operand(scope, allowance)
            )
        if isinstance(node.op, ast.UAdd):
            return lambda scope, allowance: _arith(
                allowance, operator.pos, "+", operand(scope, allowance)
            )
        raise self.fail(f"the operator '{_SYMBOLS.get(type(node.op), '?')}' is not allowed")

    def _BinOp(self, node: ast.BinOp) -> _Fn:
        fn = _BINOPS.get(type(node.op))
        symbol = _SYMBOLS.get(type(node.op), "?")
        if fn is None:
            raise self.fail(f"the operator '{symbol}' is not allowed")
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda scope, allowance: _arith(
            allowance, fn, symbol, left(scope, allowance), right(scope, allowance)
        )

    def _Compare(self, node: ast.Compare) -> _Fn:
        ops = []
        for op in node.ops:
            fn = _CMPOPS.get(type(op))
            if fn is None:
                raise self.fail(f"the comparison '{_SYMBOLS.get(type(op), '?')}' is not allowed")
            ops.append((fn, f"'{_SYMBOLS[type(op)]}'", isinstance(op, ast.In | ast.NotIn)))
        left = self.compile(node.left)
        rights = [self.compile(c) for c in node.comparators]
        text = self.source

        def compare(scope: Scope, allowance: Allowance) -> bool:
            a = left(scope, allowance)
            for (fn, symbol, membership), right in zip(ops, rights, strict=True):
                b = right(scope, allowance)
                _pay_comparison(allowance, a, b, symbol, membership)
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
        return lambda scope, allowance: (
            body(scope, allowance) if test(scope, allowance) else orelse(scope, allowance)
        )

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

            def default(scope: Scope, allowance: Allowance) -> Any:
                try:
                    result = value(scope, allowance)
                except LimitError:
                    raise  # a limit is not a missing value
                except EvaluationError:
                    return fallback(scope, allowance)
                return fallback(scope, allowance) if result is None else result

            return default
        fn = FUNCTIONS.get(name)
        if fn is None:
            known = ", ".join(sorted([*FUNCTIONS, "default"]))
            raise self.fail(f"unknown function '{name}' (known: {known})")

        def call(scope: Scope, allowance: Allowance) -> Any:
            values = [a(scope, allowance) for a in args]
            try:
                return fn(allowance, *values)
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


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = 60


def _show(value: Any) -> str:
    """A short repr for messages that costs little whatever the value (a huge list, a
    number too long to print)."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        return f"a number of {value.bit_length()} bits"
    try:
        return _SHOWN.repr(value)
    except ValueError:
        return f"<a {type_name(value)}>"


def _lookup(base: Any, key: Any, text: str, allowance: Allowance) -> Any:
    if isinstance(base, Mapping):
        try:
            return base[key]
        except KeyError:
            allowance.spend(len(base), f"listing the keys of '{text}'")
            keys = ", ".join(heapq.nsmallest(20, map(str, base))) or "none"
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


def _pay_comparison(allowance: Allowance, a: Any, b: Any, symbol: str, membership: bool) -> None:
    """Pay for comparing ``a`` with ``b`` (or looking for ``a`` in ``b``): at most the
    size of what is compared."""
    if type(a) in _PLAIN and type(b) in _PLAIN:
        return  # the common case: numbers, booleans, null
    if membership:
        if isinstance(b, str):
            allowance.read(b, symbol)
        elif isinstance(b, list | tuple):
            allowance.size_of(b, symbol)
        return
    if a is b:
        return
    if isinstance(a, str) and isinstance(b, str):
        allowance.read(a if len(a) < len(b) else b, symbol)
    elif isinstance(a, _CONTAINERS) and isinstance(b, _CONTAINERS):
        allowance.size_of(a, symbol)
        allowance.size_of(b, symbol)


def _arith(allowance: Allowance, fn: Callable[..., Any], symbol: str, *operands: Any) -> Any:
    for operand in operands:
        kind = type(operand)
        if kind is float or kind is str or kind is list:
            continue
        if not isinstance(operand, int | float | str | list):
            raise EvaluationError(f"'{symbol}' cannot take {type_name(operand)}")
        check_bits(operand, f"'{symbol}'")
    if symbol == "%" and isinstance(operands[0], str):
        raise EvaluationError("'%' is for numbers; build text with ${{ }} interpolation or join()")
    if symbol == "+" and all(isinstance(o, str | list) for o in operands):
        allowance.build(sum(len(o) for o in operands), "'+'")
    elif symbol == "*" and any(isinstance(o, str | list) for o in operands):
        count = next((o for o in operands if isinstance(o, int)), 1)
        sized = next(o for o in operands if isinstance(o, str | list))
        if count > 0:  # shared parts count each time: `[[x] * 1000] * 1000` is a million x
            allowance.build(allowance.size_of(sized, "'*'") * count, "'*'")
    elif (
        symbol == "*"
        and all(isinstance(o, int) for o in operands)
        and sum(o.bit_length() for o in operands) > MAX_INT_BITS
    ):
        raise LimitError(f"'*' would build a number of more than {MAX_INT_BITS} bits")
    try:
        result = fn(*operands)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        kinds = " and ".join(type_name(o) for o in operands)
        raise EvaluationError(f"'{symbol}' failed on {kinds}: {exc}") from exc
    return checked(result, f"'{symbol}'")


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class Expression:
    """One compiled expression. Call :meth:`evaluate` with a scope of JSON data."""

    source: str
    references: tuple[Reference, ...]
    _fn: _Fn = field(repr=False, compare=False)

    def evaluate(self, scope: Scope, allowance: Allowance | None = None) -> Any:
        """The expression's value in ``scope``. ``allowance`` is what the resolution it is
        part of may still spend (a fresh one when not given)."""
        if allowance is None:
            allowance = Allowance()
        allowance.start()
        try:
            return self._fn(scope, allowance)
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

    def render(self, scope: Scope, allowance: Allowance | None = None) -> Any:
        """The value (one whole expression) or the text (anything else) in ``scope``; the
        text is at most :data:`MAX_EXPRESSION_SIZE` characters."""
        if allowance is None:
            allowance = Allowance()
        if self.whole is not None:
            return self.whole.evaluate(scope, allowance)
        pieces = []
        room = MAX_EXPRESSION_SIZE
        for part in self.parts:
            if isinstance(part, str):
                text: str | None = part
            else:
                try:
                    text = as_text(part.evaluate(scope, allowance), room)
                except EvaluationError as exc:
                    if not isinstance(exc, LimitError):
                        raise
                    raise EvaluationError(
                        f"'${{{{ {part.source} }}}}' cannot be written as text: {exc.message}"
                    ) from None
            if text is None or len(text) > room:
                where = f"'${{{{ {part.source} }}}}'" if isinstance(part, Expression) else "it"
                raise EvaluationError(
                    f"the text would be longer than {MAX_EXPRESSION_SIZE:,} characters with "
                    f"{where} in it; do large data work in a tool step"
                )
            room -= len(text)
            pieces.append(text)
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
