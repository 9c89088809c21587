"""``info`` and ``doctor``: the installed executable against moto's Secrets Manager and small
loopback HTTP servers standing in for an MLflow tracking server."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlflow_secrets_helper import providers
from tests.conftest import Result
from tests.support.moto_server import AwsBackend

RunHelper = Callable[..., Result]

SECRET_NAME = "mlflow/prod"
TOKEN = "tok-diag-7f3a9c1e"
API = "/api/2.0/mlflow/experiments/search"
LINE_START = re.compile(r"(ok  |warn|FAIL) \S|     hint: \S")


@pytest.fixture
def env(aws: AwsBackend, helper_env: dict[str, str]) -> dict[str, str]:
    """A clean environment with one AWS route; the secret itself is created per test."""
    return {
        **helper_env,
        **aws.env(),
        "AWS_SECRET_ACCESS_KEY": "sak-diag-4e1d0b",
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": SECRET_NAME,
    }


def doctor_lines(result: Result) -> list[str]:
    lines = result.stdout.splitlines()
    assert lines, result
    for line in lines:
        assert LINE_START.match(line), line
    assert "Traceback" not in result.stdout + result.stderr
    return lines


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def hint_follows(lines: list[str], line: str) -> bool:
    index = lines.index(line)
    return index + 1 < len(lines) and lines[index + 1].lstrip().startswith("hint: ")


# -- a stand-in MLflow server ---------------------------------------------------------------------


@dataclass
class Seen:
    path: str
    authorization: str | None


@dataclass
class StubServer:
    """Answers 200 to the right Authorization header and 401 otherwise, or redirects."""

    expected: str | None = None
    redirect_to: str | None = None
    requests: list[Seen] = field(default_factory=list)
    url: str = ""
    port: int = 0


@pytest.fixture
def stub_server() -> Iterator[Callable[..., StubServer]]:
    servers: list[ThreadingHTTPServer] = []

    def start(*, expected: str | None = None, redirect_to: str | None = None) -> StubServer:
        stub = StubServer(expected=expected, redirect_to=redirect_to)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append(Seen(self.path, self.headers.get("Authorization")))
                if stub.redirect_to is not None and not self.path.startswith("/moved"):
                    self.send_response(302)
                    self.send_header("Location", stub.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ok = self.headers.get("Authorization") == stub.expected
                body = b'{"experiments": []}' if ok else b'{"error_code": "UNAUTHENTICATED"}'
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stub.port = server.server_address[1]
        stub.url = f"http://127.0.0.1:{stub.port}"
        return stub

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- info -----------------------------------------------------------------------------------------


def test_info_text_on_a_configured_setup(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    assert run_helper(["get"], "mlflow.example.com\n", env).returncode == 0

    result = run_helper(["info"], b"", env)

    assert result.returncode == 0, result
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("mlflow-secrets-helper ")
    assert re.search(
        r"aws-secrets-manager +enabled: yes +configured: yes +SDK boto3: installed", out
    ), out
    assert re.search(r"vault +enabled: no +configured: no", out)
    assert f"secret: aws-secrets-manager:{SECRET_NAME}\n" in out
    assert "AWS_SECRET_ACCESS_KEY: set\n" in out
    assert "AWS_SESSION_TOKEN: not set\n" in out
    assert f"location: {env['MLFLOW_SECRETS_CACHE_DIR']}\n" in out
    assert "entries: 1\n" in out
    assert TOKEN not in out
    assert env["AWS_SECRET_ACCESS_KEY"] not in out


def test_info_json_reports_cache_entries_and_hit_rate(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    for _ in range(2):  # a miss that fetches, then a hit
        assert run_helper(["get"], "mlflow.example.com\n", env).returncode == 0

    result = run_helper(["--json", "info"], b"", env)

    assert result.returncode == 0, result
    report = json.loads(result.stdout)
    assert report["v"] == 1
    rows = {row["name"]: row for row in report["providers"]}
    assert rows["aws-secrets-manager"] == {
        "name": "aws-secrets-manager",
        "enabled": True,
        "configured": True,
        "sdk_module": "boto3",
        "sdk_installed": True,
    }
    assert rows["vault"]["enabled"] is False
    (route,) = report["routes"]
    assert route["secret"] == f"aws-secrets-manager:{SECRET_NAME}"
    assert route["settings"] == {"secret_name": SECRET_NAME}
    assert report["credentials"]["AWS_SECRET_ACCESS_KEY"] == "set"
    assert report["credentials"]["VAULT_TOKEN"] == "not set"
    assert report["locations"]["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == aws.endpoint
    cache = report["cache"]
    assert (cache["entries"], cache["hits"], cache["misses"]) == (1, 1, 1)
    assert cache["hit_rate"] == 0.5
    assert cache["key_location"] == "key-file"
    assert report["errors"] == []
    assert TOKEN not in result.stdout
    assert env["AWS_SECRET_ACCESS_KEY"] not in result.stdout


def test_info_security_warnings(env: dict[str, str], run_helper: RunHelper) -> None:
    # development mode and the key beside the cache
    report = json.loads(run_helper(["info", "--json"], b"", env).stdout)
    warnings = "\n".join(report["warnings"])
    assert "development mode" in warnings
    assert "beside the entries" in warnings

    # http to a loopback entry, VAULT_SKIP_VERIFY, and an enabled provider without a secret
    result = run_helper(
        ["info"],
        b"",
        {
            **env,
            "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com,127.0.0.1:5000",
            "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager,vault",
            "VAULT_SKIP_VERIFY": "true",
        },
    )
    assert result.returncode == 0, result
    warning_lines = [line for line in result.stdout.splitlines() if "warning: " in line]
    text = "\n".join(warning_lines)
    assert "development mode" not in text
    assert "plain http is allowed to 127.0.0.1:5000" in text
    assert "VAULT_SKIP_VERIFY" in text
    assert "vault is enabled but MLFLOW_VAULT_SECRET_PATH is not set" in text
    assert "beside the entries" in text


def test_info_with_a_broken_allowlist_reports_and_exits_5(
    env: dict[str, str], run_helper: RunHelper
) -> None:
    broken = {**env, "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com,*"}
    result = run_helper(["info"], b"", broken)
    assert result.returncode == 5
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.startswith("mlflow-secrets-helper ")
    assert re.search(r"^error: config: .*invalid host pattern '\*'", result.stdout, re.M)
    assert "aws-secrets-manager" in result.stdout  # the rest of the report is still there
    assert "location: " in result.stdout

    as_json = run_helper(["info", "--json"], b"", broken)
    assert as_json.returncode == 5
    report = json.loads(as_json.stdout)
    assert report["errors"][0]["kind"] == "config"
    assert report["configuration"] is None


def test_info_reports_route_settings_its_provider_rejects(
    env: dict[str, str], run_helper: RunHelper
) -> None:
    vault_without_address = {
        **env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager",
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow",
    }
    result = run_helper(["info"], b"", vault_without_address)
    assert result.returncode == 5, result
    assert re.search(
        r"^error: config: route 1 \(vault\): VAULT_ADDR is not set", result.stdout, re.M
    )
    assert "secret: unavailable (see error)" in result.stdout
    assert f"secret: aws-secrets-manager:{SECRET_NAME}" in result.stdout


@pytest.mark.parametrize(
    "args", [["info", "extra"], ["doctor", "now"], ["--dry-run", "https://h", "info"]]
)
def test_unexpected_arguments_are_usage_errors(
    args: list[str], env: dict[str, str], run_helper: RunHelper
) -> None:
    result = run_helper(args, b"", env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("mlflow-secrets-helper: error: invalid-input: ")


def test_doctor_rejects_a_malformed_dry_run_url(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["doctor", "--dry-run", "ftp://mlflow.example.com"], b"", env)
    assert (result.returncode, result.stdout) == (2, "")
    assert "unsupported scheme" in result.stderr


# -- doctor ---------------------------------------------------------------------------------------


def test_doctor_passes(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    result = run_helper(["doctor"], b"", env)

    assert result.returncode == 0, result
    lines = doctor_lines(result)
    assert failures(lines) == []
    out = result.stdout
    assert f"logged in and read aws-secrets-manager:{SECRET_NAME}" in out
    assert "secret format: bearer token" in out
    assert "header Authorization: Bearer <redacted>" in out
    assert "wrote, read and erased a probe entry" in out
    assert re.search(r"^warn host policy: .*development mode", out, re.M)
    assert TOKEN not in out + result.stderr
    # the probe leaves nothing behind
    report = json.loads(run_helper(["info", "--json"], b"", env).stdout)
    assert report["cache"]["entries"] == 0


def test_doctor_reports_basic_credentials_by_scheme_only(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.create(SECRET_NAME, json.dumps({"username": "alice", "password": "pw-diag-91b2"}))
    result = run_helper(
        ["--json", "doctor"], b"", {**env, "MLFLOW_AUTH_HEADER_NAME": "X-MLflow-Auth"}
    )
    assert result.returncode == 0, result
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["exit"] == 0
    messages = [check["message"] for check in report["checks"]]
    assert any(m.endswith("header X-MLflow-Auth: Basic <redacted>") for m in messages)
    assert "pw-diag-91b2" not in result.stdout
    assert "YWxpY2U6" not in result.stdout  # not even the start of base64("alice:...")


def test_doctor_missing_secret(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["doctor"], b"", env)
    assert result.returncode == 1, result
    lines = doctor_lines(result)
    (failure,) = failures(lines)
    assert "not-found" in failure and SECRET_NAME in failure
    assert hint_follows(lines, failure)


def test_doctor_invalid_secret_format(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.create(SECRET_NAME, json.dumps({"tok": TOKEN}))
    result = run_helper(["doctor"], b"", env)
    assert result.returncode == 5, result
    (failure,) = failures(doctor_lines(result))
    assert "secret format: invalid-secret" in failure
    assert TOKEN not in result.stdout


def test_doctor_unreachable_backend(env: dict[str, str], run_helper: RunHelper) -> None:
    unreachable = {
        **env,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{closed_port()}",
    }
    result = run_helper(["--timeout", "5", "doctor"], b"", unreachable)
    assert result.returncode == 4, result
    lines = doctor_lines(result)
    (failure,) = failures(lines)
    assert "backend-unavailable" in failure
    assert any(line.startswith("ok   cache: ") for line in lines)  # later checks still ran


def test_doctor_bad_configuration(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["doctor"], b"", {**env, "MLFLOW_SECRETS_ALLOWED_HOSTS": "a.example,,b"})
    assert result.returncode == 5, result
    lines = doctor_lines(result)
    assert lines[0].startswith("FAIL configuration: config: ")
    assert hint_follows(lines, lines[0])


def test_doctor_loose_cache_directory(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    aws.create(SECRET_NAME, TOKEN)
    loose = tmp_path / "loose-cache"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    result = run_helper(["doctor"], b"", {**env, "MLFLOW_SECRETS_CACHE_DIR": str(loose)})
    assert result.returncode == 5, result
    lines = doctor_lines(result)
    (failure,) = failures(lines)
    assert failure.startswith("FAIL cache: cache disabled: ") and "755" in failure
    assert hint_follows(lines, failure)


# -- doctor --dry-run -----------------------------------------------------------------------------


def dry_run_env(env: dict[str, str], *ports: int) -> dict[str, str]:
    allowed = ",".join(f"127.0.0.1:{port}" for port in ports)
    return {**env, "MLFLOW_SECRETS_ALLOWED_HOSTS": allowed}


def test_dry_run_accepted(
    aws: AwsBackend,
    env: dict[str, str],
    run_helper: RunHelper,
    stub_server: Callable[..., StubServer],
) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    server = stub_server(expected=f"Bearer {TOKEN}")
    result = run_helper(
        ["doctor", "--dry-run", server.url + "/mlflow/"], b"", dry_run_env(env, server.port)
    )
    assert result.returncode == 0, result
    lines = doctor_lines(result)
    assert failures(lines) == []
    assert any(re.match(r"ok   dry run GET .*: HTTP 200", line) for line in lines), lines
    assert [seen.path for seen in server.requests] == [f"/mlflow{API}?max_results=1"]
    assert TOKEN not in result.stdout + result.stderr


def test_dry_run_rejected_credential(
    aws: AwsBackend,
    env: dict[str, str],
    run_helper: RunHelper,
    stub_server: Callable[..., StubServer],
) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    server = stub_server(expected="Bearer another-token")
    result = run_helper(["doctor", "--dry-run", server.url], b"", dry_run_env(env, server.port))
    assert result.returncode == 3, result
    lines = doctor_lines(result)
    (failure,) = failures(lines)
    assert "HTTP 401" in failure
    assert hint_follows(lines, failure)
    assert [seen.authorization for seen in server.requests] == [f"Bearer {TOKEN}"]


def test_dry_run_never_sends_the_header_to_another_origin(
    aws: AwsBackend,
    env: dict[str, str],
    run_helper: RunHelper,
    stub_server: Callable[..., StubServer],
) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    elsewhere = stub_server(expected=f"Bearer {TOKEN}")
    redirecting = stub_server(redirect_to=elsewhere.url)
    # both ports are allowed: the redirect is refused for being cross-origin, not by the policy
    result = run_helper(
        ["doctor", "--dry-run", redirecting.url],
        b"",
        dry_run_env(env, redirecting.port, elsewhere.port),
    )
    assert result.returncode == 1, result
    (failure,) = failures(doctor_lines(result))
    assert "another origin" in failure and elsewhere.url in failure
    assert len(redirecting.requests) == 1
    assert elsewhere.requests == []  # not followed at all, so the header never got there


def test_dry_run_follows_a_same_origin_redirect_with_the_header(
    aws: AwsBackend,
    env: dict[str, str],
    run_helper: RunHelper,
    stub_server: Callable[..., StubServer],
) -> None:
    aws.create(SECRET_NAME, json.dumps({"token": TOKEN}))
    server = stub_server(expected=f"Bearer {TOKEN}")
    server.redirect_to = server.url + "/moved"
    result = run_helper(["doctor", "--dry-run", server.url], b"", dry_run_env(env, server.port))
    assert result.returncode == 0, result
    assert [seen.authorization for seen in server.requests] == [f"Bearer {TOKEN}"] * 2
    assert server.requests[1].path == f"/moved{API}?max_results=1"


def test_dry_run_refused_host(
    aws: AwsBackend,
    env: dict[str, str],
    run_helper: RunHelper,
    stub_server: Callable[..., StubServer],
) -> None:
    aws.create(SECRET_NAME, TOKEN)
    server = stub_server(expected=f"Bearer {TOKEN}")
    # development mode: plain http is refused, so nothing is sent
    result = run_helper(["doctor", "--dry-run", server.url], b"", env)
    assert result.returncode == 1, result
    (failure,) = failures(doctor_lines(result))
    assert "host-not-allowed" in failure
    assert server.requests == []


def test_dry_run_connection_failure(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.create(SECRET_NAME, TOKEN)
    port = closed_port()
    result = run_helper(
        ["--timeout", "5", "doctor", "--dry-run", f"http://127.0.0.1:{port}"],
        b"",
        dry_run_env(env, port),
    )
    assert result.returncode == 4, result
    (failure,) = failures(doctor_lines(result))
    assert "cannot connect" in failure


# -- no secret anywhere ---------------------------------------------------------------------------


def test_canary_never_appears_in_info_or_doctor(
    aws: AwsBackend,
    env: dict[str, str],
    run_helper: RunHelper,
    stub_server: Callable[..., StubServer],
    tmp_path: Path,
) -> None:
    canary = "cnry" + "5d2e8b7a41f06c39"
    aws.create(SECRET_NAME, json.dumps({"token": canary}))
    secret_id_file = tmp_path / "secret-id"
    secret_id_file.write_text(canary)
    credentials = {name: canary for spec in providers.specs() for name in spec.credential_variables}
    credentials["VAULT_SECRET_ID_FILE"] = str(secret_id_file)
    server = stub_server(expected=f"Bearer {canary}")
    base = {**env, **credentials, "MLFLOW_SECRETS_ALLOWED_HOSTS": f"127.0.0.1:{server.port}"}
    with_vault = {
        **base,
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager",
        "VAULT_ADDR": f"http://127.0.0.1:{closed_port()}",
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow",
    }
    runs = [
        (["info"], base),
        (["info", "--json"], base),
        (["doctor"], base),
        (["--json", "doctor"], base),
        (["doctor", "--dry-run", server.url], base),
        (["info"], with_vault),
        (["--timeout", "5", "doctor", "--dry-run", server.url], with_vault),
    ]
    for args, run_env in runs:
        result = run_helper(args, b"", run_env)
        assert "Traceback" not in result.stderr, (args, result)
        assert canary not in result.stdout, (args, result.stdout)
        assert canary not in result.stderr, (args, result.stderr)
    # the canary did travel: the stand-in server saw it as the bearer token
    assert any(seen.authorization == f"Bearer {canary}" for seen in server.requests)


def test_info_imports_no_sdk(env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from mlflow_secrets_helper import diagnostics\n"
        "import os\n"
        "text, status = diagnostics.run('info', rest=[], as_json=False, dry_run=None,"
        " timeout=None, env=os.environ)\n"
        "assert status == 0, text\n"
        "assert 'boto3: installed' in text, text\n"
        "loaded = [m for m in ('boto3', 'botocore', 'hvac', 'azure.keyvault.secrets')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
