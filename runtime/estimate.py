"""An estimate before a run: the tool and model calls a plan will make, their tokens and
cost, and its wall time, p50 and p90.

The wall time is the critical path of the plan's DAG (networkx), each step weighted by
what it takes: its tool's p50 (or p90) call latency over past runs (:mod:`.history`; the
first step to call a tool takes what a run's first call of it took), else the tool's
declared ``typical_latency`` (its p90 twice that), else :data:`DEFAULT_LATENCY`. A
``foreach`` step takes ⌈items / parallelism⌉ × the latency: its items are counted when
the plan or its inputs give the list, else taken from the same step of past runs of the
plan, else :data:`DEFAULT_ITEMS`. A step whose ``when`` is false on the inputs is skipped
(and so are the steps after it); one whose ``when`` reads step results counts in the p90,
and in the p50 unless past runs of the plan skipped it more often than not. A run's own
time besides its steps (starting, the journal's last writes) is added as past runs took
it (p50 and p90), else none.
Model calls (a check's ``criteria``, an agent's answer and verification) take the tokens
and seconds of past calls of the same purpose, else :data:`DEFAULT_MODEL_CALL`; their
cost comes from ``model.prices``.

``dagentic run`` and ``dagentic ask`` put the estimate on the run's span
(:meth:`Estimate.attributes`), where ``dagentic trace`` shows it against what the run took.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import EvaluationError
from .history import History, percentile

if TYPE_CHECKING:
    from rich.console import Console

    from .graph import CompiledPlan, CompiledStep
    from .settings import Settings
    from .tools import Tool

__all__ = [
    "DEFAULT_ITEMS",
    "DEFAULT_LATENCY",
    "DEFAULT_MODEL_CALL",
    "Estimate",
    "Latency",
    "PlanEstimator",
    "StepEstimate",
    "estimate_plan",
    "render_estimate",
    "run_attributes",
    "tool_latency",
]

DEFAULT_LATENCY = 1.0  # seconds of a call of a tool neither past runs nor its author timed
P90_OF_DECLARED = 2.0  # a declared typical latency's p90, as a multiple of it
DEFAULT_ITEMS = 3  # items of a foreach whose list only the run will know
# Per purpose: input tokens, output tokens and seconds of a model call no past run timed.
DEFAULT_MODEL_CALL: dict[str, tuple[int, int, float]] = {
    "judge": (600, 60, 2.0),
    "answer": (1500, 200, 6.0),
    "verify": (500, 60, 2.0),
}
_OTHER_CALL = (800, 100, 3.0)
ATTRIBUTE = "dagentic.estimate."  # the prefix of the estimate's attributes on a run's span


@dataclass(frozen=True, slots=True)
class Latency:
    """Seconds one call takes, p50 and p90, and where that was learned: ``history``
    (``samples`` past calls), ``declared`` (the tool's ``typical_latency``) or
    ``default``."""

    p50: float
    p90: float
    source: str
    samples: int = 0


@dataclass(slots=True)
class StepEstimate:
    """What one step is expected to take."""

    step_id: str
    tool: str | None  # None: a check
    runs: str  # "yes", "skipped" (its when is false on the inputs), "maybe" (when reads results)
    calls: int  # tool calls (a foreach step's items)
    items: int | None  # a foreach step's items (None: not a foreach)
    items_from: str | None  # plan, inputs, history or default
    parallel: int | None  # a foreach step's items at once
    latency: Latency | None  # of one call (a criteria check: of its judge's model call)
    p50: float
    p90: float
    model_calls: int = 0


@dataclass(slots=True)
class Estimate:
    """What a plan run (and, for an agent, the answer after it) is expected to take."""

    plan: str
    steps: list[StepEstimate]
    wall_p50: float  # the plan run alone
    wall_p90: float
    critical_path: list[str]  # by p50
    critical_path_p90: list[str]
    tool_calls: int
    model_calls: int
    input_tokens: int
    output_tokens: int
    cost: float
    model: str | None  # the main model (a purpose's own, in ``models``, prices its calls)
    after: list[str] = field(default_factory=list)  # model calls after the run (answer, verify)
    after_p50: float = 0.0
    after_p90: float = 0.0
    history_runs: int = 0

    @property
    def total_p50(self) -> float:
        return self.wall_p50 + self.after_p50

    @property
    def total_p90(self) -> float:
        return self.wall_p90 + self.after_p90

    def attributes(self) -> dict[str, Any]:
        """The estimate as attributes of the run's span (``dagentic trace`` reads them)."""
        return {
            ATTRIBUTE + "wall_p50": round(self.wall_p50, 6),
            ATTRIBUTE + "wall_p90": round(self.wall_p90, 6),
            ATTRIBUTE + "critical_path": list(self.critical_path),
            ATTRIBUTE + "tool_calls": self.tool_calls,
            ATTRIBUTE + "model_calls": self.model_calls,
            ATTRIBUTE + "tokens": self.input_tokens + self.output_tokens,
            ATTRIBUTE + "cost": round(self.cost, 6),
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_p50"], data["total_p90"] = self.total_p50, self.total_p90
        return data


def tool_latency(name: str, tool: Tool | None, history: History, *, first: bool = False) -> Latency:
    """One call of tool ``name`` (``first``: a run's first call of it): past calls' p50
    and p90, else its declared typical latency, else the default."""
    warm, cold = history.calls.get(name) or [], history.first_calls.get(name) or []
    past = (cold or warm) if first else (warm or cold)
    if past:
        return Latency(percentile(past, 0.5), percentile(past, 0.9), "history", len(past))
    declared = tool.typical_latency if tool is not None else None
    if declared is not None:
        return Latency(declared, declared * P90_OF_DECLARED, "declared")
    return Latency(DEFAULT_LATENCY, DEFAULT_LATENCY * P90_OF_DECLARED, "default")


def _model_call(purpose: str, history: History) -> tuple[int, int, Latency]:
    """Tokens in and out, and the latency, of a model call for ``purpose``."""
    default = DEFAULT_MODEL_CALL.get(purpose, _OTHER_CALL)
    past = history.model_calls.get(purpose) or []
    tokens_in = round(statistics.median(u.input_tokens for u in past)) if past else default[0]
    tokens_out = round(statistics.median(u.output_tokens for u in past)) if past else default[1]
    timed = [u.seconds for u in past if u.seconds is not None]
    if timed:
        return (
            tokens_in,
            tokens_out,
            Latency(percentile(timed, 0.5), percentile(timed, 0.9), "history", len(timed)),
        )
    return tokens_in, tokens_out, Latency(default[2], default[2] * P90_OF_DECLARED, "default")


def estimate_plan(
    compiled: CompiledPlan,
    inputs: Mapping[str, Any],
    *,
    settings: Settings,
    history: History | None = None,
    model: str | None = None,
    models: Mapping[str, str] | None = None,
    after: Sequence[str] = (),
) -> Estimate:
    """The estimate of running ``compiled`` with ``inputs`` (resolved: defaults filled
    in). Model calls are priced (``model.prices``) by the name of the model of their
    purpose in ``models`` (``judge``, ``answer``, ``verify``), else ``model``; ``after``
    names the purposes of model calls made after the run, one after the other (an
    agent's ``answer`` and ``verify``)."""
    history = history or History()
    scope = {"inputs": dict(inputs), "steps": {}}
    steps: dict[str, StepEstimate] = {}
    uses: list[tuple[str, int, int]] = []  # purpose, input and output tokens of each call
    called: set[str] = set()  # tools a step before this one calls
    for step_id in compiled.order:
        spec = compiled.steps[step_id]
        runs = _runs(spec, scope, steps)
        if spec.subplan is not None:
            estimate = _subplan_step(compiled.name, spec, runs, scope, settings, history, uses)
        elif spec.tool is None:
            estimate = _check(spec, runs, history, uses)
        else:
            first = spec.step.tool not in called
            estimate = _tool_step(compiled.name, spec, runs, scope, settings, history, first)
            if runs != "skipped":
                called.add(spec.step.tool or "")
        if runs == "maybe" and not _likely(history.ran.get((compiled.name, step_id))):
            estimate.p50 = 0.0  # past runs mostly skipped it: the p90 keeps it
        steps[step_id] = estimate
    p50, path50 = _critical_path(compiled, {s: e.p50 for s, e in steps.items()})
    p90, path90 = _critical_path(compiled, {s: e.p90 for s, e in steps.items()})
    if history.overheads:
        p50 += percentile(history.overheads, 0.5)
        p90 += percentile(history.overheads, 0.9)
    after_p50 = after_p90 = 0.0
    for purpose in after:
        tokens_in, tokens_out, latency = _model_call(purpose, history)
        uses.append((purpose, tokens_in, tokens_out))
        after_p50 += latency.p50
        after_p90 += latency.p90
    model_calls = sum(s.model_calls for s in steps.values()) + len(after)
    cost = 0.0
    for purpose, tokens_in, tokens_out in uses:
        price = settings.model.prices.get((models or {}).get(purpose) or model or "")
        if price is not None:
            cost += (tokens_in * price.input + tokens_out * price.output) / 1e6
    return Estimate(
        plan=compiled.name,
        steps=list(steps.values()),
        wall_p50=p50,
        wall_p90=p90,
        critical_path=path50,
        critical_path_p90=path90,
        tool_calls=sum(s.calls for s in steps.values()),
        model_calls=model_calls,
        input_tokens=sum(u[1] for u in uses),
        output_tokens=sum(u[2] for u in uses),
        cost=cost,
        model=model,
        after=list(after),
        after_p50=after_p50,
        after_p90=after_p90,
        history_runs=history.runs,
    )


def _likely(ran: list[bool] | None) -> bool:
    """Whether a step whose ``when`` reads results runs: unknown (no past run), or it ran
    in at least half of them."""
    return not ran or sum(ran) * 2 >= len(ran)


def _runs(spec: CompiledStep, scope: dict[str, Any], steps: Mapping[str, StepEstimate]) -> str:
    """Whether the step runs: ``skipped`` when its ``when`` is false on the inputs or a
    step it needs is skipped (unless it runs anyway), ``maybe`` when its ``when`` reads
    what only the run will know."""
    if not spec.step.run_if_skipped and any(
        steps[d].runs == "skipped" for d in spec.deps if d in steps
    ):
        return "skipped"
    when = spec.when
    if when is None or when is True:
        return "yes"
    if when is False:
        return "skipped"
    try:
        return "yes" if when.evaluate(scope) else "skipped"
    except EvaluationError:
        return "maybe"


def _check(
    spec: CompiledStep, runs: str, history: History, uses: list[tuple[str, int, int]]
) -> StepEstimate:
    check = spec.step.check
    judged = check is not None and check.criteria is not None and runs != "skipped"
    latency = None
    if judged:
        tokens_in, tokens_out, latency = _model_call("judge", history)
        uses.append(("judge", tokens_in, tokens_out))
    return StepEstimate(
        step_id=spec.id,
        tool=None,
        runs=runs,
        calls=0,
        items=None,
        items_from=None,
        parallel=None,
        latency=latency,
        p50=latency.p50 if latency else 0.0,
        p90=latency.p90 if latency else 0.0,
        model_calls=int(judged),
    )


def _subplan_step(
    plan: str,
    spec: CompiledStep,
    runs: str,
    scope: dict[str, Any],
    settings: Settings,
    history: History,
    uses: list[tuple[str, int, int]],
) -> StepEstimate:
    """A sub-plan step: its plan's own estimate (its inputs' defaults, and the literal
    inputs the step gives), once per ``foreach`` wave."""
    from .expressions import contains_expression

    sub = spec.subplan
    assert sub is not None
    given = {
        key: value
        for key, value in spec.step.inputs.items()
        if not (isinstance(value, str) and contains_expression(value))
    }
    inputs = {
        name: given.get(name, decl.default) for name, decl in sub.compiled.plan.inputs.items()
    }
    inner = estimate_plan(sub.compiled, inputs, settings=settings, history=history)
    items = items_from = parallel = None
    waves = 1
    if spec.foreach is not None:
        items, items_from = _items(plan, spec, scope, history)
        parallel = spec.step.max_parallel or settings.foreach_concurrency
        waves = math.ceil(items / parallel)
    if runs == "skipped":
        waves = 0
    times = 0 if runs == "skipped" else (items if items is not None else 1)
    if inner.model_calls and times:
        uses.extend([("judge", inner.input_tokens, inner.output_tokens)] * times)
    return StepEstimate(
        step_id=spec.id,
        tool=sub.tool.name,
        runs=runs,
        calls=inner.tool_calls * times,
        items=items,
        items_from=items_from,
        parallel=parallel,
        latency=Latency(inner.wall_p50, inner.wall_p90, "plan"),
        p50=waves * inner.wall_p50,
        p90=waves * inner.wall_p90,
        model_calls=inner.model_calls * times,
    )


def _tool_step(
    plan: str,
    spec: CompiledStep,
    runs: str,
    scope: dict[str, Any],
    settings: Settings,
    history: History,
    first: bool,
) -> StepEstimate:
    name = spec.step.tool or ""
    latency = tool_latency(name, spec.tool, history, first=first)
    later = tool_latency(name, spec.tool, history) if first else latency
    items = items_from = parallel = None
    waves = 1
    if spec.foreach is not None:
        items, items_from = _items(plan, spec, scope, history)
        parallel = spec.step.max_parallel or settings.foreach_concurrency
        limit = settings.tool_concurrency.get(name) or (
            spec.tool.max_concurrency if spec.tool is not None else None
        )
        if limit is not None:
            parallel = min(parallel, limit)
        waves = math.ceil(items / parallel)
    if runs == "skipped":
        waves = 0
    return StepEstimate(
        step_id=spec.id,
        tool=name,
        runs=runs,
        calls=0 if runs == "skipped" else (items if items is not None else 1),
        items=items,
        items_from=items_from,
        parallel=parallel,
        latency=latency,
        # the first wave pays for what the tool starts, when it is the run's first call
        p50=min(waves, 1) * latency.p50 + max(waves - 1, 0) * later.p50,
        p90=min(waves, 1) * latency.p90 + max(waves - 1, 0) * later.p90,
    )


def _items(
    plan: str, spec: CompiledStep, scope: dict[str, Any], history: History
) -> tuple[int, str]:
    """How many items a foreach step has, and where that was learned."""
    foreach = spec.foreach
    if isinstance(foreach, list):
        return len(foreach), "plan"
    if foreach is not None:
        try:
            value = foreach.evaluate(scope)
        except EvaluationError:
            value = None  # it reads step results: only the run knows them
        if isinstance(value, list | tuple):
            return len(value), "inputs"
    past = history.items.get((plan, spec.id))
    if past:
        return round(statistics.median(past)), "history"
    return DEFAULT_ITEMS, "default"


def _critical_path(compiled: CompiledPlan, seconds: Mapping[str, float]) -> tuple[float, list[str]]:
    """The longest path through the plan's DAG, a step weighing what it takes: its
    length and its steps."""
    import networkx as nx

    start, end = 0, 1  # not step ids, which are text
    graph = nx.DiGraph()
    for step_id in compiled.order:
        graph.add_edge(start, step_id, weight=0.0)
        for dep in compiled.steps[step_id].deps:
            graph.add_edge(dep, step_id, weight=seconds[dep])
        graph.add_edge(step_id, end, weight=seconds[step_id])
    path = nx.dag_longest_path(graph, weight="weight")
    length = sum(seconds[s] for s in path if s not in (start, end))
    return float(length), [s for s in path if s not in (start, end) and seconds[s] > 0]


def _history(settings: Settings) -> History:
    """The journal's history; none when the journal cannot be read (an estimate is never
    worth failing a run for)."""
    from .errors import JournalError
    from .history import read_history

    try:
        return read_history(settings)
    except JournalError:
        return History()


def _resolved(compiled: CompiledPlan, given: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs a run of ``compiled`` will see (what is not given has its default); none
    when they are wrong, which the run itself will say."""
    from .errors import PlanError
    from .executor import resolve_inputs

    try:
        return resolve_inputs(compiled.plan, given)
    except PlanError:
        return {}


def run_attributes(
    compiled: CompiledPlan, inputs: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    """The estimate of a run of ``compiled`` with ``inputs`` (as given) about to start, as
    its span's attributes."""
    return estimate_plan(
        compiled, _resolved(compiled, inputs), settings=settings, history=_history(settings)
    ).attributes()


class PlanEstimator:
    """Estimates each plan an agent is about to run (``Agent(on_run=...)``), with the
    answer and verification that follow: shown on ``console`` if given, and returned as
    the attributes of the run's span. The history is read once, when it is made."""

    def __init__(self, settings: Settings, model: Any, console: Console | None = None) -> None:
        """``model``: the agent's model, its :class:`~dagentic.models.gateway.Models`, or
        a model name."""
        self.settings = settings
        main = getattr(model, "main", model)
        self.model: str | None = main if isinstance(main, str) else getattr(main, "name", None)
        self.models: dict[str, str] = {}
        if hasattr(model, "for_purpose"):  # a model per purpose
            self.models = {p: model.for_purpose(p).name for p in ("judge", "answer", "verify")}
        self.console = console
        self.history = _history(settings)

    def __call__(self, compiled: CompiledPlan) -> dict[str, Any]:
        estimate = estimate_plan(
            compiled,
            _resolved(compiled, {}),
            settings=self.settings,
            history=self.history,
            model=self.model,
            models=self.models,
            after=("answer", "verify"),
        )
        if self.console is not None:
            render_estimate(estimate, self.console, steps=False)
        return estimate.attributes()


# -- showing it -----------------------------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.2f}s" if seconds < 100 else f"{seconds:.0f}s"


def render_estimate(estimate: Estimate, console: Console, *, steps: bool = True) -> None:
    """The estimate as a few lines, and its steps as a table. Step ids and tool names
    come from plans and plugins: shown as text, never as markup."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from .display import safe_text

    def line(text: str) -> str:
        return safe_text(text, one_line=True, limit=400)

    learned = (
        f"learned from {estimate.history_runs} past runs"
        if estimate.history_runs
        else "no past runs yet: tools' typical latencies"
    )
    console.print(
        Text.assemble(
            ("estimate", "bold"),
            line(
                f" of plan '{estimate.plan}' ({learned}): wall time p50 "
                f"{_s(estimate.wall_p50)}, p90 {_s(estimate.wall_p90)}"
            ),
        )
    )
    if estimate.critical_path:
        console.print(Text(line("  critical path: " + " → ".join(estimate.critical_path))))
    if estimate.after:
        console.print(
            Text(
                line(
                    f"  then {', '.join(estimate.after)}: p50 {_s(estimate.after_p50)}, "
                    f"p90 {_s(estimate.after_p90)}; in all p50 {_s(estimate.total_p50)}, "
                    f"p90 {_s(estimate.total_p90)}"
                )
            )
        )
    priced = "" if estimate.cost or not estimate.model_calls else " (no price in model.prices)"
    console.print(
        Text(
            line(
                f"  {_n(estimate.tool_calls, 'tool call')}, "
                f"{_n(estimate.model_calls, 'model call')}, "
                f"{estimate.input_tokens} input + {estimate.output_tokens} output tokens, "
                f"${estimate.cost:.4f}{priced}"
            )
        )
    )
    if not steps:
        return
    table = Table(box=box.SIMPLE, pad_edge=False, show_edge=False)
    for column in ("step", "tool", "calls", "p50", "p90", "latency from"):
        table.add_column(column, justify="right" if column in ("p50", "p90") else "left")
    for step in estimate.steps:
        calls = str(step.calls)
        if step.items is not None:
            calls = f"{step.items} items ({step.items_from}), {step.parallel} at once"
        if step.runs != "yes":
            calls += f", {step.runs if step.runs == 'skipped' else 'if its when holds'}"
        latency = step.latency
        source = ""
        if latency is not None:
            source = latency.source + (f" ({latency.samples} calls)" if latency.samples else "")
        table.add_row(
            Text(line(step.step_id)),
            Text(line(step.tool or "check"), style="dim"),
            Text(line(calls)),
            _s(step.p50),
            _s(step.p90),
            Text(line(source), style="dim"),
        )
    console.print(table)
