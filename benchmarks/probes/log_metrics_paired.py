"""N ``log_metric`` calls with the shim and N with MLflow's username/password, interleaved.

MLflow reads its credentials from the environment on every request, so one process can
switch between the two ways of authenticating call by call: each shim call runs right
next to a native call, and the load of a shared machine hits both alike. The
experiment, the run and one warming call of each kind happen before the clocks start.

argv: calls of each kind. The environment holds MLFLOW_TRACKING_URI, the helper's
configuration, and BENCH_USERNAME / BENCH_PASSWORD for the native calls.
Prints {"shim": seconds, "native": seconds}.
"""

import json
import os
import sys
import time
import uuid

from mlflow.tracking import MlflowClient

calls = int(sys.argv[1])
username, password = os.environ.pop("BENCH_USERNAME"), os.environ.pop("BENCH_PASSWORD")


def native() -> None:
    os.environ.pop("MLFLOW_TRACKING_AUTH", None)
    os.environ["MLFLOW_TRACKING_USERNAME"] = username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def shim() -> None:
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    os.environ["MLFLOW_TRACKING_AUTH"] = "mlflow-secrets-helper"


client = MlflowClient()
native()
experiment = client.create_experiment("bench-" + uuid.uuid4().hex)
run_id = client.create_run(experiment).info.run_id
client.log_metric(run_id, "warm", 0.0)
shim()
client.log_metric(run_id, "warm", 1.0)
spent = {native: 0.0, shim: 0.0}
for step in range(calls):
    for mode in (native, shim) if step % 2 == 0 else (shim, native):
        mode()
        started = time.perf_counter()
        client.log_metric(run_id, mode.__name__, 1.0 / (step + 1), step=step)
        spent[mode] += time.perf_counter() - started
native()
client.set_terminated(run_id)
print(json.dumps({"shim": spent[shim], "native": spent[native]}))
