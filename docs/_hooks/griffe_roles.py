"""Griffe extension: the docstrings' reStructuredText shown as Markdown. Roles
(``:class:`~dagentic.Plan```, ``:meth:`run```) become code (`Plan`, `run`), and a line
ending in ``::`` before a literal block ends in ``:`` (the indented block is code anyway)."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?[a-z]+:`~?(?:[\w.]*\.)?([^`.]+)`")
LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)


class RestToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = ROLE.sub(r"`\1`", obj.docstring.value)
            obj.docstring.value = LITERAL_BLOCK.sub(":", value)
