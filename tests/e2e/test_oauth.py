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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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


@dataclass
class Idp:
    """One test's world: the helper configured for a Vault route whose secret is an OAuth
    client, the OpenBao namespace holding it and the OpenID Provider."""

    provider: OidcProvider
    store: VaultNamespace
    run_helper: RunHelper
    env: dict[str, str] = field(default_factory=dict)

    def client(self, **options: Any) -> OAuthClient:
        """A new client registered at the provider (``add_client``'s options)."""
        return self.provider.add_client(**options)

    def keep(self, client: OAuthClient, **fields: str) -> None:
        """Store ``client`` with the issuer, plus ``fields``, as the route's secret."""
        self.store.write(PATH, client.secret_dict(self.provider, **fields))

    def keep_fields(self, **fields: str) -> None:
        """Store exactly ``fields`` as the route's secret."""
        self.store.write(PATH, fields)

    def run(self, args: list[str], stdin: str = STDIN, **env: str) -> Result:
        return self.run_helper(args, stdin, {**self.env, **env})

    def get(self, *options: str, **env: str) -> dict[str, Any]:
        result = self.run([*options, "--format", "json", "get"], **env)
        assert result.returncode == 0, result
        answer: dict[str, Any] = json.loads(result.stdout)["ok"]
        return answer

    def exchanges(self, client: OAuthClient, status: int = 200) -> int:
        return self.provider.token_requests(client.client_id, status)

    def active(self, answer: dict[str, Any]) -> bool:
        return bool(self.provider.introspect(bearer(answer))["active"])


@pytest.fixture
def idp(
    helper_env: dict[str, str],
    vault_ns: VaultNamespace,
    oidc_provider: OidcProvider,
    run_helper: RunHelper,
) -> Iterator[Idp]:
    env = {
        **helper_env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
        "VAULT_ADDR": vault_ns.bao.http_url,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": vault_ns.reader_token(f"secret/data/{PATH}"),
        "MLFLOW_VAULT_SECRET_PATH": f"secret/{PATH}",
        "MLFLOW_OIDC_CA_BUNDLE": oidc_provider.ca_path,
    }
    yield Idp(oidc_provider, vault_ns, run_helper, env)
    oidc_provider.reset()  # no injected fault outlives its test


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


def test_a_stored_client_becomes_a_cached_access_token(idp: Idp) -> None:
    client = idp.client()
    idp.keep(client, scope="mlflow")
    first = idp.get()
    token = bearer(first)
    assert first["source"] == "backend"
    introspected = idp.provider.introspect(token)
    assert introspected["active"] is True
    assert introspected["client_id"] == client.client_id
    assert introspected["scope"] == "mlflow"
    # an hour-long token is capped by the route's TTL (300 s by default)
    assert 200 < first["expires_at"] - time.time() <= 300
    assert idp.exchanges(client) == 1

    second = idp.get()
    assert (bearer(second), second["source"]) == (token, "cache")
    assert idp.exchanges(client) == 1
    on_disk = cache_bytes(idp.env)
    assert on_disk and token.encode() not in on_disk
    assert client.client_secret.encode() not in on_disk


def test_the_token_lasts_its_lifetime_less_the_margin_when_the_ttl_allows(idp: Idp) -> None:
    idp.keep(idp.client(token_lifetime=600))
    before = time.time()
    answer = idp.get(MLFLOW_VAULT_TTL_SEC="3600")
    # 600 s less a tenth (60 s): used for 540 s from when it was asked for
    assert before + 539 <= answer["expires_at"] <= time.time() + 541
    assert answer["refresh_after"] < answer["expires_at"]


def test_client_secret_post_and_a_given_token_url_skip_discovery(idp: Idp) -> None:
    client = idp.client(auth_method="client_secret_post")
    idp.keep_fields(client_id=client.client_id, client_secret=client.client_secret)
    discoveries = idp.provider.stats()["discovery_requests"]
    answer = idp.get(
        MLFLOW_OIDC_TOKEN_URL=idp.provider.token_url,
        MLFLOW_OIDC_AUTH_METHOD="client_secret_post",
        MLFLOW_OIDC_AUDIENCE="https://mlflow.example.com",
    )
    assert idp.active(answer)
    assert idp.provider.stats()["discovery_requests"] == discoveries
    (request,) = idp.provider.requests_from(client.client_id)
    assert request["auth_method"] == "client_secret_post"
    assert request["audience"] == "https://mlflow.example.com"


def test_discovery_is_remembered_between_exchanges(idp: Idp) -> None:
    client = idp.client()
    idp.keep(client)
    discoveries = idp.provider.stats()["discovery_requests"]
    idp.get()
    idp.get("--refresh")
    assert idp.exchanges(client) == 2
    assert idp.provider.stats()["discovery_requests"] == discoveries + 1


def test_a_short_lived_token_is_replaced_before_it_ends(idp: Idp) -> None:
    client = idp.client(token_lifetime=3)
    idp.keep(client)
    first = idp.get()
    # 3 s less 1 s, refreshed ahead after 75-90 % of that
    assert first["expires_at"] - time.time() <= 2.0
    time.sleep(max(first["expires_at"] + 1 - time.time(), 0))  # whole seconds in the JSON
    second = idp.get()
    assert second["source"] == "backend"
    assert bearer(second) != bearer(first)
    assert idp.active(second)
    assert idp.exchanges(client) == 2


def test_many_cold_gets_make_one_exchange(idp: Idp) -> None:
    client = idp.client()
    idp.keep(client)
    procs = [
        subprocess.Popen(
            [HELPER, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=idp.env,
        )
        for _ in range(16)
    ]
    outputs = [proc.communicate(STDIN.encode(), timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert len({out for out, _ in outputs}) == 1
    assert idp.exchanges(client) == 1


# --------------------------------------------------------------------------- failures


def test_a_wrong_client_secret_is_backend_denied(idp: Idp) -> None:
    client = idp.client()
    wrong = "wrong-" + client.client_secret
    idp.keep_fields(client_id=client.client_id, client_secret=wrong, issuer=idp.provider.issuer)
    result = idp.run(["get"])
    assert_error(result, 3, "invalid_client", "client_id and client_secret", secret=wrong)
    assert client.client_secret not in result.stderr


def test_a_scope_the_client_may_not_have_is_backend_denied(idp: Idp) -> None:
    idp.keep(idp.client(), scope="mlflow.read")
    assert_error(idp.run(["get"]), 3, "invalid_scope", "MLFLOW_OIDC_SCOPE")


def test_a_failing_token_endpoint_is_retried(idp: Idp) -> None:
    client = idp.client()
    idp.keep(client)
    idp.provider.fault(2, status=503)
    assert idp.active(idp.get())
    assert idp.exchanges(client, 503) == 2


def test_an_unavailable_token_endpoint_is_exit_4_and_no_stale_token_past_its_end(
    idp: Idp,
) -> None:
    idp.keep(idp.client(token_lifetime=2))
    first = idp.get()
    time.sleep(max(first["expires_at"] + 1 - time.time(), 0))  # whole seconds in the JSON
    idp.provider.fault(10, status=500)
    assert_error(idp.run(["--timeout", "3", "get"]), 4, "HTTP 500")


def test_an_untrusted_certificate_names_the_ca_setting(idp: Idp) -> None:
    idp.keep(idp.client())
    del idp.env["MLFLOW_OIDC_CA_BUNDLE"]
    assert_error(idp.run(["get"]), 4, "TLS", "MLFLOW_OIDC_CA_BUNDLE")
    # requests' own variable works as requests documents it
    assert idp.active(idp.get(REQUESTS_CA_BUNDLE=idp.provider.ca_path))


def test_plain_http_to_a_name_is_refused_before_anything_is_sent(idp: Idp) -> None:
    client = idp.client()
    idp.keep_fields(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_url="http://localhost:9/token",
    )
    assert_error(idp.run(["get"]), 5, "plain http", "https")


class _Scripted(JSONHandler):
    def do_POST(self) -> None:
        owner: ScriptedEndpoint = self.server.owner
        owner.hits.append(self.body())
        status, headers, body = owner.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


class ScriptedEndpoint(BackgroundServer):
    """A token endpoint that misbehaves in one set way (a redirect, a body no identity
    provider here sends): what a broken or hostile endpoint looks like to the helper.
    The well-behaved endpoint of every other test is the real OpenID Provider."""

    handler = _Scripted
    scheme = "https"

    def __init__(self, tls: Any) -> None:
        self.answer: tuple[int, dict[str, str], bytes] = (500, {}, b"")
        self.hits: list[bytes] = []
        super().__init__(tls)


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[ScriptedEndpoint, str]]:
    ca = LoopbackCA(tmp_path / "endpoint-ca.pem")
    server = ScriptedEndpoint(server_context(ca.issue("127.0.0.1")))
    try:
        yield server, str(ca.ca_path)
    finally:
        server.stop()


def keep_client_at(idp: Idp, server: ScriptedEndpoint) -> OAuthClient:
    client = idp.client()
    idp.keep_fields(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_url=server.url + "/token",
    )
    return client


def test_the_client_secret_never_follows_a_redirect(
    idp: Idp, endpoint: tuple[ScriptedEndpoint, str]
) -> None:
    server, ca = endpoint
    server.answer = (307, {"Location": idp.provider.token_url}, b"")
    client = keep_client_at(idp, server)
    result = idp.run(["get"], MLFLOW_OIDC_CA_BUNDLE=ca)
    assert_error(result, 5, "redirect (HTTP 307)", "not followed")
    assert len(server.hits) == 1  # the one request made, to the configured endpoint
    assert idp.provider.requests_from(client.client_id) == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"access_token": "at-1", "token_type": "Bearer", "expires_in": 1e400}',
        b'{"access_token": "at-1", "token_type": "Bearer", "expires_in": [1]}',
        b'{"access_token": "at-1", "token_type": "Bearer", "expires_in": "soon"}',
        b"<html>ok</html>",
    ],
)
def test_a_token_response_that_cannot_be_read_is_one_line_exit_4(
    idp: Idp, endpoint: tuple[ScriptedEndpoint, str], body: bytes
) -> None:
    server, ca = endpoint
    server.answer = (200, {"Content-Type": "application/json"}, body)
    keep_client_at(idp, server)
    result = idp.run(["get"], MLFLOW_OIDC_CA_BUNDLE=ca)
    assert_error(result, 4, "token response that cannot be read")
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(server.hits) == 1  # not retried: it would answer the same


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, b""), (403, b"<html>denied</html>"), (400, b'{"message": "nope"}')],
)
def test_a_refusal_without_an_oauth_error_is_backend_denied(
    idp: Idp, endpoint: tuple[ScriptedEndpoint, str], status: int, body: bytes
) -> None:
    server, ca = endpoint
    server.answer = (status, {"Content-Type": "text/html"}, body)
    client = keep_client_at(idp, server)
    result = idp.run(["get"], MLFLOW_OIDC_CA_BUNDLE=ca)
    assert_error(result, 3, f"answered HTTP {status} without an OAuth error", "client_secret")
    assert client.client_secret not in result.stderr


def test_an_identity_provider_that_echoes_the_client_secret_does_not_get_it_shown(
    idp: Idp, endpoint: tuple[ScriptedEndpoint, str]
) -> None:
    server, ca = endpoint
    client = keep_client_at(idp, server)
    echo = {"error": "invalid_client", "error_description": f"bad secret {client.client_secret}"}
    server.answer = (401, {"Content-Type": "application/json"}, json.dumps(echo).encode())
    result = idp.run(["get"], MLFLOW_OIDC_CA_BUNDLE=ca)
    assert_error(result, 3, "invalid_client", "bad secret <redacted>", secret=client.client_secret)


def test_an_access_token_is_sent_as_bearer_whatever_it_looks_like(
    idp: Idp, endpoint: tuple[ScriptedEndpoint, str]
) -> None:
    server, ca = endpoint
    odd = json.dumps({"username": "u", "password": "p"})
    answer = {"access_token": odd, "token_type": "Bearer", "expires_in": 60}
    server.answer = (200, {"Content-Type": "application/json"}, json.dumps(answer).encode())
    keep_client_at(idp, server)
    result = idp.run(["get"], MLFLOW_OIDC_CA_BUNDLE=ca)
    # not read as a basic credential: a bearer token, refused for its spaces and quotes
    assert_error(result, 5, "the access token for the OAuth client in", "whitespace")


def test_a_401_with_a_text_body_from_the_real_provider_is_a_refusal(idp: Idp) -> None:
    idp.keep(idp.client())
    idp.provider.fault(1, status=401)
    assert_error(idp.run(["get"]), 3, "answered HTTP 401 without an OAuth error")


# --------------------------------------------------------------------------- operators


def test_doctor_performs_the_exchange_and_shows_the_lifetime_never_the_token(idp: Idp) -> None:
    client = idp.client(token_lifetime=900)
    idp.keep(client)
    result = idp.run(["doctor"], "")
    assert result.returncode == 0, result
    assert "OAuth client" in result.stdout and client.client_id in result.stdout
    assert idp.provider.token_url in result.stdout
    assert "expires in 900 s" in result.stdout
    assert idp.exchanges(client) == 1
    assert client.client_secret not in result.stdout + result.stderr


def test_doctor_reports_a_refused_client(idp: Idp) -> None:
    client = idp.client()
    idp.keep(client)
    idp.provider.remove_client(client.client_id)
    result = idp.run(["doctor"], "")
    assert result.returncode == 3, result
    assert "FAIL" in result.stdout and "invalid_client" in result.stdout


def test_doctor_warns_when_oauth_settings_meet_a_plain_token(idp: Idp) -> None:
    idp.keep_fields(token="plain-token-1")
    result = idp.run(["doctor"], "", MLFLOW_OIDC_SCOPE="mlflow")
    assert result.returncode == 0, result
    assert "warn route 1 (vault): OAuth settings (oidc_ca_bundle, oidc_scope) are set" in (
        result.stdout
    )
    got = idp.run(["get"], MLFLOW_OIDC_SCOPE="mlflow")
    assert got.stdout == "Authorization: Bearer plain-token-1\n"


def test_info_shows_the_oauth_settings(idp: Idp) -> None:
    result = idp.run(["info", "--json"], "", MLFLOW_OIDC_SCOPE="mlflow")
    assert result.returncode == 0, result
    (route,) = json.loads(result.stdout)["routes"]
    assert route["oauth"] == {"oidc_ca_bundle": idp.provider.ca_path, "oidc_scope": "mlflow"}


def test_a_mounted_file_may_hold_the_client_and_the_token_is_cached(
    tmp_path: Path, idp: Idp, helper_env: dict[str, str]
) -> None:
    client = idp.client()
    secret = tmp_path / "mounted" / "client.json"
    secret.parent.mkdir(mode=0o700)
    secret.write_text(json.dumps(client.secret_dict(idp.provider, scope="mlflow")) + "\n")
    secret.chmod(0o600)
    env = {
        **helper_env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "file",
        "MLFLOW_SECRETS_FILE": str(secret),
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
        "MLFLOW_OIDC_CA_BUNDLE": idp.provider.ca_path,
    }
    first = idp.run_helper(["--format", "json", "get"], STDIN, env)
    assert first.returncode == 0, first
    answer = json.loads(first.stdout)["ok"]
    assert idp.active(answer)
    # the file is the local copy of the client; the token it was exchanged for is cached
    second = json.loads(idp.run_helper(["--format", "json", "get"], STDIN, env).stdout)["ok"]
    assert (bearer(second), second["source"]) == (bearer(answer), "cache")
    assert idp.exchanges(client) == 1
    assert client.client_secret.encode() not in cache_bytes(env)
