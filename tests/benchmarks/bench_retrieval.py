"""Retrieval benchmark: recall@k and MRR of lexical, embedding and fused ranking on the
labelled sets of tests/benchmarks/retrieval_sets/, and what a ranking costs.

Run:  .venv/bin/python tests/benchmarks/bench_retrieval.py [--embedder minilm|hash]
                      [--sets memory,tools,routing] [--json FILE]

Three sets, each ranked three ways by the layer its users rank with (dagentic.retrieval):
  memory    45 remembered facts about the sample world and 30 paraphrased questions
            (retrieval_sets/memory.yaml), recalled by MemoryStore.recall itself (BM25 and
            similarity fused in DuckDB SQL) from a fresh file: lexical is the store with the
            vector weight 0, embedding with the lexical weight 0, fused its defaults
  tools     the planner benchmark's goals over the built-in tools and 200 synthetic ones
            (retrieval_sets/tools.yaml), ranked as tool selection ranks them (BM25F over
            four fields, the planning context included)
  routing   32 goals over the plan library (retrieval_sets/routing.yaml; every plan file of
            plans/ and of the sql and web plugins' plan folders), as plan routing ranks them (dagentic.retrieval.plan_document)
Lexical alone ranks only the documents sharing a word with the query (the others would
come in no useful order). Per set and way: recall@k (the share of a query's relevant items in the first k, averaged
over queries), MRR (the reciprocal rank of the first relevant one) and the p50 latency of
one ranking (documents' and queries' embeddings computed before the clock; the query
embedding's own time is printed apart). "fused" is each user's fusion: calibrated score
fusion with the weights of dagentic.retrieval (MEMORY_FUSION, TOOLS_FUSION, ROUTING_FUSION).
Other fusions are compared on the same rankings (calibrated with other weights, reciprocal
rank fusion), to show why those were chosen: among the weights with which fused is never
worse than either list alone (memory: the only one; routing: the best MRR; tools: none
weighs the embedding).

--embedder minilm (the default) is all-MiniLM-L6-v2 from the `memory` extra; hash is the
test suite's word-hashing embedder (tests/embedders.py), for the smoke test only: its
numbers say nothing about embeddings.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import yaml
from dagentic.memory.store import MemoryStore
from dagentic.plugins import sql, web
from dagentic.retrieval import (
    MEMORY_FUSION,
    ROUTING_FUSION,
    TOOLS_FUSION,
    VECTORS,
    Document,
    Hit,
    Index,
    plan_document,
)
from stats import make_parser, python_version, summary, write_results

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SETS = HERE / "retrieval_sets"
# The library of the checkout: plans/ and the sample plans of the sql and web plugins.
PLANS = (ROOT / "plans", sql.SAMPLE_PLANS, web.SAMPLE_PLANS)
MODES = ("lexical", "embedding", "fused")
KS = {"memory": (1, 3, 5), "tools": (1, 3, 5, 10), "routing": (1, 3)}


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    relevant: frozenset[str]


def recall_at(ranked: Sequence[str], relevant: frozenset[str], k: int) -> float:
    return len(relevant & set(ranked[:k])) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], relevant: frozenset[str]) -> float:
    return next((1 / n for n, i in enumerate(ranked, 1) if i in relevant), 0.0)


def scores(
    rankings: Sequence[Sequence[str]], queries: Sequence[Query], ks: Sequence[int]
) -> dict[str, float]:
    found = {
        f"recall@{k}": statistics.fmean(
            recall_at(r, q.relevant, k) for r, q in zip(rankings, queries, strict=True)
        )
        for k in ks
    }
    found["mrr"] = statistics.fmean(
        reciprocal_rank(r, q.relevant) for r, q in zip(rankings, queries, strict=True)
    )
    return found


# -- fusion variants, computed from full rankings (every document's ranks and scores) ----


def rrf(k: int, w_lex: float, w_vec: float) -> Callable[[Sequence[Hit]], list[str]]:
    """Reciprocal rank fusion: w / (k + rank) summed over the lists."""

    def rank(hits: Sequence[Hit]) -> list[str]:
        def score(h: Hit) -> float:
            lex = w_lex / (k + h.lexical_rank) if h.lexical_rank else 0.0
            return lex + (w_vec / (k + h.vector_rank) if h.vector_rank else 0.0)

        return [h.id for h in sorted(hits, key=lambda h: -score(h))]

    return rank


def calibrated(w_lex: float) -> Callable[[Sequence[Hit]], list[str]]:
    """Calibrated score fusion: BM25 over the query's best, and the cosine, weighted."""

    def rank(hits: Sequence[Hit]) -> list[str]:
        best = max(h.lexical for h in hits)
        fused = [
            (w_lex * h.lexical / best if best > 0 else 0.0) + (1 - w_lex) * max(h.vector or 0, 0)
            for h in hits
        ]
        order = sorted(range(len(hits)), key=lambda n: -fused[n])
        return [hits[n].id for n in order]

    return rank


VARIANTS: dict[str, Callable[[Sequence[Hit]], list[str]]] = {
    **{
        f"calibrated {w:.2f}/{1 - w:.2f}": calibrated(w)
        for w in (0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 0.95)
    },
    "rrf k=60 1:1": rrf(60, 1.0, 1.0),
    "rrf k=10 1:1": rrf(10, 1.0, 1.0),
    "rrf k=60 lexical 2:1": rrf(60, 2.0, 1.0),
    "rrf k=60 embedding 2:1": rrf(60, 1.0, 2.0),
}


# -- the sets ---------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def memory_set() -> tuple[list[Document], list[Query]]:
    data = load_yaml(SETS / "memory.yaml")
    documents = [Document(i["id"], i["text"]) for i in data["items"]]
    ids = {d.id for d in documents}
    queries = [Query(q["text"], frozenset(q["relevant"])) for q in data["queries"]]
    unknown = {r for q in queries for r in q.relevant} - ids
    if unknown:
        raise ValueError(f"memory.yaml: relevant ids not among the items: {sorted(unknown)}")
    return documents, queries


def routing_set() -> tuple[list[Document], list[Query]]:
    """Every plan file of PLANS, and the set's plans not (yet) among them."""
    data = load_yaml(SETS / "routing.yaml")
    documents: dict[str, Document] = {}
    for path in sorted(
        (p for folder in PLANS for p in folder.glob("*.yaml")), key=lambda p: p.name
    ):
        plan = load_yaml(path)
        if not isinstance(plan, dict) or "steps" not in plan:
            continue
        documents[plan["name"]] = plan_document(
            plan["name"],
            goal=plan.get("goal") or "",
            description=" ".join(str(plan.get("description") or "").split()),
            inputs=list(plan.get("inputs") or {}),
            tools=sorted({s["tool"] for s in plan["steps"] if s.get("tool")}),
        )
    for name, plan in data["plans"].items():
        if name not in documents:
            documents[name] = plan_document(
                name,
                goal=plan.get("goal", ""),
                description=plan.get("description", ""),
                inputs=plan.get("inputs", []),
                tools=plan.get("tools", ["sql.query"]),
            )
    queries = [Query(g["text"], frozenset([g["plan"]])) for g in data["goals"]]
    unknown = {g["plan"] for g in data["goals"]} - set(data["plans"])
    if unknown:
        raise ValueError(f"routing.yaml: goals name plans not in its plans: {sorted(unknown)}")
    return list(documents.values()), queries


def tools_set() -> tuple[list[Document], list[Query], dict[str, float]]:
    from bench_planner import load_goals
    from bench_tool_selection import synthetic_tools
    from dagentic import Executor, Settings, ToolRegistry, load_tools
    from dagentic.agent import planning_context
    from dagentic.tool_selection import WEIGHTS, _document

    data = load_yaml(SETS / "tools.yaml")
    builtins = load_tools()
    tools = ToolRegistry([*builtins, *(synthetic_tools() if data.get("synthetic_tools") else [])])
    settings = Settings(_env_prefix="DAGENTIC_BENCH_UNUSED_")
    context = anyio.run(
        planning_context, Executor(builtins, settings=settings, tracing=None, journal=None)
    )
    offered = sorted((t for t in tools if not t.planning_context), key=lambda t: t.name)
    documents = [_document(t, context) for t in offered]
    names = {d.id for d in documents}
    queries = []
    for goal in load_goals(str((SETS / data["goals_file"]).resolve())):
        relevant = frozenset(goal["tools"]) & names
        if relevant:
            queries.append(Query(goal["text"], relevant))
    return documents, queries, dict(WEIGHTS)


# -- measuring --------------------------------------------------------------------------


def make_embedder(kind: str) -> Any:
    if kind == "hash":
        sys.path.insert(0, str(ROOT))
        from tests.embedders import HashEmbedder

        return HashEmbedder(384)
    from dagentic.memory import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.load()
    return embedder


def measure_index(
    documents: list[Document],
    queries: list[Query],
    embedder: Any,
    ks: Sequence[int],
    fusion: tuple[float, float],
    weights: dict[str, float] | None = None,
) -> dict[str, Any]:
    index = Index(documents, weights=weights, embedder=embedder, fusion=fusion)
    index.rank("warm up: embed the documents once", k=1, mode="vector")
    VECTORS.embed(embedder, [q.text for q in queries])  # query embedding is timed apart
    results: dict[str, Any] = {"fusion": list(fusion)}
    full: list[list[Hit]] = []
    for mode, way in zip(MODES, ("lexical", "vector", "fused"), strict=True):
        rankings, times = [], []
        for q in queries:
            began = time.perf_counter()
            hits = index.rank(q.text, mode=way)  # type: ignore[arg-type]
            times.append(time.perf_counter() - began)
            # lexical alone finds only what shares a word: the rest come in no useful order
            rankings.append([h.id for h in hits if mode != "lexical" or h.lexical > 0])
            if mode == "embedding":
                full.append(hits)  # every list's scores and ranks
        results[mode] = {**scores(rankings, queries, ks), "latency": summary(times)}
    results["variants"] = {
        name: scores([rank(hits) for hits in full], queries, ks) for name, rank in VARIANTS.items()
    }
    return results


async def measure_store(
    documents: list[Document], queries: list[Query], embedder: Any, ks: Sequence[int]
) -> dict[str, Any]:
    """The memory set through MemoryStore.recall: the SQL path memory really takes."""
    results: dict[str, Any] = {}
    limit = max(ks)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        texts = [d.text() for d in documents]
        vectors = embedder.embed(texts)
        for q in queries[:3]:
            embedder.embed([q.text])  # warm the model up
        for mode, weights in (
            ("lexical", (1.0, 0.0, 0.1)),
            ("embedding", (0.0, 1.0, 0.1)),
            ("fused", None),
        ):
            path = Path(tmp) / f"{mode}.duckdb"
            store = (
                MemoryStore(path, embedder)
                if weights is None
                else MemoryStore(path, embedder, weights=weights)
            )
            items = await store.insert_many(texts, provenance="user", embeddings=vectors)
            by_id = {i.id: d.id for i, d in zip(items, documents, strict=True)}
            rankings, times = [], []
            for q in queries:
                began = time.perf_counter()
                found = await store.recall(q.text, limit=limit)
                times.append(time.perf_counter() - began)
                rankings.append(
                    [by_id[r.item.id] for r in found if mode != "lexical" or r.lexical > 0]
                )
            results[mode] = {**scores(rankings, queries, ks), "latency": summary(times)}
            close(store)
    return results


def close(store: MemoryStore) -> None:
    from dagentic.memory import store as store_module

    with store_module._OPENING:
        opened = store_module._OPEN.pop(str(store.path), None)
    vectors = store_module._VECTORS.pop(str(store.path), None)
    if vectors is not None:
        vectors.close()  # its cursor keeps the database open
    if opened is not None:
        opened[0].close()


def never_worse(result: dict[str, Any], ks: Sequence[int]) -> bool:
    """Fused at least as good as lexical alone and embedding alone, on every measure."""
    keys = [*(f"recall@{k}" for k in ks), "mrr"]
    return all(
        result["fused"][key] >= max(result["lexical"][key], result["embedding"][key]) - 1e-9
        for key in keys
    )


def query_embedding(embedder: Any, texts: Sequence[str]) -> dict[str, Any]:
    """The embedder on one query per call (not cached), as a ranking embeds its query."""
    times = []
    for text in texts:
        began = time.perf_counter()
        embedder.embed([text + " ?"])  # not a text the cache holds
        times.append(time.perf_counter() - began)
    return summary(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--embedder", choices=["minilm", "hash"], default="minilm")
    parser.add_argument("--sets", default="memory,tools,routing")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sets.split(",") if s.strip()]
    began = time.perf_counter()
    embedder = make_embedder(args.embedder)
    load_seconds = time.perf_counter() - began
    results: dict[str, Any] = {
        "embedder": getattr(embedder, "name", args.embedder),
        "embedder_load_seconds": load_seconds,
        "environment": {"python": python_version(), "cpus": os.cpu_count()},
        "sets": {},
    }
    print(
        f"retrieval benchmark (Python {python_version()}, {os.cpu_count()} CPUs), embedder "
        f"{results['embedder']} (loaded in {load_seconds:.1f} s)"
    )
    for name in chosen:
        ks = KS[name]
        if name == "memory":
            documents, queries = memory_set()
            measured = anyio.run(measure_store, documents, queries, embedder, ks)
            measured["index"] = measure_index(documents, queries, embedder, ks, MEMORY_FUSION)
        elif name == "tools":
            documents, queries, weights = tools_set()
            measured = measure_index(documents, queries, embedder, ks, TOOLS_FUSION, weights)
        elif name == "routing":
            documents, queries = routing_set()
            measured = measure_index(documents, queries, embedder, ks, ROUTING_FUSION)
        else:
            parser.error(f"unknown set {name!r}")
        measured["documents"], measured["queries"] = len(documents), len(queries)
        measured["fused_never_worse"] = never_worse(measured, ks)
        results["sets"][name] = measured
        fusion = measured.get("fusion") or measured["index"]["fusion"]
        print(
            f"\n{name}: {len(documents)} documents, {len(queries)} queries; fused: lexical "
            f"{fusion[0]:g}, embedding {fusion[1]:g}"
        )
        header = "".join(f"{f'recall@{k}':>11}" for k in ks) + f"{'MRR':>8}{'p50 ms':>10}"
        print(f"  {'':30}{header}")
        rows = [(m, measured[m]) for m in MODES]
        if name == "memory":
            rows += [(f"{m} (Index, Python)", measured["index"][m]) for m in MODES]
        variants = measured.get("variants") or measured.get("index", {}).get("variants", {})
        rows += [(f"  {v}", r) for v, r in variants.items()]
        for label, r in rows:
            line = "".join(f"{r[f'recall@{k}']:>11.3f}" for k in ks) + f"{r['mrr']:>8.3f}"
            if "latency" in r:
                line += f"{r['latency']['p50_ms']:>10.2f}"
            print(f"  {label:30}{line}")
        print(
            f"  fused never worse than lexical or embedding alone: {measured['fused_never_worse']}"
        )
    results["query_embedding"] = query_embedding(embedder, [q.text for q in queries][:20])
    print(
        f"\nquery embedding ({results['embedder']}, one query per call, not in the times "
        f"above): p50 {results['query_embedding']['p50_ms']:.2f} ms"
    )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
