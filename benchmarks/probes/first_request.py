"""The added cost of authenticating the first request in a fresh process.

MLflow and requests are imported first (every MLflow client pays that, with or without
a plugin). The clock then covers what MLflow does for the first request when
MLFLOW_TRACKING_AUTH is set: import the request-auth registry (which loads the
plugins), ``fetch_auth(name)`` and the auth call on the request. The request is then
sent, untimed, to check that the server accepts it.

argv: provider name, tracking URL. Prints {"seconds": ..., "status": ...}.
"""

import json
import sys
import time

import mlflow  # noqa: F401 - the client's own import cost is not ours
import requests

name, url = sys.argv[1], sys.argv[2]
request = requests.Request(
    "GET", url + "/api/2.0/mlflow/experiments/search", params={"max_results": "1"}
).prepare()
started = time.perf_counter()
from mlflow.tracking.request_auth.registry import fetch_auth  # noqa: E402

auth = fetch_auth(name)  # type: ignore[no-untyped-call]
request = auth(request)
seconds = time.perf_counter() - started
with requests.Session() as session:
    session.trust_env = False
    status = session.send(request, timeout=30).status_code
print(json.dumps({"seconds": seconds, "status": status}))
