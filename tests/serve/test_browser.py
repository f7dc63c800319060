"""The web page of ``dagentic serve`` in a real browser (Debian's headless Chromium, driven
by Playwright) against a real server: a run started from the page and followed live, a
step approved from the approvals page while the run's page watches it finish, failures
and the report, the token, and output that holds markup shown as text. Screenshots go to
tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serve.browser import (
    ARTIFACTS,
    Launched,
    Served,
    Watched,
    chromium,
    launch_server,
    open_page,
)

pytestmark = pytest.mark.slow

XSS = "<img src=x onerror=alert(1)>"
PLANS = {
    "steps": """
version: 1
name: steps
description: Four steps that take a moment each; two of them pass on a label.
inputs:
  nap: {type: number, default: 0.3, description: seconds the slow steps sleep}
  label: {type: string, default: "plain"}
steps:
  - {id: fetch, tool: test.sleep, args: {seconds: "${{ inputs.nap }}"}}
  - id: left
    tool: test.sleep
    needs: [fetch]
    args: {seconds: "${{ inputs.nap }}", value: "${{ inputs.label }}"}
  - {id: right, tool: test.sleep, needs: [fetch], args: {seconds: 0.05}}
  - id: merge
    tool: test.sleep
    needs: [left, right]
    args: {seconds: "${{ inputs.nap }}", value: "${{ steps.left.output }}"}
outputs:
  shown: ${{ steps.merge.output }}
""",
    "approve": """
version: 1
name: approve
description: A post waits for a person before the last step runs.
steps:
  - {id: prepare, tool: test.sleep, args: {seconds: 0.2, value: "West led 2026Q3"}}
  - id: publish
    tool: notify.log
    approval: required
    args: {message: "announce: ${{ steps.prepare.output }}"}
  - {id: after, tool: test.sleep, needs: [publish], args: {seconds: 0.2, value: done}}
""",
    "broken": """
version: 1
name: broken
description: The second step fails; the third is skipped.
steps:
  - {id: fine, tool: test.sleep, args: {seconds: 0.05}}
  - {id: boom, tool: test.fail, needs: [fine], args: {message: "the disk is full"}}
  - {id: later, tool: test.sleep, needs: [boom], args: {seconds: 0.05}}
""",
}

PASTED = """version: 1
name: pasted
inputs: {who: {type: string}}
steps:
  - {id: hello, tool: notify.log, args: {message: "hi ${{ inputs.who }}"}}
"""

# Every state each node of the graph shows, in order, per step: from the moment the node
# is made, through every change of it in place (a MutationObserver sees each one, however
# close together the run's events come).
WATCH_GRAPH = """() => {
  window.__states = {};
  const seen = (node) => {
    const list = (window.__states[node.dataset.step] ||= []);
    if (list[list.length - 1] !== node.dataset.state) list.push(node.dataset.state);
  };
  new MutationObserver((changes) => {
    for (const change of changes) {
      if (change.type === "attributes" && change.target.matches("#graph g.node")) seen(change.target);
      for (const added of change.addedNodes) {
        if (added.querySelectorAll) added.querySelectorAll("#graph g.node").forEach(seen);
      }
    }
  }).observe(document.getElementById("main"), {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"],
  });
}"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    server = launch_server(tmp_path_factory.mktemp("serve"), PLANS)
    try:
        yield server
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "browser-server.log").write_text("".join(server.log))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def served(launched: Launched, browser: Any) -> Served:
    """The server, listening (it starts while the browser does)."""
    return launched.ready()


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    """A page at a laptop's width; nothing may go wrong in it (no uncaught error, no
    console error, no dialog)."""
    page = open_page(browser)
    try:
        yield page
    finally:
        page.page.context.close()
    assert page.errors == [], page.errors
    assert page.console == [], page.console
    assert page.dialogs == [], page.dialogs


def start_from_page(page: Any, plan: str, **inputs: str) -> str:
    """Choose ``plan`` in the form, fill its inputs, start it; the new run's id."""
    page.locator(f'#plan-select option[value="{plan}"]').wait_for(state="attached")
    page.select_option("#plan-select", plan)
    for name, value in inputs.items():
        page.fill(f"#input-{name}", value)
    page.click("#start-run")
    page.wait_for_url(re.compile(r"#/runs/[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


STATIC = Path(__file__).resolve().parents[2] / "runtime" / "serve" / "static"


def test_the_page_is_its_own_files_and_never_parses_markup_from_data() -> None:
    files = {p.name: p.read_text(encoding="utf-8") for p in STATIC.iterdir() if p.is_file()}
    assert {"index.html", "app.js", "style.css"} <= set(files)
    for name, text in files.items():
        # Nothing from another host: no address but the server's own paths.
        assert not re.search(
            r"(https?:)?//[a-z0-9]", re.sub(r"http://www\.w3\.org/2000/svg", "", text)
        ), name
        if name.endswith(".js"):
            # Data goes in as text (dom.js's h and s): never as markup, never as code.
            assert not re.search(
                r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function",
                text.replace("(no innerHTML, insertAdjacentHTML or the like)", ""),
            ), name
            imports = re.findall(r'^import .* from "([^"]+)";$', text, re.M)
            assert all(i.startswith("./") and i.endswith(".js") for i in imports), (name, imports)
    page = files["index.html"]
    assert re.findall(r'(?:src|href)="([^"#][^"]*)"', page) == [
        "/static/favicon.svg",
        "/static/style.css",
        "/static/app.js",
    ]
    assert "<script>" not in page and "<style" not in page and " style=" not in page


def test_a_run_started_from_the_page_is_followed_live(served: Served, watched: Watched) -> None:
    page = watched.page
    page.goto(served.page_url())
    # The token leaves the address bar (history, bookmarks) for this tab's storage.
    assert page.url == served.url
    assert page.evaluate("sessionStorage.getItem('dagentic.token')") == served.token
    page.evaluate("window.__sameDocument = true")
    page.evaluate(WATCH_GRAPH)

    run_id = start_from_page(page, "steps", nap="0.4", label=XSS)
    merge = page.locator('#graph g.node[data-step="merge"]')
    handle = merge.element_handle()
    # The last step turns running, then succeeded, through the run's events: the same
    # element changes class, in the same document (nothing reloads).
    page.wait_for_function("() => window.__states.merge?.includes('running')")
    watched.screenshot("browser-run-live")
    expect(merge).to_have_class(re.compile(r"\bstate-succeeded\b"), timeout=20_000)
    expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
    assert handle is not None and "state-succeeded" in (handle.get_attribute("class") or "")
    assert page.evaluate("window.__sameDocument") is True
    states = page.evaluate("window.__states")
    assert states["merge"][0] == "pending", states  # it was drawn before it ran
    assert states["merge"][-2:] == ["running", "succeeded"], states
    for step in ("fetch", "left", "right", "merge"):
        expect(page.locator(f'#graph g.node[data-step="{step}"]')).to_have_class(
            re.compile(r"\bstate-succeeded\b")
        )

    # The timeline with the critical path (right is the short branch), outputs, usage.
    expect(page.locator("#critical-path")).to_contain_text("fetch → left → merge")
    expect(page.locator("#timeline .gantt-row.critical")).to_have_count(3)
    expect(page.locator('#timeline .gantt-row[data-step="right"]')).not_to_have_class(
        re.compile("critical")
    )
    expect(page.locator("#graph g.node.critical")).to_have_count(3)

    # A tool's output that holds markup is shown as text: no element made of it, no alert.
    expect(page.locator("#outputs pre")).to_have_text(XSS)
    expect(page.locator('#steps-body tr[data-step="left"] pre')).to_have_text(XSS)
    page.locator('#graph g.node[data-step="merge"]').click()
    expect(page.locator("#step-detail pre")).to_have_text(XSS)
    assert page.locator("img").count() == 0
    assert served.api("GET", f"/api/runs/{run_id}")["outputs"] == {"shown": XSS}

    # The trace, read from the run's file.
    page.locator("#trace summary").click()
    expect(page.locator("#trace .trace-gantt .gantt-row").first).to_be_visible()
    expect(page.locator("#trace")).to_contain_text("Critical path")
    watched.screenshot("browser-run-finished")
    assert watched.dialogs == []


def test_a_step_approved_from_the_approvals_page_lets_the_run_finish(
    served: Served, watched: Watched
) -> None:
    page = watched.page
    page.goto(served.page_url())
    run_id = start_from_page(page, "approve")
    publish = page.locator('#graph g.node[data-step="publish"]')
    after = page.locator('#graph g.node[data-step="after"]')
    expect(publish).to_have_class(re.compile(r"\bstate-waiting\b"))
    expect(page.locator("#run-status")).to_have_attribute("data-status", "waiting")
    expect(after).to_have_class(re.compile(r"\bstate-pending\b"))
    expect(page.locator("#related")).to_contain_text("publish")
    watched.screenshot("browser-approval-waiting")

    # A second tab decides; the run's page, left open, sees the run go on and finish.
    other = page.context.new_page()
    other.on("pageerror", lambda error: watched.errors.append(str(error)))
    other.goto(served.page_url() + "#/approvals")
    card = other.locator(f'article.approval[data-run-id="{run_id}"]')
    expect(card).to_have_attribute("data-step", "publish")
    # The resolved arguments, to judge what the call would do.
    expect(card.locator("pre.args")).to_contain_text("announce: West led 2026Q3")
    expect(card).to_contain_text("notify.log")
    expect(other.locator("#approvals-count")).to_have_text(re.compile(r"[1-9]"))
    card.locator('input[name="reason"]').fill("checked the message")
    other.screenshot(path=str(ARTIFACTS / "browser-approvals.png"), full_page=True)
    card.get_by_role("button", name="Approve").click()
    expect(card).to_have_count(0)
    decided = other.locator("#decided li").first
    expect(decided).to_contain_text("approved")
    expect(decided).to_contain_text("checked the message")

    expect(page.locator("#run-status")).to_have_attribute(
        "data-status", "succeeded", timeout=20_000
    )
    expect(after).to_have_class(re.compile(r"\bstate-succeeded\b"))
    expect(publish).to_have_class(re.compile(r"\bstate-succeeded\b"))
    watched.screenshot("browser-approval-finished")
    other.close()
    assert served.api("GET", "/api/approvals") == []
    assert served.api("GET", f"/api/runs/{run_id}")["status"] == "succeeded"


def test_a_run_cancelled_and_a_step_denied_from_the_page(served: Served, watched: Watched) -> None:
    page = watched.page
    page.goto(served.page_url())
    run_id = start_from_page(page, "steps", nap="30")
    fetch = page.locator('#graph g.node[data-step="fetch"]')
    expect(fetch).to_have_class(re.compile(r"\bstate-running\b"))
    page.click("#cancel-run")  # the first click only arms it
    expect(page.locator("#cancel-run")).to_have_text("Click again to cancel")
    page.click("#cancel-run")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "cancelled")
    expect(fetch).to_have_class(re.compile(r"\bstate-cancelled\b"))
    expect(page.locator("#cancel-run")).to_have_count(0)
    assert served.api("GET", f"/api/runs/{run_id}")["status"] == "cancelled"

    page.evaluate("window.location.hash = '#/runs'")
    run_id = start_from_page(page, "approve")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "waiting")
    page.click("#to-approvals")
    card = page.locator(f'article.approval[data-run-id="{run_id}"]')
    card.locator('input[name="reason"]').fill("wrong audience")
    card.get_by_role("button", name="Deny").click()
    decided = page.locator(f'#decided li[data-approval^="{run_id}:"]')
    expect(decided).to_contain_text("denied")
    decided.get_by_role("link").click()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")
    failures = page.locator("#failures")
    expect(failures).to_contain_text("policy_blocked")
    expect(failures).to_contain_text("wrong audience")
    expect(page.locator('#graph g.node[data-step="after"]')).to_have_class(
        re.compile(r"\bstate-skipped\b")
    )
    watched.screenshot("browser-run-denied")


def test_failures_the_runs_list_and_the_report(served: Served, watched: Watched) -> None:
    page = watched.page
    page.goto(served.page_url())
    run_id = start_from_page(page, "broken")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")
    failures = page.locator("#failures")
    expect(failures).to_be_visible()
    expect(failures).to_contain_text("boom")
    expect(failures).to_contain_text("the disk is full")
    mode = served.api("GET", f"/api/runs/{run_id}")["failures"][0]["failure_mode"]
    expect(failures.locator(".mode").first).to_have_text(mode)
    expect(page.locator('#graph g.node[data-step="boom"]')).to_have_class(
        re.compile(r"\bstate-failed\b")
    )
    expect(page.locator('#graph g.node[data-step="later"]')).to_have_class(
        re.compile(r"\bstate-skipped\b")
    )
    watched.screenshot("browser-run-failed")

    # The runs list shows it, with its status, and links to it.
    page.click('nav.top a[data-view="runs"]')
    row = page.locator(f'#runs-body tr[data-run-id="{run_id}"]')
    expect(row).to_have_attribute("data-status", "failed")
    expect(row).to_contain_text("broken")
    watched.screenshot("browser-runs")

    # The failure-mode report across runs.
    page.click('nav.top a[data-view="report"]')
    expect(page.locator(f'#report tr[data-mode="{mode}"]')).to_contain_text("boom")
    expect(page.locator("#report .report-tools")).to_contain_text("test.sleep")
    watched.screenshot("browser-report")

    # Not broken at 800 px: nothing wider than the window.
    page.set_viewport_size({"width": 800, "height": 900})
    views = {
        "#/runs": f'#runs-body tr[data-run-id="{run_id}"]',
        "#/report": "#report table",
        "#/approvals": "#approvals p, #approvals article",
        f"#/runs/{run_id}": '#run-status[data-status="failed"]',
    }
    for view, shown in views.items():
        page.evaluate(f"window.location.hash = {view!r}")
        page.locator(shown).first.wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 800, (view, width)
    watched.screenshot("browser-run-800px")
    page.click("#graph g.node[data-step='boom']")
    expect(page.locator("#step-detail")).to_contain_text("the disk is full")


def test_a_plan_written_in_the_page_is_checked_then_run(served: Served, watched: Watched) -> None:
    page = watched.page
    page.goto(served.page_url())
    page.locator('#plan-select option[value=":body"]').wait_for(state="attached")
    page.select_option("#plan-select", ":body")
    typo = PASTED.replace("notify.log", "notify.lgo")
    page.fill("#plan-body", typo)
    page.click("#start-run")
    # Refused as a plan file would be, located: line 5 is the tool's.
    problem = page.locator("#start-form .problems li").first
    expect(problem).to_have_text(re.compile(r"^5:\d+: .*unknown tool 'notify\.lgo'"))
    assert "#/runs/" not in page.url
    watched.console.clear()  # the refused request (422) is logged by the browser
    page.fill("#plan-body", PASTED)
    page.fill("#plan-body-inputs", '{"who": "<b>you</b>"}')
    page.click("#start-run")
    page.wait_for_url(re.compile(r"#/runs/[0-9a-f]+$"))
    expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
    expect(page.locator('#steps-body tr[data-step="hello"] pre')).to_contain_text("hi <b>you</b>")
    assert page.locator("b").count() == 0


def test_the_page_asks_for_a_token_it_lacks_or_that_is_refused(
    served: Served, watched: Watched
) -> None:
    page = watched.page
    page.goto(served.page_url("not-the-token"))
    expect(page.locator("#banner")).to_contain_text("refused")
    watched.console.clear()  # the refused requests (401) are logged by the browser
    page.goto(served.url)  # the same tab: its storage keeps the wrong token
    page.evaluate("sessionStorage.clear()")
    page.reload()
    expect(page.locator("#banner")).to_contain_text("needs the token")
    page.fill('#banner input[name="token"]', served.token)
    page.click("#banner button")
    expect(page.locator("#banner")).to_be_hidden()
    expect(page.locator('#plan-select option[value="steps"]')).to_be_attached()
    expect(page.locator("#runs-note")).to_contain_text("Updated")
    watched.console.clear()

    # The page is shown under a policy with no inline style (STRICT_CSP): one would be
    # refused, and all the tests above had none.
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate("document.body.setAttribute('style', 'color: red')")
    expect(page.locator("body")).to_have_css("color", "rgb(27, 31, 36)")
    watched.console.clear()
