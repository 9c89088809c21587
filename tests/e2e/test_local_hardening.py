"""The helper's own process and files on this machine: no core dumps, the config file's
directory, ``sudo -E`` (HOME of another user), no HOME at all, and a relative HOME.

The helper runs as the installed executable against a real OpenBao server. Tests run as
root (as in CI): ``chown`` makes a home that belongs to another uid, and a user namespace
(``unshare --map-user``) gives the helper a uid with no passwd entry while it can still
read the interpreter.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GIT_HELPER, HELPER, RunHelper
from tests.support.openbao import VaultNamespace

HOST = "mlflow.example.com"
STDIN = f"{HOST}\n"
TOKEN = "mlflow-token-hardening-7c2e"
SERVED = f"Authorization: Bearer {TOKEN}\n"
UNUSED_UID = 54321


@pytest.fixture
def vault_env(helper_env: dict[str, str], vault_ns: VaultNamespace) -> dict[str, str]:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    return {
        **helper_env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
        "VAULT_ADDR": vault_ns.bao.http_url,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": vault_ns.reader_token("secret/data/mlflow/auth"),
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth",
    }


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- 15.8: no core dumps ------------------------------------------------------------------------


def _unlimited_cores() -> None:  # `ulimit -c unlimited` in the parent shell
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _core_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return " ".join(line.split()[4:6])
    raise AssertionError("no core limit line")


@pytest.mark.parametrize("program", [HELPER, GIT_HELPER])
def test_a_running_helper_cannot_dump_core(program: str, helper_env: dict[str, str]) -> None:
    env = {**helper_env, "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST}
    proc = subprocess.Popen(
        [program, "get"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_unlimited_cores,
    )
    try:
        deadline = time.monotonic() + 20
        limit = _core_limit(proc.pid)
        while limit != "0 0" and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            limit = _core_limit(proc.pid)
        assert limit == "0 0", f"RLIMIT_CORE of the waiting helper is {limit}"
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("program", [HELPER, GIT_HELPER])
def test_a_core_of_the_helper_would_hold_none_of_its_memory(
    program: str, helper_env: dict[str, str]
) -> None:
    """Even a core handler that ignores RLIMIT_CORE (a pipe in core_pattern) gets no
    mapping: the waiting helper's coredump_filter is cleared."""
    env = {**helper_env, "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST}
    proc = subprocess.Popen(
        [program, "get"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_unlimited_cores,
    )
    try:
        deadline = time.monotonic() + 20
        mask = Path(f"/proc/{proc.pid}/coredump_filter").read_text().strip()
        while int(mask, 16) != 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            mask = Path(f"/proc/{proc.pid}/coredump_filter").read_text().strip()
        assert int(mask, 16) == 0, f"coredump_filter of the waiting helper is {mask}"
    finally:
        proc.kill()
        proc.communicate()


# -- 15.11 and 11.3: the config file's directory, and a named file that is missing ---------------


def test_config_in_a_world_writable_sticky_directory_is_refused(
    run_helper: RunHelper, vault_env: dict[str, str], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    config = shared / "config.toml"
    config.write_text(f'allowed_hosts = ["{HOST}"]\n')
    config.chmod(0o600)
    env = {**vault_env, "MLFLOW_SECRETS_CONFIG": str(config)}
    del env["MLFLOW_SECRETS_ALLOWED_HOSTS"]
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (5, ""), result
    assert "directory of the config file" in result.stderr
    assert "writable by other users" in result.stderr
    config.unlink()  # what another user can do there: still exit 5, nothing served
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (5, ""), result


def test_a_named_config_file_that_is_missing_is_exit_5(
    run_helper: RunHelper, vault_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**vault_env, "MLFLOW_SECRETS_CONFIG": str(tmp_path / "deleted.toml")}
    del env["MLFLOW_SECRETS_ALLOWED_HOSTS"]
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (5, ""), result
    first = result.stderr.splitlines()[0]
    assert first.startswith("mlflow-secrets-helper: error: config: MLFLOW_SECRETS_CONFIG names")
    assert "deleted.toml" in first and "does not exist" in first


# -- 15.12: sudo -E -----------------------------------------------------------------------------


def test_under_sudo_e_nothing_is_created_in_the_users_home(
    run_helper: RunHelper, vault_env: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "user-home"
    home.mkdir(mode=0o755)
    (home / ".cache").mkdir(mode=0o755)
    for path in (home, home / ".cache"):
        os.chown(path, 65534, 65534)  # the invoking user's; the helper runs as root
    env = {**vault_env, "HOME": str(home)}
    del env["MLFLOW_SECRETS_CACHE_DIR"]
    for _ in range(2):
        result = run_helper(["get"], STDIN, env)
        assert (result.returncode, result.stdout) == (0, SERVED), result
        lines = warnings_of(result.stderr)
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("mlflow-secrets-helper: warning: cache disabled: ")
        assert "belongs to uid 65534" in lines[0] and "sudo -E" in lines[0]
    assert tree(home) == [".cache"]
    # with no .cache either: HOME itself is not written to
    shutil.rmtree(home / ".cache")
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, SERVED), result
    assert len(warnings_of(result.stderr)) == 1, result.stderr
    assert tree(home) == []


# -- 15.13: no passwd entry and no HOME; a relative HOME -----------------------------------------


def _as_uid_without_passwd_entry(argv: list[str]) -> list[str]:
    """Run ``argv`` as uid 54321 in a user namespace: no passwd entry, and files still
    readable (the namespace maps that uid to ours)."""
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed"
    return [unshare, "--user", f"--map-user={UNUSED_UID}", f"--map-group={UNUSED_UID}", *argv]


def test_no_passwd_entry_and_no_home_serves_without_a_cache(
    vault_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(vault_env)
    del env["HOME"], env["MLFLOW_SECRETS_CACHE_DIR"]
    check = subprocess.run(
        _as_uid_without_passwd_entry(
            [sys.executable, "-c", "import os, pwd; pwd.getpwuid(os.getuid())"]
        ),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "uid not found" in check.stderr, check  # the premise: really no passwd entry
    before = tree(tmp_path)
    result = subprocess.run(
        _as_uid_without_passwd_entry([HELPER, "get"]),
        input=STDIN,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, SERVED), result
    lines = warnings_of(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "cache disabled: no home directory" in lines[0]
    assert f"uid {UNUSED_UID} has no passwd entry" in lines[0]
    assert tree(tmp_path) == before  # nothing created in the current directory


def test_a_relative_home_does_not_load_config_from_the_current_directory(
    run_helper: RunHelper, vault_env: dict[str, str], tmp_path: Path
) -> None:
    planted = tmp_path / "relative" / "dir" / ".config" / "mlflow-secrets-helper"
    planted.mkdir(parents=True)
    (planted / "config.toml").write_text("this is not toml [")
    env = {**vault_env, "HOME": "relative/dir"}
    result = subprocess.run(
        [HELPER, "get"],
        input=STDIN,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, SERVED, ""), result
    assert not (tmp_path / "relative" / "dir" / ".cache").exists()
