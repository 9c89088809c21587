"""Typos never silently weaken security: unknown variables, config keys and route keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_secrets_helper import config, typos
from mlflow_secrets_helper.errors import ConfigError
from tests.conftest import RunHelper

KNOWN = config.known_variables()


def test_known_names_come_from_the_code() -> None:
    # the common variables and every provider's, none listed by hand here
    assert "MLFLOW_SECRETS_ALLOWED_HOSTS" in KNOWN
    assert "MLFLOW_VAULT_SECRET_PATH" in KNOWN
    assert "MLFLOW_AWS_SECRET_NAME" in KNOWN
    assert "MLFLOW_AZURE_KEY_VAULT_URL" in KNOWN
    assert "MLFLOW_AUTH_HEADER_NAME" in KNOWN


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("MLFLOW_SECRETS_ALLOWED_HOST", "MLFLOW_SECRETS_ALLOWED_HOSTS"),
        ("MLFLOW_VAULT_SECRETS_PATH", "MLFLOW_VAULT_SECRET_PATH"),
        ("MLFLOW_AWS_SECRET_NAMES", "MLFLOW_AWS_SECRET_NAME"),
        ("MLFLOW_AZURE_KEYVAULT_URL", "MLFLOW_AZURE_KEY_VAULT_URL"),
        ("MLFLOW_AUTH_HEADER_NAM", "MLFLOW_AUTH_HEADER_NAME"),
    ],
)
def test_unknown_variable_gets_the_closest_known_name(name: str, suggestion: str) -> None:
    env = {name: "x", "PATH": "/bin"}
    assert typos.unknown_variables(env, KNOWN) == [name]
    [line] = typos.warnings(env, KNOWN)
    assert line.startswith(name)
    assert line.endswith(f"(did you mean {suggestion}?)")


def test_known_and_foreign_variables_are_not_flagged() -> None:
    env = {name: "x" for name in KNOWN}
    # MLflow's own variables and other programs' are not ours
    env |= {"MLFLOW_TRACKING_URI": "x", "MLFLOW_AUTH_CONFIG_PATH": "x", "VAULT_ADDRESS": "x"}
    assert typos.unknown_variables(env, KNOWN) == []


def test_difflib_is_imported_only_for_an_unknown_name() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mlflow_secrets_helper import config, typos\n"
        "typos.warnings({'MLFLOW_SECRETS_ALLOWED_HOSTS': 'x'}, config.known_variables())\n"
        "print('difflib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    return config.load({"MLFLOW_SECRETS_CONFIG": str(path), "HOME": str(tmp_path)})


def test_unknown_top_level_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, 'allowed_host = ["mlflow.example.com"]\n')
    assert "unknown setting 'allowed_host' (did you mean allowed_hosts?)" in raised.value.message


ROUTE = '[[routes]]\nprovider = "vault"\nhosts = ["mlflow.example.com"]\nsecret_path = "a/b"\n'


@pytest.mark.parametrize("key", ["token", "password", "secret_id", "role_id", "client_secret"])
def test_login_material_in_a_route_says_why_it_is_never_read(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, ROUTE + f'{key} = "s3cr3t-value"\n')
    message = raised.value.message
    assert f"{key!r} is login material, which is never read from the configuration file" in message
    assert "environment" in message
    assert "unknown setting" not in message
    assert "s3cr3t-value" not in message + " ".join(raised.value.hints)
    assert "VAULT_TOKEN" in " ".join(raised.value.hints)


def test_unknown_route_key_gets_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, ROUTE + 'secret_pth = "x"\n')
    assert "unknown setting 'secret_pth' (did you mean secret_path?)" in raised.value.message


def test_get_warns_once_per_typo_and_leaves_stdout_alone(
    run_helper: RunHelper, helper_env: dict[str, str]
) -> None:
    # a typo'd allowlist is no allowlist: the host is served in development mode,
    # and the helper says so on stderr
    env = {
        **helper_env,
        "MLFLOW_SECRETS_ALLOWED_HOST": "mlflow.example.com",
        "MLFLOW_VAULT_SECRETS_PATH": "x",
    }
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    warnings = [line for line in lines if ": warning: " in line]
    assert warnings == [
        "mlflow-secrets-helper: warning: MLFLOW_SECRETS_ALLOWED_HOST is not a variable the "
        "helper reads, so it has no effect (did you mean MLFLOW_SECRETS_ALLOWED_HOSTS?)",
        "mlflow-secrets-helper: warning: MLFLOW_VAULT_SECRETS_PATH is not a variable the "
        "helper reads, so it has no effect (did you mean MLFLOW_VAULT_SECRET_PATH?)",
    ]


def test_info_and_doctor_list_typos(run_helper: RunHelper, helper_env: dict[str, str]) -> None:
    env = {**helper_env, "MLFLOW_SECRETS_ALLOWED_HOST": "mlflow.example.com"}
    info = run_helper(["info"], "", env)
    assert "MLFLOW_SECRETS_ALLOWED_HOST is not a variable" in info.stdout
    assert "did you mean MLFLOW_SECRETS_ALLOWED_HOSTS?" in info.stdout
    info_json = run_helper(["info", "--json"], "", env)
    assert '"unknown_variables":["MLFLOW_SECRETS_ALLOWED_HOST"]' in info_json.stdout.replace(
        " ", ""
    )
    doctor = run_helper(["doctor"], "", env)
    assert "warn environment: MLFLOW_SECRETS_ALLOWED_HOST is not a variable" in doctor.stdout
    assert "did you mean MLFLOW_SECRETS_ALLOWED_HOSTS?" in doctor.stdout


def test_config_file_typo_from_get(
    run_helper: RunHelper, helper_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(ROUTE + 'token = "s3cr3t-value"\n')
    path.chmod(0o600)
    result = run_helper(
        ["get"], "mlflow.example.com\n", {**helper_env, "MLFLOW_SECRETS_CONFIG": str(path)}
    )
    assert result.returncode == 5, result
    assert result.stdout == ""
    assert "'token' is login material" in result.stderr
    assert "s3cr3t-value" not in result.stderr


def test_a_misspelt_oidc_variable_is_ours() -> None:
    from mlflow_secrets_helper import config, typos

    found = typos.warnings({"MLFLOW_OIDC_ISSUR": "x"}, config.known_variables())
    assert found == [
        "MLFLOW_OIDC_ISSUR is not a variable the helper reads, so it has no effect "
        "(did you mean MLFLOW_OIDC_ISSUER?)"
    ]
