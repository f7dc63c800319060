"""Readable text from untrusted HTML: what a person would see on the page, and nothing
a page hides from people (hidden elements, zero-width and bidirectional control
characters), so hidden instructions do not reach a model as text."""

from __future__ import annotations

import re
import unicodedata

import lxml.etree
import lxml.html
import trafilatura

__all__ = ["clean_text", "html_to_text"]

# Elements a reader never sees, by markup or by inline style.
HIDDEN = lxml.etree.XPath(
    "//script | //style | //noscript | //template | //iframe | //object | //embed"
    " | //svg | //head/*[not(self::title)] | //*[@hidden] | //*[@aria-hidden='true']"
    " | //input[@type='hidden']"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' hidden ')"
    "  or contains(concat(' ', normalize-space(@class), ' '), ' sr-only ')"
    "  or contains(concat(' ', normalize-space(@class), ' '), ' visually-hidden ')]"
)
STYLED = lxml.etree.XPath("//body//*[@style]")
HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*(hidden|collapse)|opacity\s*:\s*0(\.0*)?\s*(;|$)"
    r"|font-size\s*:\s*0+(\.0*)?(px|em|rem|pt|%)?\s*(;|$)|(^|;)\s*(height|width)\s*:\s*0"
    r"(px)?\s*(;|$)|clip\s*:\s*rect\(\s*0|(left|top|text-indent)\s*:\s*-\d{3,}",
    re.IGNORECASE,
)
BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
SPACES = re.compile(r"[ \t\u00a0]+")


def clean_text(text: str) -> str:
    """``text`` without invisible format characters (zero-width spaces and joiners, bidi
    overrides, soft hyphens, tag characters, BOMs) and control characters other than
    newline and tab, with runs of spaces and blank lines collapsed."""
    kept = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cf", "Cc", "Co")
    )
    kept = "\n".join(SPACES.sub(" ", line).strip() for line in kept.splitlines())
    return BLANK_LINES.sub("\n\n", kept).strip()


def html_to_text(html: str, url: str | None = None) -> tuple[str, str]:
    """The title and the main text of an HTML page (boilerplate such as navigation and
    footers removed by trafilatura), with hidden elements dropped first."""
    try:
        tree = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return "", clean_text(html) if "<" not in html else ""
    title = clean_text(" ".join(tree.xpath("//title//text()")))
    for element in HIDDEN(tree):
        _drop(element)
    for element in STYLED(tree):
        if HIDDEN_STYLE.search(element.get("style", "")):
            _drop(element)
    text = trafilatura.extract(
        tree,
        url=url,
        include_comments=False,
        include_tables=True,
        favor_recall=True,
        deduplicate=False,
    )
    if not text:
        body = tree.find("body")
        text = " ".join((body if body is not None else tree).itertext())
    return title, clean_text(text)


def _drop(element: lxml.html.HtmlElement) -> None:
    """Remove an element but keep the text that follows it (its tail)."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    if tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)
