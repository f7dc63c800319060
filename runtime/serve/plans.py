"""The plans ``dagentic serve`` runs: plan files of the plan folders (``library.folders``),
found by name and never outside them, and plan bodies sent in a request, validated exactly
as plan files are, then held to what the server allows: the tools of ``serve.tools``, and
no ``sql`` source a step names literally outside ``sql.allowed_roots`` (a source built from
an input is judged by the tool when the call runs, with the same rule)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PlanError, Problem
from ..graph import CompiledPlan, compile_plan, load_plan
from ..source import read_plan_source

if TYPE_CHECKING:
    from ..settings import Settings
    from ..tools import ToolRegistry

__all__ = [
    "BODY_FILE",
    "PLAN_NAME",
    "PlanNotFound",
    "allowed_tool",
    "cached_named",
    "compile_body",
    "compile_named",
    "find_plan",
    "list_plans",
    "problem_json",
]

PLAN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
BODY_FILE = "<plan_body>"  # what problems of a plan body name as their file
_SUFFIXES = (".yaml", ".yml")
_SQL_TOOLS = ("sql.query", "sql.schema")
# Plans of the plan folders as compiled, by file, version (mtime, size), allowed tools and
# registry: a plan run many times is read and checked once (a run never changes its plan).
_COMPILED: dict[tuple[Any, ...], CompiledPlan] = {}


class PlanNotFound(LookupError):
    """No plan of that name in the plan folders (or the name is not a plan name)."""

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.invalid = invalid


def _folders(settings: Settings) -> list[Path]:
    return [Path(p).expanduser().resolve() for p in settings.library.folders]


def _shown_folders(settings: Settings) -> str:
    return ", ".join(str(p) for p in settings.library.folders) or "none are set"


def find_plan(settings: Settings, name: str) -> Path:
    """The file of plan ``name`` (a file name of a plan folder, without ``.yaml``): the
    resolved path, which lies inside its folder (a link that leads out is not followed).
    Raises :class:`PlanNotFound`."""
    if not PLAN_NAME.match(name) or ".." in name:
        raise PlanNotFound(
            f"{name[:200]!r} is not a plan name: a plan is named by its file name in the "
            "plan folders without .yaml (letters, digits, '_', '-' and '.'), as GET "
            "/api/plans lists them",
            invalid=True,
        )
    for folder in _folders(settings):
        for suffix in _SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            try:
                resolved = candidate.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if resolved.is_relative_to(folder) and resolved.is_file():
                return resolved
    raise PlanNotFound(
        f"there is no plan '{name}' in the plan folders (library.folders: "
        f"{_shown_folders(settings)}); GET /api/plans lists them"
    )


def list_plans(settings: Settings, tools: ToolRegistry) -> list[dict[str, Any]]:
    """Every plan file of the plan folders (the first of a name wins), with its inputs;
    a plan that does not validate is listed with its problems."""
    found: dict[str, dict[str, Any]] = {}
    for folder, shown in zip(_folders(settings), settings.library.folders, strict=True):
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.suffix in _SUFFIXES):
            name = path.stem
            if name in found or not PLAN_NAME.match(name):
                continue
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if not resolved.is_relative_to(folder) or not resolved.is_file():
                continue
            entry: dict[str, Any] = {"name": name, "path": str(Path(shown) / path.name)}
            try:
                compiled = compile_named(settings, tools, name)  # checked once per version
            except PlanNotFound:
                continue
            except PlanError as exc:
                entry.update(
                    plan=None,
                    description=None,
                    goal=None,
                    inputs={},
                    problems=[problem_json(p) for p in exc.problems],
                )
            else:
                plan = compiled.plan
                entry.update(
                    plan=plan.name,
                    description=plan.description or plan.goal,
                    goal=plan.goal,
                    inputs={key: spec.model_dump(mode="json") for key, spec in plan.inputs.items()},
                    steps=len(compiled.steps),
                    problems=[],
                )
            found[name] = entry
    return list(found.values())


def allowed_tool(settings: Settings, name: str) -> bool:
    """Whether ``serve.tools`` lets runs started through the API use tool ``name``."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.serve.tools)


def compile_named(settings: Settings, tools: ToolRegistry, name: str) -> CompiledPlan:
    """Plan ``name`` of the plan folders, compiled and held to the server's rules. Raises
    :class:`PlanNotFound` or :class:`~dagentic.PlanError`."""
    path, key = _named(settings, tools, name)
    cached = _COMPILED.get(key)
    if cached is not None:
        return cached
    source, _ = read_plan_source(path)
    problems = _rules(settings, source)
    try:
        compiled = load_plan(path, tools)
    except PlanError as exc:
        raise PlanError(_merged(exc.problems, problems)) from None
    if problems:
        raise PlanError(problems)
    compiled.file = str(path)  # the journal keeps where it is: a resumed run sees changes
    if len(_COMPILED) >= 64:
        _COMPILED.clear()
    _COMPILED[key] = compiled
    return compiled


def cached_named(settings: Settings, tools: ToolRegistry, name: str) -> CompiledPlan | None:
    """Plan ``name`` as compiled before, if its file has not changed since (cheap: no
    reading, no checking); None when it must be compiled. Raises :class:`PlanNotFound`."""
    return _COMPILED.get(_named(settings, tools, name)[1])


def _named(settings: Settings, tools: ToolRegistry, name: str) -> tuple[Path, tuple[Any, ...]]:
    path = find_plan(settings, name)
    stat = path.stat()
    return path, (str(path), stat.st_mtime_ns, stat.st_size, tuple(settings.serve.tools), id(tools))


def compile_body(settings: Settings, tools: ToolRegistry, body: str) -> CompiledPlan:
    """A plan sent as YAML text, validated as a plan file is (every problem with its line
    and column), then held to the server's rules. Raises :class:`~dagentic.PlanError`."""
    source, read_problems = read_plan_source(text=body, name=BODY_FILE)
    problems = _rules(settings, source) if not read_problems else []
    try:
        compiled = compile_plan(body, tools, name=BODY_FILE)
    except PlanError as exc:
        raise PlanError(_merged(exc.problems, problems)) from None
    if problems:
        raise PlanError(problems)
    compiled.file = None
    return compiled


def _merged(first: list[Problem], more: list[Problem]) -> list[Problem]:
    unique = {str(p): p for p in [*first, *more]}.values()
    return sorted(unique, key=lambda p: (p.line or 0, p.column or 0))


def _rules(settings: Settings, source: Any) -> list[Problem]:
    """What the server refuses in a plan that may otherwise be valid: a tool that
    ``serve.tools`` does not allow, a literal ``sql`` source outside ``sql.allowed_roots``."""
    data = source.data
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return []
    problems = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        name = step.get("tool")
        if not isinstance(name, str):
            continue
        if not allowed_tool(settings, name):
            allowed = ", ".join(settings.serve.tools) or "none"
            problems.append(
                source.problem(
                    ("steps", index, "tool"),
                    f"tool '{name}' is not allowed here: the server lets runs use the tools "
                    f"of serve.tools ({allowed})",
                )
            )
        args = step.get("args")
        if name in _SQL_TOOLS and isinstance(args, dict) and isinstance(args.get("source"), str):
            refused = _sql_source_problem(settings, args["source"])
            if refused is not None:
                problems.append(source.problem(("steps", index, "args", "source"), refused))
    return problems


def _sql_source_problem(settings: Settings, given: str) -> str | None:
    """Why a ``sql`` source named in a plan is refused, or None (a source built from an
    expression is judged when the call runs, by the tool's own check)."""
    if "${{" in given:
        return None
    from ..plugins.sql import _allowed
    from ..plugins.sql.settings import SqlSettings

    roots = settings.plugin(SqlSettings).allowed_roots
    try:
        _allowed(given, roots)
    except Exception as exc:  # noqa: BLE001 - the tool's ToolError or PolicyBlockedError
        return str(getattr(exc, "message", exc))
    return None


def problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "line": problem.line,
        "column": problem.column,
        "message": problem.message,
        "path": problem.file,
    }
