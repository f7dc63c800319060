"""The journal in PostgreSQL (psycopg 3, the ``postgres`` extra): several processes or
machines share it, so a run started on one can be approved and resumed on another."""

from __future__ import annotations

from typing import Any

from ..errors import JournalError
from .store import RunStore

__all__ = ["PostgresStore"]

CONNECT_TIMEOUT = 10  # seconds


class PostgresStore(RunStore):
    """A journal in the PostgreSQL database at ``url`` (``postgresql://...``)."""

    placeholder = "%s"
    blob_type = "BYTEA"
    without_rowid = ""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise JournalError(
                "journal.url is a PostgreSQL URL, and psycopg is not installed: "
                "pip install 'dagentic[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self.url = url
        self.label = _without_password(url)
        try:
            super().__init__()
        except psycopg.Error as exc:
            raise JournalError(
                f"the run journal {self.label} cannot be opened: {str(exc).strip()}"
            ) from exc

    def connect(self) -> Any:
        return self._psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT)

    def explain(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {str(exc).strip()}"


def _without_password(url: str) -> str:
    """``url`` as shown in messages: any password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))
