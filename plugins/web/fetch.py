"""``web.fetch``'s engine: one page over HTTP(S), every hop through the egress policy,
bounded in redirects, bytes and time, and turned into readable text."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from dagentic import StepTimeoutError, ToolError

from .settings import FetchSettings, WebSettings

# httpx, the egress guard and the page parsers load with the first fetch, not with the
# plugin: every command that lists tools loads it.
if TYPE_CHECKING:
    import httpx

    from .egress import EgressPolicy

__all__ = ["TEXT_TYPES", "checked_url", "fetch_page"]

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = (
    *HTML_TYPES,
    "text/plain",
    "text/markdown",
    "text/csv",
    "text/xml",
    "application/json",
    "application/xml",
)
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "dagentic-web/0.1 (+web.fetch)"


async def fetch_page(url: str, *, settings: WebSettings, max_bytes: int) -> dict[str, Any]:
    """Fetch ``url`` and return its text, title, final URL and status (see ``web.fetch``)."""
    import httpx

    from .client import rate_limiter, with_retries
    from .egress import EgressPolicy, guarded_transport

    config = settings.fetch
    policy = EgressPolicy(config.allow_hosts)
    start = checked_url(url, config)
    limiter = rate_limiter("fetch", config.rate_limit)

    async def attempt() -> dict[str, Any]:
        await limiter.wait()
        async with httpx.AsyncClient(
            transport=guarded_transport(policy),
            trust_env=False,
            follow_redirects=False,
            timeout=config.timeout,
            headers={"User-Agent": USER_AGENT},
        ) as client:
            return await _follow(client, policy, start, config.max_redirects, max_bytes)

    try:
        with anyio.fail_after(config.timeout):
            return await with_retries(attempt, retries=settings.retries, what="web.fetch")
    except TimeoutError as exc:
        raise StepTimeoutError(
            f"web.fetch: {url} took longer than {config.timeout:g} s (web.fetch.timeout)", url=url
        ) from exc


def checked_url(url: str, config: FetchSettings) -> httpx.URL:
    """``url`` parsed, if the egress policy lets ``web.fetch`` reach it."""
    import httpx

    from .egress import EgressPolicy

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ToolError(f"web.fetch: {url!r} is not a valid URL: {exc}") from exc
    EgressPolicy(config.allow_hosts).check_url(parsed)
    return parsed


async def _follow(
    client: httpx.AsyncClient,
    policy: EgressPolicy,
    url: httpx.URL,
    max_redirects: int,
    max_bytes: int,
) -> dict[str, Any]:
    from .client import raise_for_transient

    for _ in range(max_redirects + 1):
        policy.check_url(url)
        request = client.build_request(
            "GET", url, headers={"Accept": ", ".join(TEXT_TYPES), "Accept-Encoding": "identity"}
        )  # no compression bombs
        response = await client.send(request, stream=True)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECTS and location:
                url = url.join(location)
                continue
            raise_for_transient(response, "web.fetch")
            if response.status_code >= 400:
                raise ToolError(
                    f"web.fetch: {url} answered {response.status_code} {response.reason_phrase}",
                    status=response.status_code,
                )
            return await _read(response, url, max_bytes)
        finally:
            await response.aclose()
    raise ToolError(
        f"web.fetch: stopped after {max_redirects} redirects at {url} (web.fetch.max_redirects)"
    )


async def _read(response: httpx.Response, url: httpx.URL, max_bytes: int) -> dict[str, Any]:
    """The page's text (the first ``max_bytes`` bytes of it), refusing binary types."""
    from .extract import clean_text, html_to_text

    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in TEXT_TYPES and not content_type.startswith("text/"):
        raise ToolError(
            f"web.fetch: {url} is {content_type}, not a text or HTML page; "
            f"web.fetch reads {', '.join(TEXT_TYPES)}",
            content_type=content_type,
        )
    body = bytearray()
    truncated = False
    chunks = response.aiter_bytes()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            del body[max_bytes:]
            truncated = True
            await _stop_reading(response, chunks)
            break
    text = bytes(body).decode(response.charset_encoding or "utf-8", errors="replace")
    if content_type in HTML_TYPES or (not content_type and "<html" in text[:1000].lower()):
        title, text = html_to_text(text, str(url))
    else:
        title, text = "", clean_text(text)
    return {
        "final_url": str(url),
        "status": response.status_code,
        "title": title,
        "text": text,
        "content_type": content_type or None,
        "bytes": len(body),
        "truncated": truncated,
        "retrieved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "provenance": "untrusted",
    }


async def _stop_reading(response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
    """Close the connection mid-body and let httpx's nested stream generators run to their
    end on the closed stream, so none is left for the garbage collector (trio warns)."""
    import httpcore
    import httpx

    await response.aclose()
    with contextlib.suppress(httpx.HTTPError, httpcore.NetworkError, anyio.ClosedResourceError):
        async for _ in chunks:  # at most what was buffered before the close
            pass
