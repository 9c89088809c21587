"""The Azure Key Vault secrets data plane and the App Service managed-identity endpoint,
on 127.0.0.1, as the real ``SecretClient`` and ``DefaultAzureCredential`` see them.

* :class:`KeyVaultEmulator` - HTTPS (a throwaway CA) on 127.0.0.1. Callers reach it at its
  production-shaped URL ``https://<name>.vault.azure.net`` through the egress guard of
  :mod:`devservers.azure`, so the SDK's challenge-resource check runs unchanged.
* :class:`ManagedIdentityEndpoint` - the App Service token endpoint (``IDENTITY_ENDPOINT``
  / ``IDENTITY_HEADER``), plain HTTP as in Azure.
* :class:`TokenRegistry` - the access tokens the identity endpoints mint and the vault checks.

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
  firewall, private endpoint or soft-delete behaviour unless a caller injects a status.

The module is longer than most: the error envelopes and messages are the service's, written
where the handler sends them, and the managed-identity endpoint shares the token registry.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devservers.net import BackgroundServer, JSONHandler, LoopbackHTTPServer

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
VAULT_RESOURCE = "https://vault.azure.net"
LOGIN_HOST = "login.microsoftonline.com"


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


def audience(resource_or_scope: str) -> str:
    value = resource_or_scope.strip()
    return value[: -len("/.default")] if value.endswith("/.default") else value


# --------------------------------------------------------------------------- managed identity


class _ManagedIdentityHandler(JSONHandler):
    server: LoopbackHTTPServer

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
        token, expires_on = owner.registry.issue(
            subject, owner.tenant, audience(resource), owner.lifetime
        )
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


class ManagedIdentityEndpoint(BackgroundServer):
    """App Service managed identity: ``GET /msi/token?resource=...`` with ``X-IDENTITY-HEADER``."""

    handler = _ManagedIdentityHandler

    def __init__(self, registry: TokenRegistry, tenant: str = TENANT) -> None:
        self.registry = registry
        self.tenant = tenant
        self.header = secrets.token_hex(16)
        self.system_client_id = str(uuid.uuid4())
        self.user_assigned: set[str] = set()
        self.fail_with = 0
        #: seconds each token it issues lives (App Service issues tokens for about a day)
        self.lifetime = 3600
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": self.header}


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


class _KeyVaultHandler(JSONHandler):
    server: LoopbackHTTPServer

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


class KeyVaultEmulator(BackgroundServer):
    """The Key Vault secrets data plane, over HTTPS with a test CA. See the module docstring."""

    scheme = "https"
    handler = _KeyVaultHandler

    def __init__(
        self, registry: TokenRegistry, tls: ssl.SSLContext, name: str, tenant: str = TENANT
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
        super().__init__(tls)

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
