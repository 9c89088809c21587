"""A fault-injecting reverse proxy on loopback.

Put a :class:`FaultProxy` between a client under test and a real server (moto,
OpenBao, a fake) to produce what the real server cannot on demand: throttling,
5xx, slow answers, dropped connections, truncated bodies. Every request is
logged, so tests can count attempts (including attempts made by other
processes that were given ``proxy.url``).

Rules are tried in the order they were added; the first matching rule with
count left is used up by one and applies its action; a request no rule matches
is forwarded unchanged. Example::

    proxy = FaultProxy(upstream_url)
    proxy.add(aws_error("ThrottlingException"), header=AWS_GET_SECRET_VALUE, times=2)
    proxy.add(delay(1.5), path=r"^/v1/secret/")
    ...
    assert proxy.count(header=AWS_GET_SECRET_VALUE) == 3

Actions: :func:`respond` (canned status, headers, body), :func:`aws_error`,
:func:`vault_error`, :func:`delay` (sleep, then forward or another action),
:func:`drop` (close without answering, optionally with a TCP reset),
:func:`truncate` (forward, then cut the body short and close), :func:`drip` (forward,
then send the body one byte at a time), :func:`oversized` (a huge body, with or without
``Content-Length``), and :data:`FORWARD`.

The proxy speaks HTTP/1.1 with keep-alive to the client (over TLS with
``listen_ssl_context``) and opens one upstream connection per request (``https``
upstreams take ``upstream_ssl_context``). It
keeps the client's ``Host`` header, so SigV4 signatures still match.

One module, longer than most, because the actions, the rules that choose them and the
proxy that applies them are one vocabulary that callers import together.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from devservers.net import closed_port_url

__all__ = [
    "AWS_GET_SECRET_VALUE",
    "FORWARD",
    "Action",
    "FaultProxy",
    "LoggedRequest",
    "Rule",
    "aws_error",
    "aws_target",
    "closed_port_url",
    "delay",
    "drip",
    "drop",
    "oversized",
    "respond",
    "truncate",
    "vault_error",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    """What to do with a matched request. Build with the functions below."""

    kind: str  # "respond" | "delay" | "drop" | "truncate" | "drip" | "oversized" | "forward"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    seconds: float = 0.0
    then: Action | None = None
    reset: bool = False
    keep_bytes: int | None = None
    size: int = 0
    chunked: bool = False

    def describe(self) -> str:
        if self.kind == "respond":
            return f"respond {self.status}"
        if self.kind == "delay":
            return f"delay {self.seconds}s then {(self.then or FORWARD).describe()}"
        return self.kind


FORWARD = Action("forward")


def respond(
    status: int, body: bytes | str = b"", headers: Mapping[str, str] | None = None
) -> Action:
    """A canned response; ``Content-Length`` is added."""
    data = body.encode() if isinstance(body, str) else body
    return Action("respond", status=status, headers=tuple((headers or {}).items()), body=data)


def aws_error(code: str, status: int = 400, message: str = "injected fault") -> Action:
    """An AWS JSON 1.1 protocol error, as Secrets Manager sends it.

    botocore reads the code from ``__type`` / ``x-amzn-ErrorType``; e.g.
    ``aws_error("ThrottlingException")``, ``aws_error("InternalServiceError", 500)``,
    ``aws_error("AccessDeniedException")``.
    """
    body = json.dumps({"__type": code, "message": message})
    return respond(
        status,
        body,
        {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": code,
            "x-amzn-RequestId": "00000000-0000-4000-8000-000000000000",
        },
    )


def vault_error(status: int, *errors: str) -> Action:
    """A Vault API error: ``{"errors": [...]}`` with exactly ``application/json``
    (hvac parses error bodies only for that content type)."""
    return respond(
        status, json.dumps({"errors": list(errors)}), {"Content-Type": "application/json"}
    )


def delay(seconds: float, then: Action | None = None) -> Action:
    """Sleep ``seconds`` after reading the request, then forward it (or apply ``then``)."""
    return Action("delay", seconds=seconds, then=then)


def drop(*, reset: bool = False) -> Action:
    """Read the request and close the connection without a response.

    ``reset=True`` sends a TCP RST instead of a FIN (``ECONNRESET`` on the client).
    """
    return Action("drop", reset=reset)


def drip(seconds_per_byte: float = 0.2) -> Action:
    """Forward, then send the upstream status and headers at once and the body one byte
    every ``seconds_per_byte``: a per-read socket timeout never fires."""
    return Action("drip", seconds=seconds_per_byte)


def oversized(
    size: int, *, chunked: bool = False, content_type: str = "application/json"
) -> Action:
    """A 200 answer whose body is ``size`` bytes (``{"data": "xxx...``, never finished), sent
    in 64 KiB pieces as it is made; ``chunked=True`` sends it with ``Transfer-Encoding:
    chunked`` and no ``Content-Length``. The client's hang-up ends it early."""
    return Action(
        "oversized", size=size, chunked=chunked, headers=(("Content-Type", content_type),)
    )


def truncate(keep_bytes: int | None = None) -> Action:
    """Forward, then send the upstream status and headers (with the full
    ``Content-Length``) but only ``keep_bytes`` of the body (default: half), and close."""
    return Action("truncate", keep_bytes=keep_bytes)


# ----------------------------------------------------------------------------- rules


Header = tuple[str, str]


def aws_target(operation: str, service: str = "secretsmanager") -> Header:
    """The header that names an AWS JSON-protocol operation, for ``header=``."""
    return ("X-Amz-Target", f"{service}.{operation}")


AWS_GET_SECRET_VALUE = aws_target("GetSecretValue")


def _matches(
    method: str | None,
    path: str | None,
    header: Header | None,
    req_method: str,
    req_path: str,
    req_headers: Mapping[str, str],
) -> bool:
    if method is not None and method.upper() != req_method:
        return False
    if path is not None and not re.search(path, req_path):
        return False
    if header is not None:
        name, value = header
        if req_headers.get(name.lower()) != value:
            return False
    return True


@dataclass
class Rule:
    """Match on method, a regex searched in the path (query included), and one
    header value (exact, name case-insensitive); ``times=None`` never runs out."""

    action: Action
    method: str | None = None
    path: str | None = None
    header: Header | None = None
    times: int | None = 1
    hits: int = 0

    def matches(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        return _matches(self.method, self.path, self.header, method, path, headers)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the proxy saw it (headers lowercased) and what it did."""

    method: str
    path: str
    headers: Mapping[str, str]
    action: str
    at: float = field(default_factory=time.monotonic)

    def matches(
        self, method: str | None = None, path: str | None = None, header: Header | None = None
    ) -> bool:
        return _matches(method, path, header, self.method, self.path, self.headers)


# ----------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-request are normal here: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request logging to stderr."""

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        proxy = self.server.proxy
        action = proxy._choose(self.command, self.path, headers)
        proxy._record(LoggedRequest(self.command, self.path, headers, action.describe()))
        self._apply(action, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_LIST = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _apply(self, action: Action, body: bytes) -> None:
        if action.kind == "delay":
            time.sleep(action.seconds)
            self._apply(action.then or FORWARD, body)
        elif action.kind == "respond":
            self._send(action.status, list(action.headers), action.body)
        elif action.kind == "drop":
            self._drop(action.reset)
        elif action.kind == "truncate":
            status, headers, data = self._forward(body)
            keep = len(data) // 2 if action.keep_bytes is None else action.keep_bytes
            self._send(status, headers, data, send_bytes=min(keep, max(len(data) - 1, 0)))
            self._drop(reset=False)
        elif action.kind == "drip":
            status, headers, data = self._forward(body)
            self._send(status, headers, data, send_bytes=0)
            self._drip(data, action.seconds)
        elif action.kind == "oversized":
            self._oversized(action)
        else:
            status, headers, data = self._forward(body)
            self._send(status, headers, data)

    def _drip(self, data: bytes, seconds: float) -> None:
        try:
            for i in range(len(data)):
                time.sleep(seconds)
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _oversized(self, action: Action) -> None:
        self.send_response_only(200)
        for name, value in action.headers:
            self.send_header(name, value)
        if action.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(action.size))
        self.end_headers()
        piece = b"x" * (64 << 10)
        sent = 0
        try:
            while sent < action.size:
                part = b'{"data": "' if sent == 0 else piece[: min(len(piece), action.size - sent)]
                if action.chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.wfile.write(part)
                sent += len(part)
            if action.chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        proxy = self.server.proxy
        conn: http.client.HTTPConnection
        if proxy.upstream.scheme == "https":
            conn = http.client.HTTPSConnection(
                proxy.upstream_host,
                proxy.upstream_port,
                timeout=proxy.upstream_timeout,
                context=proxy.upstream_ssl_context,
            )
        else:
            conn = http.client.HTTPConnection(
                proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout
            )
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP | {"content-length", "expect"}:
                    conn.putheader(name, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()
            headers = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
            ]
            return response.status, headers, data
        except OSError as exc:
            message = f"fault proxy: upstream failed: {type(exc).__name__}"
            return 502, [("Content-Type", "text/plain")], message.encode()
        finally:
            conn.close()

    def _send(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        send_bytes: int | None = None,
    ) -> None:
        self.send_response_only(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body if send_bytes is None else body[:send_bytes])
        self.wfile.flush()

    def _drop(self, reset: bool) -> None:
        self.close_connection = True
        sock = self.connection
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class FaultProxy:
    """A reverse proxy to ``upstream`` on ``127.0.0.1:<free port>``; see the module doc.

    Thread-safe: rules may be added and the log read while requests flow.
    Use as a context manager, or call :meth:`stop`.
    """

    def __init__(
        self,
        upstream: str,
        *,
        upstream_ssl_context: ssl.SSLContext | None = None,
        upstream_timeout: float = 30.0,
        listen_ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = urlsplit(upstream)
        if self.upstream.scheme not in ("http", "https") or not self.upstream.hostname:
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream_host = self.upstream.hostname
        self.upstream_port = self.upstream.port or (443 if self.upstream.scheme == "https" else 80)
        self.upstream_ssl_context = upstream_ssl_context
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._log: list[LoggedRequest] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        if listen_ssl_context is not None:
            # clients speak TLS to the proxy (an SDK that only talks https)
            self._server.socket = listen_ssl_context.wrap_socket(
                self._server.socket, server_side=True
            )
        self.port: int = self._server.server_address[1]
        scheme = "https" if listen_ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fault-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"FaultProxy({self.url} -> {self.upstream.geturl()})"

    # rules

    def add(
        self,
        action: Action,
        *,
        method: str | None = None,
        path: str | None = None,
        header: Header | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Append a rule; ``times=None`` applies it to every matching request."""
        rule = Rule(action, method, path, header, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget all rules and the request log."""
        with self._lock:
            self._rules.clear()
            self._log.clear()

    def _choose(self, method: str, path: str, headers: Mapping[str, str]) -> Action:
        with self._lock:
            for rule in self._rules:
                if not rule.exhausted and rule.matches(method, path, headers):
                    rule.hits += 1
                    return rule.action
        return FORWARD

    # log

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot of every request seen since start or :meth:`clear`."""
        with self._lock:
            return list(self._log)

    def count(
        self, *, method: str | None = None, path: str | None = None, header: Header | None = None
    ) -> int:
        """How many logged requests match (same matchers as :meth:`add`)."""
        return sum(1 for r in self.requests if r.matches(method, path, header))

    # lifecycle

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
