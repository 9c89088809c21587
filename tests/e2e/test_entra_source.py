"""The installed executable with the Entra ID source: the real azure-identity in a subprocess,
steered only by the environment, against the Key Vault emulator's managed-identity endpoint
and the loopback Entra ID token endpoint (through the egress guard)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HELPER, Result
from tests.support.keyvault import AzureCloud

HOST = "mlflow.example.com"
STDIN = f"{HOST}\n"
APP_ID = "3f0c4c1e-5a2b-4d7e-9c1f-2b3a4c5d6e7f"
SCOPE = f"api://{APP_ID}/.default"

RunHelper = Callable[..., Result]


@pytest.fixture
def env(azure_cloud: AzureCloud, helper_env: dict[str, str]) -> dict[str, str]:
    """helper_env plus the Azure steering variables (managed identity) and the scope."""
    return {
        **helper_env,
        **azure_cloud.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "entra-id",
        "MLFLOW_AZURE_TOKEN_SCOPE": SCOPE,
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }


def ok(result: Result) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result
    answer: dict[str, Any] = json.loads(lines[0])["ok"]
    return answer


def get_json(run_helper: RunHelper, env: dict[str, str]) -> dict[str, Any]:
    return ok(run_helper(["--format", "json", "get"], STDIN, env))


def token_of(answer: dict[str, Any]) -> str:
    scheme, _, token = str(answer["header"]["value"]).partition(" ")
    assert scheme == "Bearer"
    return token


def one_error_line(result: Result, kind: str) -> str:
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"mlflow-secrets-helper: error: {kind}: "), result.stderr
    assert "Traceback" not in result.stderr
    return first


def test_get_serves_the_issued_token_as_bearer(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (issued,) = azure_cloud.registry.issued()
    assert result.stdout == f"Authorization: Bearer {issued}\n"
    # the managed-identity endpoint was asked for the app's resource (the scope less /.default)
    (request,) = azure_cloud.mi.requests
    assert request["query"]["resource"] == f"api://{APP_ID}"
    assert azure_cloud.registry.check(issued).audience == f"api://{APP_ID}"  # type: ignore[union-attr]


def test_a_resource_uri_is_asked_for_as_its_default_scope(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env["MLFLOW_AZURE_TOKEN_SCOPE"] = f"api://{APP_ID}"
    assert run_helper(["get"], STDIN, env).returncode == 0
    assert [r["query"]["resource"] for r in azure_cloud.mi.requests] == [f"api://{APP_ID}"]


def test_the_token_is_cached_until_its_end_less_the_margin(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    before = time.time()
    first = get_json(run_helper, env)
    assert first["source"] == "backend"
    (issued,) = azure_cloud.registry.issued()
    assert token_of(first) == issued
    expires_on = azure_cloud.registry.check(issued).expires_on  # type: ignore[union-attr]
    # an hour-long token: used until a minute before its end, but the TTL (300 s) caps it
    assert first["expires_at"] <= before + 300 + 5
    second = get_json(run_helper, env)
    assert (second["source"], token_of(second)) == ("cache", issued)
    assert len(azure_cloud.mi.requests) == 1
    env["MLFLOW_AZURE_TOKEN_TTL_SEC"] = "86400"
    env["MLFLOW_SECRETS_CACHE_DIR"] += "-uncapped"
    uncapped = get_json(run_helper, env)
    assert uncapped["source"] == "backend"
    assert expires_on - 61 <= uncapped["expires_at"] <= expires_on - 59


def test_a_short_lived_token_expires_at_use_until_and_is_fetched_again(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.mi.lifetime = 4
    asked = time.time()
    first = get_json(run_helper, env)
    (issued,) = azure_cloud.registry.issued()
    expires_on = azure_cloud.registry.check(issued).expires_on  # type: ignore[union-attr]
    # a tenth of the lifetime is taken off: used until about 0.4 s before its end (the
    # answer shows whole seconds, rounded down)
    lifetime = expires_on - asked
    assert int(expires_on - 0.1 * lifetime) <= first["expires_at"] <= expires_on - 1
    assert first["refresh_after"] <= first["expires_at"]
    # past the margin (at least 0.3 s of a 3-4 s lifetime), before the token's own end
    time.sleep(max(expires_on - 0.2 - time.time(), 0))
    again = get_json(run_helper, env)
    assert again["source"] == "backend"
    assert token_of(again) != token_of(first)
    assert len(azure_cloud.mi.requests) == 2


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [HELPER, "--format", "json", "get"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _all(env: dict[str, str], count: int) -> list[dict[str, Any]]:
    """Start ``count`` gets at once (their stdin held back until all have started)."""
    processes = [_start(env) for _ in range(count)]
    answers = []
    for process in processes:
        out, err = process.communicate(STDIN.encode(), timeout=120)
        assert process.returncode == 0, err.decode()
        answers.append(json.loads(out)["ok"])
    return answers


def test_concurrent_cold_gets_ask_for_one_token(
    azure_cloud: AzureCloud, env: dict[str, str]
) -> None:
    env["MLFLOW_SECRETS_TIMEOUT_SEC"] = "60"  # sixteen interpreters on a busy machine
    answers = _all(env, 16)
    assert len(azure_cloud.mi.requests) == 1
    (issued,) = azure_cloud.registry.issued()
    assert {token_of(a) for a in answers} == {issued}
    assert sum(a["source"] == "backend" for a in answers) == 1


def test_one_process_refreshes_ahead_while_the_others_use_the_cached_token(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.mi.lifetime = 30  # used for 27 s, refreshed ahead after 20-24 s
    env["MLFLOW_SECRETS_TIMEOUT_SEC"] = "60"
    first = get_json(run_helper, env)
    old = token_of(first)
    # the answer shows whole seconds, rounded down: one more is surely past refresh_after
    time.sleep(max(first["refresh_after"] + 1.05 - time.time(), 0))
    assert time.time() < first["expires_at"] - 1.5, "the machine is too slow for this test"
    answers = _all(env, 8)
    assert len(azure_cloud.mi.requests) == 2  # one early refresh, by one process
    (new,) = set(azure_cloud.registry.issued()) - {old}
    assert {token_of(a) for a in answers} <= {old, new}
    assert [a["source"] for a in answers].count("backend") == 1
    later = get_json(run_helper, env)
    assert (later["source"], token_of(later)) == ("cache", new)


def test_a_service_principal_gets_the_token_from_entra(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env.update(azure_cloud.service_principal())
    answer = get_json(run_helper, env)
    assert azure_cloud.mi.requests == []
    assert [r["grant_type"] for r in azure_cloud.entra.requests if r["method"] == "POST"] == [
        "client_credentials"
    ]
    (issued,) = azure_cloud.registry.issued()
    assert token_of(answer) == issued
    assert azure_cloud.registry.check(issued).subject == f"app:{env['AZURE_CLIENT_ID']}"  # type: ignore[union-attr]


def test_another_identity_is_another_cache_entry(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    as_system = get_json(run_helper, env)
    env.update(azure_cloud.service_principal())
    as_app = get_json(run_helper, env)
    assert as_app["source"] == "backend"
    assert token_of(as_app) != token_of(as_system)


def test_a_wrong_client_secret_is_denied_with_the_entra_code(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env.update(azure_cloud.service_principal())
    env["AZURE_CLIENT_SECRET"] = "not-the-secret"
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 3
    line = one_error_line(result, "backend-denied")
    assert "AADSTS7000215" in line and SCOPE in line
    assert "not-the-secret" not in result.stderr
    assert len([r for r in azure_cloud.entra.requests if r["method"] == "POST"]) == 1  # no retry


def test_a_refusing_identity_endpoint_is_denied(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.mi.fail_with = 400
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 3
    assert "no Azure credential could get a token for" in one_error_line(result, "backend-denied")
    assert len(result.stderr.splitlines()) <= 4, "SDK log lines leaked to stderr"
    assert len(azure_cloud.mi.requests) == 1


@pytest.fixture
def dropping_endpoint() -> Iterator[tuple[str, list[int]]]:
    """A loopback port that accepts each connection and closes it at once, counting them."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/msi/token", accepted
    finally:
        server.close()
        thread.join(5)


def test_a_dropped_connection_is_unavailable_after_bounded_retries(
    env: dict[str, str], run_helper: RunHelper, dropping_endpoint: tuple[str, list[int]]
) -> None:
    url, accepted = dropping_endpoint
    env["IDENTITY_ENDPOINT"] = url
    result = run_helper(["--timeout", "20", "get"], STDIN, env)
    assert result.returncode == 4
    line = one_error_line(result, "backend-unavailable")
    assert SCOPE in line
    assert len(accepted) == 3  # three attempts, the SDK's own retries off


def test_a_silent_identity_endpoint_ends_at_the_deadline(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{azure_cloud.blackhole.port}/msi/token"
    started = time.monotonic()
    result = run_helper(["--timeout", "1.5", "get"], STDIN, env)
    elapsed = time.monotonic() - started
    assert result.returncode == 4
    assert SCOPE in one_error_line(result, "backend-unavailable")
    assert elapsed < 1.5 + 3.0  # interpreter start and SDK import on a slow machine


def test_basic_auth_mode_is_a_config_error(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env["MLFLOW_AZURE_TOKEN_AUTH_MODE"] = "basic"
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 5
    assert "serves bearer credentials only" in one_error_line(result, "config")
    assert azure_cloud.mi.requests == []


def test_a_bad_scope_is_a_config_error_with_a_hint(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env["MLFLOW_AZURE_TOKEN_SCOPE"] = f"{SCOPE} https://graph.microsoft.com/.default"
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 5
    assert "must be one scope" in one_error_line(result, "config")
    assert "hint: " in result.stderr
    assert azure_cloud.mi.requests == []


def test_info_shows_the_source_and_its_scope(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    result = run_helper(["info", "--json"], "", env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (row,) = [p for p in report["providers"] if p["name"] == "entra-id"]
    assert row["configured"] and row["sdk_installed"]
    assert [r["provider"] for r in report["routes"]] == ["entra-id"]
    assert SCOPE in result.stdout
    assert azure_cloud.mi.requests == []  # info reads nothing


def test_doctor_gets_a_token_and_shows_its_lifetime_never_the_token(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.mi.lifetime = 100
    result = run_helper(["doctor"], "", env)
    assert result.returncode == 0, result.stdout + result.stderr
    (issued,) = azure_cloud.registry.issued()
    assert issued not in result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "logged in and read" in x]
    assert line.startswith(f"ok   route 1 (entra-id): logged in and read {SCOPE} in ")
    seconds = int(line.rsplit("; valid for ", 1)[1].removesuffix(" s"))
    assert 80 <= seconds <= 90  # 100 s less a tenth, less the time it took
    assert "route 1 (entra-id): header Authorization: Bearer <redacted>" in result.stdout


def _route(tmp_path: Path, env: dict[str, str], *lines: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[[routes]]\n"
        f'hosts = ["{HOST}"]\n'
        'provider = "entra-id"\n'
        f'token_scope = "api://{APP_ID}"\n' + "".join(f"{line}\n" for line in lines)
    )
    config.chmod(0o600)
    for name in ("MLFLOW_SECRETS_AUTH_ENABLE", "MLFLOW_AZURE_TOKEN_SCOPE"):
        env.pop(name)
    env["MLFLOW_SECRETS_CONFIG"] = str(config)


def test_a_toml_route_with_a_user_assigned_identity(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    client_id = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
    azure_cloud.mi.user_assigned.add(client_id)
    _route(tmp_path, env, f'client_id = "{client_id}"')
    answer = get_json(run_helper, env)
    (issued,) = azure_cloud.registry.issued()
    assert token_of(answer) == issued
    assert [r["query"].get("client_id") for r in azure_cloud.mi.requests] == [client_id]


def test_basic_auth_mode_in_a_route_fails_closed(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    _route(tmp_path, env, 'auth_mode = "basic"')
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 5
    assert "auth_mode is basic" in one_error_line(result, "config")
    assert azure_cloud.mi.requests == []  # refused before any token is asked for


def test_a_cache_hit_loads_no_azure_module(azure_cloud: AzureCloud, env: dict[str, str]) -> None:
    probe = (
        "import sys\n"
        "from mlflow_secrets_helper.cli import main\n"
        "status = main(['get'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('azure', 'msal', 'requests', 'urllib3', 'urllib'))\n"
        "sys.stderr.write('LOADED=' + ','.join(loaded) + '\\n')\n"
        "sys.exit(status)\n"
    )

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            input=STDIN.encode(),
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        return proc.stderr.decode().strip().splitlines()[-1]

    assert "azure.identity" in run()  # the first call asks for a token
    assert run() == "LOADED="  # the cache hit loads none of it
    assert len(azure_cloud.mi.requests) == 1


def test_a_setting_the_azure_sdk_refuses_is_a_config_error(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env["AZURE_TOKEN_CREDENTIALS"] = "bogus"
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 5, result
    assert "the Azure SDK refuses its configuration" in one_error_line(result, "config")
    assert "Traceback" not in result.stderr
    assert azure_cloud.mi.requests == []
