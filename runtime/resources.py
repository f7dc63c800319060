"""What one tool call needs of a cluster node (the Ray backend): ``num_cpus``, ``memory``
in bytes, and custom resources a cluster's nodes declare (``docker: 1``, say). Declared
with ``@tool(resources=...)`` and overridden per step with ``resources:`` in a plan."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["resource_problems"]

RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")


def resource_problems(resources: Mapping[str, Any]) -> list[str]:
    """What is wrong with a map of resources (``num_cpus``, ``memory`` in bytes, custom
    names) one call needs: names and non-negative numbers."""
    problems = []
    for name, amount in resources.items():
        if not isinstance(name, str) or not RESOURCE_NAME.match(name):
            problems.append(f"resource name {name!r} is not a name (letters, digits, _ : . -)")
        elif isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            problems.append(f"resource '{name}' must be a number 0 or more, not {amount!r}")
        elif name == "memory" and amount != int(amount):
            problems.append(f"resource 'memory' is in bytes, a whole number, not {amount!r}")
    return problems
