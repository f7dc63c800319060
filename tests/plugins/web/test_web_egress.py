"""The SSRF guard's address decisions: pure functions, no network at all.

Every spelling a resolver or browser accepts for a non-public address must be refused
before anything is resolved or connected; public addresses and ordinary names pass.
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from dagentic import FailureMode, PolicyBlockedError
from dagentic.plugins.web.egress import EgressPolicy, blocked_reason, host_reason, parse_ip


def refusal(url: str, allow: tuple[str, ...] = ()) -> str:
    """The message check_url refuses ``url`` with (fails the test if it is allowed)."""
    with pytest.raises(PolicyBlockedError) as caught:
        EgressPolicy(allow).check_url(httpx.URL(url))
    assert caught.value.failure_mode is FailureMode.POLICY_BLOCKED
    return caught.value.message


def allowed(url: str, allow: tuple[str, ...] = ()) -> bool:
    try:
        EgressPolicy(allow).check_url(httpx.URL(url))
    except PolicyBlockedError:
        return False
    return True


def fix(entry: str) -> str:
    return f"; if it is meant to be fetched, add {entry!r} to the web.fetch.allow_hosts setting"


# --- parse_ip: the number forms of inet_aton(3) and IPv6 ------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0X7F000001",
        "0x7f.0.0.1",
        "0x7f.1",
        "0177.0.0.1",
        "017700000001",
        "127.0.0.1.",
        "127.000.000.001",
        "0x7f.0x0.0x0.0x1",
        "127.0.0.0x1",
    ],
)
def test_every_ipv4_spelling_of_loopback_parses_to_127_0_0_1(host: str) -> None:
    assert parse_ip(host) == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("::127.0.0.1", "::7f00:1"),
        ("fe80::1%eth0", "fe80::1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("4294967295", "255.255.255.255"),
    ],
)
def test_parse_ip_reads_other_spellings(host: str, address: str) -> None:
    assert parse_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "1_0.0.0.1",
        "08.0.0.1",
        "09",
        "\uff11\uff12\uff17.0.0.1",
        "\u0663.0.0.1",
        "1e1.0.0.1",
        " 127.0.0.1",
        "127.0.0.1 ",
        "+127.0.0.1",
        "1.2.3.-1",
        "256.0.0.1",
        "1.2.3.4.5",
        "4294967296",
        "127.0.0.1..",
        "localhost",
        "",
    ],
)
def test_names_that_are_not_numbers_are_not_parsed_as_addresses(host: str) -> None:
    assert parse_ip(host) is None


# --- blocked_reason: what an address is ----------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.255.254", "a loopback address"),
        ("10.0.0.1", "a private address"),
        ("10.255.255.255", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("192.0.0.192", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.64.0.1", "a non-public address"),
        ("100.127.255.255", "a non-public address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("2002:7f00:1::", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("2002:a9fe:a9fe::1", "a cloud metadata address (169.254.169.254) inside an IPv6 address"),
        ("64:ff9b::a00:1", "a private address (10.0.0.1) inside an IPv6 address"),
        ("64:ff9b::7f00:1", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("::ffff:10.0.0.1", "a private address (10.0.0.1) inside an IPv6 address"),
        ("::ffff:192.168.0.1", "a private address (192.168.0.1) inside an IPv6 address"),
        (
            "::ffff:169.254.169.254",
            "a cloud metadata address (169.254.169.254) inside an IPv6 address",
        ),
        ("::127.0.0.1", "a loopback address (127.0.0.1) inside an IPv6 address"),
    ],
)
def test_non_public_addresses_are_blocked_with_their_kind(address: str, reason: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


def test_ipv6_loopback_is_called_a_loopback_address() -> None:
    # ::1 is the IPv6 loopback address, not "0.0.0.1 inside an IPv6 address".
    assert blocked_reason(ipaddress.ip_address("::1")) == "a loopback address"


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "2606:4700::1111",
        "2001:4860:4860::8888",
    ],
)
def test_public_addresses_are_not_blocked(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])
def test_an_embedded_public_ipv4_is_judged_as_that_address(address: str) -> None:
    # blocked_reason's contract: IPv4 inside IPv6 (mapped, 6to4, NAT64, ...) "is judged as
    # the IPv4 address it carries" -- 8.8.8.8 is public. (DNS64 networks hand out
    # 64:ff9b::/96 addresses for every IPv4-only site.)
    assert blocked_reason(ipaddress.ip_address(address)) is None


# --- host_reason: names --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "localhost is a loopback name"),
        ("LOCALHOST.", "LOCALHOST. is a loopback name"),
        ("foo.localhost", "foo.localhost is a loopback name"),
        ("a.b.LocalHost", "a.b.LocalHost is a loopback name"),
        ("metadata.google.internal", "metadata.google.internal is a cloud metadata host"),
        ("metadata.google.internal.", "metadata.google.internal. is a cloud metadata host"),
        ("metadata", "metadata is a cloud metadata host"),
        ("instance-data.ec2.internal", "instance-data.ec2.internal is a cloud metadata host"),
        ("127.1", "127.1 is 127.0.0.1, a loopback address"),
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("0177.0.0.1", "0177.0.0.1 is 127.0.0.1, a loopback address"),
        ("08.0.0.1", None),
        ("1_0.0.0.1", None),
        ("example.com", None),
        ("notlocalhost", None),
        ("localhost.example.com", None),
        ("8.8.8.8", None),
    ],
)
def test_host_reason(host: str, reason: str | None) -> None:
    assert host_reason(host) == reason


# --- check_url: whole URLs, with the exact refusal -----------------------------------


def test_a_short_loopback_spelling_is_refused_with_the_exact_message() -> None:
    assert refusal("http://127.1:8080/") == (
        "web.fetch: refused http://127.1:8080/: 127.1 is 127.0.0.1, a loopback address; "
        "if it is meant to be fetched, add '127.1:8080' to the web.fetch.allow_hosts setting"
    )


@pytest.mark.parametrize(
    ("url", "reason", "entry"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
        ("http://127.0.0.1:8080/", "127.0.0.1 is a loopback address", "127.0.0.1:8080"),
        ("http://127.0.1/", "127.0.1 is 127.0.0.1, a loopback address", "127.0.1"),
        ("http://2130706433/", "2130706433 is 127.0.0.1, a loopback address", "2130706433"),
        ("http://0x7f000001/", "0x7f000001 is 127.0.0.1, a loopback address", "0x7f000001"),
        ("http://0x7f.0.0.1/", "0x7f.0.0.1 is 127.0.0.1, a loopback address", "0x7f.0.0.1"),
        ("http://017700000001/", "017700000001 is 127.0.0.1, a loopback address", "017700000001"),
        ("http://127.0.0.1./", "127.0.0.1. is a loopback address", "127.0.0.1."),
        (
            "http://[::ffff:127.0.0.1]/",
            "::ffff:127.0.0.1 is ::ffff:7f00:1, a loopback address "
            "(127.0.0.1) inside an IPv6 address",
            "[::ffff:127.0.0.1]",
        ),
        (
            "http://[::ffff:7f00:1]:81/",
            "::ffff:7f00:1 is a loopback address (127.0.0.1) inside an IPv6 address",
            "[::ffff:7f00:1]:81",
        ),
        (
            "http://[::127.0.0.1]/",
            "::127.0.0.1 is ::7f00:1, a loopback address (127.0.0.1) inside an IPv6 address",
            "[::127.0.0.1]",
        ),
        ("http://%31%32%37.0.0.1/", "127.0.0.1 is a loopback address", "%31%32%37.0.0.1"),
        ("http://127%2e0%2e0%2e1/", "127.0.0.1 is a loopback address", "127%2e0%2e0%2e1"),
        ("http://%6c%6fcalhost/", "localhost is a loopback name", "%6c%6fcalhost"),
        ("http://localhost/", "localhost is a loopback name", "localhost"),
        ("http://localhost:8080/", "localhost is a loopback name", "localhost:8080"),
        ("http://foo.localhost/", "foo.localhost is a loopback name", "foo.localhost"),
        ("http://user:pw@127.0.0.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
        ("http://example.com@127.0.0.1/", "127.0.0.1 is a loopback address", "127.0.0.1"),
        # private
        ("http://10.0.0.1/", "10.0.0.1 is a private address", "10.0.0.1"),
        ("http://10.255.255.255/", "10.255.255.255 is a private address", "10.255.255.255"),
        ("http://172.16.0.1/", "172.16.0.1 is a private address", "172.16.0.1"),
        (
            "http://172.31.255.255:8443/",
            "172.31.255.255 is a private address",
            "172.31.255.255:8443",
        ),
        ("http://192.168.1.1/", "192.168.1.1 is a private address", "192.168.1.1"),
        ("http://[fc00::1]/", "fc00::1 is a private address", "[fc00::1]"),
        ("http://[fd12::1]:8080/", "fd12::1 is a private address", "[fd12::1]:8080"),
        ("http://0.0.0.0/", "0.0.0.0 is the unspecified address", "0.0.0.0"),
        ("http://0/", "0 is 0.0.0.0, the unspecified address", "0"),
        ("http://0:8080/", "0 is 0.0.0.0, the unspecified address", "0:8080"),
        (
            "http://[::ffff:10.0.0.1]/",
            "::ffff:10.0.0.1 is ::ffff:a00:1, a private address (10.0.0.1) inside an IPv6 address",
            "[::ffff:10.0.0.1]",
        ),
        (
            "http://[::ffff:192.168.0.1]/",
            "::ffff:192.168.0.1 is ::ffff:c0a8:1, a private "
            "address (192.168.0.1) inside an IPv6 address",
            "[::ffff:192.168.0.1]",
        ),
        # link-local
        ("http://169.254.1.1/", "169.254.1.1 is a link-local address", "169.254.1.1"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address", "[fe80::1]"),
        # metadata
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a cloud metadata address",
            "169.254.169.254",
        ),
        (
            "http://2852039166/",
            "2852039166 is 169.254.169.254, a cloud metadata address",
            "2852039166",
        ),
        (
            "http://0xa9fea9fe/",
            "0xa9fea9fe is 169.254.169.254, a cloud metadata address",
            "0xa9fea9fe",
        ),
        (
            "http://0xa9.0xfe.0xa9.0xfe/",
            "0xa9.0xfe.0xa9.0xfe is 169.254.169.254, a cloud metadata address",
            "0xa9.0xfe.0xa9.0xfe",
        ),
        (
            "http://169.254.43518/",
            "169.254.43518 is 169.254.169.254, a cloud metadata address",
            "169.254.43518",
        ),
        (
            "http://[::ffff:169.254.169.254]/",
            "::ffff:169.254.169.254 is ::ffff:a9fe:a9fe, a "
            "cloud metadata address (169.254.169.254) inside an IPv6 address",
            "[::ffff:169.254.169.254]",
        ),
        (
            "http://100.100.100.200/",
            "100.100.100.200 is a cloud metadata address",
            "100.100.100.200",
        ),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address", "[fd00:ec2::254]"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal is a cloud metadata host",
            "metadata.google.internal",
        ),
        # CGNAT, multicast, embeddings
        ("http://100.64.0.1/", "100.64.0.1 is a non-public address", "100.64.0.1"),
        ("http://100.127.255.255/", "100.127.255.255 is a non-public address", "100.127.255.255"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address", "224.0.0.1"),
        ("http://[ff02::1]/", "ff02::1 is a multicast address", "[ff02::1]"),
        (
            "http://[2002:7f00:1::]/",
            "2002:7f00:1:: is a loopback address (127.0.0.1) inside an IPv6 address",
            "[2002:7f00:1::]",
        ),
        (
            "http://[64:ff9b::a00:1]/",
            "64:ff9b::a00:1 is a private address (10.0.0.1) inside an IPv6 address",
            "[64:ff9b::a00:1]",
        ),
    ],
)
def test_non_public_urls_are_refused_with_the_exact_message(
    url: str, reason: str, entry: str
) -> None:
    shown = str(httpx.URL(url))
    assert refusal(url) == f"web.fetch: refused {shown}: {reason}{fix(entry)}"


def test_uppercase_and_trailing_dot_localhost_is_refused() -> None:
    # httpx lowercases the host; the message shows the spelling httpx keeps.
    assert refusal("http://LOCALHOST.:8080/") == (
        "web.fetch: refused http://localhost.:8080/: localhost. is a loopback name"
        + fix("localhost.:8080")
    )


def test_ipv6_loopback_url_is_refused() -> None:
    message = refusal("http://[::1]:8080/")
    assert message.startswith("web.fetch: refused http://[::1]:8080/: ::1 is ")
    assert message.endswith(fix("[::1]:8080"))


def test_the_refusal_carries_url_and_reason_as_fields() -> None:
    with pytest.raises(PolicyBlockedError) as caught:
        EgressPolicy().check_url(httpx.URL("http://127.1:8080/"))
    assert caught.value.fields == {
        "url": "http://127.1:8080/",
        "reason": "127.1 is 127.0.0.1, a loopback address",
    }
    assert isinstance(caught.value, PermissionError)


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/",
        "https://93.184.216.34/",
        "http://[2606:4700::1111]/",
        "https://example.com/",
        "http://example.com:8080/path?q=1",
        "HTTPS://EXAMPLE.COM/",
        "http://sub.example.com./",
        "http://172.15.255.255/",
        "http://172.32.0.1/",
        "http://100.128.0.1/",
        "http://1_0.0.0.1/",
        "http://localhost.example.com/",
    ],
)
def test_public_addresses_and_names_pass_the_literal_check(url: str) -> None:
    assert allowed(url)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("file:///etc/passwd", "file"),
        ("ftp://example.com/x", "ftp"),
        ("gopher://example.com/", "gopher"),
        ("javascript:alert(1)", "javascript"),
        ("ws://example.com/", "ws"),
    ],
)
def test_non_http_schemes_are_refused(url: str, scheme: str) -> None:
    shown = str(httpx.URL(url))
    assert refusal(url) == (
        f"web.fetch: refused {shown}: only http and https URLs are fetched, not {scheme}"
    )


def test_file_url_exact_message() -> None:
    assert refusal("file:///etc/passwd") == (
        "web.fetch: refused file:/etc/passwd: only http and https URLs are fetched, not file"
    )


def test_a_url_without_host_is_refused() -> None:
    assert refusal("http:///x") == "web.fetch: refused http:/x: the URL has no host"


def test_a_non_http_scheme_is_refused_even_for_an_allowed_host() -> None:
    assert not allowed("ftp://127.0.0.1:21/", ("127.0.0.1:21", "127.0.0.1"))


# --- allow_hosts ---------------------------------------------------------------------


def test_allow_hosts_matches_the_exact_spelling_with_or_without_port() -> None:
    assert allowed("http://127.0.0.1:8080/", ("127.0.0.1:8080",))
    assert allowed("http://127.0.0.1:8080/", ("127.0.0.1",))
    assert allowed("http://127.0.0.1/", ("127.0.0.1",))
    assert allowed("http://127.0.0.1:9999/", ("127.0.0.1",))
    assert not allowed("http://127.0.0.1:8081/", ("127.0.0.1:8080",))
    assert not allowed("http://127.0.0.1/", ("127.0.0.1:8080",))


def test_allow_hosts_ignores_case_trailing_dot_and_spaces() -> None:
    assert allowed("http://127.0.0.1.:8080/", ("127.0.0.1:8080",))
    assert allowed("http://localhost:8080/", (" LocalHost:8080 ",))
    assert allowed("http://localhost.:8080/", ("localhost:8080",))
    assert allowed("http://LOCALHOST./", ("localhost",))
    assert allowed("http://intranet.example:80/", ("INTRANET.EXAMPLE.",))


def test_allow_hosts_accepts_ipv6_with_or_without_brackets() -> None:
    assert allowed("http://[::1]:8080/", ("[::1]:8080",))
    assert allowed("http://[::1]:8080/", ("[::1]",))
    assert allowed("http://[::1]:8080/", ("::1",))
    assert not allowed("http://[::1]:8081/", ("[::1]:8080",))


@pytest.mark.parametrize(
    "other",
    [
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "017700000001",
        "localhost",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::1]",
        "%31%32%37.0.0.1",
    ],
)
def test_allowing_one_spelling_does_not_allow_another(other: str) -> None:
    allow = ("127.0.0.1:8080",)
    assert allowed("http://127.0.0.1:8080/", allow)
    assert not allowed(f"http://{other}:8080/", allow)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1:8080/",
        "http://127.0.0.1/",
        "http://127.0.0.1./",
        "http://[::1]:8080/",
        "http://%31%32%37.0.0.1:81/",
        "http://localhost/",
        "http://foo.localhost:3000/",
        "http://[::ffff:127.0.0.1]:8080/",
        "http://169.254.169.254/",
        # a trailing dot together with a port
        "http://localhost.:8080/",
        "http://127.0.0.1.:8080/",
        "http://metadata.google.internal.:80/",
        "http://10.0.0.1.:8080/",
    ],
)
def test_the_entry_a_refusal_suggests_allows_that_url(url: str) -> None:
    message = refusal(url)
    entry = message.split(", add ", 1)[1].split(" to the web.fetch.allow_hosts", 1)[0]
    entry = entry.strip("'")
    assert allowed(url, (entry,)), f"{entry!r} (suggested by the refusal) does not allow {url}"


def test_allowing_127_0_0_1_port_refuses_127_1_port_with_its_own_message() -> None:
    assert refusal("http://127.1:8080/", ("127.0.0.1:8080",)) == (
        "web.fetch: refused http://127.1:8080/: 127.1 is 127.0.0.1, a loopback address"
        + fix("127.1:8080")
    )
    assert refusal("http://localhost:8080/", ("127.0.0.1:8080",)) == (
        "web.fetch: refused http://localhost:8080/: localhost is a loopback name"
        + fix("localhost:8080")
    )


def test_allows_is_by_spelling() -> None:
    policy = EgressPolicy(["127.0.0.1:8080", "Example.COM."])
    assert policy.allows("127.0.0.1", 8080)
    assert policy.allows("127.0.0.1.", 8080)
    assert not policy.allows("127.0.0.1", 80)
    assert not policy.allows("127.0.0.1", None)
    assert not policy.allows("127.1", 8080)
    assert not policy.allows("localhost", 8080)
    assert policy.allows("example.com", None)
    assert policy.allows("EXAMPLE.com.", 443)
    assert not EgressPolicy().allows("127.0.0.1", 8080)


# --- check_addresses: what a name resolved to ----------------------------------------


def test_a_name_resolving_to_public_and_private_addresses_is_refused() -> None:
    with pytest.raises(PolicyBlockedError) as caught:
        EgressPolicy().check_addresses("mixed.test", 80, ["93.184.216.34", "10.0.0.5"])
    assert caught.value.message == (
        "web.fetch: refused mixed.test:80: mixed.test resolves to 10.0.0.5, a private "
        "address" + fix("mixed.test:80")
    )


@pytest.mark.parametrize(
    "bad",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "169.254.169.254",
        "100.64.1.1",
        "::1",
        "::ffff:127.0.0.1",
        "fe80::1%eth0",
        "fd00:ec2::254",
        "0.0.0.0",
    ],
)
@pytest.mark.parametrize("first", [True, False])
def test_any_non_public_address_among_the_answers_refuses_the_name(bad: str, first: bool) -> None:
    addresses = [bad, "93.184.216.34"] if first else ["93.184.216.34", "2606:4700::1111", bad]
    with pytest.raises(PolicyBlockedError) as caught:
        EgressPolicy().check_addresses("rebind.test", 443, addresses)
    assert f"rebind.test resolves to {bad}, " in caught.value.message


def test_public_answers_pass_check_addresses() -> None:
    EgressPolicy().check_addresses("example.test", 443, ["93.184.216.34", "2606:4700::1111"])
