"""Real MLflow tracking servers that demand authentication, on 127.0.0.1 (pytest plugin).

Fixtures (session scope, started on first use, stopped at session end):

``mlflow_basic_server``
    ``mlflow server --app-name basic-auth``: MLflow's own basic-auth app. Users are
    created and passwords changed through its REST API (:meth:`MlflowServer.create_user`,
    :meth:`MlflowServer.set_password`).
``mlflow_bearer_server``
    the same app with its ``authorization_function`` replaced by a small gate that accepts
    ``Authorization: Bearer <token>`` or ``X-MLflow-Auth: [Bearer ]<token>``, tokens mapped
    to MLflow users in a JSON file read on every request (:meth:`MlflowServer.set_tokens`).

Both run one worker with the job runner off and an auth cache (password hashing is slow);
with one worker a changed password is refused at once. Artifacts are served through the
tracking server (``mlflow-artifacts:``). ``MLFLOW_SECRETS_TEST_SERVER_PYTHON`` names the
interpreter that runs the servers (default: this one), so a client-only environment (an
older MLflow client) can test against a server from the main environment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ADMIN = ("admin", "admin-password-0001")  # MLflow 3 wants passwords of 12+ characters
ADMIN_TOKEN = "admin-token-0000000000000001"
SERVER_PYTHON = "MLFLOW_SECRETS_TEST_SERVER_PYTHON"

_GATE = '''\
"""Bearer gate for MLflow's basic-auth app (its ``authorization_function`` hook)."""
import json
import os

from flask import make_response, request
from werkzeug.datastructures import Authorization


def authenticate_request_bearer():
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token:
        custom = request.headers.get("X-MLflow-Auth", "")
        token = custom[7:].strip() if custom[:7].lower() == "bearer " else custom.strip()
    if token:
        with open(os.environ["MLFLOW_TEST_BEARER_TOKENS"]) as f:
            username = json.load(f).get(token)
        if username:
            return Authorization("bearer", {"username": username})
    response = make_response("missing or invalid bearer token\\n", 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="mlflow"'
    return response
'''


@dataclass
class MlflowServer:
    url: str
    directory: Path
    tokens_path: Path | None = None
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def netloc(self) -> str:
        return self.url.removeprefix("http://")

    def _admin(self) -> dict[str, object]:
        if self.tokens_path is None:
            return {"auth": ADMIN}
        return {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}

    def create_user(self, username: str, password: str) -> None:
        r = requests.post(
            f"{self.url}/api/2.0/mlflow/users/create",
            json={"username": username, "password": password},
            timeout=30,
            **self._admin(),  # type: ignore[arg-type]
        )
        r.raise_for_status()

    def set_password(self, username: str, password: str) -> None:
        """Change a password as the admin (takes effect at once)."""
        r = requests.patch(
            f"{self.url}/api/2.0/mlflow/users/update-password",
            json={"username": username, "password": password},
            timeout=30,
            **self._admin(),  # type: ignore[arg-type]
        )
        r.raise_for_status()

    def set_tokens(self, tokens: dict[str, str]) -> None:
        """Bearer server: the accepted tokens (token -> existing user), besides the admin's."""
        assert self.tokens_path is not None, "only the bearer server has tokens"
        self._tokens = dict(tokens)
        tmp = self.tokens_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({ADMIN_TOKEN: ADMIN[0], **self._tokens}))
        tmp.replace(self.tokens_path)

    def add_token(self, token: str, username: str) -> None:
        self.set_tokens({**self._tokens, token: username})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(directory: Path, *, bearer: bool) -> Iterator[MlflowServer]:
    ini = directory / "basic_auth.ini"
    function = (
        "mlflow_test_bearer_gate:authenticate_request_bearer"
        if bearer
        else "mlflow.server.auth:authenticate_request_basic_auth"
    )
    ini.write_text(
        textwrap.dedent(f"""\
        [mlflow]
        default_permission = READ
        database_uri = sqlite:///{directory}/basic_auth.db
        admin_username = {ADMIN[0]}
        admin_password = {ADMIN[1]}
        authorization_function = {function}
        auth_cache_ttl_seconds = 60
        """)
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "AWS_", "PYTHON")) and key != "DO_NOT_TRACK"
    }
    env.update(
        MLFLOW_AUTH_CONFIG_PATH=str(ini),
        MLFLOW_FLASK_SERVER_SECRET_KEY="test-only-static-secret",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    server = MlflowServer(url="", directory=directory)
    if bearer:
        gate = directory / "gate"
        gate.mkdir()
        (gate / "mlflow_test_bearer_gate.py").write_text(_GATE)
        env["PYTHONPATH"] = str(gate)
        server.tokens_path = directory / "tokens.json"
        env["MLFLOW_TEST_BEARER_TOKENS"] = str(server.tokens_path)
        server.set_tokens({})
    python = os.environ.get(SERVER_PYTHON) or sys.executable
    port = _free_port()
    server.url = f"http://127.0.0.1:{port}"
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                python,
                "-m",
                "mlflow",
                "server",
                "--app-name",
                "basic-auth",
                "--backend-store-uri",
                f"sqlite:///{directory}/mlflow.db",
                "--artifacts-destination",
                str(directory / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"the MLflow server did not start:\n{tail}")
            time.sleep(0.2)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # The server leads its own process group (start_new_session): end that group only.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


@pytest.fixture(scope="session")
def mlflow_basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from _start(tmp_path_factory.mktemp("mlflow-basic"), bearer=False)


@pytest.fixture(scope="session")
def mlflow_bearer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    yield from _start(tmp_path_factory.mktemp("mlflow-bearer"), bearer=True)
