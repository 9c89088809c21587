"""Plain http to a loopback host and the proxies of the environment (issue 15, point 1).

Whether a proxy would carry the request is asked of the HTTP library (requests when it is
installed, urllib otherwise): every case below holds for both, and runs for both.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from mlflow_secrets_helper.errors import HostRefused, InvalidInput
from mlflow_secrets_helper.policy import HostPolicy
from mlflow_secrets_helper.protocol import parse_target

P = "http://127.0.0.1:9"
ALLOW = "localhost:5000,127.0.0.1:5000,[::1]:5000"


@pytest.fixture(params=["default", "urllib-only"])
def library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``urllib-only``: the helper installed without requests (the core has no SDK)."""
    if request.param == "urllib-only":
        monkeypatch.setitem(sys.modules, "requests", None)
        monkeypatch.setitem(sys.modules, "requests.utils", None)
    return str(request.param)


# (url, environment): each spelling once let the header reach the proxy, or would
REFUSED = [
    ("http://localhost:5000", {"Http_Proxy": P}),
    ("http://127.0.0.1:5000", {"hTTP_pROXY": P}),
    ("http://127.0.0.1:5000", {"HTTP_PROXY": P}),
    ("http://127.0.0.1:5000", {"http_proxy": P}),
    ("http://127.0.0.1:5000", {"ALL_PROXY": P}),
    ("http://127.0.0.1:5000", {"all_proxy": "socks5://127.0.0.1:9"}),
    ("http://localhost:5000", {"HTTP_PROXY": P, "no_proxy": " * "}),
    ("http://127.0.0.1:5000", {"HTTP_PROXY": P, "no_proxy": " * "}),
    ("http://127.0.0.1:5000", {"HTTP_PROXY": P, "no_proxy": "0.0.0.0/0"}),
    ("http://127.0.0.1:5000", {"HTTP_PROXY": P, "no_proxy": "*,x"}),
    ("http://127.0.0.1:5000", {"http_proxy": P, "HTTP_PROXY": "http://127.0.0.2:9"}),
    ("http://127.0.0.1:5000", {"http_proxy": "http://127.0.0.2:9", "HTTP_PROXY": P}),
    ("http://[::1]:5000", {"ALL_PROXY": P, "no_proxy": "localhost"}),
]

ALLOWED = [
    ("http://127.0.0.1:5000", {}),
    ("http://127.0.0.1:5000", {"https_proxy": P, "HTTPS_PROXY": P}),
    ("http://127.0.0.1:5000", {"http_proxy": ""}),
    ("http://127.0.0.1:5000", {"HTTP_PROXY": P, "no_proxy": "*"}),
    ("http://[::1]:5000", {"ALL_PROXY": P, "NO_PROXY": "*"}),
    ("http://localhost:5000", {"HTTP_PROXY": P, "no_proxy": "localhost,localhost."}),
    ("http://localhost:5000", {"HTTP_PROXY": P, "no_proxy": "localhost,127.0.0.1"}),
    ("http://127.0.0.1:5000", {"Http_Proxy": P, "NO_PROXY": "localhost,127.0.0.1"}),
    ("http://127.0.0.1:5000", {"HTTP_PROXY": P, "no_proxy": "127.0.0.1, 127.0.0.1."}),
]


@pytest.mark.parametrize(("url", "env"), REFUSED)
def test_a_proxy_the_library_would_use_refuses_plain_http(
    library: str, url: str, env: dict[str, str]
) -> None:
    policy = HostPolicy.from_spec(ALLOW)
    target = parse_target(url)
    assert not policy.allows_plain_http(target, env)
    with pytest.raises(HostRefused) as caught:
        policy.check(target, env)
    assert "would see the header" in caught.value.message
    assert "\n" not in caught.value.message
    assert "127.0.0.1:9" not in caught.value.message  # the proxy URL may hold a password
    assert "no_proxy" in caught.value.hints[0]


@pytest.mark.parametrize(("url", "env"), ALLOWED)
def test_plain_http_goes_when_no_proxy_applies(library: str, url: str, env: dict[str, str]) -> None:
    policy = HostPolicy.from_spec(ALLOW)
    target = parse_target(url)
    assert policy.allows_plain_http(target, env)
    policy.check(target, env)


def test_the_hint_names_the_no_proxy_entry() -> None:
    policy = HostPolicy.from_spec("127.0.0.1:5000")
    with pytest.raises(HostRefused) as caught:
        policy.check(parse_target("http://127.0.0.1:5000"), {"http_proxy": "http://u:pw@p:3128"})
    assert caught.value.hints == ("add 127.0.0.1 to no_proxy, or unset http_proxy",)
    assert "pw" not in caught.value.message


@pytest.mark.parametrize("url", ["http://localhost.:5000", "http://127.0.0.1.:5000"])
def test_plain_http_to_a_host_with_a_trailing_dot_is_not_served(url: str) -> None:
    """A proxy's no_proxy tells ``localhost.`` from ``localhost``; the helper serves plain
    http by one spelling only (the MLflow plugin passes the dot through for http)."""
    with pytest.raises(InvalidInput, match="trailing dot"):
        parse_target(url)
    assert parse_target(url.replace("http://", "https://")).host in ("localhost", "127.0.0.1")


@pytest.mark.parametrize(
    ("no_proxy", "by_requests", "by_urllib"),
    [("127.0.0.1:5000", False, True), ("127.0.0.0/8", True, False)],
)
def test_the_library_that_sends_decides_what_a_no_proxy_entry_means(
    library: str, no_proxy: str, by_requests: bool, by_urllib: bool
) -> None:
    """requests reads CIDR blocks and not host:port against an IP host; urllib the other
    way round: each answer is the sending library's own, never a re-implementation."""
    policy = HostPolicy.from_spec(ALLOW)
    env = {"HTTP_PROXY": P, "no_proxy": no_proxy}
    allowed = policy.allows_plain_http(parse_target("http://127.0.0.1:5000"), env)
    with_requests = library == "default" and importlib.util.find_spec("requests") is not None
    assert allowed is (by_requests if with_requests else by_urllib)


def test_https_ignores_proxies(library: str) -> None:
    policy = HostPolicy.from_spec("*.company.com")
    policy.check(parse_target("https://a.company.com"), {"https_proxy": P, "http_proxy": P})


def test_the_question_leaves_the_process_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", P)
    import os

    before = dict(os.environ)
    HostPolicy.from_spec(ALLOW).allows_plain_http(parse_target("http://127.0.0.1:5000"), {})
    assert dict(os.environ) == before


def test_only_plain_http_to_loopback_loads_an_http_library() -> None:
    code = (
        "import sys\n"
        "from mlflow_secrets_helper.policy import HostPolicy\n"
        "from mlflow_secrets_helper.protocol import parse_target\n"
        "p = HostPolicy.from_spec('127.0.0.1:5000,*.example.com')\n"
        "p.check(parse_target('https://a.example.com'), {'HTTP_PROXY': 'http://p'})\n"
        "heavy = {'urllib.request', 'requests', 'http.client', 'socket'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "p.check(parse_target('http://127.0.0.1:5000'), {'NO_PROXY': '*', 'no_proxy': 'x'})\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "proxied = {'HTTP_PROXY': 'http://p', 'no_proxy': '*'}\n"
        "p.check(parse_target('http://127.0.0.1:5000'), proxied)\n"
        "print('urllib.request' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # no proxy configured (no_proxy alone configures none): direct, without asking a library
    assert out.stdout.split() == ["[]", "[]", "True"]
