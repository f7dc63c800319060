"""The plan library: plans the agent can route a goal to instead of planning it afresh.

It holds the plan files of the folders ``library.folders`` names (default ``plans/``), those
of the plan folders installed plugins ship (the sql plugin's plans over its sample data), and
the plans ``dagentic ask`` made that ran and passed verification, which it saves in
``library.path`` (default ``library/`` in ``runs_dir``, next to the journal). A saved plan is a plain
plan file: it validates and runs like any other (``dagentic run PATH``). It keeps the goal
it was made for, a description, and its provenance (the agent run, the model, the date)
as ``# dagentic:`` comments at its top. Values the model wrote into its steps that came
from the goal word for word (a quarter such as ``2026Q2``, a year, a region's name, a
number) are lifted into plan ``inputs:`` with the goal's value as default, so the plan
serves the same question about another quarter or region: a value that is a whole
argument (a SQL parameter, a search query's word) is replaced by ``${{ inputs.NAME }}``;
values inside SQL or code text are left as they are (an input there would be text spliced
into a program).

A plan's name is its file's name without ``.yaml``: lowercase letters, digits, ``_`` and
``-``, so a name can never point outside its folder. A name found twice (in two folders, or
a saved plan named as a plan file) is the first folder's; the saved plans come last.

:meth:`Library.rank` orders the plans by how well they match a goal
(:mod:`dagentic.retrieval`: lexical BM25F fused with embeddings when an embedder is
installed); feedback moves them: a plan with more bad than good feedback leaves the routing
set, good feedback ranks it higher. A plan saved by a run of the very same goal is left out
(as memory leaves out that run's answer): the same goal again is answered as the first
time, from the data, so a deterministic model's calls are served from the response cache;
the plan serves the goals that differ (another quarter, other words).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import DagenticError, PlanError
from .plan import Plan

if TYPE_CHECKING:
    from .settings import Settings
    from .tools import ToolRegistry

__all__ = [
    "Library",
    "LibraryError",
    "LibraryPlan",
    "Ranked",
    "goal_values",
    "library_example",
    "library_from_settings",
    "lift_inputs",
    "plan_document",
    "spelled_quarters",
    "valid_name",
]

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PROVENANCE = re.compile(r"^#\s*dagentic:\s*([a-z_]+):\s?(.*)$")
GOOD_BOOST = 0.25  # the score of a plan grows by this share per net good feedback (up to 4)
_QUARTER = re.compile(r"\b(?:19|20)\d\dQ[1-4]\b", re.IGNORECASE)
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.])")
_PROPER = re.compile(r"(?<![\w'])[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*")
_NO_LIFT = frozenset({"sql", "code"})  # arguments that are programs: no text spliced in


class LibraryError(DagenticError, LookupError):
    """A plan name is unknown or not a name, or a plan cannot be saved or forgotten."""


def valid_name(name: str) -> bool:
    """Whether ``name`` can name a library plan (and so a file in its folder)."""
    return bool(NAME.match(name))


@dataclass
class LibraryPlan:
    """One plan of the library: where it is, what it is, and where it came from."""

    name: str
    path: Path
    plan: Plan
    saved: bool  # made by `dagentic ask` (else a plan file of a configured folder)
    provenance: dict[str, str] = field(default_factory=dict)
    good: int = 0  # feedback on runs of it
    bad: int = 0

    @property
    def routable(self) -> bool:
        """Whether the router may be offered it: not when bad feedback outweighs good."""
        return self.bad <= self.good

    def summary(self) -> str:
        """What it does, in one line: its goal, else its description, else its name."""
        text = self.plan.goal or self.plan.description or self.name
        return " ".join(text.split())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": "saved" if self.saved else "folder",
            "goal": self.plan.goal,
            "description": self.plan.description,
            "inputs": {
                k: v.model_dump(mode="json", exclude_defaults=True)
                for k, v in self.plan.inputs.items()
            },
            "steps": len(self.plan.steps),
            "provenance": self.provenance,
            "feedback": {"good": self.good, "bad": self.bad},
        }


def plan_document(plan: Plan) -> tuple[str, str, str]:
    """What a plan is found by: its name, its goal, and the rest of what it says about
    itself (description, inputs with their descriptions and allowed values, step ids and
    tools)."""
    rest = [plan.description or ""]
    for name, spec in plan.inputs.items():
        rest += [name.replace("_", " "), spec.description or ""]
        rest += [str(v) for v in spec.enum or []]
    for step in plan.steps:
        rest += [step.id.replace("_", " "), step.tool or ""]
    return (
        plan.name.replace("_", " ").replace("-", " "),
        plan.goal or "",
        " ".join(rest),
    )


class Library:
    """The plans of ``folders`` (each ``*.yaml`` file) and of ``saved`` (those
    ``dagentic ask`` saved). Plans are read when asked for; a file that is not a plan is
    left out and said in :attr:`problems`."""

    def __init__(self, folders: Iterable[Path], saved: Path) -> None:
        self.folders = [Path(f) for f in folders]
        self.saved = Path(saved)
        self.problems: list[str] = []

    # -- reading ---------------------------------------------------------------------------

    def plans(self) -> list[LibraryPlan]:
        """Every plan, each name once (the first folder's), saved plans last."""
        found: dict[str, LibraryPlan] = {}
        self.problems = []
        for folder, saved in [*((f, False) for f in self.folders), (self.saved, True)]:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.yaml")):
                name = path.stem
                if not valid_name(name) or name in found:
                    continue
                entry = self._read(path, saved)
                if entry is not None:
                    found[name] = entry
        return list(found.values())

    def _read(self, path: Path, saved: bool) -> LibraryPlan | None:
        try:
            text = path.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
            plan = Plan.model_validate(data)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.problems.append(f"{path}: not a plan: {first}")
            return None
        provenance: dict[str, str] = {}
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            match = PROVENANCE.match(line)
            if match:
                provenance[match.group(1)] = match.group(2).strip()
        return LibraryPlan(path.stem, path, plan, saved, provenance)

    def get(self, name: str) -> LibraryPlan:
        """The plan named ``name``; :class:`LibraryError` when it is not a name or the
        library has no such plan."""
        if not valid_name(name):
            raise LibraryError(
                f"{json.dumps(name)} is not a plan name: a name is lowercase letters, digits, "
                "'_' and '-' (as `dagentic plans list` shows them)",
                name=name,
            )
        for entry in self.plans():
            if entry.name == name:
                return entry
        raise LibraryError(
            f"no plan named '{name}' in the library: `dagentic plans list` shows them",
            name=name,
        )

    def forget(self, name: str) -> LibraryPlan:
        """Remove saved plan ``name``; a plan file of a configured folder is the user's, and
        is refused (delete or move the file itself)."""
        entry = self.get(name)
        if not entry.saved:
            raise LibraryError(
                f"plan '{name}' is a file of plan folder {entry.path.parent}, not a saved "
                f"plan: delete or move {entry.path} itself, or leave its folder out "
                "(library.folders; library.plugin_plans for a plugin's plans)",
                name=name,
            )
        entry.path.unlink()
        return entry

    # -- ranking ---------------------------------------------------------------------------

    def rank(
        self,
        goal: str,
        *,
        feedback: Mapping[str, tuple[int, int]] | None = None,
        tools: ToolRegistry | None = None,
        embedder: Any = None,
        limit: int | None = None,
    ) -> list[Ranked]:
        """The plans by relevance to ``goal``, best first (:mod:`dagentic.retrieval`:
        BM25F over goal, description, name, inputs and tools, fused with embeddings when
        ``embedder`` is given; good feedback moves a plan up). Plans with more bad than
        good feedback and plans that do not validate with ``tools`` are left out; so are
        plans that share no word with the goal. ``limit``: the best that many (only they
        are validated)."""
        from .retrieval import PLAN_WEIGHTS, Index, query_terms
        from .retrieval import plan_document as document

        entries = []
        same = " ".join(goal.split()).casefold()
        for entry in self.plans():
            good, bad = (feedback or {}).get(entry.name, (0, 0))
            entry.good, entry.bad = good, bad
            if entry.saved and " ".join((entry.plan.goal or "").split()).casefold() == same:
                continue  # saved by a run of this very goal: see the module's doc
            if entry.routable:
                entries.append(entry)
        if not entries:
            return []
        index = Index(
            [
                document(
                    e.name,
                    goal=e.plan.goal or "",
                    description=e.plan.description or "",
                    inputs=list(e.plan.inputs),
                    tools=[s.tool for s in e.plan.steps if s.tool],
                    data=e,
                )
                for e in entries
            ],
            weights=PLAN_WEIGHTS,
            embedder=embedder,
        )
        query = _with_quarters(goal)
        terms = set(query_terms(query))
        ranked = []
        for hit in index.rank(query):
            entry = hit.document.data
            if hit.lexical <= 0 and hit.vector is None:
                continue
            if tools is not None and not _validates(entry, tools):
                continue
            known = _known_words(entry.plan)
            match = len(terms & known) / len(terms) if terms else 0.0
            boost = 1 + GOOD_BOOST * min(max(entry.good - entry.bad, 0), 4)
            ranked.append(Ranked(entry, hit.score * boost, match))
            if limit is not None and len(ranked) >= limit + 4:
                break  # a boost moves a plan a few places at most
        ranked.sort(key=lambda r: (-r.score, r.plan.name))
        return ranked if limit is None else ranked[:limit]

    # -- saving ----------------------------------------------------------------------------

    def save(
        self,
        plan: Plan,
        *,
        goal: str,
        run_id: str,
        model: str,
        tools: ToolRegistry,
        answer: str | None = None,
    ) -> LibraryPlan | None:
        """Save ``plan`` (made by the agent for ``goal`` in agent run ``run_id``, which
        passed verification) with its inputs lifted from the goal; None when the library
        has a plan with the same steps already. Raises :class:`LibraryError` when the
        folder cannot be written."""
        from .graph import compile_plan

        lifted = lift_inputs(plan, goal)
        for entry in self.plans():
            if _same_steps(entry.plan, plan) or _same_steps(entry.plan, lifted):
                return None
        name = _saved_name(goal, run_id)
        body = lifted.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        body = {
            "version": 1,
            "name": name,
            "goal": " ".join(goal.split()),
            "description": _description(goal, answer),
            **{
                k: v for k, v in body.items() if k not in ("version", "name", "goal", "description")
            },
        }
        try:
            compiled = compile_plan(body, tools)
        except PlanError:  # lifting broke it: save the plan as it ran
            body["inputs"] = plan.model_dump(mode="json", by_alias=True).get("inputs") or {}
            body["steps"] = plan.model_dump(mode="json", by_alias=True, exclude_defaults=True)[
                "steps"
            ]
            if not body["inputs"]:
                del body["inputs"]
            compiled = compile_plan(body, tools)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        header = [
            "# dagentic: saved by `dagentic ask` after its answer passed verification",
            f"# dagentic: run: {_one_line(run_id)}",
            f"# dagentic: model: {_one_line(model)}",
            f"# dagentic: date: {now}",
            f"# dagentic: goal: {_one_line(goal)}",
        ]
        text = "\n".join(header) + "\n" + compiled.plan.to_yaml()
        try:
            self.saved.mkdir(parents=True, exist_ok=True)
            path = self.saved / f"{name}.yaml"
            temporary = path.with_suffix(".yaml.tmp")
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(path)
        except OSError as exc:
            raise LibraryError(f"cannot save the plan in {self.saved}: {exc}") from exc
        return self._read(path, True)


@dataclass(frozen=True)
class Ranked:
    """A plan ranked for a goal: its fused score (raised by good feedback) and ``match``,
    the share of the goal's words it knows (in its goal, description, name, inputs and
    their allowed values, steps)."""

    plan: LibraryPlan
    score: float
    match: float


def _known_words(plan: Plan) -> set[str]:
    from .retrieval import words

    return set(words(" ".join(plan_document(plan))))


def library_example(entry: LibraryPlan, limit: int = 1500) -> str:
    """A library plan as an example for a planner's prompt: its goal and its steps and
    outputs as JSON, its inputs written as their defaults (a model's plan has none)."""
    data = entry.plan.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    body = {"steps": data["steps"], **({"outputs": data["outputs"]} if data.get("outputs") else {})}
    text = json.dumps(body, ensure_ascii=False)
    for name, spec in entry.plan.inputs.items():
        value = spec.default if spec.default is not None else name
        shown = json.dumps(value, ensure_ascii=False)
        shown = shown[1:-1] if isinstance(value, str) else shown.replace('"', '\\"')
        pattern = r"\$\{\{\s*inputs\." + re.escape(name) + r"\s*\}\}"
        text = re.sub(pattern, shown.replace("\\", "\\\\"), text)
    if len(text) > limit:
        text = text[:limit] + " ...(cut)"
    goal = _one_line(entry.plan.goal or entry.summary(), 200)
    return (
        f"A plan that achieved a similar goal ({json.dumps(goal, ensure_ascii=False)}), "
        f"from the plan library; adapt it to this goal, or write another:\n{text}"
    )


def library_from_settings(settings: Settings) -> Library:
    """The library the settings describe: the plan folders (``library.folders``, then the
    plugins' unless ``library.plugin_plans`` is false) and the saved plans
    (``library.path``)."""
    from .subplans import plan_folders

    saved = settings.library.path or Path(settings.runs_dir) / "library"
    return Library(plan_folders(settings), saved)


def _validates(entry: LibraryPlan, tools: ToolRegistry) -> bool:
    from .graph import compile_plan

    try:
        compile_plan(entry.plan, tools, source_file=entry.path)  # its sub-plans' base
    except (PlanError, ValueError):
        return False
    return True


def _same_steps(a: Plan, b: Plan) -> bool:
    def dump(plan: Plan) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json", exclude={"description"}) for s in plan.steps]

    return dump(a) == dump(b)


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _saved_name(goal: str, run_id: str) -> str:
    from .tool_selection import words

    stem = "_".join(words(goal)[:5])[:40].strip("_") or "plan"
    suffix = re.sub(r"[^a-z0-9]", "", run_id.lower())[:6] or "0"
    name = f"{stem}_{suffix}"
    return name if valid_name(name) else f"plan_{suffix}"


def _description(goal: str, answer: str | None) -> str:
    # Not the answer: it came from tool data, and the description goes into prompts.
    return f"Made by `dagentic ask` for the goal: {_one_line(goal)}"


# -- lifting goal values into inputs -------------------------------------------------------


_ORDINAL = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3}
_ORDINAL |= {"fourth": 4, "4th": 4}
_QUARTER_WORDS = re.compile(
    r"\b(first|1st|second|2nd|third|3rd|fourth|4th)\s+quarter\s+(?:of\s+)?((?:19|20)\d\d)\b"
    r"|\bq([1-4])\s*((?:19|20)\d\d)\b|\b((?:19|20)\d\d)\s*q([1-4])\b",
    re.IGNORECASE,
)


def spelled_quarters(goal: str) -> list[str]:
    """Quarters the goal spells out ("the second quarter of 2025", "Q2 2025"), as YYYYQn."""
    found = []
    for m in _QUARTER_WORDS.finditer(goal):
        if m.group(1):
            found.append(f"{m.group(2)}Q{_ORDINAL[m.group(1).lower()]}")
        elif m.group(3):
            found.append(f"{m.group(4)}Q{m.group(3)}")
        else:
            found.append(f"{m.group(5)}Q{m.group(6)}")
    return found


def _with_quarters(goal: str) -> str:
    """The goal with each quarter it spells out written as YYYYQn instead."""
    return _QUARTER_WORDS.sub(lambda m: spelled_quarters(m.group(0))[0], goal)


def goal_values(goal: str) -> list[tuple[str, Any, str]]:
    """Values the goal states literally, as (text, value, kind): quarters, years, other
    numbers, and capitalised words past the first (names: a region, a product)."""
    found: list[tuple[str, Any, str]] = []
    taken: set[str] = set()
    for match in _QUARTER.finditer(goal):
        found.append((match.group(0), match.group(0).upper(), "quarter"))
        taken.add(match.group(0))
    for match in _YEAR.finditer(goal):
        if not any(match.group(0) in t for t in taken):
            found.append((match.group(0), int(match.group(0)), "year"))
            taken.add(match.group(0))
    for match in _NUMBER.finditer(goal):
        if not any(match.group(0) in t for t in taken):
            found.append((match.group(0), int(match.group(0)), "number"))
    first = re.match(r"\s*\S+", goal)
    start = first.end() if first else 0
    for match in _PROPER.finditer(goal):
        if match.start() >= start:
            found.append((match.group(0), match.group(0), "name"))
    return found


def lift_inputs(plan: Plan, goal: str) -> Plan:
    """``plan`` with the values it took from ``goal`` made inputs: each argument value
    (or list item) equal to a value the goal states becomes ``${{ inputs.NAME }}``, and a
    word of the goal inside a text argument (not SQL or code) is replaced within it. The
    input's default is the goal's value. Values not found are left as they are."""
    data = plan.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    inputs: dict[str, dict[str, Any]] = dict(data.get("inputs") or {})
    names: dict[str, str] = {}  # the goal's text -> its input's name

    def input_for(text: str, value: Any, kind: str, hint: str) -> str:
        if text in names:
            return names[text]
        base = kind if kind != "name" else (hint if hint and hint not in _NO_LIFT else "name")
        base = re.sub(r"[^a-z0-9_]", "_", base.lower()).strip("_") or "value"
        if not re.match(r"^[a-z]", base):
            base = f"value_{base}"
        name, n = base, 2
        while name in inputs:
            name, n = f"{base}_{n}", n + 1
        inputs[name] = {
            "type": "integer" if isinstance(value, int) else "string",
            "default": value,
            "description": f"From the goal: {text}",
        }
        names[text] = name
        return name

    values = goal_values(goal)

    def lift(value: Any, key: str) -> Any:
        if isinstance(value, list):
            return [lift(v, key) for v in value]
        if isinstance(value, dict):
            return {k: lift(v, k) for k, v in value.items()}
        for text, typed, kind in values:
            if value == typed or (isinstance(value, str) and value == text):
                return f"${{{{ inputs.{input_for(text, typed, kind, key)} }}}}"
        if isinstance(value, str) and key not in _NO_LIFT and "${{" not in value:
            for text, typed, kind in values:
                pattern = rf"(?<![\w]){re.escape(text)}(?![\w])"
                if kind != "number" and re.search(pattern, value):
                    name = input_for(text, typed, kind, key)
                    value = re.sub(pattern, f"${{{{ inputs.{name} }}}}", value)
        return value

    for step in data.get("steps", []):
        if "args" in step:
            step["args"] = {k: lift(v, k) for k, v in step["args"].items()}
    if inputs:
        data["inputs"] = inputs
    try:
        return Plan.model_validate(data)
    except ValueError:
        return plan
