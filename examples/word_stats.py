"""A programmatic agent: tools defined in Python, a plan built from models, one call to run.

Run it: .venv/bin/python examples/word_stats.py
"""

from __future__ import annotations

import re
from collections import Counter

import anyio
from dagentic import Check, InputSpec, Plan, Step, ToolRegistry, load_tools, run_plan, tool

DOCUMENTS = [
    "The northern region grew fastest this quarter, led by strong widget sales.",
    "Widget sales in the southern region were flat; gadget sales fell.",
    "Analysts expect the northern region to keep growing as widget demand rises.",
]


@tool(name="text.word_count", side_effects="none")
def word_count(text: str, min_length: int = 4) -> dict[str, int]:
    """Count the words of a text, ignoring short ones.

    Args:
        text: The text to count.
        min_length: Shortest word that counts.
    """
    words = re.findall(r"[a-z]+", text.lower())
    return dict(Counter(w for w in words if len(w) >= min_length))


@tool(name="text.top_words", side_effects="none")
async def top_words(counts: list[dict[str, int]], n: int = 3) -> list[list]:
    """Merge word counts and return the n most common words with their counts.

    Args:
        counts: Word counts to merge.
        n: How many words to return.
    """
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return [[word, number] for word, number in total.most_common(n)]


PLAN = Plan(
    name="word-stats",
    goal="Find the most common words across the documents",
    inputs={"docs": InputSpec(type="array"), "n": InputSpec(type="integer", default=3)},
    steps=[
        Step(
            id="count",
            tool="text.word_count",
            foreach="${{ inputs.docs }}",
            args={"text": "${{ item }}"},
        ),
        Step(
            id="top",
            tool="text.top_words",
            args={"counts": "${{ steps.count.output }}", "n": "${{ inputs.n }}"},
        ),
        Step(
            id="announce",
            tool="notify.log",
            args={"message": "most common: ${{ steps.top.output[0][0] }}"},
        ),
        Step(id="verify", check=Check(assert_="${{ len(steps.top.output) == inputs.n }}")),
    ],
    outputs={"top": "${{ steps.top.output }}"},
)


async def main() -> None:
    tools = ToolRegistry([*load_tools(), word_count, top_words])
    result = await run_plan(PLAN, {"docs": DOCUMENTS}, tools=tools)
    print(f"{result.status.value}: {result.outputs['top']}")
    if not result.succeeded:
        raise SystemExit(1)


if __name__ == "__main__":
    anyio.run(main)
