"""The plan library at the command line: ``dagentic plans list|show|forget``, and
``dagentic feedback RUN_ID good|bad`` (which moves library plans up or out of routing).

Everything shown that came from a plan file or a model (names, goals, descriptions, the
plan's text, notes) is printed as data (:mod:`.display`). What a command needs loads inside
it: ``dagentic --help`` loads typer only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from .library import Library

__all__ = ["feedback", "plans_app"]

plans_app = typer.Typer(
    name="plans",
    help="The plan library: plan files of library.folders and the plans `dagentic ask` saved.",
    no_args_is_help=True,
)

INVALID = 2  # the command line is invalid (an unknown name, say)
FAILED = 1  # the library or the journal cannot be used


class Verdict(StrEnum):
    good = "good"
    bad = "bad"


def _fail(message: str, code: int = INVALID) -> typer.Exit:
    from rich.console import Console

    from .display import safe_markup

    Console(stderr=True, soft_wrap=True).print(
        f"[red]error:[/red] {safe_markup(message)}", highlight=False
    )
    return typer.Exit(code)


def _library() -> tuple[Library, dict[str, tuple[int, int]]]:
    """The library of the settings, and the feedback counts per plan (none when the
    journal is off)."""
    from .durable import open_journal
    from .errors import JournalError
    from .library import library_from_settings
    from .settings import Settings

    settings = Settings()
    counts: dict[str, tuple[int, int]] = {}
    try:
        journal = open_journal(settings)
        if journal is not None:
            counts = journal.store.feedback_by_plan()
    except JournalError as exc:
        raise _fail(exc.message, FAILED) from exc
    return library_from_settings(settings), counts


@plans_app.command("list")
def list_plans(
    as_json: Annotated[bool, typer.Option("--json", help="Print the plans as JSON.")] = False,
) -> None:
    """Every plan of the library: its name, where it comes from (a folder, or saved by
    `dagentic ask`), its inputs, the feedback on its runs, and what it does."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from .display import safe_json, safe_text

    library, counts = _library()
    entries = library.plans()
    for entry in entries:
        entry.good, entry.bad = counts.get(entry.name, (0, 0))
    if as_json:
        print(safe_json({"plans": [e.to_dict() for e in entries], "problems": library.problems}))
        return
    console = Console(soft_wrap=True)
    if not entries:
        folders = ", ".join(str(f) for f in library.folders)
        console.print(
            Text(safe_text(f"the library is empty: no plan in {folders} or {library.saved}"))
        )
    else:
        rows = [
            [
                safe_text(entry.name, one_line=True),
                "saved" if entry.saved else "folder",
                safe_text(", ".join(entry.plan.inputs) or "-", one_line=True, limit=40),
                f"+{entry.good} -{entry.bad}" + ("" if entry.routable else " (not routed)"),
                safe_text(entry.summary(), one_line=True, limit=90),
            ]
            for entry in entries
        ]
        headers = ["plan", "source", "inputs", "feedback", "goal"]
        widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(4)]
        table = Table(box=None, pad_edge=False)
        for header, width in zip(headers, widths, strict=False):
            table.add_column(header, no_wrap=True, min_width=width)
        # the goal takes what is left, one line a plan
        left = max(console.width - sum(widths) - 2 * len(widths), 12)
        table.add_column("goal", no_wrap=True, overflow="ellipsis", max_width=left)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
    for problem in library.problems:
        Console(stderr=True, soft_wrap=True).print(Text(safe_text(f"skipped: {problem}")))


@plans_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The plan's name, as `dagentic plans list` shows.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """A plan of the library: where it is, where it came from, and its plan file."""
    from rich.console import Console
    from rich.text import Text

    from .display import safe_json, safe_text
    from .library import LibraryError

    library, counts = _library()
    try:
        entry = library.get(name)
    except LibraryError as exc:
        raise _fail(exc.message) from exc
    entry.good, entry.bad = counts.get(entry.name, (0, 0))
    try:
        text = entry.path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {entry.path}: {exc}", FAILED) from exc
    if as_json:
        print(safe_json({**entry.to_dict(), "text": text}))
        return
    console = Console(soft_wrap=True)
    lines = [
        f"plan: {entry.name}",
        f"file: {entry.path}",
        f"source: {'saved by dagentic ask' if entry.saved else 'library folder'}",
        f"feedback: {entry.good} good, {entry.bad} bad"
        + ("" if entry.routable else " (not offered to the router)"),
    ]
    lines += [f"{key}: {value}" for key, value in entry.provenance.items()]
    for line in lines:
        console.print(Text(safe_text(line, one_line=True)))
    console.print()
    console.print(Text(safe_text(text)))


@plans_app.command("forget")
def forget(
    name: Annotated[str, typer.Argument(help="The saved plan's name.")],
) -> None:
    """Remove a plan `dagentic ask` saved from the library (a plan file of a library
    folder is yours: move or delete the file)."""
    from rich.console import Console
    from rich.text import Text

    from .display import safe_text
    from .library import LibraryError

    library, _ = _library()
    try:
        entry = library.forget(name)
    except LibraryError as exc:
        raise _fail(exc.message) from exc
    except OSError as exc:
        raise _fail(f"cannot remove plan '{name}': {exc}", FAILED) from exc
    Console(soft_wrap=True).print(
        Text(safe_text(f"forgot plan '{entry.name}' (removed {entry.path})"))
    )


def feedback(
    run_id: Annotated[
        str, typer.Argument(help="The run (or the start of its id), as `dagentic ask` prints it.")
    ],
    verdict: Annotated[Verdict, typer.Argument(help="good or bad.")],
    note: Annotated[str | None, typer.Option(help="Why, in a few words.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was stored as JSON.")] = False,
) -> None:
    """Say a run's outcome was good or bad. It is stored with the run; a library plan
    with more bad than good feedback is no longer offered to the router, and good feedback
    ranks it higher. `dagentic report` counts it."""
    from rich.console import Console
    from rich.text import Text

    from .cli_runs import find_run, open_run_store
    from .display import safe_json, safe_text
    from .errors import JournalError
    from .feedback import give_feedback

    store = open_run_store()
    found = store.find_runs(run_id) if run_id and store.run(run_id) is None else []
    if found:  # an agent run's id starts its plan runs' ids too: the agent run is meant
        runs = [store.run(f) for f in found]
        parents = {r.parent_id for r in runs if r is not None and r.parent_id}
        if len(parents) == 1 and all(
            r is None or r.run_id in parents or r.parent_id in parents for r in runs
        ):
            run_id = parents.pop()
    record = find_run(store, run_id)
    try:
        given: Any = give_feedback(store, record.run_id, verdict.value, note)
    except JournalError as exc:
        raise _fail(exc.message, FAILED) from exc
    if as_json:
        print(safe_json(given.to_dict()))
        return
    about = f" (library plan '{given.plan}')" if given.plan else ""
    Console(soft_wrap=True).print(
        Text(safe_text(f"recorded: run {given.run_id} was {given.verdict}{about}"))
    )
