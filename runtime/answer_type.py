"""What a question asks for, and whether a plan's outputs hold that kind of thing: the
*answer type* check of question answering, run on a library plan a goal was routed to.

"Which customer signed up first?" asks for a customer. A plan whose table has a region,
its manager and two counts answers another question, whichever plan a router chose and
whatever a judge says of its answer. "How many products ..." asks for a count of
products: a numeric column named for products.

- **The question** (:func:`asked_for`): only questions that say what they ask for are
  read: ``which X``, ``how many X``, ``how much X`` (``what X`` is too loose: "what is",
  "what were the best-selling ..."). X is the first two words after the phrase, as the
  retrieval layer reads words (common words left out, plurals cut); none when a verb
  follows the phrase ("how much did the West sell?" names no column).
- **The outputs** (:func:`output_columns`): the columns of the tables among a run's
  outputs (lists of objects, up to :data:`MAX_DEPTH` levels down), each numeric or not
  by its values; and the outputs that are a single value, named by their key, unless the
  value is one of a table's cells (``most_customers: North`` is a region of the table,
  not a customer). Names are read as words too (``signed_up_that_year``: sign, up,
  year).
- **The check** (:func:`answer_misfit`): ``which X`` needs a column named by a word of X
  that holds names, not numbers; ``how many``/``how much X`` needs one that holds
  numbers. Outputs with neither tables nor single values give no verdict, nor do other
  questions; nor does a plan whose own goal asks the very same (phrase and words), as a
  plan saved from a verified run of such a question does.

A plan can fail the check and still be right (a column named ``name`` answers "which
customer"): the agent then plans freely instead, which costs time, never a wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .retrieval import words

__all__ = ["Asked", "answer_misfit", "asked_about", "asked_for", "output_columns"]

MAX_DEPTH = 3  # output, a step's output object, its rows
MAX_ROWS = 1000  # rows of a table read for its columns' kinds
MAX_NAME = 40  # characters of a column's name in a message (names come from tool outputs)
_ASKS = re.compile(r"\b(which|what|how\s+many|how\s+much)\s+(.*)", re.IGNORECASE | re.DOTALL)

_VERBS = frozenset(
    "is are was were be been do does did has have had can could will would shall should may "  # noqa: SIM905
    "might must".split()
)

Kind = Literal["which", "what", "how many", "how much"]


@dataclass(frozen=True)
class Asked:
    """A question's phrase (``which``, ``what``, ``how many``, ``how much``) and the words
    of what it asks for."""

    kind: Kind
    words: tuple[str, ...]


def asked_for(goal: str) -> Asked | None:
    """What ``goal`` asks for, or None when it is not such a question. A phrase followed
    by a verb names nothing ("how much did the West sell?", "which is ..."): no words."""
    found = _ASKS.search(goal)
    if found is None:
        return None
    kind: Kind = " ".join(found.group(1).lower().split())  # type: ignore[assignment]
    rest = found.group(2).split(maxsplit=1)
    if rest and rest[0].lower() in _VERBS:
        return Asked(kind, ())
    return Asked(kind, tuple(words(found.group(2))[:2]))


def asked_about(goal: str) -> list[str]:
    """What a question asks about: the first two words after which, what, how many or how
    much (common words left out), as the retrieval layer reads words; [] for other goals."""
    asked = asked_for(goal)
    return list(asked.words) if asked is not None else []


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _tables(value: Any, depth: int = 0) -> Iterator[list[Mapping[str, Any]]]:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value[:MAX_ROWS]):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tables(item, depth + 1)


def output_columns(outputs: Mapping[str, Any]) -> dict[str, bool | None]:
    """The named columns of ``outputs`` (see the module's doc): name -> holds numbers
    (True), names (False) or only nulls (None)."""
    columns: dict[str, bool | None] = {}
    cells: set[Any] = set()
    for table in _tables(dict(outputs)):
        for row in table[:MAX_ROWS]:
            for name, value in row.items():
                if value is None or isinstance(value, dict | list):
                    columns.setdefault(str(name), None)
                    continue
                cells.add(value)
                seen = columns.get(str(name))
                numeric = _numeric(value)
                columns[str(name)] = numeric if seen is None else seen and numeric
    for name, value in outputs.items():
        single = isinstance(value, str | int | float | Decimal) and not isinstance(value, bool)
        if single and value not in cells and str(name) not in columns:
            columns[str(name)] = _numeric(value)
    return columns


def answer_misfit(
    goal: str, outputs: Mapping[str, Any], plan_goal: str | None = None
) -> str | None:
    """Why ``outputs`` do not hold what ``goal`` asks for (``which``, ``how many``, ``how
    much`` questions), or None: they do, or there is no telling, or the plan's own goal
    ``plan_goal`` asks the very same (phrase and words: a plan saved from "Which region led
    revenue in 2026Q2?" answers "Which region led revenue in 2025Q1?", whatever its
    outputs are named)."""
    asked = asked_for(goal)
    if asked is None or asked.kind == "what" or not asked.words:
        return None
    if plan_goal is not None and asked_for(plan_goal) == asked:
        return None
    columns = output_columns(outputs)
    if not columns:
        return None
    wanted = set(asked.words)
    numbers = asked.kind != "which"
    for name, numeric in columns.items():
        if wanted & set(words(name.replace("_", " "))) and numeric in (numbers, None):
            return None
    names = [n if len(n) <= MAX_NAME else n[: MAX_NAME - 3] + "..." for n in list(columns)[:12]]
    shown = ", ".join(names) + (", ..." if len(columns) > 12 else "")
    return (
        f"it gives {shown}: no column of {'numbers' if numbers else 'names'} is named for "
        f"what the goal asks {asked.kind} of ({', '.join(asked.words)})"
    )
