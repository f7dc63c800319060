"""Settings for tests: blind to any dagentic.toml or DAGENTIC_* variables around them, with
run files (traces) in this test session's temporary runs dir, never in the checkout."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from dagentic import Settings

# Every run is traced to a JSONL file and journaled by default, and memory and the web
# cache have files of their own: keep this process's out of the checkout, and apart from
# the other test processes (pytest-xdist's workers inherit the controller's environment).
_STATE = tempfile.mkdtemp(prefix="dagentic-test-state-")
RUNS_DIR = os.environ["DAGENTIC_RUNS_DIR"] = os.path.join(_STATE, "runs")
os.environ["DAGENTIC_MEMORY__PATH"] = os.path.join(_STATE, "memory.duckdb")
os.environ["DAGENTIC_WEB__CACHE_DIR"] = os.path.join(_STATE, "cache")
# The caches live in the runs dir, which the whole session shares: a test that wants them
# turns them on (with a runs dir of its own), so no test is answered from another's calls.
os.environ.setdefault("DAGENTIC_CACHE__ENABLED", "false")
# A test's plan library is what it puts there: the plugins' sample plans would route its
# goals (tests/runtime/test_plugin_plans.py turns them on).
NO_PLUGIN_PLANS = {"DAGENTIC_LIBRARY__PLUGIN_PLANS": "false"}
os.environ.update(NO_PLUGIN_PLANS)


def blind_settings(**values: Any) -> Settings:
    values.setdefault("runs_dir", RUNS_DIR)
    values.setdefault("cache", {"enabled": False})
    # the runs dir is the session's: a plan one test's agent saved must not route another's;
    # and no plugin's plans unless asked for (see NO_PLUGIN_PLANS)
    values["library"] = {"save": False, "plugin_plans": False, **values.get("library", {})}
    return Settings(_env_prefix="DAGENTIC_TEST_UNUSED_", **values)  # type: ignore[call-arg]
