"""Canary secret scan: no secret value ever shows up where it must not.

Fresh random canaries are put where secrets really live: the secret value in AWS and
in Vault, the Vault token, a (wrong) AppRole secret id and the AWS secret access key.
Then the command line, the MLflow shim and their error paths run with debug logging
on, and everything they leave behind is searched: stderr, error output on stdout,
log records, exception text and tracebacks, every file in the cache directory, and
the command line of each helper process the shim starts (read from
``/proc/<pid>/cmdline`` while it runs). Zero hits are allowed, counting any 12
characters of a canary (no prefix or suffix may leak) and the base64 forms a Basic
header would carry.

The only place a secret may appear is the successful answer itself (the header on
stdout, and the request the shim authenticates), which is checked to be exact and
otherwise left out of the scan.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import logging
import os
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import RunHelper
from tests.support.faultproxy import (
    AWS_GET_SECRET_VALUE,
    FaultProxyFactory,
    aws_error,
    delay,
    drop,
    truncate,
    vault_error,
)
from tests.support.moto_server import AwsBackend
from tests.support.openbao import VaultNamespace

HOST = "mlflow.example.com"
USER = "alice"
#: everything but the last byte of the body: the secret is in it, the JSON is cut
ALL_BUT_ONE_BYTE = 10**6


def canary(label: str) -> str:
    return f"{label}{secrets.token_hex(14)}"


SECRET = canary("cnrysecret")
TOKEN_SECRET = canary("cnrytoken")
VAULT_TOKEN = canary("cnryvault")
APPROLE_SECRET_ID = canary("cnryapprole")
AWS_KEY = canary("cnryawskey")
CANARIES = (SECRET, TOKEN_SECRET, VAULT_TOKEN, APPROLE_SECRET_ID, AWS_KEY)


def needles() -> list[bytes]:
    found: set[bytes] = set()
    for value in CANARIES:
        raw = value.encode()
        found.update(raw[i : i + 12] for i in range(len(raw) - 11))
        for text in (value, f"{USER}:{value}"):
            found.add(base64.b64encode(text.encode()))
    return sorted(found)


NEEDLES = needles()


class Evidence:
    """Everything collected for the scan, labelled by where it came from."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def add(self, where: str, data: str | bytes) -> None:
        self.items.append((where, data.encode() if isinstance(data, str) else data))

    def add_tree(self, where: str, root: Path) -> int:
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.add(f"{where}/{path.relative_to(root)}", path.read_bytes())
                count += 1
        return count

    def assert_clean(self) -> None:
        hits = [where for where, data in self.items if any(needle in data for needle in NEEDLES)]
        assert hits == [], f"a canary leaked into: {hits}"
        assert self.items, "nothing was scanned"


@pytest.fixture
def evidence() -> Iterator[Evidence]:
    found = Evidence()
    yield found
    found.assert_clean()


def debug_env(helper_env: dict[str, str]) -> dict[str, str]:
    return {
        **helper_env,
        "MLFLOW_SECRETS_LOG_LEVEL": "debug",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
        "AWS_SECRET_ACCESS_KEY": AWS_KEY,
        "AWS_MAX_ATTEMPTS": "2",
        "MLFLOW_SECRETS_TIMEOUT_SEC": "8",
    }


def basic_header(password: str) -> str:
    return "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()


# --- the command line ------------------------------------------------------------------


def test_command_line_paths(
    aws: AwsBackend,
    helper_env: dict[str, str],
    run_helper: RunHelper,
    evidence: Evidence,
) -> None:
    aws.create("mlflow/basic", json.dumps({"username": USER, "password": SECRET}))
    aws.create("mlflow/token", json.dumps({"token": TOKEN_SECRET}))
    aws.create("mlflow/control", json.dumps({"token": SECRET + "\x01"}))
    aws.create("mlflow/half", json.dumps({"username": SECRET}))
    env = {
        **debug_env(helper_env),
        **aws.env(AWS_SECRET_ACCESS_KEY=AWS_KEY),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": "mlflow/basic",
    }

    def run(label: str, args: list[str], stdin: str, *, ok: str | None = None, **extra: str) -> Any:
        result = run_helper(args, stdin, {**env, **extra})
        evidence.add(f"{label}: stderr", result.stderr)
        assert "mlflow-secrets-helper" in result.stderr or result.returncode == 0, result
        if ok is None:
            evidence.add(f"{label}: stdout", result.stdout)
        else:
            # the answer itself carries the secret; whatever follows it must not
            assert result.returncode == 0 and result.stdout.startswith(ok), (label, result)
            evidence.add(f"{label}: stdout after the answer", result.stdout[len(ok) :])
        return result

    header = f"Authorization: {basic_header(SECRET)}\n"
    run("get", ["get"], HOST, ok=header)
    ok_json = run_helper(["--format", "json", "get"], HOST, env)
    evidence.add("get json: stderr", ok_json.stderr)
    document = json.loads(ok_json.stdout)["ok"]
    assert document["header"]["value"] == basic_header(SECRET)
    assert document["source"] == "cache"
    evidence.add("credential id", document["credential_id"])
    run(
        "git get",
        ["--format", "git", "get"],
        f"protocol=https\nhost={HOST}\n\n",
        ok=f"username={USER}\npassword={SECRET}\n",
    )
    run(
        "token get",
        ["--format", "token", "get"],
        HOST,
        MLFLOW_AWS_SECRET_NAME="mlflow/token",
        ok=f"{TOKEN_SECRET}\n",
    )
    run("token format on basic", ["--format", "token", "get"], HOST)
    run("bearer mode on basic", ["--refresh", "get"], HOST, MLFLOW_AWS_AUTH_MODE="bearer")
    run(
        "control character",
        ["--format", "json", "get"],
        HOST,
        MLFLOW_AWS_SECRET_NAME="mlflow/control",
    )
    run("half a basic secret", ["get"], HOST, MLFLOW_AWS_SECRET_NAME="mlflow/half")
    run("info", ["info"], "")
    run("info json", ["info", "--json"], "")
    run("doctor", ["doctor"], "")
    run("cache status", ["cache", "status"], "")

    for label, action in (
        ("truncated answer", truncate(ALL_BUT_ONE_BYTE)),
        ("access denied", aws_error("AccessDeniedException")),
        ("dropped connection", drop()),
    ):
        aws.proxy.clear()
        aws.proxy.add(action, header=AWS_GET_SECRET_VALUE, times=None)
        run(label, ["--format", "json", "--refresh", "get"], HOST)
        run(label + " (git)", ["--format", "git", "--refresh", "get"], f"url=https://{HOST}\n\n")
    aws.proxy.clear()

    # erase by value (git's reject) and by credential id; then the cache is empty
    run("erase by value", ["erase"], f"protocol=https\nhost={HOST}\npassword={SECRET}\n\n", ok="")
    run("get again", ["get"], HOST, ok=header)
    run(
        "erase by id",
        ["erase"],
        f"protocol=https\nhost={HOST}\ncredential_id={document['credential_id']}\n\n",
        ok="",
    )
    assert evidence.add_tree("cache", Path(env["MLFLOW_SECRETS_CACHE_DIR"])) >= 1


def test_vault_paths(
    vault_ns: VaultNamespace,
    fault_proxy: FaultProxyFactory,
    helper_env: dict[str, str],
    run_helper: RunHelper,
    evidence: Evidence,
) -> None:
    bao = vault_ns.bao
    vault_ns.write("mlflow/token", {"token": TOKEN_SECRET})
    policy = vault_ns.reader_policy("secret/data/mlflow/token")
    # a token id of our choosing can only be made in the root namespace; its policy
    # names the test's namespace
    root_policy = bao.read_policy(
        f"canary-{vault_ns.name}", [f"{vault_ns.name}/secret/data/mlflow/token"], namespace=None
    )
    bao.api(
        "POST", "auth/token/create", {"id": VAULT_TOKEN, "policies": [root_policy]}, namespace=None
    )
    bao.enable_auth("approle", namespace=vault_ns.name)
    role_id, _real_secret_id = bao.approle("mlflow", [policy], namespace=vault_ns.name)
    proxy = fault_proxy(bao.http_url)
    env = {
        **debug_env(helper_env),
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "VAULT_ADDR": proxy.url,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": VAULT_TOKEN,
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/token",
    }

    def run(label: str, args: list[str], *, ok: str | None = None, **extra: str) -> None:
        result = run_helper(args, HOST, {**env, **extra})
        evidence.add(f"{label}: stderr", result.stderr)
        if ok is None:
            assert result.returncode != 0, (label, result)
            evidence.add(f"{label}: stdout", result.stdout)
        else:
            assert (result.returncode, result.stdout) == (0, ok), (label, result.stderr)

    run("get", ["get"], ok=f"Authorization: Bearer {TOKEN_SECRET}\n")
    doctor = run_helper(["doctor"], "", env)
    evidence.add("doctor: stdout", doctor.stdout)
    evidence.add("doctor: stderr", doctor.stderr)
    run("revoked-looking token", ["--refresh", "get"], VAULT_TOKEN=VAULT_TOKEN + "x")
    run("unsendable token", ["--refresh", "get"], VAULT_TOKEN=VAULT_TOKEN + " \x01")
    run(
        "wrong AppRole secret id",
        ["--format", "json", "--refresh", "get"],
        VAULT_TOKEN="",
        VAULT_ROLE_ID=role_id,
        VAULT_SECRET_ID=APPROLE_SECRET_ID,
    )
    for label, action in (
        ("truncated answer", truncate(ALL_BUT_ONE_BYTE)),
        ("server error", vault_error(500, "internal error")),
        ("dropped connection", drop()),
    ):
        proxy.clear()
        proxy.add(action, method="GET", path=r"^/v1/secret/data/", times=None)
        run(label, ["--format", "json", "--refresh", "get"])
    assert evidence.add_tree("cache", Path(env["MLFLOW_SECRETS_CACHE_DIR"])) >= 1


# --- the MLflow shim -------------------------------------------------------------------


class _Target(http.server.BaseHTTPRequestHandler):
    """An MLflow-like server: /ok 200, /401 401, /403 403, /redirect to another origin."""

    protocol_version = "HTTP/1.1"
    elsewhere = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = {"/ok": 200, "/401": 401, "/403": 403, "/redirect": 302}.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", self.elsewhere + "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def target() -> Iterator[str]:
    servers = []
    for _ in range(2):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Target)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        servers.append(server)
    _Target.elsewhere = f"http://127.0.0.1:{servers[1].server_address[1]}"
    try:
        yield f"http://127.0.0.1:{servers[0].server_address[1]}"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


class CommandLines:
    """Reads ``/proc/<pid>/cmdline`` of every child of this process while it runs."""

    def __init__(self) -> None:
        self.seen: dict[int, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) in self.seen:
                    continue
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[1] != me:
                        continue
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                except (OSError, IndexError):
                    continue
                if cmdline:
                    self.seen[int(entry)] = cmdline
            time.sleep(0.002)


def test_shim_paths(
    aws: AwsBackend,
    helper_env: dict[str, str],
    target: str,
    caplog: pytest.LogCaptureFixture,
    evidence: Evidence,
) -> None:
    from mlflow_secrets_shim.auth import HelperAuth
    from mlflow_secrets_shim.errors import HelperError
    from mlflow_secrets_shim.invocation import HelperProcess
    from mlflow_secrets_shim.memo import CredentialMemo
    from mlflow_secrets_shim.origin import Origin

    aws.create("mlflow/basic", json.dumps({"username": USER, "password": SECRET}))
    aws.create("mlflow/control", json.dumps({"token": SECRET + "\x01"}))
    # slow backend answers keep each helper alive long enough to read its command line
    aws.proxy.add(delay(0.3), header=AWS_GET_SECRET_VALUE, times=None)
    env = {
        **debug_env(helper_env),
        **aws.env(AWS_SECRET_ACCESS_KEY=AWS_KEY),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": "mlflow/basic",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": target.removeprefix("http://"),
    }
    caplog.set_level(logging.DEBUG)

    def session(environ: dict[str, str]) -> tuple[requests.Session, HelperAuth]:
        auth = HelperAuth(CredentialMemo(HelperProcess(environ=environ)))
        s = requests.Session()
        s.trust_env = False
        s.auth = auth
        return s, auth

    with CommandLines() as commands:
        s, auth = session(env)
        assert s.get(target + "/ok", timeout=30).request.headers["Authorization"] == basic_header(
            SECRET
        )
        assert s.get(target + "/401", timeout=30).status_code == 401
        assert s.get(target + "/403", timeout=30).status_code == 403
        moved = s.get(target + "/redirect", timeout=30)
        assert moved.status_code == 200 and "Authorization" not in moved.request.headers
        evidence.add("auth repr", repr(auth))
        evidence.add("credential repr", repr(auth._memo.current(Origin.of(target))))

        failures: list[BaseException] = []
        for label, extra in (
            ("denied", {"MLFLOW_AWS_SECRET_NAME": "mlflow/basic", "_fault": "denied"}),
            ("invalid secret", {"MLFLOW_AWS_SECRET_NAME": "mlflow/control"}),
            ("truncated", {"MLFLOW_AWS_SECRET_NAME": "mlflow/basic", "_fault": "truncate"}),
        ):
            fault = extra.pop("_fault", "")
            aws.proxy.clear()
            if fault == "denied":
                aws.proxy.add(aws_error("AccessDeniedException"), header=AWS_GET_SECRET_VALUE)
            elif fault == "truncate":
                aws.proxy.add(truncate(ALL_BUT_ONE_BYTE), header=AWS_GET_SECRET_VALUE, times=None)
            cache = Path(env["MLFLOW_SECRETS_CACHE_DIR"] + "-" + label.replace(" ", "-"))
            failing, _ = session({**env, **extra, "MLFLOW_SECRETS_CACHE_DIR": str(cache)})
            with pytest.raises(HelperError) as raised:
                failing.get(target + "/ok", timeout=30)
            failures.append(raised.value)
            evidence.add_tree(f"cache ({label})", cache)

    for failure in failures:
        evidence.add("exception str", str(failure))
        evidence.add("exception repr", repr(failure))
        evidence.add("traceback", "".join(traceback.format_exception(failure)))
    for record in caplog.records:
        evidence.add(f"log {record.name}", record.getMessage())
        if record.exc_info:
            evidence.add(
                f"log {record.name} traceback",
                "".join(traceback.format_exception(*record.exc_info)),
            )
    buffer = io.StringIO()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and hasattr(handler.stream, "getvalue"):
            buffer.write(handler.stream.getvalue())
    evidence.add("log handlers", buffer.getvalue())

    helpers = {pid: line for pid, line in commands.seen.items() if b"mlflow_secrets_helper" in line}
    assert len(helpers) >= 4, commands.seen  # get, erase + get (401), failures ...
    for pid, line in helpers.items():
        evidence.add(f"helper {pid} cmdline", line)
        assert line.split(b"\0")[:4] == [
            sys.executable.encode(),
            b"-I",
            b"-m",
            b"mlflow_secrets_helper",
        ], line
    assert evidence.add_tree("cache", Path(env["MLFLOW_SECRETS_CACHE_DIR"])) >= 1
