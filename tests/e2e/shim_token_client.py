"""One MLflow client process for the short-lived-token test: it sends MLflow API calls
through the plugin (``MLFLOW_TRACKING_AUTH=mlflow-secrets-helper``) for ``argv[1]``
seconds, one every ``argv[2]`` seconds, and prints ``{"calls": N, "errors": [...]}``.
"""

from __future__ import annotations

import json
import sys
import time

from mlflow import MlflowClient


def main() -> None:
    duration, pause = float(sys.argv[1]), float(sys.argv[2])
    client = MlflowClient()
    calls, errors = 0, []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        try:
            client.search_experiments(max_results=1)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        calls += 1
        time.sleep(pause)
    print(json.dumps({"calls": calls, "errors": errors}))


if __name__ == "__main__":
    main()
