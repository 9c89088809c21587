"""Fuzzing the stdin parser and the allowlist patterns.

The parser may only return a valid :class:`Request` or raise :class:`InvalidInput`;
patterns may only parse or raise :class:`ConfigError`. ``HYPOTHESIS_EXAMPLES``
sets the budget per test (CI raises it).
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlflow_secrets_helper.errors import ConfigError, InvalidInput
from mlflow_secrets_helper.policy import HostPattern, is_public_suffix
from mlflow_secrets_helper.protocol import (
    DEFAULT_PORTS,
    Request,
    Target,
    is_numeric_label,
    parse_request,
    parse_target,
)

# CI runs 10,000 examples per test; on a busy two-core machine that can take minutes.
pytestmark = pytest.mark.timeout(1800)

BUDGET = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

HOST_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.:")

# --- a grammar of near-miss inputs ----------------------------------------------------

INJECTIONS = [
    "\r",
    "\n",
    "\x00",
    "\t",
    " ",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u202e",
    "\ufeff",
    "@",
    "\\",
    "%",
    "%0d%0a",
    "%2e",
    "#",
    "?",
    "/",
    ":",
    "[",
    "]",
    "*",
    "=",
    "..",
    ".",
    "\u00fc",
    "\uff0e",
    "\u3002",
    "\u0663",
    "\u00a0",
    "\xad",
    "\u200b",
    "xn--",
    "-",
    "_",
]
schemes = st.sampled_from(
    [
        "https",
        "http",
        "HTTPS",
        "HtTp",
        "ftp",
        "file",
        "ssh",
        "git",
        "",
        "https:",
        "h ttps",
        "javascript",
        "httpss",
        "http+unix",
    ]
)
labels = st.one_of(
    st.sampled_from(
        [
            "mlflow",
            "company",
            "com",
            "localhost",
            "a",
            "xn--bcher-kva",
            "0x7f",
            "127",
            "0",
            "00",
            "255",
            "256",
            "0177",
            "a-b",
            "-a",
            "a-",
            "_svc",
            "A" * 63,
            "b" * 64,
            "MLflow",
        ]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=0, max_size=12),
    st.sampled_from(INJECTIONS),
)
names = st.lists(labels, min_size=0, max_size=6).map(".".join)
ipv4 = st.one_of(
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda p: ".".join(map(str, p))),
    st.sampled_from(
        [
            "127.1",
            "127.0.1",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "2130706433",
            "127.0.0.1.",
            "1.2.3.4.5",
            "01.2.3.4",
            "127.0.0.01",
        ]
    ),
)
ipv6 = st.one_of(
    st.ip_addresses(v=6).map(str),
    st.sampled_from(
        [
            "::1",
            "::",
            "fe80::1%eth0",
            "fe80::1%25eth0",
            "::ffff:127.0.0.1",
            "1:2:3:4:5:6:7:8:9",
            "::g",
            "",
            "0:0:0:0:0:0:0:1",
            "[::1]",
        ]
    ),
).flatmap(lambda a: st.sampled_from([f"[{a}]", a, f"[{a}", f"{a}]"]))
valid_names = st.lists(
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        min_size=1,
        max_size=10,
    ),
    min_size=1,
    max_size=4,
).map(".".join)
hosts = st.one_of(valid_names, valid_names, names, ipv4, ipv6, st.sampled_from(INJECTIONS))
ports = st.one_of(
    st.none(),
    st.none(),
    st.integers(1, 65535).map(str),
    st.integers(-5, 70000).map(str),
    st.sampled_from(
        [
            "",
            "+443",
            "0443",
            "0",
            "65535",
            "65536",
            "443 ",
            "\u0664\u0664\u0663",
            "0x1bb",
            "1e3",
            "99999999999999999999",
        ]
    ),
)
userinfo = st.sampled_from(
    ["", "", "", "", "", "", "", "", "", "user@", "user:pw@", "@", "a\\@", "a%40b@"]
)
tails = st.sampled_from(
    [
        "",
        "/",
        "/path",
        "/a%20b",
        "?q=1",
        "#frag",
        "/a b",
        "/\\x",
        "/\u00fc",
        "/@evil.example",
        "?@evil.example",
        "#@evil.example",
    ]
)
injection_spots: st.SearchStrategy[list[tuple[int, str]]] = st.one_of(
    st.just([]),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(INJECTIONS)), min_size=1, max_size=2),
)


@st.composite
def authorities(draw: st.DrawFn) -> str:
    port: str | None = draw(ports)
    host: str = draw(hosts)
    return draw(userinfo) + host + ("" if port is None else ":" + port)


@st.composite
def url_lines(draw: st.DrawFn) -> str:
    scheme = draw(st.one_of(st.sampled_from(["https", "http"]), schemes))
    separator = draw(st.sampled_from(["://", "://", "://", "://", ":/", ":", ":///"]))
    return scheme + separator + draw(authorities()) + draw(tails)


def inject(text: str, spots: list[tuple[int, str]]) -> str:
    for index, piece in spots:
        index %= len(text) + 1
        text = text[:index] + piece + text[index:]
    return text


git_keys = st.sampled_from(
    [
        "protocol",
        "host",
        "url",
        "path",
        "username",
        "password",
        "credential",
        "credential_id",
        "capability[]",
        "wwwauth[]",
        "state[]",
        "Host",
        "",
        "host ",
        "quit",
        "x",
    ]
)


valid_authorities = st.tuples(
    st.one_of(valid_names, ipv4), st.one_of(st.none(), st.integers(1, 65535))
).map(lambda hp: hp[0] + ("" if hp[1] is None else f":{hp[1]}"))


@st.composite
def git_inputs(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.integers(0, 3)):
        lines.append("protocol=" + draw(st.one_of(st.sampled_from(["https", "http"]), schemes)))
    if draw(st.integers(0, 3)):
        lines.append("host=" + draw(st.one_of(valid_authorities, authorities())))
    if not draw(st.integers(0, 3)):
        lines.append("url=" + draw(url_lines()))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(git_keys)
        value = draw(st.one_of(st.text(max_size=20), authorities(), url_lines()))
        lines.append(f"{key}={value}" if draw(st.integers(0, 9)) else value)
    lines = draw(st.permutations(lines))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n", "\n\nrest", "\r\n"]))


near_misses = st.one_of(url_lines(), authorities(), git_inputs()).flatmap(
    lambda text: injection_spots.map(lambda spots: inject(text, spots))
)


# --- invariants ---------------------------------------------------------------------------


def check_target(target: Target) -> None:
    assert target.scheme in ("https", "http")
    assert 1 <= target.port <= 65535
    host = target.host
    assert host
    assert host.isascii()
    assert host == host.lower()
    assert set(host) <= HOST_CHARS, host
    assert not host.endswith(".")
    if ":" in host:
        assert str(ipaddress.IPv6Address(host)) == host
        assert "." not in host or host.count(":") >= 2
    else:
        assert len(host) <= 253
        assert all(1 <= len(label) <= 63 for label in host.split("."))
        last = host.rsplit(".", 1)[-1]
        if last.isdigit():
            assert str(ipaddress.IPv4Address(host)) == host
    # the canonical form parses back to itself
    assert parse_target(target.origin()) == target


def check_parse(data: bytes) -> Request | None:
    try:
        request = parse_request(data)
    except InvalidInput as exc:
        assert exc.exit_code == 2
        assert exc.message
        assert all(" " <= ch <= "~" for ch in exc.message), exc.message
        return None
    assert isinstance(request, Request)
    check_target(request.target)
    assert request.form in ("git", "url", "host")
    for key, values in request.attributes.items():
        assert values, key
        for value in values:
            assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value)
            assert "\u2028" not in value and "\u2029" not in value
    if request.form != "git":
        assert not request.attributes
    return request


@BUDGET
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check_parse(data)


@BUDGET
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    check_parse(text.encode("utf-8", "surrogatepass"))


@BUDGET
@given(near_misses)
def test_near_miss_inputs(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    request = check_parse(data)
    if request is None or request.form != "url":
        return
    # a second, independent URL parser must read the same origin
    line = text.split("\n", 1)[0]
    split = urllib.parse.urlsplit(line)
    assert split.scheme.lower() == request.target.scheme
    assert split.username is None and split.password is None
    hostname = split.hostname or ""
    if hostname.endswith("."):
        hostname = hostname[:-1]
    if ":" in request.target.host:
        assert ipaddress.IPv6Address(hostname) == ipaddress.IPv6Address(request.target.host)
    else:
        assert hostname == request.target.host
    expected_port = split.port or (443 if request.target.scheme == "https" else 80)
    assert expected_port == request.target.port


@BUDGET
@given(
    st.lists(
        st.sampled_from(["\n", "\r", "\r\n", "a", "=", "host=h.example", "protocol=https"]),
        max_size=12,
    ).map("".join)
)
def test_line_structure(text: str) -> None:
    check_parse(text.encode())


# --- patterns -------------------------------------------------------------------------------

pattern_labels = st.one_of(
    labels,
    st.sampled_from(["*", "**", "mlflow-*", "*-x", "m*x", "***", "?", "[a-z]", "*."]),
)
pattern_texts = st.one_of(
    st.text(max_size=40),
    st.tuples(st.lists(pattern_labels, max_size=5).map(".".join), ports).map(
        lambda hp: hp[0] + ("" if hp[1] is None else ":" + hp[1])
    ),
    ipv6,
    ipv4,
)
target_labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)


@st.composite
def targets(draw: st.DrawFn) -> Target:
    host = draw(
        st.one_of(
            st.lists(target_labels, min_size=1, max_size=5).map(".".join),
            ipv4,
            st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
        )
    )
    url = draw(st.sampled_from(["https", "http"])) + "://" + host
    if draw(st.booleans()):
        url += f":{draw(st.integers(1, 65535))}"
    try:
        return parse_target(url)
    except InvalidInput:
        return Target("https", "fallback.example", 443)


@BUDGET
@given(pattern_texts, targets())
def test_patterns_parse_or_config_error(text: str, target: Target) -> None:
    try:
        pattern = HostPattern.parse(text)
    except ConfigError as exc:
        assert exc.exit_code == 5
        assert all(" " <= ch <= "~" for ch in exc.message), exc.message
        return
    assert isinstance(pattern.matches(target), bool)
    assert "?" not in text and "[a-z]" not in text
    if pattern.literal:
        assert "*" not in text


@BUDGET
@given(
    st.lists(target_labels, min_size=1, max_size=3),
    st.sampled_from(["*", "mlflow-*", "a*", "**"]),
    st.lists(target_labels, min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.one_of(st.none(), st.integers(1, 65535)),
)
def test_wildcards_respect_label_boundaries(
    suffix_labels: list[str],
    wildcard: str,
    head_labels: list[str],
    pattern_port: int | None,
    target_port: int | None,
) -> None:
    suffix = ".".join(suffix_labels)
    text = f"{wildcard}.{suffix}" + ("" if pattern_port is None else f":{pattern_port}")
    try:
        parse_target(suffix)
    except InvalidInput:
        valid_suffix = False
    else:
        valid_suffix = not is_numeric_label(suffix.rsplit(".", 1)[-1])
        valid_suffix = valid_suffix and not is_public_suffix(suffix)
    try:
        pattern = HostPattern.parse(text)
    except ConfigError:
        assert not valid_suffix, text
        return
    assert valid_suffix, text
    if wildcard != "**":
        head_labels = [
            wildcard[:-1] + label if i == 0 else label for i, label in enumerate(head_labels)
        ]
    host = ".".join([*head_labels, suffix])
    authority = host + ("" if target_port is None else f":{target_port}")
    try:
        target = parse_target(authority)
    except InvalidInput:
        return
    matched = pattern.matches(target)
    port_ok = pattern_port is None or pattern_port == target.port
    if wildcard == "**":
        assert matched is port_ok
    else:
        # '*' is exactly one label: more head labels never match
        assert matched is (port_ok and len(head_labels) == 1)
    # the bare suffix is never matched by a wildcard
    assert not pattern.matches(parse_target(suffix))


@BUDGET
@given(
    st.sampled_from(["https", "http", "HTTPS", "Http"]),
    st.one_of(valid_authorities, st.ip_addresses(v=6).map(lambda a: f"[{a}]")),
    st.sampled_from(["", "/", "/api/2.0/mlflow", "?a=b%20c", "#/experiments/1", "/@x"]),
)
def test_well_formed_urls_are_accepted_and_agree_with_urlsplit(
    scheme: str, authority: str, tail: str
) -> None:
    host = authority.rsplit(":", 1)[0] if not authority.startswith("[") else authority
    if is_numeric_label(host.rsplit(".", 1)[-1]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return
    text = f"{scheme}://{authority}{tail}"
    request = check_parse(text.encode())
    assert request is not None, text
    split = urllib.parse.urlsplit(text)
    assert split.scheme == request.target.scheme
    assert (split.port or DEFAULT_PORTS[split.scheme]) == request.target.port
    if ":" in request.target.host:
        assert ipaddress.IPv6Address(split.hostname or "") == ipaddress.IPv6Address(
            request.target.host
        )
    else:
        hostname = split.hostname or ""
        assert (hostname[:-1] if hostname.endswith(".") else hostname) == request.target.host
