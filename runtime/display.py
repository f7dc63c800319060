"""Showing values in a terminal: outside text made harmless, values made readable.

Text that came from outside — tool output, model replies, files, plan names, error messages
that quote any of those — can carry what a terminal acts on instead of showing: ANSI CSI
and OSC sequences (colours, cursor moves, OSC 8 hyperlinks, OSC 52 clipboard writes), other
C0 and C1 control characters, and bidi overrides that reorder what is read (U+202A-U+202E,
U+2066-U+2069). It can also carry Rich markup (``[link=...]``, an unmatched ``[/bold]``)
that Rich would act on, or fail on. Everything the CLI shows goes through here:

- :func:`safe_text` shows each such character as its escape (ESC as ``\\x1b``, U+202E as
  ``\\u202e``), so a sequence is printed, never performed. The result is plain text: give
  it to :class:`rich.text.Text` (which never reads markup), or use :func:`safe_markup`
  inside a markup string.
- :func:`safe_json` writes a value (or a pydantic model) as JSON text in printable ASCII:
  JSON escapes C0 controls itself; every other character past ``~`` (DEL, C1 controls,
  bidi controls, any other non-ASCII) is written as its ``\\uXXXX`` escape, which JSON
  readers turn back into the same text. Every ``--json`` output goes through it.
- :func:`safe_log_event` is a structlog processor doing the same for log lines: every
  key and value a step or tool logs is shown escaped, and cut to :data:`MAX_LOG_CHARS`
  characters (a traceback to :data:`MAX_TRACEBACK_CHARS`) with a marker saying how much
  was cut: a tool may log a message of millions of characters, a line shows the start.
- :func:`render_value` draws a value: a scalar as itself, a list of flat records as a
  table, anything else as indented JSON; :func:`inline_value` gives one line of it. Both
  are bounded: long strings, long lists and deep nesting are cut with a marker saying how
  much was cut.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .bounds import deep_size

__all__ = [
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_LOG_CHARS",
    "MAX_STRING",
    "MAX_TRACEBACK_CHARS",
    "cut",
    "indented",
    "inline_value",
    "render_value",
    "safe_json",
    "safe_log_event",
    "safe_markup",
    "safe_text",
]

MAX_CHARS = 4000  # characters of one rendered value
MAX_STRING = 500  # characters of one string inside a value
MAX_ITEMS = 50  # items of a list, or keys of a mapping, shown
MAX_DEPTH = 6  # levels of nesting shown
MAX_COLUMNS = 12  # columns of a table of records; more and it is shown as JSON
MAX_LOG_CHARS = 2000  # characters of one value of a log line (a notify.log message, say)
MAX_TRACEBACK_CHARS = 20_000  # characters of a traceback in a log line

# C0 controls but newline and tab, DEL, C1 controls, bidi embeddings/overrides/isolates, and
# the line and paragraph separators (which some terminals take as a line break).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_ONE_LINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)  # newline and tab too


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str, *, one_line: bool = False, limit: int | None = None) -> str:
    """``text`` with every character a terminal would act on shown as its escape: C0 and
    C1 controls (so every ANSI CSI/OSC sequence), DEL, bidi controls and line separators.
    Newlines and tabs stay unless ``one_line``; a CR of a CRLF is dropped. ``limit`` cuts
    the text (see :func:`cut`) before it is made safe. Rich markup is left as it is: show
    the result as a :class:`~rich.text.Text`, or use :func:`safe_markup`."""
    if limit is not None:
        text = cut(text, limit)
    if one_line:
        return _UNSAFE_ONE_LINE.sub(_visible, text)
    return _UNSAFE.sub(_visible, text.replace("\r\n", "\n"))


def safe_markup(text: str, *, one_line: bool = False, limit: int | None = None) -> str:
    """:func:`safe_text`, escaped for use inside a Rich markup string."""
    return escape(safe_text(text, one_line=one_line, limit=limit))


_NOT_ASCII = re.compile("[^\x00-\x7e]")


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # past the BMP: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def safe_json(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as JSON text safe to print: printable ASCII, newlines and spaces only.

    A pydantic model is written by its ``to_json()`` if it has one (a :class:`RunResult`
    cuts what is too deep to write) or else ``model_dump_json``; anything else by
    :func:`json.dumps`, with what JSON cannot hold written as its text. Then every
    character past ``~`` is written as its ``\\u`` escape (a JSON text holds such
    characters only inside strings, where the escape means the same character), so the
    text reads back exactly, and no terminal acts on it."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        text = to_json(indent=indent)
    elif hasattr(value, "model_dump_json"):
        text = value.model_dump_json(indent=indent)
    else:
        text = json.dumps(value, indent=indent, default=str)
    return _NOT_ASCII.sub(_json_escape, text)


def safe_log_event(logger: Any, method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """A structlog processor (put it just before the renderer): every key and string of
    the event shown as :func:`safe_text` does, other values as their escaped ``repr``, and
    an exception as its escaped traceback under ``exception``. Each is cut (see
    :func:`cut`) to :data:`MAX_LOG_CHARS` characters, a traceback to
    :data:`MAX_TRACEBACK_CHARS`; a large value is shown as its start at the cost of its
    start only."""
    shown: dict[str, Any] = {}
    for key, value in event.items():
        name = safe_text(str(key), one_line=True, limit=MAX_LOG_CHARS)
        if key == "exc_info" and value:
            if value is True:
                value = sys.exc_info()
            elif isinstance(value, BaseException):
                value = (type(value), value, value.__traceback__)
            if isinstance(value, tuple) and value[0] is not None:
                shown["exception"] = safe_text(
                    "".join(traceback.format_exception(*value)), limit=MAX_TRACEBACK_CHARS
                )
            continue
        if isinstance(value, str):
            long = key in ("exception", "stack")
            shown[name] = safe_text(
                value, one_line=not long, limit=MAX_TRACEBACK_CHARS if long else MAX_LOG_CHARS
            )
        elif value is None or isinstance(value, bool | int | float):
            shown[name] = value
        else:
            shown[name] = safe_text(_short_repr(value), one_line=True, limit=MAX_LOG_CHARS)
    return shown


def _short_repr(value: Any) -> str:
    """``repr(value)``, or for a large list, tuple or mapping the ``repr`` of its start
    (MAX_ITEMS items a level, MAX_STRING characters a string, with markers): what a log line
    shows of it, without writing all of it first."""
    if isinstance(value, dict | list | tuple) and deep_size(value, MAX_LOG_CHARS) > MAX_LOG_CHARS:
        return repr(_bounded(value, 0))
    return repr(value)


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit:,} more characters cut]"


def _bounded(value: Any, depth: int) -> Any:
    """``value`` as JSON data, with long strings, long lists and deep levels cut."""
    if isinstance(value, str):
        return cut(value, MAX_STRING)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return (
                f"… [an object of {_count(len(value), 'key')}, deeper than {MAX_DEPTH} levels, cut]"
            )
        shown = {str(k): _bounded(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
        if len(value) > MAX_ITEMS:
            shown["…"] = f"[{len(value) - MAX_ITEMS} more keys cut]"
        return shown
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return (
                f"… [a list of {_count(len(value), 'item')}, deeper than {MAX_DEPTH} levels, cut]"
            )
        items = [_bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"… [{len(value) - MAX_ITEMS} more items cut]")
        return items
    return cut(str(value), MAX_STRING)  # a date, a path: its text, as JSON would hold it


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _scalar(value: Any) -> str:
    """A JSON scalar as a person reads it: a string as itself, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _records(value: Any) -> list[str] | None:
    """The columns of ``value`` if it is a non-empty list of flat records, else None."""
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        return None
    columns: dict[str, None] = {}
    for record in value[:MAX_ITEMS]:
        for key, cell in record.items():
            if isinstance(cell, dict | list | tuple):
                return None
            columns[str(key)] = None
    return list(columns) if 0 < len(columns) <= MAX_COLUMNS else None


def render_value(value: Any, *, limit: int = MAX_CHARS) -> RenderableType:
    """``value`` for a person: a scalar as itself (a string unquoted; ``null``, ``true``,
    numbers as JSON), a list of flat records as a table, anything else as indented JSON.
    Safe to print (see :func:`safe_text`) and bounded: at most ``limit`` characters,
    MAX_ITEMS items and MAX_DEPTH levels, each cut marked."""
    columns = _records(value)
    if columns is not None:
        table = Table()
        for column in columns:  # a header given as a str would be read as markup
            table.add_column(Text(safe_text(column, one_line=True, limit=60)))
        for record in value[:MAX_ITEMS]:
            cells = {str(k): v for k, v in record.items()}
            table.add_row(
                *(
                    Text(safe_text(_scalar(cells[c]), limit=200)) if c in cells else ""
                    for c in columns
                )
            )
        if len(value) > MAX_ITEMS:
            return Group(table, Text(f"… [{len(value) - MAX_ITEMS} more rows cut]"))
        return table
    if isinstance(value, str) or value is None or isinstance(value, bool | int | float):
        return Text(safe_text(_scalar(value), limit=limit))
    text = json.dumps(_bounded(value, 0), indent=2, ensure_ascii=False)
    return Text(safe_text(text, limit=limit))


def inline_value(value: Any, *, limit: int = 160) -> str:
    """``value`` on one line: a scalar as itself, anything else as compact JSON; cut at
    ``limit`` characters with a marker, and safe to print (plain text, not markup)."""
    if isinstance(value, str) or value is None or isinstance(value, bool | int | float):
        text = _scalar(value)
    else:
        text = json.dumps(_bounded(value, 0), ensure_ascii=False)
    return safe_text(text, one_line=True, limit=limit)


def indented(renderable: RenderableType, spaces: int) -> RenderableType:
    """``renderable`` shifted right by ``spaces``; a :class:`~rich.text.Text` line by line,
    so no line gets trailing blanks."""
    if isinstance(renderable, Text):
        pad = " " * spaces
        return Text("\n").join(Text(pad) + line for line in renderable.split("\n"))
    return Padding(renderable, (0, 0, 0, spaces), expand=False)
