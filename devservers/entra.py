"""Entra ID (v2) on 127.0.0.1, over HTTPS: OIDC discovery and the client-credentials token
endpoint, for client secrets (service principal) and client assertions (workload
identity). Tokens come from the :class:`~devservers.keyvault.TokenRegistry` the Key Vault
emulator checks.
"""

from __future__ import annotations

import ssl
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devservers.keyvault import LOGIN_HOST, TENANT, TokenRegistry, audience
from devservers.net import BackgroundServer, JSONHandler, LoopbackHTTPServer

# --------------------------------------------------------------------------- Entra ID


class _EntraHandler(JSONHandler):
    server: LoopbackHTTPServer

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
        token, _ = owner.registry.issue(f"app:{client_id}", tenant, audience(form.get("scope", "")))
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


class EntraEndpoint(BackgroundServer):
    """Entra ID (v2): OIDC discovery and the client-credentials token endpoint, over HTTPS."""

    scheme = "https"
    handler = _EntraHandler

    def __init__(self, registry: TokenRegistry, tls: ssl.SSLContext, tenant: str = TENANT) -> None:
        self.registry = registry
        self.tenant = tenant
        #: service principals: client id -> client secret
        self.clients: dict[str, str] = {}
        #: workload identities: client id -> the federated token it must present
        self.assertions: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        super().__init__(tls)

    @property
    def localhost_url(self) -> str:
        return f"https://localhost:{self.port}"
