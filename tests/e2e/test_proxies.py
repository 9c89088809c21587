"""Proxies never see a header or a backend credential in clear text (issue 15, points 1-2).

A recording HTTP proxy on 127.0.0.1 stands for the proxy of a corporate network: it logs
every request it receives and answers 502. The header travels MLflow's real path (the
plugin's auth object, the real helper as a child process, requests with the environment's
proxies) or ``doctor --dry-run``; the backends are the real ones of the e2e tier (OpenBao,
moto) on plain http to 127.0.0.1, which is how a local Vault agent or emulator is reached.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from mlflow_secrets_shim.auth import HelperAuth
from mlflow_secrets_shim.invocation import HelperProcess
from mlflow_secrets_shim.memo import CredentialMemo
from tests.conftest import RunHelper
from tests.e2e.shim_fakes import LoopbackServer, loopback_server
from tests.support.keyvault import AzureCloud
from tests.support.moto_server import AwsBackend
from tests.support.openbao import VaultNamespace

TOKEN = "tok-proxy-7c1e0a"
HEADER = f"Bearer {TOKEN}"
SECRET_NAME = "mlflow/proxied"


class RecordingProxy:
    """Logs the raw head and body of every request (any method, CONNECT included)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.seen.append(
                        f"{self.requestline}\n{self.headers}\n{body.decode('latin-1')}"
                    )
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = do_CONNECT = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def saw_credentials(self) -> list[str]:
        """Requests that carried the MLflow token or any Authorization/token header."""
        needles = (TOKEN, "authorization:", "x-vault-token:", "x-amz-security-token:")
        return [seen for seen in self.seen if any(n in seen.lower() for n in needles)]


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    box = RecordingProxy()
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def tracking() -> Iterator[LoopbackServer]:
    with loopback_server() as box:
        box.accept = {("Authorization", HEADER)}
        yield box


def without_proxies(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}


@pytest.fixture
def aws_env(
    aws: AwsBackend, helper_env: dict[str, str], tracking: LoopbackServer
) -> dict[str, str]:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    return without_proxies(
        {
            **helper_env,
            **aws.env(),
            "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
            "MLFLOW_AWS_SECRET_NAME": SECRET_NAME,
            "MLFLOW_SECRETS_ALLOWED_HOSTS": f"127.0.0.1:{tracking.port},localhost:{tracking.port}",
        }
    )


# -- point 1: the header of a plain-http request to a loopback tracking server -------------

P = "{proxy}"
# (how the tracking URI spells the host, the proxy settings)
SPELLINGS = [
    ("127.0.0.1", {"Http_Proxy": P}),
    ("127.0.0.1", {"hTTP_pROXY": P, "no_proxy": "localhost"}),
    ("127.0.0.1", {"HTTP_PROXY": P, "no_proxy": " * "}),
    ("127.0.0.1", {"HTTP_PROXY": P, "no_proxy": "0.0.0.0/0"}),
    ("localhost.", {"HTTP_PROXY": P, "no_proxy": "localhost,127.0.0.1"}),
    ("127.0.0.1.", {"HTTP_PROXY": P, "no_proxy": "localhost,127.0.0.1"}),
    ("127.0.0.1", {"ALL_PROXY": P}),
    ("127.0.0.1", {"all_proxy": P, "NO_PROXY": "localhost"}),
    ("127.0.0.1", {"http_proxy": P, "HTTP_PROXY": "http://127.0.0.1:9"}),
    ("127.0.0.1", {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": P}),
    ("127.0.0.1", {"http_proxy": "", "HTTP_PROXY": P}),
    ("127.0.0.1", {"HTTP_PROXY": P, "no_proxy": "", "NO_PROXY": "*"}),
]


def proxy_settings(template: Mapping[str, str], proxy: RecordingProxy) -> dict[str, str]:
    return {k: v.format(proxy=proxy.url) for k, v in template.items()}


@pytest.mark.parametrize(("host", "settings"), SPELLINGS)
def test_the_plugin_never_hands_the_header_to_a_proxy(
    host: str,
    settings: dict[str, str],
    aws_env: dict[str, str],
    proxy: RecordingProxy,
    tracking: LoopbackServer,
    run_helper: RunHelper,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a warm cache: the helper answers without contacting the backend at all
    warm = run_helper(["get"], f"{tracking.url}\n", aws_env)
    assert warm.returncode == 0, warm
    settings = proxy_settings(settings, proxy)
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in settings.items():  # requests in this process reads them
        monkeypatch.setenv(name, value)
    auth = HelperAuth(CredentialMemo(HelperProcess(environ={**aws_env, **settings})))
    outcome: Any
    with requests.Session() as session:  # trust_env: the proxies of the environment apply
        try:
            outcome = session.get(
                f"http://{host}:{tracking.port}/api/2.0/mlflow/experiments/search",
                auth=auth,
                timeout=20,
            ).status_code
        except Exception as exc:  # the form of a failure is the plugin's business
            outcome = exc
    assert proxy.saw_credentials() == [], outcome
    if host.endswith("."):  # plain http goes by one spelling only: nothing is sent
        assert "trailing dot" in str(outcome), outcome
        assert not tracking.carrying(HEADER)
    elif tracking.carrying(HEADER):  # the library went direct: allowed, and it was
        assert outcome == 200
    else:  # refused by the helper (the plugin then sends without a header)
        assert "would see the header" in caplog.text, outcome


def test_the_plugin_sends_the_header_directly_when_no_proxy_applies(
    aws_env: dict[str, str],
    proxy: RecordingProxy,
    tracking: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {"HTTP_PROXY": proxy.url, "ALL_PROXY": proxy.url, "no_proxy": "*"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    auth = HelperAuth(CredentialMemo(HelperProcess(environ={**aws_env, **settings})))
    with requests.Session() as session:
        response = session.get(f"{tracking.url}/api/2.0/mlflow/experiments/search", auth=auth)
    assert response.status_code == 200
    assert tracking.carrying(HEADER)
    assert proxy.seen == []  # and the helper read AWS directly too


@pytest.mark.parametrize(("host", "settings"), SPELLINGS)
def test_doctor_dry_run_never_hands_the_header_to_a_proxy(
    host: str,
    settings: dict[str, str],
    aws_env: dict[str, str],
    proxy: RecordingProxy,
    tracking: LoopbackServer,
    run_helper: RunHelper,
) -> None:
    env = {**aws_env, **proxy_settings(settings, proxy)}
    result = run_helper(["doctor", "--dry-run", f"http://{host}:{tracking.port}"], b"", env)
    assert proxy.saw_credentials() == [], result
    assert "Traceback" not in result.stdout + result.stderr
    if host.endswith("."):
        assert result.returncode == 2 and "trailing dot" in result.stderr, result
    elif not tracking.carrying(HEADER):
        assert "would see the header" in result.stdout, result


def test_doctor_dry_run_goes_direct_when_no_proxy_applies(
    aws_env: dict[str, str], proxy: RecordingProxy, tracking: LoopbackServer, run_helper: RunHelper
) -> None:
    env = {**aws_env, "http_proxy": proxy.url, "all_proxy": proxy.url, "NO_PROXY": "*"}
    result = run_helper(["doctor", "--dry-run", tracking.url], b"", env)
    assert result.returncode == 0, result
    assert tracking.carrying(HEADER)
    assert proxy.seen == []


# -- point 2: the backends' own traffic ----------------------------------------------------


def every_proxy(proxy: RecordingProxy) -> dict[str, str]:
    return {name: proxy.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy")}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_vault_is_read_directly(
    host: str,
    vault_ns: VaultNamespace,
    helper_env: dict[str, str],
    proxy: RecordingProxy,
    run_helper: RunHelper,
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    address = vault_ns.bao.http_url.replace("127.0.0.1", host)
    env = {
        **without_proxies(helper_env),
        **every_proxy(proxy),
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com",
        "VAULT_ADDR": address,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": vault_ns.reader_token("secret/data/mlflow/auth"),
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth",
    }
    result = run_helper(["--format", "json", "get"], "mlflow.example.com\n", env)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["ok"]["header"]["value"] == HEADER
    doctor = run_helper(["doctor"], b"", env)
    assert doctor.returncode == 0, doctor
    assert proxy.seen == []


def test_a_loopback_aws_endpoint_is_read_directly(
    aws: AwsBackend, helper_env: dict[str, str], proxy: RecordingProxy, run_helper: RunHelper
) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    env = {
        **without_proxies(helper_env),
        **without_proxies(aws.env()),
        **every_proxy(proxy),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": SECRET_NAME,
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com",
    }
    result = run_helper(["--format", "json", "get"], "mlflow.example.com\n", env)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["ok"]["header"]["value"] == HEADER
    assert aws.get_secret_value_count() == 1
    run_helper(["cache", "clear"], b"", env)
    doctor = run_helper(["doctor"], b"", env)
    assert doctor.returncode == 0, doctor
    assert aws.get_secret_value_count() == 2
    assert proxy.seen == []


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"])
def test_a_plain_http_aws_endpoint_elsewhere_is_refused(
    variable: str, helper_env: dict[str, str], proxy: RecordingProxy, run_helper: RunHelper
) -> None:
    env = {
        **without_proxies(helper_env),
        **every_proxy(proxy),  # had the endpoint been used, the request would end here
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": SECRET_NAME,
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com",
        variable: "http://user:pw@secretsmanager.invalid:4566",
    }
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert result.returncode == 5, result
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first == (
        f"mlflow-secrets-helper: error: config: {variable} http://secretsmanager.invalid:4566 "
        "is plain http; only a loopback address may skip TLS"
    ), result.stderr
    assert "pw" not in result.stderr
    assert proxy.seen == []


def test_a_loopback_azure_authority_is_contacted_directly(
    azure_cloud: AzureCloud, helper_env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    """The egress guard is the proxy here: it serves the vault's public name and records
    anything else; with no ``no_proxy`` the loopback login must still not go through it."""
    azure_cloud.kv.set_secret("mlflow-token", "via-direct-login")
    env = {
        **without_proxies(helper_env),
        **without_proxies(azure_cloud.env()),
        "HTTPS_PROXY": azure_cloud.guard.url,
        "HTTP_PROXY": azure_cloud.guard.url,
        "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
        "MLFLOW_AZURE_KEY_VAULT_URL": azure_cloud.vault_url,
        "MLFLOW_AZURE_SECRET_NAME": "mlflow-token",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com",
        **azure_cloud.workload_identity(tmp_path),
    }
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert result.stdout == "Authorization: Bearer via-direct-login\n", result.stderr
    assert azure_cloud.guard.refused == []
