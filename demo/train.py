"""A short, ordinary MLflow training job for the demo.

It uses only MLflow's client API. It holds no MLflow credentials: the tracking
server's address and ``MLFLOW_TRACKING_AUTH=mlflow-secrets-helper`` come from the
environment, and the auth plugin asks ``mlflow-secrets-helper`` for the header.

The only extra is a logging handler that turns the plugin's debug note about a
re-sent request into a plain sentence, so the demo can show when it happened.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

EXPERIMENT = "mlflow-secrets-helper-demo"
RESENT = "sending the request again"


def say(text: str) -> None:
    print(text, flush=True)


class ResendNotes(logging.Handler):
    """Say so when the auth plugin replaced a refused credential and re-sent a request."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if RESENT in message:
            status = "401" if " 401;" in message else "403" if " 403;" in message else "an error"
            say(
                f"auth plugin: the server refused the credential ({status}); it erased it, "
                "fetched the new one through the helper and sent the request again"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-seconds", type=float, default=0.5)
    args = parser.parse_args(argv)

    shim_log = logging.getLogger("mlflow_secrets_shim")
    shim_log.setLevel(logging.DEBUG)
    shim_log.addHandler(ResendNotes())

    experiment = mlflow.set_experiment(EXPERIMENT)
    say(f"experiment {EXPERIMENT!r} (id {experiment.experiment_id})")
    with mlflow.start_run(run_name="rotation-demo") as run:
        run_id = run.info.run_id
        say(f"run_id={run_id} started")
        mlflow.log_params({"learning_rate": 0.1, "steps": args.steps, "model": "toy-regressor"})
        say("params logged: learning_rate, steps, model")
        for step in range(1, args.steps + 1):
            time.sleep(args.step_seconds)  # the "training" of one step
            loss = round(math.exp(-0.3 * step), 4)
            mlflow.log_metric("loss", loss, step=step)
            say(f"step {step}/{args.steps}: loss={loss} logged")
        with tempfile.TemporaryDirectory() as scratch:
            card = Path(scratch) / "model-card.txt"
            card.write_text(f"toy-regressor trained for {args.steps} steps\n")
            mlflow.log_artifact(str(card))
        say("artifact model-card.txt logged")
    status = MlflowClient().get_run(run_id).info.status
    say(f"run {run_id} ended with status {status}")
    return 0 if status == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
