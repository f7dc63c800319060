"""The ``local`` search backend's index: BM25 (tantivy) over a folder of HTML, Markdown and
text documents, kept on disk and refreshed incrementally.

A document's title, date and URL come from its own metadata: YAML front matter in
Markdown (``title``, ``date``, ``url``), ``<title>``, ``<meta name="date">`` and
``<link rel="canonical">`` in HTML, ``Title:``/``Date:``/``URL:`` header lines (then a
blank line) in text files. Without a URL a document gets ``base_url`` + its path below the
indexed folder, or a ``file://`` URL.

Every build is one tantivy commit: a refresh that fails leaves the previous index whole.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import lxml.html
import tantivy
import yaml
from dagentic import ToolError

from .extract import clean_text, html_to_text

__all__ = ["RECENCY", "BuildReport", "Document", "LocalIndex", "read_document"]

SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".text": "text",
}
MAX_FILE_BYTES = 5_000_000
FORMAT = 1  # bump when parsing or the schema changes: every document is re-read
RECENCY = {"day": 1, "week": 7, "month": 31, "year": 366}
SNIPPET_CHARS = 240
WORDS = re.compile(r"\w+")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)
MARKDOWN = [
    (re.compile(p, re.MULTILINE), r)
    for p, r in (
        (r"!?\[([^\]]*)\]\([^)]*\)", r"\1"),  # [text](url), ![alt](src)
        (r"^\s{0,3}(#{1,6}|>)\s?", ""),  # headings, quotes
        (r"(\*\*|__|`)", ""),  # bold, code
    )
]
_BUILD_LOCKS: dict[str, threading.Lock] = {}  # one builder per index folder in a process
_GUARD = threading.Lock()
TEXT_HEADER = re.compile(r"^(title|date|url)\s*:\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Document:
    """One indexed document."""

    path: str
    title: str
    body: str
    url: str
    date: dt.datetime | None


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What a build or refresh did."""

    index_dir: str
    documents: int
    added: int
    updated: int
    removed: int
    unchanged: int
    skipped: list[str]
    seconds: float


FRONT_MATTER_CHARS = 8192  # read as YAML up to this size


def read_document(path: Path, root: Path, base_url: str | None = None) -> Document:
    """Parse one file into a :class:`Document` (``root`` is the indexed folder)."""
    raw = path.read_bytes().decode("utf-8-sig", errors="replace")
    kind = SUFFIXES[path.suffix.lower()]
    meta: dict[str, Any] = {}
    if kind == "markdown":
        match = FRONT_MATTER.match(raw)
        if match:
            meta = _front_matter(match.group(1))
            raw = raw[match.end() :]
        body = clean_text(_plain_markdown(raw))
        title = meta.get("title") or next(
            (line.strip() for line in body.splitlines() if line.strip()), ""
        )
    elif kind == "html":
        meta = _html_meta(raw)
        title, body = html_to_text(raw)
    else:
        lines = raw.splitlines()
        header = 0
        while header < len(lines) and (match := TEXT_HEADER.match(lines[header])):
            meta[match.group(1).lower()] = match.group(2).strip()
            header += 1
        body = clean_text("\n".join(lines[header:]))
        title = meta.get("title") or (body.splitlines() or [""])[0]
    url = str(meta.get("url") or "") or _url_for(path, root, base_url)
    return Document(
        path=str(path),
        title=clean_text(str(title or path.stem))[:300],
        body=body,
        url=url,
        date=_date(meta.get("date")),
    )


def _front_matter(text: str) -> dict[str, Any]:
    """YAML front matter's plain values; where it is not valid YAML (``title: a: b`` often
    is not), or longer than a front matter is (YAML reads some long numbers at a cost that
    grows with the square of their length), its ``key: value`` lines as written."""
    loaded = None
    if len(text) <= FRONT_MATTER_CHARS:
        try:
            loaded = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: a 4300+ digit int
            loaded = None
    if isinstance(loaded, dict):
        return {k: v for k, v in loaded.items() if isinstance(v, str | int | float | dt.date)}
    return {
        key.strip().lower(): value.strip().strip("\"'")
        for key, sep, value in (line.partition(":") for line in text.splitlines())
        if sep and key.strip()
    }


def _plain_markdown(text: str) -> str:
    """Markdown as the words a reader sees: no heading marks, emphasis or link targets."""
    for pattern, replacement in MARKDOWN:
        text = pattern.sub(replacement, text)
    return text


def _html_meta(raw: str) -> dict[str, Any]:
    try:
        tree = lxml.html.document_fromstring(raw)
    except (lxml.etree.ParserError, ValueError):
        return {}
    date = tree.xpath(
        "string(//meta[@name='date' or @property='article:published_time' "
        "or @name='dc.date'][1]/@content)"
    ) or tree.xpath("string(//time[@datetime][1]/@datetime)")
    url = tree.xpath("string(//link[@rel='canonical'][1]/@href)")
    return {"date": date or None, "url": url or None}


def _date(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _url_for(path: Path, root: Path, base_url: str | None) -> str:
    if base_url is None:
        return path.resolve().as_uri()
    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    return base_url.rstrip("/") + "/" + quote(relative.as_posix())


def _domains(url: str) -> list[str]:
    """``news.retail.example`` → itself, ``retail.example``, ``example``: what ``site``
    may name."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    parts = host.split(".") if host else []
    return [".".join(parts[i:]) for i in range(len(parts))]


def _files(roots: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """Every indexable file under the roots (hidden files and folders skipped), with its
    root."""
    for root in roots:
        if root.is_file():
            yield root, root
            continue
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).parts
            if (
                path.is_file()
                and path.suffix.lower() in SUFFIXES
                and not any(part.startswith(".") for part in relative)
            ):
                yield path, root


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("path", stored=True, tokenizer_name="raw")
    builder.add_text_field("fingerprint", stored=True, tokenizer_name="raw")
    builder.add_text_field("title", stored=True, tokenizer_name="en_stem")
    builder.add_text_field("body", stored=True, tokenizer_name="en_stem")
    builder.add_text_field("url", stored=True, tokenizer_name="raw")
    builder.add_text_field("domains", stored=False, tokenizer_name="raw")
    builder.add_date_field("date", stored=True, indexed=True, fast=True)
    return builder.build()


class LocalIndex:
    """A BM25 index in ``directory``. Searching is safe from many threads; building is
    serialised per directory within a process (and by tantivy's lock across processes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.schema = _schema()
        self._index: tantivy.Index | None = None
        with _GUARD:
            self._lock = _BUILD_LOCKS.setdefault(str(self.directory), threading.Lock())

    def exists(self) -> bool:
        return self.directory.is_dir() and tantivy.Index.exists(str(self.directory))

    def _open(self) -> tantivy.Index:
        if self._index is None:
            try:
                self._index = tantivy.Index(self.schema, path=str(self.directory), reuse=True)
            except ValueError as exc:
                raise ToolError(
                    f"web.search: the index in {self.directory} was made by another version "
                    f"({exc}); rebuild it with `dagentic index build`"
                ) from exc
        return self._index

    def build(self, roots: Iterable[Path], base_url: str | None = None) -> BuildReport:
        """Make the index hold exactly the documents under ``roots``: new and changed files
        are (re)indexed, files that are gone are removed, the rest is left alone."""
        started = time.perf_counter()
        roots = [Path(r).expanduser().resolve() for r in roots]
        for root in roots:
            if not root.exists():
                raise ToolError(
                    f"index: {root} does not exist; pass a folder of .md, .html or .txt documents"
                )
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            index = self._open()
            index.reload()
            known = self._fingerprints(index)
            writer = index.writer(heap_size=64_000_000, num_threads=1)
            seen: set[str] = set()
            added = updated = unchanged = 0
            skipped: list[str] = []
            for path, root in _files(roots):
                key = str(path)
                if key in seen:
                    continue
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    skipped.append(f"{path}: {exc.strerror or exc}")
                    continue  # not seen: an older version leaves the index
                if len(data) > MAX_FILE_BYTES:
                    skipped.append(f"{path}: larger than {MAX_FILE_BYTES} bytes")
                    continue
                seen.add(key)
                fingerprint = hashlib.sha256(
                    data + json.dumps([FORMAT, base_url, str(root)]).encode()
                ).hexdigest()
                if known.get(key) == fingerprint:
                    unchanged += 1
                    continue
                document = read_document(path, root, base_url)
                if key in known:
                    writer.delete_documents_by_term("path", key)
                    updated += 1
                else:
                    added += 1
                writer.add_document(self._to_tantivy(document, fingerprint))
            removed = 0
            for key in known.keys() - seen:
                writer.delete_documents_by_term("path", key)
                removed += 1
            writer.commit()
            writer.wait_merging_threads()
            index.reload()
            (self.directory / "dagentic-index.json").write_text(
                json.dumps(
                    {
                        "format": FORMAT,
                        "roots": [str(r) for r in roots],
                        "base_url": base_url,
                        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    },
                    indent=2,
                )
                + "\n",
                encoding="utf-8",
            )
        return BuildReport(
            index_dir=str(self.directory),
            documents=len(seen),
            added=added,
            updated=updated,
            removed=removed,
            unchanged=unchanged,
            skipped=skipped,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _fingerprints(self, index: tantivy.Index) -> dict[str, str]:
        searcher = index.searcher()
        if not searcher.num_docs:
            return {}
        hits = searcher.search(tantivy.Query.all_query(), limit=searcher.num_docs, count=False).hits
        known: dict[str, str] = {}
        for _, address in hits:
            doc = searcher.doc(address)
            known[str(doc.get_first("path"))] = str(doc.get_first("fingerprint"))
        return known

    def _to_tantivy(self, document: Document, fingerprint: str) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_text("path", document.path)
        doc.add_text("fingerprint", fingerprint)
        doc.add_text("title", document.title)
        doc.add_text("body", document.body)
        doc.add_text("url", document.url)
        for domain in _domains(document.url):
            doc.add_text("domains", domain)
        if document.date is not None:
            doc.add_date("date", document.date)
        return doc

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        site: str | None = None,
        recency: str | None = None,
        now: dt.datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The best ``limit`` documents for ``query`` by BM25 (title words count double),
        optionally only from ``site`` (a domain and its subdomains) and from the last
        ``recency`` (day, week, month, year)."""
        words = WORDS.findall(query.lower())
        if not words:
            return []
        index = self._open()
        index.reload()
        text = index.parse_query(" ".join(words), ["title", "body"], field_boosts={"title": 2.0})
        clauses = [(tantivy.Occur.Must, text)]
        if site:
            domain = _domains(site if "//" in site else f"http://{site}")
            clauses.append(
                (
                    tantivy.Occur.Must,
                    tantivy.Query.const_score_query(
                        tantivy.Query.term_query(
                            self.schema, "domains", domain[0] if domain else ""
                        ),
                        0.0,
                    ),
                )
            )
        if recency:
            until = now or dt.datetime.now(dt.UTC)
            since = until - dt.timedelta(days=RECENCY[recency])
            clauses.append(
                (
                    tantivy.Occur.Must,
                    tantivy.Query.const_score_query(
                        tantivy.Query.range_query(
                            self.schema,
                            "date",
                            tantivy.FieldType.Date,
                            lower_bound=since,
                            upper_bound=until,
                        ),
                        0.0,
                    ),
                )
            )
        searcher = index.searcher()
        hits = searcher.search(tantivy.Query.boolean_query(clauses), limit=limit, count=False).hits
        snippets = tantivy.SnippetGenerator.create(searcher, text, self.schema, "body")
        snippets.set_max_num_chars(SNIPPET_CHARS)
        results = []
        for score, address in hits:
            doc = searcher.doc(address)
            fragment = snippets.snippet_from_doc(doc).fragment()
            body = doc.get_first("body") or ""
            date = doc.get_first("date")
            results.append(
                {
                    "title": doc.get_first("title") or "",
                    "url": doc.get_first("url") or "",
                    "snippet": " ".join(clean_text(fragment or body[:SNIPPET_CHARS]).split()),
                    "score": round(float(score), 4),
                    "published": date.date().isoformat() if date is not None else None,
                }
            )
        return results
