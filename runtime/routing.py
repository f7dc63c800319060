"""Routing a goal to a library plan: the agent's first move, before any free planning.

The plans of the library (:mod:`dagentic.library`) closest to the goal are retrieved; those
that match at least ``agent.routing_min_match`` of the goal's words are offered to the
router model (purpose ``route``, ``model.router``, the planner's model by default) in **one
schema-constrained call**: the reply must be ``{"plan": NAME, "inputs": {...}}`` for one
of the offered plans, its inputs typed as the plan declares them (their ``enum`` values
where it declares some), or ``{"plan": "none"}``. Whatever comes back is checked again:
a name that was not offered, an input the plan does not declare, a value of the wrong type
or outside its allowed values make the reply invalid, and the goal is planned freely.

Only plans whose name or goal speak of what a question asks about (the words after
"which", "what", "how many": a question about a region is not answered by a plan about
products), that match nearly as much of the goal as the best one (within
:data:`MATCH_GAP`), and that can take every value the goal names (a quarter, a year, a number, a
capitalised name: as an allowed input value, a free input, or words of the plan) are
offered: a plan that cannot take "the West" does not answer a question about the West.
An input's value must also be *grounded*: stated by the goal (word for word, ignoring
case; a quarter also as "the second quarter of 2025" or "Q2 2025"). An input the goal
states one allowed value of takes that value; one it states nothing about takes the plan's
default, whatever the router wrote: a small model's guess never picks the data a plan
reads. The chosen plan is then validated with the agent's tools and run as it is; if its
outputs hold no such thing as the goal asks for (:mod:`dagentic.answer_type`), the agent
rejects the route and plans freely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .answer_type import asked_about
from .models.base import Message, Model, parse_json

if TYPE_CHECKING:
    from .graph import CompiledPlan
    from .library import LibraryPlan, Ranked
    from .plan import InputSpec
    from .tools import ToolRegistry

__all__ = [
    "Route",
    "about",
    "asked_about",
    "ground_inputs",
    "route_goal",
    "router_prompt",
    "router_schema",
    "unserved",
]

SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
MAX_TOKENS = 160  # a name and a few inputs
MATCH_GAP = 0.2  # offered: plans within this share of the goal's words of the best match
ROUTER_SYSTEM = (
    "You route a user's goal to a saved plan. The saved plans closest to the goal are listed "
    "with what each one does and its inputs. Choose the plan that answers the goal, and fill "
    "in its inputs from the goal; an input the goal does not mention takes its default. If no "
    "listed plan answers the goal, choose none.\n"
)
# (Worded for small models too: an answer format spelled out in the prompt, such as
# {"plan": "none"}, is what a 270M model copies whatever the goal; the schema carries it.)


@dataclass
class Route:
    """Which way a goal went: ``library`` (``plan`` runs with ``inputs``) or ``planned``
    (free planning, with ``examples`` in the planner's prompt), and why."""

    route: Literal["library", "planned"]
    reason: str
    plan: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)
    corrected: dict[str, Any] = field(default_factory=dict)  # input: what the router wrote
    compiled: CompiledPlan | None = None
    entry: LibraryPlan | None = None
    examples: list[LibraryPlan] = field(default_factory=list)
    rejected: str | None = None  # a library plan that ran but does not answer the goal

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "plan": self.plan,
            "inputs": self.inputs,
            "candidates": self.candidates,
            "reason": self.reason,
            "corrected": self.corrected,
            "rejected": self.rejected,
        }


def _input_schema(spec: InputSpec) -> dict[str, Any] | None:
    if spec.enum is not None:
        return {"enum": list(spec.enum)}
    if spec.type in ("string", "integer", "number", "boolean"):
        return {"type": spec.type}
    if spec.type == "array":
        return {"type": "array", "items": SCALAR, "maxItems": 12}
    return None  # an object: its default is used


def router_schema(candidates: Sequence[LibraryPlan]) -> dict[str, Any]:
    """What the router must answer: one of the ``candidates`` with its inputs (typed,
    their allowed values where the plan declares some), or ``none``."""
    variants: list[dict[str, Any]] = []
    for entry in candidates:
        properties = {
            name: schema
            for name, spec in entry.plan.inputs.items()
            if (schema := _input_schema(spec)) is not None
        }
        variants.append(
            {
                "type": "object",
                "properties": {
                    "plan": {"const": entry.name},
                    "inputs": {
                        "type": "object",
                        "properties": properties,
                        "required": list(properties),
                        "additionalProperties": False,
                    },
                },
                "required": ["plan", "inputs"],
                "additionalProperties": False,
            }
        )
    variants.append(
        {
            "type": "object",
            "properties": {"plan": {"const": "none"}},
            "required": ["plan"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": variants}


def _describe(entry: LibraryPlan) -> str:
    lines = [f"- {entry.name}: {entry.summary()}"]
    for name, spec in entry.plan.inputs.items():
        kind = (
            "one of " + ", ".join(json.dumps(v) for v in spec.enum)
            if spec.enum is not None
            else spec.type
        )
        default = f"; default {json.dumps(spec.default)}" if spec.default is not None else ""
        about = f" ({' '.join(spec.description.split())})" if spec.description else ""
        lines.append(f"    {name}: {kind}{default}{about}")
    return "\n".join(lines)


def router_prompt(goal: str, candidates: Sequence[LibraryPlan]) -> list[Message]:
    """The router's messages: the offered plans (what each does, its inputs) and the
    goal."""
    plans = "\n".join(_describe(e) for e in candidates)
    return [
        Message("system", ROUTER_SYSTEM),
        Message("user", f"Saved plans:\n{plans}\n\nGoal: {goal}\nAnswer with JSON."),
    ]


def _stated(goal: str) -> str:
    """The goal, lower-cased, with quarters it spells out ("the second quarter of 2025",
    "Q2 2025") also written as YYYYQn."""
    from .library import spelled_quarters

    return " ".join([goal.lower(), *(q.lower() for q in spelled_quarters(goal))])


def _says(stated: str, value: Any) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return False
    text = str(value).lower()
    return bool(text) and re.search(rf"(?<![\w]){re.escape(text)}(?![\w])", stated) is not None


def ground_inputs(
    goal: str, plan_inputs: dict[str, InputSpec], given: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The inputs to run with, and those the router wrote that were replaced: a value
    the goal does not state gives way to the one allowed value the goal states, else to
    the default."""
    stated = _stated(goal)
    inputs: dict[str, Any] = {}
    corrected: dict[str, Any] = {}
    for name, spec in plan_inputs.items():
        if name not in given:
            continue
        value = given[name]
        if isinstance(value, list):
            if all(_says(stated, v) for v in value):
                inputs[name] = value
            else:
                corrected[name] = value
            continue
        if _says(stated, value):
            inputs[name] = value
            continue
        named = [v for v in spec.enum or [] if _says(stated, v)]
        if value != spec.default or named:
            corrected[name] = value
        if len(named) == 1:
            inputs[name] = named[0]
        # else: the default (left out)
    for name, spec in plan_inputs.items():
        if name in inputs or name in corrected or spec.enum is None:
            continue
        named = [v for v in spec.enum if _says(stated, v)]
        if len(named) == 1:
            inputs[name] = named[0]
    return inputs, corrected


_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
}


def _misfit(value: Any, schema: dict[str, Any]) -> str | None:
    """Why ``value`` does not fit an input's schema (:func:`_input_schema`), or None."""
    if "enum" in schema:
        allowed = schema["enum"]
        if any(v == value and type(v) is type(value) for v in allowed):
            return None
        return "must be one of " + ", ".join(json.dumps(v) for v in allowed)
    kind = schema.get("type")
    expected = _TYPES.get(str(kind))
    if expected is None:
        return None
    if isinstance(value, bool) and kind != "boolean":
        return f"must be {kind}"
    if not isinstance(value, expected):
        return f"must be {kind}"
    if kind == "array" and (
        len(value) > schema.get("maxItems", 12)
        or not all(isinstance(v, str | int | float | bool) for v in value)
    ):
        return "must be an array of at most 12 strings, numbers or booleans"
    return None


def unserved(goal: str, entry: LibraryPlan) -> list[str]:
    """Values the goal names (a quarter, a year, a number, a capitalised name) that plan
    ``entry`` can neither take as an input nor speaks of: a plan that cannot take "the
    West" does not answer a question about the West, whichever plan a model chose."""
    from .library import goal_values, plan_document, spelled_quarters

    text = " ".join(plan_document(entry.plan)).lower()
    allowed = [str(v).lower() for spec in entry.plan.inputs.values() for v in spec.enum or []]
    free = {spec.type for spec in entry.plan.inputs.values() if spec.enum is None}
    stated = _stated(goal)
    missing = []
    named = goal_values(goal) + [(q, q, "quarter") for q in spelled_quarters(goal)]
    for shown, value, kind in named:
        if kind == "year" and re.search(rf"{value}q[1-4]", stated):
            continue  # a year of a quarter the goal spells out: the quarter is the value
        word = str(value).lower()
        if any(word in a for a in allowed) or re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text):
            continue
        if kind in ("number", "year") and free & {"integer", "number", "string"}:
            continue
        if kind in ("quarter", "name") and "string" in free:
            continue
        missing.append(shown)
    return missing


def about(goal: str, entry: LibraryPlan) -> bool:
    """Whether plan ``entry``'s name or goal speaks of what the goal asks about (a goal
    that asks "which region" is not answered by a plan about products)."""
    from .retrieval import words

    focus = asked_about(goal)
    if not focus:
        return True
    known = set(words(f"{entry.name.replace('_', ' ')} {entry.plan.goal or ''}"))
    return any(word in known for word in focus)


def _check_reply(
    text: str, offered: dict[str, LibraryPlan]
) -> tuple[str | None, dict[str, Any], str | None]:
    """The plan the reply names (None: none) and its inputs, or why the reply is invalid."""
    try:
        data = parse_json(text)
    except (ValueError, RecursionError):
        return None, {}, "the router's reply is not JSON"
    if not isinstance(data, dict):
        return None, {}, "the router's reply is not a JSON object"
    name = data.get("plan")
    if name == "none":
        return None, {}, None
    if not isinstance(name, str) or name not in offered:
        shown = json.dumps(name)[:80]
        return None, {}, f"the router named {shown}, which is not one of the plans offered"
    inputs = data.get("inputs", {})
    wrong = f"the router's inputs for '{name}' do not fit them"
    if not isinstance(inputs, dict):
        return None, {}, f"{wrong}: the inputs are not an object"
    schemas = router_schema([offered[name]])["anyOf"][0]["properties"]["inputs"]["properties"]
    for key, value in inputs.items():
        if key not in schemas:
            return None, {}, f"{wrong}: it has no input {json.dumps(key)[:80]}"
        problem = _misfit(value, schemas[key])
        if problem is not None:
            return None, {}, f"{wrong}: {key} {problem}; got {json.dumps(value)[:80]}"
    return name, dict(inputs), None


async def route_goal(
    model: Model,
    goal: str,
    ranked: Sequence[Ranked],
    tools: ToolRegistry,
    *,
    candidates: int = 4,
    min_match: float = 0.6,
    examples: int = 2,
    judge: bool = True,
) -> Route:
    """Route ``goal`` among the ``ranked`` library plans (best first): one model call
    when at least one matches enough of the goal, none otherwise."""
    from .errors import PlanError
    from .executor import resolve_inputs
    from .graph import compile_plan

    closest = [r.plan for r in ranked[:examples]]
    # offered: plans that match enough of the goal and can take every value it names
    matching = [r.plan for r in ranked if r.match >= min_match]
    untaken = {e.name: unserved(goal, e) for e in matching}
    taking = [e for e in matching if not untaken[e.name]]
    fitting = [r for r in ranked if r.plan in [e for e in taking if about(goal, e)]]
    best = max((r.match for r in fitting), default=0.0)
    # a plan that matches much less of the goal than the best one is not what it asks
    offered = [r.plan for r in fitting if r.match >= best - MATCH_GAP][:candidates]
    names = [e.name for e in offered]
    if not offered:
        missing = sorted({v for values in untaken.values() for v in values})
        if taking:
            reason = (
                "no library plan that matches the goal is about what it asks ("
                + " ".join(asked_about(goal))
                + ")"
            )
        elif matching:
            reason = (
                "no library plan that matches the goal can take "
                + ", ".join(json.dumps(v) for v in missing)
                + ", which it names"
            )
        else:
            reason = "no library plan matches enough of the goal"
        return Route("planned", reason, candidates=names, examples=closest)
    reply = await model.chat(
        router_prompt(goal, offered),
        schema=router_schema(offered),
        max_tokens=MAX_TOKENS,
        temperature=0.0,
    )
    by_name = {e.name: e for e in offered}
    name, given, problem = _check_reply(reply.text, by_name)
    if problem is not None:
        return Route("planned", problem, candidates=names, examples=closest)
    if name is None:
        return Route(
            "planned", "the router found no plan that fits", candidates=names, examples=closest
        )
    entry = by_name[name]
    missing = unserved(goal, entry)
    if missing:
        shown = ", ".join(json.dumps(m) for m in missing)
        return Route(
            "planned",
            f"library plan '{name}' cannot take {shown}, which the goal names",
            candidates=names,
            examples=closest,
        )
    inputs, corrected = ground_inputs(goal, entry.plan.inputs, given)
    try:
        resolve_inputs(entry.plan, inputs)
        compiled = compile_plan(entry.plan, tools, judge=judge, source_file=entry.path)
    except PlanError as exc:
        problems = "; ".join(p.message for p in exc.problems)[:500]
        return Route(
            "planned",
            f"library plan '{name}' cannot run: {problems}",
            candidates=names,
            examples=closest,
        )
    return Route(
        "library",
        "chosen by the router",
        plan=name,
        inputs=inputs,
        candidates=names,
        corrected=corrected,
        compiled=compiled,
        entry=entry,
        examples=closest,
    )
