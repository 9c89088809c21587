"""MLflow behind an identity provider: runs that outlive their tokens see no 401.

Real parts only: node's oidc-provider over TLS issues access tokens that live a few
seconds to an OAuth client stored in OpenBao; an auth gateway checks every request's
token by introspection before it reaches a real MLflow tracking server; MLflow's own
client sends through the plugin, which calls the installed helper. Several client
processes on one machine run for several token lifetimes: the gateway must never answer
401, and the identity provider must see about one exchange per lifetime for the whole
machine, not one per process. A token revoked early is replaced through the plugin's
401 path without the caller noticing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from devservers.gateway import AuthGateway
from tests.support.oidc import OidcProvider
from tests.support.openbao import VaultNamespace

pytestmark = pytest.mark.mlflow_e2e

CLIENT = Path(__file__).with_name("shim_token_client.py")
LIFETIME = 4  # seconds an access token lives
DURATION = 14.0  # seconds each client runs: more than three lifetimes
PROCESSES = 3
SECRET_PATH = "mlflow/idp-client"


@pytest.fixture
def gateway(own_gateway: AuthGateway) -> AuthGateway:
    return own_gateway


def client_env(
    helper_env: dict[str, str],
    vault_ns: VaultNamespace,
    oidc_provider: OidcProvider,
    gateway: AuthGateway,
) -> dict[str, str]:
    netloc = gateway.url.split("://", 1)[1]
    return {
        **helper_env,
        "MLFLOW_TRACKING_URI": gateway.url,
        "MLFLOW_TRACKING_AUTH": "mlflow-secrets-helper",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": netloc,
        "VAULT_ADDR": vault_ns.bao.http_url,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": vault_ns.reader_token(f"secret/data/{SECRET_PATH}"),
        "MLFLOW_VAULT_SECRET_PATH": f"secret/{SECRET_PATH}",
        "MLFLOW_OIDC_CA_BUNDLE": oidc_provider.ca_path,
        "MLFLOW_OIDC_SCOPE": "mlflow",
    }


def test_runs_longer_than_several_token_lifetimes_see_no_401(
    helper_env: dict[str, str],
    vault_ns: VaultNamespace,
    oidc_provider: OidcProvider,
    gateway: AuthGateway,
) -> None:
    client = oidc_provider.add_client(token_lifetime=LIFETIME)
    vault_ns.write(SECRET_PATH, client.secret_dict(oidc_provider))
    env = client_env(helper_env, vault_ns, oidc_provider, gateway)
    procs = [
        subprocess.Popen(
            [sys.executable, str(CLIENT), str(DURATION), "0.05"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [proc.communicate(timeout=DURATION + 60) for proc in procs]
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        reports.append(json.loads(out.decode().splitlines()[-1]))
    assert all(report["errors"] == [] for report in reports), reports
    calls = sum(report["calls"] for report in reports)
    counts = gateway.counts()
    assert counts["rejected"] == {}, counts
    assert counts["accepted"] >= calls >= PROCESSES * 20
    exchanges = oidc_provider.token_requests(client.client_id)
    # each token is used for 3 s (its 4 s less 1 s) and replaced after 75-90 % of that by
    # one process for the machine: at least a new token per lifetime, never one per process
    least = math.floor(DURATION / LIFETIME)
    most = math.ceil(DURATION / (0.75 * (LIFETIME - 1))) + 1
    assert least <= exchanges <= most, (exchanges, counts)
    assert counts["tokens"] == exchanges  # every token issued was used, none was wasted


def test_a_token_revoked_early_is_replaced_without_the_caller_noticing(
    helper_env: dict[str, str],
    vault_ns: VaultNamespace,
    oidc_provider: OidcProvider,
    gateway: AuthGateway,
) -> None:
    client = oidc_provider.add_client(token_lifetime=3600)
    vault_ns.write(SECRET_PATH, client.secret_dict(oidc_provider))
    env = client_env(helper_env, vault_ns, oidc_provider, gateway)
    script = (
        "import sys\n"
        "from mlflow import MlflowClient\n"
        "c = MlflowClient()\n"
        "c.search_experiments(max_results=1)\n"
        "print('revoke', flush=True)\n"
        "sys.stdin.readline()\n"
        "c.search_experiments(max_results=1)\n"
        "c.search_experiments(max_results=1)\n"
        "print('done', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "revoke"
    (first,) = [r for r in oidc_provider.stats()["requests"] if r["client_id"] == client.client_id]
    assert first["status"] == 200
    # revoke the token the process is using, as an administrator would
    _revoke_cached_token(oidc_provider, client.client_id, env)
    proc.stdin.write("\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert out.strip() == "done"
    counts = gateway.counts()
    assert counts["rejected"] == {"invalid": 1}, counts  # the one 401, answered by a re-send
    assert counts["accepted"] == 3
    assert counts["tokens"] == 2
    assert oidc_provider.token_requests(client.client_id) == 2


def _revoke_cached_token(provider: OidcProvider, client_id: str, env: dict[str, str]) -> None:
    """Revoke the token the helper holds for ``client_id``: read through the helper itself
    (``get --format token``), then revoked at the identity provider."""
    host = env["MLFLOW_SECRETS_ALLOWED_HOSTS"]
    done = subprocess.run(
        [sys.executable, "-I", "-m", "mlflow_secrets_helper", "get", "--format", "token"],
        input=f"http://{host}\n",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = done.stdout.strip()
    assert provider.introspect(token)["client_id"] == client_id
    provider.revoke(token)
    assert provider.introspect(token)["active"] is False


def test_curl_with_the_man_page_recipe_reaches_mlflow_behind_the_gateway(
    helper_env: dict[str, str],
    vault_ns: VaultNamespace,
    oidc_provider: OidcProvider,
    gateway: AuthGateway,
) -> None:
    client = oidc_provider.add_client(token_lifetime=60)
    vault_ns.write(SECRET_PATH, client.secret_dict(oidc_provider))
    env = client_env(helper_env, vault_ns, oidc_provider, gateway)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the installed helper
    host = env["MLFLOW_SECRETS_ALLOWED_HOSTS"]
    recipe = (
        "set -euo pipefail\n"
        f"hdr=$(echo http://{host} | mlflow-secrets-helper get) || exit\n"
        "printf '%s\\n' \"$hdr\" |\n"
        "  curl --fail-with-body -sS -H @- \\\n"
        f"    '{gateway.url}/api/2.0/mlflow/experiments/search?max_results=1'\n"
    )
    done = subprocess.run(
        ["bash", "-c", recipe], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "experiments" in json.loads(done.stdout)
    assert gateway.counts()["accepted"] == 1
    assert oidc_provider.token_requests(client.client_id) == 1
