"""The journal in an embedded SQLite database (stdlib ``sqlite3``), in WAL mode: readers
never wait for the writer, and a commit is one append to the write-ahead log.

``synchronous=NORMAL``: a commit survives the process being killed (what resuming after a
crash needs); a power cut may lose the last commits. Use PostgreSQL for more.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import JournalError
from .store import RunStore

__all__ = ["SqliteStore"]

BUSY_TIMEOUT = 30.0  # seconds a connection waits for another process's write to end


class SqliteStore(RunStore):
    """A journal in the SQLite file ``path`` (made with its folder when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(
                f"the run journal {self.path} cannot be made: {exc.strerror or exc}; set "
                "journal.url, or journal.enabled = false"
            ) from exc
        if not self.path.exists():  # it will hold step outputs: its owner's only
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            super().__init__()
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"the run journal {self.path} cannot be opened: {exc}; move it aside to "
                "start a new one"
            ) from exc

    def connect(self) -> Any:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def explain(self, exc: BaseException) -> str:
        text = str(exc)
        if "full" in text:
            return f"the disk of {self.path} is full"
        return f"{type(exc).__name__}: {text}"
