"""The one-command demo of mlflow-secrets-helper (run it with ``scripts/demo``).

It starts an OpenBao dev server and an MLflow tracking server that demands a
password, both on 127.0.0.1 and both throwaway (from ``devservers``); creates an
MLflow user for a training job and keeps its password only in OpenBao; runs
``train.py`` with the helper configured purely by environment; changes the password
halfway through the run; and shows the run finishing anyway. Everything it started is
stopped and every temporary file removed when it ends, fails or is interrupted.

Secrets (the OpenBao root token, the Vault token, the MLflow passwords) are never
put on a command line and never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # devservers/ lives next to demo/ (not in the wheel)

from devservers.mlflow import MlflowServer  # noqa: E402
from devservers.net import ServerError  # noqa: E402
from devservers.openbao import Bao  # noqa: E402
from devservers.process import SIGNALS, Process, StartError  # noqa: E402

TRAIN = HERE / "train.py"
USER = "demo-trainer"
SECRET_PATH = "secret/mlflow/demo-trainer"  # noqa: S105 - a path in OpenBao (KV v2 "secret")
POLICY = "mlflow-demo-read"
STEPS = 10
START_TIMEOUT = 90.0
TRAIN_TIMEOUT = 120.0
HELPER = [sys.executable, "-I", "-m", "mlflow_secrets_helper"]


class DemoError(Exception):
    """A step failed; the message says which and why (never with a secret in it).
    ``log``: a server log worth showing (redacted) with the failure."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


class Interrupted(BaseException):
    """A signal asked us to stop (a BaseException, so that only main() catches it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- output --------------------------------------------------------------------------


class Out:
    """Numbered steps and short lines, with every known secret blanked out."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.secrets: list[str] = []

    def hide(self, *values: str) -> None:
        self.secrets.extend(v for v in values if v)

    def redact(self, text: str) -> str:
        for value in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(value, "<hidden>")
        return re.sub(r"(?im)^(\s*(root token|unseal key)\s*:).*$", r"\1 <hidden>", text)

    def step(self, text: str) -> None:
        self.number += 1
        self.line(f"\n[{self.number}/{self.total}] {text}", indent="")

    def line(self, text: str, indent: str = "    ") -> None:
        for part in self.redact(text).splitlines() or [""]:
            print(f"{indent}{part}", flush=True)


# -- processes and environment ------------------------------------------------------


def base_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without anything that would configure MLflow, the helper,
    Vault or a cloud SDK behind the demo's back, and with no proxy for loopback."""
    drop = ("MLFLOW_", "VAULT_", "BAO_", "AWS_", "AZURE_", "PYTHON")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("DO_NOT_TRACK", None)
    no_proxy = ",".join(p for p in ("127.0.0.1", "localhost", os.environ.get("NO_PROXY", "")) if p)
    env.update(
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
        TMPDIR=str(tmp),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        PYTHONIOENCODING="utf-8",
        PYTHONUNBUFFERED="1",
    )
    return env


# -- the demo --------------------------------------------------------------------------


@dataclass
class Demo:
    out: Out
    tmp: Path
    record: Path | None
    #: every process the demo starts, registered before it is started (for cleanup)
    started: list[Process] = field(default_factory=list)
    helper_env: dict[str, str] = field(default_factory=dict)

    def remember(self, **values: str) -> None:
        """Hide these values from all output (and, for the test suite, record them)."""
        self.out.hide(*values.values())
        if self.record is None:
            return
        known: dict[str, Any] = {}
        if self.record.exists():
            known = json.loads(self.record.read_text())
        known.update(values)
        self.record.touch(mode=0o600)
        self.record.write_text(json.dumps(known))

    def helper(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``mlflow-secrets-helper`` with the job's environment."""
        return subprocess.run(
            [*HELPER, *args],
            env=self.helper_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def run(self) -> None:
        out = self.out
        env = base_env(self.tmp)

        out.step("Starting an OpenBao dev server and an MLflow tracking server with basic auth")
        began = time.monotonic()
        bao_dir, mlflow_dir = self.tmp / "bao", self.tmp / "mlflow"
        bao_dir.mkdir(mode=0o700)
        mlflow_dir.mkdir(mode=0o700)
        bao = Bao(
            bao_dir,
            env={"TMPDIR": env["TMPDIR"]},
            die_with_parent=True,
            start_timeout=START_TIMEOUT,
        )
        self.remember(root_token=bao.root_token)
        mlflow = MlflowServer(
            mlflow_dir,
            env=env,
            admin_password="admin-" + secrets.token_urlsafe(18),
            die_with_parent=True,
            start_timeout=START_TIMEOUT,
        )
        self.remember(admin_password=mlflow.admin[1], flask_secret_key=mlflow.flask_key)
        self.started += [bao.process, mlflow.process]
        bao.start()
        out.line(f"OpenBao (dev mode, in memory) is up at {bao.http_url} (pid {bao.proc.pid})")
        out.line("its root token was generated here and passed by environment only")
        mlflow.start()
        out.line(f"MLflow (basic-auth app) is up at {mlflow.url} (pid {mlflow.process.pid})")
        out.line(
            "its admin password was generated into its auth config file "
            f"(both ready after {time.monotonic() - began:.1f} s)"
        )

        out.step(f"Creating the MLflow user {USER!r} and keeping its password only in OpenBao")
        password = f"{USER}-" + secrets.token_urlsafe(18)
        self.remember(password_1=password)
        mlflow.create_user(USER, password)
        out.line(f"created {USER!r} through MLflow's REST API (as admin)")
        version = self.write_secret(bao, password)
        out.line(f"wrote {{username, password}} to OpenBao KV v2 at {SECRET_PATH} (v{version})")
        mount, _, rest = SECRET_PATH.partition("/")
        bao.policy(
            POLICY,
            f'path "{mount}/data/{rest}" {{\n  capabilities = ["read"]\n}}\n',
            namespace=None,
        )
        token = bao.api(
            "POST",
            "auth/token/create",
            {
                "policies": [POLICY],
                "no_default_policy": True,
                "ttl": "15m",
                "display_name": "mlflow-demo-trainer",
            },
        )["auth"]["client_token"]
        self.remember(vault_token=token)
        out.line(f"made a Vault token that can only read that secret (policy {POLICY!r}, 15 min)")

        out.step("Configuring the helper and the MLflow auth plugin, by environment only")
        self.helper_env = dict(env)
        (self.tmp / "empty-config.toml").write_text("")
        self.helper_env.update(
            MLFLOW_SECRETS_AUTH_ENABLE="vault",
            VAULT_ADDR=bao.http_url,
            VAULT_TOKEN=token,
            MLFLOW_VAULT_SECRET_PATH=SECRET_PATH,
            # plain http is allowed only for a loopback host listed literally
            MLFLOW_SECRETS_ALLOWED_HOSTS=mlflow.netloc,
            MLFLOW_SECRETS_CACHE_DIR=str(self.tmp / "helper-cache"),
            # an empty file: no personal config file changes the demo
            MLFLOW_SECRETS_CONFIG=str(self.tmp / "empty-config.toml"),
            MLFLOW_TRACKING_URI=mlflow.url,
            MLFLOW_TRACKING_AUTH="mlflow-secrets-helper",
            # fail fast instead of MLflow's long default back-off
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
            MLFLOW_HTTP_REQUEST_TIMEOUT="30",
        )
        shown = (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_TRACKING_AUTH",
            "MLFLOW_SECRETS_AUTH_ENABLE",
            "VAULT_ADDR",
            "MLFLOW_VAULT_SECRET_PATH",
            "MLFLOW_SECRETS_ALLOWED_HOSTS",
        )
        for name in shown:
            out.line(f"{name}={self.helper_env[name]}")
        out.line("MLFLOW_SECRETS_CACHE_DIR=<a temporary directory>")
        out.line("VAULT_TOKEN=<the read-only token; not shown>")
        out.line("no MLflow username, password or token in the job's code or environment")

        out.step(f"Running the training job (demo/train.py, {STEPS} steps)")
        run_id, resent = self.train(bao, mlflow)

        out.step("Reading the run back from the server")
        self.verify(mlflow, run_id, resent)

        out.step("The helper's encrypted cache")
        self.show_cache(mlflow)

    @staticmethod
    def write_secret(bao: Bao, password: str) -> int:
        mount, _, rest = SECRET_PATH.partition("/")
        data = {"username": USER, "password": password}
        return bao.write_kv2(rest, data, mount=mount, namespace=None)

    def train(self, bao: Bao, mlflow: MlflowServer) -> tuple[str, int]:
        out = self.out
        job = Process(
            "training job",
            [sys.executable, str(TRAIN), "--steps", str(STEPS), "--step-seconds", "0.5"],
            env=self.helper_env,
            cwd=self.tmp,
            log=None,
            die_with_parent=True,
        )
        self.started.append(job)
        proc = job.start()
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw.decode("utf-8", errors="replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + TRAIN_TIMEOUT
        run_id = ""
        rotated = False
        resent = 0
        halfway = f"step {STEPS // 2}/{STEPS}:"
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise DemoError(
                    f"the training job did not finish within {TRAIN_TIMEOUT:.0f} s"
                ) from None
            if line is None:
                break
            out.line(f"train | {line}")
            found = re.search(r"run_id=(\w+)", line)
            if found:
                run_id = found.group(1)
            if "sent the request again" in line:
                resent += 1
            if halfway in line and not rotated:
                rotated = True
                # Freeze the job for the moment of the rotation so that it lands exactly
                # halfway however busy the machine is. The job is told nothing.
                os.killpg(proc.pid, signal.SIGSTOP)
                try:
                    self.rotate(bao, mlflow)
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGCONT)
        code = proc.wait(timeout=30)
        if code != 0:
            raise DemoError(f"the training job failed (exit code {code})")
        if not run_id:
            raise DemoError("the training job did not report a run id")
        if not rotated:
            raise DemoError("the training job never reached the halfway point")
        return run_id, resent

    def rotate(self, bao: Bao, mlflow: MlflowServer) -> None:
        out = self.out
        new = f"{USER}-" + secrets.token_urlsafe(18)
        self.remember(password_2=new)
        out.line("")
        out.line(">>> halfway: rotating the password (the job is paused a moment, not told)")
        # OpenBao first: until MLflow changes too, the old password still works.
        version = self.write_secret(bao, new)
        out.line(f">>> wrote a new password to OpenBao (v{version})")
        mlflow.set_password(USER, new)
        out.line(">>> changed it in MLflow as admin: the old one is refused from now on")
        out.line("")

    def verify(self, mlflow: MlflowServer, run_id: str, resent: int) -> None:
        out = self.out
        run = mlflow.admin_call("GET", f"runs/get?run_id={run_id}")["run"]
        status = run["info"]["status"]
        params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
        history = mlflow.admin_call(
            "GET", f"metrics/get-history?run_id={run_id}&metric_key=loss&max_results=1000"
        ).get("metrics", [])
        steps = sorted(int(m["step"]) for m in history)
        artifacts = mlflow.admin_call("GET", f"artifacts/list?run_id={run_id}").get("files", [])
        names = [a["path"] for a in artifacts]
        out.line(f"run id: {run_id}")
        out.line(f"status: {status}")
        out.line(f"params: {', '.join(f'{k}={v}' for k, v in sorted(params.items()))}")
        out.line(f"metric 'loss': {len(steps)} of {STEPS} steps arrived {steps}")
        out.line(f"artifacts: {', '.join(names) or 'none'}")
        if status != "FINISHED":
            raise DemoError(f"the run ended with status {status}")
        if steps != list(range(1, STEPS + 1)):
            raise DemoError("some metric values are missing")
        if "model-card.txt" not in names:
            raise DemoError("the artifact is missing")
        if resent < 1:
            raise DemoError("no request was refused and re-sent: the rotation was not exercised")
        out.line(
            f"the password changed mid-run; {resent} request(s) refused with the old one "
            "were re-sent with the new one, and the run continued without an error"
        )

    def show_cache(self, mlflow: MlflowServer) -> None:
        out = self.out
        got = self.helper("--format", "json", "get", stdin=f"{mlflow.url}\n")
        try:
            answer = json.loads(got.stdout)["ok"]
        except (ValueError, KeyError, TypeError):
            raise DemoError(f"'mlflow-secrets-helper get' failed: {got.stderr.strip()}") from None
        out.line(f"$ echo {mlflow.url} | mlflow-secrets-helper --format json get")
        out.line(
            f"source={answer['source']}, credential_id={answer['credential_id']} "
            "(header value not shown)",
            indent="      ",
        )
        if answer["source"] != "cache":
            raise DemoError(f"expected a cache hit, the helper answered from {answer['source']}")
        out.line("another process on this machine gets the header from the cache, not OpenBao")
        status = self.helper("cache", "status")
        if status.returncode != 0:
            raise DemoError(f"'mlflow-secrets-helper cache status' failed: {status.stderr}")
        out.line("$ mlflow-secrets-helper cache status")
        out.line(status.stdout.strip(), indent="      ")
        misses = re.search(r"^misses: (\d+)", status.stdout, re.MULTILINE)
        if misses:
            out.line(
                f"{misses.group(1)} misses = the job's reads from OpenBao: one at the start, "
                "one after the rotation; every other request used the header the auth "
                "plugin keeps in memory"
            )

    def cleanup(self) -> None:
        out = self.out
        out.number = out.total - 1
        out.step("Cleaning up")
        if self.helper_env:
            with contextlib.suppress(Exception):
                # also removes the cache key if the helper kept it in the runtime dir
                self.helper("cache", "clear")
        for child in reversed(self.started):
            if child.proc is not None:
                child.stop()
                out.line(f"stopped the {child.name} (pid {child.pid})")
        self.started.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        out.line("removed the temporary directory (server data, cache, logs)")

    def tail(self, path: Path, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    old = {k: signal.signal(k, _raise_interrupted) for k in SIGNALS}
    try:
        yield
    finally:
        for kind, handler in old.items():
            signal.signal(kind, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Show mlflow-secrets-helper serving an MLflow training job from OpenBao "
        "across a password rotation."
    )
    parser.add_argument(
        "--record-secrets",
        metavar="FILE",
        type=Path,
        help="for the test suite: write the generated secrets to FILE (mode 0600) so a test "
        "can check that none of them is ever printed",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]

    began = time.monotonic()
    out = Out(total=7)
    print("mlflow-secrets-helper demo: an MLflow job whose password lives in OpenBao", flush=True)
    code = 1
    with signals_raise():
        tmp = Path(tempfile.mkdtemp(prefix="mlflow-secrets-demo-"))
        demo = Demo(out=out, tmp=tmp, record=args.record_secrets)
        try:
            demo.run()
            code = 0
        except (DemoError, StartError, ServerError) as exc:
            out.line(f"\nFAILED: {exc}", indent="")
            log = getattr(exc, "log", None)
            if log is not None:
                out.line(f"last lines of {log.name}:")
                out.line(demo.tail(log), indent="      ")
        except Exception:  # noqa: BLE001 - reported, then cleaned up like any failure
            out.line("\nFAILED: unexpected error", indent="")
            out.line(traceback.format_exc())
        except Interrupted as exc:
            out.line(f"\nInterrupted ({exc}); stopping everything", indent="")
            code = 128 + exc.signum
        finally:
            # Finish cleaning up even if interrupted again.
            for kind in SIGNALS:
                signal.signal(kind, signal.SIG_IGN)
            demo.cleanup()
    verdict = "done" if code == 0 else "interrupted" if code > 128 else "FAILED"
    print(f"\n{verdict} in {time.monotonic() - began:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
