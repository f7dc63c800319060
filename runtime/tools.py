"""Tools: the ``@tool`` decorator, the frozen :class:`Tool` it returns, and the registry.

A tool's argument model is built from its signature and Google-style docstring, with
``extra="forbid"``; that model's JSON schema is what planners see and what plan
validation checks literal arguments against.

What a tool does to the world is declared with it: ``side_effects`` (the most one call may
do), ``egress`` (arguments whose values leave the machine) and, when that depends on the
call, ``effects``: a function of the call's arguments and the settings that says what this
one call does (:class:`Effects`). The executor asks it before the call, and its answer is
what the policies, approvers, spans and journal see.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from .errors import PluginError, ToolDefinitionError, ToolError, ToolNotFoundError
from .resources import resource_problems

__all__ = [
    "Effects",
    "Egress",
    "SideEffects",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "suggest",
    "tool",
]

SideEffects = Literal["none", "read", "write"]
# How an argument leaves the machine: "destination" says where data goes (a URL), so a
# value built from a step's output lets that output choose it; "content" goes to a place
# the settings fix (a search API, a model endpoint).
Egress = Literal["destination", "content"]
SIDE_EFFECTS: tuple[SideEffects, ...] = ("none", "read", "write")
EGRESS: tuple[Egress, ...] = ("destination", "content")
TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True, slots=True)
class Effects:
    """What one call of a tool does: its side effects, and which of its arguments leave
    the machine and how (see :data:`Egress`)."""

    side_effects: SideEffects = "read"
    egress: Mapping[str, Egress] = field(default_factory=dict)


EffectsFunction = Callable[[dict[str, Any], Any], "SideEffects | Effects"]
# What a cacheable tool's call reads, in short (its data's fingerprint: files' sizes and
# times, say), from its arguments and the settings; None: this call is not cached.
CacheKeyFunction = Callable[[dict[str, Any], Any], "str | None"]


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may ask for by annotating a parameter with this type.

    ``untrusted_inputs`` names where the untrusted data in the arguments came from (tools,
    or stores holding such data). A tool that reads from a store untrusted data was
    written to calls :meth:`mark_untrusted`, so its output is untrusted too (a backend that
    runs tools elsewhere carries :attr:`untrusted_output` back). ``allow_untrusted`` is the
    step's opt-in: a tool that finds untrusted data on its way into a write only while it
    runs (a store's own taint record) refuses that write without it.

    ``idempotency_key`` names this call (run, step and ``foreach`` item) and stays the same
    across its attempts and when its run is resumed after a crash: a tool that writes and
    says ``@tool(uses_idempotency_key=True)`` stores the key with its write and does not
    write again for a key it has seen, so a resumed run never writes twice."""

    run_id: str
    step_id: str
    attempt: int
    settings: Any = None
    untrusted_inputs: tuple[str, ...] = ()  # where the untrusted data in the arguments came from
    untrusted_output: list[str] = field(default_factory=list)
    allow_untrusted: bool = False  # the step's allow_untrusted: untrusted data may be written
    # The same for every attempt of this call, and when a run is resumed: a tool that
    # writes records it with its write, and does not write again for a key it has seen.
    idempotency_key: str = ""
    # Set by the executor: shows a call's progress (the CLI's live table); from any thread.
    progress: Callable[[float, float | None, str | None], None] | None = field(
        default=None, repr=False, compare=False
    )

    def report_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Say how far this call got (``done`` of ``total``, and a few words): shown in
        ``dagentic run``'s live table. Callable from the tool's own thread or event loop."""
        if self.progress is not None:
            self.progress(done, total, message)

    def mark_untrusted(self, *sources: str) -> None:
        """Say that this call's output carries untrusted data from ``sources`` (a store
        that holds such data, say ``sql:scratch``): it is untrusted, like a web page."""
        self.untrusted_output.extend(s for s in sources if s not in self.untrusted_output)


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable the executor can run. Build one with :func:`tool`."""

    name: str
    description: str
    fn: Callable[..., Any] = field(repr=False)
    args_model: type[BaseModel] = field(repr=False)
    is_async: bool = False
    context_param: str | None = None
    timeout: float | None = None
    max_concurrency: int | None = None
    side_effects: SideEffects = "read"
    idempotent: bool = True
    uses_idempotency_key: bool = False
    trusted: bool = True
    plugin: str | None = None
    returns: str | None = None
    planning_context: bool = False
    typical_latency: float | None = None  # seconds of a call, for estimates
    egress: Mapping[str, Egress] = field(default_factory=dict, compare=False)
    # Where it runs on a cluster (the Ray backend): what one call needs of a node, and
    # whether it keeps state between calls (then its calls go to one long-lived actor).
    resources: Mapping[str, float] = field(default_factory=dict, compare=False)
    stateful: bool = False
    # The tool-result cache: whether its calls' outputs may be reused, for how long
    # (seconds; None: until what the call reads changes), and what that is (cache_key).
    cacheable: bool = False
    cache_ttl: float | None = None
    cache_key: CacheKeyFunction | None = field(default=None, repr=False, compare=False)
    effects: EffectsFunction | None = field(default=None, repr=False, compare=False)
    _adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict, repr=False, compare=False)

    def args_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as planners see it."""
        return self.args_model.model_json_schema()

    def field_adapter(self, name: str) -> TypeAdapter[Any] | None:
        """A validator for one argument, used to check literal values before a run."""
        info = self.args_model.model_fields.get(name)
        if info is None:
            return None
        adapter = self._adapters.get(name)
        if adapter is None:
            # Any: pydantic types a field's annotation as possibly None (a field's always
            # has one here: the model is made from annotated parameters).
            annotation: Any = (
                typing.Annotated[info.annotation, *info.metadata]
                if info.metadata
                else info.annotation
            )
            adapter = self._adapters[name] = TypeAdapter(annotation)
        return adapter

    def call_effects(self, args: dict[str, Any], settings: Any = None) -> Effects:
        """What a call with these (validated) ``args`` does: the ``effects`` function's
        answer, else the declared ``side_effects`` and ``egress``. Raises the function's
        own error (a tool's argument check, say), or :class:`ToolError` for an answer that
        is not one."""
        if self.effects is None:
            return Effects(self.side_effects, self.egress)
        answer = self.effects(args, settings)
        if isinstance(answer, str) and answer in SIDE_EFFECTS:
            return Effects(answer, self.egress)
        if (
            isinstance(answer, Effects)
            and answer.side_effects in SIDE_EFFECTS
            and all(answer.egress.get(k) in EGRESS for k in answer.egress)
        ):
            return answer
        raise ToolError(
            f"tool '{self.name}': its effects function answered {answer!r}; it must give "
            "'none', 'read', 'write' or an Effects (fix the tool)",
            tool=self.name,
        )

    def spec(self) -> dict[str, Any]:
        """A compact description for planners and ``dagentic tools --json``."""
        return {
            "name": self.name,
            "description": self.description,
            "args": self.args_schema(),
            "side_effects": self.side_effects,
            "effects_per_call": self.effects is not None,
            "egress": dict(self.egress),
            "idempotent": self.idempotent,
            "uses_idempotency_key": self.uses_idempotency_key,
            "trusted": self.trusted,
            "plugin": self.plugin,
            "returns": self.returns,
        }

    def with_plugin(self, plugin: str) -> Tool:
        return replace(self, plugin=plugin)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    side_effects: SideEffects = "read",
    idempotent: bool = True,
    uses_idempotency_key: bool = False,
    trusted: bool = True,
    planning_context: bool = False,
    typical_latency: float | None = None,
    egress: Mapping[str, Egress] | None = None,
    effects: EffectsFunction | None = None,
    resources: Mapping[str, float] | None = None,
    stateful: bool = False,
    cacheable: bool | CacheKeyFunction = False,
    cache_ttl: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    side_effects: SideEffects = "read",
    idempotent: bool = True,
    uses_idempotency_key: bool = False,
    trusted: bool = True,
    planning_context: bool = False,
    typical_latency: float | None = None,
    egress: Mapping[str, Egress] | None = None,
    effects: EffectsFunction | None = None,
    resources: Mapping[str, float] | None = None,
    stateful: bool = False,
    cacheable: bool | CacheKeyFunction = False,
    cache_ttl: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`. Works bare (``@tool``) or with options.

    The name defaults to ``<module>.<function>`` (``plugins/notify.py: def log`` gives
    ``notify.log``). ``side_effects``, ``idempotent`` and ``trusted`` describe the tool to
    the executor and its policies (``uses_idempotency_key=True``: a tool that writes does
    not write twice for one :attr:`ToolContext.idempotency_key`, so a call that was running
    when its run crashed may run again when the run is resumed; a tool that writes without
    either is asked about first): an untrusted tool's output (web pages, say) may not
    flow into a call that writes unless the step says ``allow_untrusted: true``.
    ``egress`` maps the arguments whose values leave the machine to how they do
    (``"destination"``: where data goes, a URL; ``"content"``: sent to a place the
    settings fix): untrusted data may not flow into them, nor any step's output into a
    destination, unless the step says ``allow_egress: true``. ``side_effects`` is the most
    a call may do; ``effects(args, settings)``, when given, says what one call does (an
    ``Effects``, or just its side effects), e.g. a SQL tool that writes only for INSERT.
    ``planning_context=True`` marks a tool whose output helps planners (a database
    schema, say): an agent calls it with no arguments before planning and shows the
    output to the planner as data.
    ``typical_latency`` is how many seconds a call usually takes: estimates before a run
    (``dagentic estimate``) use it until past runs have timed the tool.

    On a cluster (``execution.backend = "ray"``), ``resources`` is what one call needs of
    a node: ``num_cpus``, ``memory`` (bytes) and custom resources such as ``docker: 1``
    (a plan step may override them); ``stateful=True`` marks a tool that keeps state
    between calls (a warm pool, a connection, a loaded model): its calls go to one
    long-lived Ray actor instead of a task each.

    ``cacheable`` lets the tool-result cache reuse a call's output for a later call with
    the same arguments (an idempotent read: never a tool that writes), for ``cache_ttl``
    seconds (None: until cleared). Given a function of ``(args, settings)``, its answer
    (the fingerprint of the data the call reads, e.g. files' sizes and modification
    times) is part of the cache key, and None says this call is not cached.
    """

    def build(function: Callable[..., Any]) -> Tool:
        built = _build_tool(
            function,
            name=name,
            description=description,
            timeout=timeout,
            max_concurrency=max_concurrency,
            side_effects=side_effects,
            idempotent=idempotent,
            uses_idempotency_key=uses_idempotency_key,
            trusted=trusted,
            egress=egress or {},
            effects=effects,
        )
        if planning_context:
            if side_effects == "write" or built.args_model.model_json_schema().get("required"):
                raise ToolDefinitionError(
                    built.name,
                    [
                        "planning_context=True needs a tool without side effects that runs "
                        "with no arguments (every argument has a default)"
                    ],
                )
            built = replace(built, planning_context=True)
        if typical_latency is not None:
            if isinstance(typical_latency, bool) or not typical_latency > 0:
                raise ToolDefinitionError(
                    built.name,
                    [
                        "typical_latency must be a positive number of seconds, not "
                        f"{typical_latency!r}"
                    ],
                )
            built = replace(built, typical_latency=float(typical_latency))
        if resources or stateful:
            problems = resource_problems(resources or {})
            if problems:
                raise ToolDefinitionError(built.name, problems)
            built = replace(built, resources=dict(resources or {}), stateful=stateful)
        if cacheable:
            if side_effects == "write" and effects is None:
                raise ToolDefinitionError(
                    built.name,
                    ["cacheable=True needs a tool that reads: a call that writes is never cached"],
                )
            if cache_ttl is not None and (isinstance(cache_ttl, bool) or not cache_ttl > 0):
                raise ToolDefinitionError(
                    built.name,
                    [f"cache_ttl must be a positive number of seconds, not {cache_ttl!r}"],
                )
            built = replace(
                built,
                cacheable=True,
                cache_ttl=cache_ttl,
                cache_key=cacheable if callable(cacheable) else None,
            )
        return built

    return build(fn) if fn is not None else build


def _build_tool(
    function: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    max_concurrency: int | None,
    side_effects: SideEffects,
    idempotent: bool,
    uses_idempotency_key: bool,
    trusted: bool,
    egress: Mapping[str, Egress],
    effects: EffectsFunction | None,
) -> Tool:
    problems: list[str] = []
    fn_name = getattr(function, "__name__", repr(function))
    module = (getattr(function, "__module__", None) or "").rsplit(".", 1)[-1]
    tool_name = name or f"{module}.{fn_name}"
    if not TOOL_NAME.match(tool_name):
        problems.append(
            f"name {tool_name!r} is not 'namespace.verb' in lower case; pass "
            "@tool(name='myns.my_verb')"
        )
    if not callable(function):
        raise ToolDefinitionError(tool_name, [f"{function!r} is not callable"])
    if side_effects not in SIDE_EFFECTS:
        problems.append(f"side_effects must be 'none', 'read' or 'write', not {side_effects!r}")
    if effects is not None and not callable(effects):
        problems.append(
            f"effects must be a function of (args, settings), not {type(effects).__name__}"
        )
    if timeout is not None and timeout <= 0:
        problems.append(f"timeout must be a positive number of seconds, not {timeout!r}")
    if max_concurrency is not None and max_concurrency < 1:
        problems.append(f"max_concurrency must be at least 1, not {max_concurrency!r}")

    try:
        doc = docstring_parser.parse(
            inspect.getdoc(function) or "", style=docstring_parser.DocstringStyle.GOOGLE
        )
    except docstring_parser.ParseError as exc:
        problems.append(
            f"its docstring cannot be parsed as Google style ({exc}); indent "
            "each argument under 'Args:' as 'name: description'"
        )
        doc = docstring_parser.Docstring()
    text = description or "\n\n".join(p for p in (doc.short_description, doc.long_description) if p)
    if not text:
        problems.append(
            "it has no description; write a docstring (planners choose tools by "
            "it) or pass description="
        )
    param_docs = {p.arg_name: p.description or "" for p in doc.params}

    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - any failure to resolve is a definition problem
        hints = {}
        problems.append(f"its type hints cannot be resolved: {exc}")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(tool_name, [f"its signature cannot be read: {exc}"]) from exc

    fields: dict[str, Any] = {}
    context_param = None
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            problems.append(
                f"parameter '{param.name}': *args and **kwargs cannot be "
                "described to a planner; list the arguments"
            )
            continue
        if param.kind is param.POSITIONAL_ONLY:
            problems.append(
                f"parameter '{param.name}' is positional-only; tools are called "
                "with keyword arguments"
            )
            continue
        annotation = hints.get(param.name, param.annotation)
        if annotation is ToolContext:
            context_param = param.name
            continue
        if annotation is inspect.Parameter.empty:
            problems.append(f"parameter '{param.name}' has no type annotation")
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, Field(default, description=param_docs.get(param.name)))
    for documented in param_docs:
        if documented not in signature.parameters:
            problems.append(
                f"the docstring documents '{documented}' but there is no such parameter"
            )
    for arg, how in egress.items():
        if arg not in fields:
            problems.append(
                f"egress names '{arg}', which is not one of its arguments "
                f"({', '.join(fields) or 'none'}){suggest(arg, fields)}"
            )
        if how not in EGRESS:
            problems.append(f"egress of '{arg}' must be 'destination' or 'content', not {how!r}")

    model: type[BaseModel] | None = None
    if not problems:
        try:
            model = create_model(
                _model_name(tool_name),
                __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
            model.model_json_schema()
        except Exception as exc:  # noqa: BLE001 - pydantic raises several kinds here
            problems.append(f"its arguments cannot form a schema: {exc}")
    if problems or model is None:
        raise ToolDefinitionError(tool_name, problems)
    return Tool(
        name=tool_name,
        description=text,
        fn=function,
        args_model=model,
        is_async=inspect.iscoroutinefunction(function),
        context_param=context_param,
        timeout=timeout,
        max_concurrency=max_concurrency,
        side_effects=side_effects,
        idempotent=idempotent,
        uses_idempotency_key=uses_idempotency_key,
        trusted=trusted,
        egress=dict(egress),
        effects=effects,
        returns=" ".join(doc.returns.description.split())
        if doc.returns and doc.returns.description
        else None,
    )


def _model_name(tool_name: str) -> str:
    return "".join(part.title().replace("_", "") for part in tool_name.split(".")) + "Args"


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class ToolRegistry:
    """The tools a run can use, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, new: Tool) -> None:
        old = self._tools.get(new.name)
        if old is not None and old is not new:
            raise PluginError(
                f"tool {new.name!r} is registered twice: by plugin "
                f"{old.plugin or '<direct>'!r} and by plugin {new.plugin or '<direct>'!r}; "
                "uninstall one of them or rename the tool"
            )
        self._tools[new.name] = new

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFoundError(
                f"unknown tool {name!r}{suggest(name, self._tools)}", tool=name
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(sorted(self._tools.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return sorted(self._tools)
