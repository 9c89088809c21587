"""The installed executable with Azure Key Vault: the real SDK in a subprocess, steered only by
the environment, against the loopback Key Vault emulator and identity endpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result
from tests.support.keyvault import AzureCloud

HOST = "mlflow.example.com"
STDIN = f"{HOST}\n"

RunHelper = Callable[..., Result]


@pytest.fixture
def env(azure_cloud: AzureCloud, helper_env: dict[str, str]) -> dict[str, str]:
    """helper_env (built from scratch) plus the Azure steering variables and one route."""
    return {
        **helper_env,
        **azure_cloud.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
        "MLFLOW_AZURE_KEY_VAULT_URL": azure_cloud.vault_url,
        "MLFLOW_AZURE_SECRET_NAME": "mlflow-token",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }


def as_json(result: Result) -> dict[str, Any]:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result
    document: dict[str, Any] = json.loads(lines[0])
    assert document["v"] == 1
    return document


def one_error_line(result: Result, kind: str) -> str:
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"mlflow-secrets-helper: error: {kind}: "), result.stderr
    assert "Traceback" not in result.stderr
    return first


def test_bearer_header(azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper) -> None:
    azure_cloud.kv.set_secret("mlflow-token", '{"token": "kv-bearer-1"}')
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Authorization: Bearer kv-bearer-1\n"
    assert result.stderr == ""
    # the real chain used the App Service endpoint; the vault saw its production hostname
    assert len(azure_cloud.mi.requests) == 1
    assert {r["host"] for r in azure_cloud.kv.requests} == {
        f"{azure_cloud.kv.name}.vault.azure.net"
    }


def test_plain_string_is_a_bearer_token(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "plain:token-with-colon")
    result = run_helper(["--format", "token", "get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, "plain:token-with-colon\n"), result.stderr


def test_basic_header(azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper) -> None:
    azure_cloud.kv.set_secret("mlflow-token", '{"username": "alice", "password": "s3cret"}')
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Authorization: Basic YWxpY2U6czNjcmV0\n"


def test_vault_name_is_expanded(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "by-name")
    env["MLFLOW_AZURE_KEY_VAULT_URL"] = azure_cloud.kv.name
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, "Authorization: Bearer by-name\n"), (
        result.stderr
    )


def test_specific_version(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    first = azure_cloud.kv.set_secret("mlflow-token", "version-one")
    azure_cloud.kv.set_secret("mlflow-token", "version-two")
    env["MLFLOW_AZURE_SECRET_VERSION"] = first.version
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, "Authorization: Bearer version-one\n"), (
        result.stderr
    )


def test_json_expiry_is_capped_by_exp(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    exp = int(time.time()) + 90
    azure_cloud.kv.set_secret("mlflow-token", "short-lived", exp=exp)
    env["MLFLOW_AZURE_TTL_SEC"] = "3600"
    ok = as_json(run_helper(["--format", "json", "get"], STDIN, env))["ok"]
    assert ok["header"] == {"name": "Authorization", "value": "Bearer short-lived"}
    assert ok["source"] == "backend"
    assert ok["expires_at"] is not None and ok["expires_at"] <= exp
    assert ok["refresh_after"] <= ok["expires_at"]


def test_rotation_erase_then_get_returns_the_new_version(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "before-rotation")
    first = as_json(run_helper(["--format", "json", "get"], STDIN, env))["ok"]
    assert first["header"]["value"] == "Bearer before-rotation"

    azure_cloud.kv.set_secret("mlflow-token", "after-rotation")  # the new version becomes latest
    cached = as_json(run_helper(["--format", "json", "get"], STDIN, env))["ok"]
    assert (cached["source"], cached["header"]["value"]) == ("cache", "Bearer before-rotation")

    erase = run_helper(
        ["erase"], f"protocol=https\nhost={HOST}\ncredential_id={first['credential_id']}\n\n", env
    )
    assert (erase.returncode, erase.stdout) == (0, ""), erase.stderr

    fresh = as_json(run_helper(["--format", "json", "get"], STDIN, env))["ok"]
    assert (fresh["source"], fresh["header"]["value"]) == ("backend", "Bearer after-rotation")
    assert fresh["credential_id"] != first["credential_id"]


def test_cache_hit_does_not_call_azure(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "cached-value")
    assert run_helper(["get"], STDIN, env).returncode == 0
    calls = len(azure_cloud.kv.requests), len(azure_cloud.mi.requests)
    again = run_helper(["get"], STDIN, env)
    assert again.stdout == "Authorization: Bearer cached-value\n"
    assert (len(azure_cloud.kv.requests), len(azure_cloud.mi.requests)) == calls


def test_forbidden_exits_3_with_the_key_vault_code(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "unreadable")
    azure_cloud.kv.deny("get")
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 3
    line = one_error_line(result, "backend-denied")
    assert "Forbidden/ForbiddenByRbac" in line
    assert "Key Vault Secrets User" in result.stderr
    assert "unreadable" not in result.stderr


def test_forbidden_json(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "unreadable")
    azure_cloud.kv.deny("get")
    result = run_helper(["--format", "json", "get"], STDIN, env)
    assert result.returncode == 3
    err = as_json(result)["err"]
    assert err["kind"] == "backend-denied" and err["retryable"] is False
    assert "ForbiddenByRbac" in err["message"]


def test_not_found_exits_1(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 1
    line = one_error_line(result, "not-found")
    assert "SecretNotFound" in line and "mlflow-token" in line


def test_disabled_secret_is_refused(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "switched-off")
    azure_cloud.kv.disable("mlflow-token")
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 3
    assert "disabled" in one_error_line(result, "backend-denied")
    assert "switched-off" not in result.stderr


def test_expired_secret_is_refused(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "too-old", exp=int(time.time()) - 10)
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 3
    assert "expired" in one_error_line(result, "backend-denied")


def test_failed_login_exits_3(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "v")
    azure_cloud.mi.fail_with = 400
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 3
    assert "no Azure credential" in one_error_line(result, "backend-denied")
    assert len(result.stderr.splitlines()) <= 4, "SDK log lines leaked to stderr"


def test_unreachable_vault_within_the_timeout(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    env["MLFLOW_AZURE_KEY_VAULT_URL"] = azure_cloud.silent_vault_url
    start = time.monotonic()
    result = run_helper(["--timeout", "1.5", "get"], STDIN, env)
    elapsed = time.monotonic() - start
    assert result.returncode == 4
    line = one_error_line(result, "backend-unavailable")
    assert azure_cloud.silent_vault_url in line and "mlflow-token" in line
    assert elapsed < 1.5 + 2.5  # interpreter start and SDK import on a slow machine


def test_service_principal(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "via-service-principal")
    env.update(azure_cloud.service_principal())
    result = run_helper(["get"], STDIN, env)
    assert result.stdout == "Authorization: Bearer via-service-principal\n", result.stderr
    assert azure_cloud.mi.requests == []


def test_workload_identity(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    azure_cloud.kv.set_secret("mlflow-token", "via-workload-identity")
    env.update(azure_cloud.workload_identity(tmp_path))
    result = run_helper(["get"], STDIN, env)
    assert result.stdout == "Authorization: Bearer via-workload-identity\n", result.stderr
    assert azure_cloud.mi.requests == []


def test_no_credential_source_never_reaches_instance_metadata(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper
) -> None:
    """With no identity configured the SDK's managed-identity credential would probe the
    instance-metadata address; pinned to the production chain and behind the guard it cannot.
    The guard records the attempt; this test expects (and clears) exactly that record."""
    azure_cloud.kv.set_secret("mlflow-token", "v")
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        env.pop(name)
    result = run_helper(["--timeout", "5", "get"], STDIN, env)
    assert result.returncode in (3, 4)
    assert result.stdout == ""
    attempts = list(azure_cloud.guard.refused)
    assert all("169.254.169.254" in target for _, target in attempts), attempts
    azure_cloud.guard.refused.clear()


def test_toml_route_with_a_user_assigned_identity(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    client_id = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
    azure_cloud.mi.user_assigned.add(client_id)
    azure_cloud.kv.set_secret("routed-token", "via-toml-route")
    config = tmp_path / "config.toml"
    config.write_text(
        "[[routes]]\n"
        f'hosts = ["{HOST}"]\n'
        'provider = "azure-key-vault"\n'
        f'vault_url = "{azure_cloud.kv.name}"\n'
        'secret_name = "routed-token"\n'
        'secret_version = "latest"\n'
        f'client_id = "{client_id}"\n'
    )
    config.chmod(0o600)
    for name in (
        "MLFLOW_SECRETS_AUTH_ENABLE",
        "MLFLOW_AZURE_KEY_VAULT_URL",
        "MLFLOW_AZURE_SECRET_NAME",
    ):
        env.pop(name)
    env["MLFLOW_SECRETS_CONFIG"] = str(config)
    result = run_helper(["get"], STDIN, env)
    assert result.stdout == "Authorization: Bearer via-toml-route\n", result.stderr
    assert [r["query"].get("client_id") for r in azure_cloud.mi.requests] == [client_id]


def test_unknown_route_key_is_a_config_error(
    azure_cloud: AzureCloud, env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[[routes]]\n"
        f'hosts = ["{HOST}"]\n'
        'provider = "azure-key-vault"\n'
        f'vault_url = "{azure_cloud.kv.name}"\n'
        'secret_name = "s"\n'
        'verify_challenge_resource = "false"\n'
    )
    config.chmod(0o600)
    env.pop("MLFLOW_SECRETS_AUTH_ENABLE")
    env["MLFLOW_SECRETS_CONFIG"] = str(config)
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 5
    assert "verify_challenge_resource" in one_error_line(result, "config")
    assert azure_cloud.kv.requests == []
