"""The installed helper, run as a subprocess, against a real OpenBao server.

Each test gets a fresh OpenBao namespace (``vault_ns``), a clean environment
(``helper_env``: isolated HOME and cache) and talks to the helper only through
argv, stdin, stdout, stderr and the exit status.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, RunHelper
from tests.support.faultproxy import FaultProxy, closed_port_url, delay, vault_error
from tests.support.openbao import K8sTokenReview, VaultNamespace

HOST = "mlflow.example.com"
STDIN = f"{HOST}\n"
TOKEN = "mlflow-token-4b1d9e"


@pytest.fixture
def vault_env(helper_env: dict[str, str], vault_ns: VaultNamespace) -> dict[str, str]:
    """The helper's environment for Vault with no login yet; tests add one."""
    return {
        **helper_env,
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
        "VAULT_ADDR": vault_ns.bao.http_url,
        "VAULT_NAMESPACE": vault_ns.name,
        "MLFLOW_VAULT_SECRET_PATH": "secret/mlflow/auth",
    }


def reader(vault_ns: VaultNamespace, *paths: str) -> str:
    return vault_ns.reader_token(*(paths or ("secret/data/mlflow/auth",)))


def get_json(run_helper: RunHelper, env: dict[str, str], *options: str) -> tuple[Result, Any]:
    result = run_helper([*options, "--format", "json", "get"], STDIN, env)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result
    return result, json.loads(lines[0])


def assert_error(result: Result, code: int, *needles: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == "", result
    first = result.stderr.splitlines()[0]
    assert first.startswith("mlflow-secrets-helper: error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# --------------------------------------------------------------------------- reading


def test_bearer_from_kv2(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns)}
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: Bearer {TOKEN}\n"), result
    result, document = get_json(run_helper, env)
    ok = document["ok"]
    assert ok["header"] == {"name": "Authorization", "value": f"Bearer {TOKEN}"}
    assert ok["source"] == "cache" and ok["credential_id"]
    token = run_helper(["--format", "token", "get"], STDIN, env)
    assert token.stdout == f"{TOKEN}\n"


def test_basic_from_kv1(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write_v1("mlflow/auth", {"username": "alice", "password": "s3cret:pw"})
    env = {
        **vault_env,
        "VAULT_TOKEN": reader(vault_ns, "kv1/mlflow/auth"),
        "MLFLOW_VAULT_SECRET_PATH": "kv1/mlflow/auth",
        "MLFLOW_VAULT_AUTH_MODE": "basic",
    }
    result = run_helper(["get"], STDIN, env)
    assert result.returncode == 0, result
    assert result.stdout == "Authorization: Basic YWxpY2U6czNjcmV0OnB3\n"


def test_specific_version_and_api_form_path(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": "version-one"})
    vault_ns.write("mlflow/auth", {"token": "version-two"})
    env = {
        **vault_env,
        "VAULT_TOKEN": reader(vault_ns),
        "MLFLOW_VAULT_SECRET_PATH": "secret/data/mlflow/auth",
        "MLFLOW_VAULT_SECRET_VERSION": "1",
    }
    assert run_helper(["get"], STDIN, env).stdout == "Authorization: Bearer version-one\n"
    del env["MLFLOW_VAULT_SECRET_VERSION"]
    assert run_helper(["get"], STDIN, env).stdout == "Authorization: Bearer version-two\n"


def test_namespace_is_required_to_see_the_secret(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    env = {**vault_env, "VAULT_TOKEN": vault_ns.bao.root_token}
    assert run_helper(["get"], STDIN, env).returncode == 0
    outside = {k: v for k, v in env.items() if k != "VAULT_NAMESPACE"}
    outside["MLFLOW_SECRETS_CACHE_DIR"] = env["MLFLOW_SECRETS_CACHE_DIR"] + "-2"
    assert_error(run_helper(["get"], STDIN, outside), 1, "not-found", "secret/mlflow/auth")


def test_tls_with_vault_cacert(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns), "VAULT_ADDR": vault_ns.bao.https_url}
    assert_error(run_helper(["get"], STDIN, env), 4, "TLS", "VAULT_CACERT")
    env["VAULT_CACERT"] = vault_ns.bao.ca_path
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: Bearer {TOKEN}\n"), result


def test_skip_verify_is_loopback_only_and_warns(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    env = {
        **vault_env,
        "VAULT_TOKEN": reader(vault_ns),
        "VAULT_ADDR": vault_ns.bao.https_url,
        "VAULT_SKIP_VERIFY": "true",
    }
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: Bearer {TOKEN}\n"), result
    warnings = [line for line in result.stderr.splitlines() if "VAULT_SKIP_VERIFY" in line]
    assert len(warnings) == 1, result.stderr
    remote = {**env, "VAULT_ADDR": "https://vault.example.com:8200"}
    assert_error(run_helper(["get"], STDIN, remote), 5, "VAULT_SKIP_VERIFY", "VAULT_CACERT")


def test_http_address_that_is_not_loopback_is_refused(
    run_helper: RunHelper, vault_env: dict[str, str]
) -> None:
    env = {**vault_env, "VAULT_TOKEN": "s.x", "VAULT_ADDR": "http://vault.example.com:8200"}
    assert_error(run_helper(["get"], STDIN, env), 5, "https")


# --------------------------------------------------------------------------- logins


@pytest.fixture
def approle(vault_ns: VaultNamespace) -> tuple[str, str]:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    policy = vault_ns.reader_policy("secret/data/mlflow/auth")
    vault_ns.bao.enable_auth("approle", namespace=vault_ns.name)
    return vault_ns.bao.approle("mlflow", [policy], namespace=vault_ns.name, token_ttl="2s")


def test_approle_login_with_secret_id_file(
    run_helper: RunHelper, vault_env: dict[str, str], approle: tuple[str, str], tmp_path: Path
) -> None:
    role_id, secret_id = approle
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(secret_id)
    env = {**vault_env, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID_FILE": str(secret_file)}
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: Bearer {TOKEN}\n"), result


def test_expired_login_token_logs_in_again(
    run_helper: RunHelper,
    vault_ns: VaultNamespace,
    vault_env: dict[str, str],
    approle: tuple[str, str],
    fault_proxy: Any,
) -> None:
    """The AppRole's tokens live 2 s; the second `get` comes after the first token died."""
    role_id, secret_id = approle
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    env = {
        **vault_env,
        "VAULT_ADDR": proxy.url,
        "VAULT_ROLE_ID": role_id,
        "VAULT_SECRET_ID": secret_id,
        "MLFLOW_VAULT_TTL_SEC": "0",  # no helper cache: every get reads Vault
    }
    assert run_helper(["get"], STDIN, env).returncode == 0
    first_token = next(
        r.headers["x-vault-token"] for r in proxy.requests if "x-vault-token" in r.headers
    )
    time.sleep(2.5)
    lookup = vault_ns.bao.api(
        "GET", "auth/token/lookup-self", namespace=vault_ns.name, token=first_token, ok=(403,)
    )
    assert lookup["errors"] == ["permission denied"]  # the first login token is gone
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: Bearer {TOKEN}\n"), result
    assert proxy.count(path="/v1/auth/approle/login") == 2


def test_bad_approle_secret_is_denied(
    run_helper: RunHelper, vault_env: dict[str, str], approle: tuple[str, str]
) -> None:
    role_id, _ = approle
    wrong = "11111111-2222-3333-4444-555555555555"
    env = {**vault_env, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": wrong}
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 3, "backend-denied", "AppRole")
    assert wrong not in result.stderr and role_id not in result.stderr


def test_kubernetes_login(
    run_helper: RunHelper,
    vault_ns: VaultNamespace,
    vault_env: dict[str, str],
    k8s_tokenreview: K8sTokenReview,
    tmp_path: Path,
) -> None:
    """Kubernetes auth; OpenBao checks the service-account token with the loopback
    TokenReview stand-in from tests/support/openbao.py (not a real Kubernetes API)."""
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    policy = vault_ns.reader_policy("secret/data/mlflow/auth")
    vault_ns.bao.enable_auth("kubernetes", namespace=vault_ns.name)
    vault_ns.bao.kubernetes(k8s_tokenreview, "trainer", [policy], namespace=vault_ns.name)
    token_file = tmp_path / "sa-token"
    token_file.write_text(k8s_tokenreview.service_account_jwt())
    env = {
        **vault_env,
        "MLFLOW_VAULT_K8S_ROLE": "trainer",
        "MLFLOW_VAULT_K8S_TOKEN_PATH": str(token_file),
    }
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: Bearer {TOKEN}\n"), result
    env["MLFLOW_VAULT_K8S_ROLE"] = "no-such-role"
    env["MLFLOW_SECRETS_CACHE_DIR"] += "-2"
    assert_error(run_helper(["get"], STDIN, env), 3, "Kubernetes")


# --------------------------------------------------------------------------- failures


def test_permission_denied_names_path_and_auth_method(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    token = reader(vault_ns, "secret/data/elsewhere")
    result = run_helper(["get"], STDIN, {**vault_env, "VAULT_TOKEN": token})
    assert_error(result, 3, "backend-denied", "secret/mlflow/auth", "auth method token")
    assert token not in result.stderr and TOKEN not in result.stderr
    result, document = get_json(run_helper, {**vault_env, "VAULT_TOKEN": token})
    assert result.returncode == 3
    assert document["err"]["kind"] == "backend-denied"
    assert document["err"]["retryable"] is False


def test_missing_path_is_exit_1(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    env = {**vault_env, "VAULT_TOKEN": vault_ns.bao.root_token}
    env["MLFLOW_VAULT_SECRET_PATH"] = "secret/mlflow/does-not-exist"
    assert_error(run_helper(["get"], STDIN, env), 1, "secret/mlflow/does-not-exist")


def test_sealed_server_is_exit_4_and_stale_grace_applies(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns), "MLFLOW_VAULT_TTL_SEC": "1"}
    assert run_helper(["get"], STDIN, env).returncode == 0
    time.sleep(1.2)
    vault_ns.bao.seal()
    try:
        result, document = get_json(run_helper, env)
        assert result.returncode == 0, result
        assert document["ok"]["source"] == "stale"
        assert "sealed" in result.stderr
        no_grace = {**env, "MLFLOW_SECRETS_STALE_GRACE_SEC": "0"}
        assert_error(run_helper(["get"], STDIN, no_grace), 4, "backend-unavailable", "sealed")
    finally:
        vault_ns.bao.unseal()


def test_503_from_a_proxy_is_exit_4(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str], fault_proxy: Any
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(vault_error(503, "upstream connect error"), path="^/v1/secret/", times=None)
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns), "VAULT_ADDR": proxy.url}
    result, document = get_json(run_helper, env)
    assert result.returncode == 4, result
    assert document["err"]["kind"] == "backend-unavailable"
    assert document["err"]["retryable"] is True
    assert proxy.count(path="^/v1/secret/") == 3  # bounded retries


def test_slow_server_past_the_timeout_is_exit_4(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str], fault_proxy: Any
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(delay(4.0), path="^/v1/secret/", times=None)
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns), "VAULT_ADDR": proxy.url}
    start = time.monotonic()
    result = run_helper(["--timeout", "1", "get"], STDIN, env)
    elapsed = time.monotonic() - start
    assert_error(result, 4, "backend-unavailable", "timed out")
    assert elapsed < 3.5


# --------------------------------------------------------------------------- rotation and secrecy


def test_rotation_erase_then_get_returns_the_new_version(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": "before-rotation"})
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns)}
    _, first = get_json(run_helper, env)
    assert first["ok"]["header"]["value"] == "Bearer before-rotation"
    vault_ns.write("mlflow/auth", {"token": "after-rotation"})
    _, cached = get_json(run_helper, env)
    assert cached["ok"]["header"]["value"] == "Bearer before-rotation"
    assert cached["ok"]["source"] == "cache"
    erase = f"protocol=https\nhost={HOST}\ncredential_id={first['ok']['credential_id']}\n\n"
    assert run_helper(["erase"], erase, env).returncode == 0
    _, fresh = get_json(run_helper, env)
    assert fresh["ok"]["header"]["value"] == "Bearer after-rotation"
    assert fresh["ok"]["source"] == "backend"
    assert fresh["ok"]["credential_id"] != first["ok"]["credential_id"]


def test_no_login_material_in_output_logs_or_cache(
    run_helper: RunHelper,
    vault_ns: VaultNamespace,
    vault_env: dict[str, str],
    approle: tuple[str, str],
    tmp_path: Path,
) -> None:
    role_id, secret_id = approle
    vault_token = reader(vault_ns)
    secret_value = TOKEN
    for login in (
        {"VAULT_TOKEN": vault_token},
        {"VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id},
    ):
        env = {**vault_env, **login, "MLFLOW_SECRETS_LOG_LEVEL": "debug"}
        env["MLFLOW_SECRETS_CACHE_DIR"] = str(tmp_path / f"cache-{len(login)}")
        results = [run_helper(["get"], STDIN, env), run_helper(["get"], STDIN, env)]
        results.append(run_helper(["info"], "", env))
        results.append(run_helper(["doctor"], "", env))
        assert results[0].stdout == f"Authorization: Bearer {secret_value}\n"
        for result in results:
            for material in (vault_token, role_id, secret_id):
                assert material not in result.stdout + result.stderr, result
        for result in results[1:]:
            assert secret_value not in result.stderr
        blobs = [
            p.read_bytes() for p in Path(env["MLFLOW_SECRETS_CACHE_DIR"]).rglob("*") if p.is_file()
        ]
        assert blobs, "the cache wrote nothing"
        for blob in blobs:
            for material in (vault_token, role_id, secret_id, secret_value, "secret/mlflow/auth"):
                assert material.encode() not in blob


# --------------------------------------------------------------------------- hints (issue 11.8)


def test_refused_connection_asks_whether_vault_runs(
    run_helper: RunHelper, vault_env: dict[str, str]
) -> None:
    closed = closed_port_url()
    env = {**vault_env, "VAULT_TOKEN": "hvs.unused", "VAULT_ADDR": closed}
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 4, "backend-unavailable", "refused the connection")
    assert f"hint: is Vault running at VAULT_ADDR ({closed})?" in result.stderr
    assert "time" not in result.stderr  # neither "timed out" nor "--timeout"
    assert "sys/internal" not in result.stderr  # Vault's internal API path is not ours to show


def test_https_to_a_plain_http_server_says_so(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    address = vault_ns.bao.http_url.replace("http://", "https://")
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns), "VAULT_ADDR": address}
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 4, "backend-unavailable", "answered in plain HTTP, not TLS")
    assert "use http://" in result.stderr
    assert "VAULT_CACERT" not in result.stderr and "CA" not in result.stderr
    assert "sys/internal" not in result.stderr


@pytest.mark.parametrize("discover", [True, False], ids=["discovered-mount", "set-mount"])
def test_a_valid_token_without_the_policy_is_not_told_to_log_in(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str], discover: bool
) -> None:
    vault_ns.write("mlflow/auth", {"token": TOKEN})
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns, "secret/data/elsewhere")}
    if not discover:
        env.update(MLFLOW_VAULT_MOUNT="secret", MLFLOW_VAULT_KV_VERSION="2")
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 3, "backend-denied", "secret/mlflow/auth")
    assert "vault login" not in result.stderr
    assert "sys/internal" not in result.stderr
    assert "hint: " in result.stderr


def test_an_invalid_token_is_told_to_log_in(
    run_helper: RunHelper, vault_env: dict[str, str]
) -> None:
    env = {**vault_env, "VAULT_TOKEN": "hvs.no-such-token"}
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 3, "backend-denied", "invalid, expired or revoked", "vault login")
    assert "sys/internal" not in result.stderr


def test_not_found_has_a_hint(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    env = {**vault_env, "VAULT_TOKEN": vault_ns.bao.root_token}
    env["MLFLOW_VAULT_SECRET_PATH"] = "secret/mlflow/nothing-here"
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 1, "not-found", "secret/mlflow/nothing-here")
    assert "hint: check MLFLOW_VAULT_SECRET_PATH" in result.stderr
    assert "vault kv get secret/mlflow/nothing-here" in result.stderr
    assert "sys/internal" not in result.stderr


def test_a_timeout_that_is_not_a_number_names_the_unit(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns), "MLFLOW_SECRETS_TIMEOUT_SEC": "ten"}
    result = run_helper(["get"], STDIN, env)
    assert_error(result, 5, "config", "MLFLOW_SECRETS_TIMEOUT_SEC", "seconds, e.g. 10")


# --------------------------------------------------------------------------- secret formats (11.6)


@pytest.mark.parametrize(
    ("stored", "header"),
    [
        ({"token": TOKEN + "\n"}, f"Bearer {TOKEN}"),
        ({"token": TOKEN + "\r\n"}, f"Bearer {TOKEN}"),
        ({"value": TOKEN + "\n"}, f"Bearer {TOKEN}"),
        ({"username": "alice\n", "password": "pw-1\r\n"}, "Basic YWxpY2U6cHctMQ=="),
    ],
    ids=["token-lf", "token-crlf", "plain-lf", "basic-lf-crlf"],
)
def test_one_trailing_line_ending_is_stripped(
    run_helper: RunHelper,
    vault_ns: VaultNamespace,
    vault_env: dict[str, str],
    stored: dict[str, str],
    header: str,
) -> None:
    vault_ns.write("mlflow/auth", stored)
    result = run_helper(["get"], STDIN, {**vault_env, "VAULT_TOKEN": reader(vault_ns)})
    assert (result.returncode, result.stdout) == (0, f"Authorization: {header}\n"), result


#: in every value below; never in a message
MARK = "Q7x"


@pytest.mark.parametrize(
    ("stored", "field", "what"),
    [
        ({"token": MARK + "\n\n"}, "token", "a control character U+000A (line feed) at position 4"),
        ({"token": MARK + "\tdef"}, "token", "a control character U+0009 (tab) at position 4"),
        ({"value": MARK + " def"}, "token", "a whitespace character U+0020 at position 4"),
        ({"token": MARK + "é"}, "token", "a non-ASCII character at position 4"),
        ({"username": MARK + "\x00", "password": MARK}, "username", "a control character U+0000"),
        (
            {"username": MARK, "password": MARK + "\rw"},
            "password",
            "a control character U+000D (carriage return) at position 4",
        ),
    ],
    ids=["two-lf", "tab", "space", "non-ascii", "nul-user", "cr-password"],
)
def test_an_invalid_character_is_named_by_class_and_position_never_by_value(
    run_helper: RunHelper,
    vault_ns: VaultNamespace,
    vault_env: dict[str, str],
    stored: dict[str, str],
    field: str,
    what: str,
) -> None:
    vault_ns.write("mlflow/auth", stored)
    result = run_helper(["get"], STDIN, {**vault_env, "VAULT_TOKEN": reader(vault_ns)})
    reference = f"secret secret/mlflow/auth in namespace {vault_ns.name} at "
    assert_error(result, 5, "invalid-secret", reference, f"the {field} contains {what}")
    assert MARK not in result.stderr


def test_a_user_pass_string_gets_the_basic_hint_never_the_value(
    run_helper: RunHelper, vault_ns: VaultNamespace, vault_env: dict[str, str]
) -> None:
    vault_ns.write("mlflow/auth", {"value": "alice:s3cret-pw\n"})
    env = {**vault_env, "VAULT_TOKEN": reader(vault_ns)}
    # the contract: a plain string is a bearer token, colon or not
    result = run_helper(["get"], STDIN, env)
    assert (result.returncode, result.stdout) == (0, "Authorization: Bearer alice:s3cret-pw\n")
    # with basic configured, the refusal says how to store a username and password
    result = run_helper(["get"], STDIN, {**env, "MLFLOW_VAULT_AUTH_MODE": "basic"})
    assert_error(result, 5, "invalid-secret", "looks like username:password")
    assert 'hint: a username and password are stored as JSON {"username"' in result.stderr
    assert "alice" not in result.stderr and "s3cret" not in result.stderr
    # doctor warns about the shape, also without a value in its output
    result = run_helper(["doctor"], "", env)
    assert "shaped like username:password" in result.stdout
    assert "vault kv put PATH username=... password=..." in result.stdout
    assert "alice" not in result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr
