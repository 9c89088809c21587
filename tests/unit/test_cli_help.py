"""Help: one page per action, ``help [ACTION]``, the git program's own text (real processes)."""

from __future__ import annotations

import pytest

from mlflow_secrets_helper import usage
from tests.conftest import GIT_HELPER, RunHelper

PAGES = {
    "get": ("--format", "--refresh", "--timeout", "exit codes:", "examples:", "4  the backend"),
    "store": ("approve", "exit codes:", "example:"),
    "erase": ("credential_id", "reject", "exit codes:", "examples:"),
    "info": ("--json", "exit codes:", "examples:"),
    "doctor": ("--json", "--dry-run URL", "exit codes:", "examples:"),
    "cache": ("cache status", "cache clear", "exit codes:", "examples:"),
}


@pytest.mark.parametrize("action", sorted(PAGES))
@pytest.mark.parametrize("form", ["help ACTION", "ACTION --help", "ACTION -h", "--help ACTION"])
def test_each_action_has_its_own_help(
    run_helper: RunHelper, helper_env: dict[str, str], action: str, form: str
) -> None:
    result = run_helper(form.replace("ACTION", action).split(), "", helper_env)
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert result.stdout == usage.action_help(action)
    assert result.stdout.startswith("usage: mlflow-secrets-helper")
    for needle in PAGES[action]:
        assert needle in result.stdout
    assert result.stdout != usage.USAGE


def test_git_aliases_get_their_actions_help(run_helper: RunHelper) -> None:
    assert run_helper(["help", "fill"]).stdout == usage.action_help("get")
    assert run_helper(["reject", "--help"]).stdout == usage.action_help("erase")


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"]])
def test_summary_lists_every_option(run_helper: RunHelper, args: list[str]) -> None:
    result = run_helper(args)
    assert result.returncode == 0, result
    assert result.stdout == usage.USAGE
    for option in ("--format", "--refresh", "--timeout", "info [--json]", "--dry-run URL"):
        assert option in result.stdout
    assert "doctor [--json] [--dry-run URL]" in result.stdout
    assert "help [ACTION]" in result.stdout


def test_help_for_an_unknown_action_is_a_usage_error(run_helper: RunHelper) -> None:
    result = run_helper(["help", "nope"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("mlflow-secrets-helper: error: invalid-input: no help for")


def test_git_program_describes_itself(run_helper: RunHelper) -> None:
    result = run_helper(["--help"], program=GIT_HELPER)
    assert result.returncode == 0, result
    assert result.stdout == usage.GIT_USAGE
    assert result.stdout.startswith("usage: git-credential-mlflow-secrets")
    assert "credential.helper mlflow-secrets" in result.stdout
    assert run_helper(["help", "get"], program=GIT_HELPER).stdout == usage.action_help("get")
