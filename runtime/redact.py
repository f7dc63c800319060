"""Redaction: the secrets dagentic holds never leave it in text.

A secret is every ``SecretStr``/``SecretBytes`` value of a settings object dagentic was given
(the core's, e.g. ``model.api_key`` and ``tracing.otlp.headers``, and every plugin's section
read through :meth:`Settings.plugin <dagentic.Settings.plugin>`, whatever the plugin), and
``OPENAI_API_KEY`` once a model client took it from the environment. Settings register
themselves with :func:`hold` when made; :func:`redact` then replaces each secret with
``***`` wherever text leaves dagentic: error messages (``ErrorInfo``, so run results and
model call records), spans on their way to any exporter (attributes, events, exceptions,
status), the CLI's output streams and its structlog logs.

What a secret is matched as (:class:`Redactor`): its exact text (and, for a value with
spaces such as ``Bearer <token>``, its last word alone), also with whitespace
inserted between its characters (a wrapped line); URL-encoded (``%2F`` or ``%2f``, ``+``
for spaces); JSON-escaped; and base64 or base64url at any of the three byte alignments, so
inside ``Basic base64(user:key)`` too. Not matched: a secret split across two separate
messages, log events or span attributes (each is redacted on its own), a part of a secret,
or one transformed otherwise (hex, reversed, case-changed, hashed, encrypted). Values
shorter than :data:`MIN_LENGTH` characters are not redacted: they cannot be told from
ordinary words. The text a tool returns as its output is data, kept as it is in memory; it
is redacted where it leaves (CLI output, spans).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import IO, Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "RedactingStream",
    "Redactor",
    "guard_streams",
    "held",
    "hold",
    "redact",
    "redact_spans",
    "redact_value",
    "secret_values",
    "structlog_processor",
]

MASK = "***"
MIN_LENGTH = 6


class Redactor:
    """Replaces each of a set of secrets, in every form it matches, with :data:`MASK`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = set(secrets)
        # "Bearer <token>" (an OTLP header, say): the credential alone is a secret too
        values |= {v.split()[-1] for v in values if len(v.split()) > 1}
        self.secrets = frozenset(s for s in values if len(s) >= MIN_LENGTH)
        self._pattern = _pattern(self.secrets)

    @classmethod
    def from_settings(cls, *settings: Any) -> Redactor:
        """A redactor of the secrets in these settings objects (see :func:`secret_values`)."""
        return cls(v for s in settings for v in secret_values(s))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        """Where each secret is in ``text``: (start, end) of every match."""
        if self._pattern is None or not text:
            return
        for match in self._pattern.finditer(text):
            yield match.span()

    def redact_value(self, value: Any) -> Any:
        """``value`` with every string in it (dict keys too, nested) redacted."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_value(v) for v in value)
        return value


def secret_values(source: Any) -> Iterator[str]:
    """Every secret value in ``source``: a ``SecretStr``/``SecretBytes``, or a pydantic
    model, mapping or sequence holding them, walked through (a model's private attributes
    too: the plugin sections a :class:`~dagentic.Settings` has read)."""
    seen: set[int] = set()
    stack = [source]
    while stack:
        item = stack.pop()
        if isinstance(item, SecretStr):
            yield item.get_secret_value()
        elif isinstance(item, SecretBytes):
            yield item.get_secret_value().decode("utf-8", "replace")
        elif isinstance(item, str | bytes | int | float | bool) or item is None or id(item) in seen:
            continue
        elif isinstance(item, BaseModel):
            seen.add(id(item))
            stack.extend(getattr(item, name, None) for name in type(item).model_fields)
            stack.extend((item.__pydantic_private__ or {}).values())
        elif isinstance(item, dict):
            seen.add(id(item))
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            seen.add(id(item))
            stack.extend(item)


# -- the secrets dagentic holds, process-wide ---------------------------------------------

_lock = threading.Lock()


def _after_fork() -> None:  # a lock another thread held at the fork stays held in the child
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
# id -> (the settings object, weakly; how much of it was walked; its secrets)
_sources: dict[int, tuple[weakref.ref[Any], int, frozenset[str]]] = {}
_values: set[str] = set()


def hold(*sources: Any) -> None:
    """Keep these secrets out of everything dagentic writes from now on: settings objects
    (walked again when they have read more plugin sections) or secret strings."""
    with _lock:
        for source in sources:
            if isinstance(source, str):
                if len(source) >= MIN_LENGTH:
                    _values.add(source)
            elif source is not None and _live(id(source)) is not source:
                walked = _walked(source), frozenset(secret_values(source))
                _sources[id(source)] = (weakref.ref(source), *walked)


def _walked(source: Any) -> int:
    """How much of a settings object there is to walk: its plugin sections read so far."""
    private = getattr(source, "__pydantic_private__", None) or {}
    plugins = private.get("_plugins")
    return len(private) + (len(plugins) if isinstance(plugins, dict) else 0)


def _live(key: int) -> Any:
    entry = _sources.get(key)
    return entry[0]() if entry else None


def held() -> Redactor:
    """A redactor of every secret dagentic holds now."""
    with _lock:
        found = set(_values)
        for key, (ref, size, secrets) in list(_sources.items()):
            source = ref()
            if source is None:  # gone (its id may be reused); its secrets stay held
                del _sources[key]
                _values.update(secrets)
                found |= secrets
                continue
            now = _walked(source)
            if now != size:
                secrets = frozenset(secret_values(source))
                _sources[key] = (ref, now, secrets)
            found |= secrets
    return _redactor(frozenset(found))


def redact(text: str) -> str:
    """``text`` with every secret dagentic holds replaced by ``***``."""
    return held().redact(text)


def redact_value(value: Any) -> Any:
    """``value`` with every string in it redacted of the secrets dagentic holds."""
    return held().redact_value(value)


def structlog_processor(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: every string in the event redacted (put it before the
    renderer)."""
    return held().redact_value(event)


class RedactingStream:
    """A text stream that redacts what is written to it, then writes it to ``inner``
    (``sys.stdout``, ``sys.stderr``). A secret split across two writes is not seen."""

    def __init__(self, inner: IO[str]) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self.inner, name)


def guard_streams() -> None:
    """Redact everything written to ``sys.stdout`` and ``sys.stderr`` from now on (the
    CLI's edge: rich consoles, ``print`` and logs all resolve these streams when they
    write)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


# -- matching -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _redactor(secrets: frozenset[str]) -> Redactor:
    return Redactor(secrets)


@functools.lru_cache(maxsize=64)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    needles: set[str] = set()
    spaced: set[str] = set()
    for secret in secrets:
        spaced.add(r"\s*".join(re.escape(ch) for ch in secret))
        needles |= _forms(secret) - {secret}
    if not spaced:
        return None
    parts = sorted(spaced, key=len, reverse=True) + sorted(
        (re.escape(n) for n in needles if len(n) >= MIN_LENGTH), key=len, reverse=True
    )
    return re.compile("|".join(parts))


def _forms(secret: str) -> set[str]:
    """The encodings a secret may be written in: URL, JSON and base64 (every alignment)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    forms |= {f.lower() for f in list(forms) if "%" in f}  # %2f as well as %2F
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    data = secret.encode()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + data).decode().rstrip("=")
            first = -(-offset * 8 // 6)  # the first character made of the secret's bits only
            last = (offset + len(data)) * 8 // 6  # past the last such character
            forms.add(text[first:last])
    return {f for f in forms if f}


def redact_spans(spans: Iterable[Any]) -> None:
    """Redact finished spans in place, before any exporter reads them: name, attributes,
    events (exceptions too), links and status description."""
    redactor = held()
    if not redactor:
        return
    from opentelemetry.sdk.trace import Event
    from opentelemetry.trace import Link, Status

    for span in spans:
        span.name = redactor.redact(span.name)
        span.attributes = redactor.redact_value(dict(span.attributes or {}))
        if span.events:
            span.events = [
                Event(
                    redactor.redact(e.name),
                    redactor.redact_value(dict(e.attributes)) if e.attributes else None,
                    e.timestamp,
                )
                for e in span.events
            ]
        if span.links:
            span.links = tuple(
                Link(link.context, redactor.redact_value(dict(link.attributes or {})))
                for link in span.links
            )
        if span.status.description:
            span.status = Status(span.status.status_code, redactor.redact(span.status.description))
