"""Long-term memory in a DuckDB file: items with text, embedding, scope, provenance, times
and importance; hybrid recall (BM25 + vector similarity + recency) with filters; writes
decided by a policy (insert, merge, replace or ignore); deletes by id or filter; TTLs.

One connection per file and process, used from worker threads under a lock. Merges and
replacements are optimistic: an item changed by someone else between the decision and the
write (its ``version`` moved) is decided again, so concurrent writers never lose an update.

A write may carry an idempotency key (a tool call's
:attr:`~dagentic.ToolContext.idempotency_key`): it is stored in table ``idempotency_keys``
with what the write did, in the same transaction as the write, and a key stored already
makes the write fail with :class:`KeyUsed` (nothing written); :meth:`MemoryStore.written`
says what the first write did.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DagenticError, InvalidArgsError
from ..threads import run_in_thread
from .embeddings import Embedder

# duckdb and numpy load when a store is first used, not with the package: `import dagentic`
# and the commands that keep no memory must not pay for them.
if TYPE_CHECKING:
    import duckdb

__all__ = ["KeyUsed", "MemoryItem", "MemoryStore", "Recalled", "Scope", "tokenize"]

WORD = re.compile(r"\w+")
STOP = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    }
)
K1, B = 1.2, 0.75
_OPEN: dict[str, tuple[duckdb.DuckDBPyConnection, threading.Lock]] = {}
_OPENING = threading.Lock()


def tokenize(text: str) -> list[str]:
    """Lower-case words without stop words: the lexical side of recall."""
    return [w for w in WORD.findall(text.lower()) if w not in STOP and len(w) < 40]


class KeyUsed(DagenticError):
    """A write carried an idempotency key that an earlier write stored: nothing was
    written (:meth:`MemoryStore.written` says what the earlier one did)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose memory: an agent's, a user's, one session's (None: not restricted)."""

    agent: str | None = None
    user: str | None = None
    session: str | None = None


@dataclass(slots=True)
class MemoryItem:
    """One remembered fact."""

    id: str
    text: str
    provenance: str
    scope: Scope = field(default_factory=Scope)
    importance: float = 0.5
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    version: int = 1

    @property
    def untrusted(self) -> bool:
        """From web pages or tool outputs: to be shown to models as quoted data only."""
        return self.provenance != "user" and not self.provenance.startswith("agent")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "provenance": self.provenance,
            "scope": {
                "agent": self.scope.agent,
                "user": self.scope.user,
                "session": self.scope.session,
            },
            "importance": self.importance,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "expires_at": _iso(self.expires_at),
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class Recalled:
    """An item with how well it matched: the score and its parts."""

    item: MemoryItem
    score: float
    lexical: float
    vector: float
    recency: float


class _Vectors:
    """Every item's embedding as one float32 matrix, kept in step with this process's
    writes (a DuckDB file has one writing process): ranking 100,000 items by similarity
    is one matrix product here, and SQL then scores only the candidates."""

    def __init__(self, db: duckdb.DuckDBPyConnection, dims: int) -> None:
        import numpy as np

        self.db_id = id(db)
        self.dims = dims
        self.ids: list[str] = [
            r[0] for r in db.execute("SELECT id FROM items ORDER BY rowid").fetchall()
        ]
        flat = db.execute(
            "SELECT unnest(embedding) AS x FROM (SELECT embedding FROM items ORDER BY rowid)"
        ).fetchnumpy()["x"]
        self.matrix = np.asarray(flat, dtype=np.float32).reshape(len(self.ids), dims)
        self.size = len(self.ids)
        self.row = {item_id: n for n, item_id in enumerate(self.ids)}
        self.alive = np.ones(self.size, dtype=bool)

    def add(self, ids: list[str], vectors: list[list[float]]) -> None:
        import numpy as np

        if self.size + len(ids) > len(self.matrix):  # grow by doubling: appends stay cheap
            grown = np.zeros(
                (max(2 * len(self.matrix), self.size + len(ids), 64), self.dims), dtype=np.float32
            )
            grown[: self.size] = self.matrix[: self.size]
            alive = np.zeros(len(grown), dtype=bool)
            alive[: self.size] = self.alive[: self.size]
            self.matrix, self.alive = grown, alive
        for item_id, vector in zip(ids, vectors, strict=True):
            self.matrix[self.size] = vector
            self.alive[self.size] = True
            self.row[item_id] = self.size
            self.ids.append(item_id)
            self.size += 1

    def replace(self, item_id: str, vector: list[float]) -> None:
        if item_id in self.row:
            self.matrix[self.row[item_id]] = vector

    def remove(self, ids: list[str]) -> None:
        for item_id in ids:
            row = self.row.pop(item_id, None)
            if row is not None:
                self.alive[row] = False

    def best(self, query: list[float], count: int) -> tuple[list[str], float]:
        """The ids of the ``count`` most similar items, and the similarity of the last."""
        import numpy as np

        scores = self.matrix[: self.size] @ np.asarray(query, dtype=np.float32)
        scores[~self.alive[: self.size]] = -np.inf
        count = min(count, int(self.alive[: self.size].sum()))
        if count == 0:
            return [], -1.0
        top = np.argpartition(-scores, count - 1)[:count]
        return [self.ids[n] for n in top], float(scores[top].min())


_VECTORS: dict[str, _Vectors] = {}  # by memory file, for the connection in _OPEN
CANDIDATES = 400  # items ranked by similarity before SQL scores them (and lexical hits)
EXACT_FROM = 5000  # below this many items the full query is as fast


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


class MemoryStore:
    """A long-term memory file. Methods are async (the work runs in a worker thread)."""

    def __init__(
        self,
        path: str | Path,
        embedder: Embedder,
        *,
        half_life_days: float = 30.0,
        weights: tuple[float, float, float] = (0.35, 0.55, 0.10),
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.embedder = embedder
        self.half_life_days = half_life_days
        self.weights = weights
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    # -- connection ----------------------------------------------------------------------

    def _connect(self) -> tuple[duckdb.DuckDBPyConnection, threading.Lock]:
        if self._db is not None:
            return self._db, self._lock
        key = str(self.path)
        with _OPENING:
            if key not in _OPEN:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                import duckdb

                try:
                    db = duckdb.connect(key)
                except duckdb.IOException as exc:
                    raise DagenticError(
                        f"memory: cannot open {self.path}: {exc}; another process may hold "
                        "it (DuckDB files have one writer)"
                    ) from exc
                _OPEN[key] = (db, threading.Lock())
            db, lock = _OPEN[key]
            with lock:
                self._create(db)  # also checks this store's embedder against the file
            self._db, self._lock = db, lock
        return self._db, self._lock

    def _create(self, db: duckdb.DuckDBPyConnection) -> None:
        dims = self.embedder.dimensions
        db.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
        mine = json.dumps({"name": self.embedder.name, "dimensions": dims})
        if row is None:
            db.execute("INSERT INTO meta VALUES ('embedder', ?)", [mine])
        elif json.loads(row[0])["dimensions"] != dims:
            raise InvalidArgsError(
                f"memory: {self.path} holds {json.loads(row[0])['name']} embeddings of "
                f"{json.loads(row[0])['dimensions']} dimensions, not {dims} "
                f"({self.embedder.name}); use that embedder or another memory.path"
            )
        db.execute(f"""CREATE TABLE IF NOT EXISTS items (
            id VARCHAR PRIMARY KEY, text VARCHAR NOT NULL, embedding FLOAT[{dims}] NOT NULL,
            scope_agent VARCHAR, scope_user VARCHAR, scope_session VARCHAR,
            provenance VARCHAR NOT NULL, importance DOUBLE NOT NULL,
            created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ, length INTEGER NOT NULL, version INTEGER NOT NULL)""")
        db.execute(
            "CREATE TABLE IF NOT EXISTS terms (item_id VARCHAR NOT NULL, "
            "term VARCHAR NOT NULL, tf INTEGER NOT NULL)"
        )
        # Added after the first release: files from before get it when next opened.
        db.execute(
            "CREATE TABLE IF NOT EXISTS idempotency_keys (key VARCHAR PRIMARY KEY, "
            "action VARCHAR NOT NULL, reason VARCHAR NOT NULL, item VARCHAR, "
            "written_at TIMESTAMPTZ NOT NULL)"
        )

    async def _run(self, work: Any, *args: Any) -> Any:
        def locked() -> Any:
            db, lock = self._connect()
            with lock:
                return work(db, *args)

        return await run_in_thread(locked)

    # -- reading -------------------------------------------------------------------------

    async def recall(
        self,
        query: str,
        *,
        limit: int = 5,
        scope: Scope | None = None,
        provenance: list[str] | None = None,
        exclude_untrusted: bool = False,
        now: dt.datetime | None = None,
    ) -> list[Recalled]:
        """The best ``limit`` items for ``query``: BM25 over words + cosine similarity of
        embeddings + recency (half-life ``half_life_days``), weighted, with importance as a
        tie-breaker; only unexpired items of ``scope`` and ``provenance`` (prefixes such as
        ``"untrusted:"`` or ``"tool:"`` match too)."""
        vector = (await run_in_thread(self.embedder.embed, [query]))[0]
        terms = sorted(set(tokenize(query)))
        return await self._run(
            self._recall,
            terms,
            vector,
            limit,
            scope,
            provenance,
            exclude_untrusted,
            now or dt.datetime.now(dt.UTC),
        )

    def _recall(
        self,
        db: duckdb.DuckDBPyConnection,
        terms: list[str],
        vector: list[float],
        limit: int,
        scope: Scope | None,
        provenance: list[str] | None,
        exclude_untrusted: bool,
        now: dt.datetime,
    ) -> list[Recalled]:
        where, params = self._filters(scope, provenance, exclude_untrusted, now)
        vectors = self._vectors(db)
        if vectors.size >= EXACT_FROM:
            # Score only the most similar items and the ones sharing a word with the query;
            # keep the answer only if no other item could beat it (else score them all).
            candidates, floor = vectors.best(vector, max(CANDIDATES, 20 * limit))
            found = self._score(db, where, params, terms, vector, limit, now, candidates)
            _, w_vec, w_rec = self.weights
            outside = w_vec * max(floor, 0.0) + w_rec + 0.01  # the best any other could do
            if len(found) == limit and found[-1].score >= outside:
                return found
        return self._score(db, where, params, terms, vector, limit, now, None)

    def _vectors(self, db: duckdb.DuckDBPyConnection) -> _Vectors:
        vectors = _VECTORS.get(str(self.path))
        if vectors is None or vectors.db_id != id(db):
            vectors = _VECTORS[str(self.path)] = _Vectors(db, self.embedder.dimensions)
        return vectors

    def _score(
        self,
        db: duckdb.DuckDBPyConnection,
        where: str,
        params: list[Any],
        terms: list[str],
        vector: list[float],
        limit: int,
        now: dt.datetime,
        candidates: list[str] | None,
    ) -> list[Recalled]:
        """The best ``limit`` items by the hybrid score, among ``candidates`` and the items
        sharing a word with the query (all live items when ``candidates`` is None)."""
        dims = self.embedder.dimensions
        w_lex, w_vec, w_rec = self.weights
        # Narrow and not materialised: only what scoring needs passes through the plan;
        # the full rows are read for the top `limit` items only.
        sql = f"""
            WITH live AS NOT MATERIALIZED (
                SELECT id, length, updated_at, importance, embedding FROM items
                WHERE {where}),
            stats AS (SELECT count(*) AS n, coalesce(avg(length), 1) AS avgdl FROM live),
            hits AS (SELECT t.item_id, t.term, t.tf, l.length FROM terms t
                     JOIN live l ON l.id = t.item_id  -- statistics of what is searched
                     WHERE t.term IN (SELECT unnest(?::VARCHAR[]))),
            df AS (SELECT term, count(*) AS df FROM hits GROUP BY term),
            bm AS (
                SELECT h.item_id, sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
                       * h.tf * {K1 + 1} / (h.tf + {K1} * (1 - {B} + {B} * h.length
                       / s.avgdl))) AS lexical
                FROM hits h JOIN df USING (term), stats s GROUP BY h.item_id),
            top AS (SELECT max(lexical) AS most FROM bm),
            scored AS (
                SELECT l.id, coalesce(bm.lexical, 0) AS lexical,
                       -- embeddings are unit vectors: the inner product is the cosine
                       array_inner_product(l.embedding, ?::FLOAT[{dims}]) AS vector,
                       exp(-ln(2) * greatest(epoch(?::TIMESTAMPTZ) - epoch(l.updated_at), 0)
                           / ({self.half_life_days} * 86400)) AS recency, l.importance
                FROM live l LEFT JOIN bm ON bm.item_id = l.id
                WHERE {
            "true"
            if candidates is None
            else "bm.item_id IS NOT NULL OR l.id IN (SELECT unnest(?::VARCHAR[]))"
        }),
            best AS (
                SELECT id, lexical, vector, recency,
                       {w_lex} * lexical / greatest(coalesce(top.most, 0), 1e-9)
                       + {w_vec} * greatest(vector, 0) + {w_rec} * recency
                       + 0.01 * importance AS score
                FROM scored, top ORDER BY score DESC, id LIMIT ?)
            SELECT i.*, best.lexical, best.vector, best.recency, best.score
            FROM best JOIN items i USING (id) ORDER BY best.score DESC, i.id"""
        chosen = [] if candidates is None else [candidates]
        rows = db.execute(sql, [*params, terms, vector, now, *chosen, limit]).fetchall()
        names = [d[0] for d in db.description]
        found = []
        for row in rows:
            data = dict(zip(names, row, strict=True))
            found.append(
                Recalled(
                    item=_item(data),
                    score=round(data["score"], 6),
                    lexical=round(data["lexical"], 6),
                    vector=round(data["vector"] or 0.0, 6),
                    recency=round(data["recency"], 6),
                )
            )
        return found

    def _filters(
        self,
        scope: Scope | None,
        provenance: list[str] | None,
        exclude_untrusted: bool,
        now: dt.datetime,
    ) -> tuple[str, list[Any]]:
        clauses = ["(expires_at IS NULL OR expires_at > ?)"]
        params: list[Any] = [now]
        for column, value in (
            ("scope_agent", scope.agent if scope else None),
            ("scope_user", scope.user if scope else None),
            ("scope_session", scope.session if scope else None),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if provenance:
            clauses.append(
                "(" + " OR ".join(["starts_with(provenance, ?)"] * len(provenance)) + ")"
            )
            params.extend(provenance)
        if exclude_untrusted:
            clauses.append("(provenance = 'user' OR starts_with(provenance, 'agent'))")
        return " AND ".join(clauses), params

    async def list(
        self,
        *,
        scope: Scope | None = None,
        provenance: builtins.list[str] | None = None,
        limit: int = 100,
        now: dt.datetime | None = None,
    ) -> builtins.list[MemoryItem]:
        """Unexpired items, newest first."""

        def work(db: duckdb.DuckDBPyConnection) -> builtins.list[MemoryItem]:
            where, params = self._filters(scope, provenance, False, now or dt.datetime.now(dt.UTC))
            rows = db.execute(
                f"SELECT * FROM items WHERE {where} ORDER BY updated_at DESC, id LIMIT ?",
                [*params, limit],
            ).fetchall()
            names = [d[0] for d in db.description]
            return [_item(dict(zip(names, r, strict=True))) for r in rows]

        return await self._run(work)

    async def get(self, item_id: str) -> MemoryItem | None:
        def work(db: duckdb.DuckDBPyConnection) -> MemoryItem | None:
            cursor = db.execute("SELECT * FROM items WHERE id = ?", [item_id])
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
            return None if row is None else _item(dict(zip(names, row, strict=True)))

        return await self._run(work)

    async def count(self) -> int:
        return await self._run(lambda db: db.execute("SELECT count(*) FROM items").fetchone()[0])

    async def written(self, key: str) -> tuple[str, str, MemoryItem | None] | None:
        """What the write that stored idempotency ``key`` did: its action, its reason and
        the item as it wrote it (None for a key no write stored)."""

        def work(db: duckdb.DuckDBPyConnection) -> tuple[str, str, MemoryItem | None] | None:
            row = db.execute(
                "SELECT action, reason, item FROM idempotency_keys WHERE key = ?", [key]
            ).fetchone()
            if row is None:
                return None
            return row[0], row[1], None if row[2] is None else _item_from_dict(json.loads(row[2]))

        return await self._run(work)

    # -- writing -------------------------------------------------------------------------

    async def insert(
        self,
        text: str,
        *,
        provenance: str,
        scope: Scope | None = None,
        importance: float = 0.5,
        ttl: float | None = None,
        embedding: builtins.list[float] | None = None,
        key: str = "",
        reason: str = "",
    ) -> MemoryItem:
        """Store ``text`` as a new item (no policy: see :meth:`remember`). With an
        idempotency ``key``, the key is stored with it (action ``insert``, ``reason``), or
        :class:`KeyUsed` is raised if a write stored it before."""
        vector = embedding or (await run_in_thread(self.embedder.embed, [text]))[0]
        items = await self._run(
            self._insert_many,
            [(text, vector)],
            provenance,
            scope or Scope(),
            importance,
            ttl,
            (key, "insert", reason) if key else None,
        )
        return items[0]

    async def insert_many(
        self,
        texts: builtins.list[str],
        *,
        provenance: str,
        scope: Scope | None = None,
        importance: float = 0.5,
        ttl: float | None = None,
        embeddings: builtins.list[builtins.list[float]] | None = None,
    ) -> builtins.list[MemoryItem]:
        """Store many texts at once (ingest); ``embeddings`` may be precomputed."""
        vectors = embeddings
        if not vectors:
            vectors = await run_in_thread(self.embedder.embed, texts)
        return await self._run(
            self._insert_many,
            list(zip(texts, vectors, strict=True)),
            provenance,
            scope or Scope(),
            importance,
            ttl,
        )

    def _insert_many(
        self,
        db: duckdb.DuckDBPyConnection,
        pairs: builtins.list[tuple[str, builtins.list[float]]],
        provenance: str,
        scope: Scope,
        importance: float,
        ttl: float | None,
        keyed: tuple[str, str, str] | None = None,
    ) -> builtins.list[MemoryItem]:
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(seconds=ttl) if ttl is not None else None
        items: builtins.list[MemoryItem] = []
        rows: builtins.list[tuple[Any, ...]] = []
        terms: builtins.list[tuple[str, str, int]] = []
        for text, vector in pairs:
            item = MemoryItem(
                id=uuid.uuid4().hex[:16],
                text=text,
                provenance=provenance,
                scope=scope,
                importance=importance,
                created_at=now,
                updated_at=now,
                expires_at=expires,
            )
            words = tokenize(text)
            rows.append(
                (
                    item.id,
                    text,
                    vector,
                    scope.agent,
                    scope.user,
                    scope.session,
                    provenance,
                    importance,
                    now,
                    now,
                    expires,
                    len(words),
                    1,
                )
            )
            terms.extend((item.id, term, tf) for term, tf in Counter(words).items())
            items.append(item)
        db.execute("BEGIN")
        try:  # one statement per table, columns as lists: executemany is row by row
            columns = list(zip(*rows, strict=True))
            db.execute(
                f"INSERT INTO items SELECT {', '.join(f'unnest(${n + 1})' for n in range(13))}",
                [list(c) for c in columns],
            )
            if terms:
                db.execute(
                    "INSERT INTO terms SELECT unnest($1), unnest($2), unnest($3)",
                    [list(c) for c in zip(*terms, strict=True)],
                )
            if keyed is not None:
                key, action, reason = keyed
                _store_key(db, key, action, reason, items[0], now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._cached(db, lambda v: v.add([i.id for i in items], [p[1] for p in pairs]))
        return items

    def _cached(self, db: duckdb.DuckDBPyConnection, change: Any) -> None:
        """Apply a committed write to the similarity matrix, if one is loaded."""
        vectors = _VECTORS.get(str(self.path))
        if vectors is not None and vectors.db_id == id(db):
            change(vectors)

    async def update(
        self,
        item: MemoryItem,
        text: str,
        *,
        provenance: str | None = None,
        importance: float | None = None,
        key: str = "",
        action: str = "merge",
        reason: str = "",
    ) -> MemoryItem | None:
        """Rewrite ``item`` (merge or replace) if nobody changed it since it was read;
        None if they did (decide again). With an idempotency ``key``, the key is stored
        with the rewrite (``action``, ``reason``), or :class:`KeyUsed` is raised if a write
        stored it before."""
        vector = (await run_in_thread(self.embedder.embed, [text]))[0]

        def work(db: duckdb.DuckDBPyConnection) -> MemoryItem | None:
            now = dt.datetime.now(dt.UTC)
            words = tokenize(text)
            db.execute("BEGIN")
            try:
                changed = db.execute(
                    "UPDATE items SET text = ?, embedding = ?, provenance = ?, importance = ?, "
                    "updated_at = ?, length = ?, version = version + 1 "
                    "WHERE id = ? AND version = ? RETURNING version",
                    [
                        text,
                        vector,
                        provenance or item.provenance,
                        max(importance or 0.0, item.importance),
                        now,
                        len(words),
                        item.id,
                        item.version,
                    ],
                ).fetchall()
                if not changed:
                    db.execute("ROLLBACK")
                    return None
                db.execute("DELETE FROM terms WHERE item_id = ?", [item.id])
                pairs = [(item.id, t, tf) for t, tf in Counter(words).items()]
                if pairs:
                    db.executemany("INSERT INTO terms VALUES (?, ?, ?)", pairs)
                rewritten = MemoryItem(
                    id=item.id,
                    text=text,
                    provenance=provenance or item.provenance,
                    scope=item.scope,
                    importance=max(importance or 0.0, item.importance),
                    created_at=item.created_at,
                    updated_at=now,
                    expires_at=item.expires_at,
                    version=changed[0][0],
                )
                if key:
                    _store_key(db, key, action, reason, rewritten, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._cached(db, lambda v: v.replace(item.id, vector))
            return rewritten

        return await self._run(work)

    async def record(
        self, key: str, action: str, reason: str = "", item: MemoryItem | None = None
    ) -> None:
        """Store idempotency ``key`` for a call that wrote nothing (``ignore``: ``item`` is
        the one already known), so a repeat gives the same answer; :class:`KeyUsed` if a
        write stored it before."""

        def work(db: duckdb.DuckDBPyConnection) -> None:
            db.execute("BEGIN")
            try:
                _store_key(db, key, action, reason, item, dt.datetime.now(dt.UTC))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(work)

    async def delete(
        self,
        ids: builtins.list[str] | None = None,
        *,
        scope: Scope | None = None,
        provenance: builtins.list[str] | None = None,
        expired: bool = False,
    ) -> int:
        """Delete items by id, or every item matching the filters (``expired=True``: those
        past their TTL). Returns how many went."""
        if not ids and scope is None and not provenance and not expired:
            raise InvalidArgsError(
                "memory: delete needs ids or a filter (scope, provenance "
                "or expired); nothing was deleted"
            )

        def work(db: duckdb.DuckDBPyConnection) -> int:
            if ids:
                where, params = "id IN (SELECT unnest(?::VARCHAR[]))", [ids]
            else:
                now = dt.datetime.now(dt.UTC)
                where, params = self._filters(scope, provenance, False, now)
                if expired:  # the same filters, but the items past their TTL
                    where = where.replace(
                        "(expires_at IS NULL OR expires_at > ?)",
                        "(expires_at IS NOT NULL AND expires_at <= ?)",
                    )
            db.execute("BEGIN")
            try:
                gone = db.execute(
                    f"DELETE FROM items WHERE {where} RETURNING id", params
                ).fetchall()
                if gone:
                    db.execute(
                        "DELETE FROM terms WHERE item_id IN (SELECT unnest(?::VARCHAR[]))",
                        [[g[0] for g in gone]],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._cached(db, lambda v: v.remove([g[0] for g in gone]))
            return len(gone)

        return await self._run(work)


def _store_key(
    db: duckdb.DuckDBPyConnection,
    key: str,
    action: str,
    reason: str,
    item: MemoryItem | None,
    now: dt.datetime,
) -> None:
    """Store an idempotency key with what its write did, in the caller's transaction;
    :class:`KeyUsed` (the caller rolls back) if it is stored already."""
    import duckdb

    snapshot = None if item is None else json.dumps(item.to_dict())
    try:
        db.execute(
            "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?)",
            [key, action, reason, snapshot, now],
        )
    except duckdb.ConstraintException as exc:
        raise KeyUsed(f"memory: idempotency key {key!r} was used by an earlier write") from exc


def _item_from_dict(data: dict[str, Any]) -> MemoryItem:
    """An item from its :meth:`MemoryItem.to_dict`."""

    def when(value: str | None) -> dt.datetime | None:
        return None if value is None else dt.datetime.fromisoformat(value)

    scope = data.get("scope") or {}
    return MemoryItem(
        id=data["id"],
        text=data["text"],
        provenance=data["provenance"],
        scope=Scope(scope.get("agent"), scope.get("user"), scope.get("session")),
        importance=data["importance"],
        created_at=when(data.get("created_at")),
        updated_at=when(data.get("updated_at")),
        expires_at=when(data.get("expires_at")),
        version=data["version"],
    )


def _item(data: dict[str, Any]) -> MemoryItem:
    return MemoryItem(
        id=data["id"],
        text=data["text"],
        provenance=data["provenance"],
        scope=Scope(data["scope_agent"], data["scope_user"], data["scope_session"]),
        importance=data["importance"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        expires_at=data["expires_at"],
        version=data["version"],
    )
