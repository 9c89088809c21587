"""Crash consistency of the cache: writers killed with SIGKILL at random points.

A writer process rewrites one cache entry as fast as it can, through the real
resolver and cache (lock, sweep, temp file, fsync, rename), with a new credential
every time. It is killed with SIGKILL after a random pause, 100 times over, with a
fixed seed. After every kill a ``get`` must print one complete, correct header (one
of the credentials a writer stored, never a torn or mixed one); every tenth check
runs the installed executable, the others the same command line in this process.
Finally the stray temp files the kills left behind are swept by the next write once
they are old enough.

Writers are forked from one pre-loaded "zygote" process, so 100 writers cost 100
forks rather than 100 interpreter start-ups.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_secrets_helper import cli
from tests.conftest import RunHelper
from tests.support.moto_server import AwsBackend

HOST = "mlflow.example.com"
BACKEND_TOKEN = "tok-from-the-backend-7d1f"
KILLS = 100
SEED = 20261128
HEADER = re.compile(r"Authorization: Bearer (crash-(\d+)-([0-9a-f]{64}))\n")

ZYGOTE = r"""
import hashlib, itertools, os, sys

from mlflow_secrets_helper import config as config_module, providers
from mlflow_secrets_helper.cache import Cache
from mlflow_secrets_helper.providers import Fetched
from mlflow_secrets_helper.resolve import Resolver
from mlflow_secrets_helper.secret import Secret
from mlflow_secrets_helper.protocol import parse_target


def token(number):
    return f"crash-{number}-" + hashlib.sha256(f"crash-{number}".encode()).hexdigest()


class Rotating:
    # The configured provider's identity (so the entry is the one `get` reads),
    # a new credential on every fetch, no network.
    def __init__(self, real, first):
        self.real, self.numbers = real, itertools.count(first)

    def reference(self):
        return self.real.reference()

    def cache_key(self):
        return self.real.cache_key()

    def warnings(self):
        return ()

    def fetch(self, deadline):
        return Fetched(Secret('{"token": "%s"}' % token(next(self.numbers))))


def write_forever(first):
    env = dict(os.environ)
    config = config_module.load(env)
    cache = Cache.open(config.cache_dir)
    resolver = Resolver(
        config, cache, env, warn=lambda message: None,
        create_provider=lambda *args: Rotating(providers.create(*args), first),
    )
    target = parse_target(sys.argv[1])
    resolver.get(target, refresh=True)
    os.write(1, b"ready\n")
    while True:
        resolver.get(target, refresh=True)


while True:
    line = sys.stdin.readline()
    if not line:
        break
    pid = os.fork()
    if pid == 0:
        try:
            write_forever(int(line))
        finally:
            os._exit(70)
    os.write(1, b"pid %d\n" % pid)
    os.waitpid(pid, 0)
    os.write(1, b"reaped\n")
"""


def expected_token(number: int) -> str:
    return f"crash-{number}-" + hashlib.sha256(f"crash-{number}".encode()).hexdigest()


class Lines:
    """Line reader with a deadline over a child's stdout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def next(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the writer did not answer in time"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 4096)
                assert chunk, "the writer zygote exited"
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def in_process_get(env: dict[str, str]) -> tuple[int, str, str]:
    stdin = io.TextIOWrapper(io.BytesIO(f"{HOST}\n".encode()))
    stdout, stderr = io.StringIO(), io.StringIO()
    status = cli.run(["get"], stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    return status, stdout.getvalue(), stderr.getvalue()


def check_header(stdout: str, stderr: str) -> int:
    """The header is complete and carries a credential a writer stored; its number."""
    match = HEADER.fullmatch(stdout)
    assert match is not None, f"not a complete header: {stdout!r} (stderr {stderr!r})"
    token, number = match.group(1), int(match.group(2))
    assert token == expected_token(number), f"a torn or mixed credential: {token!r}"
    return number


def stray_temp_files(cache: Path) -> list[Path]:
    return sorted(cache.glob(".tmp-*"))


@pytest.fixture
def env(
    aws: AwsBackend, helper_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    aws.create("mlflow/prod", json.dumps({"token": BACKEND_TOKEN}))
    # in-process checks that miss the cache read the backend from this process
    aws.setenv(monkeypatch)
    return {
        **helper_env,
        **aws.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": "mlflow/prod",
        "MLFLOW_AWS_TTL_SEC": "3600",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }


def test_kill_9_during_cache_writes(env: dict[str, str], run_helper: RunHelper) -> None:
    cache = Path(env["MLFLOW_SECRETS_CACHE_DIR"])
    rng = random.Random(SEED)
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, HOST],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert zygote.stdin is not None
    lines = Lines(zygote)
    killed_mid_write = 0
    numbers: list[int] = []
    try:
        for kill in range(KILLS):
            zygote.stdin.write(f"{kill * 1_000_000}\n".encode())
            zygote.stdin.flush()
            seen = {lines.next(), lines.next()}
            pid = int(next(line for line in seen if line.startswith("pid ")).split()[1])
            assert "ready" in seen, seen
            before = set(stray_temp_files(cache))
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
            assert lines.next() == "reaped"
            if set(stray_temp_files(cache)) - before:
                killed_mid_write += 1

            if kill % 10 == 9:
                result = run_helper(["get"], f"{HOST}\n", env)
                status, stdout, stderr = result.returncode, result.stdout, result.stderr
            else:
                status, stdout, stderr = in_process_get(env)
            assert status == 0, stderr
            assert stderr == "", stderr
            number = check_header(stdout, stderr)
            # a complete write of this writer (its first finished before "ready"),
            # never an older writer's entry coming back
            assert number >= kill * 1_000_000, (kill, number)
            numbers.append(number)
    finally:
        zygote.stdin.close()
        zygote.kill()
        zygote.wait(30)

    # Evidence that the kills landed inside writes: temp files were left behind.
    assert killed_mid_write >= 1, "no kill landed during a write; the test proves nothing"

    # Stray temp files are swept by the next write once they are over a minute old.
    strays = stray_temp_files(cache)
    old = time.time() - 120
    for path in strays:
        os.utime(path, (old, old))
    refreshed = run_helper(["--refresh", "get"], f"{HOST}\n", env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout == f"Authorization: Bearer {BACKEND_TOKEN}\n"
    assert stray_temp_files(cache) == []
    entries = list(cache.glob("*.entry"))
    assert len(entries) == 1, entries
    print(f"{killed_mid_write} of {KILLS} kills left a temp file; {len(strays)} swept")
