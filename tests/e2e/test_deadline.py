"""``--timeout`` is a total deadline, answers are size-limited while read, Retry-After is honoured.

The installed executable runs against OpenBao and moto with a :class:`FaultProxy` in
between that drips answers one byte at a time (a per-read socket timeout never fires),
serves a 100 MiB body (with and without ``Content-Length``), or answers 429 with a
``Retry-After``. The rules are in the man page (OPTIONS ``--timeout``; EXIT STATUS; the
Vault and AWS error sections).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import pytest

from devservers.faultproxy import drip, oversized
from tests.conftest import HELPER
from tests.support.faultproxy import (
    AWS_GET_SECRET_VALUE,
    Action,
    FaultProxy,
    FaultProxyFactory,
    respond,
)
from tests.support.keyvault import AzureCloud
from tests.support.moto_server import AwsBackend
from tests.support.openbao import VaultNamespace

HOST = "mlflow.example.com"
TOKEN = "tok-deadline-8c1d2a"
VAULT_READ = r"^/v1/secret/data/"
#: what the man page promises: a read ends at most this long after the deadline
PAST_DEADLINE = 1.0
#: interpreter start-up before the deadline starts counting, on a busy 2-core machine
STARTUP = 3.0
HUGE = 100 << 20


@dataclass
class Run:
    returncode: int
    document: dict[str, Any]
    stderr: str
    elapsed: float
    #: the helper's own peak resident set, in KiB
    max_rss_kib: int


def start(env: dict[str, str], timeout: float) -> tuple[subprocess.Popen[bytes], Any, Any, float]:
    # closed by finish(), which reads them after the helper has ended
    out = tempfile.TemporaryFile()  # noqa: SIM115
    err = tempfile.TemporaryFile()  # noqa: SIM115
    began = time.monotonic()
    proc = subprocess.Popen(
        [HELPER, "--format", "json", "--timeout", str(timeout), "get"],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=err,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(f"{HOST}\n".encode())
    proc.stdin.close()
    return proc, out, err, began


def finish(started: tuple[subprocess.Popen[bytes], Any, Any, float], limit: float) -> Run:
    """Wait for the helper (killing it past ``limit`` seconds) and read its own rusage."""
    proc, out, err, began = started
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - began > limit:
            proc.kill()
            os.wait4(proc.pid, 0)
            pytest.fail(f"the helper was still running {limit:.0f} s after it started")
        time.sleep(0.02)
    elapsed = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read().decode(), err.read().decode()
    out.close()
    err.close()
    assert stdout.count("\n") == 1, (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    return Run(proc.returncode, json.loads(stdout), stderr, elapsed, usage.ru_maxrss)


def get(env: dict[str, str], timeout: float = 3.0) -> Run:
    return finish(start(env, timeout), limit=timeout + 60)


def assert_in_time(run: Run, timeout: float) -> None:
    assert run.elapsed < timeout + PAST_DEADLINE + STARTUP, (
        f"took {run.elapsed:.1f} s with --timeout {timeout}"
    )


def assert_unavailable(run: Run, *words: str) -> None:
    assert run.returncode == 4, run
    err = run.document["err"]
    assert err["kind"] == "backend-unavailable" and err["retryable"] is True, run
    first = run.stderr.splitlines()[0]
    assert first.startswith("mlflow-secrets-helper: error: backend-unavailable: "), run.stderr
    for word in words:
        assert word in first, run.stderr


def assert_ok(run: Run, source: str) -> None:
    assert run.returncode == 0, run
    ok = run.document["ok"]
    assert ok["header"] == {"name": "Authorization", "value": f"Bearer {TOKEN}"}
    assert ok["source"] == source, run


def wait_for(count: Callable[[], int], at_least: int, seconds: float = 20.0) -> None:
    until = time.monotonic() + seconds
    while count() < at_least:
        assert time.monotonic() < until, "the helper never reached the backend"
        time.sleep(0.02)


# --- fixtures ---------------------------------------------------------------------------


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
        "MLFLOW_VAULT_MOUNT": "secret",
        "MLFLOW_VAULT_KV_VERSION": "2",
    }


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


@dataclass
class Backend:
    """One provider behind its fault proxy: where faults go and how reads are counted."""

    name: str
    env: dict[str, str]
    ttl_variable: str
    inject: Callable[[Action, int | None], None]
    reads: Callable[[], int]
    read_times: Callable[[], list[float]]


def azure_backend(request: pytest.FixtureRequest) -> Backend:
    """Key Vault behind a TLS fault proxy: the egress guard routes the vault's name to it."""
    cloud: AzureCloud = request.getfixturevalue("azure_cloud")
    factory: FaultProxyFactory = request.getfixturevalue("fault_proxy")
    helper_env: dict[str, str] = request.getfixturevalue("helper_env")
    cloud.kv.set_secret("mlflow-token", json.dumps({"token": TOKEN}))
    proxy = factory(
        f"https://127.0.0.1:{cloud.kv.port}",
        upstream_ssl_context=ssl.create_default_context(cafile=str(cloud.pki.ca_path)),
        listen_ssl_context=cloud.pki.server_context(),
    )
    cloud.guard.routes[f"{cloud.kv.name}.vault.azure.net:443"] = proxy.port
    env = {
        **helper_env,
        **cloud.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
        "MLFLOW_AZURE_KEY_VAULT_URL": cloud.vault_url,
        "MLFLOW_AZURE_SECRET_NAME": "mlflow-token",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }
    read = r"^/secrets/mlflow-token"

    def inject(action: Action, times: int | None) -> None:
        proxy.add(action, method="GET", path=read, times=times)

    return Backend(
        "azure",
        env,
        "MLFLOW_AZURE_TTL_SEC",
        inject,
        lambda: proxy.count(method="GET", path=read),
        lambda: [r.at for r in proxy.requests if r.matches("GET", read)],
    )


@pytest.fixture(params=["vault", "aws", "azure"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "azure":
        return azure_backend(request)
    if request.param == "vault":
        proxy: FaultProxy = request.getfixturevalue("vault_proxy")
        env = request.getfixturevalue("vault_env")

        def vault_inject(action: Action, times: int | None) -> None:
            proxy.add(action, method="GET", path=VAULT_READ, times=times)

        return Backend(
            "vault",
            env,
            "MLFLOW_VAULT_TTL_SEC",
            vault_inject,
            lambda: proxy.count(method="GET", path=VAULT_READ),
            lambda: [r.at for r in proxy.requests if r.matches("GET", VAULT_READ)],
        )
    aws: AwsBackend = request.getfixturevalue("aws")
    env = request.getfixturevalue("aws_env")

    def aws_inject(action: Action, times: int | None) -> None:
        aws.proxy.add(action, header=AWS_GET_SECRET_VALUE, times=times)

    return Backend(
        "aws",
        env,
        "MLFLOW_AWS_TTL_SEC",
        aws_inject,
        aws.get_secret_value_count,
        lambda: [r.at for r in aws.proxy.requests if r.matches(header=AWS_GET_SECRET_VALUE)],
    )


# --- point 3: --timeout is a total deadline ----------------------------------------------


def test_a_dripping_backend_is_abandoned_at_the_deadline(backend: Backend) -> None:
    backend.inject(drip(0.2), None)  # a Vault or AWS answer of ~300 bytes takes a minute
    run = get({**backend.env, "MLFLOW_SECRETS_STALE_GRACE_SEC": "0"}, timeout=3.0)
    assert_unavailable(run)
    assert_in_time(run, 3.0)


def test_the_entry_lock_is_released_for_the_next_process(backend: Backend) -> None:
    """The first ``get`` is stuck on a dripping answer while holding the entry's lock; a
    second ``get`` for the same entry waits for the lock, then reads the (now healthy)
    backend itself, within its own deadline."""
    backend.inject(drip(0.2), 1)
    first = start(backend.env, 3.0)
    wait_for(backend.reads, 1)  # the first holds the lock and is reading
    second = start(backend.env, 8.0)
    run_first = finish(first, limit=60)
    run_second = finish(second, limit=60)
    assert_unavailable(run_first)
    assert_in_time(run_first, 3.0)
    assert_ok(run_second, "backend")
    # one read each (Key Vault's second client also sends its bare challenge request first)
    assert backend.reads() == (3 if backend.name == "azure" else 2)


def test_a_dripping_backend_still_lets_a_stale_entry_serve(backend: Backend) -> None:
    env = {**backend.env, backend.ttl_variable: "1"}
    assert_ok(get(env), "backend")
    time.sleep(1.3)
    backend.inject(drip(0.2), None)
    run = get(env, timeout=3.0)
    assert_ok(run, "stale")
    assert_in_time(run, 3.0)


# --- point 4: size limits while reading --------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_answer_is_refused_while_read(backend: Backend, chunked: bool) -> None:
    # the helper's ordinary peak (the cache key's derivation dominates it), in its own cache
    ordinary = get({**backend.env, "MLFLOW_SECRETS_CACHE_DIR": backend.env["HOME"] + "/other"})
    assert_ok(ordinary, "backend")
    before = backend.reads()
    backend.inject(oversized(HUGE, chunked=chunked), None)
    run = get({**backend.env, "MLFLOW_SECRETS_STALE_GRACE_SEC": "0"}, timeout=10.0)
    assert_unavailable(run, "larger than 1 MiB")
    assert backend.reads() == before + 1  # not retried: it would send the same again
    # the helper never held the answer: its peak stays far below ordinary + 100 MiB
    grew = (run.max_rss_kib - ordinary.max_rss_kib) >> 10
    assert grew < 24, f"peak RSS {run.max_rss_kib >> 10} MiB, {grew} MiB over the ordinary"


# --- point 6: Retry-After ------------------------------------------------------------------


def throttled(backend: Backend, retry_after: str) -> Action:
    if backend.name == "azure":
        return respond(
            429,
            json.dumps({"error": {"code": "Throttled", "message": "slow down"}}),
            {"Content-Type": "application/json; charset=utf-8", "Retry-After": retry_after},
        )
    if backend.name == "vault":
        return respond(
            429,
            json.dumps({"errors": ["request path rate limit quota exceeded"]}),
            {"Content-Type": "application/json", "Retry-After": retry_after},
        )
    return respond(
        429,
        json.dumps({"__type": "TooManyRequestsException", "message": "slow down"}),
        {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": "TooManyRequestsException",
            "Retry-After": retry_after,
        },
    )


@pytest.mark.parametrize("form", ["delta-seconds", "http-date"])
def test_retry_after_is_waited_before_the_one_retry(backend: Backend, form: str) -> None:
    # an HTTP-date has whole seconds, and the helper reads it after starting up: four seconds
    # ahead is still more than one second ahead when the 429 arrives
    value = "1" if form == "delta-seconds" else formatdate(time.time() + 4, usegmt=True)
    backend.inject(throttled(backend, value), 1)
    run = get(backend.env, timeout=8.0)
    assert_ok(run, "backend")
    # (Key Vault's client first sends a bare request for the sign-in challenge, then the read)
    first, second = backend.read_times()[:2]
    assert second - first >= 1.0, f"retried after {second - first:.2f} s"


def test_retry_after_past_the_deadline_ends_at_once(backend: Backend) -> None:
    backend.inject(throttled(backend, "3600"), None)
    run = get({**backend.env, "MLFLOW_SECRETS_STALE_GRACE_SEC": "0"}, timeout=8.0)
    assert_unavailable(run, "Retry-After", "3600 s")
    assert backend.reads() == 1
    assert run.elapsed < 8.0  # it did not wait out the deadline either


# --- point 4, token endpoints ----------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_azure_token_answer_is_refused_while_read(
    azure_cloud: AzureCloud,
    fault_proxy: FaultProxyFactory,
    helper_env: dict[str, str],
    chunked: bool,
) -> None:
    """The managed-identity endpoint answers 100 MiB: the sign-in stops at the limit."""
    azure_cloud.kv.set_secret("mlflow-token", json.dumps({"token": TOKEN}))
    proxy = fault_proxy(azure_cloud.mi.url)
    proxy.add(oversized(HUGE, chunked=chunked), path=r"^/msi/token", times=None)
    env = {
        **helper_env,
        **azure_cloud.env(),
        "IDENTITY_ENDPOINT": f"{proxy.url}/msi/token",
        "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
        "MLFLOW_AZURE_KEY_VAULT_URL": azure_cloud.vault_url,
        "MLFLOW_AZURE_SECRET_NAME": "mlflow-token",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }
    # the helper's ordinary peak, signing in at the real endpoint, in a cache of its own
    ordinary = get(
        {
            **env,
            "IDENTITY_ENDPOINT": azure_cloud.mi.env()["IDENTITY_ENDPOINT"],
            "MLFLOW_SECRETS_CACHE_DIR": helper_env["HOME"] + "/other",
        }
    )
    assert_ok(ordinary, "backend")
    run = get(env, timeout=10.0)
    assert_unavailable(run, "ManagedIdentityCredential", "larger than 1 MiB")
    assert proxy.count(path=r"^/msi/token") >= 1
    grew = (run.max_rss_kib - ordinary.max_rss_kib) >> 10
    assert grew < 24, f"peak RSS {run.max_rss_kib >> 10} MiB, {grew} MiB over the ordinary"


def test_an_oversized_vault_login_answer_is_refused_while_read(
    vault_ns: VaultNamespace,
    vault_proxy: FaultProxy,
    vault_env: dict[str, str],
) -> None:
    env = {**vault_env, "MLFLOW_VAULT_AUTH_METHOD": "approle", "VAULT_ROLE_ID": "role-1"}
    env["VAULT_SECRET_ID"] = "secret-id-1"
    del env["VAULT_TOKEN"]
    vault_proxy.add(oversized(HUGE, chunked=True), method="POST", path=r"/login$", times=None)
    run = get({**env, "MLFLOW_SECRETS_STALE_GRACE_SEC": "0"}, timeout=10.0)
    assert_unavailable(run, "larger than 1 MiB")
    assert vault_proxy.count(method="POST", path=r"/login$") == 1
