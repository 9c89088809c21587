"""Azure stand-ins for the tests: a Key Vault emulator, token endpoints and an egress guard.

The real ``DefaultAzureCredential`` and ``SecretClient`` talk to these over real HTTP(S),
steered only by the standard environment variables (no test hooks in the product):

* ``KeyVaultEmulator`` - HTTPS (test CA) on 127.0.0.1. Reached at its production-shaped URL
  ``https://<name>.vault.azure.net`` through ``EgressGuard``, a CONNECT proxy that tunnels only
  the hostnames a test routes and refuses (and records) everything else, the instance-metadata
  address and the real login host included. So the SDK's challenge-resource check runs unchanged.
* ``ManagedIdentityEndpoint`` - the App Service token endpoint (``IDENTITY_ENDPOINT`` /
  ``IDENTITY_HEADER``), plain HTTP as in Azure.
* ``EntraEndpoint`` - HTTPS: OIDC discovery and the v2 token endpoint for client secrets
  (service principal) and client assertions (workload identity).

Fidelity limits of the emulator, on purpose:
* secrets only: get (latest or a version), list versions (paged by ``$skiptoken``), set (PUT);
  no delete / recover / backup / update, no keys or certificates;
* tokens are opaque random strings looked up in a registry, not signed JWTs: no CAE claims
  challenges, no ``kid``/signature checks; audience and tenant are checked;
* ``api-version`` must be present but is not matched against a list of versions;
* "latest" is the most recently created version; when it is disabled a GET without version
  answers 403 ``SecretDisabled`` (as the service does); expired or not-yet-valid secrets are
  still returned (as documented for the service) - the client must judge ``exp``/``nbf``;
* listing the versions of a secret that does not exist answers 404 ``SecretNotFound``
  (not checked against the live service);
* error bodies carry the service's codes and envelope, with shortened messages; no throttling,
  firewall, private endpoint or soft-delete behaviour unless a test injects a status.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
VAULT_RESOURCE = "https://vault.azure.net"
LOGIN_HOST = "login.microsoftonline.com"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


# --------------------------------------------------------------------------- TLS


class AzurePKI:
    """A test CA and one leaf for loopback, ``*.vault.azure.net``, the login host and
    ``*.example.test`` (a vault outside Azure's domain)."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert(
            "127.0.0.1", "localhost", "*.vault.azure.net", LOGIN_HOST, "*.example.test"
        )
        self.ca_path = directory / "azure-test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.leaf.configure_cert(context)
        return context


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], owner: Any, tls: ssl.SSLContext | None
    ):
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner
        self.tls = tls

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up or fail the handshake are not test failures


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # http.server writes headers and body apart: avoid 40 ms stalls
    timeout = 15
    server: _Server

    def setup(self) -> None:
        if self.server.tls is not None:
            # handshake here, in the connection's own thread, not inside accept()
            self.request.settimeout(self.timeout)
            self.request = self.server.tls.wrap_socket(
                self.request, server_side=True, do_handshake_on_connect=False
            )
            try:
                self.request.do_handshake()
            except OSError:
                self.request.close()
                raise
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.server.tls is not None:
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # helpers
    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, document: object, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Running:
    """Start a server in a thread; ``stop()`` shuts it down quickly."""

    scheme = "http"
    handler: type[BaseHTTPRequestHandler]

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server(self.handler, self, tls)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class IssuedToken:
    subject: str
    tenant: str
    audience: str
    expires_on: int


class TokenRegistry:
    """Access tokens minted by the identity endpoints and checked by the vault."""

    def __init__(self) -> None:
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()

    def issue(
        self, subject: str, tenant: str, audience: str, lifetime: int = 3600
    ) -> tuple[str, int]:
        token = "tok-" + secrets.token_urlsafe(24)
        expires_on = int(time.time()) + lifetime
        with self._lock:
            self._tokens[token] = IssuedToken(subject, tenant, audience.rstrip("/"), expires_on)
        return token, expires_on

    def check(self, token: str) -> IssuedToken | None:
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued.expires_on <= time.time():
            return None
        return issued

    def issued(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()


def _audience(resource_or_scope: str) -> str:
    value = resource_or_scope.strip()
    return value[: -len("/.default")] if value.endswith("/.default") else value


# --------------------------------------------------------------------------- managed identity


class _ManagedIdentityHandler(_Handler):
    server: _Server

    def do_GET(self) -> None:
        owner: ManagedIdentityEndpoint = self.server.owner
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        owner.requests.append({"path": url.path, "query": query})
        if url.path != "/msi/token":
            self.send_json(404, {"error": "not_found"})
            return
        if self.headers.get("X-IDENTITY-HEADER") != owner.header:
            self.send_json(401, {"statusCode": 401, "message": "Unauthorized request"})
            return
        if owner.fail_with:
            self.send_json(owner.fail_with, {"statusCode": owner.fail_with, "message": "injected"})
            return
        client_id = query.get("client_id")
        if client_id is not None and client_id not in owner.user_assigned:
            self.send_json(
                400,
                {"statusCode": 400, "message": "No Managed Identity found for specified ClientId."},
            )
            return
        resource = query.get("resource", "")
        subject = f"mi:{client_id or 'system'}"
        token, expires_on = owner.registry.issue(subject, owner.tenant, _audience(resource))
        self.send_json(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id or owner.system_client_id,
            },
        )


class ManagedIdentityEndpoint(_Running):
    """App Service managed identity: ``GET /msi/token?resource=...`` with ``X-IDENTITY-HEADER``."""

    handler = _ManagedIdentityHandler

    def __init__(self, registry: TokenRegistry, tenant: str = TENANT) -> None:
        self.registry = registry
        self.tenant = tenant
        self.header = secrets.token_hex(16)
        self.system_client_id = str(uuid.uuid4())
        self.user_assigned: set[str] = set()
        self.fail_with = 0
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": self.header}


# --------------------------------------------------------------------------- Entra ID


class _EntraHandler(_Handler):
    server: _Server

    def _base(self) -> str:
        return "https://" + (self.headers.get("Host") or LOGIN_HOST)

    def do_GET(self) -> None:
        owner: EntraEndpoint = self.server.owner
        path = urlsplit(self.path).path
        owner.requests.append({"method": "GET", "path": path})
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            tenant, base = parts[0], self._base()
            self.send_json(
                200,
                {
                    "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                    "issuer": f"{base}/{tenant}/v2.0",
                    "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "code id_token"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                },
            )
            return
        if path == "/common/discovery/instance":  # MSAL asks this after some failures
            base = self._base()
            self.send_json(
                200,
                {
                    "tenant_discovery_endpoint": (
                        f"{base}/{owner.tenant}/v2.0/.well-known/openid-configuration"
                    ),
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": LOGIN_HOST,
                            "preferred_cache": "login.windows.net",
                            "aliases": [LOGIN_HOST, "login.windows.net", "login.microsoft.com"],
                        }
                    ],
                },
            )
            return
        self.send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        owner: EntraEndpoint = self.server.owner
        path = urlsplit(self.path).path
        form = {k: v[0] for k, v in parse_qs(self.body().decode()).items()}
        owner.requests.append(
            {"method": "POST", "path": path, "grant_type": form.get("grant_type")}
        )
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            self.send_json(404, {"error": "not_found"})
            return
        tenant, client_id = parts[0], form.get("client_id", "")
        if tenant != owner.tenant:
            self._fail(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
            return
        if form.get("grant_type") != "client_credentials":
            self._fail(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
            return
        if "client_secret" in form:
            if owner.clients.get(client_id) != form["client_secret"]:
                self._fail(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    "is the client secret value, not the client secret ID.",
                )
                return
        elif "client_assertion" in form:
            if owner.assertions.get(client_id) != form["client_assertion"]:
                self._fail(
                    401,
                    "invalid_client",
                    700213,
                    "No matching federated identity record found for presented assertion.",
                )
                return
        else:
            self._fail(
                401,
                "invalid_client",
                7000218,
                "The request body must contain client_assertion or client_secret.",
            )
            return
        token, _ = owner.registry.issue(
            f"app:{client_id}", tenant, _audience(form.get("scope", ""))
        )
        self.send_json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "ext_expires_in": 3600,
                "access_token": token,
            },
        )

    def _fail(self, status: int, error: str, code: int, text: str) -> None:
        self.send_json(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text}",
                "error_codes": [code],
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                "trace_id": str(uuid.uuid4()),
                "correlation_id": str(uuid.uuid4()),
            },
        )


class EntraEndpoint(_Running):
    """Entra ID (v2): OIDC discovery and the client-credentials token endpoint, over HTTPS."""

    scheme = "https"
    handler = _EntraHandler

    def __init__(self, registry: TokenRegistry, pki: AzurePKI, tenant: str = TENANT) -> None:
        self.registry = registry
        self.tenant = tenant
        #: service principals: client id -> client secret
        self.clients: dict[str, str] = {}
        #: workload identities: client id -> the federated token it must present
        self.assertions: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        super().__init__(pki.server_context())

    @property
    def localhost_url(self) -> str:
        return f"https://localhost:{self.port}"


# --------------------------------------------------------------------------- Key Vault


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None = None
    tags: dict[str, str] | None = None
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))


def _kv_error(code: str, message: str, inner: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return {"error": error}


class _KeyVaultHandler(_Handler):
    server: _Server

    def _vault(self) -> KeyVaultEmulator:
        owner: KeyVaultEmulator = self.server.owner
        return owner

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        kv = self._vault()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self.body()
        authorization = self.headers.get("Authorization", "")
        entry: dict[str, Any] = {
            "method": method,
            "path": url.path,
            "query": query,
            "host": self.headers.get("Host"),
            "authorized": False,
        }
        kv.requests.append(entry)
        if "api-version" not in query:
            self.send_json(400, _kv_error("BadParameter", "The api-version parameter is missing."))
            return
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        issued = kv.registry.check(token) if token else None
        if issued is None or issued.audience != VAULT_RESOURCE or issued.tenant != kv.tenant:
            message = (
                "AKV10000: Request is missing a Bearer or PoP token."
                if not token
                else "AKV10022: Invalid audience, issuer or expired token."
            )
            self.send_json(
                401,
                _kv_error("Unauthorized", message),
                {
                    "WWW-Authenticate": (
                        f'Bearer authorization="https://{LOGIN_HOST}/{kv.tenant}", '
                        f'resource="{VAULT_RESOURCE}"'
                    )
                },
            )
            return
        entry["authorized"] = True
        entry["subject"] = issued.subject
        if kv.inject:
            status = kv.inject.pop(0)
            code = "Throttled" if status == 429 else "InternalServerError"
            self.send_json(status, _kv_error(code, "Injected failure."), {"Retry-After": "0"})
            return
        parts = url.path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "secrets" or len(parts) > 3:
            self.send_json(404, _kv_error("NotFound", "The requested resource was not found."))
            return
        name = parts[1]
        if not kv.valid_name(name):
            self.send_json(
                400, _kv_error("BadParameter", f"The request URI contains an invalid name: {name}")
            )
            return
        if method == "PUT":
            if len(parts) != 2 or not self._allowed(issued.subject, "set", name):
                self._deny_or_404(len(parts) != 2, issued.subject, "set")
                return
            document = json.loads(body or b"{}")
            attributes = document.get("attributes") or {}
            version = kv.set_secret(
                name,
                document.get("value", ""),
                content_type=document.get("contentType"),
                tags=document.get("tags"),
                enabled=attributes.get("enabled", True),
                nbf=attributes.get("nbf"),
                exp=attributes.get("exp"),
            )
            self.send_json(200, self._bundle(name, version, with_value=True))
            return
        if len(parts) == 3 and parts[2] == "versions":
            if not self._allowed(issued.subject, "list", name):
                self._deny_or_404(False, issued.subject, "list")
                return
            self._list_versions(name, query)
            return
        if not self._allowed(issued.subject, "get", name):
            self._deny_or_404(False, issued.subject, "get")
            return
        requested = parts[2] if len(parts) == 3 else ""
        versions = kv.secrets.get(name, [])
        found = (
            versions[-1]
            if versions and not requested
            else next((v for v in versions if v.version == requested.lower()), None)
        )
        if found is None:
            self.send_json(
                404,
                _kv_error(
                    "SecretNotFound",
                    f"A secret with (name/id) {name}{'/' + requested if requested else ''} was not "
                    "found in this key vault. If you recently deleted this secret you may be able "
                    "to recover it using the correct recovery command. For help resolving this "
                    "issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
                ),
            )
            return
        if not found.enabled:
            self.send_json(
                403,
                _kv_error(
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                    "SecretDisabled",
                ),
            )
            return
        self.send_json(200, self._bundle(name, found, with_value=True))

    def _allowed(self, subject: str, operation: str, name: str) -> bool:
        kv = self._vault()
        return not ({(subject, operation), ("*", operation)} & kv.denied)

    def _deny_or_404(self, not_found: bool, subject: str, operation: str) -> None:
        kv = self._vault()
        if not_found:
            self.send_json(404, _kv_error("NotFound", "The requested resource was not found."))
        elif kv.forbidden_style == "accesspolicy":
            self.send_json(
                403,
                _kv_error(
                    "Forbidden",
                    f"The user, group or application '{subject}' does not have secrets "
                    f"{operation} permission on key vault '{kv.name};location=westeurope'. "
                    "For help resolving this issue, please see "
                    "https://go.microsoft.com/fwlink/?linkid=2125287",
                    "AccessDenied",
                ),
            )
        else:
            action = {"get": "getSecret", "list": "readMetadata", "set": "setSecret"}[operation]
            self.send_json(
                403,
                _kv_error(
                    "Forbidden",
                    "Caller is not authorized to perform action on resource.\r\n"
                    "If role assignments, deny assignments or role definitions were changed "
                    "recently, please observe propagation time.\r\n"
                    f"Caller: {subject}\r\n"
                    f"Action: 'Microsoft.KeyVault/vaults/secrets/{action}/action'\r\n"
                    f"Resource: '/subscriptions/00000000-0000-0000-0000-000000000000/"
                    f"resourcegroups/rg/providers/microsoft.keyvault/vaults/{kv.name}'\r\n"
                    "Assignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC'\r\n",
                    "ForbiddenByRbac",
                ),
            )

    def _base(self) -> str:
        return "https://" + (self.headers.get("Host") or "127.0.0.1")

    def _bundle(self, name: str, version: SecretVersion, *, with_value: bool) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": version.enabled,
            "created": version.created,
            "updated": version.updated,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if version.nbf is not None:
            attributes["nbf"] = version.nbf
        if version.exp is not None:
            attributes["exp"] = version.exp
        bundle: dict[str, Any] = {
            "id": f"{self._base()}/secrets/{name}/{version.version}",
            "attributes": attributes,
        }
        if with_value:
            bundle = {"value": version.value, **bundle}
        if version.content_type is not None:
            bundle["contentType"] = version.content_type
        if version.tags is not None:
            bundle["tags"] = version.tags
        return bundle

    def _list_versions(self, name: str, query: Mapping[str, str]) -> None:
        kv = self._vault()
        versions = kv.secrets.get(name)
        if not versions:
            self.send_json(
                404,
                _kv_error(
                    "SecretNotFound",
                    f"A secret with (name/id) {name} was not found in this key vault.",
                ),
            )
            return
        try:
            page = min(int(query.get("maxresults", "25")), 25)
            start = int(query.get("$skiptoken", "0"))
        except ValueError:
            self.send_json(400, _kv_error("BadParameter", "maxresults or $skiptoken is invalid."))
            return
        items = [self._bundle(name, v, with_value=False) for v in versions[start : start + page]]
        next_link = None
        if start + page < len(versions):
            base = self._base()
            authority = base if ":" in base[len("https://") :] else f"{base}:443"  # as the service
            next_link = (
                f"{authority}/secrets/{name}/versions?api-version={query['api-version']}"
                f"&$skiptoken={start + page}&maxresults={page}"
            )
        self.send_json(200, {"value": items, "nextLink": next_link})


class KeyVaultEmulator(_Running):
    """The Key Vault secrets data plane, over HTTPS with a test CA. See the module docstring."""

    scheme = "https"
    handler = _KeyVaultHandler

    def __init__(
        self, registry: TokenRegistry, pki: AzurePKI, name: str, tenant: str = TENANT
    ) -> None:
        self.registry = registry
        self.tenant = tenant
        self.name = name
        self.secrets: dict[str, list[SecretVersion]] = {}
        #: (subject or "*", "get" | "list" | "set") pairs answered with 403
        self.denied: set[tuple[str, str]] = set()
        self.forbidden_style = "rbac"
        #: statuses (429, 5xx) to answer the next authorised requests with
        self.inject: list[int] = []
        self.requests: list[dict[str, Any]] = []
        super().__init__(pki.server_context())

    @property
    def public_url(self) -> str:
        return f"https://{self.name}.vault.azure.net"

    @staticmethod
    def valid_name(name: str) -> bool:
        return 1 <= len(name) <= 127 and all(
            c.isascii() and (c.isalnum() or c == "-") for c in name
        )

    def set_secret(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
        enabled: bool = True,
        nbf: int | None = None,
        exp: int | None = None,
    ) -> SecretVersion:
        """Add a version; it becomes the latest (this is how rotation is modelled)."""
        version = SecretVersion(uuid.uuid4().hex, value, content_type, tags, enabled, nbf, exp)
        self.secrets.setdefault(name, []).append(version)
        return version

    def disable(self, name: str, version: str | None = None) -> None:
        versions = self.secrets[name]
        target = (
            versions[-1] if version is None else next(v for v in versions if v.version == version)
        )
        target.enabled = False
        target.updated = int(time.time())

    def deny(self, operation: str, subject: str = "*") -> None:
        self.denied.add((subject, operation))


# --------------------------------------------------------------------------- egress guard


class _GuardHandler(_Handler):
    server: _Server

    def do_CONNECT(self) -> None:
        guard: EgressGuard = self.server.owner
        target = self.path.lower()
        port = guard.routes.get(target)
        if port is None:
            guard.refused.append(("CONNECT", target))
            self.send_response(403, "Forbidden by the test egress guard")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            self.send_response(502, "Bad Gateway")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True
            return
        guard.tunnels.append(target)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        client = self.connection
        client.settimeout(None)
        upstream.settimeout(None)
        try:
            _pipe(client, upstream)
        finally:
            upstream.close()

    def _refuse_plain(self) -> None:
        guard: EgressGuard = self.server.owner
        guard.refused.append((self.command, self.path))
        self.send_response(403, "Forbidden by the test egress guard")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _refuse_plain


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 30)
        if not readable:
            return
        for source in readable:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            (b if source is a else a).sendall(data)


class EgressGuard(_Running):
    """An HTTP proxy that tunnels only routed ``host:port`` targets to loopback ports.

    Everything else (the instance-metadata address, the real login host, any other name) is
    refused with 403 and recorded in ``refused``; the fixtures fail the test when it is not empty.
    """

    handler = _GuardHandler

    def __init__(self) -> None:
        self.routes: dict[str, int] = {}
        self.refused: list[tuple[str, str]] = []
        self.tunnels: list[str] = []
        super().__init__()


class Blackhole:
    """A loopback port that accepts TCP connections (via the backlog) and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]

    def stop(self) -> None:
        self._sock.close()


# --------------------------------------------------------------------------- the assembled cloud


_SCRUB_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "MSAL_")
_SCRUB_NAMES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class AzureCloud:
    """One test's Azure: a vault, identity endpoints, the egress guard and a blackhole."""

    tenant = TENANT

    def __init__(self, pki: AzurePKI) -> None:
        self.pki = pki
        self.registry = TokenRegistry()
        self.guard = EgressGuard()
        self.mi = ManagedIdentityEndpoint(self.registry)
        self.entra = EntraEndpoint(self.registry, pki)
        self.kv = KeyVaultEmulator(self.registry, pki, "kv" + secrets.token_hex(5))
        self.blackhole = Blackhole()
        self.guard.routes[f"{self.kv.name}.vault.azure.net:443"] = self.kv.port
        #: a vault whose hostname leads to a port that never answers
        self.silent_vault_url = f"https://silent{secrets.token_hex(4)}.vault.azure.net"
        self.guard.routes[urlsplit(self.silent_vault_url).hostname + ":443"] = self.blackhole.port  # type: ignore[operator]
        #: lookups of non-loopback names made inside the test process (in-process tests)
        self.resolved_elsewhere: list[str] = []

    @property
    def vault_url(self) -> str:
        return self.kv.public_url

    def env(self, **extra: str) -> dict[str, str]:
        """The variables that steer the SDK here: trust, proxy, managed identity, chain."""
        env = {
            "REQUESTS_CA_BUNDLE": str(self.pki.ca_path),
            "HTTPS_PROXY": self.guard.url,
            "https_proxy": self.guard.url,
            "HTTP_PROXY": self.guard.url,
            "http_proxy": self.guard.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            # the production part of DefaultAzureCredential's chain only: no developer logins
            "AZURE_TOKEN_CREDENTIALS": "prod",
            **self.mi.env(),
        }
        env.update(extra)
        return env

    def service_principal(self) -> dict[str, str]:
        """Environment for EnvironmentCredential with a client secret (routed login host)."""
        client_id, secret = str(uuid.uuid4()), "sp-" + secrets.token_urlsafe(18)
        self.entra.clients[client_id] = secret
        self.guard.routes[f"{LOGIN_HOST}:443"] = self.entra.port
        return {
            "AZURE_TENANT_ID": self.tenant,
            "AZURE_CLIENT_ID": client_id,
            "AZURE_CLIENT_SECRET": secret,
            "AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential",
        }

    def workload_identity(self, directory: Path) -> dict[str, str]:
        """Environment for WorkloadIdentityCredential (federated token file, loopback authority)."""
        client_id, assertion = str(uuid.uuid4()), "fed-" + secrets.token_urlsafe(24)
        self.entra.assertions[client_id] = assertion
        token_file = directory / "federated-token"
        token_file.write_text(assertion)
        return {
            "AZURE_TENANT_ID": self.tenant,
            "AZURE_CLIENT_ID": client_id,
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "AZURE_AUTHORITY_HOST": self.entra.localhost_url,
            "AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential",
        }

    def apply(self, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
        """Steer the SDK inside this process: scrub Azure/proxy/trust variables, set ours, and
        refuse (and record) any name resolution that is not loopback."""
        for name in list(os.environ):
            if name.upper().startswith(_SCRUB_PREFIXES) or name.upper() in _SCRUB_NAMES:
                monkeypatch.delenv(name)
        for name, value in self.env(**extra).items():
            monkeypatch.setenv(name, value)
        real = socket.getaddrinfo

        def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in LOOPBACK_NAMES:
                self.resolved_elsewhere.append(name)
                raise socket.gaierror(
                    socket.EAI_NONAME, f"test egress guard: {name} is not loopback"
                )
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", loopback_only)

    def stop(self) -> None:
        for server in (self.guard, self.mi, self.entra, self.kv):
            server.stop()
        self.blackhole.stop()

    def egress_attempts(self) -> list[str]:
        return [f"{method} {target}" for method, target in self.guard.refused] + [
            f"resolve {name}" for name in self.resolved_elsewhere
        ]


@pytest.fixture(scope="session")
def azure_pki(tmp_path_factory: pytest.TempPathFactory) -> AzurePKI:
    return AzurePKI(tmp_path_factory.mktemp("azure-pki"))


@pytest.fixture
def azure_cloud(azure_pki: AzurePKI) -> Iterator[AzureCloud]:
    """Fresh Azure stand-ins for one test. The test fails if anything tried to leave loopback."""
    cloud = AzureCloud(azure_pki)
    try:
        yield cloud
    finally:
        cloud.stop()
    attempts = cloud.egress_attempts()
    if attempts:
        pytest.fail("traffic tried to leave the loopback stand-ins: " + ", ".join(attempts))
