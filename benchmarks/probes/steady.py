"""Steady-state per-request cost on MLflow's own path: ``fetch_auth(name)`` -> ``get_auth()``
-> the auth object's ``__call__`` on a prepared request, after a first warming call.

argv: provider name, tracking URL, calls per batch, batches.
Prints {"per_call_us": median over batches, "loop_us": the same loop without the auth}.
"""

import gc
import json
import statistics
import sys
import time

import requests
from mlflow.tracking.request_auth.registry import fetch_auth

name, url, calls, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
request = requests.Request("GET", url + "/api/2.0/mlflow/experiments/search").prepare()
auth = fetch_auth(name)  # type: ignore[no-untyped-call]
if auth is None:
    sys.exit(f"{name} gave no auth object")
auth(request)
if "Authorization" not in request.headers:
    sys.exit(f"{name} set no Authorization header")


def with_auth() -> float:
    started = time.perf_counter()
    for _ in range(calls):
        request.hooks = {"response": []}
        fetch_auth(name)(request)  # type: ignore[no-untyped-call]
    return (time.perf_counter() - started) / calls * 1e6


def loop_only() -> float:
    started = time.perf_counter()
    for _ in range(calls):
        request.hooks = {"response": []}
    return (time.perf_counter() - started) / calls * 1e6


gc.collect()
timed = [with_auth() for _ in range(batches)]
empty = [loop_only() for _ in range(batches)]
print(json.dumps({"per_call_us": statistics.median(timed), "loop_us": statistics.median(empty)}))
