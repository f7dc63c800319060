"""Tool-selection benchmark: with 200 synthetic tools installed besides the built-in ones,
are the tools each goal of the planner benchmark needs among those the planner is shown,
and how much smaller is its prompt?

Run:  .venv/bin/python tests/benchmarks/bench_tool_selection.py [--limit-tools 20]
          [--goals FILE] [--json FILE]

The goals are tests/benchmarks/goals.yaml (bench_planner.py's), each with the tools a good
plan uses. The synthetic tools are 25 namespaces of 8 (a CRM, a helpdesk, a shop, a
calculator, a news-feed reader, ...), some of them close to the goals on purpose (a shop's
orders and refunds, a calculator's growth rates, a feed's headlines). Selection is what
`dagentic ask` does above agent.tool_selection_above tools: dagentic.tool_selection over
tool names and descriptions with the planning context (sql.schema's output, run on the
sample database as an agent runs it), keeping --limit-tools tools (default: the
agent.tool_selection_limit setting) and the planning-context tools.

Printed: per goal whether its tools were selected and where they ranked, the share of goals
whose tools were all selected (target: at least 95 %), and the planner's first prompt
(system + user message, characters and tokens at 4 characters a token) and output schema
with and without selection. Needs no model.
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Any

import anyio
from bench_planner import GOALS, load_goals
from dagentic import Executor, Settings, Tool, ToolRegistry, load_tools, tool
from dagentic.agent import planning_context
from dagentic.models.scripted import ScriptedModel, estimate_tokens
from dagentic.planner import LLMPlanner
from dagentic.settings import AgentSettings
from dagentic.tool_selection import rank_tools
from stats import make_parser, python_version, verdict, write_results

TARGET_RECALL = 0.95

# namespace: (the system it works on, the things it works on)
DOMAINS: dict[str, tuple[str, list[str]]] = {
    "crm": (
        "customer relationship system",
        ["contact", "lead", "deal", "account", "note", "task", "pipeline", "campaign"],
    ),
    "hr": (
        "human resources system",
        [
            "employee",
            "leave request",
            "payslip",
            "job posting",
            "candidate",
            "performance review",
            "team",
            "holiday calendar",
        ],
    ),
    "ledger": (
        "accounting ledger",
        [
            "invoice",
            "payment",
            "expense",
            "budget",
            "revenue forecast",
            "tax return",
            "credit note",
            "exchange rate",
        ],
    ),
    "github": (
        "code hosting service",
        [
            "issue",
            "pull request",
            "repository",
            "release",
            "commit",
            "branch",
            "workflow run",
            "review comment",
        ],
    ),
    "tracker": (
        "project tracker",
        ["ticket", "sprint", "epic", "board", "milestone", "worklog", "label", "component"],
    ),
    "chat": (
        "team chat",
        [
            "message",
            "channel",
            "thread",
            "reaction",
            "user status",
            "reminder",
            "shared file",
            "bookmark",
        ],
    ),
    "mail": (
        "mailbox",
        [
            "email",
            "draft",
            "folder",
            "attachment",
            "contact group",
            "signature",
            "filter rule",
            "auto reply",
        ],
    ),
    "calendar": (
        "calendar",
        [
            "event",
            "meeting room",
            "availability",
            "invitation",
            "recurring series",
            "time zone",
            "agenda",
            "out of office",
        ],
    ),
    "weather": (
        "weather service",
        [
            "forecast",
            "current conditions",
            "rain radar",
            "storm warning",
            "air quality",
            "pollen count",
            "sunrise time",
            "climate normal",
        ],
    ),
    "maps": (
        "map service",
        [
            "route",
            "place",
            "distance",
            "address",
            "traffic",
            "transit line",
            "parking spot",
            "elevation",
        ],
    ),
    "travel": (
        "travel agency",
        [
            "flight",
            "hotel",
            "rental car",
            "train ticket",
            "itinerary",
            "visa rule",
            "loyalty account",
            "seat map",
        ],
    ),
    "feeds": (
        "news-feed reader",
        [
            "headline",
            "feed",
            "saved article",
            "topic alert",
            "publisher",
            "trending story",
            "newsletter",
            "press release",
        ],
    ),
    "stocks": (
        "market data service",
        [
            "quote",
            "price history",
            "dividend",
            "earnings report",
            "index",
            "portfolio",
            "watchlist",
            "analyst rating",
        ],
    ),
    "shop": (
        "online shop",
        [
            "product",
            "order",
            "cart",
            "shipment",
            "return",
            "customer review",
            "coupon",
            "gift card",
        ],
    ),
    "webstats": (
        "web analytics",
        [
            "page view",
            "session",
            "funnel",
            "conversion",
            "cohort",
            "retention",
            "traffic source",
            "custom event",
        ],
    ),
    "calc": (
        "calculator",
        [
            "sum",
            "percentage",
            "growth rate",
            "average",
            "median",
            "unit conversion",
            "rounding",
            "loan payment",
        ],
    ),
    "translate": (
        "translation service",
        [
            "text",
            "document",
            "glossary",
            "language detection",
            "transliteration",
            "subtitle",
            "terminology",
            "style guide",
        ],
    ),
    "docs": (
        "document store",
        [
            "document",
            "folder",
            "template",
            "comment",
            "version",
            "permission",
            "share link",
            "outline",
        ],
    ),
    "sheets": (
        "spreadsheet",
        [
            "sheet",
            "cell range",
            "formula",
            "chart",
            "pivot table",
            "named range",
            "filter view",
            "conditional format",
        ],
    ),
    "ci": (
        "build server",
        [
            "pipeline",
            "job",
            "artifact",
            "test report",
            "deployment",
            "environment",
            "secret",
            "runner",
        ],
    ),
    "cluster": (
        "container cluster",
        [
            "pod",
            "deployment",
            "service",
            "node",
            "log stream",
            "config map",
            "autoscaler",
            "namespace",
        ],
    ),
    "monitor": (
        "monitoring system",
        [
            "alert",
            "dashboard",
            "metric",
            "incident",
            "uptime check",
            "on-call schedule",
            "status page",
            "silence",
        ],
    ),
    "helpdesk": (
        "helpdesk",
        [
            "support ticket",
            "customer reply",
            "macro",
            "satisfaction survey",
            "sla policy",
            "agent",
            "knowledge article",
            "escalation",
        ],
    ),
    "warehouse": (
        "warehouse system",
        [
            "stock level",
            "bin location",
            "purchase order",
            "supplier",
            "pick list",
            "stock transfer",
            "cycle count",
            "reorder point",
        ],
    ),
    "social": (
        "social media account",
        [
            "post",
            "follower",
            "mention",
            "hashtag",
            "scheduled post",
            "direct message",
            "audience insight",
            "profile",
        ],
    ),
}
VERBS = ["get", "list", "create", "update", "delete", "search", "summarize", "export"]


async def _get(id: str) -> dict[str, Any]:
    """Get one.

    Args:
        id: Its identifier.
    """
    return {"id": id}


async def _list(limit: int = 20, since: str | None = None) -> list[Any]:
    """List them.

    Args:
        limit: At most this many, newest first.
        since: Only those changed since this ISO date.
    """
    return []


async def _create(title: str, body: str | None = None) -> dict[str, Any]:
    """Create one.

    Args:
        title: Its title or name.
        body: Its text.
    """
    return {"title": title}


async def _update(id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Update one.

    Args:
        id: Its identifier.
        fields: The fields to change, by name.
    """
    return {"id": id}


async def _delete(id: str) -> None:
    """Delete one.

    Args:
        id: Its identifier.
    """


async def _search(query: str, limit: int = 10) -> list[Any]:
    """Search them.

    Args:
        query: What to look for, in plain words.
        limit: At most this many results.
    """
    return []


async def _summarize(id: str, length: int = 100) -> str:
    """Summarize one.

    Args:
        id: Its identifier.
        length: About this many words.
    """
    return ""


async def _export(format: str = "csv") -> str:
    """Export them.

    Args:
        format: csv, json or xlsx.
    """
    return ""


FUNCTIONS = dict(
    zip(VERBS, [_get, _list, _create, _update, _delete, _search, _summarize, _export], strict=True)
)
PHRASES = {
    "get": "Get a {thing} from the {system} by its id, with all its fields.",
    "list": "List the {thing}s of the {system}, newest first.",
    "create": "Create a {thing} in the {system}.",
    "update": "Update fields of a {thing} in the {system}.",
    "delete": "Delete a {thing} from the {system}.",
    "search": "Search the {thing}s of the {system} by words.",
    "summarize": "Summarize a {thing} of the {system} in a few sentences.",
    "export": "Export every {thing} of the {system} as a file.",
}
EFFECTS = {"create": "write", "update": "write", "delete": "write"}


def synthetic_tools() -> list[Tool]:
    """200 tools: each namespace's 8 things, each with one of the 8 verbs."""
    made = []
    for namespace, (system, things) in DOMAINS.items():
        for verb, thing in zip(VERBS, things, strict=True):
            slug = thing.replace(" ", "_").replace("-", "_")
            made.append(
                tool(
                    name=f"{namespace}.{verb}_{slug}",
                    description=PHRASES[verb].format(thing=thing, system=system),
                    side_effects=EFFECTS.get(verb, "read"),  # type: ignore[arg-type]
                )(FUNCTIONS[verb])
            )
    return made


def prompt_size(planner: LLMPlanner, goal: str, context: dict[str, str]) -> dict[str, int]:
    messages = planner.prompt(goal, context=context)
    text = "".join(m.content for m in messages)
    _, schema = planner.offered(goal, context)
    return {
        "chars": len(text),
        "tokens": sum(estimate_tokens(m.content) for m in messages),
        "schema_chars": len(json.dumps(schema)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--limit-tools",
        type=int,
        default=AgentSettings().tool_selection_limit,
        help="Tools offered per goal besides the planning-context ones (default: the "
        "agent.tool_selection_limit setting).",
    )
    parser.add_argument("--goals", default=str(GOALS), help="The goals file (YAML).")
    args = parser.parse_args(argv)
    settings = Settings(_env_prefix="DAGENTIC_BENCH_UNUSED_")  # type: ignore[call-arg]
    builtins = load_tools()
    tools = ToolRegistry([*builtins, *synthetic_tools()])
    context = anyio.run(
        planning_context, Executor(builtins, settings=settings, tracing=None, journal=None)
    )
    goals = load_goals(args.goals)
    model = ScriptedModel([])
    everything = LLMPlanner(model, tools)
    selecting = LLMPlanner(model, tools, select_above=0, select_limit=args.limit_tools)
    print(
        f"tool-selection benchmark: {len(goals)} goals, {len(tools)} tools ({len(builtins)} "
        f"built in + {len(tools) - len(builtins)} synthetic), {args.limit_tools} offered + "
        f"the planning-context ones; planning context from {', '.join(context) or 'none'}; "
        f"Python {python_version()}"
    )
    print(f"{'goal':32} {'needs':26} {'ranks':12} {'selected':8} {'prompt tokens':>14}")
    records = []
    for goal in goals:
        ranked = [
            t.name
            for _, t in rank_tools(
                (t for t in tools if not t.planning_context), goal["text"], context
            )
        ]
        offered = set(selecting.offered(goal["text"], context)[0].names())
        needed = goal["tools"]
        ranks = [ranked.index(n) + 1 if n in ranked else 0 for n in needed]  # 0: planning context
        record = {
            "id": goal["id"],
            "needs": needed,
            "ranks": ranks,
            "selected": set(needed) <= offered,
            "expect": goal["expect"],
            "with": prompt_size(selecting, goal["text"], context),
            "without": prompt_size(everything, goal["text"], context),
        }
        records.append(record)
        print(
            f"{goal['id'][:32]:32} {','.join(needed) or '-':26} "
            f"{','.join(map(str, ranks)) or '-':12} {'yes' if record['selected'] else 'NO':8} "
            f"{record['with']['tokens']:>6} / {record['without']['tokens']}"
        )
    planned = [r for r in records if r["needs"]]
    recall = sum(r["selected"] for r in records) / len(records)
    recall_planned = sum(r["selected"] for r in planned) / len(planned)
    sizes = {
        which: {
            key: statistics.median(r[which][key] for r in records)
            for key in ("chars", "tokens", "schema_chars")
        }
        for which in ("with", "without")
    }
    results = {
        "config": {
            "goals": len(goals),
            "tools": len(tools),
            "builtin": len(builtins),
            "limit": args.limit_tools,
        },
        "environment": {"python": python_version(), "cpus": os.cpu_count()},
        "recall": recall,
        "recall_of_goals_needing_tools": recall_planned,
        "prompt_median": sizes,
        "goals": records,
        "target": {"recall": TARGET_RECALL, "met": recall_planned >= TARGET_RECALL},
    }
    print(
        f"goals whose tools were all selected: {sum(r['selected'] for r in records)}/{len(records)} "
        f"({recall:.0%}); of the {len(planned)} that need tools {recall_planned:.0%} "
        f"(target >= {TARGET_RECALL:.0%}: {verdict(recall_planned >= TARGET_RECALL)})"
    )
    for which, label in (("without", f"all {len(tools)} tools"), ("with", "with selection")):
        s = sizes[which]
        print(
            f"planner prompt, median per goal, {label:>15}: {s['chars']:>7.0f} characters, "
            f"{s['tokens']:>6.0f} tokens; output schema {s['schema_chars']:>7.0f} characters"
        )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
