"""What every web request shares: retries with backoff and jitter, per-backend rate
limits, and a disk cache with a time to live."""

from __future__ import annotations

import email.utils
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import tenacity
from dagentic import StepTimeoutError, ToolError, run_in_thread

__all__ = ["Cache", "RateLimiter", "TransientHTTPError", "rate_limiter", "with_retries"]

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0  # seconds: a longer Retry-After is not waited for
BACKOFF = tenacity.wait_exponential_jitter(multiplier=0.25, max=8.0, jitter=0.25)


class TransientHTTPError(ToolError):
    """A response worth retrying (429 or 5xx); carries the server's Retry-After."""

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(message, retryable=True, status=status)
        self.status = status
        self.retry_after = retry_after


def raise_for_transient(response: httpx.Response, what: str) -> None:
    """Raise :class:`TransientHTTPError` for a 429 or 5xx response."""
    if response.status_code in RETRY_STATUSES:
        raise TransientHTTPError(
            f"{what}: {response.url.host} answered {response.status_code} {response.reason_phrase}",
            status=response.status_code,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientHTTPError | httpx.TransportError)


def _wait(state: tenacity.RetryCallState) -> float:
    """Retry-After when the server gave one (capped), else exponential backoff + jitter."""
    exc = state.outcome.exception() if state.outcome else None
    after = getattr(exc, "retry_after", None)
    if after is not None and after <= MAX_RETRY_AFTER:
        return after
    return BACKOFF(state)


async def with_retries(call: Callable[[], Awaitable[T]], *, retries: int, what: str) -> T:
    """Run ``call``; on 429/5xx or a connection error, try again up to ``retries`` times.
    What still fails becomes a :class:`ToolError` (or :class:`StepTimeoutError`)."""
    try:
        async for attempt in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=_wait,
            retry=tenacity.retry_if_exception(_transient),
            sleep=anyio.sleep,
            reraise=True,
        ):
            with attempt:
                return await call()
    except TransientHTTPError as exc:
        raise ToolError(f"{exc.message} (after {retries + 1} attempts)", status=exc.status) from exc
    except httpx.TimeoutException as exc:
        raise StepTimeoutError(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ToolError(
            f"{what}: {type(exc).__name__}: {exc or 'connection failed'} "
            f"(after {retries + 1} attempts)"
        ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


class RateLimiter:
    """At most ``rate`` request starts per second, process-wide, for any event loop."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    async def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await anyio.sleep(start - now)


_LIMITERS: dict[tuple[str, float], RateLimiter] = {}


def rate_limiter(name: str, rate: float) -> RateLimiter:
    """The process-wide limiter of one backend (one per name and rate)."""
    return _LIMITERS.setdefault((name, rate), RateLimiter(rate))


class Cache:
    """JSON values on disk (SQLite) that expire after ``ttl`` seconds; ``ttl=0`` is off.

    Safe for concurrent steps and processes: every call opens its own connection, writes
    are single statements, and an unreadable cache is treated as a miss, never an error.
    """

    def __init__(self, directory: Path, ttl: float) -> None:
        self.path = Path(directory) / "web.sqlite3"
        self.ttl = ttl
        self._ready = False

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    async def get(self, key: str) -> Any | None:
        if not self.ttl:
            return None
        return await run_in_thread(self._get, key)

    async def put(self, key: str, value: Any) -> None:
        if self.ttl:
            await run_in_thread(self._put, key, json.dumps(value))

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        if not self._ready:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, "
                "value TEXT NOT NULL, expires REAL NOT NULL)"
            )
            self._ready = True
        return db

    def _get(self, key: str) -> Any | None:
        try:
            with closing(self._connect()) as db:
                row = db.execute(
                    "SELECT value FROM entries WHERE key = ? AND expires > ?", (key, time.time())
                ).fetchone()
            return None if row is None else json.loads(row[0])
        except (sqlite3.Error, ValueError):
            return None

    def _put(self, key: str, value: str) -> None:
        now = time.time()
        try:
            with closing(self._connect()) as db:
                db.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (key, value, now + self.ttl)
                )
                db.execute("DELETE FROM entries WHERE expires <= ?", (now,))
        except sqlite3.Error:
            pass  # a cache that cannot be written only costs a refetch
