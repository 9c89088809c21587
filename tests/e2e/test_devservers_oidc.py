"""The test OpenID Provider and the auth gateway work with real clients.

authlib's ``OAuth2Session`` (the requests client the helper's OAuth exchange builds on)
fetches tokens from node's oidc-provider over TLS verified against the test CA; tokens
expire after their client's lifetime; injected faults answer as configured; the gateway
forwards real MLflow REST and artifact calls with a good token and refuses the rest.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from devservers.gateway import AuthGateway, fingerprint
from devservers.net import closed_port_url
from devservers.oidc import OAuthClient, OidcProvider
from devservers.process import StartError

SEARCH = "/api/2.0/mlflow/experiments/search"


def oauth_session(provider: OidcProvider, client: OAuthClient, **kwargs: object) -> OAuth2Session:
    session = OAuth2Session(
        client.client_id,
        client.client_secret,
        token_endpoint_auth_method=client.auth_method,
        **kwargs,
    )
    session.trust_env = False  # straight to loopback, whatever *_PROXY says
    return session


def fetch(provider: OidcProvider, client: OAuthClient, **params: str) -> dict[str, object]:
    session = oauth_session(provider, client)
    token: dict[str, object] = session.fetch_token(
        provider.token_url, grant_type="client_credentials", verify=provider.ca_path, **params
    )
    return token


# --------------------------------------------------------------------------- the provider


def test_discovery_over_tls_names_the_token_endpoint(oidc_provider: OidcProvider) -> None:
    answer = requests.get(oidc_provider.discovery_url, verify=oidc_provider.ca_path, timeout=10)
    document = answer.json()
    assert answer.status_code == 200
    assert document["issuer"] == oidc_provider.issuer
    assert document["token_endpoint"] == oidc_provider.token_url
    assert "client_credentials" in document["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        document["token_endpoint_auth_methods_supported"]
    )
    assert document["introspection_endpoint"] == oidc_provider.introspection_url
    assert document["revocation_endpoint"] == oidc_provider.revocation_url
    assert "mlflow" in document["scopes_supported"]


def test_the_certificate_is_checked(oidc_provider: OidcProvider) -> None:
    """Only the test CA vouches for the server: the system store refuses it."""
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(oidc_provider.discovery_url, timeout=10)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_fetches_a_token(oidc_provider: OidcProvider, method: str) -> None:
    client = oidc_provider.add_client(auth_method=method, token_lifetime=120)
    token = fetch(oidc_provider, client, scope="mlflow")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 120
    assert token["scope"] == "mlflow"
    assert "refresh_token" not in token and "id_token" not in token
    introspected = oidc_provider.introspect(str(token["access_token"]))
    assert introspected["active"] is True
    assert introspected["client_id"] == client.client_id
    [request] = oidc_provider.requests_from(client.client_id)
    assert (request["auth_method"], request["status"]) == (method, 200)
    assert oidc_provider.token_requests(client.client_id) == 1


def test_basic_and_post_are_interchangeable(oidc_provider: OidcProvider) -> None:
    """oidc-provider accepts either secret method whatever the client registered (as many
    providers do): tests that care which one a caller used read it from the stats."""
    client = oidc_provider.add_client(auth_method="client_secret_post")
    basic = OAuthClient(client.client_id, client.client_secret, "client_secret_basic")
    fetch(oidc_provider, basic)
    fetch(oidc_provider, client)
    wrong = OAuthClient(client.client_id, "not-the-secret", "client_secret_post")
    with pytest.raises(OAuthError, match="invalid_client"):
        fetch(oidc_provider, wrong)
    made = oidc_provider.requests_from(client.client_id)
    assert [(r["auth_method"], r["status"]) for r in made] == [
        ("client_secret_basic", 200),
        ("client_secret_post", 200),
        ("client_secret_post", 401),
    ]


def test_scope_and_audience(oidc_provider: OidcProvider) -> None:
    """An ``audience`` parameter is accepted, ignored and recorded; a scope outside the
    client's is ``invalid_scope``; no scope asked, none granted."""
    client = oidc_provider.add_client(scope="mlflow")
    token = fetch(oidc_provider, client, audience="https://mlflow.example.com")
    assert "scope" not in token
    with pytest.raises(OAuthError, match="invalid_scope"):
        fetch(oidc_provider, client, scope="mlflow.read")
    with pytest.raises(OAuthError, match="invalid_target"):
        fetch(oidc_provider, client, resource="https://mlflow.example.com")
    requests_made = oidc_provider.requests_from(client.client_id)
    assert [r["audience"] for r in requests_made] == ["https://mlflow.example.com", None, None]
    assert [r["status"] for r in requests_made] == [200, 400, 400]
    assert "WARNING: default" not in oidc_provider.log_path.read_text()


def test_a_token_expires_after_its_clients_lifetime(oidc_provider: OidcProvider) -> None:
    client = oidc_provider.add_client(token_lifetime=2)
    token = fetch(oidc_provider, client)
    assert token["expires_in"] == 2
    access = str(token["access_token"])
    introspected = oidc_provider.introspect(access)
    assert introspected["active"] is True
    assert introspected["exp"] - introspected["iat"] == 2
    time.sleep(max(0.0, introspected["exp"] - time.time()) + 0.2)
    assert oidc_provider.introspect(access) == {"active": False}


def test_revoked_and_removed(oidc_provider: OidcProvider) -> None:
    client = oidc_provider.add_client()
    access = str(fetch(oidc_provider, client)["access_token"])
    oidc_provider.revoke(access)
    assert oidc_provider.introspect(access) == {"active": False}
    oidc_provider.remove_client(client.client_id)
    with pytest.raises(OAuthError, match="invalid_client"):
        fetch(oidc_provider, client)


def test_injected_faults(oidc_provider: OidcProvider) -> None:
    client = oidc_provider.add_client()
    auth = (client.client_id, client.client_secret)
    form = {"grant_type": "client_credentials"}
    oidc_provider.fault(2, status=503, retry_after=1)
    oidc_provider.fault(error="invalid_client")
    post = oidc_provider.session.post
    answers = [post(oidc_provider.token_url, data=form, auth=auth, timeout=10) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 401, 200]
    assert answers[0].headers["Retry-After"] == "1"
    assert answers[2].json()["error"] == "invalid_client"
    assert oidc_provider.stats()["by_client"][client.client_id] == {"503": 2, "401": 1, "200": 1}
    with pytest.raises(requests.exceptions.ReadTimeout):
        oidc_provider.fault(delay=2, status=503)
        post(oidc_provider.token_url, data=form, auth=auth, timeout=0.5)
    oidc_provider.fault(delay=0.5)
    started = time.monotonic()
    slow = post(oidc_provider.token_url, data=form, auth=auth, timeout=10)
    assert slow.status_code == 200 and time.monotonic() - started >= 0.5
    oidc_provider.fault(endpoint="discovery", status=500)
    assert oidc_provider.session.get(oidc_provider.discovery_url, timeout=10).status_code == 500
    assert oidc_provider.session.get(oidc_provider.discovery_url, timeout=10).status_code == 200


def test_start_error_when_node_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StartError, match=r"needs Node\.js"), OidcProvider(tmp_path):
        pass


def test_start_error_when_the_npm_package_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import devservers.oidc

    monkeypatch.setattr(devservers.oidc, "PROJECT", tmp_path)
    with pytest.raises(StartError, match=r"oidc-provider is not installed.*npm ci"):
        OidcProvider(tmp_path).start()


def test_the_log_holds_no_secret(oidc_provider: OidcProvider) -> None:
    """Clients, tokens and errors went through the provider: its log names none of them."""
    client = oidc_provider.add_client()
    access = str(fetch(oidc_provider, client)["access_token"])
    with pytest.raises(OAuthError):
        fetch(oidc_provider, OAuthClient(client.client_id, "wrong-secret-0001"))
    log = oidc_provider.log_path.read_text()
    assert "ready at" in log
    secrets = [c.client_secret for c in oidc_provider.clients.values()]
    secrets += [oidc_provider.resource_server.client_secret, access, "wrong-secret-0001"]
    assert [s for s in secrets if s in log] == []
    assert oidc_provider.config_path.stat().st_mode & 0o077 == 0


# --------------------------------------------------------------------------- the gateway


def test_mlflows_own_client_through_the_gateway(
    oidc_provider: OidcProvider,
    auth_gateway: AuthGateway,
    oidc_client: OAuthClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """MLflow's client with ``MLFLOW_TRACKING_TOKEN``: tracking calls and a proxied
    artifact upload and download all pass the gateway."""
    from mlflow import MlflowClient

    for name in ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    access = str(oidc_provider.token(oidc_client)["access_token"])
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", access)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=auth_gateway.url)
    experiment_id = client.create_experiment(f"gateway-client-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "loss", 0.5)
    artifact = tmp_path / "model.txt"
    artifact.write_text("weights\n" * 1000)
    client.log_artifact(run.info.run_id, str(artifact))
    back = client.download_artifacts(run.info.run_id, "model.txt", str(tmp_path / "back"))
    assert Path(back).read_text() == artifact.read_text()
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert auth_gateway.tokens[fingerprint(access)] >= 5


def test_gateway_forwards_mlflow_calls_with_a_good_token(
    oidc_provider: OidcProvider, auth_gateway: AuthGateway, oidc_client: OAuthClient
) -> None:
    access = str(oidc_provider.token(oidc_client)["access_token"])
    bearer = {"Authorization": f"Bearer {access}"}
    before = auth_gateway.counts()["accepted"]
    name = f"gateway-{uuid.uuid4().hex[:8]}"
    created = requests.post(
        f"{auth_gateway.url}/api/2.0/mlflow/experiments/create",
        json={"name": name},
        headers=bearer,
        timeout=30,
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    found = requests.post(
        f"{auth_gateway.url}{SEARCH}",
        json={"filter": f"name = '{name}'", "max_results": 5},
        headers=bearer,
        timeout=30,
    )
    assert [e["experiment_id"] for e in found.json()["experiments"]] == [experiment_id]
    got = requests.get(
        f"{auth_gateway.url}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
        headers=bearer,
        timeout=30,
    )
    assert got.json()["experiment"]["name"] == name
    deleted = requests.post(
        f"{auth_gateway.url}/api/2.0/mlflow/experiments/delete",
        json={"experiment_id": experiment_id},
        headers=bearer,
        timeout=30,
    )
    assert deleted.status_code == 200
    assert auth_gateway.counts()["accepted"] == before + 4
    assert auth_gateway.tokens[fingerprint(access)] == 4


def test_gateway_proxies_artifact_uploads(
    oidc_provider: OidcProvider, auth_gateway: AuthGateway, oidc_client: OAuthClient
) -> None:
    """PUT with a length and chunked, then GET: the bytes arrive unchanged."""
    bearer = {"Authorization": f"Bearer {oidc_provider.token(oidc_client)['access_token']}"}
    base = f"{auth_gateway.url}/api/2.0/mlflow-artifacts/artifacts/gateway/{uuid.uuid4().hex}"
    blob = bytes(range(256)) * 4096  # 1 MiB
    sized = requests.put(f"{base}/sized.bin", data=blob, headers=bearer, timeout=60)
    assert sized.status_code == 200, sized.text
    chunked = requests.put(
        f"{base}/chunked.bin",
        data=(blob[i : i + 100_000] for i in range(0, len(blob), 100_000)),
        headers=bearer,
        timeout=60,
    )
    assert chunked.status_code == 200, chunked.text
    for name in ("sized.bin", "chunked.bin"):
        back = requests.get(f"{base}/{name}", headers=bearer, timeout=60)
        assert back.status_code == 200
        assert back.content == blob


def test_gateway_refuses_missing_invalid_expired_and_revoked_tokens(
    oidc_provider: OidcProvider, auth_gateway: AuthGateway
) -> None:
    client = oidc_provider.add_client(token_lifetime=2)
    url = f"{auth_gateway.url}{SEARCH}"
    body = {"max_results": 1}
    before = auth_gateway.counts()["rejected"]

    missing = requests.post(url, json=body, timeout=30)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="mlflow-gateway"'

    forged = requests.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]

    access = str(oidc_provider.token(client)["access_token"])
    bearer = {"Authorization": f"Bearer {access}"}
    assert requests.post(url, json=body, headers=bearer, timeout=30).status_code == 200
    auth_gateway.reject_next()
    early = requests.post(url, json=body, headers=bearer, timeout=30)
    assert early.status_code == 401 and "invalid_token" in early.headers["WWW-Authenticate"]
    time.sleep(2.3)
    expired = requests.post(url, json=body, headers=bearer, timeout=30)
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]

    other = oidc_provider.add_client()
    revoked = str(oidc_provider.token(other)["access_token"])
    oidc_provider.revoke(revoked)
    refused = requests.post(
        url, json=body, headers={"Authorization": f"Bearer {revoked}"}, timeout=30
    )
    assert refused.status_code == 401

    after = auth_gateway.counts()["rejected"]
    delta = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in after}
    assert delta == {"missing": 1, "invalid": 3, "injected": 1}


def test_gateway_with_a_callable_validator(mlflow_basic_server: object) -> None:
    """Any callable decides (the Key Vault emulator's registry checks Entra tokens)."""
    from devservers.gateway import basic_auth
    from devservers.keyvault import TokenRegistry
    from tests.support.mlflow_server import ADMIN, MlflowServer

    assert isinstance(mlflow_basic_server, MlflowServer)
    registry = TokenRegistry()
    token, _ = registry.issue("app", "tenant", "api://mlflow", lifetime=60)
    gateway = AuthGateway(
        mlflow_basic_server.url,
        lambda t: registry.check(t) is not None,
        upstream_headers={"Authorization": basic_auth(*ADMIN)},
    )
    try:
        url = f"{gateway.url}{SEARCH}"
        good = requests.post(
            url, json={"max_results": 1}, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert good.status_code == 200, good.text
        registry.revoke_all()
        bad = requests.post(
            url, json={"max_results": 1}, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert bad.status_code == 401
        assert gateway.counts() == {"accepted": 1, "rejected": {"invalid": 1}, "tokens": 1}
    finally:
        gateway.stop()


def test_gateway_failures_are_not_401(auth_gateway: AuthGateway) -> None:
    """An unreachable upstream is 502 and a validator that cannot ask the IdP is 503:
    neither says the token is bad."""

    def idp_down(token: str) -> bool:
        raise ConnectionRefusedError

    bearer = {"Authorization": "Bearer some-token"}
    dead = AuthGateway(closed_port_url(), lambda t: True)
    down = AuthGateway(auth_gateway.upstream, idp_down)
    try:
        assert requests.get(f"{dead.url}{SEARCH}", headers=bearer, timeout=30).status_code == 502
        assert requests.get(f"{down.url}{SEARCH}", headers=bearer, timeout=30).status_code == 503
    finally:
        dead.stop()
        down.stop()


def test_an_issuer_named_localhost(tmp_path: Path) -> None:
    client = OAuthClient("by-name", "by-name-secret-0001", token_lifetime=60)
    with OidcProvider(tmp_path, clients=[client], host="localhost") as provider:
        assert provider.issuer.startswith("https://localhost:")
        document = provider.session.get(provider.discovery_url, timeout=10).json()
        assert document["token_endpoint"] == provider.token_url
        assert fetch(provider, client)["expires_in"] == 60
