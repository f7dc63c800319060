"""web.search benchmark: the local BM25 index's build, refresh, size and query latency.

Run:  .venv/bin/python tests/benchmarks/bench_web.py [--docs 10000] [--queries 300]
                                                    [--tool-queries 100] [--quick] [--json FILE]

Generates --docs documents deterministically (seeded) into a temporary folder: 80 % Markdown
with front matter, 10 % text files with Title/Date/URL headers, 10 % HTML pages with
navigation and footer boilerplate; 100-400 words each drawn Zipf-like from a vocabulary of
about 3,000 words (common English words, then retail and news words, then rarer made-up
names); dates spread over the two years before 2026-11-01 (2 % undated); URLs on six
domains and their subdomains (2 % without a URL of their own). Then measures:
  build           a full build of a new index (one commit)
  refresh         a second build with nothing changed (every file hashed, none parsed)
  refresh-1%      a build after 1 % of the files changed
  index size      bytes on disk
  query           LocalIndex.search latency over --queries queries of 1-4 words (a quarter
                  with a site filter, a quarter with a recency filter), p50 and p95
  tool            the whole web.search tool (local backend, cache off) for --tool-queries
                  of the same queries

Target on the 2-core reference machine: query p50 <= 20 ms at 10,000 documents.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from dagentic import Settings, ToolContext
from dagentic.plugins.web import search as search_tool
from dagentic.plugins.web.index import LocalIndex
from stats import (
    latency_line,
    make_parser,
    package_version,
    python_version,
    summary,
    verdict,
    write_results,
)

TARGET_QUERY_P50_MS = 20.0
WARMUP = 5
SEED = 20261101
END = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)  # the newest document; recency's "now"
SPAN_DAYS = 730
QUICK = {"docs": 300, "queries": 60, "tool_queries": 20}
DOMAINS = [
    "news.retail.example",
    "www.tallbrook.example",
    "investors.tallbrook.example",
    "marketwatch.example",
    "bizjournal.example",
    "consumerwatch.example",
]
SITES = [
    "retail.example",
    "tallbrook.example",
    "www.tallbrook.example",
    "marketwatch.example",
    "bizjournal.example",
    "consumerwatch.example",
    "investors.tallbrook.example",
]
RECENCIES = ["week", "month", "year"]

FUNCTION_WORDS = """the of and to a in that is was for it with as on be at by this had not are
but from or have an they which one you were her all she there would their we him been has
when who will more no if out so said what up its about into than them can only other new
some could time these two may then do first any my now such like our over man me even most
made after also did many before must through back years where much your way well down
should because each just those people how too little state good very make world still own
see men work long get here between both life being under never day same another know while
last might us great old year off come since against go came right used take three""".split()  # noqa: SIM905

DOMAIN_WORDS = """retail store stores region regions north south east west central revenue
sales quarter quarterly results growth customer customers order orders refund refunds
refunded return returns product products gadget gadgets electronics garden office supplies
tools widgets headphones delivery pickup counter counters fleet network expansion opening
opened open manager managers staff shift shifts holiday season seasonal spring summer
autumn winter january february march april may june july august september october november
december price prices discount discounts margin margins profit profits loss losses
forecast outlook analyst analysts investor investors market markets share shares
competitor competitors supplier suppliers supply agreement deal contract warehouse
inventory stock shelves aisle checkout payment payments card cards online website app
loyalty program members membership survey complaint complaints fault faults repair
repairs warranty service desk counter business enterprise consumer consumers segment
account accounts report reports announced announcement plan plans strategy board chief
executive officer finance financial budget cost costs spending shoppers household goods
hardware home kitchen lighting paint furniture appliance appliances battery batteries
charger chargers speaker speakers camera cameras tablet tablets phone phones watch
watches smart device devices launch launched range line brand brands premium value
record records rise rises rose fall falls fell steady strong weak lead leads leading
trail trails gap ahead behind percent million thousand total average median week weeks
month months daily weekly monthly annual year city cities town towns rural urban
suburban mall street district county territory coast mountain valley river harbour
bridge park depot route routes truck trucks van vans driver drivers logistics weather
storm storms rain snow heat demand shortage shortages delay delays shipment shipments
port ports container containers freight import imports export exports tariff tariffs
policy policies rule rules law regulation regulator regulators safety recall recalls
quality standard standards test tests review reviews rating ratings score scores
interview interviews spokesperson statement statements press release newsroom journal
editor editors column columns opinion analysis data figures chart table estimate
estimates target targets goal goals hiring hired jobs job training trainee trainees
union wages wage pay bonus bonuses pension energy power solar heating cooling
insulation renovation renovations build building buildings site sites lease leases
rent rents property properties land planning permit permits council councils mayor
community local national global international""".split()  # noqa: SIM905

SYLLABLES = """ka lo mi ren tor vas bel dun fir gal hes jor kel lun mar
nor pel quin ros sel tam ul vin wes yar zel an bro cal dra""".split()  # noqa: SIM905


def vocabulary(size: int = 3000) -> list[str]:
    """Common words first, then domain words, then made-up names: rank order for Zipf."""
    words = list(dict.fromkeys(FUNCTION_WORDS + DOMAIN_WORDS))
    seen = set(words)
    for a, b, c in itertools.product(SYLLABLES, repeat=3):
        if len(words) >= size:
            break
        word = a + b + (c if (len(words) % 3) else "")
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words[:size]


class Writer:
    """Deterministic documents in three formats."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.words = vocabulary()
        self.cum_weights = list(
            itertools.accumulate(1.0 / (rank + 2.7) ** 1.05 for rank in range(len(self.words)))
        )
        self.content = self.words[len(FUNCTION_WORDS) :]  # titles skip the function words

    def sentence(self, count: int) -> str:
        words = self.rnd.choices(self.words, cum_weights=self.cum_weights, k=count)
        return words[0].capitalize() + " " + " ".join(words[1:]) + "."

    def paragraphs(self, total: int) -> list[str]:
        paragraphs, left = [], total
        while left > 0:
            sentences = []
            for _ in range(self.rnd.randint(2, 5)):
                count = min(left, self.rnd.randint(8, 20))
                if count <= 1:
                    left = 0
                    break
                sentences.append(self.sentence(count))
                left -= count
            if sentences:
                paragraphs.append(" ".join(sentences))
        return paragraphs

    def document(self, i: int) -> tuple[str, str, str]:
        """(relative path, file text, url) of document ``i``."""
        rnd = self.rnd
        title_words = [*rnd.sample(self.content[:600], 3), rnd.choice(self.content[600:])]
        rnd.shuffle(title_words)
        title = " ".join(title_words).capitalize()
        date = None if rnd.random() < 0.02 else END - dt.timedelta(days=rnd.random() * SPAN_DAYS)
        domain = rnd.choice(DOMAINS)
        slug = "-".join(title_words)
        month = date.strftime("%Y/%m") if date else "undated"
        url = "" if rnd.random() < 0.02 else f"https://{domain}/{month}/{slug}-{i}"
        paragraphs = self.paragraphs(rnd.randint(100, 400))
        kind = rnd.random()
        folder = f"{domain}/{month}"
        if kind < 0.8:
            meta = [f"title: {json.dumps(title)}"]
            if date:
                meta.append(f"date: {date.date().isoformat()}")
            if url:
                meta.append(f"url: {url}")
            body = "\n\n".join(paragraphs)
            if rnd.random() < 0.3:
                body = body.replace(f" {title_words[0]} ", f" **{title_words[0]}** ", 1)
            text = "---\n" + "\n".join(meta) + f"\n---\n# {title}\n\n{body}\n"
            return f"{folder}/{slug}-{i}.md", text, url
        if kind < 0.9:
            headers = (
                [f"Title: {title}"]
                + ([f"Date: {date.date().isoformat()}"] if date else [])
                + ([f"URL: {url}"] if url else [])
            )
            text = "\n".join(headers) + "\n\n" + "\n\n".join(paragraphs) + "\n"
            return f"{folder}/{slug}-{i}.txt", text, url
        head = [f"<title>{title}</title>"]
        if date:
            head.append(f'<meta name="date" content="{date.isoformat(timespec="seconds")}">')
        if url:
            head.append(f'<link rel="canonical" href="{url}">')
        body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
        text = (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'{"".join(head)}\n</head>\n<body>\n<header><a href="/">{domain}</a><nav>'
            f'<a href="/news">News</a> <a href="/retail">Retail</a> <a href="/login">'
            f"Log in</a></nav></header>\n<main><article>\n<h1>{title}</h1>\n{body}\n"
            f"</article></main>\n<footer><p>Copyright 2026 {domain}. All rights "
            f"reserved.</p></footer>\n</body>\n</html>\n"
        )
        return f"{folder}/{slug}-{i}.html", text, url

    def query(self) -> tuple[str, str | None, str | None]:
        """1-4 words, mostly content words; a quarter with a site, a quarter with recency."""
        rnd = self.rnd
        count = rnd.choices([1, 2, 3, 4], weights=[3, 4, 2, 1])[0]
        pool = self.content[:1500] if rnd.random() < 0.8 else self.words
        words = rnd.sample(pool, count)
        kind = rnd.random()
        site = rnd.choice(SITES) if kind < 0.25 else None
        recency = rnd.choice(RECENCIES) if 0.25 <= kind < 0.5 else None
        return " ".join(words), site, recency


def generate(folder: Path, docs: int, seed: int) -> dict[str, Any]:
    writer = Writer(seed)
    kinds = {"md": 0, "txt": 0, "html": 0}
    total_bytes = words = 0
    for i in range(docs):
        relative, text, _ = writer.document(i)
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode()
        path.write_bytes(data)
        kinds[relative.rsplit(".", 1)[1]] += 1
        total_bytes += len(data)
        words += len(text.split())
    return {
        "documents": docs,
        "formats": kinds,
        "bytes": total_bytes,
        "words_approx": words,
        "vocabulary": len(writer.words),
        "seed": seed,
        "domains": len(DOMAINS),
    }


def folder_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def timed_queries(
    run: Callable[[str, str | None, str | None], list[Any]],
    queries: list[tuple[str, str | None, str | None]],
) -> tuple[list[float], list[int]]:
    for query in queries[:WARMUP]:
        run(*query)
    gc.collect()
    times, counts = [], []
    for query in queries:
        start = time.perf_counter()
        found = run(*query)
        times.append(time.perf_counter() - start)
        counts.append(len(found))
    return times, counts


async def timed_tool(
    settings: Settings, queries: list[tuple[str, str | None, str | None]]
) -> tuple[list[float], list[int]]:
    context = ToolContext("bench", "search", 1, settings)

    async def call(query: str, site: str | None, recency: str | None) -> list[Any]:
        output = await search_tool.fn(
            query=query, context=context, limit=5, site=site, recency=recency
        )
        if output["backend"] != "local":
            raise RuntimeError(f"web.search used {output['backend']!r}, not the local index")
        return output["results"]

    for query in queries[:WARMUP]:
        await call(*query)
    gc.collect()
    times, counts = [], []
    for query in queries:
        start = time.perf_counter()
        found = await call(*query)
        times.append(time.perf_counter() - start)
        counts.append(len(found))
    return times, counts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--docs", type=int, default=10_000, help="Documents to generate.")
    parser.add_argument("--queries", type=int, default=300, help="Timed LocalIndex queries.")
    parser.add_argument(
        "--tool-queries", type=int, default=100, help="Timed web.search tool calls."
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['docs']} documents, {QUICK['queries']} queries and "
        f"{QUICK['tool_queries']} tool calls (smoke test).",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.docs, args.queries, args.tool_queries = (
            QUICK["docs"],
            QUICK["queries"],
            QUICK["tool_queries"],
        )

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        docs, index_dir = Path(tmp) / "docs", Path(tmp) / "index"
        started = time.perf_counter()
        corpus = generate(docs, args.docs, args.seed)
        corpus["generate_seconds"] = round(time.perf_counter() - started, 3)

        index = LocalIndex(index_dir)
        gc.collect()
        report = index.build([docs])
        if report.added != args.docs or report.skipped:
            raise RuntimeError(
                f"the build indexed {report.added} of {args.docs} documents "
                f"(skipped {report.skipped[:3]})"
            )
        build = {
            "seconds": report.seconds,
            "documents": report.documents,
            "docs_per_second": report.documents / max(report.seconds, 1e-9),
        }
        refresh_report = index.build([docs])
        if refresh_report.unchanged != args.docs:
            raise RuntimeError(f"a refresh with nothing changed reported {refresh_report}")
        refresh = {"seconds": refresh_report.seconds, "unchanged": refresh_report.unchanged}

        changed = max(1, args.docs // 100)
        files = sorted(p for p in docs.rglob("*") if p.is_file())
        for path in random.Random(args.seed).sample(files, changed):
            path.write_text(
                path.read_text(encoding="utf-8") + "\nUpdated edition.\n", encoding="utf-8"
            )
        changed_report = index.build([docs])
        if changed_report.updated != changed:
            raise RuntimeError(f"changed {changed} files, the refresh reported {changed_report}")
        refresh_changed = {"seconds": changed_report.seconds, "updated": changed_report.updated}

        size, count = folder_bytes(index_dir)
        index_size = {
            "bytes": size,
            "files": count,
            "bytes_per_document": size / args.docs,
            "source_bytes": corpus["bytes"],
            "share_of_source": size / corpus["bytes"],
        }

        writer = Writer(args.seed + 1)
        queries = [writer.query() for _ in range(max(args.queries, args.tool_queries))]
        fresh = LocalIndex(index_dir)  # as a new process would open it
        times, counts = timed_queries(
            lambda q, site, recency: fresh.search(q, limit=5, site=site, recency=recency, now=END),
            queries[: args.queries],
        )
        query = {
            **summary(times),
            "results_mean": statistics.fmean(counts),
            "empty_share": sum(1 for c in counts if c == 0) / len(counts),
        }
        by_kind: dict[str, list[float]] = {"plain": [], "site": [], "recency": []}
        for (_, site, recency), elapsed in zip(queries, times, strict=False):
            by_kind["site" if site else "recency" if recency else "plain"].append(elapsed)
        query_by_kind = {kind: summary(t) for kind, t in by_kind.items() if t}

        # Defaults, but blind to any dagentic.toml or DAGENTIC_* variables around it.
        settings = Settings(
            _env_prefix="DAGENTIC_BENCH_UNUSED_",  # type: ignore[call-arg]
            web={
                "backend": "local",
                "local": {"index_dir": index_dir},
                "cache_dir": Path(tmp) / "cache",
                "cache_ttl": 0,
            },
            tracing={"exporter": "none"},
        )
        tool_times, tool_counts = anyio.run(
            timed_tool, settings, queries[: args.tool_queries], backend="asyncio"
        )
        tool = {**summary(tool_times), "results_mean": statistics.fmean(tool_counts)}

    p50 = query["p50_ms"]
    results: dict[str, Any] = {
        "corpus": corpus,
        "build": build,
        "refresh": refresh,
        "refresh_changed": refresh_changed,
        "index": index_size,
        "query": query,
        "query_by_kind": query_by_kind,
        "tool": tool,
        "ratios": {
            "refresh_over_build": refresh["seconds"] / max(build["seconds"], 1e-9),
            "refresh_changed_over_build": refresh_changed["seconds"] / max(build["seconds"], 1e-9),
            "tool_over_query_p50": tool["p50_ms"] / max(p50, 1e-9),
            "query_p95_over_p50": query["p95_ms"] / max(p50, 1e-9),
        },
        "targets": {
            "query_p50_ms": {
                "value": p50,
                "target": TARGET_QUERY_P50_MS,
                "met": p50 <= TARGET_QUERY_P50_MS,
            }
        },
        "environment": {
            "python": python_version(),
            "tantivy": package_version("tantivy"),
            "trafilatura": package_version("trafilatura"),
        },
    }

    c, r = corpus, results["ratios"]
    print(
        f"web benchmark (Python {results['environment']['python']}, tantivy "
        f"{results['environment']['tantivy']}): {c['documents']:,} documents "
        f"({c['formats']['md']:,} md, {c['formats']['txt']:,} txt, {c['formats']['html']:,} "
        f"html; {c['bytes'] / 1e6:.1f} MB, ~{c['words_approx']:,} words, vocabulary "
        f"{c['vocabulary']:,}, seed {c['seed']}) generated in {c['generate_seconds']:.1f} s"
    )
    print(
        f"  build          {build['seconds']:8.2f} s   ({build['docs_per_second']:,.0f} "
        f"documents/s)"
    )
    print(
        f"  refresh        {refresh['seconds']:8.2f} s   (nothing changed; "
        f"{r['refresh_over_build']:.1%} of the build)"
    )
    print(
        f"  refresh-1%     {refresh_changed['seconds']:8.2f} s   "
        f"({refresh_changed['updated']:,} files changed; "
        f"{r['refresh_changed_over_build']:.1%} of the build)"
    )
    print(
        f"  index size     {index_size['bytes'] / 1e6:8.2f} MB  "
        f"({index_size['bytes_per_document']:,.0f} B/document, "
        f"{index_size['share_of_source']:.0%} of the source, {index_size['files']} files)"
    )
    for name, s in [
        ("query", query),
        *((f"  {k}", v) for k, v in query_by_kind.items()),
        ("tool", tool),
    ]:
        print(latency_line(name, s, width=13, digits=3, runs=True))
    print(
        f"  results per query: {query['results_mean']:.2f} of 5 (index), "
        f"{tool['results_mean']:.2f} (tool); no result for {query['empty_share']:.0%}"
    )
    print(
        f"  tool p50 / query p50: {r['tool_over_query_p50']:.2f}x; query p95 / p50: "
        f"{r['query_p95_over_p50']:.2f}x"
    )
    print(
        f"target query_p50_ms: {p50:.3f} ms (target {TARGET_QUERY_P50_MS:g} ms) "
        f"{verdict(p50 <= TARGET_QUERY_P50_MS)}"
    )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
