"""The servers the benchmarks talk to, all on 127.0.0.1, from :mod:`devservers`.

OpenBao (dev mode, plain HTTP), moto behind the counting fault proxy, one MLflow
tracking server with MLflow's basic-auth app, the Azure stand-ins (Key Vault
emulator, managed-identity endpoint, egress guard) and an OpenID Provider over TLS
(node's oidc-provider) whose OAuth client is stored in OpenBao beside the basic secret.
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
from devservers.oidc import OAuthClient, OidcProvider
from devservers.openbao import Bao

BENCH_USER = "bench"
BENCH_PASSWORD = "bench-password-" + secrets.token_hex(8)
VAULT_PATH = "secret/mlflow/bench"
#: an OAuth client (client_id, client_secret, issuer) that the helper exchanges for a token
VAULT_OAUTH_PATH = "secret/mlflow/bench-oauth"
#: seconds an access token lives: longer than any run, so none expires during one
TOKEN_LIFETIME = 3600


@dataclass
class Backends:
    bao: Bao
    vault_token: str
    moto_url: str
    aws_proxy: FaultProxy
    mlflow: MlflowServer
    azure: AzureCloud
    oidc: OidcProvider
    oauth_client: OAuthClient


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
        oidc = stack.enter_context(OidcProvider(_directory(directory, "oidc")))
        oauth_client = oidc.add_client(token_lifetime=TOKEN_LIFETIME)
        bao.write_kv2("mlflow/bench-oauth", oauth_client.secret_dict(oidc), namespace=None)
        readable = ["secret/data/mlflow/bench", "secret/data/mlflow/bench-oauth"]
        policy = bao.read_policy("bench-read", readable, namespace=None)
        vault_token = bao.create_token([policy], namespace=None, ttl="4h")

        aws = stack.enter_context(MotoServer())
        aws.client().create_secret(Name="mlflow/bench", SecretString=json.dumps(secret))

        mlflow = stack.enter_context(MlflowServer(_directory(directory, "mlflow")))
        mlflow.create_user(BENCH_USER, BENCH_PASSWORD)

        azure = stack.enter_context(AzureCloud(AzurePKI(_directory(directory, "azure-pki"))))
        azure.kv.set_secret("mlflow-bench", json.dumps(secret))

        yield Backends(bao, vault_token, aws.moto_url, aws.proxy, mlflow, azure, oidc, oauth_client)
