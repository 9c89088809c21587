"""git's own credential-helper conformance cases, run by the real ``git`` on this machine.

The cases are those of ``helper_test`` in git's ``t/lib-credential.sh`` that apply to a
read-only helper (the man page's GIT section lists the others and why they do not
apply). git is configured as the man page says (``credential.helper = mlflow-secrets``,
found on PATH as ``git-credential-mlflow-secrets``), the secret lives in a real OpenBao
server, and git's prompts go to an askpass script, as in git's test suite.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, GIT_HELPER, HELPER, Result, RunHelper
from tests.support.openbao import VaultNamespace

ASKPASS = """#!/bin/sh
echo >&2 askpass: $*
what=$(echo $1 | cut -d" " -f1 | tr A-Z a-z | tr -cd a-z)
echo "askpass-$what"
"""


@pytest.fixture
def git_env(helper_env: dict[str, str], vault_ns: VaultNamespace, tmp_path: Path) -> dict[str, str]:
    vault_ns.write("mlflow/auth", {"username": "store-user", "password": "store-pass"})
    askpass = tmp_path / "askpass"
    askpass.write_text(ASKPASS)
    askpass.chmod(0o700)
    return {
        **helper_env,
        "PATH": f"{BIN}{os.pathsep}{helper_env['PATH']}",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ASKPASS": str(askpass),
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "example.com",
        "VAULT_ADDR": vault_ns.bao.http_url,
        "VAULT_NAMESPACE": vault_ns.name,
        "VAULT_TOKEN": vault_ns.reader_token("secret/data/mlflow/auth"),
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth",
    }


def git(env: dict[str, str], command: str, stdin: str, cwd: Path) -> Result:
    proc = subprocess.run(
        ["git", "-c", "credential.helper=mlflow-secrets", "credential", command],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def lines(*items: str) -> str:
    return "".join(item + "\n" for item in items)


def asked(url: str, user_url: str) -> str:
    return lines(f"askpass: Username for '{url}':", f"askpass: Password for '{user_url}':")


def test_helper_can_retrieve_password(git_env: dict[str, str], tmp_path: Path) -> None:
    result = git(git_env, "fill", lines("protocol=https", "host=example.com"), tmp_path)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == lines(
        "protocol=https", "host=example.com", "username=store-user", "password=store-pass"
    )


def test_helper_stores_password_is_accepted_and_ignored(
    git_env: dict[str, str], tmp_path: Path
) -> None:
    stored = lines("protocol=https", "host=example.com", "username=u", "password=p")
    result = git(git_env, "approve", stored, tmp_path)
    assert result == Result(0, "", ""), result
    # the store, not git, stays the source of the credential
    fill = git(git_env, "fill", lines("protocol=https", "host=example.com"), tmp_path)
    assert "password=store-pass\n" in fill.stdout


@pytest.mark.parametrize(
    ("request_lines", "url"),
    [
        # requires matching protocol: plain http to a remote host is refused
        (("protocol=http", "host=example.com"), "http://example.com"),
        # requires matching host
        (("protocol=https", "host=other.tld"), "https://other.tld"),
    ],
)
def test_a_host_not_served_is_left_to_git_in_silence(
    git_env: dict[str, str], tmp_path: Path, request_lines: tuple[str, ...], url: str
) -> None:
    result = git(git_env, "fill", lines(*request_lines), tmp_path)
    assert result.returncode == 0, result
    # git's own prompt is all that is heard: the helper printed nothing
    assert result.stderr == asked(url, url.replace("://", "://askpass-username@"))
    assert result.stdout.endswith(lines("username=askpass-username", "password=askpass-password"))
    for command in ("approve", "reject"):
        quiet = git(git_env, command, lines(*request_lines, "username=u", "password=p"), tmp_path)
        assert quiet == Result(0, "", ""), quiet


def test_helper_requires_matching_username(git_env: dict[str, str], tmp_path: Path) -> None:
    result = git(
        git_env, "fill", lines("protocol=https", "host=example.com", "username=other"), tmp_path
    )
    assert result.returncode == 0, result
    assert result.stderr == lines("askpass: Password for 'https://other@example.com':")
    assert result.stdout == lines(
        "protocol=https", "host=example.com", "username=other", "password=askpass-password"
    )
    same = git(
        git_env,
        "fill",
        lines("protocol=https", "host=example.com", "username=store-user"),
        tmp_path,
    )
    assert (same.returncode, same.stderr) == (0, ""), same
    assert "password=store-pass\n" in same.stdout


def test_helper_can_forget_host_and_rereads_the_store(
    git_env: dict[str, str], vault_ns: VaultNamespace, tmp_path: Path
) -> None:
    assert (
        "password=store-pass\n"
        in git(git_env, "fill", lines("protocol=https", "host=example.com"), tmp_path).stdout
    )
    vault_ns.write("mlflow/auth", {"username": "store-user", "password": "rotated"})
    rejected = git(
        git_env,
        "reject",
        lines("protocol=https", "host=example.com", "username=store-user", "password=store-pass"),
        tmp_path,
    )
    assert rejected == Result(0, "", ""), rejected
    fill = git(git_env, "fill", lines("protocol=https", "host=example.com"), tmp_path)
    assert (fill.returncode, fill.stderr) == (0, ""), fill
    assert "password=rotated\n" in fill.stdout


def test_a_failure_for_a_served_host_stops_git_with_quit(
    git_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**git_env, "VAULT_TOKEN": "not-a-valid-token"}
    result = git(env, "fill", lines("protocol=https", "host=example.com"), tmp_path)
    assert result.returncode != 0, result
    assert "mlflow-secrets-helper: error: backend-denied:" in result.stderr
    assert "askpass" not in result.stderr  # quit=1: git did not prompt
    assert "quit" in result.stderr  # git says the helper told it to quit


def test_a_missing_secret_lets_git_ask_the_next_helper(
    git_env: dict[str, str], vault_ns: VaultNamespace, tmp_path: Path
) -> None:
    env = {
        **git_env,
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/missing",
        "VAULT_TOKEN": vault_ns.reader_token("secret/data/mlflow/missing"),
    }
    result = git(env, "fill", lines("protocol=https", "host=example.com"), tmp_path)
    assert result.returncode == 0, result
    first, *rest = result.stderr.splitlines(keepends=True)
    assert first.startswith("mlflow-secrets-helper: error: not-found:")
    assert "".join(line for line in rest if not line.startswith("hint:")) == asked(
        "https://example.com", "https://askpass-username@example.com"
    )


def test_debug_logging_explains_the_silence(git_env: dict[str, str], tmp_path: Path) -> None:
    env = {**git_env, "MLFLOW_SECRETS_LOG_LEVEL": "debug"}
    result = git(env, "fill", lines("protocol=https", "host=other.tld"), tmp_path)
    assert "mlflow-secrets-helper: debug: not served: https://other.tld is not in" in result.stderr


def test_a_bearer_secret_ignores_the_requested_username(
    git_env: dict[str, str], vault_ns: VaultNamespace, run_helper: RunHelper
) -> None:
    # git 2.46+ sends capability[]=authtype; the git here may be older, so the helper
    # is run directly with the request such a git sends.
    vault_ns.write("mlflow/auth", {"token": "bearer-token-7c1"})
    stdin = lines("capability[]=authtype", "protocol=https", "host=example.com", "username=ann")
    result = run_helper(["get"], stdin, git_env, program=GIT_HELPER)
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout.startswith(
        lines("capability[]=authtype", "authtype=Bearer", "credential=bearer-token-7c1")
    )


def test_typo_warnings_wait_until_the_host_is_ours(
    git_env: dict[str, str], run_helper: RunHelper
) -> None:
    env = {**git_env, "MLFLOW_VAULT_SECRETS_PATH": "x"}
    for program, args in ((GIT_HELPER, ["get"]), (HELPER, ["--format", "git", "get"])):
        other = run_helper(args, lines("protocol=https", "host=other.tld"), env, program=program)
        assert other == Result(0, "", ""), other
        ours = run_helper(args, lines("protocol=https", "host=example.com"), env, program=program)
        assert ours.returncode == 0, ours
        assert "password=store-pass\n" in ours.stdout
        assert ours.stderr == (
            "mlflow-secrets-helper: warning: MLFLOW_VAULT_SECRETS_PATH is not a variable the "
            "helper reads, so it has no effect (did you mean MLFLOW_VAULT_SECRET_PATH?)\n"
        )
