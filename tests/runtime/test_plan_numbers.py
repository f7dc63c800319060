"""Numbers in plan files: YAML reads plain scalars such as ``1:59:59`` (base 60), ``0x...``
and long digit strings as numbers, at a cost that grows with the square of their length,
and Python refuses ints of more than 4300 digits with a traceback. A plan's numbers are
short: a longer one is refused where it stands, before it is converted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dagentic import Executor, PlanError, load_tools
from dagentic.source import MAX_NUMBER_CHARS

from tests import cli
from tests.blind import blind_settings

SAFETY_NET = 30.0  # seconds; each case takes milliseconds


def plan(value: str) -> str:
    return (
        "name: numbers\n"
        "steps:\n"
        "  - id: a\n"
        "    tool: notify.log\n"
        f"    args: {{message: m, data: {{n: {value}}}}}\n"
    )


def refusal(value: str) -> str:
    return (
        f"a number of {len(value):,} characters; a plan's numbers may have at most "
        f"{MAX_NUMBER_CHARS} characters: quote it to pass it as a string"
    )


LONG_NUMBERS = {
    "base 60 (YAML 1.1)": "1" + ":59" * 330_000,
    "decimal": "9" * 5000,
    "decimal, with underscores": "1_000" * 1000,
    "hexadecimal": "0x" + "f" * 5000,
    "octal": "0" + "7" * 5000,
    "float": "1." + "5" * 5000,
    "float, base 60": "1" + ":59" * 5000 + ".5",
    "signed": "-" + "9" * 200,
}


@pytest.mark.parametrize("value", LONG_NUMBERS.values(), ids=list(LONG_NUMBERS))
def test_a_long_number_is_refused_where_it_stands(value: str, tmp_path: Path) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(plan(value))
    start = time.monotonic()
    with pytest.raises(PlanError) as info:
        Executor(load_tools(), settings=blind_settings()).compile(path)
    assert time.monotonic() - start < SAFETY_NET
    assert [str(p) for p in info.value.problems] == [f"{path}:5:34: {refusal(value)}"]


def test_a_long_number_as_a_key_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "numbers.yaml"
    key = "7" * 5000
    path.write_text(plan("1").replace("n: 1", f"{key}: 1"))
    with pytest.raises(PlanError) as info:
        Executor(load_tools(), settings=blind_settings()).compile(path)
    assert [str(p) for p in info.value.problems] == [f"{path}:5:31: {refusal(key)}"]


def test_validate_exits_2_with_the_located_message_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.isolate(tmp_path, monkeypatch)
    value = "9" * 5000
    (tmp_path / "numbers.yaml").write_text(plan(value))
    result = cli.invoke("validate", "numbers.yaml")
    assert result.exit_code == 2
    assert result.output == f"numbers.yaml:5:34: {refusal(value)}\n"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12),
        ("-0x1F", -31),
        ("1_000_000", 1_000_000),
        ("3.25", 3.25),
        ("1.5e+3", 1500.0),
        ("1:30", 90),  # YAML 1.1 base 60, as PyYAML reads it
        ('"' + "9" * 5000 + '"', "9" * 5000),  # quoted: a string, whatever its length
        ("9" * MAX_NUMBER_CHARS, int("9" * MAX_NUMBER_CHARS)),
    ],
)
def test_ordinary_numbers_and_quoted_digits_read_as_before(
    text: str, value: object, tmp_path: Path
) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(plan(text))
    compiled = Executor(load_tools(), settings=blind_settings()).compile(path)
    assert compiled.plan.steps[0].args["data"] == {"n": value}
