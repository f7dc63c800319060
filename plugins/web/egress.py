"""Where ``web.fetch`` may connect: the SSRF guard.

Two checks, both before any byte is sent:

1. :meth:`EgressPolicy.check_url` reads the URL's host the way resolvers and browsers do
   (``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``, ``[::ffff:7f00:1]``,
   percent-encoding, a trailing dot) and refuses non-public addresses and names such as
   ``localhost`` and cloud metadata hosts.
2. :class:`GuardedNetworkBackend` is the network layer under httpx: it resolves every host
   itself, refuses the connection if *any* address is not public, and connects to the
   address it checked — so DNS answers, rebinding and redirects cannot slip past step 1.

A host listed in ``web.fetch.allow_hosts`` (spelled exactly as in the URL, with or without
its port) skips both checks; every other spelling of the same address is still refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import anyio
import httpcore
import httpx
from dagentic import PolicyBlockedError

__all__ = ["EgressPolicy", "GuardedNetworkBackend", "blocked_reason", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services: named so the refusal says what the address is.
METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}
METADATA_NAMES = {
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
}
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# The number forms of inet_aton(3): hex, octal (leading 0), decimal.
HEX = re.compile(r"0[xX][0-9a-fA-F]*", re.ASCII)
OCTAL = re.compile(r"0[0-7]+", re.ASCII)
DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)


def parse_ip(host: str) -> IPAddress | None:
    """The address a host names if it is an IP literal in any spelling resolvers accept
    (IPv4 with 1-4 decimal, octal or hex parts; IPv6 with or without brackets), else None."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        pass
    parts = text.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # a trailing dot
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if HEX.fullmatch(part):
            numbers.append(int(part[2:] or "0", 16))
        elif OCTAL.fullmatch(part):
            numbers.append(int(part, 8))
        elif DECIMAL.fullmatch(part):
            numbers.append(int(part))
        else:
            return None  # a name, not a number
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``web.fetch`` may not connect to ``ip`` (e.g. ``"a loopback address"``), or
    None for a public address. IPv4 embedded in IPv6 (mapped, compatible, 6to4, Teredo,
    NAT64) is judged as the IPv4 address it carries."""
    if ip in METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = blocked_reason(embedded)
            return None if reason is None else f"{reason} ({embedded}) inside an IPv6 address"
    for attribute, reason in (
        ("is_loopback", "a loopback address"),
        ("is_unspecified", "the unspecified address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attribute):
            return reason
    if not ip.is_global:
        return "a non-public address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        server, client = ip.teredo
        return client if blocked_reason(client) else server
    if ip in NAT64 or (ip.packed[:12] == bytes(12) and int(ip) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(ip.packed[12:])  # NAT64 or IPv4-compatible ::a.b.c.d
    return None


class EgressPolicy:
    """Which URLs and addresses ``web.fetch`` may reach, given the allowed hosts."""

    def __init__(self, allow_hosts: Iterable[str] = ()) -> None:
        self.allow_hosts = frozenset(_entry(h) for h in allow_hosts)

    def allows(self, host: str, port: int | None) -> bool:
        """Whether the user allowed this host spelling (alone or with this port)."""
        name = host.lower().rstrip(".")
        shown = f"[{name}]" if ":" in name else name
        return (
            name in self.allow_hosts
            or shown in self.allow_hosts
            or (port is not None and f"{shown}:{port}" in self.allow_hosts)
        )

    def check_url(self, url: httpx.URL) -> None:
        """Refuse a URL whose scheme is not http(s) or whose host names a non-public
        address or host, unless that host is allowed."""
        if url.scheme not in ("http", "https"):
            raise _refused(
                str(url),
                f"only http and https URLs are fetched, not {url.scheme or 'a URL without scheme'}",
            )
        if not url.host:
            raise _refused(str(url), "the URL has no host")
        if self.allows(url.host, url.port):
            return
        reason = host_reason(unquote(url.host))
        if reason is not None:
            raise _refused(str(url), reason, url.host, url.port)

    def check_addresses(self, host: str, port: int, addresses: list[str]) -> None:
        """Refuse a host that resolved to any non-public address."""
        for address in addresses:
            reason = blocked_reason(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason is not None:
                raise _refused(
                    f"{host}:{port}", f"{host} resolves to {address}, {reason}", host, port
                )


def _entry(text: str) -> str:
    """An allow_hosts entry normalised like URL hosts: lower case, no trailing dot (also
    before a port)."""
    text = text.strip().lower()
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return f"{host.rstrip('.')}:{port}"
    return text.rstrip(".")


def host_reason(host: str) -> str | None:
    """Why a URL host is refused before resolving it, or None if it may be resolved."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is a loopback name"
    if name in METADATA_NAMES:
        return f"{host} is a cloud metadata host"
    ip = parse_ip(name)
    if ip is None:
        return None
    reason = blocked_reason(ip)
    if reason is None:
        return None
    return f"{host} is {reason}" if str(ip) == name.strip("[]") else f"{host} is {ip}, {reason}"


def _refused(
    what: str, reason: str, host: str | None = None, port: int | None = None
) -> PolicyBlockedError:
    fix = ""
    if host is not None:
        shown = f"[{host}]" if ":" in host else host
        entry = f"{shown}:{port}" if port else shown
        fix = f"; if it is meant to be fetched, add {entry!r} to the web.fetch.allow_hosts setting"
    return PolicyBlockedError(f"web.fetch: refused {what}: {reason}{fix}", url=what, reason=reason)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the address check: resolve, check every address,
    connect to a checked one. Nothing is sent to a refused address, not even a SYN."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.policy.allows(host, port):
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        reason = host_reason(host)
        if reason is not None:
            raise _refused(f"{host}:{port}", reason, host, port)
        with anyio.fail_after(timeout):
            try:
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        self.policy.check_addresses(host, port, addresses)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise _refused(path, "unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(policy: EgressPolicy) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through the address check (and
    never through a proxy from the environment)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx has no public way to pass a network backend; the pool it would build is
    # replaced by the same pool on the guarded backend (tests prove no byte escapes).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=GuardedNetworkBackend(policy),
    )
    return transport
