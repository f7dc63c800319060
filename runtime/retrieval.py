"""One retrieval layer: the tokenizer, BM25F over fielded documents, embedding similarity
and the rule that fuses them, shared by tool selection (:mod:`dagentic.tool_selection`),
long-term memory recall (:mod:`dagentic.memory.store`, which runs the same rule in DuckDB
SQL) and plan routing (the plan library ranks its plans by goal).

Usage::

    from dagentic.retrieval import Document, Index, plan_document

    index = Index(
        [
            Document("revenue", {"name": "revenue", "description": "Revenue by region ..."}),
            Document("news", "What the news says about a region"),  # one field, "text"
        ],
        weights={"name": 3.0, "description": 1.0},  # a word of a field weighs this much
        embedder=None,  # or a dagentic.memory.Embedder: embedding scores fused in
        fusion=ROUTING_FUSION,  # (lexical, embedding) weights: the default
    )
    for hit in index.rank("Which region led revenue in 2026Q2?", k=3):
        hit.id, hit.score, hit.lexical_rank, hit.vector_rank, hit.lexical, hit.vector

    # plans: the fields (goal, description, name, inputs, tools) and their weights are set
    plan = plan_document("revenue", goal="...", description="...", inputs=["quarter"],
                         tools=["sql.query"])
    hits = Index([plan, ...], weights=PLAN_WEIGHTS).rank(goal, k=3)

How documents are ranked:

- **Words** (:func:`words`): lower-cased runs of letters and digits (any script), common
  English words left out, plural and -ing/-ed endings cut, words over 40 characters
  dropped. A query is read up to :data:`MAX_QUERY_CHARS` characters and its first
  :data:`MAX_QUERY_TERMS` distinct words (:func:`query_terms`): a huge query costs no more
  than that.
- **Lexical**: BM25F (k1 1.2, b 0.75), each field's length normalised on its own, a word of
  a field weighing its field's weight (1 when not given). Only documents sharing a word
  with the query have a lexical rank.
- **Embedding** (with an ``embedder``): cosine similarity of the query's and each
  document's embedding (of its fields' text, joined; vectors cached per text and
  embedder).
- **Fusion**: calibrated score fusion, ``score = w_lex * lexical / best_lexical + w_vec *
  max(cosine, 0)``: the BM25F score as a share of the query's best one, and the cosine,
  both in [0, 1], weighted (:func:`fuse`). Ties keep the documents' order. Each user's
  weights were chosen on its evaluation set in ``tests/benchmarks/retrieval_sets``,
  among those with which the fused ranking is never worse than either list alone
  (``bench_retrieval.py`` prints the comparison, reciprocal rank fusion included):
  :data:`ROUTING_FUSION` (the default; the best MRR there), :data:`MEMORY_FUSION`
  (memory recall, whose SQL computes the same; the only weights of the grid never
  worse there), :data:`TOOLS_FUSION` (tool selection: every weight on the embedding
  made it worse, so it is lexical).
- Without an embedder the ranking is the lexical one (same API, ``vector`` and
  ``vector_rank`` None, score ``lexical / best_lexical``): settings without the
  ``memory`` extra still work. Ranks (1-based, equal scores sharing one) are reported
  for each list: ``lexical_rank`` None when no word is shared.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .memory.embeddings import Embedder

__all__ = [
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "MEMORY_FUSION",
    "PLAN_WEIGHTS",
    "ROUTING_FUSION",
    "TOOLS_FUSION",
    "VECTOR_DEPTH",
    "Document",
    "Hit",
    "Index",
    "Mode",
    "fuse",
    "plan_document",
    "query_terms",
    "words",
]

K1, B = 1.2, 0.75
# (lexical, embedding) weights of the fusion, per user, measured by bench_retrieval.py
ROUTING_FUSION = (0.5, 0.5)
MEMORY_FUSION = (0.05, 0.95)
TOOLS_FUSION = (1.0, 0.0)
VECTOR_DEPTH = 400  # memory: the most similar items scored besides the lexical matches
MAX_QUERY_CHARS = 4000
MAX_QUERY_TERMS = 64
MAX_WORD = 40
CACHE_SIZE = 20_000  # document vectors kept, per process
PLAN_WEIGHTS: Mapping[str, float] = {
    "goal": 2.0,
    "description": 1.0,
    "name": 2.0,
    "inputs": 1.0,
    "tools": 0.5,
}

Mode = Literal["fused", "lexical", "vector"]

_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its me of on or "  # noqa: SIM905
    "our show so than that the their them then there these this to us was we were what when "
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
    """The words of ``text`` as ranking compares them: lower case, letters and digits of
    any script, without common English words, plural and -ing/-ed endings cut, none over
    40 characters."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) <= MAX_WORD]


def query_terms(query: str) -> list[str]:
    """The distinct words of a query in order of first appearance: of its first
    :data:`MAX_QUERY_CHARS` characters, at most :data:`MAX_QUERY_TERMS`."""
    return list(dict.fromkeys(words(query[:MAX_QUERY_CHARS])))[:MAX_QUERY_TERMS]


def fuse(
    lexical: float,
    best_lexical: float,
    vector: float | None,
    weights: tuple[float, float] = ROUTING_FUSION,
) -> float:
    """Calibrated score fusion: ``lexical`` (BM25F) as a share of the query's best
    ``best_lexical``, and the cosine ``vector`` (None: no embedding), weighted."""
    score = weights[0] * lexical / best_lexical if best_lexical > 0 else 0.0
    if vector is not None:
        score += weights[1] * max(vector, 0.0)
    return score


@dataclass(frozen=True, slots=True)
class Document:
    """A thing to find: its id and its text, in named fields (a plain string is the one
    field ``text``). ``data`` is the caller's, handed back on its :class:`Hit`."""

    id: str
    fields: Mapping[str, str] | str
    data: Any = field(default=None, compare=False)

    def named(self) -> Mapping[str, str]:
        return {"text": self.fields} if isinstance(self.fields, str) else self.fields

    def text(self) -> str:
        """What is embedded: the fields' text, joined."""
        return "\n".join(v for v in self.named().values() if v)


@dataclass(frozen=True, slots=True)
class Hit:
    """A ranked document. ``score`` is the fused score (of one list alone in the modes
    ``lexical`` and ``vector``); ``lexical`` the BM25F score (0: no word in common) and
    ``vector`` the cosine similarity (None: no embedder); ranks are 1-based, None when the
    document is not in that list."""

    id: str
    score: float
    lexical_rank: int | None
    vector_rank: int | None
    lexical: float
    vector: float | None
    document: Document


class _Cache:
    """Document vectors by (embedder, text), least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.vectors: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()
        self.lock = threading.Lock()

    def embed(self, embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
        keys = [(embedder.name, embedder.dimensions, t) for t in texts]
        with self.lock:
            missing = list(dict.fromkeys(k[2] for k in keys if k not in self.vectors))
        if missing:
            made = embedder.embed(missing)
            with self.lock:
                for text, vector in zip(missing, made, strict=True):
                    self.vectors[(embedder.name, embedder.dimensions, text)] = vector
        with self.lock:
            found = []
            for key in keys:
                cached = self.vectors.get(key)
                if cached is None:  # dropped by a concurrent call: embed it again
                    cached = embedder.embed([key[2]])[0]
                self.vectors[key] = cached
                self.vectors.move_to_end(key)
                found.append(cached)
            while len(self.vectors) > self.size:
                self.vectors.popitem(last=False)
        return found


VECTORS = _Cache(CACHE_SIZE)


class Index:
    """Documents ranked for a query: BM25F over their fields, fused with embedding
    similarity when an ``embedder`` is given (see the module's docstring). Built once,
    ranked many times; ``rank`` is thread-safe."""

    def __init__(
        self,
        documents: Iterable[Document],
        *,
        weights: Mapping[str, float] | None = None,
        embedder: Embedder | None = None,
        fusion: tuple[float, float] = ROUTING_FUSION,
    ) -> None:
        self.documents = list(documents)
        self.weights = dict(weights or {})
        self.embedder = embedder
        self.fusion = fusion
        self._fields: list[dict[str, list[str]]] = []
        self._counts: list[dict[str, Counter[str]]] = []
        lengths: dict[str, list[int]] = {}
        self._frequency: Counter[str] = Counter()
        self._postings: dict[str, list[int]] = {}
        for n, document in enumerate(self.documents):
            named = {name: words(text) for name, text in document.named().items()}
            self._fields.append(named)
            self._counts.append({name: Counter(w) for name, w in named.items()})
            seen: set[str] = set()
            for name, found in named.items():
                if found:
                    lengths.setdefault(name, []).append(len(found))
                seen.update(found)
            self._frequency.update(seen)
            for word in seen:
                self._postings.setdefault(word, []).append(n)
        self._averages = {name: sum(v) / len(v) for name, v in lengths.items()}
        self._matrix: Any = None  # the documents' vectors, embedded at the first rank

    def __len__(self) -> int:
        return len(self.documents)

    def lexical_scores(self, query: str) -> list[float]:
        """Every document's BM25F score for ``query``, in the documents' order."""
        scores = [0.0] * len(self.documents)
        count = len(self.documents)
        for word in query_terms(query):
            postings = self._postings.get(word)
            if not postings:
                continue
            df = self._frequency[word]
            idf = math.log(1 + (count - df + 0.5) / (df + 0.5))
            for n in postings:
                tf = 0.0
                for name, terms in self._counts[n].items():
                    found = terms.get(word)
                    if found:
                        length = len(self._fields[n][name])
                        norm = 1 - B + B * length / self._averages.get(name, 1.0)
                        tf += self.weights.get(name, 1.0) * found / norm
                if tf:
                    scores[n] += idf * tf * (K1 + 1) / (tf + K1)
        return scores

    def vector_scores(self, query: str) -> list[float] | None:
        """Every document's cosine similarity to ``query`` (None: no embedder)."""
        if self.embedder is None or not self.documents:
            return None
        import numpy as np

        if self._matrix is None:
            vectors = VECTORS.embed(self.embedder, [d.text() for d in self.documents])
            self._matrix = np.asarray(vectors, dtype=np.float32)
        [vector] = VECTORS.embed(self.embedder, [query[:MAX_QUERY_CHARS]])
        return [float(x) for x in self._matrix @ np.asarray(vector, dtype=np.float32)]

    def rank(self, query: str, k: int | None = None, *, mode: Mode = "fused") -> list[Hit]:
        """The best ``k`` documents for ``query`` (all of them when None), best first;
        ``mode`` ``lexical`` or ``vector`` ranks by that list alone (for evaluation)."""
        if not self.documents or (k is not None and k <= 0):
            return []
        if mode == "vector" and self.embedder is None:
            raise ValueError("retrieval: mode 'vector' needs an embedder")
        lexical = self.lexical_scores(query)
        wanted = mode == "vector" or (mode == "fused" and self.fusion[1] > 0)
        vector = self.vector_scores(query) if wanted else None
        order = range(len(self.documents))
        matched = sorted((n for n in order if lexical[n] > 0), key=lambda n: -lexical[n])
        lexical_ranks = _ranks(matched, lexical)
        vector_ranks: dict[int, int] = {}
        if vector is not None:
            vector_ranks = _ranks(sorted(order, key=lambda n: -vector[n]), vector)
        weights = self.fusion if vector is not None else (1.0, 0.0)
        if mode == "lexical":
            weights = (1.0, 0.0)
        elif mode == "vector":
            weights = (0.0, 1.0)
        best = max(lexical)
        hits = [
            Hit(
                id=self.documents[n].id,
                score=fuse(lexical[n], best, None if vector is None else vector[n], weights),
                lexical_rank=lexical_ranks.get(n),
                vector_rank=vector_ranks.get(n),
                lexical=lexical[n],
                vector=None if vector is None else vector[n],
                document=self.documents[n],
            )
            for n in order
        ]
        hits.sort(key=lambda h: -h.score)  # stable: ties keep the documents' order
        return hits if k is None else hits[:k]


def _ranks(ordered: Sequence[int], scores: Sequence[float]) -> dict[int, int]:
    """1-based ranks of ``ordered`` (best first); equal scores share the better rank."""
    ranks: dict[int, int] = {}
    for place, n in enumerate(ordered, 1):
        before = ordered[place - 2] if place > 1 else None
        ranks[n] = ranks[before] if before is not None and scores[before] == scores[n] else place
    return ranks


def plan_document(
    name: str,
    *,
    goal: str = "",
    description: str = "",
    inputs: Iterable[str] = (),
    tools: Iterable[str] = (),
    data: Any = None,
) -> Document:
    """A library plan as a document of the fields :data:`PLAN_WEIGHTS` weighs: the goal it
    was made for, its description, its name, its inputs' names and its steps' tools
    (names' dots and underscores read as spaces)."""

    def spaced(text: str) -> str:
        return text.replace(".", " ").replace("_", " ").replace("-", " ")

    return Document(
        name,
        {
            "goal": goal,
            "description": description,
            "name": spaced(name),
            "inputs": " ".join(spaced(i) for i in inputs),
            "tools": " ".join(spaced(t) for t in tools),
        },
        data,
    )
