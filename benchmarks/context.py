"""What every benchmark shares: the helper's command line, its environments, the
servers' context (:class:`Context`) and one row of the results table (:class:`Result`)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import environment
from benchmarks.backends import BENCH_PASSWORD, BENCH_USER, VAULT_PATH, Backends
from benchmarks.environment import PYTHON, ROOT
from benchmarks.measure import Run, run

PROBES = ROOT / "benchmarks" / "probes"
HOST = "127.0.0.1"
SHIM_NAME = "mlflow-secrets-helper"
ANCHOR_NAME = "mlflow_secrets_auth"
HELPER = [PYTHON, "-I", "-m", "mlflow_secrets_helper"]


@dataclass
class Result:
    number: int
    title: str
    figure: str
    baseline: str
    ratio: float | None
    target: str
    met: bool
    note: str = ""
    #: range of the per-round ratios
    spread: str = ""


@dataclass
class Context:
    backends: Backends
    work: Path
    anchor: str
    rounds: int
    mlflow_port: int

    # -- environments --------------------------------------------------------------------

    def home(self) -> Path:
        home = Path(tempfile.mkdtemp(prefix="home-", dir=self.work))
        home.chmod(0o700)
        return home

    def fresh_cache(self, label: str) -> Path:
        return self.work / f"cache-{label}-{time.monotonic_ns()}"

    def helper_env(self, provider: str, cache: Path) -> dict[str, str]:
        """The helper configured for one provider; the MLflow server's origin allowed."""
        env = environment.base_env(self.home())
        env.update(
            MLFLOW_SECRETS_CACHE_DIR=str(cache),
            MLFLOW_SECRETS_ALLOWED_HOSTS=f"{HOST}:{self.mlflow_port}",
            MLFLOW_SECRETS_AUTH_ENABLE=provider,
        )
        runtime = self.work / "runtime"
        if runtime.exists():
            env["XDG_RUNTIME_DIR"] = str(runtime.resolve())
        b = self.backends
        if provider == "vault":
            env.update(
                VAULT_ADDR=b.bao.http_url,
                VAULT_TOKEN=b.vault_token,
                MLFLOW_VAULT_SECRET_PATH=VAULT_PATH,
            )
        elif provider == "aws-secrets-manager":
            env.update(
                AWS_ENDPOINT_URL_SECRETS_MANAGER=b.aws_proxy.url,
                MLFLOW_AWS_SECRET_NAME="mlflow/bench",
            )
        else:
            env.update(b.azure.env())
            env.update(
                MLFLOW_AZURE_KEY_VAULT_URL=b.azure.vault_url,
                MLFLOW_AZURE_SECRET_NAME="mlflow-bench",
            )
        return env

    def shim_env(self, cache: Path) -> dict[str, str]:
        env = self.helper_env("vault", cache)
        env["MLFLOW_TRACKING_AUTH"] = SHIM_NAME
        env["MLFLOW_TRACKING_URI"] = self.backends.mlflow.url
        return env

    def anchor_env(self) -> dict[str, str]:
        env = environment.base_env(self.home())
        env.update(
            MLFLOW_TRACKING_AUTH=ANCHOR_NAME,
            MLFLOW_TRACKING_URI=self.backends.mlflow.url,
            MLFLOW_SECRETS_AUTH_ENABLE="vault",
            MLFLOW_VAULT_AUTH_MODE="basic",
            MLFLOW_SECRETS_LOG_LEVEL="WARNING",
            VAULT_ADDR=self.backends.bao.http_url,
            VAULT_TOKEN=self.backends.vault_token,
            MLFLOW_VAULT_SECRET_PATH=VAULT_PATH,
        )
        return env

    def helper_get(self, env: dict[str, str]) -> Run:
        host = f"http://{HOST}:{self.mlflow_port}\n".encode()
        return run([*HELPER, "get"], env, host).check("mlflow-secrets-helper get")


def basic_header() -> str:
    import base64

    token = base64.b64encode(f"{BENCH_USER}:{BENCH_PASSWORD}".encode()).decode()
    return f"Authorization: Basic {token}\n"
