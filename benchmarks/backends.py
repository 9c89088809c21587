"""The servers the benchmarks talk to, all on 127.0.0.1, from :mod:`devservers`.

OpenBao (dev mode, plain HTTP), moto behind the counting fault proxy, one MLflow
tracking server with MLflow's basic-auth app, and the Azure stand-ins (Key Vault
emulator, managed-identity endpoint, egress guard).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devservers.azure import AzureCloud, AzurePKI
from devservers.faultproxy import FaultProxy
from devservers.mlflow import MlflowServer
from devservers.moto import MotoServer
from devservers.openbao import Bao

BENCH_USER = "bench"
BENCH_PASSWORD = "bench-password-" + secrets.token_hex(8)
VAULT_PATH = "secret/mlflow/bench"


@dataclass
class Backends:
    bao: Bao
    vault_token: str
    moto_url: str
    aws_proxy: FaultProxy
    mlflow: MlflowServer
    azure: AzureCloud


def _directory(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    return path


@contextlib.contextmanager
def started(directory: Path) -> Iterator[Backends]:
    """Every backend, seeded with the same basic credential for the MLflow server."""
    secret = {"username": BENCH_USER, "password": BENCH_PASSWORD}
    with contextlib.ExitStack() as stack:
        bao = stack.enter_context(Bao(_directory(directory, "bao")))
        bao.write_kv2("mlflow/bench", secret, namespace=None)
        policy = bao.read_policy("bench-read", ["secret/data/mlflow/bench"], namespace=None)
        vault_token = bao.create_token([policy], namespace=None, ttl="4h")

        aws = stack.enter_context(MotoServer())
        aws.client().create_secret(Name="mlflow/bench", SecretString=json.dumps(secret))

        mlflow = stack.enter_context(MlflowServer(_directory(directory, "mlflow")))
        mlflow.create_user(BENCH_USER, BENCH_PASSWORD)

        azure = stack.enter_context(AzureCloud(AzurePKI(_directory(directory, "azure-pki"))))
        azure.kv.set_secret("mlflow-bench", json.dumps(secret))

        yield Backends(bao, vault_token, aws.moto_url, aws.proxy, mlflow, azure)
