"""Test doubles for the shim: a controller for ``shim_fake_helper.py`` and a loopback
HTTP server that records what it receives and answers per path.

Answers queued in ``queue`` come first. Then, by path: ``/redirect/<status>?to=<url>``
redirects; ``/protected/...`` answers 200 only when a header in ``accept`` arrived (401
otherwise); ``/forbidden`` always 403; anything else echoes 200. Every request, body
included, is recorded.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAKE_HELPER = Path(__file__).with_name("shim_fake_helper.py")


class FakeHelper:
    """State and call log of the fake helper; ``env`` points a shim at it."""

    def __init__(self, directory: Path) -> None:
        self.state_path = directory / "fake-helper-state.json"
        self.log_path = directory / "fake-helper-calls.log"
        self.pids_path = directory / "fake-helper-pids"
        self.log_path.write_text("")
        self._write({"mode": "ok", "backend": {}, "cache": {}, "ttl": 300, "expires": None})

    @property
    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_SECRETS_HELPER_COMMAND": shlex.join([sys.executable, str(FAKE_HELPER)]),
            "SHIM_FAKE_STATE": str(self.state_path),
            "SHIM_FAKE_LOG": str(self.log_path),
            "SHIM_FAKE_PIDS": str(self.pids_path),
        }

    def set_secret(self, host: str, name: str, value: str) -> None:
        """Change the 'backend'; the fake's cache keeps the old value until erased."""
        state = self._read()
        state["backend"][host] = {"name": name, "value": value}
        self._write(state)

    def set(self, **fields: Any) -> None:
        state = self._read()
        state.update(fields)
        self._write(state)

    def calls(self, action: str | None = None) -> list[str]:
        lines = self.log_path.read_text().splitlines()
        return [c for c in lines if action is None or c.split(" ")[0] == action]

    def _read(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_path)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class LoopbackServer:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.seen: list[Seen] = []
        self.accept: set[tuple[str, str]] = set()
        # Canned answers (status, headers) used, in order, before the path routes.
        self.queue: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def carrying(self, value: str) -> list[Seen]:
        """Requests that carried ``value`` in any header."""
        return [s for s in self.seen if any(value in v for v in s.headers.values())]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        box: LoopbackServer = self.server.box
        body = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with box.lock:
            box.seen.append(Seen(self.command, self.path, headers, body))
            canned = box.queue.pop(0) if box.queue else None
        parts = urlsplit(self.path)
        if canned is not None:
            self._answer(canned[0], b"", canned[1])
        elif parts.path.startswith("/redirect/"):
            status = int(parts.path.split("/")[2])
            self._answer(status, b"", {"Location": parse_qs(parts.query)["to"][0]})
        elif parts.path.startswith("/protected"):
            ok = any(headers.get(name.lower()) == value for name, value in box.accept)
            reply = json.dumps({"len": len(body)}).encode()
            self._answer(200 if ok else 401, reply if ok else b"denied\n", {})
        elif parts.path == "/forbidden":
            self._answer(403, b"forbidden\n", {})
        else:
            self._answer(200, json.dumps({"len": len(body)}).encode(), {})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@contextmanager
def loopback_server() -> Iterator[LoopbackServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    box = LoopbackServer(server)
    server.box = box  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
