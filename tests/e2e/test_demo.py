"""The README's first command, ``scripts/demo``, end to end.

The orchestrator (``demo/run.py``) runs with this interpreter, so the test needs no new
install; ``scripts/demo`` only adds ``scripts/dev-env`` in front of it. The demo's
TMPDIR is a directory of this test: every process the demo starts inherits it, which
lets the test find any process left behind, and the directory must be empty after.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "demo" / "run.py"

pytestmark = pytest.mark.slow


def _environment(tmpdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "VAULT_", "BAO_", "PYTHON"))
    }
    env["TMPDIR"] = str(tmpdir)
    return env


def _descendants(tmpdir: Path) -> dict[int, str]:
    """pid -> command line of every process whose TMPDIR lies under ``tmpdir``: the demo
    and everything it started (it gives its children a temporary directory inside)."""
    marker = f"TMPDIR={tmpdir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(item == marker or item.startswith(marker + b"/") for item in environ):
            found[int(entry.name)] = cmdline.decode(errors="replace")
    return found


def _leftovers(tmpdir: Path) -> list[str]:
    return [f"{pid}: {argv[:200]}" for pid, argv in _descendants(tmpdir).items()]


class ArgvWatch:
    """Samples the command lines of the demo's processes while it runs."""

    def __init__(self, tmpdir: Path) -> None:
        self.tmpdir = tmpdir
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(_descendants(self.tmpdir).values())
            self._stop.wait(0.1)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _wait_gone(tmpdir: Path, seconds: float = 10.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _leftovers(tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _assert_no_secret(output: str, record: Path) -> None:
    known = json.loads(record.read_text())
    for name in ("root_token", "admin_password", "flask_secret_key", "vault_token"):
        assert known.get(name), f"the demo did not record its {name}"
    for name, value in known.items():
        assert value not in output, f"the demo printed its {name}"
        if name.startswith("password_"):
            header = base64.b64encode(f"demo-trainer:{value}".encode()).decode()
            assert header not in output, f"the demo printed the header made of its {name}"


def test_scripts_demo_sets_up_the_venv_then_runs_the_orchestrator() -> None:
    script = ROOT / "scripts" / "demo"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "scripts/dev-env" in text
    assert "demo/run.py" in text


@pytest.mark.timeout(400)
def test_demo_runs_rotates_and_cleans_up(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    record = tmp_path / "secrets.json"
    with ArgvWatch(tmpdir) as watch:
        result = subprocess.run(
            [sys.executable, str(RUN), "--record-secrets", str(record)],
            cwd=ROOT,
            env=_environment(tmpdir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=360,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "halfway: rotating the password" in output
    assert "wrote a new password to OpenBao (v2)" in output
    assert "the server refused the credential (401)" in output
    assert "the run continued without an error" in output
    assert "metric 'loss': 10 of 10 steps arrived" in output
    assert "source=cache" in output
    assert "done in" in output
    _assert_no_secret(output, record)
    known = json.loads(record.read_text())
    assert {"password_1", "password_2"} <= known.keys()
    # the watch saw the servers and the job, and no secret on any command line
    assert any("--app-name basic-auth" in argv for argv in watch.seen), watch.seen
    assert any(" server -dev " in argv for argv in watch.seen), watch.seen
    assert any("train.py" in argv for argv in watch.seen), watch.seen
    for name, value in known.items():
        assert not [argv for argv in watch.seen if value in argv], f"{name} on a command line"
    assert _wait_gone(tmpdir) == []
    assert list(tmpdir.iterdir()) == [], "the demo left temporary files behind"


@pytest.mark.timeout(400)
def test_demo_interrupted_stops_everything(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) in the middle of the training job: both servers and the job are
    stopped, the temporary directory is removed, and the exit status says so."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    record = tmp_path / "secrets.json"
    proc = subprocess.Popen(
        [sys.executable, str(RUN), "--record-secrets", str(record)],
        cwd=ROOT,
        env=_environment(tmpdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "step 2/10" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 128 + signal.SIGINT, output
    assert "Interrupted (SIGINT)" in output
    assert "stopped the MLflow server" in output
    assert "stopped the OpenBao server" in output
    assert "stopped the training job" in output
    _assert_no_secret(output, record)
    assert _wait_gone(tmpdir) == []
    assert list(tmpdir.iterdir()) == [], "the demo left temporary files behind"
