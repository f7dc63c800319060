"""``dagentic serve``: the HTTP API and web page (:mod:`dagentic.serve`). Only this command
loads FastAPI and uvicorn (the ``serve`` extra); ``dagentic --help`` loads typer only."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["serve"]

INVALID = 2
FAILED = 1


def serve(
    host: Annotated[
        str | None,
        typer.Option("--host", help="The address to listen on (default: serve.host, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="The port (default: serve.port, 8321; 0: any free one).",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and the web page: start runs, follow them live, decide approvals.

    Prints the page's address once, with the token every request needs (made anew at each
    start unless serve.token is set). Listening beyond loopback needs serve.token. Runs
    started here live in the durable journal: they go on after a restart. Stop with
    Ctrl-C (or SIGTERM); the runs it was running are left for the next start, or
    `dagentic resume`. Exit 2 if refused, 1 if the journal or the address cannot be used."""
    from .cli_runs import _fail, _tools
    from .display import safe_text
    from .errors import DagenticError, JournalError
    from .settings import Settings

    try:
        from .serve import server
        from .serve.security import refuse_exposed
    except ImportError as exc:
        raise _fail(
            f"dagentic serve needs the serve extra ({exc.name} is missing): pip install "
            "'dagentic[serve]'"
        ) from exc
    settings = Settings()
    host = host if host is not None else settings.serve.host
    port = port if port is not None else settings.serve.port
    refused = refuse_exposed(host, settings.serve.token is not None)
    if refused is not None:
        raise _fail(refused)
    tools = _tools()

    def ready(url: str, token: str | None) -> None:
        if token is None:
            print(
                safe_text(f"dagentic serve: {url} (token: the serve.token setting)", one_line=True)
            )
        else:
            print(safe_text(f"dagentic serve: {url}?token={token}", one_line=True))
            print("  (the token is new at each start; set serve.token to keep one)")
        print("  Ctrl-C stops; runs go on at the next start", flush=True)

    try:
        server.serve(settings, host=host, port=port, tools=tools, on_ready=ready)
    except server.ServeRefused as exc:
        raise _fail(exc.message) from exc
    except JournalError as exc:
        raise _fail(exc.message, FAILED) from exc
    except DagenticError as exc:
        raise _fail(exc.message) from exc
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", FAILED) from exc
