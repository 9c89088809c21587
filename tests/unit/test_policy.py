"""The host allowlist of CONTRACT §4: pattern forms, matching, plain http and proxies."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlflow_secrets_helper.errors import ConfigError, HostRefused
from mlflow_secrets_helper.policy import HostPattern, HostPolicy, parse_patterns
from mlflow_secrets_helper.protocol import Target, parse_target

SOURCE = "MLFLOW_SECRETS_ALLOWED_HOSTS"


def t(text: str) -> Target:
    return parse_target(text)


@pytest.mark.parametrize(
    ("text", "literal", "port"),
    [
        ("mlflow.company.com", True, None),
        ("MLflow.Company.com.", True, None),
        ("mlflow.company.com:8443", True, 8443),
        ("localhost", True, None),
        ("127.0.0.1", True, None),
        ("127.0.0.1:5000", True, 5000),
        ("[::1]", True, None),
        ("[::1]:5000", True, 5000),
        ("[0:0::1]:5000", True, 5000),
        ("*.company.com", False, None),
        ("*.company.com:443", False, 443),
        ("**.company.com", False, None),
        ("**.company.com:8443", False, 8443),
        ("mlflow-*", False, None),
        ("mlflow-*.company.com", False, None),
        ("mlflow*.company.com", False, None),
        ("*.example.com", False, None),
        ("*.company.com.", False, None),
        ("_svc.company.com", True, None),
    ],
)
def test_pattern_accepted(text: str, literal: bool, port: int | None) -> None:
    pattern = HostPattern.parse(text)
    assert pattern.literal is literal
    assert pattern.port == port
    assert str(pattern) == text


REJECTED_PATTERNS = [
    ("", "empty"),
    ("*", "bare '*'"),
    ("**", "bare '**'"),
    ("*.", "bare '*'"),
    ("*:443", "bare '*'"),
    ("?.company.com", "'?'"),
    ("mlflow-?", "'?'"),
    ("[a-z].company.com", "character classes"),
    ("mlflow[0-9].company.com", "character classes"),
    ("a.*.company.com", "leftmost"),
    ("*.*.company.com", "leftmost"),
    ("**.*.company.com", "leftmost"),
    ("ml*flow.company.com", "whole label"),
    ("*-mlflow.company.com", "whole label"),
    ("mlflow-**.company.com", "whole label"),
    ("***.company.com", "whole label"),
    ("-*.company.com", "prefix"),
    ("*.0.0.1", "IP"),
    ("127.0.0.*", "leftmost"),
    ("*.1", "IP"),
    ("**.10.0.0.1", "IP"),
    ("*.0x7f", "IP"),
    ("https://mlflow.company.com", "without scheme"),
    ("mlflow.company.com/path", "without scheme"),
    ("user@mlflow.company.com", "without scheme"),
    (".company.com", "*.company.com"),
    ("a..b", "empty label"),
    ("a b", "' '"),
    ("bücher.example", "'\\xfc'"),
    ("h\x00", "'\\x00'"),
    ("h\u2028", "'\\u2028'"),
    ("h%2e", "'%'"),
    ("h:0", "invalid port"),
    ("h:65536", "invalid port"),
    ("h:+1", "'+'"),
    ("h:", "empty port"),
    ("h:0443", "invalid port"),
    ("::1", "brackets"),
    ("[::1", "unclosed"),
    ("[fe80::1%eth0]", "'%'"),
    ("[::1]x", "after ']'"),
    ("127.1", "IPv4"),
    ("0177.0.0.1", "IPv4"),
    ("2130706433", "IPv4"),
    ("a" * 64 + ".com", "63"),
    ("-bad.com", "'-'"),
]


@pytest.mark.parametrize(("text", "reason"), REJECTED_PATTERNS)
def test_pattern_rejected(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HostPattern.parse(text)
    assert caught.value.exit_code == 5
    assert reason in caught.value.message
    assert "invalid host pattern" in caught.value.message or reason == "empty"
    assert all(" " <= ch <= "~" for ch in caught.value.message)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "set but empty"),
        ("   ", "set but empty"),
        ("a.com,,b.com", "entry 2 is empty"),
        ("a.com,", "entry 2 is empty"),
        (",a.com", "entry 1 is empty"),
        ("a.com, ,b.com", "entry 2 is empty"),
        ("a.com,*", "bare '*'"),
        ("a.com,b c.com", "' '"),
        ([], "empty list"),
        (["a.com", ""], "entry 2 is empty"),
        (["a.com", 5], "not a string"),
    ],
)
def test_patterns_rejected_name_the_source(spec: object, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_patterns(spec, source=SOURCE)  # type: ignore[arg-type]
    assert caught.value.message.startswith(SOURCE + ":") or SOURCE in caught.value.message
    assert reason in caught.value.message


def test_patterns_are_stripped_and_kept_in_order() -> None:
    patterns = parse_patterns(" a.com , *.b.com:443,[::1] ", source=SOURCE)
    assert [str(p) for p in patterns] == ["a.com", "*.b.com:443", "[::1]"]
    assert parse_patterns(["a.com", " b.com "], source="routes[0].hosts")[1].suffix == "b.com"


def test_invalid_spec_fails_closed() -> None:
    with pytest.raises(ConfigError, match=r"routes\.prod"):
        HostPolicy.from_spec("good.com,bad?.com", source="routes.prod")


MATCHES = [
    # literal hosts, ports
    ("mlflow.company.com", "https://mlflow.company.com", True),
    ("mlflow.company.com", "https://MLFLOW.company.com.:8443", True),
    ("mlflow.company.com", "https://other.company.com", False),
    ("mlflow.company.com", "https://x.mlflow.company.com", False),
    ("mlflow.company.com", "https://mlflow.company.com.evil.com", False),
    ("mlflow.company.com:8443", "https://mlflow.company.com:8443", True),
    ("mlflow.company.com:8443", "https://mlflow.company.com", False),
    ("mlflow.company.com:443", "https://mlflow.company.com", True),
    ("mlflow.company.com:443", "http://mlflow.company.com", False),
    ("mlflow.company.com:80", "http://mlflow.company.com", True),
    # * is one label, never crosses a dot
    ("*.company.com", "https://a.company.com", True),
    ("*.company.com", "https://a-b_c.company.com:1", True),
    ("*.company.com", "https://company.com", False),
    ("*.company.com", "https://a.b.company.com", False),
    ("*.company.com", "https://acompany.com", False),
    ("*.company.com", "https://a.company.com.evil.com", False),
    ("*.company.com", "https://a.company.co", False),
    ("*.company.com:8443", "https://a.company.com:8443", True),
    ("*.company.com:8443", "https://a.company.com", False),
    ("mlflow-*", "https://mlflow-prod", True),
    ("mlflow-*", "https://mlflow-prod.company.com", False),
    ("mlflow-*", "https://mlflow", False),
    ("mlflow-*", "https://other-prod", False),
    ("mlflow-*.company.com", "https://mlflow-prod.company.com", True),
    ("mlflow-*.company.com", "https://mlflow-a.b.company.com", False),
    ("mlflow-*.company.com", "https://x.mlflow-a.company.com", False),
    ("mlflow-*.company.com", "https://mlflow.company.com", False),
    ("mlflow*.company.com", "https://mlflow2.company.com", True),
    ("mlflow*.company.com", "https://mlflow.company.com", False),
    # ** is one or more labels
    ("**.company.com", "https://a.company.com", True),
    ("**.company.com", "https://a.b.c.company.com", True),
    ("**.company.com", "https://company.com", False),
    ("**.company.com", "https://xcompany.com", False),
    ("**.company.com", "https://a.company.com.evil.com", False),
    ("**.company.com:8443", "https://a.b.company.com:8443", True),
    ("**.company.com:8443", "https://a.b.company.com", False),
    # IP literals
    ("127.0.0.1", "http://127.0.0.1:5000", True),
    ("127.0.0.1", "https://127.0.0.1", True),
    ("127.0.0.1", "https://127.0.0.2", False),
    ("127.0.0.1:5000", "http://127.0.0.1:5000", True),
    ("127.0.0.1:5000", "http://127.0.0.1:5001", False),
    ("[::1]", "http://[::1]:5000", True),
    ("[::1]:5000", "http://[0::1]:5000", True),
    ("[::1]:5000", "http://[::1]:5001", False),
    ("[::1]", "https://[::2]", False),
    ("[2001:db8::1]", "https://[2001:DB8:0::1]", True),
    ("localhost", "http://127.0.0.1", False),
    ("127.0.0.1", "http://localhost", False),
]


@pytest.mark.parametrize(("pattern", "url", "expected"), MATCHES)
def test_matches(pattern: str, url: str, expected: bool) -> None:
    assert HostPattern.parse(pattern).matches(t(url)) is expected


def test_wildcards_never_match_ip_targets() -> None:
    for pattern in ("*.0.0.1", "**.0.1"):
        with pytest.raises(ConfigError):
            HostPattern.parse(pattern)
    # an IP target cannot satisfy a name wildcard even by construction
    assert not HostPattern.parse("mlflow-*").matches(Target("https", "::1", 443))
    assert not HostPattern.parse("**.example.com").matches(Target("https", "1.2.3.4", 443))


# --- the policy -------------------------------------------------------------------


def test_development_mode_allows_any_https_host() -> None:
    policy = HostPolicy.from_spec(None)
    assert policy.development_mode
    assert policy.patterns == ()
    for url in ("https://anything.example", "https://10.0.0.1:8443", "https://[::1]"):
        policy.check(t(url), {})


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "http://localhost", "http://h.example"])
def test_development_mode_refuses_http(url: str) -> None:
    policy = HostPolicy.from_spec(None)
    with pytest.raises(HostRefused, match="development mode") as caught:
        policy.check(t(url), {})
    assert caught.value.exit_code == 1
    assert any(SOURCE in hint for hint in caught.value.hints)
    assert not policy.allows_plain_http(t(url), {})


def test_unlisted_host_is_refused_with_a_hint() -> None:
    policy = HostPolicy.from_spec("mlflow.company.com")
    policy.check(t("https://mlflow.company.com/x"), {})
    with pytest.raises(HostRefused) as caught:
        policy.check(t("https://evil.example:8443"), {})
    assert caught.value.message == f"https://evil.example:8443 is not in {SOURCE}"
    assert caught.value.hints == (f"add evil.example:8443 to {SOURCE}",)


def test_refusal_names_the_configured_source() -> None:
    policy = HostPolicy.from_spec(["a.example"], source="route 'prod'")
    with pytest.raises(HostRefused, match="route 'prod'"):
        policy.check(t("https://b.example"), {})


HTTP_CASES = [
    # (allowlist, url, env, allowed, reason)
    ("127.0.0.1:5000", "http://127.0.0.1:5000", {}, True, ""),
    ("127.0.0.1", "http://127.0.0.1:5000", {}, True, ""),
    ("127.0.0.5", "http://127.0.0.5", {}, True, ""),
    ("localhost:5000", "http://localhost:5000", {}, True, ""),
    ("[::1]:5000", "http://[::1]:5000", {}, True, ""),
    ("localhost", "http://localhost:80", {}, True, ""),
    ("127.0.0.1:5000", "http://127.0.0.1:5001", {}, False, "is not in"),
    ("h.example", "http://h.example", {}, False, "loopback"),
    ("10.0.0.1", "http://10.0.0.1", {}, False, "loopback"),
    ("*.company.com", "http://a.company.com", {}, False, "loopback"),
    ("mlflow-*", "http://mlflow-local", {}, False, "loopback"),
    ("localhost,*.localhost", "http://a.localhost", {}, False, "loopback"),
    ("localho*", "http://localhost", {}, False, "wildcard"),
]


@pytest.mark.parametrize(("allow", "url", "env", "allowed", "reason"), HTTP_CASES)
def test_plain_http(allow: str, url: str, env: dict[str, str], allowed: bool, reason: str) -> None:
    policy = HostPolicy.from_spec(allow)
    target = t(url)
    assert policy.allows_plain_http(target, env) is allowed
    if allowed:
        policy.check(target, env)
        return
    with pytest.raises(HostRefused) as caught:
        policy.check(target, env)
    assert reason in caught.value.message
    assert caught.value.hints
    assert "\n" not in caught.value.message


def test_importing_the_policy_stays_light() -> None:
    code = (
        "import sys, mlflow_secrets_helper.policy\n"
        "heavy = {'ipaddress', 'urllib.request', 'socket', 'ssl', 'http.client'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
