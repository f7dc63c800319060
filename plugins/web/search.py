"""``web.search`` backends: the offline ``local`` index and three HTTP search APIs with
documented JSON responses — SearXNG (self-hosted, ``format=json``), Brave Search and
Tavily. Each returns results as ``{title, url, snippet, score, published}``; the tool adds
the rest."""

from __future__ import annotations

import html
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dagentic import ToolError, run_in_thread

from .settings import SearchApiSettings, WebSettings

# httpx and the index (tantivy, lxml) load with the first search, not with the plugin.
if TYPE_CHECKING:
    import httpx

    from .index import LocalIndex

__all__ = ["BACKENDS", "CORPUS", "SearchBackend", "make_backend", "open_local_index"]

CORPUS = Path(__file__).parent / "corpus"
USER_AGENT = "dagentic-web/0.1"
TAGS = re.compile(r"<[^>]{0,200}>")
BRAVE_FRESHNESS = {"day": "pd", "week": "pw", "month": "pm", "year": "py"}
_INDEXES: dict[str, LocalIndex] = {}
_BUILDING = threading.Lock()


class SearchBackend(Protocol):
    """What ``web.search`` asks of a backend."""

    name: str
    cacheable: bool

    async def search(
        self, query: str, *, limit: int, site: str | None, recency: str | None
    ) -> list[dict[str, Any]]: ...


def open_local_index(settings: WebSettings) -> LocalIndex:
    """The process-wide index of ``web.local.index_dir``, built from ``web.local.paths``
    (default: the bundled news collection) if it does not exist yet."""
    from .index import LocalIndex

    local = settings.local
    key = str(Path(local.index_dir).expanduser().resolve())
    with _BUILDING:
        index = _INDEXES.get(key)
        if index is None:
            index = _INDEXES[key] = LocalIndex(Path(local.index_dir))
        if not index.exists():
            index.build(local.paths or [CORPUS], local.base_url)
    return index


class LocalBackend:
    """BM25 over the local index; no network, no cache needed."""

    name = "local"
    cacheable = False

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings

    async def search(
        self, query: str, *, limit: int, site: str | None, recency: str | None
    ) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            return open_local_index(self.settings).search(
                query, limit=limit, site=site, recency=recency
            )

        return await run_in_thread(run)


class HttpBackend:
    """Common to the HTTP APIs: one request with retries, rate limit and clear errors."""

    name = "http"
    cacheable = True
    key_variable: str | None = None

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.api: SearchApiSettings = getattr(settings, self.name)

    def api_key(self) -> str:
        """The key from settings, else from the API's usual environment variable."""
        if self.api.api_key is not None and self.api.api_key.get_secret_value():
            return self.api.api_key.get_secret_value()
        key = os.environ.get(self.key_variable or "", "")
        if not key:
            raise ToolError(
                f"web.search: the {self.name} backend needs an API key: set "
                f"web.{self.name}.api_key (DAGENTIC_WEB__{self.name.upper()}__API_KEY) or "
                f"{self.key_variable}"
            )
        return key

    async def request(self, build: Callable[[httpx.AsyncClient], Any]) -> Any:
        import httpx

        from .client import raise_for_transient, rate_limiter, with_retries

        what = f"web.search ({self.name})"
        limiter = rate_limiter(self.name, self.api.rate_limit)

        async def attempt() -> Any:
            await limiter.wait()
            async with httpx.AsyncClient(
                timeout=self.settings.timeout, trust_env=False, headers={"User-Agent": USER_AGENT}
            ) as client:
                response = await build(client)
            raise_for_transient(response, what)
            if response.status_code >= 400:
                raise ToolError(
                    f"{what}: {self.api.url} answered {response.status_code} "
                    f"{response.reason_phrase}{self.hint(response.status_code)}",
                    status=response.status_code,
                )
            try:
                return response.json()
            except ValueError as exc:
                raise ToolError(
                    f"{what}: {self.api.url} did not answer JSON "
                    f"({response.headers.get('content-type', 'no type')})"
                ) from exc

        return await with_retries(attempt, retries=self.settings.retries, what=what)

    def hint(self, status: int) -> str:
        return "; check the API key" if status in (401, 403) else ""

    def parsed(self, items: Any, fields: dict[str, str]) -> list[dict[str, Any]]:
        """Results from the API's list, mapped by ``fields`` (ours → theirs)."""
        if not isinstance(items, list):
            raise ToolError(f"web.search ({self.name}): unexpected response: no result list")
        kept = [i for i in items if isinstance(i, dict) and i.get(fields["url"])]
        results = []
        for rank, item in enumerate(kept):
            score = item.get(fields.get("score", ""))
            results.append(
                {
                    "title": _plain(item.get(fields["title"])),
                    "url": str(item[fields["url"]]),
                    "snippet": _plain(item.get(fields["snippet"])),
                    "score": round(float(score), 4)
                    if isinstance(score, int | float)
                    else round(1.0 / (rank + 1), 4),
                    "published": item.get(fields["published"]) or None,
                }
            )
        return results


def _plain(value: Any) -> str:
    """API text as plain text: Brave and others mark matches with <strong> and escape
    entities."""
    return html.unescape(TAGS.sub("", str(value or "")))


class SearxngBackend(HttpBackend):
    """SearXNG's JSON API: ``GET /search?q=...&format=json`` (the instance must list
    ``json`` under ``search.formats`` in its settings.yml)."""

    name = "searxng"

    async def search(
        self, query: str, *, limit: int, site: str | None, recency: str | None
    ) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {
            "q": f"{query} site:{site}" if site else query,
            "format": "json",
            "pageno": 1,
        }
        if recency:
            params["time_range"] = recency
        data = await self.request(lambda c: c.get(self.api.url, params=params))
        results = self.parsed(
            data.get("results") if isinstance(data, dict) else None,
            {
                "title": "title",
                "url": "url",
                "snippet": "content",
                "score": "score",
                "published": "publishedDate",
            },
        )
        return results[:limit]

    def hint(self, status: int) -> str:
        return (
            "; enable the json format under search.formats in SearXNG's settings.yml"
            if status == 403
            else ""
        )


class BraveBackend(HttpBackend):
    """Brave Search's web search API: ``GET /res/v1/web/search`` with the
    ``X-Subscription-Token`` header."""

    name = "brave"
    key_variable = "BRAVE_SEARCH_API_KEY"

    async def search(
        self, query: str, *, limit: int, site: str | None, recency: str | None
    ) -> list[dict[str, Any]]:
        headers = {"Accept": "application/json", "X-Subscription-Token": self.api_key()}
        params: dict[str, Any] = {
            "q": f"{query} site:{site}" if site else query,
            "count": min(limit, 20),
        }
        if recency:
            params["freshness"] = BRAVE_FRESHNESS[recency]
        data = await self.request(lambda c: c.get(self.api.url, params=params, headers=headers))
        web = data.get("web") if isinstance(data, dict) else None
        items = web.get("results", []) if isinstance(web, dict) else []
        return self.parsed(
            items,
            {"title": "title", "url": "url", "snippet": "description", "published": "page_age"},
        )[:limit]


class TavilyBackend(HttpBackend):
    """Tavily's search API: ``POST /search`` with a JSON body and a bearer key."""

    name = "tavily"
    key_variable = "TAVILY_API_KEY"

    async def search(
        self, query: str, *, limit: int, site: str | None, recency: str | None
    ) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.api_key()}"}
        body: dict[str, Any] = {
            "query": query,
            "max_results": min(limit, 20),
            "search_depth": "basic",
        }
        if site:
            body["include_domains"] = [site]
        if recency:
            body["time_range"] = recency
        data = await self.request(lambda c: c.post(self.api.url, json=body, headers=headers))
        return self.parsed(
            data.get("results") if isinstance(data, dict) else None,
            {
                "title": "title",
                "url": "url",
                "snippet": "content",
                "score": "score",
                "published": "published_date",
            },
        )[:limit]


BACKENDS: dict[str, type[Any]] = {
    "local": LocalBackend,
    "searxng": SearxngBackend,
    "brave": BraveBackend,
    "tavily": TavilyBackend,
}


def make_backend(settings: WebSettings, name: str | None = None) -> SearchBackend:
    """The backend ``web.backend`` (or ``name``) names."""
    return BACKENDS[name or settings.backend](settings)
