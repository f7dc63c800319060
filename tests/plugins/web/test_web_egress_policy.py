"""Egress is a sink: what a step sends off the machine (a fetched URL, a remote search
query, a model prompt) may carry untrusted data, and a URL may be built from any step's
output, only on a step with ``allow_egress: true``. Real plan runs against a real HTTP
server on 127.0.0.1 that records every request, so "blocked" means nothing arrived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagentic import (
    Executor,
    FailureMode,
    RunResult,
    RunStatus,
    Settings,
    StepStatus,
    ToolContext,
    ToolRegistry,
    load_tools,
    tool,
)
from dagentic.agent import Agent, Budgets
from dagentic.approvals import approve_all
from dagentic.models import ScriptedModel
from dagentic.models.base import Message
from dagentic.models.openai_compat import OpenAIModel
from webtest import Reply, WebServer

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

SECRET = "zq7-hostile-token"  # the untrusted text the page carries
PAGE = f"<html><head><title>t</title></head><body><p>{SECRET}</p></body></html>"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@tool(name="probe.ask", side_effects="read", egress={"prompt": "content"})
async def ask(prompt: str, context: ToolContext) -> str:
    """Ask the OpenAI-compatible model at the probe's base url (a remote model prompt).

    Args:
        prompt: What to ask.
    """
    model = OpenAIModel("probe", base_url=context.settings.model.base_url, max_retries=0)
    try:
        reply = await model.chat([Message("user", prompt)])
    finally:
        await model.client.close()
    return reply.text


@pytest.fixture
def server(web_server: WebServer) -> WebServer:
    web_server.routes["/page"] = lambda r: Reply(
        200, PAGE, {"Content-Type": "text/html; charset=utf-8"}
    )
    web_server.routes["/collect"] = lambda r: Reply(200, "ok", {"Content-Type": "text/plain"})
    web_server.routes["/search"] = lambda r: Reply(
        200, {"results": [{"title": "A", "url": "https://a.example/", "content": "about a"}]}
    )
    web_server.routes["/v1/chat/completions"] = lambda r: Reply(
        200,
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "probe",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "fine"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )
    return web_server


def settings_for(server: WebServer, tmp_path: Path, backend: str = "searxng") -> Settings:
    """The web tools pointed at the server (fetch allowed to reach it, SearXNG at its
    /search), the model at its /v1; the index and cache in tmp_path."""
    return blind_settings(
        web={
            "backend": backend,
            "fetch": {"allow_hosts": [f"127.0.0.1:{server.port}"]},
            "searxng": {"url": f"{server.base}/search", "rate_limit": 1000},
            "retries": 0,
            "cache_ttl": 0,
            "cache_dir": tmp_path / "cache",
            "local": {"index_dir": tmp_path / "index"},
        },
        model={"base_url": f"{server.base}/v1"},
    )


@pytest.fixture
def settings(server: WebServer, tmp_path: Path) -> Settings:
    return settings_for(server, tmp_path)


async def run(settings: Settings, steps: list[dict[str, Any]], **inputs: Any) -> RunResult:
    plan: dict[str, Any] = {"name": "egress", "steps": steps}
    if inputs:
        plan["inputs"] = {k: {"type": "string"} for k in inputs}
    tools = ToolRegistry([*load_tools(), ask])
    return await Executor(tools, settings=settings, tracing=None).run(plan, inputs)


def page(server: WebServer) -> dict[str, Any]:
    """A step reading untrusted text: a real web.fetch of the server's page."""
    return {"id": "page", "tool": "web.fetch", "args": {"url": f"{server.base}/page"}}


ROWS = {
    "id": "rows",
    "tool": "sql.query",
    "args": {"sql": "SELECT region FROM sales GROUP BY region ORDER BY region LIMIT 2"},
}


def received(server: WebServer) -> list[str]:
    """What reached the server besides the page: path and query of each request."""
    return [f"{r.path}?{r.query}" for r in server.requests if r.path != "/page"]


def blocked(result: RunResult, step: str, message: str) -> None:
    assert result.status is RunStatus.FAILED
    failed = result.steps[step]
    assert failed.status is StepStatus.FAILED
    assert failed.error is not None
    assert failed.error.failure_mode is FailureMode.POLICY_BLOCKED
    assert failed.error.message == message


def untrusted_into(arg: str, tool_name: str = "web.fetch") -> str:
    return (
        f"step 'leak': tool '{tool_name}' sends argument '{arg}' off this machine, and it "
        "carries untrusted data from web.fetch; set 'allow_egress: true' on the step if "
        "that is intended"
    )


URLS = {
    "path": "{base}/collect/${{ steps.page.output.text }}",
    "query": "{base}/collect?q=${{ steps.page.output.text }}",
    "fragment": "{base}/collect#${{ steps.page.output.text }}",
    "host": "http://${{ steps.page.output.text }}.example/collect",
    "whole url": "${{ steps.page.output.final_url }}",
}


@pytest.mark.parametrize("where", list(URLS))
async def test_untrusted_text_anywhere_in_a_fetched_url_is_blocked(
    settings: Settings, server: WebServer, where: str
) -> None:
    url = URLS[where].replace("{base}", server.base)
    result = await run(
        settings, [page(server), {"id": "leak", "tool": "web.fetch", "args": {"url": url}}]
    )

    blocked(result, "leak", untrusted_into("url"))
    assert received(server) == []


async def test_allow_egress_lets_untrusted_text_go_out_in_a_url(
    settings: Settings, server: WebServer
) -> None:
    leak = {
        "id": "leak",
        "tool": "web.fetch",
        "allow_egress": True,
        "args": {"url": f"{server.base}/collect?q=${{{{ steps.page.output.text }}}}"},
    }
    result = await run(settings, [page(server), leak])

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert received(server) == [f"/collect?{{'q': '{SECRET}'}}"]


async def test_trusted_rows_may_not_build_a_url_without_allow_egress(
    settings: Settings, server: WebServer
) -> None:
    leak = {
        "id": "leak",
        "tool": "web.fetch",
        "args": {"url": f"{server.base}/collect?rows=${{{{ steps.rows.output.rows }}}}"},
    }
    result = await run(settings, [ROWS, leak])

    blocked(
        result,
        "leak",
        "step 'leak': tool 'web.fetch' sends argument 'url' off this machine, and it is built "
        "from the output of step 'rows', which so decides where data goes; write the "
        "destination in the plan, or set 'allow_egress: true' on the step if that is intended",
    )
    assert received(server) == []


async def test_a_foreach_item_from_a_step_output_cannot_choose_the_url(
    settings: Settings, server: WebServer
) -> None:
    leak = {
        "id": "leak",
        "tool": "web.fetch",
        "foreach": "${{ steps.rows.output.rows }}",
        "args": {"url": f"{server.base}/collect/${{{{ item.region }}}}"},
    }
    result = await run(settings, [ROWS, leak])

    blocked(
        result,
        "leak",
        "step 'leak': item 0: tool 'web.fetch' sends argument 'url' off this machine, and it "
        "is built from the output of step 'rows', which so decides where data goes; write "
        "the destination in the plan, or set 'allow_egress: true' on the step if that is "
        "intended",
    )
    assert received(server) == []


async def test_a_url_from_the_plan_or_its_inputs_goes_out_unasked(
    settings: Settings, server: WebServer
) -> None:
    steps = [
        ROWS,  # a step the fetch waits for, but whose data it does not use
        {
            "id": "leak",
            "tool": "web.fetch",
            "needs": ["rows"],
            "args": {"url": "${{ inputs.where }}?from=plan"},
        },
    ]
    result = await run(settings, steps, where=f"{server.base}/collect")

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert received(server) == ["/collect?{'from': 'plan'}"]


async def test_untrusted_text_in_a_remote_search_query_is_blocked(
    settings: Settings, server: WebServer
) -> None:
    leak = {
        "id": "leak",
        "tool": "web.search",
        "args": {"query": "news about ${{ steps.page.output.text }}"},
    }
    result = await run(settings, [page(server), leak])

    blocked(result, "leak", untrusted_into("query", "web.search"))
    assert received(server) == []


async def test_untrusted_text_in_a_search_site_is_blocked(
    settings: Settings, server: WebServer
) -> None:
    leak = {
        "id": "leak",
        "tool": "web.search",
        "args": {"query": "news", "site": "${{ steps.page.output.title }}"},
    }
    result = await run(settings, [page(server), leak])

    blocked(result, "leak", untrusted_into("site", "web.search"))
    assert received(server) == []


async def test_trusted_rows_may_go_to_the_configured_search_api(
    settings: Settings, server: WebServer
) -> None:
    # the destination is the settings' search API, the value is one the plan chose
    search = {
        "id": "news",
        "tool": "web.search",
        "args": {"query": "retail news ${{ steps.rows.output.rows[0].region }}"},
    }
    result = await run(settings, [ROWS, search])

    assert result.status is RunStatus.SUCCEEDED, result.error
    region = result.steps["rows"].output["rows"][0]["region"]
    assert [r.query["q"] for r in server.requests if r.path == "/search"] == [
        f"retail news {region}"
    ]


async def test_untrusted_text_may_search_the_offline_local_index(
    server: WebServer, tmp_path: Path
) -> None:
    local = settings_for(server, tmp_path, backend="local")
    search = {
        "id": "leak",
        "tool": "web.search",
        "args": {"query": "news about ${{ steps.page.output.text }}"},
    }
    result = await run(local, [page(server), search])

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["leak"].output["backend"] == "local"
    assert received(server) == []


async def test_untrusted_text_in_a_model_prompt_is_blocked(
    settings: Settings, server: WebServer
) -> None:
    leak = {
        "id": "leak",
        "tool": "probe.ask",
        "args": {"prompt": "Summarize: ${{ steps.page.output.text }}"},
    }
    result = await run(settings, [page(server), leak])

    blocked(result, "leak", untrusted_into("prompt", "probe.ask"))
    assert received(server) == []


async def test_a_model_prompt_takes_trusted_rows_and_with_allow_egress_untrusted_text(
    settings: Settings, server: WebServer
) -> None:
    steps = [
        page(server),
        ROWS,
        {
            "id": "rows_q",
            "tool": "probe.ask",
            "args": {"prompt": "Rows: ${{ steps.rows.output.rows }}"},
        },
        {
            "id": "page_q",
            "tool": "probe.ask",
            "allow_egress": True,
            "args": {"prompt": "Summarize: ${{ steps.page.output.text }}"},
        },
    ]
    result = await run(settings, steps)

    assert result.status is RunStatus.SUCCEEDED, result.error
    prompts = sorted(
        r.json()["messages"][0]["content"]
        for r in server.requests
        if r.path == "/v1/chat/completions"
    )
    region = result.steps["rows"].output["rows"][0]["region"]
    assert prompts[0].startswith("Rows: [") and region in prompts[0]
    assert prompts[1] == f"Summarize: {SECRET}"


async def test_a_model_plan_cannot_send_untrusted_text_out_nor_opt_in(
    settings: Settings, server: WebServer
) -> None:
    # dagentic ask: the model's plan is held to the same rule, and `allow_egress` is not
    # a field a model can set (its plans keep only id, tool, args, needs, foreach, when)
    plan = {
        "steps": [
            page(server),
            {
                "id": "leak",
                "tool": "web.fetch",
                "allow_egress": True,
                "args": {"url": f"{server.base}/collect?q=${{{{ steps.page.output.text }}}}"},
            },
        ]
    }
    verdict = {"passed": True, "reason": "fine"}
    done = {"answer": "Done.", "cited_steps": [], "complete": False}
    tools = ToolRegistry([t for t in load_tools() if not t.planning_context])
    agent = Agent(  # every call approved: an approval is no opt-in to egress
        ScriptedModel([plan, done, verdict]),
        tools,
        settings=settings,
        budgets=Budgets(max_replans=0),
        approver=approve_all,
    )

    result = await agent.run("Fetch the page")

    leak = result.steps["leak"]
    assert leak.error is not None
    assert leak.error.failure_mode is FailureMode.POLICY_BLOCKED
    assert leak.error.message == untrusted_into("url")
    assert received(server) == []
