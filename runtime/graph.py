"""Plan validation and compilation: from a plan (file or model) to a checked DAG.

:func:`compile_plan` reports every problem it finds at once (schema, ids, references,
expressions, cycles, tools, arguments) as a :class:`~dagentic.errors.PlanError` whose lines
read ``file:line:col: message``; nothing runs unless it returns.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from .bounds import Allowance, cut_value, located, plan_data_problem
from .errors import ExpressionError, FailureMode, PlanError, Problem
from .expressions import (
    STEP_FIELDS,
    Expression,
    Template,
    compile_template,
    contains_expression,
)
from .plan import Check, InputSpec, Plan, Retry, Step
from .result import Provenance
from .source import PlanSource, read_plan_source
from .tools import Tool, ToolRegistry, suggest

if TYPE_CHECKING:
    from .subplans import Nesting, PlanFolders, SubPlan

__all__ = ["CompiledPlan", "CompiledStep", "compile_plan", "load_plan", "to_dot", "to_mermaid"]


class Resolver(Protocol):
    """Builds a value (a step's arguments, an output) with its expressions evaluated in
    ``scope``, paying from ``allowance`` (a fresh one when not given)."""

    def __call__(self, scope: Mapping[str, Any], allowance: Allowance | None = None) -> Any: ...


@dataclass(slots=True)
class CompiledStep:
    """A step with its expressions compiled and its place in the graph known."""

    step: Step
    tool: Tool | None
    args: Resolver
    when: Expression | bool | None
    foreach: Expression | list[Any] | None
    check_assert: Expression | None
    deps: tuple[str, ...]
    data_deps: tuple[str, ...]
    dependents: list[str] = field(default_factory=list)
    untrusted_inputs: frozenset[str] = frozenset()
    provenance: Provenance = field(default_factory=Provenance)
    # Per top-level argument, the steps whose results its value is built from (through
    # `item`, those its foreach reads): what an egress argument would send out.
    arg_sources: dict[str, frozenset[str]] = field(default_factory=dict)
    # The plan inputs its expressions read, and per top-level argument those its value is
    # built from: a sub-plan's inputs may carry its caller's (untrusted) data.
    input_reads: frozenset[str] = frozenset()
    arg_inputs: dict[str, frozenset[str]] = field(default_factory=dict)
    # The plan a `plan:` step runs (its `args` resolver builds the sub-plan's inputs).
    subplan: SubPlan | None = None

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def called(self) -> str | None:
        """What the step calls, as its result names it: its tool, ``plan:NAME`` for a
        sub-plan (as approvals name it too), None for a check."""
        step = self.step
        return step.tool or (f"plan:{step.plan}" if step.plan is not None else None)


@dataclass(slots=True)
class CompiledPlan:
    """A validated plan, ready for the executor."""

    plan: Plan
    steps: dict[str, CompiledStep]
    order: list[str]
    outputs: dict[str, Resolver]
    file: str | None = None
    total_steps: int = 0  # its steps and its sub-plans', each time one is named
    depth: int = 0  # levels of sub-plans below it

    def __post_init__(self) -> None:
        if not self.total_steps:
            self.total_steps = len(self.steps)

    @property
    def name(self) -> str:
        return self.plan.name

    def output_resolvers(self) -> list[tuple[str, Callable[[Mapping[str, Any]], Any]]]:
        """Each output's name and resolver, all paying from one allowance: together the
        outputs hold at most what one step's arguments may."""
        allowance = Allowance()
        return [
            (key, partial(resolve, allowance=allowance)) for key, resolve in self.outputs.items()
        ]


# --------------------------------------------------------------------------- entry points


def load_plan(
    path: str | Path,
    tools: ToolRegistry,
    *,
    judge: bool = False,
    plan_folders: PlanFolders = None,
) -> CompiledPlan:
    """Read, validate and compile a YAML plan file, and the sub-plans its steps run
    (``plan:`` names one in ``plan_folders``, default: the settings' folders,
    ``library.folders`` then the plugins' (:func:`~dagentic.subplans.plan_folders`); or
    gives a path relative to the file). Raises :class:`PlanError`."""
    from .subplans import Nesting

    source, problems = read_plan_source(path)
    nesting = Nesting.top(plan_folders, path)
    return _check(source, problems, tools, judge=judge, nesting=nesting)


def compile_plan(
    plan: Plan | Mapping[str, Any] | str,
    tools: ToolRegistry,
    *,
    judge: bool = False,
    name: str | None = None,
    plan_folders: PlanFolders = None,
    source_file: str | Path | None = None,
) -> CompiledPlan:
    """Validate and compile a :class:`Plan`, a dict in plan-file shape, or YAML text. A
    sub-plan's path is relative to the folder of ``source_file`` (the plan file it came
    from); without one, sub-plans are named only by name, looked up in ``plan_folders``
    (default: the settings' folders, ``library.folders`` then the plugins')."""
    from .subplans import Nesting

    nesting = Nesting.top(plan_folders, source_file)
    if name is None and source_file is not None:
        name = str(source_file)  # its problems name it; a journal resumes from it
    if isinstance(plan, str):
        source, problems = read_plan_source(text=plan, name=name)
        return _check(source, problems, tools, judge=judge, nesting=nesting)
    data = plan.model_dump(by_alias=True, exclude_unset=True) if isinstance(plan, Plan) else plan
    return _check(
        PlanSource(data, name),
        [],
        tools,
        judge=judge,
        model=plan if isinstance(plan, Plan) else None,
        nesting=nesting,
    )


def _check(
    source: PlanSource,
    problems: list[Problem],
    tools: ToolRegistry,
    *,
    judge: bool,
    model: Plan | None = None,
    nesting: Nesting | None = None,
) -> CompiledPlan:
    if source.data is None and problems:
        raise PlanError(problems)
    checker = _Checker(source, tools, judge=judge, nesting=nesting)
    checker.problems.extend(problems)
    compiled = checker.run(model)
    if checker.problems or compiled is None:
        raise PlanError(_ordered(checker.problems))
    return compiled


def _ordered(problems: list[Problem]) -> list[Problem]:
    unique = {str(p): p for p in problems}.values()
    return sorted(unique, key=lambda p: (p.line or 0, p.column or 0))


# --------------------------------------------------------------------------- the checker


class _Checker:
    def __init__(
        self,
        source: PlanSource,
        tools: ToolRegistry,
        *,
        judge: bool,
        nesting: Nesting | None = None,
    ) -> None:
        self.source = source
        self.tools = tools
        self.judge = judge
        self.nesting = nesting
        self.problems: list[Problem] = []
        self.total_steps = 0  # the steps its sub-plans run
        self.depth = 0  # levels of sub-plans below it

    def nested(self, source: PlanSource, problems: list[Problem], nesting: Nesting) -> CompiledPlan:
        """A sub-plan's file checked as this plan is (its tools, its judging), ``nesting``
        telling where it sits; raises :class:`PlanError`."""
        return _check(source, problems, self.tools, judge=self.judge, nesting=nesting)

    def report(
        self,
        path: tuple[Any, ...],
        message: str,
        *,
        at_key: bool = False,
        mode: FailureMode | None = None,
    ) -> None:
        """A problem at ``path``; ``mode`` classes it (see :class:`Problem`)."""
        problem = self.source.problem(path, message, at_key=at_key)
        problem.failure_mode = mode
        self.problems.append(problem)

    def run(self, model: Plan | None) -> CompiledPlan | None:
        data = self.source.data
        if not isinstance(data, dict):
            self.report((), "a plan must be a mapping with 'name' and 'steps'")
            return None
        too_big = plan_data_problem(data, walk=not self.source.bounded)
        if too_big is not None:  # nothing more is read of such a plan
            path, message = too_big
            self.report(path, message if self.source.values else located(path, message))
            return None
        plan = model or self._validate_model(data)
        if plan is not None:
            steps = list(enumerate(plan.steps))
            input_names = set(plan.inputs)
            outputs = plan.outputs
        else:
            steps = self._salvage_steps(data.get("steps"))
            raw_inputs = data.get("inputs")
            input_names = set(raw_inputs) if isinstance(raw_inputs, dict) else set()
            raw_outputs = data.get("outputs")
            outputs = raw_outputs if isinstance(raw_outputs, dict) else {}
        compiled = self._compile_steps(steps, input_names)
        compiled_outputs = self._compile_outputs(outputs, compiled, input_names)
        order = self._order(compiled, steps)
        if plan is None or order is None or self.problems:
            return None
        self._mark_provenance(compiled, order)
        return CompiledPlan(
            plan,
            compiled,
            order,
            compiled_outputs,
            self.source.file,
            total_steps=len(compiled) + self.total_steps,
            depth=self.depth,
        )

    # -- schema ------------------------------------------------------------------------

    def _validate_model(self, data: dict[str, Any]) -> Plan | None:
        try:
            return Plan.model_validate(data, context={"bounded": True})
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                self._report_schema_error(error)
        return None

    def _report_schema_error(self, error: Mapping[str, Any]) -> None:
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            owner = _model_at(loc[:-1])
            hint = suggest(str(loc[-1]), _field_names(owner)) if owner else ""
            allowed = ", ".join(_field_names(owner)) if owner else ""
            self.report(
                loc,
                f"{self._owner(loc[:-1])}unknown field '{loc[-1]}'{hint}"
                + (f"; allowed here: {allowed}" if allowed and not hint else ""),
                at_key=True,
            )
        elif kind == "missing":
            self.report(
                loc[:-1],
                f"missing required field '{loc[-1]}'"
                + (f" in {_where(loc[:-1])}" if loc[:-1] else ""),
            )
        else:
            message = error["msg"].removeprefix("Value error, ")
            if kind == "string_pattern_mismatch" and loc[-1:] == ("id",):
                message = (
                    "a step id must start with a letter and hold only letters, digits "
                    "and '_' (expressions read it as steps.<id>)"
                )
            elif kind in ("model_type", "dict_type") and len(loc) == 2 and loc[0] == "steps":
                message = "a step must be a mapping with an 'id' and a 'tool' or 'check'"
            value = error.get("input")
            shown = (
                f" (got {value!r})"
                if kind not in ("model_type", "dict_type", "value_error") and _is_scalar(value)
                else ""
            )
            prefix = self._owner(loc)
            if message.startswith(prefix.removesuffix(": ").split(": ")[0] + " ") and prefix:
                prefix = ""  # the message names the step already
            in_args = len(loc) >= 3 and loc[0] == "steps" and loc[2] == "args"
            self.report(
                loc, f"{prefix}{message}{shown}", mode=FailureMode.INVALID_ARGS if in_args else None
            )

    def _owner(self, loc: tuple[Any, ...]) -> str:
        """``step 'x': `` for a location inside a step, ``inputs.n: `` and so on elsewhere."""
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            steps = self.source.data.get("steps") if isinstance(self.source.data, dict) else None
            item = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
            sid = item.get("id") if isinstance(item, dict) else None
            name = f"step '{sid}'" if isinstance(sid, str) else _where(loc[:2])
            rest = _where(loc[2:])
            return f"{name}{': ' + rest if rest else ''}: "
        return f"{_where(loc)}: " if loc else ""

    def _salvage_steps(self, raw: Any) -> list[tuple[int, Step]]:
        """Steps that validate on their own, so later checks still run when others fail."""
        if not isinstance(raw, list):
            return []
        known = set(_field_names(Step))
        good = []
        for index, item in enumerate(raw):
            if isinstance(item, dict):  # unknown fields were reported; check the rest
                item = {k: v for k, v in item.items() if k in known}
            try:
                good.append((index, Step.model_validate(item)))
            except ValidationError:
                continue
        return good

    # -- steps -------------------------------------------------------------------------

    def _compile_steps(
        self, steps: list[tuple[int, Step]], input_names: set[str]
    ) -> dict[str, CompiledStep]:
        seen: dict[str, int] = {}
        for index, step in steps:
            if step.id in seen:
                first = self.source.problem(("steps", seen[step.id]), "")
                at = f" (first defined at line {first.line})" if first.line else ""
                self.report(("steps", index, "id"), f"duplicate step id '{step.id}'{at}")
            else:
                seen[step.id] = index
        ids = set(seen)
        compiled: dict[str, CompiledStep] = {}
        for index, step in steps:
            built = self._compile_step(index, step, ids, input_names)
            if seen.get(step.id) == index:
                compiled[step.id] = built
        return compiled

    def _compile_step(
        self, index: int, step: Step, ids: set[str], input_names: set[str]
    ) -> CompiledStep:
        at = ("steps", index)
        name = f"step '{step.id}'"
        for j, need in enumerate(step.needs):
            if need == step.id:
                self.report((*at, "needs", j), f"{name} needs itself")
            elif need not in ids:
                self.report(
                    (*at, "needs", j), f"{name} needs unknown step '{need}'{suggest(need, ids)}"
                )

        found: list[tuple[tuple[Any, ...], Template]] = []

        def compile_value(value: Any, path: tuple[Any, ...]) -> Any:
            errors: list[tuple[tuple[Any, ...], ExpressionError]] = []
            built = _compile_tree(value, path, found, errors)
            for where, exc in errors:
                self.report(where, f"{name}: {_where(where[2:])}: {exc.message}")
            return built

        # A sub-plan's inputs are built as a tool's arguments are (and checked apart).
        args_field = "inputs" if step.plan is not None else "args"
        args = compile_value(step.inputs if step.plan is not None else step.args, (*at, args_field))
        arg_templates = len(found)
        item_templates = arg_templates if step.foreach is not None else 0  # `item` is for args
        # A bare string is one expression (see _single): compiled as such here, so the steps
        # it reads are dependencies like those of a ${{ }} one.
        when = compile_value(_bare(step.when), (*at, "when"))
        foreach_start = len(found)
        foreach = compile_value(_bare(step.foreach), (*at, "foreach"))
        check_assert = None
        if step.check is not None:
            if step.check.assert_ is not None:
                check_assert = compile_value(step.check.assert_, (*at, "check", "assert"))
            if step.check.criteria is not None and not self.judge:
                self.report(
                    (*at, "check", "criteria"),
                    f"{name}: check.criteria needs a judge model, and this run has "
                    "none; run it through an agent with a model, or use only 'assert'",
                )

        data_deps: dict[str, None] = {}
        for index_, (path, template) in enumerate(found):
            for expression in template.expressions:
                for ref in expression.references:
                    self._check_reference(
                        ref,
                        path,
                        name,
                        step.id,
                        ids,
                        input_names,
                        index_ < item_templates,
                        data_deps,
                    )

        tool = self._resolve_tool(step, at, name)
        if tool is not None:
            self._check_args(step, tool, at, name)
        self._check_opt_ins(step, tool, at, name)
        subplan = None
        if step.plan is not None:
            from .subplans import check_subplan

            subplan = check_subplan(self, step, at, name)
        resolver = _resolver(args, "the inputs" if step.plan is not None else "the arguments")
        deps = tuple(dict.fromkeys([*step.needs, *data_deps]))
        known = ids - {step.id}
        from_foreach = _steps_read(found[foreach_start:], known)
        arg_sources: dict[str, set[str]] = {}
        arg_inputs: dict[str, set[str]] = {}
        foreach_inputs = _inputs_read(found[foreach_start:])
        for path, template in found[:arg_templates]:
            read = arg_sources.setdefault(path[len(at) + 1], set())
            read |= _steps_read([(path, template)], known)
            inputs = arg_inputs.setdefault(path[len(at) + 1], set())
            inputs |= _inputs_read([(path, template)])
            if any(r.root == "item" for e in template.expressions for r in e.references):
                read |= from_foreach
                inputs |= foreach_inputs
        return CompiledStep(
            step=step,
            tool=tool,
            args=resolver,
            when=self._single(when, step.when, (*at, "when"), name),
            foreach=self._single(foreach, step.foreach, (*at, "foreach"), name),
            check_assert=self._single(check_assert, None, (*at, "check", "assert"), name),
            deps=tuple(d for d in deps if d in ids and d != step.id),
            data_deps=tuple(d for d in data_deps if d in ids and d != step.id),
            arg_sources={arg: frozenset(read) for arg, read in arg_sources.items() if read},
            input_reads=frozenset(_inputs_read(found)),
            arg_inputs={arg: frozenset(read) for arg, read in arg_inputs.items() if read},
            subplan=subplan,
        )

    def _check_opt_ins(self, step: Step, tool: Tool | None, at: tuple[Any, ...], name: str) -> None:
        """``allow_egress`` only on a step whose tool sends arguments off the machine;
        ``cache`` only on a step whose tool is cacheable."""
        self._check_cache(step, tool, at, name)
        if not step.allow_egress:
            return
        if step.check is not None:
            self.report(
                (*at, "allow_egress"),
                f"{name}: allow_egress has no effect on a check step; remove it",
            )
        elif tool is not None and not tool.egress:
            self.report(
                (*at, "allow_egress"),
                f"{name}: allow_egress has no effect: tool '{tool.name}' sends none of its "
                "arguments off this machine; remove it",
            )

    def _check_cache(self, step: Step, tool: Tool | None, at: tuple[Any, ...], name: str) -> None:
        """A step may set a cache time to live only for a tool whose calls may be cached:
        never one that writes (``cache: false`` is always allowed)."""
        if step.cache is None or step.cache is False:
            return
        if step.check is not None:
            self.report((*at, "cache"), f"{name}: cache has no effect on a check step; remove it")
        elif tool is not None and not tool.cacheable:
            what = (
                "writes, and a call that writes is never cached"
                if tool.side_effects == "write"
                else "does not declare itself cacheable"
            )
            self.report(
                (*at, "cache"),
                f"{name}: tool '{tool.name}' {what}; remove 'cache' from the step",
            )

    def _single(self, compiled: Any, raw: Any, path: tuple[Any, ...], name: str) -> Any:
        """`when`, `foreach` and `assert` hold a single expression (or a literal)."""
        where = _where(path[2:])
        if isinstance(compiled, Template):
            if compiled.whole is None:
                self.report(
                    path,
                    f"{name}: '{where}' must be exactly one ${{{{ }}}} "
                    "expression, not text around one",
                )
                return None
            return compiled.whole
        if isinstance(raw, str) and not contains_expression(raw):
            # A bare string is read as an expression, as GitHub Actions does for `if:`.
            try:
                return compile_template("${{ " + raw + " }}").whole
            except ExpressionError as exc:
                self.report(path, f"{name}: {where}: {exc.message}")
                return None
        return compiled

    def _check_reference(
        self,
        ref: Any,
        path: tuple[Any, ...],
        name: str,
        step_id: str,
        ids: set[str],
        input_names: set[str],
        item_ok: bool,
        data_deps: dict[str, None],
    ) -> None:
        if ref.root == "item":
            if not item_ok:
                self.report(
                    path, f"{name}: 'item' is only defined in the args of a step with foreach"
                )
        elif ref.root == "inputs":
            if ref.key not in input_names:
                known = suggest(ref.key, input_names) or (
                    f" (declared inputs: {', '.join(sorted(input_names))})"
                    if input_names
                    else " (the plan declares no inputs)"
                )
                self.report(path, f"{name} references unknown input '{ref.key}'{known}")
        elif ref.field is not None and ref.field not in STEP_FIELDS:
            self.report(
                path,
                f"{name}: 'steps.{ref.key}.{ref.field}' is not a step field"
                f"{suggest(ref.field, STEP_FIELDS)}; use one of "
                f"{', '.join(STEP_FIELDS)}",
            )
        elif ref.key == step_id:
            self.report(path, f"{name} references its own result")
        elif ref.key not in ids:
            self.report(path, f"{name} references unknown step '{ref.key}'{suggest(ref.key, ids)}")
        else:
            data_deps[ref.key] = None

    def _resolve_tool(self, step: Step, at: tuple[Any, ...], name: str) -> Tool | None:
        if step.tool is None:
            return None
        if step.tool in self.tools:
            return self.tools.get(step.tool)
        self.report(
            (*at, "tool"),
            f"{name}: unknown tool '{step.tool}'{suggest(step.tool, self.tools.names())}"
            "; `dagentic tools` lists the installed ones",
            mode=FailureMode.INVALID_TOOL,
        )
        return None

    def _check_args(self, step: Step, tool: Tool, at: tuple[Any, ...], name: str) -> None:
        fields = tool.args_model.model_fields
        for arg, value in step.args.items():
            path = (*at, "args", arg)
            if arg not in fields:
                self.report(
                    path,
                    f"{name}: tool '{tool.name}' has no argument '{arg}'"
                    f"{suggest(arg, fields)}; it takes "
                    f"{', '.join(fields) or 'no arguments'}",
                    at_key=True,
                    mode=FailureMode.INVALID_ARGS,
                )
                continue
            if _has_expression(value):
                continue
            adapter = tool.field_adapter(arg)
            if adapter is None:
                continue
            try:
                adapter.validate_python(value)
            except ValidationError as exc:
                detail = exc.errors(include_url=False)[0]["msg"]
                self.report(
                    path,
                    f"{name}: argument '{arg}' of tool '{tool.name}': {detail} (got {value!r})",
                    mode=FailureMode.INVALID_ARGS,
                )
        for arg, info in fields.items():
            if info.is_required() and arg not in step.args:
                self.report(
                    (*at, "args") if step.args else at,
                    f"{name}: tool '{tool.name}' needs argument '{arg}'",
                    mode=FailureMode.INVALID_ARGS,
                )

    # -- outputs and order -------------------------------------------------------------

    def _compile_outputs(
        self, outputs: Mapping[str, Any], steps: dict[str, CompiledStep], input_names: set[str]
    ) -> dict[str, Resolver]:
        compiled: dict[str, Resolver] = {}
        for key, value in outputs.items():
            found: list[tuple[tuple[Any, ...], Template]] = []
            errors: list[tuple[tuple[Any, ...], ExpressionError]] = []
            built = _compile_tree(value, ("outputs", key), found, errors)
            for where, exc in errors:
                self.report(where, f"output '{key}': {exc.message}")
            for path, template in found:
                for expression in template.expressions:
                    for ref in expression.references:
                        self._check_reference(
                            ref, path, f"output '{key}'", "", set(steps), input_names, False, {}
                        )
            compiled[key] = _resolver(built, "the outputs", cut=True)
        return compiled

    def _order(
        self, compiled: dict[str, CompiledStep], steps: list[tuple[int, Step]]
    ) -> list[str] | None:
        graph = {sid: set(c.deps) for sid, c in compiled.items()}
        index_of = {step.id: index for index, step in steps}
        for _ in range(20):  # report up to 20 distinct cycles
            sorter = graphlib.TopologicalSorter(graph)
            try:
                return list(sorter.static_order())
            except graphlib.CycleError as exc:
                cycle: list[str] = list(reversed(exc.args[1]))
                start = min(cycle[:-1], key=lambda s: index_of.get(s, 0))
                at = cycle.index(start)
                cycle = cycle[at:-1] + cycle[:at] + [start]
                self.report(
                    ("steps", index_of.get(start, 0)),
                    f"dependency cycle: {' -> '.join(cycle)} (each step needs the next)",
                )
                graph[cycle[0]].discard(cycle[1])
        return None

    def _mark_provenance(self, compiled: dict[str, CompiledStep], order: list[str]) -> None:
        for sid in order:
            step = compiled[sid]
            tainted = frozenset().union(
                *(compiled[d].provenance.untrusted_from for d in step.data_deps)
            )
            step.untrusted_inputs = tainted
            own = (
                frozenset()
                if step.tool is None or step.tool.trusted
                else frozenset([step.tool.name])
            )
            if step.subplan is not None:  # what its steps' data may carry
                own = step.subplan.untrusted
            untrusted = tuple(sorted(tainted | own))
            step.provenance = Provenance(
                trusted=not untrusted,
                untrusted_from=untrusted,
                source=f"tool:{step.tool.name}"
                if step.tool
                else (f"plan:{step.subplan.name}" if step.subplan else None),
            )
            for dep in step.deps:
                compiled[dep].dependents.append(sid)


# --------------------------------------------------------------------------- helpers


def _compile_tree(
    value: Any,
    path: tuple[Any, ...],
    found: list[tuple[tuple[Any, ...], Template]],
    errors: list[tuple[tuple[Any, ...], ExpressionError]],
) -> Any:
    """``value`` with every string holding ``${{`` replaced by its compiled template."""
    if isinstance(value, str):
        if not contains_expression(value):
            return value
        try:
            template = compile_template(value)
        except ExpressionError as exc:
            errors.append((path, exc))
            return value
        found.append((path, template))
        return template
    if isinstance(value, dict):
        return {k: _compile_tree(v, (*path, k), found, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_tree(v, (*path, i), found, errors) for i, v in enumerate(value)]
    return value


def _resolver(tree: Any, what: str, *, cut: bool = False) -> Resolver:
    """A function of the scope that builds ``tree`` with every template rendered, all of
    them paying from one allowance; the values they yield together hold at most
    MAX_RESOLUTION_SIZE characters and items. With ``cut``, a value nested too deeply to
    be shown is cut (see :func:`~dagentic.bounds.cut_value`)."""
    if not _has_template(tree):
        return lambda scope, allowance=None: tree

    def build(value: Any, scope: Mapping[str, Any], allowance: Allowance) -> Any:
        if isinstance(value, Template):
            return allowance.hold(value.render(scope, allowance), what)
        if isinstance(value, dict):
            return {k: build(v, scope, allowance) for k, v in value.items()}
        if isinstance(value, list):
            return [build(v, scope, allowance) for v in value]
        return value

    def resolve(scope: Mapping[str, Any], allowance: Allowance | None = None) -> Any:
        value = build(tree, scope, Allowance() if allowance is None else allowance)
        return cut_value(value) if cut else value

    return resolve


def _bare(value: Any) -> Any:
    """A bare expression string (``when: steps.a.output.ok``) as a ``${{ }}`` one."""
    if isinstance(value, str) and not contains_expression(value):
        return "${{ " + value + " }}"
    return value


def _steps_read(found: list[tuple[tuple[Any, ...], Template]], known: set[str]) -> set[str]:
    """The steps (of ``known``) whose results these templates read."""
    return {
        ref.key
        for _, template in found
        for expression in template.expressions
        for ref in expression.references
        if ref.root == "steps" and ref.key in known
    }


def _inputs_read(found: list[tuple[tuple[Any, ...], Template]]) -> set[str]:
    """The plan inputs these templates read."""
    return {
        str(ref.key)
        for _, template in found
        for expression in template.expressions
        for ref in expression.references
        if ref.root == "inputs" and ref.key is not None
    }


def _any_leaf(value: Any, test: Callable[[Any], bool]) -> bool:
    """Whether any leaf of a nested dict/list value passes ``test``."""
    if isinstance(value, dict):
        return any(_any_leaf(v, test) for v in value.values())
    if isinstance(value, list):
        return any(_any_leaf(v, test) for v in value)
    return test(value)


def _has_template(value: Any) -> bool:
    return _any_leaf(value, lambda leaf: isinstance(leaf, Template))


def _has_expression(value: Any) -> bool:
    return _any_leaf(value, lambda leaf: isinstance(leaf, str) and contains_expression(leaf))


_MODELS: dict[str, type[BaseModel]] = {
    "steps": Step,
    "inputs": InputSpec,
    "retry": Retry,
    "check": Check,
}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    if not loc:
        return Plan
    named = [part for part in loc if isinstance(part, str)]
    if loc[0] == "inputs" and len(loc) == 2:
        return InputSpec
    return _MODELS.get(named[-1]) if named else None


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _where(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


# --------------------------------------------------------------------------- drawing


def to_mermaid(compiled: CompiledPlan) -> str:
    """The DAG as a Mermaid flowchart."""
    lines = ["flowchart TD"]
    for sid, step in compiled.steps.items():
        label = _label(step).replace('"', "'").replace("\n", "<br/>")
        shape = f'{{{{"{label}"}}}}' if step.step.check else f'["{label}"]'
        lines.append(f"    {sid}{shape}")
    for sid, step in compiled.steps.items():
        for dep in step.deps:
            arrow = "-.->" if step.step.when is not None else "-->"
            lines.append(f"    {dep} {arrow} {sid}")
    return "\n".join(lines) + "\n"


def to_dot(compiled: CompiledPlan) -> str:
    """The DAG in Graphviz DOT."""
    lines = [
        f'digraph "{compiled.name}" {{',
        "    rankdir=TB;",
        '    node [shape=box, fontname="Helvetica"];',
    ]
    for sid, step in compiled.steps.items():
        shape = ", shape=diamond" if step.step.check else ""
        label = _label(step).replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'    "{sid}" [label="{label}"{shape}];')
    for sid, step in compiled.steps.items():
        for dep in step.deps:
            style = " [style=dashed]" if step.step.when is not None else ""
            lines.append(f'    "{dep}" -> "{sid}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(step: CompiledStep) -> str:
    what = step.step.tool or (f"plan {step.step.plan}" if step.step.plan else "check")
    extra = " (foreach)" if step.step.foreach is not None else ""
    return f"{step.id}\n{what}{extra}"
