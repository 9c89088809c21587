"""Black-box tests of the installed executable against a real moto server.

Each test runs ``mlflow-secrets-helper`` as a subprocess with a clean
environment, feeds stdin, and checks stdout, stderr and the exit status
exactly. GetSecretValue calls are counted at the proxy in front of moto.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GIT_HELPER, HELPER, RunHelper
from tests.support.faultproxy import AWS_GET_SECRET_VALUE, aws_error, delay
from tests.support.moto_server import AwsBackend

HOST = "mlflow.example.com"
TOKEN = "tok-5b0e9d27c1a84f6e"


@pytest.fixture
def env(aws: AwsBackend, helper_env: dict[str, str]) -> dict[str, str]:
    aws.create("mlflow/prod", json.dumps({"token": TOKEN}))
    return {
        **helper_env,
        **aws.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": "mlflow/prod",
        "MLFLOW_SECRETS_ALLOWED_HOSTS": HOST,
    }


def get_json(run_helper: RunHelper, env: dict[str, str], stdin: str = HOST + "\n") -> dict:
    result = run_helper(["--format", "json", "get"], stdin, env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert result.stdout.count("\n") == 1
    return document["ok"]


# --- output formats ---------------------------------------------------------------


def test_header_is_the_only_output(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["get"], HOST + "\n", env)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"Authorization: Bearer {TOKEN}\n",
        "",
    )


@pytest.mark.parametrize(
    "stdin",
    [
        f"{HOST}\n",
        f"https://{HOST}/api/2.0/mlflow/runs/get?run_id=1\n",
        f"protocol=https\nhost={HOST}\npath=api\n\n",
        f"{HOST.upper()}.",
        f"https://{HOST}:443\n",
    ],
)
def test_three_input_forms(env: dict[str, str], run_helper: RunHelper, stdin: str) -> None:
    result = run_helper(["get"], stdin, env)
    assert result.stdout == f"Authorization: Bearer {TOKEN}\n", result.stderr


def test_basic_secret(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    aws.create("mlflow/basic", json.dumps({"username": "alice", "password": "p:w d"}))
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/basic"
    result = run_helper(["get"], HOST, env)
    expected = base64.b64encode(b"alice:p:w d").decode()
    assert result.stdout == f"Authorization: Basic {expected}\n"


def test_custom_header_name(env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_AUTH_HEADER_NAME"] = "X-MLflow-Auth"
    assert run_helper(["get"], HOST, env).stdout == f"X-MLflow-Auth: Bearer {TOKEN}\n"


def test_invalid_header_name_is_config_error(env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_AUTH_HEADER_NAME"] = "Bad Header"
    result = run_helper(["get"], HOST, env)
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr.startswith("mlflow-secrets-helper: error: config: ")


def test_token_format(env: dict[str, str], run_helper: RunHelper) -> None:
    assert run_helper(["--format", "token", "get"], HOST, env).stdout == TOKEN + "\n"
    assert run_helper(["--format=token", "get"], HOST, env).stdout == TOKEN + "\n"


def test_token_format_refuses_basic(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.create("mlflow/basic", json.dumps({"username": "alice", "password": "pw"}))
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/basic"
    result = run_helper(["--format", "token", "get"], HOST, env)
    assert (result.returncode, result.stdout) == (2, "")


def test_json_format(env: dict[str, str], run_helper: RunHelper) -> None:
    before = time.time()
    first = get_json(run_helper, env)
    after = time.time()
    assert first["header"] == {"name": "Authorization", "value": f"Bearer {TOKEN}"}
    assert first["source"] == "backend"
    assert first["credential_id"].startswith("c1:")
    assert TOKEN not in first["credential_id"]
    assert int(before) <= first["refresh_after"] <= first["expires_at"] <= after + 300
    second = get_json(run_helper, env)
    assert second["source"] == "cache"
    assert second["credential_id"] == first["credential_id"]


def test_json_failure_for_refused_host(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["--format", "json", "get"], "other.example.com\n", env)
    assert result.returncode == 1
    err = json.loads(result.stdout)["err"]
    assert err["kind"] == "host-not-allowed"
    assert err["retryable"] is False
    assert json.loads(result.stdout)["v"] == 1


def test_git_format_basic(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    aws.create("mlflow/basic", json.dumps({"username": "alice", "password": "pw"}))
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/basic"
    result = run_helper(["get"], f"protocol=https\nhost={HOST}\n\n", env, program=GIT_HELPER)
    lines = result.stdout.splitlines()
    assert lines[:2] == ["username=alice", "password=pw"]
    assert lines[2].startswith("password_expiry_utc=")
    assert len(lines) == 3


def test_git_format_bearer_needs_authtype(env: dict[str, str], run_helper: RunHelper) -> None:
    plain = run_helper(["get"], f"protocol=https\nhost={HOST}\n\n", env, program=GIT_HELPER)
    assert (plain.returncode, plain.stdout) == (1, "")
    assert "authtype" in plain.stderr
    stdin = f"capability[]=authtype\nprotocol=https\nhost={HOST}\n\n"
    result = run_helper(["get"], stdin, env, program=GIT_HELPER)
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "capability[]=authtype",
        "authtype=Bearer",
        f"credential={TOKEN}",
        "ephemeral=1",
    ]
    assert lines[4].startswith("password_expiry_utc=")


def test_git_program_is_silent_about_other_protocols(
    env: dict[str, str], run_helper: RunHelper
) -> None:
    result = run_helper(["get"], "protocol=cert\npath=/etc/client.p12\n\n", env, program=GIT_HELPER)
    assert (result.stdout, result.stderr) == ("", "")
    plain = run_helper(["get"], "protocol=cert\npath=/etc/client.p12\n\n", env)
    assert plain.returncode == 2 and "unsupported scheme" in plain.stderr


def test_git_program_ignores_unknown_actions(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["frobnicate"], f"protocol=https\nhost={HOST}\n\n", env, program=GIT_HELPER)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_git_failure_for_served_host_says_quit(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.proxy.add(aws_error("AccessDeniedException"), header=AWS_GET_SECRET_VALUE)
    result = run_helper(["get"], f"protocol=https\nhost={HOST}\n\n", env, program=GIT_HELPER)
    assert (result.returncode, result.stdout) == (3, "quit=1\n")


def test_store_is_a_no_op(env: dict[str, str], run_helper: RunHelper) -> None:
    stdin = f"protocol=https\nhost={HOST}\nusername=u\npassword=p\n\n"
    assert run_helper(["store"], stdin, env) == run_helper(["store"], stdin, env)
    result = run_helper(["store"], stdin, env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_version_and_help(run_helper: RunHelper, helper_env: dict[str, str]) -> None:
    version = run_helper(["--version"], "", helper_env)
    assert version.returncode == 0 and version.stdout.startswith("mlflow-secrets-helper ")
    assert run_helper(["--help"], "", helper_env).stdout.startswith("usage:")


# --- failures and exit codes ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["get"], "user@mlflow.example.com\n"),
        (["get"], "ftp://mlflow.example.com\n"),
        (["get"], "mlflow.example.com:99999\n"),
        (["get"], "mlflow.example.com\r\n"),
        (["get"], ""),
        (["--format", "xml", "get"], HOST),
        (["--timeout", "abc", "get"], HOST),
        (["frobnicate"], HOST),
        ([], HOST),
    ],
)
def test_usage_and_input_errors_exit_2(
    env: dict[str, str], run_helper: RunHelper, args: list[str], stdin: str
) -> None:
    result = run_helper(args, stdin, env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("mlflow-secrets-helper: error: invalid-input: ")
    assert "Traceback" not in result.stderr


def test_hostile_input_is_escaped(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["get"], "https://evil\x1b[31m.example.com/\n", env)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert result.stderr.count("\n") == len(result.stderr.splitlines())


def test_refused_host(env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["get"], "evil.example.org\n", env)
    assert (result.returncode, result.stdout) == (1, "")
    first, *hints = result.stderr.splitlines()
    assert first.startswith("mlflow-secrets-helper: error: host-not-allowed: ")
    assert hints and all(h.startswith("hint: ") for h in hints)


def test_policy_is_checked_before_the_cache(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    assert run_helper(["get"], HOST, env).returncode == 0
    env["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "other.example.com"
    result = run_helper(["get"], HOST, env)
    assert (result.returncode, result.stdout) == (1, "")
    assert aws.get_secret_value_count() == 1


def test_plain_http_only_for_listed_loopback(env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "127.0.0.1:5000"
    assert run_helper(["get"], "http://127.0.0.1:5000\n", env).returncode == 0
    assert run_helper(["get"], "http://127.0.0.1:5001\n", env).returncode == 1
    env["HTTP_PROXY"] = "http://127.0.0.1:9"
    env.pop("NO_PROXY")
    env.pop("no_proxy")
    assert run_helper(["get"], "http://127.0.0.1:5000\n", env).returncode == 1


def test_missing_secret_exits_1(env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/absent"
    result = run_helper(["get"], HOST, env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("mlflow-secrets-helper: error: not-found: ")
    assert "mlflow/absent" in result.stderr


def test_denied_exits_3(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    aws.proxy.add(aws_error("AccessDeniedException"), header=AWS_GET_SECRET_VALUE)
    result = run_helper(["get"], HOST, env)
    assert (result.returncode, result.stdout) == (3, "")
    assert "AccessDeniedException" in result.stderr


def test_unavailable_exits_4(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    aws.proxy.add(aws_error("InternalServiceError", 500), header=AWS_GET_SECRET_VALUE, times=None)
    result = run_helper(["--format", "json", "get"], HOST, env)
    assert result.returncode == 4
    err = json.loads(result.stdout)["err"]
    assert err["kind"] == "backend-unavailable" and err["retryable"] is True


def test_timeout_bounds_the_call(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.proxy.add(delay(5.0), header=AWS_GET_SECRET_VALUE, times=None)
    start = time.monotonic()
    result = run_helper(["--timeout", "1", "get"], HOST, env)
    assert result.returncode == 4
    assert time.monotonic() - start < 4.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLFLOW_SECRETS_ALLOWED_HOSTS", "mlflow.*.com"),
        ("MLFLOW_SECRETS_ALLOWED_HOSTS", "*"),
        ("MLFLOW_SECRETS_ALLOWED_HOSTS", "a.com,,b.com"),
        ("MLFLOW_SECRETS_TIMEOUT_SEC", "ten"),
        ("MLFLOW_AWS_TTL_SEC", "-1"),
        ("MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER", "maybe"),
        ("MLFLOW_AWS_SECRET_NAME", ""),
        ("MLFLOW_AWS_AUTH_MODE", "digest"),
    ],
)
def test_configuration_errors_exit_5(
    env: dict[str, str], run_helper: RunHelper, name: str, value: str
) -> None:
    env[name] = value
    result = run_helper(["get"], HOST, env)
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr.startswith("mlflow-secrets-helper: error: config: ")


def test_no_provider_configured(helper_env: dict[str, str], run_helper: RunHelper) -> None:
    result = run_helper(["get"], HOST, helper_env)
    assert (result.returncode, result.stdout) == (1, "")
    assert "host-not-configured" in result.stderr


@pytest.mark.parametrize("secret", ["tok en", "tok\nen", "{not json", '{"password": "x"}', "é"])
def test_invalid_secret_never_makes_a_header(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper, secret: str
) -> None:
    aws.create("mlflow/bad", secret)
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/bad"
    result = run_helper(["get"], HOST, env)
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr.startswith("mlflow-secrets-helper: error: invalid-secret: ")
    assert secret.strip("{") not in result.stderr or len(secret) < 3


def test_auth_mode_must_match_the_secret(env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_AWS_AUTH_MODE"] = "basic"
    result = run_helper(["get"], HOST, env)
    assert (result.returncode, result.stdout) == (5, "")


def test_binary_secret(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    aws.create("mlflow/bin", json.dumps({"token": "bin-token"}).encode())
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/bin"
    assert run_helper(["get"], HOST, env).stdout == "Authorization: Bearer bin-token\n"


def test_region_from_aws_region_alone(env: dict[str, str], run_helper: RunHelper) -> None:
    env.pop("AWS_DEFAULT_REGION")
    env["AWS_REGION"] = "us-east-1"
    assert run_helper(["get"], HOST, env).stdout == f"Authorization: Bearer {TOKEN}\n"


def test_version_stage(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    aws.rotate("mlflow/prod", "new-token")
    assert run_helper(["get"], HOST, env).stdout == "Authorization: Bearer new-token\n"
    env["MLFLOW_AWS_SECRET_VERSION"] = "AWSPREVIOUS"
    assert run_helper(["get"], HOST, env).stdout == f"Authorization: Bearer {TOKEN}\n"


# --- the cache --------------------------------------------------------------------


def test_second_process_is_served_from_the_cache(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    for _ in range(3):
        assert run_helper(["get"], HOST, env).returncode == 0
    assert aws.get_secret_value_count() == 1


def test_refresh_bypasses_the_cache(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    run_helper(["get"], HOST, env)
    assert get_json(run_helper, env)["source"] == "cache"
    aws.rotate("mlflow/prod", "rotated")
    refreshed = run_helper(["--refresh", "--format", "json", "get"], HOST, env)
    assert json.loads(refreshed.stdout)["ok"]["source"] == "backend"
    assert get_json(run_helper, env)["header"]["value"] == "Bearer rotated"


def test_cache_holds_no_secret_and_no_host(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    aws.create("mlflow/basic", json.dumps({"username": "alice-user", "password": "pw-9f8e7d"}))
    run_helper(["get"], HOST, env)
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/basic"
    env["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "mlflow.example.com,basic.example.com"
    run_helper(["get"], "basic.example.com", env)
    cache_dir = Path(env["MLFLOW_SECRETS_CACHE_DIR"])
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for needle in (TOKEN, "alice-user", "pw-9f8e7d", HOST, "basic.example", "mlflow/prod"):
            assert needle.encode() not in data, (path.name, needle)
            assert needle not in path.name


def test_rotation_with_erase_by_credential_id(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    old = get_json(run_helper, env)
    aws.rotate("mlflow/prod", "rotated-token")
    # A stale id changes nothing: the cached credential is still served.
    stale = f"protocol=https\nhost={HOST}\ncredential_id=c1:000000000000000000000000\n\n"
    assert run_helper(["erase"], stale, env).returncode == 0
    assert get_json(run_helper, env)["header"]["value"] == f"Bearer {TOKEN}"
    # The current id erases; the next get reads the new value.
    current = f"protocol=https\nhost={HOST}\ncredential_id={old['credential_id']}\n\n"
    result = run_helper(["erase"], current, env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    fresh = get_json(run_helper, env)
    assert fresh["header"]["value"] == "Bearer rotated-token"
    assert fresh["source"] == "backend"
    assert fresh["credential_id"] != old["credential_id"]


def test_git_erase_by_value(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    run_helper(["get"], HOST, env)
    other = f"protocol=https\nhost={HOST}\ncredential=not-ours\n\n"
    run_helper(["erase"], other, env, program=GIT_HELPER)
    assert get_json(run_helper, env)["source"] == "cache"
    ours = f"protocol=https\nhost={HOST}\ncredential={TOKEN}\n\n"
    run_helper(["erase"], ours, env, program=GIT_HELPER)
    assert get_json(run_helper, env)["source"] == "backend"


def test_ttl_zero_never_caches(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_AWS_TTL_SEC"] = "0"
    for _ in range(2):
        assert get_json(run_helper, env)["source"] == "backend"
    assert aws.get_secret_value_count() == 2


def test_stale_grace_on_transient_failure(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    env["MLFLOW_AWS_TTL_SEC"] = "1"
    run_helper(["get"], HOST, env)
    time.sleep(1.2)
    aws.proxy.add(aws_error("ThrottlingException"), header=AWS_GET_SECRET_VALUE, times=None)
    result = run_helper(["--format", "json", "get"], HOST, env)
    assert result.returncode == 0
    answer = json.loads(result.stdout)["ok"]
    assert answer["source"] == "stale"
    assert answer["header"]["value"] == f"Bearer {TOKEN}"
    assert answer["expires_at"] > time.time()
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("mlflow-secrets-helper: warning: ")
    # grace off: the failure is reported
    env["MLFLOW_SECRETS_STALE_GRACE_SEC"] = "0"
    assert run_helper(["get"], HOST, env).returncode == 4


def test_no_stale_on_denied(aws: AwsBackend, env: dict[str, str], run_helper: RunHelper) -> None:
    env["MLFLOW_AWS_TTL_SEC"] = "1"
    run_helper(["get"], HOST, env)
    time.sleep(1.2)
    aws.proxy.add(aws_error("AccessDeniedException"), header=AWS_GET_SECRET_VALUE, times=None)
    assert run_helper(["get"], HOST, env).returncode == 3


def test_erased_entry_is_never_served_stale(
    aws: AwsBackend, env: dict[str, str], run_helper: RunHelper
) -> None:
    run_helper(["get"], HOST, env)
    run_helper(["erase"], f"protocol=https\nhost={HOST}\n\n", env)
    aws.proxy.add(aws_error("ThrottlingException"), header=AWS_GET_SECRET_VALUE, times=None)
    assert run_helper(["get"], HOST, env).returncode == 4


def test_unwritable_cache_still_answers(
    env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env["MLFLOW_SECRETS_CACHE_DIR"] = str(blocker / "cache")
    result = run_helper(["get"], HOST, env)
    assert result.stdout == f"Authorization: Bearer {TOKEN}\n"
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("mlflow-secrets-helper: warning: ")


def test_missing_home_still_answers(env: dict[str, str], run_helper: RunHelper) -> None:
    env.pop("MLFLOW_SECRETS_CACHE_DIR")
    env["HOME"] = "/nonexistent-home-for-test"
    env.pop("XDG_CACHE_HOME", None)
    result = run_helper(["get"], HOST, env)
    assert result.stdout == f"Authorization: Bearer {TOKEN}\n"
    assert len(result.stderr.splitlines()) <= 1


def test_loose_cache_dir_is_refused(
    env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    cache = tmp_path / "loose"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)
    env["MLFLOW_SECRETS_CACHE_DIR"] = str(cache)
    result = run_helper(["get"], HOST, env)
    assert result.returncode == 0
    assert "warning" in result.stderr
    assert list(cache.iterdir()) == []


@pytest.mark.slow
def test_32_processes_cause_one_backend_read(aws: AwsBackend, env: dict[str, str]) -> None:
    procs = [
        subprocess.Popen(
            [HELPER, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(32)
    ]
    # Every process is started before any gets its input, so they run together.
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(HOST.encode() + b"\n")
        proc.stdin.close()
    outputs = []
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        outputs.append((proc.stdout.read(), proc.stderr.read()))
        proc.wait(timeout=120)
    assert [proc.returncode for proc in procs] == [0] * 32, outputs
    assert {out for out, _err in outputs} == {f"Authorization: Bearer {TOKEN}\n".encode()}
    assert aws.get_secret_value_count() == 1


def test_cache_hit_imports_no_sdk(aws: AwsBackend, env: dict[str, str]) -> None:
    probe = (
        "import sys\n"
        "from mlflow_secrets_helper.cli import main\n"
        "status = main(['get'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'hvac', 'azure', 'requests', 'urllib3'))\n"
        "sys.stderr.write('LOADED=' + ','.join(loaded) + '\\n')\n"
        "sys.exit(status)\n"
    )

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            input=HOST.encode(),
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        return proc.stderr.decode().strip().splitlines()[-1]

    assert run() != "LOADED="  # the first call reads the backend and loads boto3
    assert run() == "LOADED="  # the cache hit loads nothing of the kind
    assert aws.get_secret_value_count() == 1


# --- the routes file --------------------------------------------------------------


def test_routes_file_serves_hosts_from_different_secrets(
    aws: AwsBackend, helper_env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    aws.create("mlflow/prod", "prod-token")
    aws.create("mlflow/staging", json.dumps({"username": "stage", "password": "pw"}))
    config = tmp_path / "config.toml"
    config.write_text(
        """
header_name = "Authorization"
[[routes]]
hosts = ["mlflow.prod.example.com"]
provider = "aws-secrets-manager"
secret_name = "mlflow/prod"

[[routes]]
hosts = ["*.staging.example.com"]
provider = "aws-secrets-manager"
secret_name = "mlflow/staging"
auth_mode = "basic"
ttl_sec = 60
"""
    )
    config.chmod(0o600)
    env = {**helper_env, **aws.env(), "MLFLOW_SECRETS_CONFIG": str(config)}
    prod = run_helper(["get"], "mlflow.prod.example.com", env)
    assert prod.stdout == "Authorization: Bearer prod-token\n", prod.stderr
    staging = run_helper(["get"], "a.staging.example.com", env)
    assert staging.stdout == "Authorization: Basic " + base64.b64encode(b"stage:pw").decode() + "\n"
    # The routes are the allowlist: anything else is refused.
    assert run_helper(["get"], "a.b.staging.example.com", env).returncode == 1
    assert run_helper(["get"], "mlflow.example.com", env).returncode == 1
    # The environment overrides the file.
    env["MLFLOW_SECRETS_ALLOWED_HOSTS"] = "mlflow.example.com"
    env["MLFLOW_SECRETS_AUTH_ENABLE"] = "aws-secrets-manager"
    env["MLFLOW_AWS_SECRET_NAME"] = "mlflow/prod"
    assert run_helper(["get"], "mlflow.example.com", env).stdout.endswith("prod-token\n")


@pytest.mark.parametrize(
    "text",
    [
        "routes = 3",
        "[[routes]]\nprovider = 'aws-secrets-manager'\nsecret_name = 'x'\n",
        "[[routes]]\nhosts = ['h']\nprovider = 'nope'\n",
        "[[routes]]\nhosts = ['h']\nprovider = 'aws-secrets-manager'\n"
        "secret_name = 'x'\nbogus = 1\n",
        "not toml at all [",
        "unknown_top = 1",
    ],
)
def test_malformed_config_file_exits_5(
    aws: AwsBackend, helper_env: dict[str, str], run_helper: RunHelper, tmp_path: Path, text: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    config.chmod(0o600)
    env = {**helper_env, **aws.env(), "MLFLOW_SECRETS_CONFIG": str(config)}
    result = run_helper(["get"], "h", env)
    assert (result.returncode, result.stdout) == (5, "")
    assert "Traceback" not in result.stderr


def test_world_writable_config_file_is_refused(
    aws: AwsBackend, helper_env: dict[str, str], run_helper: RunHelper, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    config.chmod(0o666)
    env = {**helper_env, **aws.env(), "MLFLOW_SECRETS_CONFIG": str(config)}
    assert run_helper(["get"], "h", env).returncode == 5
