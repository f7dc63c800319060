"""Sub-plans: a step that runs another plan (``plan: NAME`` or a path, with ``inputs:``).

A sub-plan is found and validated with its caller, before anything runs: ``plan: revenue``
names ``revenue.yaml`` (or ``.yml``) in the plan folders (``plans/`` unless the caller says
otherwise), ``plan: sub/b.yaml`` (a name with a ``/`` or ending ``.yaml``/``.yml``) is a
path relative to the folder of the plan file that names it. A path must stay inside the
folder of the outermost plan file or a plan folder, and a plan that is not a file (a plan
body sent to ``dagentic serve``, a model's plan) names sub-plans only by name: a hostile
plan cannot make the machine read a file of its choosing. Its problems, a missing plan, unknown or missing inputs, literal
inputs of the wrong type, cycles (a plan that runs itself, directly or through others), a
nesting deeper than :data:`MAX_SUBPLAN_DEPTH` and more than :data:`MAX_TOTAL_STEPS` steps
in all, or more than :data:`MAX_PLAN_FILES` plan files, are problems of the caller,
located at its ``plan:`` or ``inputs:`` node.

How a sub-plan step runs is in :mod:`._subrun`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .bounds import MAX_STEPS
from .errors import PlanError, Problem
from .expressions import contains_expression
from .plan import Step
from .source import read_plan_source
from .tools import SideEffects, Tool, suggest

if TYPE_CHECKING:
    from .graph import CompiledPlan, _Checker
    from .settings import Settings

__all__ = [
    "DEFAULT_PLAN_FOLDERS",
    "MAX_SUBPLAN_DEPTH",
    "MAX_TOTAL_STEPS",
    "Nesting",
    "PlanFolders",
    "SubPlan",
    "check_subplan",
    "plan_folders",
]

DEFAULT_PLAN_FOLDERS = ("plans",)
MAX_SUBPLAN_DEPTH = 8  # plans below the one validated, at most
MAX_TOTAL_STEPS = MAX_STEPS  # steps of a plan and of every sub-plan it names, at most
MAX_SHOWN_PROBLEMS = 5  # of an invalid sub-plan, quoted in its caller's problem
MAX_PLAN_FILES = 100  # distinct sub-plan files one validation reads, at most
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SEVERITY = {"none": 0, "read": 1, "write": 2}

# Where ``plan: NAME`` looks: folders, a function giving them (called when a step first
# names a plan), or None for the working directory's settings.
PlanFolders = Sequence[str | Path] | Callable[[], Sequence[str | Path]] | None


@dataclass
class Nesting:
    """Where sub-plans are looked up, which plan files are being validated (the caller's
    chain, outermost first, to find cycles), and those validated already."""

    given: PlanFolders  # a function: called when a step first names a plan
    stack: tuple[Path, ...] = ()
    done: dict[Path, CompiledPlan | PlanError] = field(default_factory=dict)
    level: int = 0  # of the plan being validated: 0 for the one asked for

    @classmethod
    def top(cls, folders: PlanFolders, path: str | Path | None) -> Nesting:
        file = Path(path) if path is not None else None
        if file is None or not file.is_file():  # no file, or a name like <plan_body>
            return cls(folders, ())
        return cls(folders, (_resolved(file),))

    @property
    def folders(self) -> tuple[Path, ...]:
        """Where plan names are looked up: as given, else as the settings of the working
        directory say (:func:`plan_folders`); read once, and only when a step names a plan
        (the plugins' folders cost a look at the installed plugins)."""
        if not isinstance(self.given, tuple):
            if callable(self.given):
                folders = self.given()
            elif self.given is not None:
                folders = self.given
            else:
                from .errors import SettingsError
                from .settings import Settings

                try:
                    folders = plan_folders(Settings())
                except SettingsError:  # reported by whatever reads the settings next
                    folders = list(DEFAULT_PLAN_FOLDERS)
            self.given = tuple(Path(f) for f in folders)
        return self.given

    def base(self, file: str | None) -> Path:
        """The folder a path in plan ``file`` is relative to."""
        return self.stack[-1].parent if self.stack else Path.cwd()


@dataclass
class SubPlan:
    """The plan a ``plan:`` step runs, validated."""

    name: str  # as the step wrote it
    path: Path
    compiled: CompiledPlan
    tool: Tool  # what an approver and the journal are told the call is
    untrusted: frozenset[str]  # untrusted tools whose data its steps may carry


def plan_folders(settings: Settings) -> list[Path]:
    """The folders plan names are looked up in, as ``settings`` say: ``library.folders``
    (default ``plans/``), then the plan folders the installed plugins ship
    (``register_plan_folders``, unless ``library.plugin_plans`` is false)."""
    from .plugin_manager import load_plan_folders

    folders = [Path(f) for f in settings.library.folders]
    return folders + [f for f in load_plan_folders(settings) if f not in folders]


def check_subplan(checker: _Checker, step: Step, at: tuple[Any, ...], name: str) -> SubPlan | None:
    """The sub-plan ``step`` runs, found and validated, its inputs checked; problems are
    reported on ``checker`` at the step's ``plan:`` or ``inputs:`` node."""
    nesting = checker.nesting
    if nesting is None:  # pragma: no cover - every entry point gives one
        return None
    ref = str(step.plan)
    where = (*at, "plan")
    path = _find(checker, nesting, ref, where, name)
    if path is None:
        return None
    if path in nesting.stack:
        if nesting.stack[-1] == path:
            checker.report(
                where,
                f"{name}: plan '{ref}' is this plan itself; a plan cannot run itself: "
                "remove the step or name another plan",
            )
        else:
            loop = nesting.stack[nesting.stack.index(path) :]
            checker.report(
                where,
                f"{name}: plan '{ref}' makes a cycle: "
                f"{' -> '.join(_shown(p) for p in (*loop, path))}; a plan cannot run "
                "itself, even through other plans: remove one of these steps",
            )
        return None
    if nesting.level >= MAX_SUBPLAN_DEPTH:
        chain = " -> ".join(_shown(p) for p in (*nesting.stack, path))
        checker.report(
            where,
            f"{name}: sub-plans nest more than {MAX_SUBPLAN_DEPTH} levels deep here "
            f"({chain}); run some of them as steps of their caller instead",
        )
        return None
    compiled = _compile(checker, nesting, path)
    if isinstance(compiled, PlanError):
        shown = compiled.problems[:MAX_SHOWN_PROBLEMS]
        more = len(compiled.problems) - len(shown)
        for problem in shown:
            checker.report(where, f"{name}: plan '{ref}' is invalid: {problem}")
        if more > 0:
            checker.report(
                where,
                f"{name}: plan '{ref}' has {more} more problem{'s' if more > 1 else ''}; "
                f"`dagentic validate {_shown(path)}` lists them all",
            )
        return None
    if nesting.level + 1 + compiled.depth > MAX_SUBPLAN_DEPTH:
        checker.report(
            where,
            f"{name}: plan '{ref}' nests sub-plans {compiled.depth + 1} levels deep, "
            f"{nesting.level + 1 + compiled.depth} below the plan validated; at most "
            f"{MAX_SUBPLAN_DEPTH}: run some of them as steps of their caller instead",
        )
        return None
    checker.depth = max(checker.depth, compiled.depth + 1)
    own = len(checker.source.data.get("steps") or ())
    before = own + checker.total_steps
    checker.total_steps += compiled.total_steps
    if before + compiled.total_steps > MAX_TOTAL_STEPS:
        if before > MAX_TOTAL_STEPS:
            return None  # said at the step that went past
        checker.report(
            where,
            f"{name}: plan '{ref}' brings the steps this plan runs, its sub-plans' included, "
            f"past {MAX_TOTAL_STEPS:,}, the most one plan may run; split the work into "
            "separate runs",
        )
        return None
    if not _inputs_fit(checker, step, at, name, ref, compiled):
        return None
    return SubPlan(
        name=ref,
        path=path,
        compiled=compiled,
        tool=_as_tool(ref, compiled),
        untrusted=frozenset(
            source for spec in compiled.steps.values() for source in spec.provenance.untrusted_from
        ),
    )


def _find(
    checker: _Checker, nesting: Nesting, ref: str, where: tuple[Any, ...], name: str
) -> Path | None:
    """The plan file ``ref`` names, or None (reported)."""
    if "/" in ref or os.sep in ref or ref.endswith((".yaml", ".yml")):
        folders = ", ".join(_shown(f) + "/" for f in nesting.folders) or "no plan folders"
        if not nesting.stack:  # a plan body or a model's plan: no file of its choosing
            checker.report(
                where,
                f"{name}: plan '{ref}' is a path, but this plan is not a file (a plan body, "
                f"or one a model made): name a plan of {folders} instead, without .yaml",
            )
            return None
        candidate = Path(ref).expanduser()
        if not candidate.is_absolute():
            candidate = nesting.base(checker.source.file) / candidate
        root = nesting.stack[0].parent
        found = _resolved(candidate)
        if not any(found.is_relative_to(r) for r in (root, *map(_resolved, nesting.folders))):
            checker.report(
                where,
                f"{name}: plan file '{ref}' is outside this plan's folder ({_shown(root)}/) "
                f"and the plan folders ({folders}): move it there, or name it from the plan "
                "folders",
            )
            return None
        if found.is_file():
            return found
        checker.report(
            where,
            f"{name}: plan file '{ref}' not found (looked for {_shown(_resolved(candidate))}); "
            "a path is relative to the folder of the plan file that names it",
        )
        return None
    if _NAME.match(ref):
        for folder in nesting.folders:
            for suffix in (".yaml", ".yml"):
                candidate = _resolved(folder / f"{ref}{suffix}")
                if candidate.is_file() and candidate.is_relative_to(_resolved(folder)):
                    return candidate  # a link that leads out of the folder is not followed
    known = sorted(
        {
            p.stem
            for folder in nesting.folders
            if folder.is_dir()
            for p in folder.iterdir()
            if p.suffix in (".yaml", ".yml")
        }
    )[:1000]
    folders = ", ".join(_shown(f) + "/" for f in nesting.folders) or "no plan folders"
    checker.report(
        where,
        f"{name}: no plan named '{ref}' in {folders}{suggest(ref, known)}; name a plan "
        "file there (without .yaml) or give a path relative to this plan file",
    )
    return None


def _compile(checker: _Checker, nesting: Nesting, path: Path) -> CompiledPlan | PlanError:
    """Plan file ``path`` validated as a sub-plan of the plans on ``nesting.stack`` (once
    per validation, however many steps name it)."""
    found = nesting.done.get(path)
    if found is not None:
        return found
    if len(nesting.done) >= MAX_PLAN_FILES:
        return PlanError(
            [
                Problem(
                    f"the plan and its sub-plans name more than {MAX_PLAN_FILES} plan "
                    "files; merge some of them",
                    file=_shown(path),
                )
            ]
        )
    inner = Nesting(nesting.folders, (*nesting.stack, path), nesting.done, nesting.level + 1)
    source, problems = read_plan_source(_shown(path))
    result: CompiledPlan | PlanError
    try:
        result = checker.nested(source, problems, inner)
    except PlanError as exc:
        result = exc
    nesting.done[path] = result
    return result


def _inputs_fit(
    checker: _Checker,
    step: Step,
    at: tuple[Any, ...],
    name: str,
    ref: str,
    compiled: CompiledPlan,
) -> bool:
    """Whether ``step.inputs`` fit the sub-plan's declared inputs (names, required ones,
    and the type of every literal value); each misfit is reported."""
    from ._inputs import coerce_input, first_message

    declared = compiled.plan.inputs
    before = len(checker.problems)
    takes = ", ".join(sorted(declared)) or "no inputs"
    for key, value in step.inputs.items():
        spec = declared.get(key)
        if spec is None:
            checker.report(
                (*at, "inputs", key),
                f"{name}: plan '{ref}' has no input '{key}'{suggest(str(key), declared)}; "
                f"it takes {takes}",
                at_key=True,
            )
            continue
        if _has_expression(value):
            continue  # its value is known when the step runs, and checked then
        try:
            coerce_input(spec, value)
        except (ValidationError, ValueError) as exc:
            checker.report(
                (*at, "inputs", key),
                f"{name}: input '{key}' of plan '{ref}' must be {spec.type}: "
                f"{first_message(exc)} (got {_quoted(value)})",
            )
    for key, spec in declared.items():
        if spec.required and key not in step.inputs:
            checker.report(
                (*at, "inputs") if step.inputs else (*at, "plan"),
                f"{name}: plan '{ref}' needs input '{key}' ({spec.type}); give it under 'inputs:'",
            )
    return len(checker.problems) == before


def _as_tool(ref: str, compiled: CompiledPlan) -> Tool:
    """The sub-plan as an approver and the journal see a call: named ``plan:NAME``, with
    the most its steps do (``write`` if one writes), idempotent only if every step's
    tool is (or uses its idempotency key: a rerun child keeps its run id, so its keys)."""
    specs = [s for s in compiled.steps.values()]
    tools = [s.tool for s in specs if s.tool is not None]
    nested = [s.subplan.tool for s in specs if s.subplan is not None]
    every = tools + nested
    side_effects: SideEffects = max(
        (t.side_effects for t in every), key=lambda e: _SEVERITY.get(e, 2), default="none"
    )

    def never(**_: Any) -> Any:  # pragma: no cover - the executor runs the plan instead
        raise RuntimeError("a sub-plan is run by the executor, not called")

    return Tool(
        name=f"plan:{ref}",
        description=compiled.plan.description or compiled.plan.goal or compiled.plan.name,
        fn=never,
        args_model=_Inputs,
        side_effects=side_effects,
        idempotent=all(t.idempotent or t.uses_idempotency_key for t in every),
        trusted=all(t.trusted for t in every),
    )


class _Inputs(BaseModel):
    """A sub-plan's inputs, as they are (the plan's own declarations check them)."""

    model_config = ConfigDict(extra="allow")


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return contains_expression(value)
    if isinstance(value, dict):
        return any(_has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_expression(v) for v in value)
    return False


def _quoted(value: Any) -> str:
    from .bounds import cut_value

    return repr(cut_value(value, depth=3, size=200))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a loop of symbolic links: named as it is
        return path.absolute()


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
