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

__all__ = ["SandboxSettings", "Settings"]


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
