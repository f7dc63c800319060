"""The caches of model replies and tool outputs: one SQLite file next to the runs
(``runs_dir/cache.sqlite``, or ``cache.path``), shared by every process that uses it.

An entry is found by its kind (``model`` or ``tool``) and a key: the SHA-256 of what makes
the answer the same (:func:`digest`). It may expire (a tool's or a step's TTL). Each kind
counts its hits, misses and stores, which ``dagentic cache stats`` prints; ``dagentic cache
clear`` empties the file. What it holds is what the models and tools answered: the file may
hold data as private as the runs' own, and lives with them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import DagenticError

__all__ = ["Cache", "CacheOutcome", "KindStats", "digest", "open_cache"]

CacheOutcome = Literal["hit", "miss", "store"]
KINDS = ("model", "tool")
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    stored_at REAL NOT NULL,
    expires_at REAL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS counts (
    kind TEXT PRIMARY KEY,
    hits INTEGER NOT NULL DEFAULT 0,
    misses INTEGER NOT NULL DEFAULT 0,
    stores INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class KindStats:
    """What one kind of cache holds and how it was used since it was last cleared."""

    kind: str
    entries: int
    size: int  # bytes of the values kept
    hits: int
    misses: int
    stores: int


def digest(*parts: Any) -> str:
    """The SHA-256 of ``parts`` as canonical JSON (keys sorted, anything else as text)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Cache:
    """A cache file. Its methods block (a few SQLite statements): call them from a worker
    thread in async code."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise DagenticError(
                f"cache: cannot open {self.path}: {exc}; set cache.path to a writable file "
                "or cache.enabled = false"
            ) from exc

    def get(self, kind: str, key: str, max_age: float | None = None) -> Any | None:
        """The value kept under ``key``, or None (missing, expired, or older than
        ``max_age`` seconds); counted as a hit or a miss."""
        now = _now()
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT value, expires_at, stored_at FROM entries WHERE kind = ? AND key = ?",
                (kind, key),
            ).fetchone()
            found = (
                row is not None
                and (row[1] is None or row[1] > now)
                and (max_age is None or row[2] >= now - max_age)
            )
            self._count(kind, "hits" if found else "misses")
        return json.loads(row[0]) if found else None

    def put(self, kind: str, key: str, value: Any, ttl: float | None = None) -> None:
        """Keep ``value`` (JSON) under ``key``, for ``ttl`` seconds (None: until cleared)."""
        now = _now()
        text = json.dumps(value, separators=(",", ":"), default=str)
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                (kind, key, text, now, None if ttl is None else now + ttl),
            )
            self._count(kind, "stores")

    def stats(self) -> list[KindStats]:
        """Per kind: entries (expired ones not counted), bytes, hits, misses, stores."""
        now = _now()
        with self._lock:
            held = {
                kind: (entries, size or 0)
                for kind, entries, size in self._db.execute(
                    "SELECT kind, COUNT(*), SUM(LENGTH(value)) FROM entries "
                    "WHERE expires_at IS NULL OR expires_at > ? GROUP BY kind",
                    (now,),
                )
            }
            counts = {
                kind: (hits, misses, stores)
                for kind, hits, misses, stores in self._db.execute("SELECT * FROM counts")
            }
        return [
            KindStats(kind, *held.get(kind, (0, 0)), *counts.get(kind, (0, 0, 0))) for kind in KINDS
        ]

    def clear(self, kind: str | None = None) -> int:
        """Remove every entry (of ``kind``) and reset its counts; how many were removed."""
        kinds = (kind,) if kind else KINDS
        with self._lock, self._db:
            removed = 0
            for each in kinds:
                removed += self._db.execute("DELETE FROM entries WHERE kind = ?", (each,)).rowcount
                self._db.execute("DELETE FROM counts WHERE kind = ?", (each,))
        with self._lock:
            self._db.execute("VACUUM")
        return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count(self, kind: str, column: str) -> None:
        self._db.execute(
            f"INSERT INTO counts (kind, {column}) VALUES (?, 1) "  # column: one of three names
            f"ON CONFLICT (kind) DO UPDATE SET {column} = {column} + 1",
            (kind,),
        )


def _now() -> float:
    """The time entries are stored and looked up at (tests move it)."""
    return time.time()


_OPEN: dict[Path, Cache] = {}
_OPENING = threading.Lock()


def open_cache(settings: Any) -> Cache | None:
    """The cache file the settings name (``cache.path``, else ``runs_dir/cache.sqlite``),
    opened once per process; None when ``cache.enabled`` is false."""
    config = settings.cache
    if not config.enabled:
        return None
    path = Path(config.path or Path(settings.runs_dir) / "cache.sqlite").resolve()
    with _OPENING:
        cache = _OPEN.get(path)
        if cache is None:
            cache = _OPEN[path] = Cache(path)
    return cache
