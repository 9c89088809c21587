"""OAuth 2.0 client credentials end to end: the installed helper, a client stored in a real
OpenBao, and a real OpenID Provider (node's oidc-provider) over TLS on 127.0.0.1.

The helper finds the token endpoint by discovery (or is given it), exchanges the client
with authlib, serves the access token, caches the token (never the client secret), asks
again ahead of the token's end, and maps the identity provider's errors to the documented
exit statuses. Nothing here is mocked; the redirecting endpoint is a real TLS server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devservers.net import BackgroundServer, JSONHandler, LoopbackCA, server_context
from tests.conftest import HELPER, Result, RunHelper
from tests.support.oidc import OAuthClient, OidcProvider
from tests.support.openbao import VaultNamespace

HOST = "mlflow.example.com"
STDIN = f"{HOST}\n"
PATH = "mlflow/oauth"


@pytest.fixture
def store(vault_ns: VaultNamespace) -> VaultNamespace:
    return vault_ns


def oauth_env(
    helper_env: dict[str, str], vault_ns: VaultNamespace, oidc_provider: OidcProvider, **extra: str
) -> dict[str, str]:
    token = vault_ns.reader_token(f"secret/data/{PATH}")
    return {
        **helper_env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
        "VAULT_ADDR": vault_ns.bao.http_url,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": token,
        "MLFLOW_VAULT_SECRET_PATH": f"secret/{PATH}",
        "MLFLOW_OIDC_CA_BUNDLE": oidc_provider.ca_path,
        **extra,
    }


@pytest.fixture
def env(
    helper_env: dict[str, str], vault_ns: VaultNamespace, oidc_provider: OidcProvider
) -> dict[str, str]:
    return oauth_env(helper_env, vault_ns, oidc_provider)


def store_client(
    vault_ns: VaultNamespace, client: OAuthClient, provider: OidcProvider, **extra: str
) -> None:
    vault_ns.write(PATH, client.secret_dict(provider, **extra))


def get_json(run_helper: RunHelper, env: dict[str, str], *options: str) -> tuple[Result, Any]:
    result = run_helper([*options, "--format", "json", "get"], STDIN, env)
    assert result.returncode == 0, result
    return result, json.loads(result.stdout)["ok"]


def bearer(answer: dict[str, Any]) -> str:
    value: str = answer["header"]["value"]
    assert value.startswith("Bearer ")
    return value.removeprefix("Bearer ")


def cache_bytes(env: dict[str, str]) -> bytes:
    return b"".join(
        p.read_bytes() for p in Path(env["MLFLOW_SECRETS_CACHE_DIR"]).rglob("*") if p.is_file()
    )


def assert_error(result: Result, code: int, *needles: str, secret: str = "") -> None:
    assert result.returncode == code, result
    assert result.stdout == "", result
    assert result.stderr.startswith("mlflow-secrets-helper: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    if secret:
        assert secret not in result.stderr


# --------------------------------------------------------------------------- the exchange


def test_a_stored_client_becomes_a_cached_access_token(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider, scope="mlflow")
    _, first = get_json(run_helper, env)
    token = bearer(first)
    assert first["source"] == "backend"
    introspected = oidc_provider.introspect(token)
    assert introspected["active"] is True
    assert introspected["client_id"] == oidc_client.client_id
    assert introspected["scope"] == "mlflow"
    # an hour-long token is capped by the route's TTL (300 s by default)
    assert 200 < first["expires_at"] - time.time() <= 300
    assert oidc_provider.token_requests(oidc_client.client_id) == 1

    _, second = get_json(run_helper, env)
    assert (bearer(second), second["source"]) == (token, "cache")
    assert oidc_provider.token_requests(oidc_client.client_id) == 1
    on_disk = cache_bytes(env)
    assert on_disk and token.encode() not in on_disk
    assert oidc_client.client_secret.encode() not in on_disk


def test_the_token_lasts_its_lifetime_less_the_margin_when_the_ttl_allows(
    run_helper: RunHelper,
    helper_env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
) -> None:
    client = oidc_provider.add_client(token_lifetime=600)
    store_client(store, client, oidc_provider)
    env = oauth_env(helper_env, store, oidc_provider, MLFLOW_VAULT_TTL_SEC="3600")
    before = time.time()
    _, answer = get_json(run_helper, env)
    # 600 s less a tenth (60 s): used for 540 s from when it was asked for
    assert before + 539 <= answer["expires_at"] <= time.time() + 541
    assert answer["refresh_after"] < answer["expires_at"]


def test_client_secret_post_and_a_given_token_url_skip_discovery(
    run_helper: RunHelper,
    helper_env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
) -> None:
    client = oidc_provider.add_client(auth_method="client_secret_post")
    store.write(PATH, {"client_id": client.client_id, "client_secret": client.client_secret})
    env = oauth_env(
        helper_env,
        store,
        oidc_provider,
        MLFLOW_OIDC_TOKEN_URL=oidc_provider.token_url,
        MLFLOW_OIDC_AUTH_METHOD="client_secret_post",
        MLFLOW_OIDC_AUDIENCE="https://mlflow.example.com",
    )
    discoveries = oidc_provider.stats()["discovery_requests"]
    _, answer = get_json(run_helper, env)
    assert oidc_provider.introspect(bearer(answer))["active"] is True
    assert oidc_provider.stats()["discovery_requests"] == discoveries
    (request,) = [
        r for r in oidc_provider.stats()["requests"] if r["client_id"] == client.client_id
    ]
    assert request["auth_method"] == "client_secret_post"
    assert request["audience"] == "https://mlflow.example.com"


def test_discovery_is_remembered_between_exchanges(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider)
    discoveries = oidc_provider.stats()["discovery_requests"]
    get_json(run_helper, env)
    get_json(run_helper, env, "--refresh")
    assert oidc_provider.token_requests(oidc_client.client_id) == 2
    assert oidc_provider.stats()["discovery_requests"] == discoveries + 1


def test_a_short_lived_token_is_replaced_before_it_ends(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
) -> None:
    client = oidc_provider.add_client(token_lifetime=3)
    store_client(store, client, oidc_provider)
    _, first = get_json(run_helper, env)
    # 3 s less 1 s, refreshed ahead after 75-90 % of that
    assert first["expires_at"] - time.time() <= 2.0
    time.sleep(max(first["expires_at"] + 1 - time.time(), 0))  # whole seconds in the JSON
    _, second = get_json(run_helper, env)
    assert second["source"] == "backend"
    assert bearer(second) != bearer(first)
    assert oidc_provider.introspect(bearer(second))["active"] is True
    assert oidc_provider.token_requests(client.client_id) == 2


def test_many_cold_gets_make_one_exchange(
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider)
    procs = [
        subprocess.Popen(
            [HELPER, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(16)
    ]
    outputs = [proc.communicate(STDIN.encode(), timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert len({out for out, _ in outputs}) == 1
    assert oidc_provider.token_requests(oidc_client.client_id) == 1


# --------------------------------------------------------------------------- failures


def test_a_wrong_client_secret_is_backend_denied(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    wrong = "wrong-" + oidc_client.client_secret
    store.write(
        PATH,
        {
            "client_id": oidc_client.client_id,
            "client_secret": wrong,
            "issuer": oidc_provider.issuer,
        },
    )
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 3, "invalid_client", "client_id and client_secret", secret=wrong)
    assert oidc_client.client_secret not in result.stderr


def test_a_scope_the_client_may_not_have_is_backend_denied(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider, scope="mlflow.read")
    assert_error(run_helper(["get"], STDIN, env), 3, "invalid_scope", "MLFLOW_OIDC_SCOPE")


def test_a_failing_token_endpoint_is_retried(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider)
    oidc_provider.fault(2, status=503)
    _, answer = get_json(run_helper, env)
    assert oidc_provider.introspect(bearer(answer))["active"] is True
    assert oidc_provider.token_requests(oidc_client.client_id, 503) == 2


def test_an_unavailable_token_endpoint_is_exit_4_and_no_stale_token_past_its_end(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
) -> None:
    client = oidc_provider.add_client(token_lifetime=2)
    store_client(store, client, oidc_provider)
    _, first = get_json(run_helper, env)
    time.sleep(max(first["expires_at"] + 1 - time.time(), 0))  # whole seconds in the JSON
    oidc_provider.fault(10, status=500)
    result = run_helper(["--timeout", "3", "get"], STDIN, env)
    assert_error(result, 4, "HTTP 500")
    oidc_provider.reset()


def test_an_untrusted_certificate_names_the_ca_setting(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider)
    del env["MLFLOW_OIDC_CA_BUNDLE"]
    assert_error(run_helper(["get"], STDIN, env), 4, "TLS", "MLFLOW_OIDC_CA_BUNDLE")
    # requests' own variable works as requests documents it
    _, answer = get_json(run_helper, {**env, "REQUESTS_CA_BUNDLE": oidc_provider.ca_path})
    assert oidc_provider.introspect(bearer(answer))["active"] is True


def test_plain_http_to_a_name_is_refused_before_anything_is_sent(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_client: OAuthClient,
) -> None:
    store.write(
        PATH,
        {
            "client_id": oidc_client.client_id,
            "client_secret": oidc_client.client_secret,
            "token_url": "http://localhost:9/token",
        },
    )
    assert_error(run_helper(["get"], STDIN, env), 5, "plain http", "https")


class _Redirect(JSONHandler):
    def do_POST(self) -> None:
        owner: Redirector = self.server.owner  # type: ignore[attr-defined]
        owner.hits.append(self.body())
        self.send_response(307)
        self.send_header("Location", owner.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST


class Redirector(BackgroundServer):
    handler = _Redirect
    scheme = "https"

    def __init__(self, target: str, tls: Any) -> None:
        self.target = target
        self.hits: list[bytes] = []
        super().__init__(tls)


@pytest.fixture
def redirector(tmp_path: Path, oidc_provider: OidcProvider) -> Iterator[tuple[Redirector, str]]:
    ca = LoopbackCA(tmp_path / "redirect-ca.pem")
    server = Redirector(oidc_provider.token_url, server_context(ca.issue("127.0.0.1")))
    try:
        yield server, str(ca.ca_path)
    finally:
        server.stop()


def test_the_client_secret_never_follows_a_redirect(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
    redirector: tuple[Redirector, str],
) -> None:
    server, ca = redirector
    store.write(
        PATH,
        {
            "client_id": oidc_client.client_id,
            "client_secret": oidc_client.client_secret,
            "token_url": server.url + "/token",
        },
    )
    result = run_helper(["get"], STDIN, {**env, "MLFLOW_OIDC_CA_BUNDLE": ca})
    assert_error(result, 5, "redirect (HTTP 307)", "not followed")
    assert len(server.hits) == 1  # the one request made, to the configured endpoint
    assert oidc_provider.token_requests(oidc_client.client_id) == 0
    assert oidc_provider.token_requests(oidc_client.client_id, 401) == 0


# --------------------------------------------------------------------------- operators


def test_doctor_performs_the_exchange_and_shows_the_lifetime_never_the_token(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
) -> None:
    client = oidc_provider.add_client(token_lifetime=900)
    store_client(store, client, oidc_provider)
    result = run_helper(["doctor"], "", env)
    assert result.returncode == 0, result
    assert "OAuth client" in result.stdout and client.client_id in result.stdout
    assert oidc_provider.token_url in result.stdout
    assert "expires in 900 s" in result.stdout
    assert oidc_provider.token_requests(client.client_id) == 1
    assert client.client_secret not in result.stdout + result.stderr


def test_doctor_reports_a_refused_client(
    run_helper: RunHelper,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider)
    oidc_provider.remove_client(oidc_client.client_id)
    result = run_helper(["doctor"], "", env)
    assert result.returncode == 3, result
    assert "FAIL" in result.stdout and "invalid_client" in result.stdout


def test_info_shows_the_oauth_settings(
    run_helper: RunHelper, env: dict[str, str], oidc_provider: OidcProvider
) -> None:
    env = {**env, "MLFLOW_OIDC_SCOPE": "mlflow"}
    result = run_helper(["info", "--json"], "", env)
    assert result.returncode == 0, result
    (route,) = json.loads(result.stdout)["routes"]
    assert route["oauth"] == {"oidc_ca_bundle": oidc_provider.ca_path, "oidc_scope": "mlflow"}


def test_doctor_warns_when_oauth_settings_meet_a_plain_token(
    run_helper: RunHelper, env: dict[str, str], store: VaultNamespace
) -> None:
    store.write(PATH, {"token": "plain-token-1"})
    result = run_helper(["doctor"], "", {**env, "MLFLOW_OIDC_SCOPE": "mlflow"})
    assert result.returncode == 0, result
    assert "warn route 1 (vault): OAuth settings (oidc_ca_bundle, oidc_scope) are set" in (
        result.stdout
    )
    got = run_helper(["get"], STDIN, {**env, "MLFLOW_OIDC_SCOPE": "mlflow"})
    assert got.stdout == "Authorization: Bearer plain-token-1\n"


def test_without_authlib_a_client_is_one_config_line_with_the_install_command(
    tmp_path: Path,
    env: dict[str, str],
    store: VaultNamespace,
    oidc_provider: OidcProvider,
    oidc_client: OAuthClient,
) -> None:
    store_client(store, oidc_client, oidc_provider)
    script = tmp_path / "helper-without-authlib.py"
    script.write_text(
        "import sys\n"
        "sys.modules['authlib'] = None\n"
        "from mlflow_secrets_helper.cli import main\n"
        "raise SystemExit(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", str(script), "get"],
        input=STDIN.encode(),
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    result = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert_error(result, 5, "needs authlib", "[oidc]")
    assert len(result.stderr.strip().splitlines()) == 1
    assert oidc_provider.token_requests(oidc_client.client_id) == 0
