"""Estimates before a run: the arithmetic of the critical path with latencies given (never
measured here), the history read back from a real journal, and the commands that show
them (`dagentic estimate`, `dagentic trace`, an agent's plans)."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from dagentic import (
    Agent,
    Executor,
    ScriptedModel,
    ToolDefinitionError,
    ToolRegistry,
    compile_plan,
    tool,
)
from dagentic.estimate import PlanEstimator, estimate_plan
from dagentic.history import History, ModelUse, read_history
from rich.console import Console

from tests.blind import blind_settings
from tests.cli import invoke, isolate
from tests.tools import TEST_TOOLS

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "plans" / "hello.yaml"


@tool(name="est.slow", side_effects="none")
async def slow() -> None:
    """A tool past runs timed."""


@tool(name="est.fast", side_effects="none", typical_latency=0.2)
async def fast(value: int = 0) -> int:
    """A tool whose author says how long it takes.

    Args:
        value: Anything.
    """
    return value


@tool(name="est.plain", side_effects="none")
async def plain() -> None:
    """A tool nobody timed."""


TOOLS = ToolRegistry([slow, fast, plain])
PAST = History(
    calls={"est.slow": [1.0, 2.0, 3.0, 4.0, 10.0]},  # p50 3 (nearest rank), p90 10
    first_calls={"est.slow": [5.0]},  # what a run's first call of it took
    runs=5,
)


def compiled(text: str, tools: ToolRegistry = TOOLS, *, judge: bool = False):
    return compile_plan(textwrap.dedent(text), tools, judge=judge)


def test_the_wall_time_is_the_critical_path_of_the_steps_latencies() -> None:
    plan = compiled("""\
        name: shape
        steps:
          - {id: a, tool: est.slow}
          - {id: b, tool: est.slow, needs: [a]}
          - {id: c, tool: est.fast}
          - {id: d, tool: est.plain, needs: [c]}
          - {id: e, tool: est.fast, foreach: [1, 2, 3, 4, 5], max_parallel: 2,
             args: {value: "${{ item }}"}, needs: [d]}
          - {id: done, check: {assert: "${{ true }}"}, needs: [b, e]}
        """)

    found = estimate_plan(plan, {}, settings=blind_settings(), history=PAST)

    by_id = {s.step_id: s for s in found.steps}
    # a is the run's first call of est.slow, b a later one; c and e are declared (p90
    # twice the typical latency), d has the default; e runs 5 items 2 at a time: 3 waves.
    assert [(by_id[s].p50, by_id[s].p90) for s in "abcde"] == [
        (5.0, 5.0),
        (3.0, 10.0),
        (0.2, 0.4),
        (1.0, 2.0),
        (pytest.approx(0.6), pytest.approx(1.2)),
    ]
    assert [by_id[s].latency.source for s in "abcde"] == [  # type: ignore[union-attr]
        "history",
        "history",
        "declared",
        "default",
        "declared",
    ]
    assert (by_id["e"].items, by_id["e"].items_from, by_id["e"].parallel, by_id["e"].calls) == (
        5,
        "plan",
        2,
        5,
    )
    assert (found.wall_p50, found.critical_path) == (8.0, ["a", "b"])
    assert (found.wall_p90, found.critical_path_p90) == (15.0, ["a", "b"])
    assert (found.tool_calls, found.model_calls, found.cost) == (9, 0, 0.0)
    attributes = found.attributes()
    assert attributes["dagentic.estimate.wall_p50"] == 8.0
    assert attributes["dagentic.estimate.critical_path"] == ["a", "b"]


def test_items_and_whens_come_from_the_inputs_then_past_runs_then_a_default() -> None:
    plan = compiled("""\
        name: fan
        inputs:
          names: {type: array, default: [x, y, z, w]}
          loud: {type: boolean, default: false}
        steps:
          - {id: seed, tool: est.fast}
          - {id: by_input, tool: est.fast, foreach: "${{ inputs.names }}", max_parallel: 3}
          - {id: by_past, tool: est.fast, foreach: "${{ steps.seed.output }}"}
          - {id: unknown, tool: est.plain, foreach: "${{ steps.seed.output }}"}
          - {id: shout, tool: est.slow, when: "${{ inputs.loud }}"}
          - {id: after_shout, tool: est.slow, needs: [shout]}
          - {id: maybe, tool: est.plain, when: "${{ steps.seed.output > 1 }}"}
        """)
    past = History(items={("fan", "by_past"): [7, 9, 8]}, ran={("fan", "maybe"): [False, False]})

    found = estimate_plan(
        plan,
        {"names": ["x", "y", "z", "w"], "loud": False},
        settings=blind_settings(),
        history=past,
    )

    by_id = {s.step_id: s for s in found.steps}
    assert [(by_id[s].items, by_id[s].items_from) for s in ("by_input", "by_past", "unknown")] == [
        (4, "inputs"),
        (8, "history"),
        (3, "default"),
    ]
    assert by_id["by_input"].p50 == pytest.approx(0.4)  # 2 waves of 3
    # Skipped on the inputs, and so is what needs it; `maybe` reads a result, and past
    # runs skipped it: the p90 counts it, the p50 does not.
    assert [by_id[s].runs for s in ("shout", "after_shout", "maybe")] == [
        "skipped",
        "skipped",
        "maybe",
    ]
    assert (by_id["shout"].calls, by_id["shout"].p50, by_id["after_shout"].p90) == (0, 0.0, 0.0)
    assert (by_id["maybe"].p50, by_id["maybe"].p90) == (0.0, 2.0)
    # seed (declared 0.2) then unknown (3 items at once: one call of the default 1.0)
    assert (found.wall_p50, found.critical_path) == (pytest.approx(1.2), ["seed", "unknown"])
    assert found.wall_p90 == pytest.approx(2.4)


def test_model_calls_are_counted_and_priced_with_past_tokens() -> None:
    plan = compiled(
        """\
        name: judged
        steps:
          - {id: a, tool: est.fast}
          - {id: good, check: {criteria: "the value is a number"}, needs: [a]}
        """,
        judge=True,
    )
    past = History(
        model_calls={
            "judge": [ModelUse(100, 10, 1.0), ModelUse(300, 30, 3.0), ModelUse(200, 20, 2.0)],
            "answer": [ModelUse(1000, 100)],  # an old journal: no seconds kept
        }
    )
    settings = blind_settings(model={"prices": {"m": {"input": 2.0, "output": 10.0}}})

    found = estimate_plan(
        plan, {}, settings=settings, history=past, model="m", after=("answer", "verify")
    )

    # judge: the median of past calls; answer: past tokens, the default seconds (6);
    # verify: no past call, the defaults (500 in, 60 out, 2 s).
    assert (found.model_calls, found.input_tokens, found.output_tokens) == (3, 1700, 180)
    assert found.cost == pytest.approx((1700 * 2.0 + 180 * 10.0) / 1e6)
    assert (found.wall_p50, found.critical_path) == (2.2, ["a", "good"])
    assert (found.after_p50, found.total_p50) == (8.0, 10.2)
    assert found.after_p90 == 16.0


def test_each_purposes_calls_are_priced_as_the_model_that_makes_them() -> None:
    from dagentic.models.gateway import Models

    plan = compiled(
        """\
        name: judged
        steps:
          - {id: good, check: {criteria: "it is fine"}}
        """,
        judge=True,
    )
    settings = blind_settings(
        model={"prices": {"big": {"input": 10.0, "output": 10.0}, "small": {"input": 1.0}}}
    )
    models = Models(ScriptedModel([], name="big"), {"judge": ScriptedModel([], name="small")})

    estimator = PlanEstimator(settings, models)

    assert (estimator.model, estimator.models) == (
        "big",
        {"judge": "small", "answer": "big", "verify": "small"},
    )
    found = estimate_plan(
        plan,
        {},
        settings=settings,
        model=estimator.model,
        models=estimator.models,
        after=("answer", "verify"),
    )
    # judge and verify (600 + 500 in) on the small model, the answer (1500 + 200) on the big
    assert found.cost == pytest.approx((1100 * 1.0 + 1700 * 10.0) / 1e6)


def test_a_typical_latency_must_be_a_positive_number_of_seconds() -> None:
    with pytest.raises(ToolDefinitionError) as caught:
        tool(name="est.bad", typical_latency=0)(plain.fn)
    assert caught.value.message == (
        "tool 'est.bad' is not a valid tool:\n"
        "  - typical_latency must be a positive number of seconds, not 0"
    )
    assert (fast.typical_latency, plain.typical_latency) == (0.2, None)


@pytest.mark.anyio
async def test_the_history_is_read_back_from_the_journal(tmp_path: Path) -> None:
    settings = blind_settings(runs_dir=tmp_path, tracing={"exporter": "none"})
    registry = ToolRegistry(TEST_TOOLS)
    plan = compiled(
        """\
        name: timed
        inputs:
          quiet: {type: boolean, default: true}
        steps:
          - {id: one, tool: test.echo, args: {value: [1, 2, 3]}}
          - {id: many, tool: test.echo, foreach: "${{ steps.one.output }}",
             args: {value: "${{ item }}"}}
          - {id: loud, tool: test.echo, when: "${{ not inputs.quiet }}"}
        """,
        registry,
    )
    assert read_history(settings) == History()  # no journal yet: none is made

    for _ in range(2):
        result = await Executor(registry, settings=settings).run(plan)
        assert result.succeeded, result.error

    history = read_history(settings)
    assert history.runs == 2
    assert len(history.first_calls["test.echo"]) == 2  # one per run
    assert len(history.calls["test.echo"]) == 6  # the items
    assert history.items == {("timed", "many"): [3, 3]}
    assert history.ran == {("timed", "loud"): [False, False]}
    assert len(history.overheads) == 2 and min(history.overheads) >= 0  # per run
    found = estimate_plan(plan, {"quiet": True}, settings=settings, history=history)
    one, many = (next(s for s in found.steps if s.step_id == i) for i in ("one", "many"))
    overhead = sorted(history.overheads)[0]  # the p50 (nearest rank) of two
    assert found.wall_p50 == pytest.approx(one.p50 + many.p50 + overhead)
    assert [s.latency.source for s in found.steps] == ["history", "history", "history"]  # type: ignore[union-attr]
    assert (many.items, many.items_from) == (3, "history")


@pytest.mark.anyio
async def test_an_agent_shows_each_plans_estimate_and_keeps_it_on_the_runs_span(
    tmp_path: Path,
) -> None:
    from dagentic.spans import FastTracerProvider
    from dagentic.tracing import Tracing
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    tracing = Tracing(provider)
    settings = blind_settings(runs_dir=tmp_path, memory={"enabled": False})
    model = ScriptedModel(
        [
            {"steps": [{"id": "a", "tool": "est.fast", "args": {"value": 4}}]},
            {"answer": "4 [a]", "cited_steps": ["a"], "complete": True},
            {"passed": True, "reason": "yes"},
        ]
    )
    shown = io.StringIO()
    estimator = PlanEstimator(settings, "scripted", Console(file=shown, width=300))
    agent = Agent(model, TOOLS, settings=settings, journal=None, tracing=tracing, on_run=estimator)

    result = await agent.run("What is it?")

    assert result.succeeded, result.error
    assert shown.getvalue().splitlines()[:4] == [
        "estimate of plan 'what-is-it' (no past runs yet: tools' typical latencies): wall "
        "time p50 200ms, p90 400ms",
        "  critical path: a",
        "  then answer, verify: p50 8.00s, p90 16.00s; in all p50 8.20s, p90 16.40s",
        "  1 tool call, 2 model calls, 2000 input + 260 output tokens, $0.0000 (no price "
        "in model.prices)",
    ]
    tracing.flush()
    runs = [s for s in exporter.get_finished_spans() if s.name.startswith("run ")]
    provider.shutdown()
    assert runs[0].attributes is not None
    assert runs[0].attributes["dagentic.estimate.wall_p50"] == 0.2


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def test_the_estimate_command_prints_the_estimate(isolated: None) -> None:
    done = invoke("estimate", HELLO, "-i", 'names=["Ada", "Linus"]')

    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "estimate of plan 'hello' (no past runs yet: tools' typical latencies): wall time "
        "p50 2ms, p90 4ms",
        "  critical path: greet → count",
        "  3 tool calls, 0 model calls, 0 input + 0 output tokens, $0.0000",
    ]
    assert [line.split()[:3] for line in lines[5:]] == [
        ["greet", "notify.log", "2"],
        ["warn_if_none", "notify.log", "0,"],
        ["count", "notify.log", "1"],
        ["verify", "check", "0"],
    ]
    as_json = json.loads(invoke("estimate", HELLO, "--json").stdout)
    assert (as_json["wall_p50"], as_json["tool_calls"]) == (0.002, 4)


def test_the_estimate_command_names_a_bad_input_and_escapes_the_plans_names(
    isolated: None, tmp_path: Path
) -> None:
    done = invoke("estimate", HELLO, "-i", "nope=1")
    assert done.exit_code == 2
    assert done.stderr.splitlines() == [
        "unknown input 'nope' (plan 'hello' declares: names, shout)",
        "1 problem; nothing was run",
    ]
    plan = tmp_path / "evil.yaml"
    plan.write_text(
        'name: "evil\\e[2J"\nsteps:\n  - {id: a, tool: notify.log, args: {message: hi}}\n',
        encoding="utf-8",
    )
    shown = invoke("estimate", plan)
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.stdout
    assert shown.stdout.startswith("estimate of plan 'evil\\x1b[2J' (")


def test_the_trace_of_a_run_shows_its_estimate_against_what_it_took(isolated: None) -> None:
    done = invoke("run", HELLO, "--json")
    assert done.exit_code == 0, done.output
    run_id = json.loads(done.stdout)["run_id"]

    analysis = json.loads(invoke("trace", run_id, "--json").stdout)
    (estimate,) = analysis["estimates"]
    assert (estimate["wall_p50"], estimate["wall_p90"], estimate["tool_calls"]) == (
        0.002,
        0.004,
        4,
    )
    assert estimate["actual"] == analysis["root"]["wall_time"]
    shown = invoke("trace", run_id).stdout.splitlines()
    line = next(line for line in shown if line.startswith("estimate:"))
    assert line.startswith("estimate: p50 2ms, p90 4ms; the run took ")


def test_ask_show_plan_prints_the_estimate_and_the_trace_keeps_it(
    isolated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.cli
    import dagentic.models

    model = ScriptedModel(
        [
            {"steps": [{"id": "a", "tool": "est.fast", "args": {"value": 4}}]},
            {"answer": "4 [a]", "cited_steps": ["a"], "complete": True},
            {"passed": True, "reason": "yes"},
        ]
    )
    monkeypatch.setattr(dagentic.models, "make_model", lambda *_: model)
    monkeypatch.setattr(dagentic.cli, "_tools", lambda: TOOLS)

    done = invoke("ask", "What is it?", "--no-memory", "--show-plan", "--yes")

    assert done.exit_code == 0, done.output
    assert (
        "estimate of plan 'what-is-it' (no past runs yet: tools' typical latencies): wall "
        "time p50 200ms, p90 400ms"
    ) in done.stdout.splitlines()
    agent_run_id = done.stderr.splitlines()[-1].removeprefix("trace: dagentic trace ")
    analysis = json.loads(invoke("trace", agent_run_id, "--json").stdout)
    (estimate,) = analysis["estimates"]
    assert (estimate["wall_p50"], estimate["model_calls"], estimate["run"]) == (
        0.2,
        2,
        "run what-is-it v1",
    )
