"""Reading plan files: YAML with the line and column of every key and value.

A :class:`PlanSource` keeps the raw data next to a map from each node's path (such as
``("steps", 2, "tool")``) to its position, so every validation problem can be reported as
``file:line:col: message``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .bounds import (
    MAX_PLAN_ALIASES,
    MAX_PLAN_BYTES,
    MAX_PLAN_DEPTH,
    MAX_PLAN_NODES,
    too_deep,
    too_many_nodes,
)
from .errors import Problem

__all__ = ["MAX_NUMBER_CHARS", "PlanSource", "read_plan_source"]

MAX_NUMBER_CHARS = 100
"""Characters of a plain scalar YAML reads as a number. Longer ones are refused before they
are converted: YAML 1.1 reads ``1:59:59...`` as base 60 at a cost that grows with the
square of its length, and Python refuses ints of more than 4300 digits."""

Path_ = tuple[str | int | float, ...]  # mapping keys (YAML allows numbers) and indexes
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BOOL = "tag:yaml.org,2002:bool"
_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans,
    which would turn `retry: {on: [...]}` into a `True` key."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class PlanSource:
    """Raw plan data plus where each part of it came from."""

    data: Any
    file: str | None = None
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    bounded: bool = False  # its nesting and nodes were held to the plan bounds as it was read

    def problem(self, path: Path_, message: str, *, at_key: bool = False) -> Problem:
        """A problem located at ``path``, or at its nearest located ancestor."""
        probe = tuple(path)
        while True:
            position = (at_key and self.keys.get(probe)) or self.values.get(probe)
            if position or not probe:
                break
            probe = probe[:-1]
        line, column = position if position else (None, None)
        return Problem(message, file=self.file, line=line, column=column)


def read_plan_source(
    path: str | Path | None = None, *, text: str | None = None, name: str | None = None
) -> tuple[PlanSource, list[Problem]]:
    """Parse a YAML plan from ``path`` (or ``text``). Never raises for bad YAML: the
    problems come back next to whatever could be read. A plan past the bounds of
    :mod:`dagentic.bounds` (bytes, nesting, nodes, aliases) is refused before it is built."""
    file = str(path) if path is not None else name
    if text is None:
        if path is None:
            raise TypeError("read_plan_source() needs a path or text")
        text, problem = _read(Path(path), file)
        if text is None:
            return PlanSource(None, file), [problem] if problem else []
    elif len(text) > MAX_PLAN_BYTES or len(text.encode("utf-8", "replace")) > MAX_PLAN_BYTES:
        size = len(text.encode("utf-8", "replace"))
        return PlanSource(None, file), [Problem(_too_large(size), file=file, line=1, column=1)]
    source = PlanSource(None, file, bounded=True)
    problem = _scan(text, file)
    if problem is not None:
        return source, [problem]
    problems: list[Problem] = []
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            problems.append(Problem("the plan file is empty", file=file, line=1, column=1))
            return source, problems
        source.data = _build(node, (), loader, source, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # an unclosed quote or bracket: point at its opening
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            message += f" ({exc.context})"
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problems.append(Problem(message, file=file, line=line, column=column))
    except yaml.YAMLError as exc:
        problems.append(Problem(f"YAML error: {exc}", file=file))
    finally:
        loader.dispose()
    return source, problems


def _read(path: Path, file: str | None) -> tuple[str | None, Problem | None]:
    """The text of a plan file, read no further than MAX_PLAN_BYTES (a FIFO or a huge file
    costs no more than that)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PLAN_BYTES + 1)
            size = os.fstat(handle.fileno()).st_size
        if len(raw) > MAX_PLAN_BYTES:
            return None, Problem(_too_large(size), file=file, line=1, column=1)
        return raw.decode("utf-8"), None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, Problem(f"cannot read plan file: {reason}", file=file)


def _too_large(size: int) -> str:
    shown = f"{size:,} bytes" if size > MAX_PLAN_BYTES else f"more than {MAX_PLAN_BYTES:,} bytes"
    return (
        f"the plan is {shown}; a plan may be at most {MAX_PLAN_BYTES:,} bytes (1 MiB): "
        "pass large data as an input or read it with a tool step, or split the plan"
    )


def _scan(text: str, file: str | None) -> Problem | None:
    """The first plan bound ``text`` passes, found from the parser's events before
    anything is built (aliases are counted as the values they expand to), or None. The
    events come from a streaming parser, so no nesting can exhaust the stack here."""
    loader = _Loader(text)
    nodes = aliases = 0
    anchors: dict[str, tuple[int, int]] = {}  # anchor: (nodes, levels) of its value
    open_: list[list[Any]] = []  # per open mapping or list: [anchor, nodes before, levels]

    def at(event: yaml.Event, message: str) -> Problem:
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return Problem(message, file=file, line=line, column=column)

    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                if len(open_) >= MAX_PLAN_DEPTH:
                    return at(event, too_deep())
                open_.append([event.anchor, nodes, 1])
                nodes += 1
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                anchor, before, levels = open_.pop()
                if anchor is not None:
                    anchors[anchor] = (nodes - before, levels)
                if open_:
                    open_[-1][2] = max(open_[-1][2], levels + 1)
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if event.anchor is not None:
                    anchors[event.anchor] = (1, 0)
                if len(event.value) > MAX_NUMBER_CHARS and _is_number(loader, event):
                    return at(
                        event,
                        f"a number of {len(event.value):,} characters; a plan's numbers may "
                        f"have at most {MAX_NUMBER_CHARS} characters: quote it to pass it as "
                        "a string",
                    )
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_PLAN_ALIASES:
                    return at(
                        event,
                        f"more than {MAX_PLAN_ALIASES} YAML aliases (*name); a plan may use "
                        f"at most {MAX_PLAN_ALIASES}: write the values out",
                    )
                if any(entry[0] == event.anchor for entry in open_):
                    return at(
                        event,
                        f"the alias '*{event.anchor}' is inside the value it names; a plan "
                        "cannot contain itself",
                    )
                size, levels = anchors.get(event.anchor or "", (1, 0))  # unknown: reported later
                if len(open_) + levels > MAX_PLAN_DEPTH:
                    return at(event, too_deep())
                nodes += size
                if open_:
                    open_[-1][2] = max(open_[-1][2], levels + 1)
            if nodes > MAX_PLAN_NODES:
                return at(event, too_many_nodes())
    except yaml.YAMLError:
        return None  # reported, located, by the parse that follows
    finally:
        loader.dispose()
    return None


def _is_number(loader: Any, event: yaml.ScalarEvent) -> bool:
    """Whether YAML reads this scalar as a number (a plain one that its resolvers, regular
    expressions of linear cost, tag int or float)."""
    if event.tag is not None and event.tag != "!":
        return event.tag in _NUMBERS
    return loader.resolve(yaml.ScalarNode, event.value, event.implicit) in _NUMBERS


def _build(
    node: yaml.Node, path: Path_, loader: Any, source: PlanSource, problems: list[Problem]
) -> Any:
    source.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                problems.append(
                    Problem(
                        "a mapping key must be a plain scalar",
                        file=source.file,
                        line=key_node.start_mark.line + 1,
                        column=key_node.start_mark.column + 1,
                    )
                )
                continue
            child = (*path, key)
            if key in result:
                problems.append(
                    Problem(
                        f"duplicate key {key!r}",
                        file=source.file,
                        line=key_node.start_mark.line + 1,
                        column=key_node.start_mark.column + 1,
                    )
                )
            source.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _build(value_node, child, loader, source, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, index), loader, source, problems)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)
