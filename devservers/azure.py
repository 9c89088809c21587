"""One Azure for one caller, on 127.0.0.1: a Key Vault emulator, the managed-identity and
Entra ID token endpoints, an egress guard and a blackhole, steered only by the standard
environment variables (no hooks in the product).

:class:`EgressGuard` is a CONNECT proxy that tunnels only the hostnames a caller routes
(the vault's ``<name>.vault.azure.net:443``, the login host when a service principal is
used) to loopback ports and refuses (and records) everything else, the instance-metadata
address and the real login host included. :meth:`AzureCloud.env` points the SDK at it.
"""

from __future__ import annotations

import secrets
import select
import socket
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devservers.entra import EntraEndpoint
from devservers.keyvault import (
    LOGIN_HOST,
    TENANT,
    KeyVaultEmulator,
    ManagedIdentityEndpoint,
    TokenRegistry,
)
from devservers.net import (
    BackgroundServer,
    JSONHandler,
    LoopbackCA,
    LoopbackHTTPServer,
    server_context,
)

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class AzurePKI:
    """A test CA and one leaf for loopback, ``*.vault.azure.net``, the login host and
    ``*.example.test`` (a vault outside Azure's domain)."""

    def __init__(self, directory: Path) -> None:
        authority = LoopbackCA(directory / "azure-test-ca.pem")
        self.ca = authority.ca
        self.ca_path = authority.ca_path
        self.leaf = authority.issue(
            "127.0.0.1", "localhost", "*.vault.azure.net", LOGIN_HOST, "*.example.test"
        )

    def server_context(self) -> Any:
        return server_context(self.leaf)


# --------------------------------------------------------------------------- egress guard


class _GuardHandler(JSONHandler):
    server: LoopbackHTTPServer

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


class EgressGuard(BackgroundServer):
    """An HTTP proxy that tunnels only routed ``host:port`` targets to loopback ports.

    Everything else (the instance-metadata address, the real login host, any other name) is
    refused with 403 and recorded in ``refused``; callers treat a non-empty list as a failure.
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
    """One caller's Azure: a vault, identity endpoints, the egress guard and a blackhole,
    all serving from construction until :meth:`stop`."""

    tenant = TENANT

    def __init__(self, pki: AzurePKI) -> None:
        self.pki = pki
        self.registry = TokenRegistry()
        self.guard = EgressGuard()
        self.mi = ManagedIdentityEndpoint(self.registry)
        self.entra = EntraEndpoint(self.registry, pki.server_context())
        self.kv = KeyVaultEmulator(self.registry, pki.server_context(), "kv" + secrets.token_hex(5))
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

    def scrubbed(self, environ: Iterable[str]) -> list[str]:
        """The names in ``environ`` that would steer an Azure SDK elsewhere (Azure, identity,
        proxy and trust variables): unset them before applying :meth:`env` in-process."""
        return [
            name
            for name in environ
            if name.upper().startswith(_SCRUB_PREFIXES) or name.upper() in _SCRUB_NAMES
        ]

    def loopback_only(self, real: Callable[..., Any]) -> Callable[..., Any]:
        """A ``socket.getaddrinfo`` that resolves only loopback names and refuses (and
        records in ``resolved_elsewhere``) every other lookup."""

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in LOOPBACK_NAMES:
                self.resolved_elsewhere.append(name)
                raise socket.gaierror(
                    socket.EAI_NONAME, f"test egress guard: {name} is not loopback"
                )
            return real(host, *args, **kwargs)

        return getaddrinfo

    def __enter__(self) -> AzureCloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for server in (self.guard, self.mi, self.entra, self.kv):
            server.stop()
        self.blackhole.stop()

    def egress_attempts(self) -> list[str]:
        return [f"{method} {target}" for method, target in self.guard.refused] + [
            f"resolve {name}" for name in self.resolved_elsewhere
        ]
