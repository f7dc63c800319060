"""Tool selection: when many tools are installed, a planner is shown only those relevant
to the goal, so its prompt (and its output grammar) stays small.

Each tool is a document (:class:`dagentic.retrieval.Document`) of four fields: its name;
the first sentence of its description (what it is for); the rest of its description, its
argument names and descriptions and what it returns; and the planning context of its
namespace (what ``sql.schema`` says of the tables belongs to every ``sql.*`` tool). The
goal is the query; documents are ranked by the shared retrieval layer
(:mod:`dagentic.retrieval`): BM25F (k1 1.2, b 0.75, each field's length normalised on its
own; a word of the name weighs 3, of the first sentence 2, of the rest 1) over its
:func:`words`. Embedding similarity is not fused in by default (``TOOLS_FUSION``): on the
evaluation set (bench_retrieval.py) every weight given to it made selection worse. The
best ``limit`` are offered, and every ``planning_context`` tool besides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .retrieval import TOOLS_FUSION, Document, Index, words
from .tools import Tool, ToolRegistry

if TYPE_CHECKING:
    from .memory.embeddings import Embedder

__all__ = ["rank_tools", "select_tools", "words"]

WEIGHTS = {"name": 3.0, "summary": 2.0, "rest": 1.0, "context": 1.0}  # of a word of each
CONTEXT_CHARS = 4000  # of a namespace's planning context in its tools' documents

_SENTENCE = re.compile(r"(?<=[.!?])\s")


def _document(tool: Tool, context: Mapping[str, str]) -> Document:
    """A tool's fields: its name, the first sentence of its description, the rest of what
    it says about itself, its namespace's planning context."""
    schema = tool.args_schema()
    summary, *rest = _SENTENCE.split(" ".join(tool.description.split()), maxsplit=1)
    parts = [*rest, tool.returns or ""]
    for name, prop in schema.get("properties", {}).items():
        parts += [name.replace("_", " "), str(prop.get("description") or "")]
    namespace = tool.name.split(".", 1)[0]
    known = [
        text[:CONTEXT_CHARS] for name, text in context.items() if name.split(".", 1)[0] == namespace
    ]
    fields = {
        "name": tool.name.replace(".", " ").replace("_", " "),
        "summary": summary,
        "rest": " ".join(parts),
        "context": " ".join(known),
    }
    return Document(tool.name, fields, tool)


def rank_tools(
    tools: Iterable[Tool],
    goal: str,
    context: Mapping[str, str] | None = None,
    *,
    embedder: Embedder | None = None,
    fusion: tuple[float, float] = TOOLS_FUSION,
) -> list[tuple[float, Tool]]:
    """Every tool with its score for ``goal``, best first (ties by name): its BM25F score,
    or its fused score with an ``embedder`` and a ``fusion`` that weighs the embedding
    (:mod:`dagentic.retrieval`)."""
    listed = sorted(tools, key=lambda t: t.name)
    index = Index(
        (_document(t, context or {}) for t in listed),
        weights=WEIGHTS,
        embedder=embedder,
        fusion=fusion,
    )
    fused = embedder is not None and fusion[1] > 0
    hits = index.rank(goal, mode="fused" if fused else "lexical")
    return [(h.score if fused else h.lexical, h.document.data) for h in hits]


def select_tools(
    tools: ToolRegistry,
    goal: str,
    *,
    limit: int,
    context: Mapping[str, str] | None = None,
    embedder: Embedder | None = None,
) -> ToolRegistry:
    """The ``limit`` tools of ``tools`` most relevant to ``goal``, and every planning-context
    tool. ``context`` maps planning-context tools to their output (their namespace's tools
    are found by what it says)."""
    always = [t for t in tools if t.planning_context]
    ranked = rank_tools(
        (t for t in tools if not t.planning_context), goal, context, embedder=embedder
    )
    return ToolRegistry([*always, *(t for _, t in ranked[:limit])])
