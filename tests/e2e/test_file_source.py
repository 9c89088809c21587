"""The file source through the installed executable, git mode, info, doctor and the
MLflow plugin against a real MLflow server.

The secret is a file in a directory laid out as the kubelet lays out a secret volume
(``tests.support.kubelet.Kubelet``): rotations are the kubelet's ``..data`` swap.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_secrets_helper.providers.file import RECHECK_SEC
from tests.conftest import GIT_HELPER, HELPER, Result, RunHelper
from tests.support.kubelet import Kubelet
from tests.support.mlflow_server import MlflowServer
from tests.unit.test_file_source import OTHER_UID

HOST = "mlflow.example.com"
TOKEN = "tok-3c9a51e7f02b4d68"
RECORDER = Path(__file__).with_name("shim_recording_helper.py")
RESENT = "sending the request again"


@pytest.fixture
def kubelet(tmp_path: Path) -> Kubelet:
    volume = Kubelet(tmp_path / "var" / "run" / "secrets" / "mlflow")
    volume.write({"token": TOKEN})
    return volume


@pytest.fixture
def env(helper_env: dict[str, str], kubelet: Kubelet) -> dict[str, str]:
    return {
        **helper_env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "file",
        "MLFLOW_SECRETS_FILE": str(kubelet.volume / "token"),
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }


def get_json(run_helper: RunHelper, env: dict[str, str]) -> dict[str, object]:
    result = run_helper(["--format", "json", "get"], HOST + "\n", env)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)["ok"]
    return answer


def failed(result: Result, code: int, kind: str) -> str:
    """The one-line error and its hint, checked for shape; returns stderr."""
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    first, *rest = result.stderr.splitlines()
    assert first.startswith(f"mlflow-secrets-helper: error: {kind}: "), result.stderr
    assert rest and all(line.startswith("hint: ") for line in rest), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


# -- get -----------------------------------------------------------------------------


def test_get_serves_the_file_and_a_swap_at_once(
    env: dict[str, str], kubelet: Kubelet, run_helper: RunHelper
) -> None:
    result = run_helper(["get"], HOST + "\n", env)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"Authorization: Bearer {TOKEN}\n",
        "",
    )
    kubelet.write({"token": "tok-after-the-swap"})
    assert run_helper(["get"], HOST, env).stdout == "Authorization: Bearer tok-after-the-swap\n"


def test_nothing_is_cached_and_callers_ask_again_soon(
    env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    before = time.time()
    first = get_json(run_helper, env)
    after = time.time()
    assert first["source"] == "backend"
    assert first["refresh_after"] == first["expires_at"]
    assert int(before + RECHECK_SEC) <= int(str(first["expires_at"])) <= after + RECHECK_SEC
    second = get_json(run_helper, env)
    assert second["source"] == "backend"  # read again, not a cache hit
    assert second["credential_id"] == first["credential_id"]
    status = run_helper(["cache", "status"], "", env)
    assert "entries: 0" in status.stdout, status.stdout
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()


def test_git_mode_serves_a_basic_secret_from_the_file(
    env: dict[str, str], kubelet: Kubelet, run_helper: RunHelper
) -> None:
    kubelet.write({"token": json.dumps({"username": "alice", "password": "pw-from-file"})})
    result = run_helper(["get"], f"protocol=https\nhost={HOST}\n\n", env, program=GIT_HELPER)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["username=alice", "password=pw-from-file"]
    (expiry,) = (line for line in lines if line.startswith("password_expiry_utc="))
    assert int(expiry.split("=")[1]) <= time.time() + RECHECK_SEC + 1  # git forgets it soon


def test_a_file_others_can_write_is_refused(
    env: dict[str, str], kubelet: Kubelet, run_helper: RunHelper
) -> None:
    target = next(kubelet.volume.glob("..2*")) / "token"
    target.chmod(0o666)
    stderr = failed(run_helper(["get"], HOST, env), 5, "config")
    assert f"{target} is writable by its group or others (mode 0666)" in stderr
    assert f"hint: chmod go-w {target}\n" in stderr
    assert TOKEN not in stderr


def test_a_volume_mounted_by_another_user_is_refused(
    env: dict[str, str], kubelet: Kubelet, run_helper: RunHelper
) -> None:
    os.chown(kubelet.volume.parent, OTHER_UID, -1)
    stderr = failed(run_helper(["get"], HOST, env), 5, "config")
    assert f"the directory {kubelet.volume.parent} is owned by uid {OTHER_UID}" in stderr


def test_a_missing_file_is_not_found(env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_SECRETS_FILE"] = "/run/secrets/not-mounted-here"
    stderr = failed(run_helper(["get"], HOST, env), 1, "not-found")
    assert "MLFLOW_SECRETS_FILE" in stderr


def test_a_directory_is_a_config_error(
    env: dict[str, str], kubelet: Kubelet, run_helper: RunHelper
) -> None:
    env["MLFLOW_SECRETS_FILE"] = str(kubelet.volume)
    stderr = failed(run_helper(["get"], HOST, env), 5, "config")
    assert f"the secret file {kubelet.volume} is a directory" in stderr


def _without_dac_override() -> None:
    """In the child, before exec: give up root's right to read any file (the bounding
    set caps what the exec'd helper may have), so permissions apply as for anyone."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unreadable_file_is_a_config_error(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "write-only"
    path.write_text(TOKEN)
    path.chmod(0o200)  # ours, safe, but not readable even by its owner
    env["MLFLOW_SECRETS_FILE"] = str(path)
    proc = subprocess.run(
        [HELPER, "get"],
        input=HOST.encode(),
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
        preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
    )
    stderr = failed(
        Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode()), 5, "config"
    )
    assert f"cannot read the secret file {path}: permission denied" in stderr


def test_a_config_file_route_takes_path_and_expands_the_home(
    env: dict[str, str], run_helper: RunHelper
) -> None:
    home = Path(env["HOME"])
    secrets = home / ".secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "mlflow").write_text("tok-from-route\n")
    (secrets / "mlflow").chmod(0o600)
    config = home / "config.toml"
    config.write_text(
        'allowed_hosts = ["mlflow.example.com"]\n\n'
        '[[routes]]\nhosts = ["mlflow.example.com"]\nprovider = "file"\n'
        'path = "~/.secrets/mlflow"\nttl_sec = 0\n'
    )
    for name in ("MLFLOW_SECRETS_AUTH_ENABLE", "MLFLOW_SECRETS_FILE"):
        del env[name]
    env["MLFLOW_SECRETS_CONFIG"] = str(config)
    result = run_helper(["get"], HOST, env)
    assert result.stdout == "Authorization: Bearer tok-from-route\n", result.stderr


# -- info and doctor -----------------------------------------------------------------


def test_info_shows_the_path_and_whether_it_is_safe(
    env: dict[str, str], kubelet: Kubelet, run_helper: RunHelper
) -> None:
    token = kubelet.volume / "token"
    result = run_helper(["info"], "", env)
    assert result.returncode == 0, result.stdout
    text = result.stdout
    assert "  file                 enabled: yes configured: yes SDK: none needed\n" in text
    assert f"     secret: {token}\n     state: present; owner and modes are safe\n" in text
    assert f"  MLFLOW_SECRETS_FILE: {token}\n" in text
    assert TOKEN not in text + result.stderr

    next(kubelet.volume.glob("..2*")).chmod(0o777)
    report = json.loads(run_helper(["info", "--json"], "", env).stdout)
    (row,) = [row for row in report["providers"] if row["name"] == "file"]
    assert (row["sdk_module"], row["sdk_installed"]) == (None, True)
    (route,) = report["routes"]
    assert route["secret"] == str(token)
    assert route["state"].startswith(f"refusing the secret file {token}: the directory ")
    assert report["locations"]["MLFLOW_SECRETS_FILE"] == str(token)


def test_doctor_reads_the_file_and_prints_no_value(
    env: dict[str, str], kubelet: Kubelet, run_helper: RunHelper
) -> None:
    token = kubelet.volume / "token"
    result = run_helper(["doctor"], "", env)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert "ok   route 1 (file): no SDK needed" in lines
    assert any(line.startswith(f"ok   route 1 (file): read {token} in ") for line in lines)
    assert "ok   route 1 (file): header Authorization: Bearer <redacted>" in lines
    assert TOKEN not in result.stdout + result.stderr

    target = next(kubelet.volume.glob("..2*")) / "token"
    target.chmod(0o620)
    result = run_helper(["doctor"], "", env)
    assert result.returncode == 5
    assert f"FAIL route 1 (file): read {token}: config: refusing the secret file" in result.stdout
    assert f"     hint: chmod go-w {target}\n" in result.stdout


# -- the MLflow plugin -----------------------------------------------------------------


@pytest.fixture
def plugin_memory() -> Iterator[None]:
    from mlflow.tracking.request_auth.registry import fetch_auth

    fetch_auth("mlflow-secrets-helper").forget()
    yield
    fetch_auth("mlflow-secrets-helper").forget()


@pytest.mark.mlflow_e2e
@pytest.mark.usefixtures("plugin_memory")
def test_the_plugin_follows_a_kubelet_rotation_without_a_failed_request(
    mlflow_bearer_server: MlflowServer,
    kubelet: Kubelet,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow import MlflowClient

    server = mlflow_bearer_server
    user = f"u{uuid.uuid4().hex[:10]}"
    server.create_user(user, f"{user}-password")
    first, second, third = (f"tok-{uuid.uuid4().hex}" for _ in range(3))
    server.add_token(first, user)
    kubelet.write({"token": first})
    log = tmp_path / "helper-calls.log"
    log.write_text("")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = {
        **{name: value for name, value in env.items() if name != "PATH"},
        "MLFLOW_SECRETS_ALLOWED_HOSTS": server.netloc,
        "MLFLOW_TRACKING_AUTH": "mlflow-secrets-helper",
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_SECRETS_HELPER_COMMAND": shlex.join([sys.executable, str(RECORDER)]),
        "SHIM_HELPER_LOG": str(log),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    def calls(action: str) -> int:
        return log.read_text().splitlines().count(action)

    def resends() -> int:
        return sum(RESENT in r.getMessage() for r in caplog.records)

    client = MlflowClient(tracking_uri=server.url)
    run_id = client.create_run(client.create_experiment(f"f-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "m", 0.0, step=0)
    caplog.set_level(logging.DEBUG, logger="mlflow_secrets_shim")

    # the token is rotated: the kubelet swaps the file, then the old token stops working
    kubelet.write({"token": second})
    server.set_tokens({second: user})
    client.log_metric(run_id, "m", 1.0, step=1)  # 401 -> erase -> get reads the file again
    assert (calls("erase"), resends()) == (1, 1)

    # a rotation announced ahead (both valid for a while) needs no 401 at all: the plugin
    # asks again once the re-check interval has passed, and the file is read again
    server.set_tokens({second: user, third: user})
    kubelet.write({"token": third})
    gets = calls("get")
    time.sleep(RECHECK_SEC + 0.5)
    client.log_metric(run_id, "m", 2.0, step=2)
    assert calls("get") == gets + 1
    server.set_tokens({third: user})
    client.log_metric(run_id, "m", 3.0, step=3)
    assert (calls("erase"), resends()) == (1, 1)
    assert [m.step for m in client.get_metric_history(run_id, "m")] == [0, 1, 2, 3]
