"""Long-term memory in a DuckDB file: items with text, embedding, scope, provenance, times
and importance; hybrid recall with filters (BM25 and vector similarity fused by the rule of
:mod:`dagentic.retrieval`, calibrated score fusion, weighed by recency); writes decided by
a policy (insert, merge, replace or ignore); deletes by id or filter; TTLs.

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
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DagenticError, InvalidArgsError
from ..retrieval import K1, MAX_QUERY_CHARS, MEMORY_FUSION, VECTOR_DEPTH, B, query_terms, words
from ..threads import run_in_thread
from .embeddings import Embedder

# duckdb and numpy load when a store is first used, not with the package: `import dagentic`
# and the commands that keep no memory must not pay for them.
if TYPE_CHECKING:
    import duckdb

__all__ = ["KeyUsed", "MemoryItem", "MemoryStore", "Recalled", "Scope", "tokenize"]

TOKENIZER = "retrieval.words/1"  # what the terms table holds: rebuilt when it changes
IMPORTANCE = 0.01  # of the best fused score: importance only breaks ties
RECENCY_WEIGHT = 0.10  # an item a long time untouched keeps 90 % of its fused score
_OPEN: dict[str, tuple[duckdb.DuckDBPyConnection, threading.Lock]] = {}
_OPENING = threading.Lock()


def tokenize(text: str) -> list[str]:
    """The words of ``text`` as recall compares them: :func:`dagentic.retrieval.words`,
    the tokenizer tool selection and plan routing use too."""
    return words(text)


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
    """An item with how well it matched: the score and its parts. ``lexical`` is its BM25
    score, ``vector`` its cosine similarity to the query, ``recency`` its weight by age;
    the ranks are its places in the lexical and the similarity list (None: not in it)."""

    item: MemoryItem
    score: float
    lexical: float
    vector: float
    recency: float
    lexical_rank: int | None = None
    vector_rank: int | None = None


class _Vectors:
    """Every item's embedding as one float32 matrix, with what recall filters on (scope,
    provenance, expiry) beside it, kept in step with this process's writes (a DuckDB file
    has one writing process): the most similar items that pass a recall's filters are one
    matrix product here, and SQL then scores only those and the lexical matches."""

    def __init__(self, db: duckdb.DuckDBPyConnection, dims: int) -> None:
        import numpy as np

        self.db = db  # held, not its id(): a new connection may get a closed one's id
        self.dims = dims
        rows = db.execute(
            "SELECT id, scope_agent, scope_user, scope_session, provenance, "
            "coalesce(epoch(expires_at), 'inf'::DOUBLE) FROM items ORDER BY rowid"
        ).fetchall()
        self.ids: list[str] = [r[0] for r in rows]
        flat = db.execute(
            "SELECT unnest(embedding) AS x FROM (SELECT embedding FROM items ORDER BY rowid)"
        ).fetchnumpy()["x"]
        self.matrix = np.asarray(flat, dtype=np.float32).reshape(len(self.ids), dims)
        self.size = len(self.ids)
        self.row = {item_id: n for n, item_id in enumerate(self.ids)}
        self.alive = np.ones(self.size, dtype=bool)
        self._id_array = np.asarray(self.ids, dtype=object)
        self._cursor: duckdb.DuckDBPyConnection | None = None
        # Strings as codes (-1: None), one table per column: filters compare integers.
        self.codes: list[dict[str | None, int]] = [{None: -1} for _ in range(4)]
        self.columns = np.array(
            [[self._code(c, r[c + 1]) for c in range(4)] for r in rows], dtype=np.int32
        ).reshape(self.size, 4)
        self.expires = np.array([r[5] for r in rows], dtype=np.float64)

    def _code(self, column: int, value: str | None) -> int:
        codes = self.codes[column]
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(codes) - 1
        return code

    def _grow(self, count: int) -> None:
        import numpy as np

        if self.size + count <= len(self.matrix):
            return
        size = max(2 * len(self.matrix), self.size + count, 64)  # by doubling: appends stay cheap
        matrix = np.zeros((size, self.dims), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        alive = np.zeros(size, dtype=bool)
        alive[: self.size] = self.alive[: self.size]
        columns = np.full((size, 4), -1, dtype=np.int32)
        columns[: self.size] = self.columns[: self.size]
        expires = np.full(size, np.inf, dtype=np.float64)
        expires[: self.size] = self.expires[: self.size]
        self.matrix, self.alive, self.columns, self.expires = matrix, alive, columns, expires

    def add(self, items: list[MemoryItem], vectors: list[list[float]]) -> None:
        self._grow(len(items))
        for item, vector in zip(items, vectors, strict=True):
            n = self.size
            self.matrix[n] = vector
            self.alive[n] = True
            scope = item.scope
            for c, value in enumerate((scope.agent, scope.user, scope.session, item.provenance)):
                self.columns[n, c] = self._code(c, value)
            self.expires[n] = item.expires_at.timestamp() if item.expires_at else float("inf")
            self.row[item.id] = n
            self.ids.append(item.id)
            self.size += 1

    def replace(self, item_id: str, vector: list[float], provenance: str) -> None:
        if item_id in self.row:
            self.matrix[self.row[item_id]] = vector
            self.columns[self.row[item_id], 3] = self._code(3, provenance)

    def remove(self, ids: list[str]) -> None:
        for item_id in ids:
            row = self.row.pop(item_id, None)
            if row is not None:
                self.alive[row] = False

    def live(
        self,
        scope: Scope | None,
        provenance: list[str] | None,
        exclude_untrusted: bool,
        now: dt.datetime,
    ) -> Any:
        """Which rows pass recall's filters: the same as :meth:`MemoryStore._filters`."""
        import numpy as np

        n = self.size
        mask = self.alive[:n] & (self.expires[:n] > now.timestamp())
        for c, value in enumerate(
            (scope.agent, scope.user, scope.session) if scope else (None, None, None)
        ):
            if value is not None:
                mask &= self.columns[:n, c] == self.codes[c].get(value, -2)
        names = [p for p in self.codes[3] if p is not None]
        allowed: list[str] | None = None
        if provenance:
            allowed = [p for p in names if any(p.startswith(prefix) for prefix in provenance)]
        if exclude_untrusted:
            trusted = [p for p in names if p == "user" or p.startswith("agent")]
            allowed = trusted if allowed is None else [p for p in allowed if p in trusted]
        if allowed is not None:
            codes = [self.codes[3][p] for p in allowed]
            mask &= np.isin(self.columns[:n, 3], np.asarray(codes, dtype=np.int32))
        return mask

    def similarity(self, query: list[float]) -> Any:
        """Every row's cosine similarity to ``query`` (the rows of removed items too)."""
        import numpy as np

        return self.matrix[: self.size] @ np.asarray(query, dtype=np.float32)

    def cursor(self, db: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """A connection of ``db``'s database for recall's queries, made once."""
        if self._cursor is None:
            self._cursor = db.cursor()
        return self._cursor

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def id_array(self) -> Any:
        """The rows' ids as a numpy array (for DuckDB to scan beside the similarities)."""
        import numpy as np

        if len(self._id_array) != self.size:
            self._id_array = np.asarray(self.ids, dtype=object)
        return self._id_array

    def best(
        self, similarity: Any, count: int, mask: Any
    ) -> tuple[list[str], list[int], list[float]]:
        """The ids of the ``count`` items of ``mask`` most similar (``similarity``: of
        every row), most similar first, their ranks (equal similarities share a rank)
        and similarities."""
        import numpy as np

        scores = np.where(mask, similarity, -np.inf)
        count = min(count, int(mask.sum()))
        if count <= 0:
            return [], [], []
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[np.argsort(-scores[top], kind="stable")]
        chosen = scores[top]
        # competition ranking: 1 + how many are more similar (within the top, all are)
        ranks = (np.searchsorted(-chosen, -chosen, side="left") + 1).tolist()
        return [self.ids[n] for n in top], ranks, chosen.astype(float).tolist()


_VECTORS: dict[str, _Vectors] = {}  # by memory file, for the connection in _OPEN
CANDIDATES = VECTOR_DEPTH  # the most similar items that pass the filters, scored in SQL
SIMILARITY = "dagentic_recall_similarity"  # every item's similarity, as SQL sees it in recall


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
        weights: tuple[float, float, float] = (*MEMORY_FUSION, RECENCY_WEIGHT),
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
        row = db.execute("SELECT value FROM meta WHERE key = 'tokenizer'").fetchone()
        if row is None or row[0] != TOKENIZER:
            _retokenize(db)

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
        """The best ``limit`` items for ``query`` among the unexpired items of ``scope`` and
        ``provenance`` (prefixes such as ``"untrusted:"`` or ``"tool:"`` match too).

        Scored as :mod:`dagentic.retrieval` fuses (calibrated score fusion, weights
        ``weights[:2]``, :data:`~dagentic.retrieval.MEMORY_FUSION` by default): ``w_lex *
        bm25 / best_bm25 + w_vec * max(cosine, 0)``, BM25 over the terms table and the
        cosine of the embeddings; weighed by recency (half-life ``half_life_days``: ``1 -
        w_rec + w_rec * recency``); importance breaks ties. Only the :data:`CANDIDATES`
        most similar items and those sharing a word with the query are scored; the
        answer is kept when no other item could beat it, else every item is."""
        vector = (await run_in_thread(self.embedder.embed, [query[:MAX_QUERY_CHARS]]))[0]
        terms = sorted(query_terms(query))
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
        if limit <= 0:
            return []
        where, params = self._filters(scope, provenance, exclude_untrusted, now)
        vectors = self._vectors(db)
        mask = vectors.live(scope, provenance, exclude_untrusted, now)
        similarity = vectors.similarity(vector)
        # Every item's similarity, for SQL to read beside the lexical matches' scores
        # (reading their embeddings in SQL costs more than the product of them all).
        # On a cursor of its own: a registration must not wait for a result of `db`.
        cursor = vectors.cursor(db)
        cursor.register(SIMILARITY, {"id": vectors.id_array(), "vector": similarity})
        try:
            return self._fuse(cursor, where, params, terms, limit, now, vectors, similarity, mask)
        finally:
            cursor.unregister(SIMILARITY)

    def _fuse(
        self,
        db: duckdb.DuckDBPyConnection,
        where: str,
        params: list[Any],
        terms: list[str],
        limit: int,
        now: dt.datetime,
        vectors: _Vectors,
        similarity: Any,
        mask: Any,
    ) -> list[Recalled]:
        similar = vectors.best(similarity, max(CANDIDATES, 20 * limit), mask)
        found = self._score(db, where, params, terms, limit, now, similar)
        _, w_vec, _ = self.weights
        # An item in neither list has no word of the query and is no more similar than
        # the last of the similar ones: the best it could score.
        floor = similar[2][-1] if similar[2] else 0.0
        outside = w_vec * max(floor, 0.0) + self._importance
        if len(similar[0]) == int(mask.sum()) or (
            len(found) == limit and found[-1].score >= outside
        ):
            return found
        everything = vectors.best(similarity, int(mask.sum()), mask)
        return self._score(db, where, params, terms, limit, now, everything)

    @property
    def _importance(self) -> float:
        """What importance 1 adds to a score: a hundredth of the best score there is."""
        w_lex, w_vec, _ = self.weights
        return IMPORTANCE * (w_lex + w_vec)

    def _vectors(self, db: duckdb.DuckDBPyConnection) -> _Vectors:
        vectors = _VECTORS.get(str(self.path))
        if vectors is None or vectors.db is not db:
            if vectors is not None:
                vectors.close()  # of a connection closed since: its cursor goes too
            vectors = _VECTORS[str(self.path)] = _Vectors(db, self.embedder.dimensions)
        return vectors

    def _score(
        self,
        db: duckdb.DuckDBPyConnection,
        where: str,
        params: list[Any],
        terms: list[str],
        limit: int,
        now: dt.datetime,
        similar: tuple[list[str], list[int], list[float]],
    ) -> list[Recalled]:
        """The best ``limit`` items by the fused score, among ``similar`` (the most similar
        live items: ids, ranks and similarities) and the live items sharing a word with
        the query."""
        w_lex, w_vec, w_rec = self.weights
        # Narrow and not materialised: only what scoring needs passes through the plan;
        # the full rows are read for the top `limit` items only.
        sql = f"""
            WITH live AS NOT MATERIALIZED (
                SELECT id, length FROM items WHERE {where}),
            stats AS (SELECT count(*) AS n, coalesce(avg(length), 1) AS avgdl FROM live),
            hits AS (SELECT t.item_id, t.term, t.tf, l.length FROM terms t
                     JOIN live l ON l.id = t.item_id  -- statistics of what is searched
                     WHERE t.term IN (SELECT unnest(?::VARCHAR[]))),
            df AS (SELECT term, count(*) AS df FROM hits GROUP BY term),
            bm AS (
                SELECT h.item_id AS id, sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
                       * h.tf * {K1 + 1} / (h.tf + {K1} * (1 - {B} + {B} * h.length
                       / s.avgdl))) AS lexical
                FROM hits h JOIN df USING (term), stats s GROUP BY h.item_id),
            lex AS (SELECT id, lexical, rank() OVER (ORDER BY lexical DESC) AS lexical_rank
                    FROM bm),
            vec AS (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::INTEGER[]) AS vector_rank,
                           unnest(?::DOUBLE[]) AS vector),
            pool AS (SELECT id, coalesce(lex.lexical, 0) AS lexical, lex.lexical_rank,
                            vec.vector_rank, vec.vector
                     FROM lex FULL OUTER JOIN vec USING (id)),
            scored AS (
                SELECT p.id, p.lexical, p.lexical_rank, p.vector_rank,
                       coalesce(p.vector, s.vector) AS vector,
                       exp(-ln(2) * greatest(epoch(?::TIMESTAMPTZ) - epoch(i.updated_at),
                       0) / ({self.half_life_days} * 86400)) AS recency, i.importance
                FROM pool p JOIN items i USING (id)
                     LEFT JOIN {SIMILARITY} s ON s.id = p.id AND p.vector IS NULL),
            best AS (
                SELECT id, lexical, lexical_rank, vector_rank, vector, recency,
                       ({w_lex} * lexical / (SELECT coalesce(max(lexical), 1) FROM lex)
                        + {w_vec} * greatest(vector, 0))
                       * ({1 - w_rec} + {w_rec} * recency) + {self._importance} * importance
                       AS score
                FROM scored ORDER BY score DESC, id LIMIT ?)
            SELECT i.*, best.lexical, best.lexical_rank, best.vector_rank, best.recency,
                   best.score, best.vector
            FROM best JOIN items i USING (id) ORDER BY best.score DESC, i.id"""
        ids, ranks, cosines = similar
        rows = db.execute(sql, [*params, terms, ids, ranks, cosines, now, limit]).fetchall()
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
                    lexical_rank=data["lexical_rank"],
                    vector_rank=data["vector_rank"],
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
        self._cached(db, lambda v: v.add(items, [p[1] for p in pairs]))
        return items

    def _cached(self, db: duckdb.DuckDBPyConnection, change: Any) -> None:
        """Apply a committed write to the similarity matrix, if one is loaded."""
        vectors = _VECTORS.get(str(self.path))
        if vectors is not None and vectors.db is db:
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
            self._cached(db, lambda v: v.replace(item.id, vector, rewritten.provenance))
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


def _retokenize(db: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the terms table and the items' lengths with today's :func:`tokenize` (a
    file written by an older tokenizer is rebuilt once, when opened)."""
    db.execute("BEGIN")
    try:
        rows = db.execute("SELECT id, text FROM items").fetchall()
        terms: builtins.list[tuple[str, str, int]] = []
        lengths: builtins.list[tuple[str, int]] = []
        for item_id, text in rows:
            found = tokenize(text)
            lengths.append((item_id, len(found)))
            terms.extend((item_id, term, tf) for term, tf in Counter(found).items())
        db.execute("DELETE FROM terms")
        if terms:
            db.execute(
                "INSERT INTO terms SELECT unnest($1), unnest($2), unnest($3)",
                [list(c) for c in zip(*terms, strict=True)],
            )
        if lengths:
            db.execute(
                "UPDATE items SET length = n.length FROM (SELECT unnest($1) AS id, "
                "unnest($2) AS length) AS n WHERE items.id = n.id",
                [list(c) for c in zip(*lengths, strict=True)],
            )
        db.execute("INSERT OR REPLACE INTO meta VALUES ('tokenizer', ?)", [TOKENIZER])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


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
