"""Loopback plumbing the servers share: free ports, a proxy-free JSON client, a throwaway
CA, and a threaded HTTP(S) server base that runs in this process."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

# every request from here goes straight to loopback, whatever *_PROXY says
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port_url(scheme: str = "http") -> str:
    """A loopback URL where nothing listens (connections are refused at once).

    The port was free when probed; another process could take it later, which on
    loopback in a test run is very unlikely.
    """
    return f"{scheme}://{LOOPBACK}:{free_port()}"


def http_json(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """Send ``body`` as JSON (never through a proxy); the status and the parsed answer
    (text when it is not JSON, ``None`` when empty). HTTP errors are answers, not raised;
    connection errors raise ``OSError``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")[:200]
    return status, parsed


class ServerError(Exception):
    """A server answered with an unexpected status (the message carries no credential)."""

    def __init__(self, what: str, status: int, body: Any) -> None:
        super().__init__(f"{what} answered {status}: {body!r}")
        self.status = status
        self.body = body


# --------------------------------------------------------------------------- TLS


class LoopbackCA:
    """A throwaway certificate authority (trustme); its certificate is written to ``ca_path``."""

    def __init__(self, ca_path: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        self.ca_path = ca_path
        self.ca.cert_pem.write_to_path(str(ca_path))

    def issue(self, *names: str) -> Any:
        """A leaf certificate (trustme ``LeafCert``) for ``names``."""
        return self.ca.issue_cert(*names)

    def write_leaf(self, names: tuple[str, ...], cert: Path, key: Path) -> None:
        """Issue a leaf for ``names``; write its chain to ``cert`` and its key to ``key``."""
        leaf = self.issue(*names)
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))


def server_context(leaf: Any) -> ssl.SSLContext:
    """A server-side TLS context presenting a trustme leaf."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


# --------------------------------------------------------------------------- HTTP servers


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on ``127.0.0.1:<free port>`` that knows its ``owner`` and
    may speak TLS (handshake in the connection's thread, see :class:`JSONHandler`)."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], owner: Any, tls: ssl.SSLContext | None
    ) -> None:
        super().__init__((LOOPBACK, 0), handler)
        self.owner = owner
        self.tls = tls

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up or fail the handshake are not server failures


class JSONHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, quiet, optionally TLS, with JSON helpers."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # http.server writes headers and body apart: avoid 40 ms stalls
    timeout = 15
    server: LoopbackHTTPServer

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

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(
        self, status: int, document: object, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class BackgroundServer:
    """Serve ``handler`` from a thread of this process as soon as it is constructed;
    :meth:`stop` shuts it down quickly. Subclasses set ``handler`` (and ``scheme``)."""

    scheme = "http"
    handler: type[BaseHTTPRequestHandler]

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = LoopbackHTTPServer(self.handler, self, tls)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
