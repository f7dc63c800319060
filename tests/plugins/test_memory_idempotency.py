"""``memory.remember`` and idempotency keys: a call stores its
:attr:`~dagentic.ToolContext.idempotency_key` with its write, in the same transaction, and
a call with a key stored before writes nothing and answers what the first one did, in this
process and in a new one; a call without a key (direct use) writes as it always did.

Embeddings come from the deterministic test embedder (tests/embedders.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest
from dagentic import Executor, RunStatus, Settings, ToolContext, load_tools
from dagentic.memory import Decision, LongTermMemory, MemoryStore, Recalled, open_memory
from dagentic.memory import store as memory_store
from dagentic.plugins import memory as memory_plugin

from tests.blind import blind_settings
from tests.embedders import HashEmbedder

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
FACT = "The Orion release ships on Friday"
OTHER = "Lima codename birch"


def release(path: Path) -> None:
    """Close this process's connection to a memory file (as the process's end would)."""
    key = str(Path(path).expanduser().resolve())
    for name, memory in list(memory_plugin._OPEN.items()):
        if str(memory.store.path) == key:
            del memory_plugin._OPEN[name]
    memory_store._VECTORS.pop(key, None)
    entry = memory_store._OPEN.pop(key, None)
    if entry is not None:
        entry[0].close()


@pytest.fixture
def memory_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "m.duckdb"
    yield path
    release(path)


@pytest.fixture
def settings(memory_path: Path) -> Settings:
    return blind_settings(memory={"path": memory_path})


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """plugins.memory opens memories with the test embedder instead of MiniLM."""
    real = open_memory

    def opening(settings: Any, model: Any = None) -> LongTermMemory:
        return real(settings, model, embedder=HashEmbedder())

    monkeypatch.setattr(memory_plugin, "open_memory", opening)


def context(settings: Settings, key: str, step: str = "save") -> ToolContext:
    return ToolContext("run-1", step, 1, settings, idempotency_key=key)


async def remember(settings: Settings, text: str, key: str, **args: Any) -> dict[str, Any]:
    return await memory_plugin.remember.fn(text=text, context=context(settings, key), **args)


def counts(path: Path) -> tuple[int, int]:
    """Items and stored keys in the file (this process's connection closed first)."""
    release(path)
    with duckdb.connect(str(path), read_only=True) as con:
        items = con.execute("SELECT count(*) FROM items").fetchone()
        keys = con.execute("SELECT count(*) FROM idempotency_keys").fetchone()
    assert items is not None and keys is not None
    return items[0], keys[0]


def test_memory_remember_declares_that_it_uses_the_key() -> None:
    remember_tool = next(t for t in load_tools() if t.name == "memory.remember")
    assert (remember_tool.side_effects, remember_tool.idempotent) == ("write", False)
    assert remember_tool.uses_idempotency_key
    assert "context" not in remember_tool.args_schema()["properties"]


async def test_the_same_key_twice_writes_once_and_answers_the_same(
    settings: Settings, memory_path: Path
) -> None:
    first = await remember(settings, FACT, "run-1/save")
    again = await remember(settings, FACT, "run-1/save")
    # what a resumed call asks may differ (an upstream output changed): still no write
    changed = await remember(settings, OTHER, "run-1/save", importance=1.0)

    assert first["action"] == "insert" and first["replayed"] is False
    assert again == {**first, "replayed": True}
    assert changed == again
    assert counts(memory_path) == (1, 1)


async def test_different_keys_write_twice(settings: Settings, memory_path: Path) -> None:
    first = await remember(settings, FACT, "run-1/a")
    second = await remember(settings, OTHER, "run-1/b")

    assert (first["action"], second["action"]) == ("insert", "insert")
    assert first["item"]["id"] != second["item"]["id"]
    assert counts(memory_path) == (2, 2)


async def test_without_a_key_it_writes_as_before(settings: Settings, memory_path: Path) -> None:
    first = await remember(settings, FACT, "")
    second = await remember(settings, OTHER, "")
    known = await remember(settings, FACT, "")  # the policy, not a key, says "known"

    assert [o["action"] for o in (first, second, known)] == ["insert", "insert", "ignore"]
    assert not any(o["replayed"] for o in (first, second, known))
    assert counts(memory_path) == (2, 0)  # no key, nothing stored for one


async def test_an_ignored_fact_is_answered_the_same_on_a_repeat(
    settings: Settings, memory_path: Path
) -> None:
    stored = await remember(settings, FACT, "")
    ignored = await remember(settings, FACT, "run-1/again")
    replayed = await remember(settings, FACT, "run-1/again")

    assert ignored["action"] == "ignore" and ignored["item"]["id"] == stored["item"]["id"]
    assert replayed == {**ignored, "replayed": True}
    assert counts(memory_path) == (1, 1)


class Merging:
    """A policy that merges every candidate into its nearest neighbour."""

    async def decide(self, candidate: str, neighbours: list[Recalled]) -> Decision:
        if not neighbours:
            return Decision("insert", reason="empty")
        target = neighbours[0].item
        return Decision("merge", target, f"{target.text} {candidate}", reason="merged")


async def test_a_merge_with_a_key_rewrites_the_item_once(memory_path: Path) -> None:
    memory = LongTermMemory(MemoryStore(memory_path, HashEmbedder()), Merging())
    base = await memory.remember(FACT)

    merged = await memory.remember("It ships at noon", key="run-1/merge")
    again = await memory.remember("It ships at noon", key="run-1/merge")

    assert (merged.action, merged.replayed, again.action, again.replayed) == (
        "merge",
        False,
        "merge",
        True,
    )
    assert base.item is not None and merged.item is not None and again.item is not None
    assert again.item.id == merged.item.id == base.item.id
    assert again.to_dict()["item"] == merged.to_dict()["item"]
    item = await memory.store.get(base.item.id)
    assert item is not None
    assert (item.text, item.version) == (f"{FACT} It ships at noon", 2)  # one rewrite


async def test_concurrent_calls_with_one_key_write_once(
    settings: Settings, memory_path: Path
) -> None:
    answers: list[dict[str, Any]] = []

    async def call(n: int) -> None:
        answers.append(await remember(settings, f"{OTHER} number {n}", "run-1/many"))

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(call, n)

    assert sorted(a["replayed"] for a in answers) == [False, True, True, True, True]
    assert len({a["item"]["id"] for a in answers}) == 1
    assert counts(memory_path) == (1, 1)


SCRIPT = """
import json, sys
import anyio
from dagentic.memory import LongTermMemory, MemoryStore
from tests.embedders import HashEmbedder

async def main():
    memory = LongTermMemory(MemoryStore(sys.argv[1], HashEmbedder()))
    written = await memory.remember(sys.argv[2], key=sys.argv[3])
    print(json.dumps({**written.to_dict(), "count": await memory.store.count()}))

anyio.run(main)
"""


async def test_a_key_survives_a_new_process(settings: Settings, memory_path: Path) -> None:
    first = await remember(settings, FACT, "run-1/save")
    release(memory_path)  # as this process's end would: the other process may open it

    def other_process(text: str, key: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(memory_path), text, key],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout)

    replayed = await anyio.to_thread.run_sync(other_process, FACT, "run-1/save")
    fresh = await anyio.to_thread.run_sync(other_process, OTHER, "run-2/save")

    assert replayed.pop("count") == 1
    assert replayed == {**first, "replayed": True}
    assert (fresh.pop("count"), fresh["action"], fresh["replayed"]) == (2, "insert", False)
    assert counts(memory_path) == (2, 2)


async def test_a_file_from_before_keys_gets_the_table_when_opened(
    settings: Settings, memory_path: Path
) -> None:
    await remember(settings, FACT, "")
    release(memory_path)
    with duckdb.connect(str(memory_path)) as con:  # as a file of the release before
        con.execute("DROP TABLE idempotency_keys")

    first = await remember(settings, OTHER, "run-1/save")
    again = await remember(settings, OTHER, "run-1/save")

    assert (first["action"], again["replayed"]) == ("insert", True)
    assert counts(memory_path) == (2, 1)


async def test_a_resumed_step_through_the_executor_remembers_once(
    settings: Settings, memory_path: Path
) -> None:
    """The step runs in a plan; a resumed run calls the tool again through the executor's
    backend with the same key (as its in-flight call is run again): nothing more is written."""
    executor = Executor(load_tools(), settings=settings, tracing=None)
    result = await executor.run(
        {
            "name": "keyed",
            "steps": [{"id": "save", "tool": "memory.remember", "args": {"text": FACT}}],
        }
    )
    assert result.status is RunStatus.SUCCEEDED, result.error
    tool = executor.tools.get("memory.remember")
    key = f"{result.run_id}/save"

    again = await executor.backend.call(tool, {"text": FACT}, context(settings, key))

    assert again == {**result.steps["save"].output, "replayed": True}
    assert counts(memory_path) == (1, 1)
