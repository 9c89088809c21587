"""Measure what the shim adds to an MLflow request.

1. Warm memory: MLflow's own path per request, ``fetch_auth("mlflow-secrets-helper")``
   then the auth object on a prepared request (hooks reset each time), in µs/request.
2. One refresh: the in-memory answer dropped, so the next request runs the real helper
   (``python -I -m mlflow_secrets_helper --format json get``) answering from its encrypted
   disk cache; and one with the helper's cache erased too (the backend is read: AWS
   Secrets Manager served by moto on 127.0.0.1).

usage: .venv/bin/python -m benchmarks.shim_overhead   (needs mlflow, moto[server], boto3)
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from requests.auth import AuthBase

from devservers.moto import MotoServer


class OneHeader(AuthBase):
    def __call__(self, r: Any) -> Any:
        r.headers["Authorization"] = "Bearer reference"
        return r


def per_call_us(fn: Any, n: int = 20_000, repeats: int = 7) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def main() -> None:
    server = MotoServer().start()
    work = Path(tempfile.mkdtemp(prefix="shim-bench-"))
    # moto itself, not the counting proxy in front of it: measure the helper, not a hop
    env = server.env(
        AWS_ENDPOINT_URL_SECRETS_MANAGER=server.moto_url,
        MLFLOW_SECRETS_AUTH_ENABLE="aws-secrets-manager",
        MLFLOW_AWS_SECRET_NAME="mlflow/bench",
        MLFLOW_SECRETS_ALLOWED_HOSTS="127.0.0.1:5000",
        MLFLOW_SECRETS_CACHE_DIR=str(work / "cache"),
        MLFLOW_TRACKING_AUTH="mlflow-secrets-helper",
    )
    os.environ.update(env)
    server.client().create_secret(
        Name="mlflow/bench", SecretString=json.dumps({"token": "bench-token-0001"})
    )

    from mlflow.tracking.request_auth.registry import fetch_auth

    from mlflow_secrets_shim.origin import Origin

    url = "http://127.0.0.1:5000/api/2.0/mlflow/runs/log-metric"
    prepared = requests.Request("POST", url, data=b"{}").prepare()
    hooks = prepared.hooks

    auth = fetch_auth("mlflow-secrets-helper")
    auth(prepared)  # warm: one helper call

    def reset() -> None:
        hooks["response"] = []

    def mlflow_path() -> None:
        reset()
        fetch_auth("mlflow-secrets-helper")(prepared)

    def auth_only() -> None:
        reset()
        auth(prepared)

    def reference() -> None:
        reset()
        OneHeader()(prepared)

    baseline = per_call_us(reset)
    print(f"loop + hook reset                         {baseline:7.2f} µs")
    print(f"reference AuthBase (one header)           {per_call_us(reference):7.2f} µs")
    print(f"auth object __call__ (warm)               {per_call_us(auth_only):7.2f} µs")
    print(f"fetch_auth + __call__ (warm, MLflow path) {per_call_us(mlflow_path):7.2f} µs")

    origin = Origin.of(url)
    memo = auth._memo
    helper = memo._helper

    def refresh_from_disk_cache() -> float:
        auth.forget()
        start = time.perf_counter()
        auth(prepared)
        return (time.perf_counter() - start) * 1e3

    def refresh_from_backend() -> float:
        current = memo.current(origin)
        helper.erase(origin, current.credential_id)
        return refresh_from_disk_cache()

    for name, fn in [
        ("refresh, helper answers from its cache", refresh_from_disk_cache),
        ("refresh, helper reads the backend", refresh_from_backend),
    ]:
        fn()
        runs = [fn() for _ in range(15)]
        print(
            f"{name:41s} {statistics.median(runs):7.1f} ms median "
            f"(min {min(runs):.1f}, max {max(runs):.1f})"
        )

    def erase_and_get() -> float:
        current = memo.current(origin)
        start = time.perf_counter()
        memo._slots[origin].rejected_401.clear()
        memo.replace(origin, current, 401)
        return (time.perf_counter() - start) * 1e3

    erase_and_get()
    runs = [erase_and_get() for _ in range(15)]
    print(f"{'401 path: erase + get (backend)':41s} {statistics.median(runs):7.1f} ms median")
    server.stop()


if __name__ == "__main__":
    main()
