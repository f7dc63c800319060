"""dagentic.display: outside text shown, never performed, by a terminal or by Rich; values
shown as a person reads them, bounded."""

from __future__ import annotations

import io
import json
import re

import pytest
from dagentic.display import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_LOG_CHARS,
    MAX_STRING,
    MAX_TRACEBACK_CHARS,
    cut,
    indented,
    inline_value,
    render_value,
    safe_log_event,
    safe_markup,
    safe_text,
)
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console, RenderableType
from rich.text import Text

# What a terminal acts on: C0 and C1 controls (every ANSI sequence starts with one), DEL,
# bidi embeddings, overrides and isolates, line and paragraph separators.
ACTED_ON = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown(renderable: RenderableType | str, width: int = 200) -> str:
    """What a plain (no colour) console prints."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    console.print(renderable, soft_wrap=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m", id="CSI colour"),
        pytest.param("\x1b[2J\x1b[H", r"\x1b[2J\x1b[H", id="CSI clear screen"),
        pytest.param(
            "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
            "\\x1b]8;;https://evil.example\\x1b\\click\\x1b]8;;\\x1b\\",
            id="OSC 8 hyperlink",
        ),
        pytest.param(
            "\x1b]52;c;cm0gLXJmIH4=\x07", r"\x1b]52;c;cm0gLXJmIH4=\x07", id="OSC 52 clipboard"
        ),
        pytest.param("\x1b]0;pwned\x07", r"\x1b]0;pwned\x07", id="OSC title"),
        pytest.param("\x9b31mx\x9d8;;u\x9c", r"\x9b31mx\x9d8;;u\x9c", id="C1 CSI OSC ST"),
        pytest.param("\x85\x90\x9f", r"\x85\x90\x9f", id="other C1"),
        pytest.param("a\x00b\x07c\x08d\x7f", r"a\x00b\x07c\x08d\x7f", id="C0 and DEL"),
        pytest.param("paid\rrefunded", r"paid\x0drefunded", id="lone CR"),
        pytest.param("one\r\ntwo", "one\ntwo", id="CRLF"),
        pytest.param("x\x0b\x0cy", r"x\x0b\x0cy", id="VT FF"),
        pytest.param(
            "admin\u202e\u2066txt.exe\u2069\u202a\u202b\u202c\u202d\u2067\u2068",
            r"admin\u202e\u2066txt.exe\u2069\u202a\u202b\u202c\u202d\u2067\u2068",
            id="bidi",
        ),
        pytest.param("a\u2028b\u2029c", r"a\u2028b\u2029c", id="line separators"),
        pytest.param("tab\there\nnext line", "tab\there\nnext line", id="newline and tab stay"),
        pytest.param("héllo — 日本 ✓", "héllo — 日本 ✓", id="unicode stays"),
        pytest.param("[/bold] [link=https://x]y[/link]", "[/bold] [link=https://x]y[/link]"),
    ],
)
def test_safe_text_shows_what_a_terminal_would_act_on(text: str, expected: str) -> None:
    assert safe_text(text) == expected
    assert ACTED_ON.search(safe_text(text)) is None


def test_safe_text_on_one_line_shows_newlines_and_tabs_too() -> None:
    assert safe_text("a\nb\tc\r\nd", one_line=True) == r"a\x0ab\x09c\x0d\x0ad"


def test_safe_text_cuts_before_it_escapes_and_says_how_much() -> None:
    assert safe_text("\x1b" * 10, limit=3) == r"\x1b\x1b\x1b… [7 more characters cut]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[/bold]", r"\[/bold]"),
        ("[link=https://evil.example]click[/link]", r"\[link=https://evil.example]click\[/link]"),
        ("[red]x\x1b[0m", r"\[red]x\x1b[0m"),
        ("path\\", "path\\\\"),  # a trailing backslash would escape what follows it
    ],
)
def test_safe_markup_is_printed_literally_by_rich(text: str, expected: str) -> None:
    assert safe_markup(text) == expected
    assert shown(f"[bold]{safe_markup(text)}[/bold]") == safe_text(text) + "\n"


@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_nothing_a_terminal_acts_on_survives_safe_text(text: str) -> None:
    assert ACTED_ON.search(safe_text(text)) is None
    assert ACTED_ON.search(safe_text(text, one_line=True).replace("\n", "")) is None
    assert "\n" not in safe_text(text, one_line=True)
    printed = shown(Text(safe_text(text)))  # Rich neither fails on it nor adds to it
    assert ACTED_ON.search(printed.replace("\n", "").replace("\t", "")) is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=30,
    )
)
def test_any_json_value_renders_safely(value: object) -> None:
    for renderable in (render_value(value), Text(inline_value(value))):
        printed = shown(renderable)
        assert ACTED_ON.search(printed.replace("\n", "").replace("\t", "")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", "plain text\n"),
        (None, "null\n"),
        (True, "true\n"),
        (42, "42\n"),
        (2.5, "2.5\n"),
        ("[/bold]\x1b]52;c;eA==\x07", "[/bold]\\x1b]52;c;eA==\\x07\n"),
    ],
)
def test_a_scalar_is_shown_as_itself(value: object, expected: str) -> None:
    assert shown(render_value(value)) == expected


def test_a_mapping_is_indented_json_never_a_python_repr() -> None:
    value = {"a": 1, "b": [True, None], "c": {"d": "x\x1by"}}
    assert shown(render_value(value)) == (
        '{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ],\n  "c": {\n    "d": "x\\u001by"\n  }\n}\n'
    )
    assert "'" not in shown(render_value(value))


def test_a_list_of_flat_records_is_a_table() -> None:
    rows = [
        {"region": "EMEA", "revenue": 120.5},
        {"region": "[/bold]\u202e", "revenue": None, "note": "late"},
    ]
    assert shown(render_value(rows)) == (
        "┏━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━┓\n"
        "┃ region        ┃ revenue ┃ note ┃\n"
        "┡━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━┩\n"
        "│ EMEA          │ 120.5   │      │\n"
        "│ [/bold]\\u202e │ null    │ late │\n"
        "└───────────────┴─────────┴──────┘\n"
    )


def test_records_with_nested_values_are_json_not_a_table() -> None:
    assert shown(render_value([{"a": {"b": 1}}])) == (
        '[\n  {\n    "a": {\n      "b": 1\n    }\n  }\n]\n'
    )


def test_long_strings_long_lists_and_deep_values_are_cut_with_a_marker() -> None:
    long = "x" * (MAX_STRING + 7)
    value = {"text": long, "items": list(range(MAX_ITEMS + 3))}
    data = json.loads(shown(render_value(value, limit=100_000)))
    assert data["text"] == "x" * MAX_STRING + "… [7 more characters cut]"
    assert data["items"] == [*range(MAX_ITEMS), "… [3 more items cut]"]

    deep: object = "bottom"
    for _ in range(MAX_DEPTH + 2):
        deep = {"k": deep}
    cut_deep = json.loads(shown(render_value(deep, limit=100_000)))
    for _ in range(MAX_DEPTH):
        cut_deep = cut_deep["k"]
    assert cut_deep == f"… [an object of 1 key, deeper than {MAX_DEPTH} levels, cut]"

    many = {f"k{i}": i for i in range(MAX_ITEMS + 2)}
    assert json.loads(shown(render_value(many)))["…"] == "[2 more keys cut]"

    whole = json.dumps([*range(MAX_ITEMS), "… [150 more items cut]"], indent=2, ensure_ascii=False)
    assert shown(render_value(list(range(200)), limit=20)) == (
        f"{whole[:20]}… [{len(whole) - 20} more characters cut]\n"
    )


def test_a_table_of_many_records_says_how_many_rows_it_left_out() -> None:
    rows = [{"n": i} for i in range(MAX_ITEMS + 5)]
    printed = shown(render_value(rows))
    assert printed.count("│") == 2 * MAX_ITEMS
    assert printed.endswith("└────┘\n… [5 more rows cut]\n")


def test_inline_value_is_one_line_of_json_cut_with_a_marker() -> None:
    assert inline_value({"a": [1, "two"]}) == '{"a": [1, "two"]}'
    assert inline_value("line one\nline two\x1b[2J") == r"line one\x0aline two\x1b[2J"
    assert inline_value(list(range(100)), limit=10) == "[0, 1, 2, … [205 more characters cut]"


def test_cut_keeps_short_text_and_marks_long_text() -> None:
    assert cut("short", 5) == "short"
    assert cut("longer", 4) == "long… [2 more characters cut]"
    assert cut("ab" * 450_000, 2000) == "ab" * 1000 + "… [898,000 more characters cut]"


def test_a_log_event_keeps_short_values_whole() -> None:
    event = {"event": "hello\x1b[2J", "n": 3, "ok": None, "data": {"a": [1, 2]}}
    assert safe_log_event(None, "info", event) == {
        "event": r"hello\x1b[2J",
        "n": 3,
        "ok": None,
        "data": r"{'a': [1, 2]}",
    }


def test_a_log_event_shows_a_huge_message_cut_with_how_much_was_left_out() -> None:
    event = {"event": "ab" * 450_000, "run_id": "r", "k" * 5000: "v"}
    shown = safe_log_event(None, "info", event)
    assert shown["event"] == "ab" * 1000 + "… [898,000 more characters cut]"
    assert shown["run_id"] == "r"
    assert "k" * MAX_LOG_CHARS + "… [3,000 more characters cut]" in shown


def test_a_log_event_shows_the_start_of_a_huge_value_without_writing_it_all() -> None:
    rows = [{"id": i, "name": "x" * 1000} for i in range(100_000)]  # a 100 MB repr
    shown = safe_log_event(None, "info", {"event": "rows", "rows": rows})["rows"]
    assert len(shown) <= MAX_LOG_CHARS + 40
    assert shown.startswith(
        "[{'id': 0, 'name': '" + "x" * MAX_STRING + "… [500 more characters cut]'}"
    )
    assert shown.endswith(" more characters cut]")


def test_a_log_events_traceback_is_cut_at_its_own_bound() -> None:
    try:
        raise ValueError("v" * 100_000)
    except ValueError as exc:
        shown = safe_log_event(None, "error", {"event": "boom", "exc_info": exc})
    assert shown["exception"].startswith("Traceback (most recent call last):")
    assert len(shown["exception"]) <= MAX_TRACEBACK_CHARS + 40
    assert shown["exception"].endswith(" more characters cut]")


def test_indented_shifts_each_line_without_trailing_blanks() -> None:
    assert shown(indented(Text("a\nbb"), 2)) == "  a\n  bb\n"
