"""Platforms: on Windows the helper refuses with one line (exit 5), never a traceback.

Windows cannot run here, so each test starts a fresh interpreter that looks like one:
the POSIX-only modules are made unimportable and ``sys.platform`` is ``win32`` before
the CLI is imported. Stdlib modules that read ``os.register_at_fork`` or the platform
at import time are imported first, as they would be on a real Windows interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

POSIX_ONLY = ("fcntl", "resource", "pwd", "grp", "termios", "tty", "posix")
SIMULATE = f"""
import sys, os, random, tempfile, importlib.util, typing, collections.abc
for name in {POSIX_ONLY!r}:
    if name != "posix":
        sys.modules[name] = None
sys.platform = PLATFORM
sys.argv = ["mlflow-secrets-helper", *ARGS]
from mlflow_secrets_helper import cli
sys.exit(cli.ENTRY())
"""


def simulate(platform: str, entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        SIMULATE.replace("PLATFORM", repr(platform))
        .replace("ARGS", repr(list(args)))
        .replace("ENTRY", entry)
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("entry", ["main", "git_main"])
@pytest.mark.parametrize("args", [["get"], ["--version"], ["info"]])
def test_windows_gets_one_clear_line_and_exit_5(entry: str, args: list[str]) -> None:
    result = simulate("win32", entry, *args)
    assert result.returncode == 5, result
    assert result.stdout == ""
    assert result.stderr == (
        "mlflow-secrets-helper: error: config: Windows is not supported: run the helper "
        "on Linux or macOS, or inside WSL on Windows\n"
    )


def test_a_missing_fcntl_is_refused_the_same_way() -> None:
    # whatever sys.platform says, no POSIX file locks means no safe cache
    result = simulate(sys.platform, "main", "get")
    assert result.returncode == 5, result
    assert "Windows is not supported" in result.stderr
    assert "Traceback" not in result.stderr


def test_importing_the_cli_loads_nothing_posix_only() -> None:
    code = (
        "import sys\nfrom mlflow_secrets_helper import cli\n"
        f"print(sorted(m for m in {POSIX_ONLY[:-1]!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
