"""End to end: MLflow's own client, ``MLFLOW_TRACKING_AUTH=mlflow-secrets-helper``, the
real helper reading AWS Secrets Manager (moto), and real MLflow servers demanding auth.

The helper runs through ``shim_recording_helper.py`` (the real helper, exec'd after it
logs the action) so the tests can count ``get`` and ``erase`` calls. Re-sends are counted
from the shim's debug log. This module also runs under the oldest supported MLflow
client (``.ci/mlflow-compat.sh``).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mlflow_server import MlflowServer
from tests.support.moto_server import AwsBackend

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

pytestmark = pytest.mark.mlflow_e2e

RECORDER = Path(__file__).with_name("shim_recording_helper.py")
RESENT = "sending the request again"


class Shim:
    """The client side of one test: MLflow's environment plus the helper's call log."""

    def __init__(self, server: MlflowServer, aws: AwsBackend, log: Path, secret: str) -> None:
        self.server = server
        self.aws = aws
        self.log = log
        self.secret = secret
        self.client = MlflowClient(tracking_uri=server.url)

    def calls(self, action: str) -> int:
        return self.log.read_text().splitlines().count(action)

    def store(self, value: dict[str, str]) -> None:
        self.aws.rotate(self.secret, json.dumps(value))


def _forget() -> None:
    from mlflow.tracking.request_auth.registry import fetch_auth

    fetch_auth("mlflow-secrets-helper").forget()


def _shim(
    server: MlflowServer,
    aws: AwsBackend,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    helper_env: dict[str, str],
    first_secret: dict[str, str],
    **extra: str,
) -> Shim:
    secret = f"mlflow/{uuid.uuid4().hex[:8]}"
    aws.create(secret, json.dumps(first_secret))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in helper_env.items():
        if name != "PATH":
            monkeypatch.setenv(name, value)
    aws.setenv(monkeypatch, MLFLOW_AWS_SECRET_NAME=secret)
    log = tmp_path / "helper-calls.log"
    log.write_text("")
    settings = {
        "MLFLOW_TRACKING_AUTH": "mlflow-secrets-helper",
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": server.netloc,
        "MLFLOW_SECRETS_HELPER_COMMAND": shlex.join([sys.executable, str(RECORDER)]),
        "SHIM_HELPER_LOG": str(log),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        **extra,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return Shim(server, aws, log, secret)


@pytest.fixture(autouse=True)
def _fresh_shim_memory() -> Iterator[None]:
    _forget()
    yield
    _forget()


def _user() -> tuple[str, str]:
    name = f"u{uuid.uuid4().hex[:10]}"
    return name, f"{name}-password-1"


@pytest.fixture
def basic(
    mlflow_basic_server: MlflowServer,
    aws: AwsBackend,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    helper_env: dict[str, str],
) -> tuple[Shim, str]:
    user, password = _user()
    mlflow_basic_server.create_user(user, password)
    shim = _shim(
        mlflow_basic_server,
        aws,
        monkeypatch,
        tmp_path,
        helper_env,
        {"username": user, "password": password},
    )
    return shim, user


def _resends(caplog: pytest.LogCaptureFixture) -> int:
    return sum(RESENT in r.getMessage() for r in caplog.records if r.name == "mlflow_secrets_shim")


def test_tracking_and_artifacts_through_the_shim(basic: tuple[Shim, str], tmp_path: Path) -> None:
    shim, _ = basic
    client = shim.client
    experiment = client.create_experiment(f"e2e-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    client.log_param(run_id, "alpha", "0.5")
    for step in range(5):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 4096)
    client.log_artifact(run_id, str(payload))
    (tmp_path / "dl").mkdir()  # MLflow 2.20 wants the destination to exist
    back = Path(client.download_artifacts(run_id, "payload.bin", str(tmp_path / "dl")))
    assert back.read_bytes() == payload.read_bytes()
    assert client.get_run(run_id).data.params == {"alpha": "0.5"}
    assert len(client.get_metric_history(run_id, "loss")) == 5
    assert shim.calls("get") == 1  # one helper process for all of it
    assert shim.calls("erase") == 0


def test_password_rotation_is_transparent(
    basic: tuple[Shim, str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    shim, user = basic
    client = shim.client
    run_id = client.create_run(client.create_experiment(f"rot-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "m", 0.0, step=0)

    caplog.set_level(logging.DEBUG, logger="mlflow_secrets_shim")
    new = f"{user}-password-2"
    shim.store({"username": user, "password": new})  # the backend first, then the server
    shim.server.set_password(user, new)
    client.log_metric(run_id, "m", 1.0, step=1)
    assert shim.calls("erase") == 1
    assert _resends(caplog) == 1
    client.log_metric(run_id, "m", 2.0, step=2)
    assert [m.value for m in client.get_metric_history(run_id, "m")] == [0.0, 1.0, 2.0]
    assert shim.calls("erase") == 1
    assert _resends(caplog) == 1

    # The first request after the next rotation is an artifact PUT with a file body.
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
    newer = f"{user}-password-3"
    shim.store({"username": user, "password": newer})
    shim.server.set_password(user, newer)
    payload = tmp_path / "model.bin"
    payload.write_bytes(b"\x00weights" * 100_000)
    repo.log_artifact(str(payload))
    assert shim.calls("erase") == 2
    assert _resends(caplog) == 2
    (tmp_path / "dl").mkdir()
    back = Path(repo.download_artifacts("model.bin", str(tmp_path / "dl")))
    assert back.read_bytes() == payload.read_bytes()


def test_password_changed_on_the_server_before_the_store(
    basic: tuple[Shim, str], caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow_secrets_shim.memo import RECHECK_401_AFTER

    shim, user = basic
    client = shim.client
    run_id = client.create_run(client.create_experiment(f"rev-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "m", 0.0, step=0)
    caplog.set_level(logging.DEBUG, logger="mlflow_secrets_shim")

    new = f"{user}-password-2"
    shim.server.set_password(user, new)  # the server first: the store still has the old one
    started = time.monotonic()
    for _ in range(50):
        with pytest.raises(MlflowException) as caught:
            client.log_metric(run_id, "m", 1.0, step=1)
        assert caught.value.error_code == "UNAUTHENTICATED"
    checks = shim.calls("erase")
    assert 1 <= checks <= 1 + (time.monotonic() - started) / RECHECK_401_AFTER
    shim.store({"username": user, "password": new})
    time.sleep(RECHECK_401_AFTER)
    client.log_metric(run_id, "m", 2.0, step=2)  # the first request after the period recovers
    assert shim.calls("erase") == checks + 1
    assert _resends(caplog) == 1
    client.log_metric(run_id, "m", 3.0, step=3)
    assert [m.step for m in client.get_metric_history(run_id, "m")] == [0, 2, 3]
    assert shim.calls("erase") == checks + 1


def test_eight_threads_logging_across_a_rotation_lose_nothing(
    basic: tuple[Shim, str], caplog: pytest.LogCaptureFixture
) -> None:
    shim, user = basic
    client = shim.client
    run_id = client.create_run(client.create_experiment(f"mt-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "warm", 0.0)
    caplog.set_level(logging.DEBUG, logger="mlflow_secrets_shim")
    before, after = 8, 12
    rotated = threading.Barrier(9)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for step in range(before):
                client.log_metric(run_id, f"t{index}", float(step), step=step)
            rotated.wait(timeout=120)  # all threads hold the old credential now
            rotated.wait(timeout=120)
            for step in range(before, before + after):
                client.log_metric(run_id, f"t{index}", float(step), step=step)
        except BaseException as exc:
            errors.append(exc)
            rotated.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    rotated.wait(timeout=120)
    new = f"{user}-password-2"
    shim.store({"username": user, "password": new})
    shim.server.set_password(user, new)
    rotated.wait(timeout=120)
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    for index in range(8):
        history = client.get_metric_history(run_id, f"t{index}")
        assert sorted(m.step for m in history) == list(range(before + after))
    assert shim.calls("erase") == 1
    assert 1 <= _resends(caplog) <= 8


def test_forbidden_requests_cause_no_erase_storm(basic: tuple[Shim, str]) -> None:
    shim, _ = basic
    for _ in range(4):  # default_permission READ: writing to the Default experiment is 403
        with pytest.raises(MlflowException) as caught:
            shim.client.create_run("0")
        assert caught.value.error_code == "PERMISSION_DENIED"
    assert shim.calls("erase") <= 1
    assert shim.calls("get") <= 2


def test_a_host_outside_the_allowlist_gets_no_header(
    basic: tuple[Shim, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shim, _ = basic
    monkeypatch.setenv("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.example.com")
    with pytest.raises(MlflowException) as caught:
        shim.client.search_experiments()
    assert caught.value.error_code == "UNAUTHENTICATED"
    assert any("without authentication" in r.getMessage() for r in caplog.records)


def test_a_helper_failure_stops_the_request(
    basic: tuple[Shim, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shim, _ = basic
    monkeypatch.setenv("MLFLOW_AWS_SECRET_NAME", "mlflow/does-not-exist")
    with pytest.raises(MlflowException, match="mlflow-secrets-helper: not-found"):
        shim.client.search_experiments()


@pytest.mark.parametrize("header", ["Authorization", "X-MLflow-Auth"])
def test_bearer_token_rotation_through_the_gate(
    header: str,
    mlflow_bearer_server: MlflowServer,
    aws: AwsBackend,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    helper_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password = _user()
    server = mlflow_bearer_server
    server.create_user(user, password)
    token = f"tok-{uuid.uuid4().hex}"
    server.add_token(token, user)
    shim = _shim(
        server,
        aws,
        monkeypatch,
        tmp_path,
        helper_env,
        {"token": token},
        MLFLOW_AUTH_HEADER_NAME=header,
    )
    client = shim.client
    run_id = client.create_run(client.create_experiment(f"b-{uuid.uuid4().hex[:8]}")).info.run_id
    client.log_metric(run_id, "m", 0.0, step=0)

    caplog.set_level(logging.DEBUG, logger="mlflow_secrets_shim")
    new = f"tok-{uuid.uuid4().hex}"
    shim.store({"token": new})
    server.set_tokens({new: user})  # the old token stops working
    client.log_metric(run_id, "m", 1.0, step=1)
    assert [m.step for m in client.get_metric_history(run_id, "m")] == [0, 1]
    assert shim.calls("erase") == 1
    assert _resends(caplog) == 1
