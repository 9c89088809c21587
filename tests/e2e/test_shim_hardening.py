"""The plugin's defences against its own surroundings: crash reporters that record the
local variables of every frame, and a helper command that another user could replace."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from mlflow_secrets_shim.errors import HelperError
from mlflow_secrets_shim.invocation import HelperProcess, Sealed
from mlflow_secrets_shim.origin import Origin
from tests.e2e.shim_fakes import FAKE_HELPER, FakeHelper

CANARY = "Bearer canary-7d1f3a9b0c2e"
ORIGIN = Origin.of("http://127.0.0.1:5999/")


def _recorded(value: Any, depth: int = 0) -> str:
    """What a local-variable-capturing crash reporter keeps of one value."""
    if depth > 6:
        return "..."
    if isinstance(value, (str, bytes, bytearray)):
        return str(value)
    if isinstance(value, dict):
        return " ".join(_recorded(k, depth + 1) + _recorded(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return " ".join(_recorded(v, depth + 1) for v in value)
    return repr(value)


def _frames_text(tb: TracebackType | None) -> str:
    """The locals of every frame the exception passed through below the test itself."""
    texts = []
    tb = tb.tb_next if tb is not None else None  # the test's own frame holds the canary
    while tb is not None:
        code = tb.tb_frame.f_code
        texts.extend(
            f"{code.co_name}.{name}={_recorded(value)}"
            for name, value in list(tb.tb_frame.f_locals.items())
        )
        tb = tb.tb_next
    return "\n".join(texts)


@pytest.fixture
def fake(tmp_path: Path) -> FakeHelper:
    return FakeHelper(tmp_path)


def test_sealed_never_shows_its_value() -> None:
    sealed = Sealed(CANARY)
    assert CANARY not in repr(sealed) and CANARY not in str(sealed) and CANARY not in f"{sealed}"
    assert sealed.expose() == CANARY


def test_a_rejected_answer_leaves_the_header_in_no_frame(fake: FakeHelper) -> None:
    fake.set_secret(ORIGIN.netloc, "Authorization", CANARY)
    fake.set(mode="bad-header")  # a valid answer but for an injected CRLF in the value
    helper = HelperProcess(environ={**os.environ, **fake.env})
    with pytest.raises(HelperError, match="not a valid header value") as caught:
        helper.get(ORIGIN)
    assert "canary" not in _frames_text(caught.value.__traceback__)
    assert "canary" not in str(caught.value)


def test_an_accepted_answer_is_sealed(fake: FakeHelper) -> None:
    fake.set_secret(ORIGIN.netloc, "Authorization", CANARY)
    answer = HelperProcess(environ={**os.environ, **fake.env}).get(ORIGIN)
    assert not isinstance(answer, HelperError)
    assert "canary" not in repr(answer)
    assert answer.header_value.expose() == CANARY


def _wrapper(directory: Path, mode: int) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    script = directory / "helper"
    script.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_HELPER))} "$@"\n'
    )
    script.chmod(mode)
    return script


@pytest.mark.parametrize(
    "file_mode, dir_mode, culprit",
    [(0o757, 0o700, "file"), (0o775, 0o700, "file"), (0o755, 0o777, "dir")],
)
def test_a_helper_command_others_can_change_is_refused(
    fake: FakeHelper, tmp_path: Path, file_mode: int, dir_mode: int, culprit: str
) -> None:
    script = _wrapper(tmp_path / "bin", file_mode)
    script.parent.chmod(dir_mode)
    fake.set_secret(ORIGIN.netloc, "Authorization", CANARY)
    env = {**os.environ, **fake.env, "MLFLOW_SECRETS_HELPER_COMMAND": str(script)}
    with pytest.raises(HelperError) as caught:
        HelperProcess(environ=env).get(ORIGIN)
    place = script if culprit == "file" else script.parent
    assert caught.value.kind == "config"
    assert f"but {place} is writable by group or others" in caught.value.message
    assert f"chmod go-w {place}" in caught.value.message
    assert fake.calls() == []  # nothing ran


def test_a_helper_command_only_we_can_change_runs(fake: FakeHelper, tmp_path: Path) -> None:
    script = _wrapper(tmp_path / "bin", 0o755)
    link = tmp_path / "link-to-helper"
    link.symlink_to(script)
    fake.set_secret(ORIGIN.netloc, "Authorization", CANARY)
    env = {**os.environ, **fake.env, "MLFLOW_SECRETS_HELPER_COMMAND": str(link)}
    answer = HelperProcess(environ=env).get(ORIGIN)
    assert answer.header_value.expose() == CANARY
    assert fake.calls() == [f"get {ORIGIN.netloc}"]


def test_on_windows_the_plugin_fails_with_one_line() -> None:
    """Simulated: no fcntl, no process groups, no fork hooks, no POSIX user ids."""
    code = (
        "import os, sys, random, requests\n"  # the standard library's own checks ran already
        "sys.modules['fcntl'] = None\n"
        "for name in ('register_at_fork', 'killpg', 'geteuid'):\n"
        "    delattr(os, name)\n"
        "sys.platform = 'win32'\n"
        "from mlflow_secrets_shim.auth import HelperAuth\n"
        "from mlflow_secrets_shim.errors import HelperError\n"
        "request = requests.Request('GET', 'https://mlflow.example.com/api', auth=HelperAuth())\n"
        "try:\n"
        "    request.prepare()\n"
        "except HelperError as exc:\n"
        "    print(exc.kind, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stderr == ""
    assert out.stdout == (
        "config mlflow-secrets-helper runs on Linux and macOS only, not on win32; "
        "on Windows, run MLflow inside WSL\n"
    )
