"""The shared retrieval layer (dagentic.retrieval): the tokenizer, BM25F over fields, the
fusion rule and its properties, lexical-only mode, hostile input."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from dagentic.retrieval import (
    MAX_QUERY_TERMS,
    MEMORY_FUSION,
    PLAN_WEIGHTS,
    ROUTING_FUSION,
    TOOLS_FUSION,
    Document,
    Index,
    fuse,
    plan_document,
    query_terms,
    words,
)

from tests.embedders import HashEmbedder

DOCS = [
    Document("revenue", "Revenue of each region in a quarter, largest first"),
    Document("products", {"name": "top products", "description": "The best-selling products"}),
    Document("news", "What the news says about a region"),
    Document("hello", "Greet a list of people"),
]


class Fixed:
    """An embedder whose vectors are given: the similarity list is the test's to set."""

    dimensions = 2
    made = 0

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        Fixed.made += 1
        self.name = f"fixed-{Fixed.made}"  # vectors are cached by embedder name and text
        self.vectors = vectors
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(texts)
        return [self.vectors.get(t, [0.0, 1.0]) for t in texts]


def test_words_are_lower_case_stemmed_without_stop_words_in_any_script() -> None:
    assert words("What are the Forecasts of cities, and Running totals?") == [
        "forecast",
        "city",
        "runn",
        "total",
    ]
    assert words("Zürich's café — Ümlaut_snake 東京") == [
        "zürich",
        "s",
        "café",
        "ümlaut",
        "snake",
        "東京",
    ]
    assert words("x" * 41 + " kept") == ["kept"]  # a blob is not a word
    assert words("") == [] and words("   \u200b\ufeff ") == []


def test_fusion_is_calibrated_score_fusion() -> None:
    assert fuse(4.0, 4.0, 1.0) == pytest.approx(1.0)  # the best of both: the weights' sum
    assert fuse(2.0, 4.0, 0.5, (0.5, 0.5)) == pytest.approx(0.5)
    assert fuse(2.0, 4.0, None, (0.2, 0.8)) == pytest.approx(0.1)  # no embedding
    assert fuse(0.0, 0.0, -0.3) == 0.0  # an opposite meaning counts as none
    assert fuse(3.0, 4.0, 0.2) > fuse(2.0, 4.0, 0.2) > fuse(2.0, 4.0, 0.1) > fuse(0, 4.0, 0.1)
    for lexical, embedding in (ROUTING_FUSION, MEMORY_FUSION, TOOLS_FUSION):
        assert lexical + embedding == pytest.approx(1.0) and lexical > 0


def test_a_document_first_in_both_lists_is_first() -> None:
    embedder = Fixed({DOCS[0].text(): [1.0, 0.0], "revenue of a region": [1.0, 0.0]})
    hits = Index(DOCS, embedder=embedder).rank("revenue of a region", k=2)
    assert hits[0].id == "revenue"
    assert (hits[0].lexical_rank, hits[0].vector_rank) == (1, 1)
    assert hits[0].score == pytest.approx(1.0)
    for fusion in ((0.01, 0.99), (0.99, 0.01), MEMORY_FUSION, TOOLS_FUSION):
        index = Index(DOCS, embedder=embedder, fusion=fusion)
        assert index.rank("revenue of a region", k=1)[0].id == "revenue"


def test_each_list_can_lift_a_document_the_other_misses() -> None:
    # "salutations" shares no word with any document, but "hello" is the closest in meaning
    embedder = Fixed({DOCS[3].text(): [1.0, 0.0], "salutations": [1.0, 0.0]})
    index = Index(DOCS, embedder=embedder)  # ROUTING_FUSION: half and half
    [first, *_] = index.rank("salutations", k=None)
    assert (first.id, first.lexical_rank, first.vector_rank) == ("hello", None, 1)
    hits = index.rank("news of the region", k=None)  # no meaning known: words decide
    assert hits[0].id == "news" and hits[0].lexical_rank == 1
    assert all(h.vector_rank is not None for h in hits)  # every document is in that list


def test_without_an_embedder_the_ranking_is_the_lexical_one() -> None:
    index = Index(DOCS)
    fused = index.rank("the best selling products", k=None)
    lexical = index.rank("the best selling products", k=None, mode="lexical")
    assert [h.id for h in fused] == [h.id for h in lexical]
    assert fused[0].id == "products" and fused[0].vector is None and fused[0].vector_rank is None
    assert fused[0].score == 1.0 and [h.score for h in fused[1:]] == [0.0, 0.0, 0.0]
    embedded = Index(DOCS, embedder=Fixed({}), fusion=TOOLS_FUSION)  # the embedding weighs 0
    assert [h.vector for h in embedded.rank("the best selling products")] == [None] * 4
    assert embedded.rank("products", mode="vector")[0].vector is not None  # when asked
    with pytest.raises(ValueError, match="needs an embedder"):
        index.rank("products", mode="vector")


def test_ties_keep_the_documents_order_and_share_a_rank() -> None:
    twins = [Document(n, "same words here") for n in ("b", "a", "c")]
    hits = Index(twins).rank("same words")
    assert [h.id for h in hits] == ["b", "a", "c"]
    assert {h.lexical_rank for h in hits} == {1} and len({h.score for h in hits}) == 1
    assert [h.id for h in Index(twins).rank("nothing matches")] == ["b", "a", "c"]
    embedded = Index(twins, embedder=HashEmbedder()).rank("same words")
    assert [h.id for h in embedded] == ["b", "a", "c"] and {h.vector_rank for h in embedded} == {1}


def test_an_empty_index_and_an_empty_query_find_nothing() -> None:
    assert Index([]).rank("anything") == []
    assert Index([], embedder=HashEmbedder()).rank("anything", k=3) == []
    assert Index(DOCS).rank("revenue", k=0) == []
    hits = Index(DOCS).rank("", k=None)
    assert [h.id for h in hits] == [d.id for d in DOCS] and all(h.score == 0 for h in hits)
    assert Index([Document("empty", "")]).rank("revenue")[0].lexical == 0


def test_field_weights_count() -> None:
    docs = [
        Document("in-name", {"name": "gadget", "text": "a thing of the shop"}),
        Document("in-text", {"name": "thing", "text": "a gadget of the shop"}),
    ]
    assert Index(docs, weights={"name": 3.0}).rank("gadget")[0].id == "in-name"
    assert Index(docs, weights={"text": 3.0}).rank("gadget")[0].id == "in-text"


def test_huge_and_odd_queries_are_bounded() -> None:
    index = Index(DOCS, embedder=HashEmbedder())
    huge = " ".join(f"word{n}" for n in range(200_000)) + " revenue"
    assert len(query_terms(huge)) == MAX_QUERY_TERMS
    started = time.perf_counter()
    hits = index.rank(huge, k=2)
    assert time.perf_counter() - started < 2.0 and len(hits) == 2
    for odd in ("\x00\x01\ud7ff", "👩‍👩‍👧 🚀🚀", "RÉGION", "a" * 10_000, "\u0301\u0301"):
        assert len(index.rank(odd, k=4)) == 4
    assert index.rank("RÉGION")[0].lexical == 0  # not "region": accents are kept


def test_document_vectors_are_embedded_once_per_text() -> None:
    embedder = Fixed({})
    Index(DOCS, embedder=embedder).rank("revenue")
    Index(DOCS, embedder=embedder).rank("revenue")  # a new index of the same texts
    embedded = [t for call in embedder.calls for t in call]
    assert sorted(embedded) == sorted([*(d.text() for d in DOCS), "revenue"])


def test_a_plan_document_weighs_its_fields() -> None:
    plan = plan_document(
        "revenue_by_region",
        goal="Which region led revenue in a quarter",
        description="Revenue and orders of each region",
        inputs=["quarter"],
        tools=["sql.query"],
    )
    assert plan.named()["name"] == "revenue by region"
    assert plan.named()["tools"] == "sql query"
    other = plan_document("top_products", goal="The best-selling products by revenue")
    hits = Index([other, plan], weights=PLAN_WEIGHTS).rank("Which region led in 2026Q2?")
    assert hits[0].id == "revenue_by_region" and hits[0].document is plan


def test_a_memory_file_of_an_older_tokenizer_is_tokenized_again_when_opened(
    tmp_path: Path,
) -> None:
    from dagentic.memory import store as module
    from dagentic.memory.store import MemoryStore

    path = tmp_path / "old.duckdb"

    def close() -> None:
        module._VECTORS.pop(str(path), None)
        opened = module._OPEN.pop(str(path), None)
        if opened is not None:
            opened[0].close()

    store = MemoryStore(path, HashEmbedder())
    anyio.run(lambda: store.insert("Refunds of Gadgets were rising", provenance="user"))
    db, lock = store._connect()
    with lock:  # as the tokenizer before the shared one wrote it: no stems
        db.execute("DELETE FROM meta WHERE key = 'tokenizer'")
        db.execute("UPDATE terms SET term = 'refunds' WHERE term = 'refund'")
    close()
    again = MemoryStore(path, HashEmbedder())
    [found] = anyio.run(lambda: again.recall("refund", limit=1))
    assert found.lexical_rank == 1
    db, lock = again._connect()
    with lock:
        assert sorted(r[0] for r in db.execute("SELECT term FROM terms").fetchall()) == [
            "gadget",
            "refund",
            "ris",
        ]
    close()


def test_memory_recall_bounds_a_huge_or_odd_query(tmp_path: Path) -> None:
    from dagentic.memory import store as module
    from dagentic.memory.store import MemoryStore

    store = MemoryStore(tmp_path / "m.duckdb", HashEmbedder())

    async def work() -> None:
        fact = await store.insert("West led revenue in 2026Q3", provenance="user")
        await store.insert("Gadgets sell well", provenance="user")
        huge = "revenue " + " ".join(f"w{n}" for n in range(300_000))
        started = time.perf_counter()
        found = await store.recall(huge, limit=2)
        assert time.perf_counter() - started < 3.0
        assert found[0].item.id == fact.id and found[0].lexical_rank == 1
        for odd in ("", "\x00", "👩‍👩‍👧", "東京 révenue", "'; DROP TABLE items; --"):
            assert len(await store.recall(odd, limit=2)) == 2
        assert await store.count() == 2

    try:
        anyio.run(work)
    finally:
        module._VECTORS.pop(str(store.path), None)
        opened = module._OPEN.pop(str(store.path), None)
        if opened is not None:
            opened[0].close()
