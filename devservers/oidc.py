"""A real OpenID Provider on 127.0.0.1 over TLS: node's certified ``oidc-provider``.

:class:`OidcProvider` writes a JSON configuration (issuer, TLS files, clients), starts
``node devservers/oidc/server.mjs`` and waits until OpenID discovery answers over TLS,
verified against a throwaway CA (``ca_path``). The provider serves the OAuth 2.0
client-credentials grant (``client_secret_basic`` or ``client_secret_post``), token
introspection (RFC 7662) and revocation (RFC 7009). Each client's access-token lifetime
is its own (``token_lifetime``, seconds). Client secrets travel in the configuration file
(mode 0600) and the control endpoint, never on a command line; the server logs neither
secrets nor tokens.

What oidc-provider does with client credentials (9.x), as the tests rely on it:

* access tokens are opaque (43 random characters), ``token_type`` is ``Bearer`` and
  ``expires_in`` is the client's lifetime; no refresh token, no ``id_token``;
* ``scope``: requested values must be among the client's ``scope`` (else ``invalid_scope``);
  values the provider does not know at all are dropped silently; the answer carries
  ``scope`` only when one was granted;
* an ``audience`` form parameter (Auth0/Okta style) is accepted and ignored (the token is
  the same); the test server records it in :meth:`OidcProvider.stats`. RFC 8707's
  ``resource`` is refused (``invalid_target``): no resource server is configured;
* an expired or revoked token introspects as ``{"active": false}``.

Test-only control endpoints on the same server (see ``server.mjs``): counts of token
requests by client and status (:meth:`OidcProvider.stats`), injected failures of the next
token or discovery requests (:meth:`OidcProvider.fault`), clients added or removed at run
time. The npm dependency is installed by ``scripts/dev-env`` (``npm ci`` in
``devservers/oidc``); without it, or without ``node``, :meth:`OidcProvider.start` raises a
:class:`~devservers.process.StartError` that says so.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devservers.net import LOOPBACK, LoopbackCA, ServerError, free_port
from devservers.process import Managed, PortTaken, Process, StartError

if TYPE_CHECKING:
    import requests

#: the pinned npm package (``devservers/oidc/package.json`` and its lock file)
OIDC_PROVIDER_VERSION = "9.13.3"
PROJECT = Path(__file__).resolve().parent / "oidc"
#: the scopes the provider knows; clients may request any of those in their ``scope``
SCOPES = ("mlflow", "mlflow.read")
INSTALL_HINT = "run scripts/dev-env, or: npm ci --prefix devservers/oidc"


@dataclass(frozen=True)
class OAuthClient:
    """A confidential client registered at the provider (client-credentials grant only)."""

    client_id: str
    client_secret: str = field(repr=False)
    #: ``client_secret_basic`` or ``client_secret_post``
    auth_method: str = "client_secret_basic"
    #: the scopes it may request, space-separated
    scope: str = "mlflow"
    #: seconds an access token lives
    token_lifetime: int = 3600

    def metadata(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token_endpoint_auth_method": self.auth_method,
            "scope": self.scope,
            "token_lifetime": self.token_lifetime,
        }

    def secret_dict(self, provider: OidcProvider, **extra: str) -> dict[str, str]:
        """The JSON a store would hold for this client (``client_id``, ``client_secret``,
        ``issuer``, plus ``extra`` such as ``scope``, ``audience`` or ``token_url``)."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "issuer": provider.issuer,
            **extra,
        }


def new_client(
    *,
    client_id: str | None = None,
    auth_method: str = "client_secret_basic",
    scope: str = "mlflow",
    token_lifetime: int = 3600,
) -> OAuthClient:
    """A client with a random id (unless given) and secret."""
    return OAuthClient(
        client_id or "client-" + secrets.token_hex(6),
        "secret-" + secrets.token_urlsafe(24),
        auth_method,
        scope,
        token_lifetime,
    )


def _check_installed() -> str:
    """The ``node`` binary; :class:`StartError` when node or the npm dependency is missing."""
    node = shutil.which("node")
    if node is None:
        raise StartError("the OpenID Provider needs Node.js (node is not on PATH)")
    manifest = PROJECT / "node_modules" / "oidc-provider" / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        raise StartError(
            f"the npm package oidc-provider is not installed in devservers/oidc ({INSTALL_HINT})"
        ) from None
    if version != OIDC_PROVIDER_VERSION:
        raise StartError(
            f"devservers/oidc has oidc-provider {version}, expected {OIDC_PROVIDER_VERSION} "
            f"({INSTALL_HINT})"
        )
    return node


class OidcProvider(Managed):
    """oidc-provider on a free loopback port over TLS.

    ``directory``: an empty directory for the CA, the server's certificate, configuration
    and log. ``clients``: registered at start (more with :meth:`add_client`). ``host``:
    ``127.0.0.1`` or ``localhost``, the issuer's host (the certificate names both).
    ``default_token_lifetime``: seconds, for clients that do not set their own.
    """

    name = "OpenID Provider (oidc-provider)"

    def __init__(
        self,
        directory: Path,
        *,
        clients: Iterable[OAuthClient] = (),
        host: str = LOOPBACK,
        default_token_lifetime: int = 3600,
        start_timeout: float = 60.0,
        die_with_parent: bool = False,
    ) -> None:
        if host not in (LOOPBACK, "localhost"):
            raise ValueError("the issuer's host is 127.0.0.1 or localhost")
        self.directory = directory
        self.host = host
        self.clients: dict[str, OAuthClient] = {c.client_id: c for c in clients}
        self.resource_server = new_client(client_id="mlflow-gateway")
        self.default_token_lifetime = default_token_lifetime
        self.start_timeout = start_timeout
        self.ca = LoopbackCA(directory / "oidc-test-ca.pem")
        self.cert, self.key = directory / "oidc-cert.pem", directory / "oidc-key.pem"
        self.ca.write_leaf((LOOPBACK, "localhost"), self.cert, self.key)
        self.config_path = directory / "oidc-config.json"
        self.log_path = directory / "oidc.log"
        self.port = 0
        self.issuer = ""
        self._session: requests.Session | None = None
        self.process = Process(
            self.name,
            [],  # set in start(): node needs the path of the configuration
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(directory),
                "NODE_ENV": "test",
            },
            cwd=PROJECT,
            log=self.log_path,
            die_with_parent=die_with_parent,
        )

    def __repr__(self) -> str:
        return f"OidcProvider({self.issuer or 'not started'})"

    # -- addresses -------------------------------------------------------------
    @property
    def ca_path(self) -> str:
        """The test CA that signed the server's certificate (verify TLS against it)."""
        return str(self.ca.ca_path)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_url(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def revocation_url(self) -> str:
        return f"{self.issuer}/token/revocation"

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> OidcProvider:
        """Start node and wait for discovery over TLS; a new port if the chosen one was taken."""
        node = _check_installed()
        for attempt in range(3):
            self.port = free_port()
            self.issuer = f"https://{self.host}:{self.port}"
            self._write_config()
            self.process.argv = [node, "server.mjs", str(self.config_path)]
            self.process.start()
            try:
                self.process.wait_ready(self._ready, self.start_timeout)
                self.reset()
                return self
            except PortTaken:
                self.process.stop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _write_config(self) -> None:
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "tls": {"cert": str(self.cert), "key": str(self.key)},
            "scopes": list(SCOPES),
            "default_token_lifetime": self.default_token_lifetime,
            "clients": [c.metadata() for c in self.clients.values()],
            "resource_server": {**self.resource_server.metadata(), "grant_types": []},
        }
        self.config_path.touch(mode=0o600)
        self.config_path.write_text(json.dumps(config))

    def _ready(self) -> bool:
        response = self.session.get(self.discovery_url, timeout=2)
        return response.status_code == 200 and response.json().get("issuer") == self.issuer

    def stop(self) -> None:
        self.process.stop(grace=5)
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def session(self) -> requests.Session:
        """A requests session that trusts the test CA and ignores proxy variables."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.trust_env = False
            self._session.verify = self.ca_path
        return self._session

    # -- clients ---------------------------------------------------------------
    def add_client(
        self,
        client_id: str | None = None,
        *,
        auth_method: str = "client_secret_basic",
        scope: str = "mlflow",
        token_lifetime: int | None = None,
    ) -> OAuthClient:
        """Register (or replace, same id) a client now; it is usable at once."""
        client = new_client(
            client_id=client_id,
            auth_method=auth_method,
            scope=scope,
            token_lifetime=self.default_token_lifetime
            if token_lifetime is None
            else token_lifetime,
        )
        self.put_client(client)
        return client

    def put_client(self, client: OAuthClient) -> None:
        """Register ``client`` (replacing one with its id: a new secret or lifetime)."""
        self._control("POST", "/_clients", client.metadata())
        self.clients[client.client_id] = client

    def remove_client(self, client_id: str) -> None:
        """Delete a client: its next token request answers ``invalid_client``."""
        self._control("DELETE", f"/_clients/{client_id}")
        self.clients.pop(client_id, None)

    # -- test control ----------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """``token_requests``, ``discovery_requests``, ``by_client`` ({client: {status:
        count}}) and ``requests`` (the last 1000 token requests in order: client_id, status,
        error, auth_method, grant_type, scope, audience, resource, at); no secret."""
        answer: dict[str, Any] = self._control("GET", "/_stats")
        return answer

    def requests_from(self, client_id: str) -> list[dict[str, Any]]:
        """The token requests ``client_id`` made, in order (see :meth:`stats`)."""
        return [r for r in self.stats()["requests"] if r["client_id"] == client_id]

    def token_requests(self, client_id: str, status: int = 200) -> int:
        """How many token requests ``client_id`` made that were answered ``status``."""
        return int(self.stats()["by_client"].get(client_id, {}).get(str(status), 0))

    def fault(
        self,
        count: int = 1,
        *,
        status: int | None = None,
        error: str | None = None,
        retry_after: int | None = None,
        delay: float = 0,
        endpoint: str = "token",
    ) -> None:
        """The next ``count`` requests to ``endpoint`` (``token`` or ``discovery``) fail:
        with ``error`` (an OAuth error code, status 400, or 401 for ``invalid_client``,
        unless ``status`` says otherwise), else with ``status`` (default 503) and a text
        body; ``Retry-After`` when given; after ``delay`` seconds. ``delay`` alone: the
        requests are answered normally, ``delay`` seconds late. Faults queue up."""
        body: dict[str, Any] = {"count": count, "endpoint": endpoint, "delay": delay}
        if status is not None:
            body["status"] = status
        if error is not None:
            body["error"] = error
        if retry_after is not None:
            body["retry_after"] = retry_after
        self._control("POST", "/_fault", body)

    def reset(self) -> None:
        """Forget the counts and any pending fault."""
        self._control("POST", "/_reset")

    def _control(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = self.session.request(method, self.issuer + path, json=body, timeout=10)
        if response.status_code not in (200, 201, 204):
            raise ServerError(f"{self.name} {path}", response.status_code, response.text[:200])
        return response.json() if response.content else None

    # -- as a client and as the resource server ----------------------------------
    def token(self, client: OAuthClient, **params: str) -> dict[str, Any]:
        """Fetch a token for ``client`` (its auth method) with extra form ``params``;
        the token response. :class:`ServerError` for any status but 200."""
        data = {"grant_type": "client_credentials", **params}
        auth: tuple[str, str] | None = (client.client_id, client.client_secret)
        if client.auth_method == "client_secret_post":
            data.update(client_id=client.client_id, client_secret=client.client_secret)
            auth = None
        response = self.session.post(self.token_url, data=data, auth=auth, timeout=10)
        if response.status_code != 200:
            raise ServerError(f"{self.name} token", response.status_code, response.text[:200])
        answer: dict[str, Any] = response.json()
        return answer

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection as the resource server: ``{"active": false}`` for an
        unknown, expired or revoked token."""
        response = self.session.post(
            self.introspection_url,
            data={"token": token},
            auth=(self.resource_server.client_id, self.resource_server.client_secret),
            timeout=10,
        )
        if response.status_code != 200:
            raise ServerError(f"{self.name} introspection", response.status_code, None)
        answer: dict[str, Any] = response.json()
        return answer

    def revoke(self, token: str) -> None:
        """RFC 7009 revocation as the resource server (allowed to revoke any token)."""
        response = self.session.post(
            self.revocation_url,
            data={"token": token, "token_type_hint": "access_token"},
            auth=(self.resource_server.client_id, self.resource_server.client_secret),
            timeout=10,
        )
        if response.status_code != 200:
            raise ServerError(f"{self.name} revocation", response.status_code, None)
