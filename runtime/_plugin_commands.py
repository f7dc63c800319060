"""The command groups that the installed plugins add to ``dagentic``, read from the plugins'
source instead of imported: ``dagentic --help`` lists them without loading any plugin (a
plugin imports pydantic, its tools and settings: most of what the help would take).

Only the plain declaration is read: a plugin module (an entry point naming a module)
whose ``register_commands`` hook, marked ``@hookimpl``, is ``return [group, ...]``, each
``group`` a module-level ``typer.Typer(...)`` made with literal keyword arguments, then
only given commands (``@group.command(...)``, ``group.add_typer(...)``). What the hook
returns can then be read without running it. A module whose source does not mention
``register_commands`` (and imports no ``*``) registers no command group.

Anything else cannot be read so (an entry point naming an object, a compiled module, a
hook that computes its answer or imports it, a group made elsewhere or changed after it
is made, two groups of one name): :func:`declared_commands` then answers None, and the
caller loads the plugins (:func:`dagentic.plugin_manager.load_commands`), as running a
plugin's command always does. A plugin that fails to load, or implements a hook dagentic
does not have, is reported by the commands that load the plugins, not by the help.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from importlib.machinery import PathFinder
from importlib.util import find_spec
from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "Unreadable",
    "declared_commands",
    "declared_in",
    "entry_points_of",
    "read_declared",
]

ENTRY_POINT_GROUP = "dagentic.plugins"  # dagentic.plugin_manager's (which loads pydantic)

HOOK = "register_commands"
# typer.Typer's arguments that a declared group may be made with: what the help shows of
# it, and how it behaves when run (the plugin's own group runs, never the stand-in).
OPTIONS = frozenset(
    {
        "name",
        "help",
        "short_help",
        "epilog",
        "hidden",
        "deprecated",
        "rich_help_panel",
        "rich_markup_mode",
        "no_args_is_help",
        "invoke_without_command",
        "add_help_option",
        "options_metavar",
        "chain",
        "context_settings",
        "add_completion",
        "suggest_commands",
    }
)
# What may be done to a declared group afterwards: give it commands.
USES = frozenset({"command", "add_typer"})
_STAR_IMPORT = re.compile(rb"\bimport\s*\(?\s*\*")


class Unreadable(Exception):
    """A plugin's command groups cannot be read from its source: load it."""


def declared_commands(group: str = ENTRY_POINT_GROUP) -> dict[str, dict[str, Any]] | None:
    """The command groups the plugins of entry-point ``group`` declare, by name, each as
    the keyword arguments of its ``typer.Typer(...)``; None if some plugin's cannot be
    read from its source (then load the plugins)."""
    found: dict[str, dict[str, Any]] = {}
    plugins: set[str] = set()
    for name, value in sorted(entry_points_of(group), key=lambda e: e[0]):
        if name in plugins:  # as make_plugin_manager(): the first of a name is the plugin
            continue
        plugins.add(name)
        try:
            declared = declared_in(value)
        except Exception:  # noqa: BLE001 - loading the plugins reports what is wrong
            return None
        for options in declared:
            if options["name"] in found:  # loading them says which plugins
                return None
            found[options["name"]] = options
    return found


def entry_points_of(group: str) -> list[tuple[str, str]]:
    """``(name, value)`` of the entry points of ``group``, those that
    ``importlib.metadata.entry_points(group=group)`` gives, in its order: the first
    distribution of each name on ``sys.path``, its ``entry_points.txt`` read here. Importing
    importlib.metadata (email, zipfile, csv) would take longer than listing the commands.
    Where it would find distributions otherwise (in a zip or an egg on ``sys.path``, from a
    finder of its own on ``sys.meta_path``), importlib.metadata answers."""
    if any(
        hasattr(finder, "find_distributions") and finder is not PathFinder
        for finder in sys.meta_path
    ):
        return _entry_points_from_metadata(group)
    seen: set[str] = set()
    found = []
    for entry in sys.path:
        if not isinstance(entry, str):
            return _entry_points_from_metadata(group)
        folder = entry or "."
        try:
            children = os.listdir(folder)
        except OSError:
            if os.path.isfile(folder):  # a zip
                return _entry_points_from_metadata(group)
            continue
        if os.path.basename(folder).lower().endswith(".egg"):
            return _entry_points_from_metadata(group)
        infos: dict[str, list[str]] = {}
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                name = low.rpartition(".")[0].partition("-")[0]
                infos.setdefault(re.sub(r"[-_.]+", "_", name), []).append(child)
        for normalized, dists in infos.items():
            if normalized in seen:
                continue
            seen.add(normalized)
            try:
                with open(
                    os.path.join(folder, dists[0], "entry_points.txt"), encoding="utf-8"
                ) as file:
                    text = file.read()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
                continue
            found += _entry_points_in(text, group)
    return found


def _entry_points_in(text: str, group: str) -> list[tuple[str, str]]:
    """The entry points of ``group`` in the text of an ``entry_points.txt``, read as
    importlib.metadata reads it (a line without ``=`` is its ValueError)."""
    found = []
    section = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section is not None:
            name, value = line.split("=", 1)
            if section == group:
                found.append((name.strip(), value.strip()))
    return found


def _entry_points_from_metadata(group: str) -> list[tuple[str, str]]:
    from importlib.metadata import entry_points

    return [(ep.name, ep.value) for ep in entry_points(group=group)]


def declared_in(value: str) -> list[dict[str, Any]]:
    """The command groups that the plugin of entry-point value ``value`` (a module's
    dotted name) declares, as the keyword arguments of their ``typer.Typer(...)``; raises
    :class:`Unreadable` if its source does not say them plainly. Finding the module
    imports its parent packages, not the module."""
    module, colon, _ = value.partition(":")
    if colon:
        raise Unreadable(f"{value}: an object in a module")
    spec = find_spec(module.strip())
    if spec is None or not spec.has_location or not (spec.origin or "").endswith(".py"):
        raise Unreadable(f"{value}: no Python source")
    with open(spec.origin or "", "rb") as file:
        source = file.read()
    return read_declared(source, spec.origin or value)


def read_declared(source: bytes | str, filename: str = "<plugin>") -> list[dict[str, Any]]:
    """The command groups a plugin module's ``source`` declares (see the module's
    docstring); raises :class:`Unreadable` (or SyntaxError) if it does not say them
    plainly."""
    raw = source.encode() if isinstance(source, str) else source
    if HOOK.encode() not in raw and not _STAR_IMPORT.search(raw):
        return []
    tree = ast.parse(source, filename=filename)
    bindings = _bindings(tree)
    hook = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == HOOK), None)
    if _star_imported(tree):
        raise Unreadable(f"{filename}: imports *")
    if hook is None and HOOK not in bindings:  # only mentioned (a comment, a docstring)
        return []
    if hook is None or bindings[HOOK] != 1:
        raise Unreadable(f"{filename}: {HOOK} is not a plain function")
    if not _is_hookimpl(hook) or _takes_arguments(hook.args):
        raise Unreadable(f"{filename}: {HOOK} is not a plain hook")
    names = _returned_names(hook)
    if not names:
        return []
    typer_names = _typer_imports(tree, bindings)
    uses = _uses(tree)
    groups = []
    for name in names:
        call = _assigned_call(tree, name)
        if call is None or bindings.get(name, 0) != 1 or not _makes_typer(call, typer_names):
            raise Unreadable(f"{filename}: {name} is not a plain typer.Typer(...)")
        if any(use != ("return", hook) and use[0] not in USES for use in uses.get(name, [])):
            raise Unreadable(f"{filename}: {name} is changed or passed on")
        groups.append(_options(call, filename))
    return groups


def _bindings(tree: ast.AST) -> dict[str, int]:
    """How many times each name is bound anywhere in ``tree`` (assigned, defined,
    imported, deleted, declared global), whatever the scope."""
    counts: dict[str, int] = {}

    def bind(name: str | None) -> None:
        if name:
            counts[name] = counts.get(name, 0) + 1

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bind(node.name)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bind(node.id)
        elif isinstance(node, ast.alias):
            bind(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.Global | ast.Nonlocal):
            for name in node.names:
                bind(name)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
            bind(node.name)
        elif isinstance(node, ast.MatchMapping):
            bind(node.rest)
        elif isinstance(node, ast.arg):
            bind(node.arg)
    return counts


def _star_imported(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
        for node in ast.walk(tree)
    )


def _is_hookimpl(hook: ast.FunctionDef) -> bool:
    """Marked with a bare ``@hookimpl`` (or ``@something.hookimpl``)."""
    if len(hook.decorator_list) != 1:
        return False
    marker = hook.decorator_list[0]
    return (isinstance(marker, ast.Name) and marker.id == "hookimpl") or (
        isinstance(marker, ast.Attribute) and marker.attr == "hookimpl"
    )


def _takes_arguments(args: ast.arguments) -> bool:
    return bool(args.posonlyargs or args.args or args.kwonlyargs or args.vararg or args.kwarg)


def _returned_names(hook: ast.FunctionDef) -> list[str]:
    """The names in the hook's one statement, ``return [a, b]`` (after its docstring);
    raises Unreadable for any other body."""
    body = hook.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        raise Unreadable(f"{HOOK} does more than return its groups")
    value = body[0].value
    if value is None or (isinstance(value, ast.Constant) and value.value is None):
        return []
    if not isinstance(value, ast.List | ast.Tuple) or not all(
        isinstance(e, ast.Name) for e in value.elts
    ):
        raise Unreadable(f"{HOOK} does not return a list of names")
    return [e.id for e in value.elts if isinstance(e, ast.Name)]


def _typer_imports(tree: ast.Module, bindings: dict[str, int]) -> dict[str, str]:
    """The module-level names bound once to typer (``"module"``) or typer.Typer
    (``"class"``)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "typer":
                    found[alias.asname or "typer"] = "module"
        elif isinstance(node, ast.ImportFrom) and node.module == "typer" and not node.level:
            for alias in node.names:
                if alias.name == "Typer":
                    found[alias.asname or "Typer"] = "class"
    return {name: kind for name, kind in found.items() if bindings.get(name) == 1}


def _assigned_call(tree: ast.Module, name: str) -> ast.Call | None:
    """The call whose value a module-level statement assigns to ``name`` alone."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == name:
            return value if isinstance(value, ast.Call) else None
    return None


def _makes_typer(call: ast.Call, typer_names: dict[str, str]) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return typer_names.get(func.id) == "class"
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "Typer"
        and isinstance(func.value, ast.Name)
        and typer_names.get(func.value.id) == "module"
    )


def _uses(tree: ast.Module) -> dict[str, list[tuple[str, ast.AST | None]]]:
    """Each read of a name: ``("return", hook)`` in the return statement of a function,
    ``(method, None)`` for a call of one of its methods, ``("other", None)`` else."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses: dict[str, list[tuple[str, ast.AST | None]]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)):
            continue
        parent = parents.get(node)
        use: tuple[str, ast.AST | None] = ("other", None)
        if isinstance(parent, ast.List | ast.Tuple):
            statement = parents.get(parent)
            if isinstance(statement, ast.Return):
                use = ("return", parents.get(statement))
        elif isinstance(parent, ast.Attribute) and parent.value is node:
            call = parents.get(parent)
            if isinstance(call, ast.Call) and call.func is parent:
                use = (parent.attr, None)
        uses.setdefault(node.id, []).append(use)
    return uses


def _options(call: ast.Call, filename: str) -> dict[str, Any]:
    """The literal keyword arguments of ``typer.Typer(...)``, with a name."""
    if call.args:
        raise Unreadable(f"{filename}: typer.Typer() with positional arguments")
    options = {}
    for keyword in call.keywords:
        if keyword.arg not in OPTIONS:  # None: **options
            raise Unreadable(f"{filename}: typer.Typer({keyword.arg}=...)")
        try:
            options[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            raise Unreadable(f"{filename}: typer.Typer({keyword.arg}=...) is computed") from None
    name = options.get("name")
    if not isinstance(name, str) or not name:
        raise Unreadable(f"{filename}: typer.Typer() without a name")
    return options
