"""Long-term memory benchmark: MemoryStore ingest rate, size on disk and recall latency.

Run:  .venv/bin/python tests/benchmarks/bench_memory.py [--sizes 10000,100000] [--queries 300]
                      [--batch 1000] [--minilm-queries 50] [--quick] [--json FILE]

Generates facts deterministically (seeded) about a retail world: customers (made-up first
and last names), cities in five regions, branded products, suppliers, amounts, quantities,
percentages, quarters and dates, in about fifteen sentence templates (orders, refunds,
complaints, prices, stock, preferences, agent notes, web articles), half of them followed
by a note of 3-10 words drawn Zipf-like from a general retail vocabulary; a few thousand
distinct words in all. Scopes: 3 agents x 20 users (a fifth of the facts agent-wide, with
no user); provenance 45 % "user", 35 % "agent", 20 % "untrusted:web.search". The facts of
a smaller size are the first facts of a larger one, and every size gets the same queries.

Embeddings are PRECOMPUTED, and not by MiniLM: embedding 100,000 distinct sentences with
all-MiniLM-L6-v2 takes many minutes on two cores and measures the model, not the store.
Each word (a token of dagentic.memory.tokenize) gets a fixed Gaussian random 384-dim vector
(seeded by the benchmark seed and the word's CRC-32), and a text's embedding is the sum of
its words' vectors, normalized: texts that share words get correlated unit vectors, much
like a crude sentence embedding. The store only ever sees 384 floats per item, so storage
and recall cost the same as with real embeddings. The store's embedder (used by recall for
the query) follows the same scheme; the timed queries' vectors are computed before the
clock starts and served from a cache, so recall latency excludes query embedding. The real
MiniLM query embedding is measured on its own line (one query per call, as recall does).

For each of --sizes, in a fresh temporary DuckDB file:
  ingest          MemoryStore.insert_many in calls of up to --batch items, each call one
                  (scope, provenance) group with its precomputed embeddings; items/s over
                  the time spent in those calls (also over the first and last tenth)
  size            the file's bytes after a CHECKPOINT, per item
  recall          MemoryStore.recall(limit=5) over --queries queries of 1-6 words (two
                  in five plain, the rest filtered by scope, provenance, both, or with
                  exclude_untrusted), p50 and p95, and by kind

Relevance (beside the latency): the labelled memory set of tests/benchmarks/retrieval_sets/
(memory.yaml: 45 facts about the sample world, 30 paraphrased questions with the facts that
answer them) recalled from a fresh store: recall@1/3/5 and MRR of the fused ranking and, for
comparison, of its lexical and its similarity list alone (bench_retrieval.py measure_store).
Embedded by the real all-MiniLM-L6-v2 when the `memory` extra is installed (--quick, or
without it: the bag-of-words stand-in, whose numbers say little about embeddings).

Target on the 2-core reference machine: recall p50 <= 100 ms at 100,000 items (embeddings
precomputed).
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from bench_retrieval import KS, measure_store, memory_set
from dagentic.errors import ModelError
from dagentic.memory import store as store_module
from dagentic.memory.store import MemoryStore, Scope, tokenize
from stats import (
    latency_line,
    make_parser,
    package_version,
    python_version,
    summary,
    verdict,
    write_results,
)

TARGET_RECALL_P50_MS = 100.0
TARGET_SIZE = 100_000
DIMENSIONS = 384
WARMUP = 5
SEED = 20261101
LIMIT = 5
QUICK = {"sizes": [1_000], "queries": 30, "minilm_queries": 0}
AGENTS = ["analyst", "support", "planner"]
USERS = [f"user{i:02d}" for i in range(1, 21)]
PROVENANCE = {"user": 0.45, "agent": 0.35, "untrusted:web.search": 0.20}
KINDS = {
    "plain": 0.40,
    "scope": 0.25,
    "provenance": 0.15,
    "scope+provenance": 0.10,
    "exclude_untrusted": 0.10,
}

REGIONS = ["North", "South", "East", "West", "Central"]
ITEMS = """headphones earbuds speaker soundbar kettle toaster blender mixer microwave fridge
freezer dishwasher washer dryer vacuum iron fan heater humidifier purifier lamp bulb
charger cable adapter powerbank battery router modem laptop tablet phone smartwatch camera
lens tripod drone monitor keyboard mouse webcam printer scanner shredder desk chair
bookshelf cabinet sofa mattress pillow duvet towel rug curtain mirror clock frame vase
drill saw hammer wrench screwdriver ladder toolbox sander grinder glue tape paint brush
roller hose sprinkler mower trimmer rake shovel planter seeds fertilizer grill smoker
cooler tent backpack bicycle helmet scooter skateboard treadmill dumbbell yoga mat bottle
thermos lunchbox cookware pan pot knife cutlery plate bowl mug glassware notebook pen
pencil stapler folder binder envelope calendar widget gadget sensor doorbell thermostat
socket switch alarm lock safe umbrella raincoat boots sneakers jacket gloves scarf
""".split()  # noqa: SIM905
CATEGORIES = [
    "electronics",
    "kitchen",
    "garden",
    "office",
    "tools",
    "furniture",
    "outdoor",
    "fitness",
    "home",
    "gadgets",
    "widgets",
    "lighting",
    "apparel",
]
REASONS = [
    "arrived damaged",
    "wrong colour",
    "stopped working",
    "late delivery",
    "missing parts",
    "changed mind",
    "cheaper elsewhere",
    "duplicate order",
    "poor battery life",
    "too noisy",
    "did not fit",
    "faulty charger",
]
FAULTS = [
    "overheated",
    "stopped charging",
    "cracked",
    "leaked",
    "made a loud noise",
    "lost its connection",
    "would not turn on",
    "drained the battery",
]
SEGMENTS = ["consumer", "business", "enterprise"]
TIERS = ["bronze", "silver", "gold", "platinum"]
CHANNELS = ["same-day", "next-day", "standard", "locker", "curbside", "in-store pickup"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TRENDS = ["up", "down", "rising", "falling", "flat at"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
GENERAL = """customer customers order orders refund refunds return returns product products
price prices discount margin profit loss revenue sales quarter growth forecast store
stores region manager staff shift holiday season spring summer autumn winter delivery
pickup counter warehouse inventory stock shelf aisle checkout payment card online website
app loyalty program member survey complaint fault repair warranty service desk business
consumer segment account report plan strategy budget cost spending shoppers household
goods hardware premium value brand launch range line record rise fall steady strong weak
lead gap ahead behind percent million thousand total average week month daily weekly
monthly annual year city town rural urban mall street district county coast valley river
harbour park depot route truck van driver logistics weather storm rain snow heat demand
shortage delay shipment port container freight import export tariff policy rule safety
recall quality standard test review rating score interview statement press analysis data
figures estimate target goal hiring training union wages bonus energy solar heating
insulation renovation building site lease rent property permit council community local
national prefers usually often rarely always never asked wants likes dislikes mentioned
said noted confirmed reported expects promised escalated resolved pending urgent
important follow call email chat visit meeting contact phone address invoice receipt
ticket case issue problem answer question request feedback reminder schedule deadline
today tomorrow yesterday morning afternoon evening night early late soon again still
only also very quite new old large small big cheap expensive fast slow quiet loud bright
dark clean broken spare extra first last next previous best worst favourite usual main
backup primary secondary shared private public open closed busy free ready available
missing delayed cancelled confirmed shipped delivered returned exchanged refunded paid
unpaid overdue partial full half double single bulk sample trial promotion coupon voucher
gift card bundle subscription renewal upgrade downgrade migration setup install manual
guide tutorial video photo picture chart table sheet dashboard query filter export sync
backup archive history trend pattern spike dip peak baseline benchmark compare versus
""".split()  # noqa: SIM905
SYLLABLES = """ka lo mi ren tor vas bel dun fir gal hes jor kel lun mar nor pel quin
ros sel tam ul vin wes yar zel an bro cal dra et fen gor il ma sta""".split()  # noqa: SIM905
TEMPLATES = [
    "{customer} from {city} in the {region} region bought {qty} {product} for ${amount} on {date}.",
    "{customer} asked for a refund of ${amount} on the {product} ordered on {date}: {reason}.",
    "The {city} store ({region}) sold {qty} units of {product} in {quarter}, {trend} {pct} "
    "percent on the quarter before.",
    "{customer} prefers {channel} delivery and usually shops at the {city} store on {weekday}s.",
    "Supplier {supplier} ships {product} to the {city} warehouse every {weekday}; lead time "
    "{small} days.",
    "{customer} has been a {segment} customer since {date}, loyalty tier {tier}.",
    "Revenue of the {region} region reached ${amount} thousand in {quarter}, {trend} {pct} "
    "percent on the year.",
    "Store manager {customer} at {city} reported {small} {item} out of stock on {date}.",
    "The user wants a weekly report of {category} sales in the {region} region every {weekday}.",
    "The price of {product} changed from ${amount} to ${amount2} in {region} stores on {date}.",
    "Complaint from {customer}: the {product} {fault} after {small} days, ticket {ticket}.",
    "News: {brand} plans to open {small} stores in {region} cities including {city} by {quarter}.",
    "Agent note: for {category} questions use the sales table filtered by region {region} "
    "and {quarter}.",
    "{customer} returned {qty} {item} at the {city} store on {date} and got ${amount} of "
    "store credit.",
    "{customer} said the {product} is {adjective} and would buy another one in {month}.",
]
ADJECTIVES = [
    "excellent",
    "great",
    "fine",
    "disappointing",
    "noisy",
    "fragile",
    "sturdy",
    "overpriced",
    "good value",
    "hard to set up",
    "easy to use",
]


def names(rnd: random.Random, count: int, parts: tuple[int, int], taken: set[str]) -> list[str]:
    """``count`` distinct capitalized made-up words of ``parts`` syllables."""
    found: list[str] = []
    while len(found) < count:
        word = "".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(*parts)))
        if word not in taken:
            taken.add(word)
            found.append(word.capitalize())
    return found


@dataclass(frozen=True, slots=True)
class Fact:
    text: str
    agent: str
    user: str | None
    provenance: str


class World:
    """The retail world's names, and a deterministic stream of facts about it."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        rnd, taken = random.Random(seed ^ 0x5EED), set(GENERAL) | set(ITEMS)
        self.first = names(rnd, 250, (2, 2), taken)
        self.last = names(rnd, 500, (2, 3), taken)
        self.cities = [(city, rnd.choice(REGIONS)) for city in names(rnd, 200, (2, 3), taken)]
        self.brands = names(rnd, 80, (2, 2), taken)
        self.suppliers = [
            f"{n} {rnd.choice(['Trading', 'Supply', 'Logistics', 'Goods'])}"
            for n in names(rnd, 60, (2, 3), taken)
        ]
        self.general = GENERAL
        self.cum_weights = list(
            itertools.accumulate(1.0 / (rank + 2.0) for rank in range(len(GENERAL)))
        )
        self.scopes = [(a, u) for a in AGENTS for u in USERS] + [(a, None) for a in AGENTS]

    def fact(self) -> Fact:
        rnd = self.rnd
        city, region = rnd.choice(self.cities)
        item = rnd.choice(ITEMS)
        date = f"{rnd.choice([2025, 2026])}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        slots = {
            "customer": f"{rnd.choice(self.first)} {rnd.choice(self.last)}",
            "city": city,
            "region": region,
            "item": item,
            "product": f"{rnd.choice(self.brands)} {item} {rnd.choice('ABCDEFGHKMPRSTVXZ')}"
            f"{rnd.randint(1, 99) * 10}",
            "brand": rnd.choice(self.brands),
            "supplier": rnd.choice(self.suppliers),
            "qty": rnd.randint(1, 12),
            "small": rnd.randint(2, 60),
            "amount": f"{rnd.randint(5, 999)}.{rnd.randint(0, 99):02d}",
            "amount2": f"{rnd.randint(5, 999)}.{rnd.randint(0, 99):02d}",
            "pct": rnd.randint(1, 45),
            "date": date,
            "quarter": f"{rnd.choice([2025, 2026])}Q{rnd.randint(1, 4)}",
            "month": rnd.choice(MONTHS),
            "weekday": rnd.choice(WEEKDAYS),
            "reason": rnd.choice(REASONS),
            "fault": rnd.choice(FAULTS),
            "segment": rnd.choice(SEGMENTS),
            "tier": rnd.choice(TIERS),
            "channel": rnd.choice(CHANNELS),
            "trend": rnd.choice(TRENDS),
            "category": rnd.choice(CATEGORIES),
            "adjective": rnd.choice(ADJECTIVES),
            "ticket": f"T-{rnd.randint(1000, 1999)}",
        }
        text = rnd.choice(TEMPLATES).format(**slots)
        if rnd.random() < 0.5:
            words = rnd.choices(self.general, cum_weights=self.cum_weights, k=rnd.randint(3, 10))
            text += " Note: " + " ".join(words) + "."
        agent, user = (
            self.scopes[rnd.randrange(len(AGENTS) * len(USERS))]
            if rnd.random() < 0.8
            else (rnd.choice(AGENTS), None)
        )
        provenance = rnd.choices(list(PROVENANCE), weights=list(PROVENANCE.values()))[0]
        return Fact(text, agent, user, provenance)

    def facts(self, count: int) -> list[Fact]:
        return [self.fact() for _ in range(count)]


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    kind: str
    scope: Scope | None
    provenance: list[str] | None
    exclude_untrusted: bool


def make_queries(seed: int, facts: Sequence[Fact], count: int) -> list[Query]:
    """1-6 words: three in four from one fact's words (so something matches), the rest
    from every word of the facts; filters by kind (see KINDS)."""
    rnd = random.Random(seed)
    vocabulary = sorted({w for f in facts for w in tokenize(f.text)})
    queries = []
    for _ in range(count):
        size = rnd.choices([1, 2, 3, 4, 5, 6], weights=[2, 4, 4, 3, 2, 1])[0]
        if rnd.random() < 0.75:
            words = list(dict.fromkeys(tokenize(rnd.choice(facts).text)))
            picked = rnd.sample(words, min(size, len(words)))
        else:
            picked = rnd.sample(vocabulary, size)
        kind = rnd.choices(list(KINDS), weights=list(KINDS.values()))[0]
        scope = provenance = None
        if kind in ("scope", "scope+provenance"):
            form = rnd.random()
            scope = (
                Scope(agent=rnd.choice(AGENTS))
                if form < 0.3
                else Scope(user=rnd.choice(USERS))
                if form < 0.6
                else Scope(agent=rnd.choice(AGENTS), user=rnd.choice(USERS))
            )
        if kind in ("provenance", "scope+provenance"):
            provenance = rnd.choice([["user"], ["agent"], ["untrusted:"], ["user", "agent"]])
        queries.append(
            Query(" ".join(picked), kind, scope, provenance, kind == "exclude_untrusted")
        )
    return queries


class BagOfWordsEmbedder:
    """Deterministic stand-in for a sentence embedder: the normalized sum of per-word
    random Gaussian vectors (see the module's docstring). ``cache`` holds vectors computed
    ahead of time; ``embed`` serves those first."""

    name = "bench-bag-of-words"
    dimensions = DIMENSIONS

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.index: dict[str, int] = {}
        self.vectors = np.zeros((0, DIMENSIONS), dtype=np.float32)
        self.cache: dict[str, list[float]] = {}
        self.misses = 0

    def _rows(self, words: list[str]) -> list[int]:
        new = [w for w in dict.fromkeys(words) if w not in self.index]
        if new:
            rows = [
                np.random.default_rng([self.seed, zlib.crc32(w.encode())]).standard_normal(
                    DIMENSIONS, dtype=np.float32
                )
                for w in new
            ]
            base = len(self.index)
            self.index.update((w, base + i) for i, w in enumerate(new))
            self.vectors = np.vstack([self.vectors, *rows])
        return [self.index[w] for w in words]

    def matrix(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, one row each (float32)."""
        tokens = [tokenize(t) or ["<empty>"] for t in texts]
        flat = self._rows([w for words in tokens for w in words])
        starts = np.cumsum([0, *(len(words) for words in tokens[:-1])])
        summed = np.add.reduceat(self.vectors[flat], starts, axis=0)
        return summed / np.linalg.norm(summed, axis=1, keepdims=True)

    def embed(self, texts: list[str]) -> list[list[float]]:
        if all(t in self.cache for t in texts):
            return [self.cache[t] for t in texts]
        self.misses += 1
        return self.matrix(texts).tolist()

    def prepare(self, texts: Sequence[str]) -> None:
        self.cache.update(zip(texts, self.matrix(texts).tolist(), strict=True))


def ingest_calls(facts: Sequence[Fact], batch: int, seed: int) -> list[list[int]]:
    """Fact indexes per insert_many call: one (scope, provenance) group each, up to
    ``batch`` items, the calls in a seeded random order (groups arrive interleaved)."""
    groups: dict[tuple[str, str | None, str], list[int]] = {}
    for i, fact in enumerate(facts):
        groups.setdefault((fact.agent, fact.user, fact.provenance), []).append(i)
    calls = [
        members[i : i + batch] for members in groups.values() for i in range(0, len(members), batch)
    ]
    random.Random(seed).shuffle(calls)
    return calls


async def measure_size(
    path: Path,
    facts: Sequence[Fact],
    vectors: np.ndarray,
    embedder: BagOfWordsEmbedder,
    queries: Sequence[Query],
    batch: int,
    seed: int,
) -> dict[str, Any]:
    store = MemoryStore(path, embedder)
    try:
        calls = ingest_calls(facts, batch, seed)
        spent: list[tuple[int, float]] = []
        started = time.perf_counter()
        for call in calls:
            first = facts[call[0]]
            texts = [facts[i].text for i in call]
            embeddings = vectors[call].tolist()  # precomputed; the conversion is not timed
            begin = time.perf_counter()
            await store.insert_many(
                texts,
                provenance=first.provenance,
                scope=Scope(agent=first.agent, user=first.user),
                embeddings=embeddings,
            )
            spent.append((len(call), time.perf_counter() - begin))
        wall = time.perf_counter() - started
        seconds = sum(s for _, s in spent)
        tenth = max(1, len(spent) // 10)
        rate = lambda part: sum(n for n, _ in part) / max(sum(s for _, s in part), 1e-9)  # noqa: E731
        ingest = {
            "items": len(facts),
            "seconds": seconds,
            "wall_seconds": wall,
            "items_per_second": len(facts) / max(seconds, 1e-9),
            "calls": len(calls),
            "batch": batch,
            "items_per_call_mean": len(facts) / len(calls),
            "first_tenth_items_per_second": rate(spent[:tenth]),
            "last_tenth_items_per_second": rate(spent[-tenth:]),
        }

        db, lock = store._connect()
        with lock:
            db.execute("CHECKPOINT")
            items, terms = db.execute(
                "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM terms)"
            ).fetchone()
        if items != len(facts):
            raise RuntimeError(f"the store holds {items} items, not {len(facts)}")
        wal = path.with_name(path.name + ".wal")
        size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        stored = {
            "bytes": size,
            "bytes_per_item": size / len(facts),
            "embedding_bytes_per_item": DIMENSIONS * 4,
            "terms_rows": terms,
            "terms_per_item": terms / len(facts),
        }

        embedder.prepare([q.text for q in queries])
        misses = embedder.misses

        async def recall(q: Query) -> int:
            found = await store.recall(
                q.text,
                limit=LIMIT,
                scope=q.scope,
                provenance=q.provenance,
                exclude_untrusted=q.exclude_untrusted,
            )
            return len(found)

        for q in queries[:WARMUP]:
            await recall(q)
        gc.collect()
        times, counts = [], []
        for q in queries:
            begin = time.perf_counter()
            counts.append(await recall(q))
            times.append(time.perf_counter() - begin)
        if embedder.misses != misses:
            raise RuntimeError("a timed recall embedded its query (the cache missed)")
        by_kind: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for q, elapsed in zip(queries, times, strict=True):
            by_kind[q.kind].append(elapsed)
        return {
            "ingest": ingest,
            "store": stored,
            "recall": {
                **summary(times),
                "results_mean": statistics.fmean(counts),
                "empty_share": sum(1 for c in counts if c == 0) / len(counts),
            },
            "recall_by_kind": {k: summary(t) for k, t in by_kind.items() if t},
        }
    finally:
        close(store)


def close(store: MemoryStore) -> None:
    """MemoryStore keeps one connection per file and process, and has no close()."""
    with store_module._OPENING:
        opened = store_module._OPEN.pop(str(store.path), None)
    vectors = store_module._VECTORS.pop(str(store.path), None)
    if vectors is not None:
        vectors.close()  # its cursor keeps the database open
    if opened is not None:
        opened[0].close()


def minilm_latency(texts: Sequence[str]) -> dict[str, Any]:
    """The real default embedder on one query per call, as recall embeds a query."""
    if not texts:
        return {"skipped": "no queries (--minilm-queries 0)"}
    from dagentic.memory import embeddings

    embedder = embeddings.MiniLMEmbedder()
    started = time.perf_counter()
    try:
        embedder.load()
    except ModelError as exc:  # not installed: report, do not fail the benchmark
        return {"skipped": str(exc)}
    load = time.perf_counter() - started
    for text in texts[:10]:
        embedder.embed([text])
    times = []
    for text in texts:
        begin = time.perf_counter()
        vector = embedder.embed([text])[0]
        times.append(time.perf_counter() - begin)
    if len(vector) != DIMENSIONS:
        raise RuntimeError(f"MiniLM returned {len(vector)} dimensions")
    return {
        **summary(times),
        "model": embedder.name,
        "load_seconds": load,
        "torch_threads": _torch_threads(),
    }


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")  # imported by the model's load, if it is torch's
    return int(torch.get_num_threads()) if torch is not None else None


def relevance(use_minilm: bool, seed: int) -> dict[str, Any]:
    """Recall@k and MRR on the labelled memory set, through MemoryStore.recall."""
    embedder: Any = BagOfWordsEmbedder(seed)
    if use_minilm:
        from dagentic.memory import embeddings

        try:
            minilm = embeddings.MiniLMEmbedder()
            minilm.load()
            embedder = minilm
        except ModelError:
            pass
    documents, queries = memory_set()
    measured = anyio.run(measure_store, documents, queries, embedder, KS["memory"])
    return {
        "embedder": embedder.name,
        "items": len(documents),
        "queries": len(queries),
        **{mode: {k: v for k, v in r.items() if k != "latency"} for mode, r in measured.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--sizes", default="10000,100000", help="Comma-separated store sizes, each in a fresh file."
    )
    parser.add_argument("--queries", type=int, default=300, help="Timed recalls per size.")
    parser.add_argument("--batch", type=int, default=1000, help="Most items per insert_many call.")
    parser.add_argument(
        "--minilm-queries",
        type=int,
        default=50,
        help="Queries embedded by the real MiniLM model (0: skip).",
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['sizes'][0]:,} items, {QUICK['queries']} queries, no MiniLM (smoke test).",
    )
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    if args.quick:
        sizes, args.queries, args.minilm_queries = (
            QUICK["sizes"],
            QUICK["queries"],
            QUICK["minilm_queries"],
        )
    if not sizes or sizes[0] < 100 or args.queries < 1 or args.batch < 1:
        parser.error("--sizes must be at least 100, --queries and --batch at least 1")

    started = time.perf_counter()
    facts = World(args.seed).facts(sizes[-1])
    generate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    embedder = BagOfWordsEmbedder(args.seed)
    vectors = np.vstack(
        [embedder.matrix([f.text for f in facts[i : i + 5000]]) for i in range(0, len(facts), 5000)]
    )
    embed_seconds = time.perf_counter() - started
    queries = make_queries(args.seed + 1, facts[: sizes[0]], args.queries)
    words = [len(tokenize(f.text)) for f in facts]
    corpus = {
        "facts": len(facts),
        "seed": args.seed,
        "generate_seconds": generate_seconds,
        "vocabulary": len({w for f in facts for w in tokenize(f.text)}),
        "words_mean": statistics.fmean(words),
        "chars_mean": statistics.fmean(len(f.text) for f in facts),
        "agents": len(AGENTS),
        "users": len(USERS),
        "scopes": len({(f.agent, f.user) for f in facts}),
        "provenance": {
            p: sum(1 for f in facts if f.provenance == p) / len(facts) for p in PROVENANCE
        },
        "embeddings": {
            "kind": "bag-of-words random projection (precomputed)",
            "dimensions": DIMENSIONS,
            "seconds": embed_seconds,
        },
    }
    query_info = {
        "count": len(queries),
        "words_mean": statistics.fmean(len(q.text.split()) for q in queries),
        "kinds": {k: sum(1 for q in queries if q.kind == k) for k in KINDS},
    }

    per_size: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for size in sizes:
            per_size[str(size)] = anyio.run(
                measure_size,
                Path(tmp) / f"memory-{size}.duckdb",
                facts[:size],
                vectors[:size],
                embedder,
                queries,
                args.batch,
                args.seed,
                backend="asyncio",
            )
    minilm = minilm_latency([q.text for q in queries[: args.minilm_queries]])
    relevant = relevance(not args.quick, args.seed)

    small, large = per_size[str(sizes[0])], per_size[str(sizes[-1])]
    p50 = large["recall"]["p50_ms"]
    target_name = f"recall_p50_ms@{sizes[-1]}"
    results: dict[str, Any] = {
        "corpus": corpus,
        "queries": query_info,
        "sizes": per_size,
        "query_embedding_minilm": minilm,
        "relevance": relevant,
        "ratios": {
            "recall_p50_largest_over_smallest": p50 / max(small["recall"]["p50_ms"], 1e-9),
            "ingest_rate_largest_over_smallest": large["ingest"]["items_per_second"]
            / max(small["ingest"]["items_per_second"], 1e-9),
            "recall_p95_over_p50_largest": large["recall"]["p95_ms"] / max(p50, 1e-9),
        },
        "targets": {
            target_name: {
                "value": p50,
                "target": TARGET_RECALL_P50_MS,
                "met": p50 <= TARGET_RECALL_P50_MS,
                "size": sizes[-1],
                "reference_size": TARGET_SIZE,
            }
        },
        "environment": {
            "python": python_version(),
            "duckdb": package_version("duckdb"),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
        },
    }

    c, env = corpus, results["environment"]
    print(
        f"memory benchmark (Python {env['python']}, DuckDB {env['duckdb']}, {env['cpus']} "
        f"CPUs): {c['facts']:,} facts (vocabulary {c['vocabulary']:,} words, "
        f"{c['words_mean']:.1f} words each; {c['agents']} agents x {c['users']} users, "
        f"{c['scopes']} scopes; provenance "
        + ", ".join(f"{share:.0%} {p}" for p, share in c["provenance"].items())
        + f"; seed {c['seed']}) generated in {c['generate_seconds']:.1f} s, bag-of-words "
        f"{DIMENSIONS}-dim embeddings precomputed in {c['embeddings']['seconds']:.1f} s"
    )
    print(
        f"  {query_info['count']} queries of {query_info['words_mean']:.1f} words: "
        + ", ".join(f"{n} {k}" for k, n in query_info["kinds"].items())
        + f"; limit {LIMIT}; query embedding not timed"
    )
    for size in sizes:
        r = per_size[str(size)]
        ing, st, rec = r["ingest"], r["store"], r["recall"]
        print(f"  {size:,} items")
        print(
            f"    ingest       {ing['seconds']:8.2f} s   ({ing['items_per_second']:,.0f} "
            f"items/s; {ing['calls']} insert_many calls, {ing['items_per_call_mean']:.0f} "
            f"items each on average; first tenth {ing['first_tenth_items_per_second']:,.0f}"
            f"/s, last tenth {ing['last_tenth_items_per_second']:,.0f}/s)"
        )
        print(
            f"    size         {st['bytes'] / 1e6:8.2f} MB  ({st['bytes_per_item']:,.0f} "
            f"B/item after CHECKPOINT; the embedding alone {st['embedding_bytes_per_item']:,}"
            f" B; {st['terms_per_item']:.1f} terms rows/item)"
        )
        for name, s in [("recall", rec), *((f"  {k}", v) for k, v in r["recall_by_kind"].items())]:
            print("  " + latency_line(name, s, width=19, digits=2, runs=True))
        print(
            f"    results per query: {rec['results_mean']:.2f} of {LIMIT}; none for "
            f"{rec['empty_share']:.0%}"
        )
    if "skipped" in minilm:
        print(f"  query embedding (MiniLM): skipped, {minilm['skipped']}")
    else:
        print(
            f"  query embedding (MiniLM {minilm['model']}, one query per call, not in the "
            f"recall times): p50 {minilm['p50_ms']:.2f} ms  p95 {minilm['p95_ms']:.2f} ms "
            f"({minilm['runs']} runs; model loaded in {minilm['load_seconds']:.1f} s, "
            f"{minilm['torch_threads']} torch threads)"
        )
    print(
        f"  relevance ({relevant['items']} labelled facts, {relevant['queries']} paraphrased "
        f"questions, embedder {relevant['embedder']}):"
    )
    for mode in ("lexical", "embedding", "fused"):
        m = relevant[mode]
        print(
            f"    {mode:10} "
            + "  ".join(f"recall@{k} {m[f'recall@{k}']:.3f}" for k in KS["memory"])
            + f"  MRR {m['mrr']:.3f}"
        )
    r = results["ratios"]
    if len(sizes) > 1:
        print(
            f"  {sizes[-1]:,} / {sizes[0]:,} items: recall p50 "
            f"{r['recall_p50_largest_over_smallest']:.2f}x, ingest rate "
            f"{r['ingest_rate_largest_over_smallest']:.2f}x"
        )
    print(
        f"target {target_name}: {p50:.3f} ms (target {TARGET_RECALL_P50_MS:g} ms) "
        f"{verdict(p50 <= TARGET_RECALL_P50_MS)}"
    )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
