"""An auth gateway on 127.0.0.1: MLflow behind an identity provider or an API gateway.

:class:`AuthGateway` is a reverse proxy in front of a real MLflow tracking server. Every
request must carry ``Authorization: Bearer <token>``; a :data:`Validator` decides whether
the token is good (:class:`Introspection` asks the OpenID Provider by RFC 7662; any
callable works, e.g. ``lambda t: registry.check(t) is not None`` for the Key Vault
emulator's Entra tokens). A good request is forwarded with the client's ``Authorization``
replaced by ``upstream_headers`` (the gateway's own credentials for the server, e.g. the
MLflow admin's basic auth); a bad one is answered ``401`` with a ``WWW-Authenticate:
Bearer`` challenge as RFC 6750 §3 writes it: ``error="invalid_token"`` for a token the
validator refused, no error code when there was no bearer token at all.

Bodies stream both ways (``Content-Length`` or chunked requests, artifact uploads by PUT,
large downloads), for every method MLflow's REST API and artifact proxy use. The gateway
counts accepted requests and 401s by reason (``missing``, ``invalid``, ``injected``)
and can refuse the next requests with a valid token (:meth:`AuthGateway.reject_next`),
as an IdP that revoked a token early would.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from devservers.net import BackgroundServer, JSONHandler, LoopbackHTTPServer, ServerError

if TYPE_CHECKING:
    import ssl

    import requests

    from devservers.oidc import OidcProvider

#: token -> accepted?
Validator = Callable[[str], bool]

# RFC 9110 §7.6.1 connection-specific fields, and what the proxy recomputes
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
REALM = "mlflow-gateway"


def basic_auth(username: str, password: str) -> str:
    """An ``Authorization`` value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token (for counts and messages)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class Introspection:
    """A validator that asks the OpenID Provider (RFC 7662) as its resource server:
    the token is good when it is ``active``, unexpired and, if ``scope`` is given,
    grants it."""

    def __init__(self, provider: OidcProvider, scope: str | None = None) -> None:
        self.provider = provider
        self.scope = scope

    def __call__(self, token: str) -> bool:
        answer = self.provider.introspect(token)
        if answer.get("active") is not True:
            return False
        if float(answer.get("exp", 0)) <= time.time():
            return False
        return self.scope is None or self.scope in str(answer.get("scope", "")).split()


class _GatewayHandler(JSONHandler):
    server: LoopbackHTTPServer
    timeout = 120  # artifact uploads may pause between chunks

    def _challenge(self, reason: str) -> None:
        gateway: AuthGateway = self.server.owner
        gateway._count_rejected(reason)
        challenge = f'Bearer realm="{REALM}"'
        if reason != "missing":
            challenge += ', error="invalid_token", error_description="the access token is invalid"'
        self._drain()
        self.send_json(
            401, {"error": "unauthenticated", "reason": reason}, {"WWW-Authenticate": challenge}
        )

    def _drain(self) -> None:
        """Read and drop the request body so the connection stays usable."""
        for _ in self._body_chunks():
            pass

    def _body_chunks(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def _handle(self) -> None:
        gateway: AuthGateway = self.server.owner
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._challenge("missing")
            return
        if gateway._take_rejection():
            self._challenge("injected")
            return
        try:
            good = gateway.validator(token)
        except (OSError, ServerError, ValueError) as exc:  # the IdP failed: 503, not 401
            self._drain()
            self.send_json(503, {"error": "validator_failed", "detail": type(exc).__name__})
            return
        if not good:
            self._challenge("invalid")
            return
        gateway._count_accepted(token)
        self._forward(gateway)

    def _forward(self, gateway: AuthGateway) -> None:
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in _HOP_BY_HOP and name.lower() != "authorization"
        }
        headers.update(gateway.upstream_headers)
        has_body = "Content-Length" in self.headers or "Transfer-Encoding" in self.headers
        data: Any = None
        if has_body:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                data = self._body_chunks()  # requests sends a generator chunked
            else:
                data = b"".join(self._body_chunks())
        try:
            upstream = gateway.session().request(
                self.command,
                gateway.upstream + self.path,
                headers=headers,
                data=data,
                stream=True,
                allow_redirects=False,
                timeout=(10, 300),
            )
        except OSError as exc:  # requests' errors are OSErrors
            self.close_connection = True
            self.send_json(502, {"error": "upstream_unreachable", "detail": type(exc).__name__})
            return
        try:
            self._relay(upstream)
        finally:
            upstream.close()

    def _relay(self, upstream: requests.Response) -> None:
        self.send_response(upstream.status_code, upstream.reason)
        length = upstream.headers.get("Content-Length")
        for name, value in upstream.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        no_body = self.command == "HEAD" or upstream.status_code in (204, 304)
        if length is not None or no_body:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if not no_body:
                for chunk in upstream.raw.stream(65536, decode_content=False):
                    self.wfile.write(chunk)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in upstream.raw.stream(65536, decode_content=False):
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class AuthGateway(BackgroundServer):
    """The gateway, serving from construction until :meth:`stop` (plain HTTP, or HTTPS with
    ``tls``). ``upstream``: the MLflow server's base URL. ``validator``: token -> good?.
    ``upstream_headers``: sent upstream instead of the client's ``Authorization``."""

    handler = _GatewayHandler

    def __init__(
        self,
        upstream: str,
        validator: Validator,
        *,
        upstream_headers: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.validator = validator
        self.upstream_headers = dict(upstream_headers or {})
        self.scheme = "https" if tls is not None else "http"
        self._lock = threading.Lock()
        self._local = threading.local()
        self.accepted = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        #: accepted requests by token fingerprint (:func:`fingerprint`)
        self.tokens: collections.Counter[str] = collections.Counter()
        self._reject_next = 0
        super().__init__(tls)

    def __repr__(self) -> str:
        return f"AuthGateway({self.url} -> {self.upstream})"

    def session(self) -> requests.Session:
        """This thread's upstream session (proxy variables ignored)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            session.trust_env = False
            self._local.session = session
        return session

    def reject_next(self, count: int = 1) -> None:
        """Answer the next ``count`` requests 401 (``error="invalid_token"``) even with a
        good token, as when the IdP revoked it early."""
        with self._lock:
            self._reject_next += count

    def reset(self) -> None:
        """Zero the counts and forget pending rejections."""
        with self._lock:
            self.accepted = 0
            self.rejected.clear()
            self.tokens.clear()
            self._reject_next = 0

    def counts(self) -> dict[str, Any]:
        """``accepted``, ``rejected`` ({reason: count}) and ``tokens`` (distinct tokens used)."""
        with self._lock:
            return {
                "accepted": self.accepted,
                "rejected": dict(self.rejected),
                "tokens": len(self.tokens),
            }

    def _take_rejection(self) -> bool:
        with self._lock:
            if self._reject_next > 0:
                self._reject_next -= 1
                return True
            return False

    def _count_accepted(self, token: str) -> None:
        with self._lock:
            self.accepted += 1
            self.tokens[fingerprint(token)] += 1

    def _count_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1
