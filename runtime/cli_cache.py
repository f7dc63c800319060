"""The caches at the command line: ``dagentic cache stats`` (what the model-response and
tool-result caches hold, and how often they answered) and ``dagentic cache clear``.

The cache file's path comes from the settings and is printed as data (:mod:`.display`).
What a command needs loads inside it: ``dagentic --help`` loads typer only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from .cache import Cache

__all__ = ["cache_app"]

cache_app = typer.Typer(
    name="cache",
    help="What the model-response and tool-result caches hold; empty them.",
    no_args_is_help=True,
)

INVALID = 2  # the command line is invalid
FAILED = 1  # the cache cannot be used


class Kind(StrEnum):
    model = "model"
    tool = "tool"


def _fail(message: str, code: int = FAILED) -> typer.Exit:
    from rich.console import Console

    from .display import safe_markup

    Console(stderr=True, soft_wrap=True).print(
        f"[red]error:[/red] {safe_markup(message)}", highlight=False
    )
    return typer.Exit(code)


def _open() -> Cache:
    """The cache of the settings; exits 1 when it is off or cannot be opened."""
    from .cache import open_cache
    from .errors import DagenticError
    from .settings import Settings

    try:
        cache = open_cache(Settings())
    except DagenticError as exc:
        raise _fail(exc.message) from exc
    if cache is None:
        raise _fail(
            "the caches are off (cache.enabled is false): there is nothing to show or clear"
        )
    return cache


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:g} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size:.1f} GB"


@cache_app.command("stats")
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Per cache (model, tool): entries held, their size, and the hits, misses and stores
    since it was last cleared."""
    from rich.console import Console
    from rich.table import Table

    from .display import safe_json, safe_markup

    cache = _open()
    found = cache.stats()
    if as_json:
        print(
            safe_json(
                {
                    "path": str(cache.path),
                    "caches": {
                        s.kind: {
                            "entries": s.entries,
                            "bytes": s.size,
                            "hits": s.hits,
                            "misses": s.misses,
                            "stores": s.stores,
                        }
                        for s in found
                    },
                }
            )
        )
        return
    table = Table(title=None, box=None, pad_edge=False)
    for column in ("cache", "entries", "size", "hits", "misses", "stores", "hit rate"):
        table.add_column(column, justify="left" if column == "cache" else "right")
    for s in found:
        asked = s.hits + s.misses
        rate = f"{s.hits / asked:.0%}" if asked else "-"
        table.add_row(
            s.kind, str(s.entries), _size(s.size), str(s.hits), str(s.misses), str(s.stores), rate
        )
    console = Console(soft_wrap=True)
    console.print(safe_markup(f"cache file: {cache.path}", one_line=True), highlight=False)
    console.print(table)


@cache_app.command("clear")
def clear(
    kind: Annotated[
        Kind | None,
        typer.Argument(help="Only this cache: model or tool (default: both)."),
    ] = None,
) -> None:
    """Remove every entry (of one cache) and reset its counts."""
    from rich.console import Console

    from .display import safe_markup

    cache = _open()
    removed = cache.clear(kind.value if kind else None)
    what = f"the {kind.value} cache" if kind else "the caches"
    Console(soft_wrap=True).print(
        safe_markup(f"cleared {what}: {removed} entr{'y' if removed == 1 else 'ies'} removed"),
        highlight=False,
    )
