"""Settings: one model, read from ``dagentic.toml`` (or ``[tool.dagentic]`` in
``pyproject.toml``) in the working directory and from ``DAGENTIC_*`` environment variables.

Environment variables win over files; nested values use ``__``, e.g.
``DAGENTIC_TOOL_CONCURRENCY='{"web.search": 2}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .sandbox import Limits

__all__ = ["SandboxSettings", "Settings", "SqlSettings", "SqlSource"]


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
        description="Named sources; none configured means the bundled sample database.")
    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="Folders a plan may name as a source (the `source` argument, e.g. "
                    "from a plan input); none means plans cannot name sources.")
    max_rows: int = Field(1000, ge=1, description="Rows a query returns at most.")
    max_bytes: int = Field(1_000_000, ge=1024, description="JSON bytes of rows at most.")
    timeout: float = Field(10.0, gt=0, description="Seconds before a query is interrupted.")
    memory_limit: str = Field("512MB", description="DuckDB's memory_limit.")
    threads: int = Field(2, ge=1, description="DuckDB's threads.")


class SandboxSettings(BaseModel):
    """Where and how ``code.python`` (and ``dagentic sandbox run``) run code."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "docker", "process"] = Field(
        "auto", description="docker, process (bubblewrap) or auto: the strongest available.")
    image: str = Field("dagentic-sandbox:latest", description="Docker image to run code in.")
    pool_size: int = Field(2, ge=0, description="Warm containers kept ready.")
    cpus: float = Field(1.0, gt=0, description="CPU quota of a container.")
    limits: Limits = Field(default_factory=Limits)


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
        16, ge=1, description="Items of one foreach step running at once (max_parallel wins).")
    tool_concurrency: dict[str, int] = Field(
        default_factory=dict, description="Calls running at once per tool name.")
    worker_threads: int = Field(16, ge=1, description="Threads for synchronous tools.")
    default_timeout: float | None = Field(
        300.0, gt=0, description="Seconds per attempt when neither step nor tool sets one.")
    fail_fast: bool = Field(False, description="Cancel the rest of a run at its first failure.")
    runs_dir: Path = Field(Path(".dagentic/runs"), description="Where run records are kept.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    sql: SqlSettings = Field(default_factory=SqlSettings)

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
