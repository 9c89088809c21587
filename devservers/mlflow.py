"""A real MLflow tracking server that demands authentication, on 127.0.0.1.

:class:`MlflowServer` runs ``mlflow server --app-name basic-auth`` (MLflow's own
basic-auth app) with one worker, the job runner off, an auth cache (password hashing is
slow; with one worker a changed password is refused at once), a SQLite store and artifacts
served through the tracking server (``mlflow-artifacts:``). Users are created and passwords
changed through its REST API as the admin. The admin password sits only in the auth
config file (mode 0600), never on a command line.

With ``bearer=True`` the app's ``authorization_function`` is a small gate that accepts
``Authorization: Bearer <token>`` or ``X-MLflow-Auth: [Bearer ]<token>``, tokens mapped
to MLflow users in a JSON file read on every request (:meth:`MlflowServer.set_tokens`).

``python`` names the interpreter that runs the server (default: this one), so a
client-only environment (an older MLflow client) can use a server from another venv.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devservers.net import ServerError, free_port, http_json
from devservers.process import Managed, PortTaken, Process

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password-0001"  # MLflow 3 wants passwords of 12+ characters
ADMIN_TOKEN = "admin-token-0000000000000001"

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


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would configure MLflow, AWS or
    Python behind the server's back."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "AWS_", "PYTHON")) and key != "DO_NOT_TRACK"
    }


class MlflowServer(Managed):
    """``mlflow server --app-name basic-auth`` on a free loopback port.

    ``directory``: an empty directory for its stores, config and log. ``env``: the
    server's base environment (default :func:`clean_env`). ``admin_password``: the
    admin's password (``admin`` is the user). ``die_with_parent``: see
    :class:`devservers.process.Process`.
    """

    name = "MLflow server"

    def __init__(
        self,
        directory: Path,
        *,
        bearer: bool = False,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        admin_password: str = ADMIN_PASSWORD,
        die_with_parent: bool = False,
        start_timeout: float = 180.0,
    ) -> None:
        self.directory = directory
        self.admin = (ADMIN_USER, admin_password)
        self.flask_key = secrets.token_hex(32)
        self.start_timeout = start_timeout
        self.url = ""
        self.tokens_path: Path | None = None
        self._tokens: dict[str, str] = {}
        ini = directory / "basic_auth.ini"
        function = (
            "mlflow_test_bearer_gate:authenticate_request_bearer"
            if bearer
            else "mlflow.server.auth:authenticate_request_basic_auth"
        )
        ini.touch(mode=0o600)
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{directory}/basic_auth.db\n"
            f"admin_username = {self.admin[0]}\n"
            f"admin_password = {self.admin[1]}\n"
            f"authorization_function = {function}\n"
            "auth_cache_ttl_seconds = 60\n"
        )
        child_env = clean_env() if env is None else dict(env)
        child_env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(ini),
            MLFLOW_FLASK_SERVER_SECRET_KEY=self.flask_key,
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_DISABLE_TELEMETRY="true",
            DO_NOT_TRACK="true",
        )
        if bearer:
            gate = directory / "gate"
            gate.mkdir()
            (gate / "mlflow_test_bearer_gate.py").write_text(_GATE)
            child_env["PYTHONPATH"] = str(gate)
            self.tokens_path = directory / "tokens.json"
            child_env["MLFLOW_TEST_BEARER_TOKENS"] = str(self.tokens_path)
            self.set_tokens({})
        self.log_path = directory / "server.log"
        self.process = Process(
            self.name,
            [],  # set with the port in start()
            env=child_env,
            cwd=directory,
            log=self.log_path,
            die_with_parent=die_with_parent,
        )
        self._python = python or sys.executable

    def __repr__(self) -> str:
        return f"MlflowServer({self.url or 'not started'})"

    @property
    def netloc(self) -> str:
        return self.url.removeprefix("http://")

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> MlflowServer:
        """Start and wait for ``/health``; a new port if the chosen one was taken."""
        for attempt in range(3):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.process.argv = [
                self._python,
                "-m",
                "mlflow",
                "server",
                "--app-name",
                "basic-auth",
                "--backend-store-uri",
                f"sqlite:///{self.directory}/mlflow.db",
                "--artifacts-destination",
                str(self.directory / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ]
            self.process.start()
            try:
                self.process.wait_ready(self._ready, self.start_timeout)
                return self
            except PortTaken:
                self.process.stop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _ready(self) -> bool:
        status, _ = http_json("GET", f"{self.url}/health", timeout=2)
        return status == 200

    def stop(self) -> None:
        self.process.stop(grace=20)

    # -- admin API ---------------------------------------------------------------
    def admin_call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call ``/api/2.0/mlflow/<path>`` as the admin; the parsed answer, or
        :class:`ServerError` for any status but 200."""
        if self.tokens_path is None:
            pair = f"{self.admin[0]}:{self.admin[1]}".encode()
            auth = "Basic " + base64.b64encode(pair).decode()
        else:
            auth = f"Bearer {ADMIN_TOKEN}"
        status, answer = http_json(
            method,
            f"{self.url}/api/2.0/mlflow/{path}",
            headers={"Authorization": auth},
            body=body,
            timeout=30,
        )
        if status != 200:
            raise ServerError(f"MLflow ({method} {path.split('?')[0]})", status, answer)
        return answer

    def create_user(self, username: str, password: str) -> None:
        self.admin_call("POST", "users/create", {"username": username, "password": password})

    def set_password(self, username: str, password: str) -> None:
        """Change a password as the admin (takes effect at once)."""
        self.admin_call(
            "PATCH", "users/update-password", {"username": username, "password": password}
        )

    def set_tokens(self, tokens: dict[str, str]) -> None:
        """Bearer server: the accepted tokens (token -> existing user), besides the admin's."""
        assert self.tokens_path is not None, "only the bearer server has tokens"
        self._tokens = dict(tokens)
        tmp = self.tokens_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({ADMIN_TOKEN: ADMIN_USER, **self._tokens}))
        tmp.replace(self.tokens_path)

    def add_token(self, token: str, username: str) -> None:
        self.set_tokens({**self._tokens, token: username})
