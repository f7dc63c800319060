"""The sql plugin's settings: section ``[sql]`` of ``dagentic.toml`` (``[tool.dagentic.sql]``
in ``pyproject.toml``, ``DAGENTIC_SQL__*`` variables), registered by ``register_settings``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SqlSettings", "SqlSource"]


class SqlSource(BaseModel):
    """A data source of the sql tools: a DuckDB file, a CSV/Parquet/JSON file (one view
    named after the source), or a folder of such files (one view per file)."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    allow_write: bool = Field(False, description="Let INSERT/UPDATE/DELETE reach it.")


class SqlSettings(BaseModel):
    """Where ``sql.query`` reads from, and its limits."""

    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = "sql"

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
