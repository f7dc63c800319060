"""The model gateway (dagentic.models.gateway): a model per purpose (model.planner,
model.judge, model.answer, model.memory), fallbacks on errors, timeouts and rate limits,
what the result and the trace say about them, and the memory policy's calls going through
the run's metered path. Every model is a ScriptedModel."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagentic import BudgetExceededError, RunStatus, Settings, StepTimeoutError, ToolRegistry
from dagentic.agent import Agent, Budgets
from dagentic.memory import open_memory
from dagentic.models import ModelError, Models, ScriptedModel, make_models
from dagentic.models.base import Message
from dagentic.models.gateway import fallback_reason
from dagentic.models.metered import Metered
from dagentic.spans import FastTracerProvider
from dagentic.tracing import Tracing
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.blind import blind_settings
from tests.embedders import HashEmbedder
from tests.runtime.test_memory_agent import release

pytestmark = pytest.mark.anyio

GOAL = "What is the total?"
PLAN = {"steps": [{"id": "total", "tool": "test.echo", "args": {"value": 42}}]}
ANSWER = {"answer": "The total is 42 [total].", "cited_steps": ["total"], "complete": True}
PASS = {"passed": True, "reason": "the answer achieves the goal"}


@pytest.fixture
def tools(tools: ToolRegistry) -> ToolRegistry:
    """The test tools only: no planning-context tool runs before the plan."""
    return ToolRegistry([t for t in tools if t.name.startswith("test.")])


def rate_limited(name: str) -> ModelError:
    return ModelError(
        f"model {name}: the endpoint answered 429: slow down", retryable=True, status=429
    )


async def test_each_purpose_goes_to_its_own_model(tools: ToolRegistry, settings: Settings) -> None:
    planner = ScriptedModel([PLAN], name="big")
    judge = ScriptedModel([PASS], name="small")
    answerer = ScriptedModel([ANSWER], name="writer")
    main = ScriptedModel([], name="main")  # asked nothing: every purpose has its model
    models = Models(main, {"planner": planner, "judge": judge, "answer": answerer})

    result = await Agent(models, tools, settings=settings).run(GOAL)

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert [(c.purpose, c.model) for c in result.model_calls] == [
        ("plan", "big"),
        ("answer", "writer"),
        ("verify", "small"),
    ]
    assert (len(planner.calls), len(answerer.calls), len(judge.calls), len(main.calls)) == (
        1,
        1,
        1,
        0,
    )


async def test_a_rate_limited_call_falls_back_and_the_result_and_trace_say_why(
    tools: ToolRegistry, settings: Settings
) -> None:
    main = ScriptedModel([rate_limited("main"), ANSWER, PASS], name="main")
    spare = ScriptedModel([PLAN], name="spare")
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    tracing = Tracing(provider)
    agent = Agent(Models(main, fallbacks=[spare]), tools, settings=settings, tracing=tracing)

    result = await agent.run(GOAL)
    tracing.flush()
    provider.shutdown()

    assert result.status is RunStatus.SUCCEEDED, result.error
    failed, taken = result.model_calls[0], result.model_calls[1]
    assert (failed.purpose, failed.model) == ("plan", "main")
    assert failed.error is not None
    assert failed.error.message == "model main: the endpoint answered 429: slow down"
    assert (taken.purpose, taken.model, taken.error) == ("plan", "spare", None)
    assert (taken.fallback_from, taken.fallback_reason) == ("main", "rate_limited")
    assert [c.model for c in result.model_calls[2:]] == ["main", "main"]  # answer, verify
    assert result.usage.model_calls == 4
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert [s.name for s in chats[:2]] == ["chat main", "chat spare"]
    assert chats[0].attributes is not None and chats[1].attributes is not None
    assert chats[0].attributes["dagentic.failure_mode"] == "tool_error"
    assert chats[1].attributes["dagentic.fallback.from"] == "main"
    assert chats[1].attributes["dagentic.fallback.reason"] == "rate_limited"


async def test_the_last_models_error_is_the_calls_error() -> None:
    main = ScriptedModel([rate_limited("main")], name="main")
    spare = ScriptedModel([StepTimeoutError("model spare: no answer in time")], name="spare")
    metered = Metered(Models(main, fallbacks=[spare]))

    with pytest.raises(StepTimeoutError, match="model spare: no answer in time"):
        await metered.chat("plan", [Message("user", "hi")])

    assert [(c.model, c.fallback_reason) for c in metered.calls] == [
        ("main", None),
        ("spare", "rate_limited"),
    ]


async def test_a_spent_budget_is_not_handed_to_a_fallback() -> None:
    spare = ScriptedModel([], name="spare")
    metered = Metered(Models(ScriptedModel(["hello"]), fallbacks=[spare]), max_tokens=1)
    await metered.chat("plan", [Message("user", "hi")])

    with pytest.raises(BudgetExceededError):
        await metered.chat("plan", [Message("user", "hi again")])
    assert spare.calls == []


def test_why_a_call_falls_back() -> None:
    assert fallback_reason(rate_limited("m")) == "rate_limited"
    assert fallback_reason(StepTimeoutError("late")) == "timeout"
    assert fallback_reason(ModelError("down", retryable=True, status=503)) == "unavailable"
    assert fallback_reason(ModelError("bad request", status=400)) == "error"
    assert fallback_reason(BudgetExceededError("spent")) is None


def test_models_come_from_the_settings_each_made_once() -> None:
    settings = blind_settings(
        model={
            "provider": "openai",
            "name": "main-model",
            "base_url": "http://127.0.0.1:9/v1",
            "planner": "openai:big",
            "judge": "openai:small",
            "answer": "openai:big",
            "fallbacks": ["openai:spare", "openai:main-model"],
        }
    )

    models = make_models(settings)

    assert models.main.name == "main-model"
    assert {role: m.name for role, m in models.roles.items()} == {
        "planner": "big",
        "judge": "small",
        "answer": "big",
    }
    assert models.roles["planner"] is models.roles["answer"]
    assert models.for_purpose("repair") is models.roles["planner"]
    assert models.for_purpose("verify") is models.roles["judge"]
    assert models.for_purpose("memory") is models.main
    assert [m.name for m in models.chain("plan")] == ["big", "spare", "main-model"]
    assert [m.name for m in models.chain("memory")] == ["main-model", "spare"]


def test_a_bad_model_setting_names_the_setting() -> None:
    settings = blind_settings(model={"judge": "remote:small"})

    with pytest.raises(ModelError) as raised:
        make_models(settings)

    assert raised.value.message == (
        "model.judge = 'remote:small': model: unknown provider 'remote' in 'remote:small'; "
        "use local, local:PATH.gguf or openai:NAME"
    )


async def test_the_memory_policys_calls_are_metered_and_go_to_the_memory_model(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    settings = blind_settings(memory={"path": tmp_path / "memory.duckdb", "policy": "model"})
    raw = ScriptedModel([], name="raw")  # what `open_memory` was given: never asked
    memory = open_memory(settings, raw, embedder=HashEmbedder())
    await memory.remember("The Orion total was 41 last year.", provenance="user")
    decide = {"action": "insert", "target": None, "text": None, "reason": "a new fact"}
    keeper = ScriptedModel([decide], name="keeper")
    main = ScriptedModel([PLAN, ANSWER, PASS], name="main")
    agent = Agent(
        Models(main, {"memory": keeper}),
        tools,
        settings=settings,
        memory=memory,
        budgets=Budgets(),
    )

    result = await agent.run(GOAL)

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.remembered is not None and result.remembered["action"] == "insert"
    assert [(c.purpose, c.model) for c in result.model_calls][-1] == ("memory", "keeper")
    assert result.usage.model_calls == 4
    assert raw.calls == []
    release(tmp_path / "memory.duckdb")
