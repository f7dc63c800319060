"""Outbound guardrails: what a prompt holds that must not reach a remote model.

Before a prompt goes to a remote endpoint (``guardrails.outbound``), :func:`scan` finds

- secrets: every secret of dagentic's settings (:mod:`dagentic.redact`: the model's API
  key, a plugin's token, ... in any form it matches them in), API keys and tokens by their known shapes (detect-secrets' detectors: AWS,
  GitHub, GitLab, Slack, Stripe, OpenAI, JWTs, ... ), long random-looking strings
  (Shannon entropy of at least :data:`ENTROPY` bits a character), private keys (PEM
  blocks), credentials in URLs (``https://user:password@host``, ``?api_key=...``);
- personal data: email addresses, phone numbers (written with separators or a ``+``),
  card numbers that pass the Luhn check, IBANs that pass their mod-97 check;

and :func:`guard` replaces each with ``[REDACTED kind]`` (``redact``) or refuses the call
(``block``, :class:`~dagentic.PolicyBlockedError`). What was found is named by kind only,
never by value. Models on this machine are exempt while ``guardrails.exempt_local`` holds
(the in-process local provider is never checked: nothing leaves).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .errors import PolicyBlockedError

__all__ = ["ENTROPY", "Finding", "Outbound", "guard", "is_local_url", "redact_text", "scan"]

ENTROPY = 4.2  # bits per character of a token taken for a random key
_TOKEN = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_=-]{24,}(?![\w+/=-])")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY"
    r"(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")
_URL_SECRET_PARAM = re.compile(
    r"(?<=[?&])(?:api[_-]?key|apikey|key|token|access[_-]?token|secret|password|passwd|"
    r"sig|signature|auth)=[^&\s#\"']+",
    re.IGNORECASE,
)
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w])"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Z0-9])")
_SKIPPED_DETECTORS = {"IPPublicDetector"}  # an IP address is data, not a secret
_KEY_GROUP = 16  # characters of a pattern's group taken for the key itself


@dataclass(frozen=True, slots=True)
class Finding:
    """Something found in a text: its kind, and where (``start``, ``end``)."""

    kind: str
    start: int
    end: int


def scan(text: str) -> list[Finding]:
    """What in ``text`` must not leave: secrets and personal data, without overlaps
    (the first found wins), in order."""
    found: list[Finding] = []
    for kind, finder in _FINDERS:
        for start, end in finder(text):
            if all(end <= f.start or start >= f.end for f in found):
                found.append(Finding(kind, start, end))
    return sorted(found, key=lambda f: f.start)


def redact_text(text: str) -> tuple[str, list[Finding]]:
    """``text`` with each finding replaced by ``[REDACTED kind]``, and the findings."""
    findings = scan(text)
    for finding in reversed(findings):
        text = f"{text[: finding.start]}[REDACTED {finding.kind}]{text[finding.end :]}"
    return text, findings


Outbound = Literal["redact", "block", "off"]


def guard(texts: list[str], mode: Outbound, where: str) -> tuple[list[str], list[str]]:
    """``texts`` as they may leave for ``where`` (a model and its endpoint) under
    ``mode``, and the kinds of what was found (sorted, each once). ``block`` raises
    :class:`~dagentic.PolicyBlockedError` naming what was found; ``off`` changes nothing."""
    if mode == "off":
        return texts, []
    done = [redact_text(t) for t in texts]
    kinds = Counter(f.kind for _, findings in done for f in findings)
    if kinds and mode == "block":
        what = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items()))
        raise PolicyBlockedError(
            f"guardrails: the prompt for {where} was not sent: it holds {what}; remove them "
            'from the goal or the data, or set guardrails.outbound = "redact" to send it '
            "redacted",
            found=sorted(kinds),
        )
    return [t for t, _ in done], sorted(kinds)


def is_local_url(url: str) -> bool:
    """Whether ``url`` names this machine (localhost, a loopback address)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _regex(
    pattern: re.Pattern[str], check: Callable[[str], bool] | None = None
) -> Callable[[str], Iterator[tuple[int, int]]]:
    def find(text: str) -> Iterator[tuple[int, int]]:
        for match in pattern.finditer(text):
            if check is None or check(match.group()):
                yield match.span()

    return find


def _held(text: str) -> Iterator[tuple[int, int]]:
    """Where the secrets dagentic holds (its settings' API keys, tokens and passwords, see
    :mod:`dagentic.redact`) are, in any form it matches them in."""
    from .redact import held

    yield from held().find(text)


def _known_keys(text: str) -> Iterator[tuple[int, int]]:
    """Where detect-secrets' detectors of keys and tokens by their shape find one: the
    match of a detector's pattern, or its group that holds the key (a pattern may match
    the words before a key too, or group only a key's prefix)."""
    for detector in _detectors():
        for pattern in detector.denylist:
            for match in pattern.finditer(text):
                groups = [i for i in range(1, len(match.groups()) + 1) if match.group(i)]
                held = [i for i in groups if len(match.group(i)) >= _KEY_GROUP]
                if held:
                    yield match.span(held[-1])
                    continue
                end = match.end()  # a lazy pattern may stop inside the key (a JWT's)
                while end < len(text) and (text[end].isalnum() or text[end] in "_-+/=."):
                    end += 1
                while end > match.end() and text[end - 1] == ".":  # a sentence's full stop
                    end -= 1
                yield match.start(), end


@functools.cache
def _detectors() -> list[Any]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    plugins: list[type[Any]] = list(get_mapping_from_secret_type_to_class().values())
    return [
        plugin()
        for plugin in plugins
        if issubclass(plugin, RegexBasedDetector) and plugin.__name__ not in _SKIPPED_DETECTORS
    ]


def _random(token: str) -> bool:
    """A token that looks like a random key: letters of both cases and digits, with high
    entropy (a word, a path, a sentence in snake_case do not have it)."""
    if not (any(c.isdigit() for c in token) and any(c.isupper() for c in token)):
        return False
    if not any(c.islower() for c in token):
        return False
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return entropy >= ENTROPY


def _phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return digits >= (8 if text.startswith("+") else 10) and digits <= 15


def _luhn(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


def _iban(text: str) -> bool:
    code = text.replace(" ", "")
    if not 15 <= len(code) <= 34:
        return False
    moved = code[4:] + code[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


_FINDERS: list[tuple[str, Callable[[str], Iterator[tuple[int, int]]]]] = [
    ("configured secret", _held),
    ("private key", _regex(_PRIVATE_KEY)),
    ("URL credential", _regex(_URL_CREDENTIALS)),
    ("URL credential", _regex(_URL_SECRET_PARAM)),
    ("API key", _known_keys),
    ("email address", _regex(_EMAIL)),
    ("IBAN", _regex(_IBAN, _iban)),
    ("card number", _regex(_CARD, _luhn)),
    ("phone number", _regex(_PHONE, _phone)),
    ("API key", _regex(_TOKEN, _random)),
]
