"""The web plugin's settings: section ``[web]`` of ``dagentic.toml`` (``[tool.dagentic.web]``
in ``pyproject.toml``, ``DAGENTIC_WEB__*`` variables), registered by ``register_settings``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["FetchSettings", "LocalSearchSettings", "SearchApiSettings", "WebSettings"]


class SearchApiSettings(BaseModel):
    """An HTTP search API: where it is and the key it takes (never logged)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The API's search endpoint.")
    api_key: SecretStr | None = Field(
        None,
        description="The API key; if unset, read from the API's usual environment "
        "variable (BRAVE_SEARCH_API_KEY, TAVILY_API_KEY).",
    )
    rate_limit: float = Field(1.0, gt=0, description="Requests per second at most.")


class LocalSearchSettings(BaseModel):
    """The offline ``local`` search backend: a BM25 index over a folder of documents."""

    model_config = ConfigDict(extra="forbid")

    index_dir: Path = Field(Path(".dagentic/index"), description="Where the index lives.")
    paths: list[Path] = Field(
        default_factory=list,
        description="Folders (or files) indexed when the index does not exist yet and by "
        "`dagentic index build` without a path; none means the bundled news "
        "collection.",
    )
    base_url: str | None = Field(
        None,
        description="URL that documents without a url of their own get, joined with "
        "their path below the indexed folder (e.g. the address of a web "
        "server serving that folder); unset means file:// URLs.",
    )


class FetchSettings(BaseModel):
    """Limits and the egress policy of ``web.fetch``."""

    model_config = ConfigDict(extra="forbid")

    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (``name`` or ``name:port``, spelled exactly as in URLs) fetched "
        "even though they are loopback, private or link-local addresses.",
    )
    max_bytes: int = Field(2_000_000, ge=1024, description="Body bytes read at most.")
    timeout: float = Field(20.0, gt=0, description="Seconds for a whole fetch, redirects included.")
    max_redirects: int = Field(5, ge=0, description="Redirects followed at most.")
    rate_limit: float = Field(5.0, gt=0, description="Requests per second at most.")


class WebSettings(BaseModel):
    """``web.search`` backends and ``web.fetch`` policy, with their shared cache."""

    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = "web"

    backend: Literal["local", "searxng", "brave", "tavily"] = Field(
        "local", description="Which search backend web.search uses."
    )
    local: LocalSearchSettings = Field(default_factory=LocalSearchSettings)
    searxng: SearchApiSettings = Field(
        default_factory=lambda: SearchApiSettings(url="http://127.0.0.1:8888/search")
    )
    brave: SearchApiSettings = Field(
        default_factory=lambda: SearchApiSettings(
            url="https://api.search.brave.com/res/v1/web/search"
        )
    )
    tavily: SearchApiSettings = Field(
        default_factory=lambda: SearchApiSettings(url="https://api.tavily.com/search")
    )
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    timeout: float = Field(15.0, gt=0, description="Seconds per search API request.")
    retries: int = Field(3, ge=0, description="Retries on 429, 5xx and connection errors.")
    cache_dir: Path = Field(Path(".dagentic/cache"), description="Where results are cached.")
    cache_ttl: float = Field(
        3600.0, ge=0, description="Seconds a cached result is used; 0 turns the cache off."
    )
