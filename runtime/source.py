"""Reading plan files: YAML with the line and column of every key and value.

A :class:`PlanSource` keeps the raw data next to a map from each node's path (such as
``("steps", 2, "tool")``) to its position, so every validation problem can be reported as
``file:line:col: message``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import Problem

__all__ = ["PlanSource", "read_plan_source"]

Path_ = tuple[str | int, ...]
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BOOL = "tag:yaml.org,2002:bool"


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
    problems come back next to whatever could be read."""
    file = str(path) if path is not None else name
    if text is None:
        if path is None:
            raise TypeError("read_plan_source() needs a path or text")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return PlanSource(None, file), [Problem(f"cannot read plan file: {reason}", file=file)]
    source = PlanSource(None, file)
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
