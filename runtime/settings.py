"""Settings: one model, read from ``dagentic.toml`` (or ``[tool.dagentic]`` in
``pyproject.toml``) in the working directory and from ``DAGENTIC_*`` environment variables.

Environment variables win over files; nested values use ``__``, e.g.
``DAGENTIC_TOOL_CONCURRENCY='{"web.search": 2}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .isolation import Limits

__all__ = [
    "AgentSettings",
    "FetchSettings",
    "LocalSearchSettings",
    "MemorySettings",
    "ModelPrice",
    "ModelSettings",
    "OtlpSettings",
    "SandboxSettings",
    "SearchApiSettings",
    "Settings",
    "SqlSettings",
    "SqlSource",
    "TracingSettings",
    "WebSettings",
]


class SqlSource(BaseModel):
    """A data source of the sql tools: a DuckDB file, a CSV/Parquet/JSON file (one view
    named after the source), or a folder of such files (one view per file)."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    allow_write: bool = Field(False, description="Let INSERT/UPDATE/DELETE reach it.")


class SqlSettings(BaseModel):
    """Where ``sql.query`` reads from, and its limits."""

    model_config = ConfigDict(extra="forbid")

    sources: dict[str, SqlSource] = Field(
        default_factory=dict,
        description="Named sources; none configured means the bundled sample database.",
    )
    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders a plan may name as a source (the `source` argument, e.g. "
        "from a plan input); none means plans cannot name sources.",
    )
    max_rows: int = Field(1000, ge=1, description="Rows a query returns at most.")
    max_bytes: int = Field(1_000_000, ge=1024, description="JSON bytes of rows at most.")
    timeout: float = Field(10.0, gt=0, description="Seconds before a query is interrupted.")
    memory_limit: str = Field("512MB", description="DuckDB's memory_limit.")
    threads: int = Field(2, ge=1, description="DuckDB's threads.")


class SandboxSettings(BaseModel):
    """Where and how ``code.python`` (and ``dagentic sandbox run``) run code."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "docker", "process"] = Field(
        "auto", description="docker, process (bubblewrap) or auto: the strongest available."
    )
    image: str = Field("dagentic-sandbox:latest", description="Docker image to run code in.")
    pool_size: int = Field(2, ge=0, description="Warm containers kept ready.")
    cpus: float = Field(1.0, gt=0, description="CPU quota of a container.")
    limits: Limits = Field(default_factory=Limits)


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


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)


class ModelSettings(BaseModel):
    """The model that plans, judges and answers."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["local", "openai"] = Field(
        "local",
        description="local (llama-cpp-python, in process) or openai (any "
        "OpenAI-compatible endpoint).",
    )
    name: str | None = Field(
        None,
        description="openai: the model name; local: a .gguf file (default: the "
        "bundled Gemma 3 270M).",
    )
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."
    )
    api_key: SecretStr | None = Field(None, description="Else OPENAI_API_KEY.")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="How the endpoint takes a JSON schema (json_object for "
        "llama-cpp-python's server; none: in the prompt).",
    )
    stream: bool = Field(False, description="Stream replies from the endpoint.")
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, ge=1, description="Tokens one reply may have.")
    timeout: float = Field(120.0, gt=0, description="Seconds per model call.")
    max_retries: int = Field(3, ge=0, description="Retries of 429/5xx/connection errors.")
    context_size: int = Field(8192, ge=512, description="local: the context window.")
    threads: int | None = Field(None, ge=1, description="local: CPU threads (default: all).")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Price per model name, for usage cost."
    )


class AgentSettings(BaseModel):
    """Budgets and behaviour of the agent loop (``dagentic ask``, ``Agent``)."""

    model_config = ConfigDict(extra="forbid")

    max_replans: int = Field(2, ge=0, description="Plans after the first, at most.")
    max_repairs: int = Field(2, ge=0, description="Repair attempts of an invalid plan.")
    max_steps: int = Field(50, ge=1, description="Steps run over all plan versions.")
    max_tokens: int = Field(60_000, ge=1, description="Model tokens, input and output.")
    max_cost: float | None = Field(None, ge=0, description="US dollars of model calls.")
    max_wall_time: float = Field(600.0, gt=0, description="Seconds for the whole run.")
    critique: bool = Field(False, description="Have the model critique each plan before it runs.")


class MemorySettings(BaseModel):
    """Long-term memory (a DuckDB file) and how the agent uses it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="dagentic ask recalls and remembers.")
    path: Path = Field(Path(".dagentic/memory.duckdb"), description="The memory file.")
    agent: str = Field("default", description="The agent scope of what is remembered.")
    recall_limit: int = Field(5, ge=1, description="Items recalled into a planner's prompt.")
    half_life_days: float = Field(30.0, gt=0, description="Recency halves every N days.")
    policy: Literal["model", "threshold"] = Field(
        "threshold",
        description="Who decides insert/merge/replace/ignore: the model, or similarity thresholds.",
    )
    duplicate_similarity: float = Field(0.95, gt=0, le=1, description="At least: ignore.")
    related_similarity: float = Field(0.80, gt=0, le=1, description="At least: merge.")
    context_tokens: int | None = Field(
        None,
        ge=256,
        description="Token budget of a planner's prompt (default: the model's "
        "context size minus its reply).",
    )


class OtlpSettings(BaseModel):
    """Where the ``otlp`` tracing exporter sends spans and metrics."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        None,
        description="The collector: a base URL for http/protobuf (/v1/traces and "
        "/v1/metrics are added); for grpc http://host:port (plaintext) or "
        "https://host:port / host:port (TLS); unset: "
        "OTEL_EXPORTER_OTLP_ENDPOINT, else the exporter's localhost default.",
    )
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Sent with every export (e.g. an API key)."
    )
    timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds per export (a collector that "
        "does not answer delays a CLI command by a "
        "few times this).",
    )


class TracingSettings(BaseModel):
    """OpenTelemetry traces and metrics of runs (see runtime/tracing.py)."""

    model_config = ConfigDict(extra="forbid")

    exporter: Literal["jsonl", "console", "otlp", "none"] = Field(
        "jsonl",
        description="jsonl: a file per run under runs_dir (what `dagentic trace` "
        "and `dagentic report` read); console: stderr; otlp: a "
        "collector; none: no spans and no metrics.",
    )
    otlp: OtlpSettings = Field(default_factory=OtlpSettings)
    metrics: bool = Field(True, description="Record metrics too.")
    metrics_interval: float = Field(
        60.0, gt=0, description="Seconds between metric exports (and one at exit)."
    )
    export_delay: float = Field(
        1.0, gt=0, description="Seconds spans wait to be exported in batches."
    )
    record_content: bool = Field(
        False,
        description="Record prompts, replies, tool arguments and outputs in spans "
        "(they may hold personal or secret data).",
    )
    service_name: str = Field("dagentic", description="The service.name resource attribute.")


class Settings(BaseSettings):
    """Every knob of dagentic, with its default."""

    model_config = SettingsConfigDict(
        env_prefix="DAGENTIC_",
        env_nested_delimiter="__",
        toml_file="dagentic.toml",
        pyproject_toml_table_header=("tool", "dagentic"),
        extra="forbid",
    )

    concurrency: int = Field(64, ge=1, description="Steps running at once in one run.")
    foreach_concurrency: int = Field(
        16, ge=1, description="Items of one foreach step running at once (max_parallel wins)."
    )
    tool_concurrency: dict[str, int] = Field(
        default_factory=dict, description="Calls running at once per tool name."
    )
    worker_threads: int = Field(16, ge=1, description="Threads for synchronous tools.")
    default_timeout: float | None = Field(
        300.0, gt=0, description="Seconds per attempt when neither step nor tool sets one."
    )
    fail_fast: bool = Field(False, description="Cancel the rest of a run at its first failure.")
    runs_dir: Path = Field(
        Path(".dagentic/runs"), description="Where run files (spans, metrics) are kept."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls),
            PyprojectTomlConfigSettingsSource(settings_cls),
        )
