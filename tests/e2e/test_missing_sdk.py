"""A provider whose SDK is not installed: the real helper, its git mode and MLflow's client
through the plugin, each in a process where the SDK cannot be imported.

The helper runs through a small wrapper script that sets ``sys.modules[name] = None`` for
the SDK's modules (what Python does for a module that is not there: ``import`` raises
``ModuleNotFoundError``) and then calls the installed entry point. Nothing else is faked:
the configuration, the resolver, the provider and the output are the real ones. The
backends' addresses are a closed loopback port or a reserved name; the missing SDK is
reported before any of them could be contacted.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_secrets_helper import providers
from tests.conftest import Result
from tests.support.faultproxy import closed_port_url

HOST = "mlflow.example.com"

#: provider name → the modules made unimportable, and its settings
CASES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "vault": (
        ("hvac",),
        {
            "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
            "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth",
            "VAULT_TOKEN": "hvs.not-a-real-token",
        },
    ),
    "aws-secrets-manager": (
        ("boto3",),
        {
            "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
            "MLFLOW_AWS_SECRET_NAME": "mlflow/auth",
            "AWS_REGION": "us-east-1",
        },
    ),
    "azure-key-vault": (
        ("azure.identity", "azure.keyvault.secrets"),
        {
            "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
            "MLFLOW_AZURE_KEY_VAULT_URL": "https://kv.vault.example.com",
            "MLFLOW_AZURE_SECRET_NAME": "mlflow-auth",
        },
    ),
    "entra-id": (
        ("azure.identity",),
        {
            "MLFLOW_SECRETS_AUTH_ENABLE": "entra-id",
            "MLFLOW_AZURE_TOKEN_SCOPE": "api://3f0c4c1e-5a2b-4d7e-9c1f-2b3a4c5d6e7f/.default",
        },
    ),
}


def wrapper(tmp_path: Path, blocked: tuple[str, ...], entry: str) -> Path:
    """A script that runs the helper's ``entry`` point with ``blocked`` unimportable."""
    script = tmp_path / f"helper-without-sdk-{entry}.py"
    script.write_text(
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        f"from mlflow_secrets_helper.cli import {entry}\n"
        f"raise SystemExit({entry}())\n"
    )
    return script


def run(script: Path, args: list[str], stdin: str, env: dict[str, str]) -> Result:
    proc = subprocess.run(
        [sys.executable, "-I", str(script), *args],
        input=stdin.encode(),
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def environment(helper_env: dict[str, str], name: str, closed: str) -> dict[str, str]:
    settings = dict(CASES[name][1])
    if name == "vault":
        settings["VAULT_ADDR"] = closed
    if name == "aws-secrets-manager":
        settings["AWS_ENDPOINT_URL"] = closed
    return {**helper_env, **settings, "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST}


def expected_line(name: str) -> str:
    return providers.spec(name).install_hint()


@pytest.mark.parametrize("name", sorted(CASES))
def test_get_is_one_config_line_with_the_install_command(
    name: str, tmp_path: Path, helper_env: dict[str, str]
) -> None:
    script = wrapper(tmp_path, CASES[name][0], "main")
    env = environment(helper_env, name, closed_port_url())
    result = run(script, ["get"], f"{HOST}\n", env)
    assert result.returncode == 5, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlflow-secrets-helper: error: config: "), lines
    assert f"the {name} provider needs" in lines[0]
    assert expected_line(name) in lines[0]

    result = run(script, ["--format", "json", "get"], f"{HOST}\n", env)
    assert result.returncode == 5, result
    err = json.loads(result.stdout)["err"]
    assert err["kind"] == "config"
    assert err["retryable"] is False
    assert expected_line(name) in err["message"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_doctor_prints_the_same_install_command(
    name: str, tmp_path: Path, helper_env: dict[str, str]
) -> None:
    script = wrapper(tmp_path, CASES[name][0], "main")
    env = environment(helper_env, name, closed_port_url())
    result = run(script, ["doctor"], "", env)
    assert result.returncode == 5, result
    assert expected_line(name) in result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_git_mode_serves_nothing_and_says_one_line(
    name: str, tmp_path: Path, helper_env: dict[str, str]
) -> None:
    script = wrapper(tmp_path, CASES[name][0], "git_main")
    env = environment(helper_env, name, closed_port_url())
    result = run(script, ["get"], f"protocol=https\nhost={HOST}\n\n", env)
    assert result.returncode == 5, result
    # no credential; whether a served host's failure adds quit=1 is git mode's own rule
    assert result.stdout in ("", "quit=1\n"), result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlflow-secrets-helper: error: config: "), lines
    assert expected_line(name) in lines[0]


def test_the_mlflow_plugin_raises_the_helpers_line(
    tmp_path: Path, helper_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    script = wrapper(tmp_path, CASES["aws-secrets-manager"][0], "main")
    closed = closed_port_url()
    netloc = closed.split("://", 1)[1]
    env = environment(helper_env, "aws-secrets-manager", closed)
    env["MLFLOW_SECRETS_ALLOWED_HOSTS"] = netloc
    for variable in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    ):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        if variable != "PATH":
            monkeypatch.setenv(variable, value)
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "mlflow-secrets-helper")
    monkeypatch.setenv(
        "MLFLOW_SECRETS_HELPER_COMMAND", shlex.join([sys.executable, "-I", str(script)])
    )
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    with pytest.raises(MlflowException) as raised:
        MlflowClient(tracking_uri=closed).search_experiments()
    text = str(raised.value)
    assert expected_line("aws-secrets-manager") in text, text
    assert "config" in text
    assert "Traceback" not in text
