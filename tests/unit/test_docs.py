"""Docs move with code: every variable the code reads and every option the CLI
takes is documented in both the README and the man page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [*ROOT.joinpath("helper").rglob("*.py"), *ROOT.joinpath("mlflow_shim").rglob("*.py")]
)
README = ROOT.joinpath("README.md").read_text()
# roff escapes hyphens as "\-"; undo that so names compare as typed.
MAN = ROOT.joinpath("man", "mlflow-secrets-helper.1").read_text().replace("\\-", "-")

_VARIABLE = re.compile(r"""["'](((?:MLFLOW|VAULT|AZURE)_[A-Z0-9_]+)|AWS_REGION)["']""")
#: read by the code only to keep them away from SDKs, or shown by `info` as set / not set
_NOT_OPTIONS = {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_SERVER_CERT_PATH"}


def _variables() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found.update(m.group(1) for m in _VARIABLE.finditer(path.read_text()))
    return found - _NOT_OPTIONS


def test_the_code_reads_variables() -> None:
    assert {"MLFLOW_SECRETS_ALLOWED_HOSTS", "VAULT_ADDR", "MLFLOW_AWS_SECRET_NAME"} <= _variables()


@pytest.mark.parametrize("name", sorted(_variables()))
def test_variable_is_documented(name: str) -> None:
    assert name in README, f"{name} is missing from README.md"
    assert name in MAN, f"{name} is missing from the man page"


@pytest.mark.parametrize(
    "option",
    ["--format", "--refresh", "--timeout", "--json", "--dry-run", "--version", "--help"],
)
def test_option_is_documented(option: str) -> None:
    assert option in README and option in MAN


@pytest.mark.parametrize("code", range(6))
def test_exit_status_is_documented(code: int) -> None:
    assert f"| {code} |" in README
    assert f".B {code}\n" in MAN


def test_readme_starts_with_the_two_commands() -> None:
    block = README.split("```", 2)[1]
    assert "./scripts/demo" in block and "./scripts/test" in block
