"""Where the tests find the plans over the sample data: the plan folders of the sql plugin
(the sample database) and of the web plugin (the bundled news)."""

from __future__ import annotations

from pathlib import Path

from dagentic.plugins import sql, web

FOLDERS = (sql.SAMPLE_PLANS, web.SAMPLE_PLANS)


def sample_plan(name: str) -> Path:
    """The file of sample plan ``name`` (e.g. ``revenue_by_region``)."""
    for folder in FOLDERS:
        if (path := folder / f"{name}.yaml").is_file():
            return path
    raise LookupError(f"no sample plan {name!r} in {', '.join(map(str, FOLDERS))}")
