"""What the web page's browser tests stand on: a real ``dagentic serve`` in a process of
its own (a temporary journal, runs folder and plan folder; on 127.0.0.1, port 0) and
Debian's Chromium (``/usr/bin/chromium``, installed by ``scripts/setup.sh``) driven by
Playwright, one of each per test module.

The server is :func:`dagentic.serve.server.serve`, as ``dagentic serve`` runs it, with
two of the tests' small tools (tests/tools.py) besides the installed ones, so that plans
can take a known time (and return a given value) or fail::

    python -m tests.serve.browser      # prints "READY URL TOKEN" once it listens

Screenshots go to ``tests/artifacts/`` (not in git), with the server's log.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.tools import fail, sleep

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# As root, with no network but loopback: no sandbox (it needs user namespaces the
# container may not give), and nothing that calls home at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
START_TIMEOUT = 30.0  # seconds for the server to listen (imports, journal, plugins)


def main() -> None:
    """The server: as ``dagentic serve --host 127.0.0.1 --port 0``, with test.sleep and
    test.fail."""
    from dagentic import Settings, ToolRegistry, load_tools
    from dagentic.serve.server import serve

    def ready(url: str, token: str | None) -> None:
        print(f"READY {url} {token}", flush=True)

    tools = ToolRegistry([*load_tools(), sleep, fail])
    serve(Settings(), host="127.0.0.1", port=0, tools=tools, on_ready=ready)


# -- the server, from the tests' side ------------------------------------------------------


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT/
    token: str
    root: Path  # its working folder: plans/, runs/
    process: subprocess.Popen[str]
    reader: threading.Thread  # keeps its output in `log`
    log: list[str] = field(default_factory=list)

    def page_url(self, token: str | None = None) -> str:
        """The address ``dagentic serve`` prints: the page with its token."""
        return f"{self.url}?token={self.token if token is None else token}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API directly (to check what the page did)."""
        import httpx

        response = httpx.request(
            method,
            self.url.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()


def write_plans(folder: Path, plans: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in plans.items():
        (folder / f"{name}.yaml").write_text(text)


@dataclass
class Launched:
    """A server process started, perhaps not listening yet (:meth:`ready` waits)."""

    root: Path
    process: subprocess.Popen[str]
    reader: threading.Thread  # keeps its output in `log`, and its lines in `lines`
    lines: queue.Queue[str | None]
    log: list[str]
    served: Served | None = None

    def ready(self) -> Served:
        """Wait until it listens: its address and token, as it printed them."""
        deadline = time.monotonic() + START_TIMEOUT
        while self.served is None:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = None
            if line is None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start:\n" + "".join(self.log))
            if line.startswith("READY "):
                _, url, token = line.split()
                self.served = Served(url, token, self.root, self.process, self.reader, self.log)
        return self.served

    def stop(self) -> None:
        """SIGTERM (a clean stop: runs are handed back to the journal), then SIGKILL."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.reader.join(timeout=10)  # the rest of its output, up to the end of the pipe
        if process.stdout is not None and not self.reader.is_alive():
            process.stdout.close()


def launch_server(root: Path, plans: dict[str, str]) -> Launched:
    """Start the server in ``root`` (its plans in ``root/plans``, runs in ``root/runs``);
    :meth:`Launched.ready` waits until it listens (start a browser meanwhile)."""
    write_plans(root / "plans", plans)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGENTIC_")}
    env.update(
        DAGENTIC_RUNS_DIR=str(root / "runs"),
        DAGENTIC_LIBRARY__FOLDERS=json.dumps([str(root / "plans")]),
        DAGENTIC_TRACING__METRICS="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.serve.browser"],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:  # the server's output, kept for its log (and read for READY)
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return Launched(root, process, reader, lines, log)


# -- the browser -----------------------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (one per test module)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), (
        f"{CHROMIUM} is missing: scripts/setup.sh installs it (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page, and what went wrong in it: uncaught errors, console errors, dialogs."""

    page: Any
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def open_page(browser: Any, width: int = 1280, height: int = 900) -> Watched:
    """A new page in a context of its own (its own sessionStorage), watched."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(15_000)

    page = context.new_page()
    watched = Watched(page)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on(
        "console",
        lambda message: watched.console.append(message.text) if message.type == "error" else None,
    )

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return watched


if __name__ == "__main__":
    main()
