"""Backend faults through the loopback fault-injection proxy, for AWS and Vault.

The installed executable runs against moto and OpenBao with a :class:`FaultProxy` in
between that answers 5xx, 429 with ``Retry-After``, throttling errors, slow answers,
dropped connections and truncated bodies. Every case must:

* end within the configured ``--timeout`` (plus generous slack for interpreter start-up
  on a loaded machine; the injected delays are far longer, so waiting them out fails);
* exit with the documented status (0 after a transient fault that a retry cures,
  4 when the backend stays unavailable and no stale value may be used, 3 when it
  denies);
* serve a recently expired entry (``source: "stale"``, one warning line) only for
  transient failures, never after a denial, and never with the grace set to 0;
* print no traceback, and nothing on stdout but the one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import HELPER
from tests.support.faultproxy import (
    AWS_GET_SECRET_VALUE,
    Action,
    FaultProxy,
    FaultProxyFactory,
    aws_error,
    delay,
    drop,
    respond,
    truncate,
    vault_error,
)
from tests.support.moto_server import AwsBackend
from tests.support.openbao import VaultNamespace

HOST = "mlflow.example.com"
TOKEN = "tok-reliability-2f6c1e"
TIMEOUT = 6.0
#: interpreter start-up, SDK imports and exit on a busy 2-core machine
SLACK = 15.0
#: far beyond TIMEOUT + SLACK: a helper that waits this out fails the bound
LONG = 60.0
VAULT_READ = r"^/v1/secret/data/"


def aws_429(retry_after: str) -> Action:
    body = json.dumps({"__type": "TooManyRequestsException", "message": "slow down"})
    return respond(
        429,
        body,
        {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": "TooManyRequestsException",
            "Retry-After": retry_after,
        },
    )


def vault_429(retry_after: str) -> Action:
    return respond(
        429,
        json.dumps({"errors": ["request path rate limit quota exceeded"]}),
        {"Content-Type": "application/json", "Retry-After": retry_after},
    )


@dataclass(frozen=True)
class Fault:
    """An injected fault: the action, how many requests it hits (None: all of them)."""

    name: str
    action: Action
    times: int | None


# (fault, expected exit status, stale grace may apply)
AWS_TRANSIENT_THEN_OK = [
    Fault("500 then success", aws_error("InternalServiceError", 500), 1),
    Fault("503 twice then success", aws_error("ServiceUnavailable", 503), 2),
    Fault("429 with Retry-After then success", aws_429("1"), 1),
    Fault("throttling then success", aws_error("ThrottlingException"), 2),
    Fault("dropped connection then success", drop(), 1),
    Fault("connection reset then success", drop(reset=True), 1),
    Fault("truncated body then success", truncate(), 1),
]
AWS_PERSISTENT = [
    Fault("500 always", aws_error("InternalServiceError", 500), None),
    Fault("429 with a one-hour Retry-After", aws_429("3600"), None),
    Fault("throttling always", aws_error("ThrottlingException"), None),
    Fault("read timeout", delay(LONG), None),
    Fault("dropped connections", drop(), None),
    Fault("truncated bodies", truncate(), None),
]
VAULT_TRANSIENT_THEN_OK = [
    Fault("500 then success", vault_error(500, "internal error"), 1),
    Fault("502 twice then success", vault_error(502, "bad gateway"), 2),
    Fault("429 with Retry-After then success", vault_429("1"), 1),
    Fault("dropped connection then success", drop(), 1),
    Fault("connection reset then success", drop(reset=True), 1),
]
VAULT_PERSISTENT = [
    Fault("500 always", vault_error(500, "internal error"), None),
    Fault("sealed", vault_error(503, "Vault is sealed"), None),
    Fault("429 with a one-hour Retry-After", vault_429("3600"), None),
    Fault("read timeout", delay(LONG), None),
    Fault("dropped connections", drop(), None),
    Fault("truncated bodies", truncate(), None),
]


@dataclass
class Outcome:
    returncode: int
    document: dict[str, Any]
    stderr: str
    elapsed: float


def get(env: dict[str, str], *, timeout: float = TIMEOUT) -> Outcome:
    started = time.monotonic()
    proc = subprocess.run(
        [HELPER, "--format", "json", "--timeout", str(timeout), "get"],
        input=f"{HOST}\n".encode(),
        env=env,
        capture_output=True,
        timeout=timeout + SLACK + 30,  # a hard stop for the test itself, beyond the bound
        check=False,
    )
    elapsed = time.monotonic() - started
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert stdout.count("\n") == 1 and stdout.endswith("\n"), (stdout, stderr)
    document = json.loads(stdout)
    assert document["v"] == 1
    assert "Traceback" not in stderr, stderr
    assert elapsed <= timeout + SLACK, f"took {elapsed:.1f} s with --timeout {timeout}"
    return Outcome(proc.returncode, document, stderr, elapsed)


def assert_ok(outcome: Outcome, source: str) -> None:
    assert outcome.returncode == 0, outcome
    ok = outcome.document["ok"]
    assert ok["header"] == {"name": "Authorization", "value": f"Bearer {TOKEN}"}
    assert ok["source"] == source, outcome


def assert_failed(outcome: Outcome, exit_code: int, kind: str) -> None:
    assert outcome.returncode == exit_code, outcome
    err = outcome.document["err"]
    assert err["kind"] == kind, outcome
    assert err["retryable"] is (kind == "backend-unavailable")
    lines = outcome.stderr.splitlines()
    assert lines[0].startswith(f"mlflow-secrets-helper: error: {kind}: "), outcome.stderr
    for line in lines[1:]:
        assert line.startswith(("hint: ", "mlflow-secrets-helper: warning: ")), outcome.stderr


def assert_stale(outcome: Outcome) -> None:
    assert_ok(outcome, "stale")
    warnings = [
        line
        for line in outcome.stderr.splitlines()
        if line.startswith("mlflow-secrets-helper: warning: ")
    ]
    assert len(warnings) >= 1 and "stale" in warnings[0], outcome.stderr
    assert all(
        line.startswith("mlflow-secrets-helper: warning: ") for line in outcome.stderr.splitlines()
    )


def expire_soon(env: dict[str, str], ttl_variable: str) -> None:
    """Cache a credential that expires in a second, and wait until it has."""
    env[ttl_variable] = "1"
    assert_ok(get(env), "backend")
    time.sleep(1.3)


# --- AWS Secrets Manager ----------------------------------------------------------------


@pytest.fixture
def aws_env(aws: AwsBackend, helper_env: dict[str, str]) -> dict[str, str]:
    aws.create("mlflow/prod", json.dumps({"token": TOKEN}))
    return {
        **helper_env,
        **aws.env(),
        "AWS_MAX_ATTEMPTS": "3",
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": "mlflow/prod",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }


def _inject_aws(aws: AwsBackend, fault: Fault) -> Callable[[], int]:
    """Add the fault; return a counter of the GetSecretValue attempts made from now on."""
    before = aws.get_secret_value_count()
    aws.proxy.add(fault.action, header=AWS_GET_SECRET_VALUE, times=fault.times)
    return lambda: aws.get_secret_value_count() - before


@pytest.mark.parametrize("fault", AWS_TRANSIENT_THEN_OK, ids=lambda f: f.name)
def test_aws_transient_fault_is_retried(
    aws: AwsBackend, aws_env: dict[str, str], fault: Fault
) -> None:
    attempts = _inject_aws(aws, fault)
    assert_ok(get(aws_env), "backend")
    assert attempts() == (fault.times or 0) + 1


@pytest.mark.parametrize("fault", AWS_PERSISTENT, ids=lambda f: f.name)
def test_aws_persistent_fault(aws: AwsBackend, aws_env: dict[str, str], fault: Fault) -> None:
    """Exit 4 in time without a usable stale value; the stale value with one."""
    expire_soon(aws_env, "MLFLOW_AWS_TTL_SEC")
    attempts = _inject_aws(aws, fault)
    assert_failed(get({**aws_env, "MLFLOW_SECRETS_STALE_GRACE_SEC": "0"}), 4, "backend-unavailable")
    assert 1 <= attempts() <= 3
    assert_stale(get(aws_env))


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ExpiredTokenException", "UnrecognizedClientException"]
)
def test_aws_denial_is_never_served_stale(
    aws: AwsBackend, aws_env: dict[str, str], code: str
) -> None:
    expire_soon(aws_env, "MLFLOW_AWS_TTL_SEC")
    attempts = _inject_aws(aws, Fault(code, aws_error(code), None))
    assert_failed(get(aws_env), 3, "backend-denied")
    assert attempts() == 1  # a denial is not retried


# --- Vault (OpenBao) ---------------------------------------------------------------------


@pytest.fixture
def vault_proxy(vault_ns: VaultNamespace, fault_proxy: FaultProxyFactory) -> FaultProxy:
    return fault_proxy(vault_ns.bao.http_url)


@pytest.fixture
def vault_env(
    vault_ns: VaultNamespace, vault_proxy: FaultProxy, helper_env: dict[str, str]
) -> dict[str, str]:
    vault_ns.write("mlflow/prod", {"token": TOKEN})
    return {
        **helper_env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
        "VAULT_ADDR": vault_proxy.url,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": vault_ns.reader_token("secret/data/mlflow/prod"),
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/prod",
    }


def _inject_vault(proxy: FaultProxy, fault: Fault) -> Callable[[], int]:
    """Add the fault; return a counter of the secret reads made from now on."""
    before = proxy.count(method="GET", path=VAULT_READ)
    proxy.add(fault.action, method="GET", path=VAULT_READ, times=fault.times)
    return lambda: proxy.count(method="GET", path=VAULT_READ) - before


@pytest.mark.parametrize("fault", VAULT_TRANSIENT_THEN_OK, ids=lambda f: f.name)
def test_vault_transient_fault_is_retried(
    vault_proxy: FaultProxy, vault_env: dict[str, str], fault: Fault
) -> None:
    attempts = _inject_vault(vault_proxy, fault)
    assert_ok(get(vault_env), "backend")
    assert attempts() == (fault.times or 0) + 1


@pytest.mark.parametrize("fault", VAULT_PERSISTENT, ids=lambda f: f.name)
def test_vault_persistent_fault(
    vault_proxy: FaultProxy, vault_env: dict[str, str], fault: Fault
) -> None:
    """Exit 4 in time without a usable stale value; the stale value with one."""
    expire_soon(vault_env, "MLFLOW_VAULT_TTL_SEC")
    attempts = _inject_vault(vault_proxy, fault)
    stale_off = {**vault_env, "MLFLOW_SECRETS_STALE_GRACE_SEC": "0"}
    assert_failed(get(stale_off), 4, "backend-unavailable")
    assert 1 <= attempts() <= 3
    assert_stale(get(vault_env))


@pytest.mark.parametrize(
    "fault",
    [
        Fault("permission denied", vault_error(403, "permission denied"), None),
        Fault("ACL denial", vault_error(403, "1 error occurred:\n\t* permission denied\n\n"), None),
    ],
    ids=lambda f: f.name,
)
def test_vault_denial_is_never_served_stale(
    vault_proxy: FaultProxy, vault_env: dict[str, str], fault: Fault
) -> None:
    expire_soon(vault_env, "MLFLOW_VAULT_TTL_SEC")
    attempts = _inject_vault(vault_proxy, fault)
    assert_failed(get(vault_env), 3, "backend-denied")
    assert attempts() == 1


def test_vault_login_timeout_is_bounded(
    vault_ns: VaultNamespace, vault_proxy: FaultProxy, vault_env: dict[str, str]
) -> None:
    """A hang before the read (the mount discovery) is bounded by the same deadline."""
    vault_proxy.add(delay(LONG), path=r"^/v1/sys/internal/ui/mounts/", times=None)
    assert_failed(get(vault_env), 4, "backend-unavailable")
