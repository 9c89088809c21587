"""Shared fixtures: a clean environment for the helper and a way to run it as a subprocess.

Two tiers: ``tests/unit`` (pure, needs only the core dependencies, runs in seconds) and
``tests/e2e`` (real servers on 127.0.0.1, real clients). The server fixtures live in
``tests/support/`` and are loaded by ``tests/e2e/conftest.py`` only, so the unit tier
imports no SDK.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HELPER = str(BIN / "mlflow-secrets-helper")
GIT_HELPER = str(BIN / "git-credential-mlflow-secrets")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def helper_env(tmp_path: Path) -> dict[str, str]:
    """An environment built from scratch (nothing leaks in from the machine):
    isolated HOME and cache dir, dummy AWS credentials, no instance metadata."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


RunHelper = Callable[..., Result]


@pytest.fixture
def run_helper() -> RunHelper:
    """Run the installed executable: ``run_helper(["get"], "host\\n", env)``."""

    def run(
        args: list[str],
        stdin: str | bytes = b"",
        env: Mapping[str, str] | None = None,
        *,
        program: str = HELPER,
        timeout: float = 60,
    ) -> Result:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            [program, *args],
            input=data,
            env=dict(env) if env is not None else None,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return Result(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    return run
