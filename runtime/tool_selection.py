"""Tool selection: when many tools are installed, a planner is shown only those relevant
to the goal, so its prompt (and its output grammar) stays small.

Each tool is a document of four fields: its name; the first sentence of its description
(what it is for); the rest of its description, its argument names and descriptions and
what it returns; and the planning context of its namespace (what ``sql.schema`` says of
the tables belongs to every ``sql.*`` tool). The goal is the query; documents are ranked
by BM25F (k1 1.2, b 0.75, each field's length normalised on its own; a word of the name
weighs 3, of the first sentence 2, of the rest 1) over lower-cased words without common
ones, plural and -ing/-ed endings cut. The best ``limit`` are offered, and every ``planning_context`` tool besides.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

from .tools import Tool, ToolRegistry

__all__ = ["rank_tools", "select_tools", "words"]

K1, B = 1.2, 0.75
WEIGHTS = (3.0, 2.0, 1.0, 1.0)  # of a word of the name, first sentence, rest, context
CONTEXT_CHARS = 4000  # of a namespace's planning context in its tools' documents
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its me of on or "  # noqa: SIM905
    "our show so than that the their them then there these this to us was we what when "
    "where which who why will with you your about after all any each every if into "
    "more most only other over per some such very".split()
)


_ENDINGS = (
    ("ies", "y"),
    ("sses", "ss"),
    ("xes", "x"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("ing", ""),
    ("ed", ""),
    ("s", ""),
)


def _stem(word: str) -> str:
    for ending, keep in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3 and not word.endswith("ss"):
            return word[: -len(ending)] + keep
    return word


def words(text: str) -> list[str]:
    """The words of ``text`` as the ranking compares them."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


_SENTENCE = re.compile(r"(?<=[.!?])\s")


def _fields(tool: Tool, context: Mapping[str, str]) -> tuple[list[str], ...]:
    """A tool's words: of its name, of the first sentence of its description, of the rest
    of what it says about itself, of its namespace's planning context."""
    schema = tool.args_schema()
    summary, *rest = _SENTENCE.split(" ".join(tool.description.split()), maxsplit=1)
    parts = [*rest, tool.returns or ""]
    for name, prop in schema.get("properties", {}).items():
        parts += [name.replace("_", " "), str(prop.get("description") or "")]
    namespace = tool.name.split(".", 1)[0]
    known = [
        text[:CONTEXT_CHARS] for name, text in context.items() if name.split(".", 1)[0] == namespace
    ]
    return (
        words(tool.name.replace(".", " ").replace("_", " ")),
        words(summary),
        words(" ".join(parts)),
        words(" ".join(known)),
    )


def rank_tools(
    tools: Iterable[Tool], goal: str, context: Mapping[str, str] | None = None
) -> list[tuple[float, Tool]]:
    """Every tool with its BM25F score for ``goal``, best first (ties by name)."""
    listed = list(tools)
    documents = [_fields(t, context or {}) for t in listed]
    if not documents:
        return []
    averages = []
    for field in range(len(WEIGHTS)):
        lengths = [len(d[field]) for d in documents if d[field]]
        averages.append(sum(lengths) / len(lengths) if lengths else 1.0)
    frequency: Counter[str] = Counter()
    for document in documents:
        frequency.update(set().union(*document))
    query = set(words(goal))
    count = len(documents)
    ranked = []
    for tool, document in zip(listed, documents, strict=True):
        counted = [Counter(f) for f in document]
        score = 0.0
        for word in query:
            tf = sum(
                weight * terms[word] / (1 - B + B * len(field) / average)
                for weight, terms, field, average in zip(
                    WEIGHTS, counted, document, averages, strict=True
                )
                if terms.get(word)
            )
            if tf:
                idf = math.log(1 + (count - frequency[word] + 0.5) / (frequency[word] + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1)
        ranked.append((score, tool))
    ranked.sort(key=lambda pair: (-pair[0], pair[1].name))
    return ranked


def select_tools(
    tools: ToolRegistry, goal: str, *, limit: int, context: Mapping[str, str] | None = None
) -> ToolRegistry:
    """The ``limit`` tools of ``tools`` most relevant to ``goal``, and every planning-context
    tool. ``context`` maps planning-context tools to their output (their namespace's tools
    are found by what it says)."""
    always = [t for t in tools if t.planning_context]
    ranked = [t for _, t in rank_tools((t for t in tools if not t.planning_context), goal, context)]
    return ToolRegistry([*always, *ranked[:limit]])
