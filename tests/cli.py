"""How tests run the ``dagentic`` command line: in process through typer's CliRunner
(:func:`invoke`), or as the installed console script in a subprocess (:func:`run_script`).
Both are blind to any dagentic.toml or DAGENTIC_* variables around the tests (with
:func:`isolate` for the in-process runs) and print plain text: no colour, no wrapping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from dagentic.cli import add_plugin_commands, app
from typer.testing import CliRunner, Result

from tests.blind import NO_PLUGIN_PLANS

DAGENTIC = Path(sys.executable).parent / "dagentic"  # the installed console script

# Rich must not colour or wrap what the tests read.
PLAIN = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None, "COLUMNS": "400"}


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in ``tmp_path`` (no dagentic.toml there) with no DAGENTIC_* variables but one:
    the plugins' sample plans are left out of the library (``NO_PLUGIN_PLANS``). Call it
    from a test module's autouse fixture."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DAGENTIC_"):
            monkeypatch.delenv(name)
    for name, value in NO_PLUGIN_PLANS.items():
        monkeypatch.setenv(name, value)


def invoke(
    *args: str | Path, env: Mapping[str, str | None] | None = None, plugins: bool = False
) -> Result:
    """``dagentic ARGS`` in process; ``env`` adds (or, with None, removes) variables, and
    ``plugins`` adds the plugins' command groups as ``main()`` does. What the CLI raised,
    other than its exit, is raised again."""
    if plugins:
        add_plugin_commands()
    result = CliRunner().invoke(app, [str(a) for a in args], env={**PLAIN, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def script_env(
    env: Mapping[str, str] | None = None, *, drop: tuple[str, ...] = ("DAGENTIC_",)
) -> dict[str, str]:
    """This process's environment for the script: without the variables starting with
    ``drop`` or forcing colour, plus ``env``."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(drop) and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")
        },
        **(env or {}),
    }


def run_script(
    *args: str | Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = ("DAGENTIC_",),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The installed ``dagentic ARGS`` in ``cwd``, in :func:`script_env` (``env``,
    ``drop``)."""
    return subprocess.run(
        [str(DAGENTIC), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=script_env(env, drop=drop),
        timeout=timeout,
        check=False,
    )
