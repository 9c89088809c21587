"""AWS Secrets Manager provider against moto's server, with faults from the proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    HelperError,
    NotFound,
)
from mlflow_secrets_helper.providers import Provider, Seams, create
from mlflow_secrets_helper.providers.aws import SPEC, AwsSecretsManagerProvider, Version
from mlflow_secrets_helper.secret import parse_secret
from tests.support.contract import CANARY, ProviderContract, deadline
from tests.support.faultproxy import (
    AWS_GET_SECRET_VALUE,
    FaultProxyFactory,
    aws_error,
    closed_port_url,
    delay,
    drop,
    respond,
    truncate,
)
from tests.support.moto_server import AwsBackend

GSV = AWS_GET_SECRET_VALUE


def unique_name() -> str:
    return f"mlflow/{uuid.uuid4().hex[:12]}/token"


def provider(**settings: str) -> AwsSecretsManagerProvider:
    return AwsSecretsManagerProvider(settings, os.environ)


def build(settings: dict[str, str], env: dict[str, str]) -> AwsSecretsManagerProvider:
    return AwsSecretsManagerProvider(settings, env)


@pytest.fixture
def sm(aws: AwsBackend, monkeypatch: pytest.MonkeyPatch) -> AwsBackend:
    """moto, with this process's environment pointing boto3 at it."""
    aws.setenv(monkeypatch)
    return aws


@pytest.fixture
def secret(sm: AwsBackend) -> str:
    name = unique_name()
    sm.create(name, CANARY)
    return name


# ---------------------------------------------------------------------------- contract


class TestAwsContract(ProviderContract):
    sdk_module = "boto3"
    provider_name = "aws-secrets-manager"
    minimal_route = ({"secret_name": "mlflow/token"}, {"AWS_REGION": "us-east-1"})

    @pytest.fixture
    def make_provider(self, sm: AwsBackend) -> Callable[..., Provider]:
        def make(payload: str | bytes, **settings: str) -> Provider:
            name = unique_name()
            sm.create(name, payload)
            return provider(secret_name=name, **settings)

        return make

    @pytest.fixture
    def missing_provider(self, sm: AwsBackend) -> Provider:
        return provider(secret_name="mlflow/does-not-exist")

    @pytest.fixture
    def denied_provider(self, sm: AwsBackend, secret: str) -> Provider:
        sm.proxy.add(aws_error("AccessDeniedException"), header=GSV, times=None)
        return provider(secret_name=secret)

    @pytest.fixture
    def unreachable_provider(self, sm: AwsBackend, monkeypatch: pytest.MonkeyPatch) -> Provider:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", closed_port_url())
        return provider(secret_name="mlflow/anything")

    @pytest.fixture
    def rotate(self, sm: AwsBackend) -> Callable[[Provider, str], None]:
        def rotate(p: Provider, payload: str) -> None:
            assert isinstance(p, AwsSecretsManagerProvider)
            sm.rotate(p.secret_id, payload)

        return rotate


# ------------------------------------------------------------------------- settings


def test_registry_builds_the_provider() -> None:
    built = create("aws-secrets-manager", {"secret_name": "a/b"}, {})
    assert isinstance(built, AwsSecretsManagerProvider)
    assert SPEC.build is AwsSecretsManagerProvider
    assert built.reference() == "aws-secrets-manager:a/b"


def test_secret_name_is_required() -> None:
    with pytest.raises(ConfigError, match="MLFLOW_AWS_SECRET_NAME is not set"):
        build({"region": "us-east-1"}, {})
    with pytest.raises(ConfigError, match="MLFLOW_AWS_SECRET_NAME is not set"):
        build({"secret_name": "  "}, {})


def test_unknown_setting_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown aws-secrets-manager setting 'secret_path'"):
        create("aws-secrets-manager", {"secret_name": "a", "secret_path": "x"}, {})


@pytest.mark.parametrize("bad", ["a b", "a\nb", "x" * 3000])
def test_invalid_secret_name(bad: str) -> None:
    with pytest.raises(ConfigError):
        build({"secret_name": bad}, {})


@pytest.mark.parametrize(
    ("text", "stage", "version_id"),
    [
        ("AWSCURRENT", "AWSCURRENT", None),
        ("AWSPREVIOUS", "AWSPREVIOUS", None),
        ("AWSPENDING", "AWSPENDING", None),
        ("BLUE", "BLUE", None),
        ("green", "green", None),
        (
            "3e5a6c1f-1b2d-4c3e-9f00-0123456789ab",
            None,
            "3e5a6c1f-1b2d-4c3e-9f00-0123456789ab",
        ),
        ("id:EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE", None, "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"),
        (
            "stage:3e5a6c1f-1b2d-4c3e-9f00-0123456789ab",
            "3e5a6c1f-1b2d-4c3e-9f00-0123456789ab",
            None,
        ),
    ],
)
def test_version_is_decided_by_shape(text: str, stage: str | None, version_id: str | None) -> None:
    assert Version.parse(text) == Version(stage=stage, version_id=version_id)


@pytest.mark.parametrize("bad", ["id:", "stage:", "two words", "x" * 300])
def test_invalid_version(bad: str) -> None:
    with pytest.raises(ConfigError):
        build({"secret_name": "a", "secret_version": bad}, {})


def test_reference_names_secret_and_version() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow/prod-AbCdEf"
    p = build({"secret_name": arn, "secret_version": "AWSPREVIOUS"}, {})
    assert p.reference() == f"aws-secrets-manager:{arn}@AWSPREVIOUS"


def test_cache_key_covers_region_endpoint_profile_secret_version() -> None:
    base_env = {"AWS_REGION": "us-east-1"}
    base = build({"secret_name": "s"}, base_env).cache_key()
    variants = [
        build({"secret_name": "s"}, {"AWS_REGION": "eu-west-1"}),
        build({"secret_name": "s", "region": "eu-west-1"}, base_env),
        build({"secret_name": "s"}, {**base_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}),
        build({"secret_name": "s", "profile": "other"}, base_env),
        build({"secret_name": "s"}, {**base_env, "AWS_PROFILE": "other"}),
        build({"secret_name": "t"}, base_env),
        build({"secret_name": "s", "secret_version": "AWSPREVIOUS"}, base_env),
    ]
    keys = [v.cache_key() for v in variants]
    assert base not in keys
    assert keys[0] == keys[1]  # the same region, from the environment or the route
    assert keys[3] == keys[4]  # the same profile, from the environment or the route
    assert len(set(keys)) == len(variants) - 2
    # the default version is AWSCURRENT, spelled or not
    explicit = build({"secret_name": "s", "secret_version": "AWSCURRENT"}, base_env)
    assert explicit.cache_key() == base


def test_cache_key_region_falls_back_to_the_arn() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf"
    key = json.loads(build({"secret_name": arn}, {"AWS_REGION": "us-east-1"}).cache_key())
    assert key["region"] == "eu-west-1"
    key = json.loads(build({"secret_name": arn, "region": "ap-south-1"}, {}).cache_key())
    assert key["region"] == "ap-south-1"


# --------------------------------------------------------------------------- reading


def test_lookup_by_arn(sm: AwsBackend) -> None:
    name = unique_name()
    arn = sm.create(name, CANARY)
    fetched = provider(secret_name=arn).fetch(deadline())
    assert fetched.value.expose() == CANARY


def test_arn_region_wins_over_environment_region(
    sm: AwsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = sm.create(unique_name(), CANARY)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert provider(secret_name=arn).fetch(deadline()).value.expose() == CANARY
    with pytest.raises(NotFound):  # moto keeps secrets per region, like AWS
        provider(secret_name=arn, region="eu-west-1").fetch(deadline())


def test_previous_stage_after_rotation(sm: AwsBackend) -> None:
    name = unique_name()
    sm.create(name, "first-value")
    sm.rotate(name, "second-value")
    current = provider(secret_name=name).fetch(deadline())
    previous = provider(secret_name=name, secret_version="AWSPREVIOUS").fetch(deadline())
    assert current.value.expose() == "second-value"
    assert previous.value.expose() == "first-value"


def test_pending_stage(sm: AwsBackend) -> None:
    name = unique_name()
    sm.create(name, "live")
    sm.client.put_secret_value(SecretId=name, SecretString="next", VersionStages=["AWSPENDING"])
    assert provider(secret_name=name).fetch(deadline()).value.expose() == "live"
    pending = provider(secret_name=name, secret_version="AWSPENDING").fetch(deadline())
    assert pending.value.expose() == "next"


def test_version_id(sm: AwsBackend) -> None:
    name = unique_name()
    sm.create(name, "first-value")
    first_id = sm.version_id(name)
    sm.rotate(name, "second-value")
    fetched = provider(secret_name=name, secret_version=first_id).fetch(deadline())
    assert fetched.value.expose() == "first-value"
    explicit = provider(secret_name=name, secret_version=f"id:{first_id}").fetch(deadline())
    assert explicit.value.expose() == "first-value"


def test_unknown_version_id_is_not_found(secret: str) -> None:
    with pytest.raises(NotFound, match="ResourceNotFoundException"):
        provider(secret_name=secret, secret_version=str(uuid.uuid4())).fetch(deadline())


def test_secret_binary(sm: AwsBackend) -> None:
    name = unique_name()
    sm.create(name, b'{"username": "alice", "password": "s3cret"}')
    fetched = provider(secret_name=name).fetch(deadline())
    assert isinstance(fetched.value.expose(), bytes)
    credential = parse_secret(fetched.value)
    assert credential.mode == "basic"
    assert credential.password is not None and credential.password.expose() == "s3cret"


def test_deleted_secret_is_not_found(sm: AwsBackend, secret: str) -> None:
    sm.delete(secret)
    with pytest.raises(NotFound) as info:
        provider(secret_name=secret).fetch(deadline())
    assert "InvalidRequestException" in info.value.message
    assert secret in info.value.message


def test_always_asks_for_awscurrent(sm: AwsBackend, secret: str) -> None:
    """moto's default version lags behind a stage move; asking for AWSCURRENT avoids it."""
    new_id = sm.rotate(secret, "second-value")
    old_id = sm.version_id(secret, "AWSPREVIOUS")
    # move AWSCURRENT back by hand: moto's unlabelled read now disagrees with the label
    sm.client.update_secret_version_stage(
        SecretId=secret,
        VersionStage="AWSCURRENT",
        MoveToVersionId=old_id,
        RemoveFromVersionId=new_id,
    )
    fetched = provider(secret_name=secret).fetch(deadline())
    assert fetched.value.expose() == CANARY  # the value of old_id, now labelled AWSCURRENT


def test_works_in_a_subprocess_and_is_counted(aws: AwsBackend, helper_env: dict[str, str]) -> None:
    """The endpoint comes from the environment; requests from other processes are counted."""
    name = unique_name()
    aws.create(name, CANARY)
    code = (
        "import os, time\n"
        "from mlflow_secrets_helper.providers.aws import AwsSecretsManagerProvider\n"
        "p = AwsSecretsManagerProvider({'secret_name': os.environ['SECRET']}, os.environ)\n"
        "f = p.fetch(time.monotonic() + 10)\n"
        "print(f.value.expose() == os.environ['EXPECTED'])\n"
    )
    env = {**helper_env, **aws.env(SECRET=name), "EXPECTED": CANARY}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    assert CANARY not in proc.stdout + proc.stderr
    assert aws.get_secret_value_count() == 1


# -------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    "code",
    [
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "DecryptionFailure",
        "SomethingNewException",
    ],
)
def test_denials_are_not_retried(sm: AwsBackend, secret: str, code: str) -> None:
    sm.proxy.add(aws_error(code, message=f"leaky {CANARY}"), header=GSV, times=None)
    with pytest.raises(BackendDenied) as info:
        provider(secret_name=secret).fetch(deadline())
    assert code in info.value.message and secret in info.value.message
    assert CANARY not in info.value.message and "leaky" not in info.value.message
    assert info.value.__cause__ is None
    assert sm.get_secret_value_count() == 1


@pytest.mark.parametrize("code", ["InvalidParameterException", "ValidationException"])
def test_bad_requests_are_configuration_errors(sm: AwsBackend, secret: str, code: str) -> None:
    sm.proxy.add(aws_error(code), header=GSV, times=None)
    with pytest.raises(ConfigError, match=code):
        provider(secret_name=secret).fetch(deadline())
    assert sm.get_secret_value_count() == 1


def test_not_found_is_decided_by_code_not_status(sm: AwsBackend, secret: str) -> None:
    sm.proxy.add(aws_error("ResourceNotFoundException", 400), header=GSV)
    with pytest.raises(NotFound):
        provider(secret_name=secret).fetch(deadline())


def test_throttling_then_success(sm: AwsBackend, secret: str) -> None:
    sm.proxy.add(aws_error("ThrottlingException"), header=GSV, times=2)
    fetched = provider(secret_name=secret).fetch(deadline())
    assert fetched.value.expose() == CANARY
    assert sm.get_secret_value_count() == 3


@pytest.mark.parametrize(
    "fault",
    [
        aws_error("InternalServiceError", 500),
        aws_error("ServiceUnavailable", 503),
        respond(502, "<html>bad gateway</html>", {"Content-Type": "text/html"}),
    ],
    ids=["InternalServiceError", "ServiceUnavailable", "html-502"],
)
def test_server_errors_retry_then_give_up(sm: AwsBackend, secret: str, fault: object) -> None:
    sm.proxy.add(fault, header=GSV, times=None)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable) as info:
        provider(secret_name=secret).fetch(deadline())
    assert info.value.retryable and secret in info.value.message
    assert sm.get_secret_value_count() == 3  # the default attempt limit


def test_one_5xx_is_retried(sm: AwsBackend, secret: str) -> None:
    sm.proxy.add(aws_error("InternalServiceError", 500), header=GSV)
    assert provider(secret_name=secret).fetch(deadline()).value.expose() == CANARY
    assert sm.get_secret_value_count() == 2


def test_aws_max_attempts_is_honoured(
    sm: AwsBackend, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    sm.proxy.add(aws_error("ThrottlingException"), header=GSV, times=None)
    with pytest.raises(BackendUnavailable, match="ThrottlingException"):
        provider(secret_name=secret).fetch(deadline())
    assert sm.get_secret_value_count() == 1


def test_invalid_aws_max_attempts(
    sm: AwsBackend, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "many")
    with pytest.raises(ConfigError, match="max_attempts"):
        provider(secret_name=secret).fetch(deadline())


def test_slow_answer_within_the_deadline_succeeds(sm: AwsBackend, secret: str) -> None:
    sm.proxy.add(delay(0.6), header=GSV)
    assert provider(secret_name=secret).fetch(deadline(5)).value.expose() == CANARY
    assert sm.get_secret_value_count() == 1


def test_read_timeout_stops_at_the_deadline(sm: AwsBackend, secret: str) -> None:
    sm.proxy.add(delay(3.0), header=GSV, times=None)
    start = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        provider(secret_name=secret).fetch(deadline(0.8))
    assert time.monotonic() - start < 2.5
    assert "timeout" in info.value.message and "ReadTimeoutError" in info.value.message
    assert sm.get_secret_value_count() == 1


def test_dropped_connection_is_retried(sm: AwsBackend, secret: str) -> None:
    sm.proxy.add(drop(), header=GSV)
    assert provider(secret_name=secret).fetch(deadline()).value.expose() == CANARY
    assert sm.get_secret_value_count() == 2


@pytest.mark.parametrize(
    "fault", [drop(), drop(reset=True), truncate()], ids=["drop", "reset", "truncate"]
)
def test_broken_connections_are_unavailable(sm: AwsBackend, secret: str, fault: object) -> None:
    sm.proxy.add(fault, header=GSV, times=None)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable) as info:
        provider(secret_name=secret).fetch(deadline())
    assert secret in info.value.message
    assert sm.get_secret_value_count() == 3


def test_deadline_bounds_the_retries(
    sm: AwsBackend, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")
    sm.proxy.add(delay(0.3, then=aws_error("ThrottlingException")), header=GSV, times=None)
    start = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        provider(secret_name=secret).fetch(deadline(1.0))
    assert time.monotonic() - start < 3.0
    attempts = sm.get_secret_value_count()
    assert 1 <= attempts < 10
    assert "timeout" in info.value.message


def test_expired_deadline_sends_nothing(sm: AwsBackend, secret: str) -> None:
    with pytest.raises(BackendUnavailable, match="timeout"):
        provider(secret_name=secret).fetch(time.monotonic() - 1)
    assert sm.get_secret_value_count() == 0


def test_backoff_and_timeouts_use_the_injected_clock(sm: AwsBackend, secret: str) -> None:
    """No sleep may run past the deadline: a pause longer than what is left ends the call."""
    sm.proxy.add(aws_error("ThrottlingException"), header=GSV, times=None)
    sleeps: list[float] = []
    p = AwsSecretsManagerProvider(
        {"secret_name": secret}, os.environ, Seams(sleep=sleeps.append, jitter=lambda: 1.0)
    )
    with pytest.raises(BackendUnavailable):
        p.fetch(deadline())
    assert sleeps == [0.25, 0.5]  # full-jitter backoff at its ceiling, then the limit of 3


def test_client_factory_gets_session_config_and_region(sm: AwsBackend, secret: str) -> None:
    """The client seam receives what boto3 would be given: the botocore session, a
    config whose timeouts end by the deadline with botocore's retries off, and the region."""
    import boto3.session

    calls: list[tuple[float, object, str | None]] = []

    def factory(*, session: object, config: Any, region_name: str | None) -> Any:
        calls.append((config.read_timeout, config.retries, region_name))
        boto = boto3.session.Session(botocore_session=session, region_name=region_name)
        return boto.client("secretsmanager", config=config)

    p = AwsSecretsManagerProvider(
        {"secret_name": secret}, os.environ, Seams(client_factory=factory)
    )
    assert p.fetch(deadline(5)).value.expose() == CANARY
    assert 1 <= len(calls) <= 2  # a slow first build is followed by a quick second one
    for read_timeout, retries, region in calls:
        assert 0 < read_timeout <= 5
        assert retries == {"total_max_attempts": 1, "mode": "standard"}
        assert region == os.environ["AWS_REGION"]


def test_tls_failure_is_unavailable_and_not_retried(
    sm: AwsBackend, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS handshake that fails will fail again: exit 4, but no second attempt."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sm.endpoint.replace("http:", "https:"))
    sleeps: list[float] = []
    p = AwsSecretsManagerProvider({"secret_name": secret}, os.environ, Seams(sleep=sleeps.append))
    with pytest.raises(BackendUnavailable, match=r"^TLS to AWS Secrets Manager failed") as info:
        p.fetch(deadline())
    assert info.value.retryable  # a caller may still try later (stale grace applies)
    assert sleeps == []


def test_no_credentials_is_denied_with_a_hint(
    sm: AwsBackend, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BackendDenied, match="NoCredentialsError") as info:
        provider(secret_name=secret).fetch(deadline())
    assert any("AWS_ACCESS_KEY_ID" in hint for hint in info.value.hints)
    assert sm.get_secret_value_count() == 0


def test_no_region_is_a_configuration_error(
    sm: AwsBackend, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError, match="region") as info:
        provider(secret_name=secret).fetch(deadline())
    assert info.value.hints


def test_missing_profile_is_a_configuration_error(sm: AwsBackend, secret: str) -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        provider(secret_name=secret, profile="nope").fetch(deadline())


def test_invalid_endpoint_is_a_configuration_error(
    sm: AwsBackend, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "not a url")
    with pytest.raises(ConfigError, match="endpoint"):
        provider(secret_name=secret).fetch(deadline())


def test_fault_proxy_fixture_in_front_of_moto(
    aws: AwsBackend,
    fault_proxy: FaultProxyFactory,
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> None:
    outer = fault_proxy(aws.endpoint)
    outer.add(aws_error("ThrottlingException"), header=GSV)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", outer.url)
    assert provider(secret_name=secret).fetch(deadline()).value.expose() == CANARY
    assert outer.count(header=GSV) == 2
    assert aws.get_secret_value_count() == 1  # the throttled attempt never reached moto
    assert [r.action for r in outer.requests] == ["respond 400", "forward"]


def test_errors_never_carry_the_value(sm: AwsBackend, secret: str) -> None:
    errors: list[HelperError] = []
    for fault in (aws_error("AccessDeniedException"), aws_error("InternalServiceError", 500)):
        sm.proxy.clear()
        sm.proxy.add(fault, header=GSV, times=None)
        try:
            provider(secret_name=secret).fetch(deadline())
        except HelperError as exc:
            errors.append(exc)
    assert len(errors) == 2
    for error in errors:
        assert CANARY not in str(error) and CANARY not in repr(error)


def test_building_and_naming_load_no_sdk() -> None:
    """A cache hit builds the provider and asks for its key: neither may load boto3."""
    code = (
        "import sys\n"
        "from mlflow_secrets_helper.providers import create\n"
        "p = create('aws-secrets-manager', {'secret_name': 'a', 'secret_version': 'AWSPREVIOUS'},"
        " {'AWS_REGION': 'us-east-1'})\n"
        "p.reference(); p.cache_key(); repr(p)\n"
        "loaded = [m for m in ('boto3', 'botocore') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- secret formats (11.6)

#: in every value below; never in a message
MARK = "Q7x"


@pytest.mark.parametrize(
    ("stored", "header"),
    [
        (MARK + "-tok\n", f"Bearer {MARK}-tok"),
        (MARK + "-tok\r\n", f"Bearer {MARK}-tok"),
        (b"Q7x-tok\n", f"Bearer {MARK}-tok"),
        ('{"token": "Q7x-tok\\r\\n"}', f"Bearer {MARK}-tok"),
        ('{"username": "u\\n", "password": "p\\r\\n"}', "Basic dTpw"),
    ],
    ids=["string-lf", "string-crlf", "binary-lf", "json-crlf", "basic-lf-crlf"],
)
def test_the_helper_strips_one_trailing_line_ending(
    aws: AwsBackend,
    helper_env: dict[str, str],
    run_helper: Callable[..., Any],
    stored: str | bytes,
    header: str,
) -> None:
    name = unique_name()
    aws.create(name, stored)
    env = {
        **helper_env,
        **aws.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": name,
    }
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: {header}\n"), result


@pytest.mark.parametrize(
    ("stored", "what"),
    [
        (MARK + "\n\n", "the token contains a control character U+000A (line feed) at position 4"),
        (MARK + "\x1b[0m", "the token contains a control character U+001B at position 4"),
        (b"Q7x\x7f", "the token contains a control character U+007F at position 4"),
        ('{"username": "Q7x", "password": "Q7x\\u0085"}', "the password contains a control"),
    ],
    ids=["two-lf", "escape", "binary-del", "c1-in-password"],
)
def test_an_invalid_character_names_the_secret_and_the_class(
    aws: AwsBackend,
    helper_env: dict[str, str],
    run_helper: Callable[..., Any],
    stored: str | bytes,
    what: str,
) -> None:
    name = unique_name()
    aws.create(name, stored)
    env = {
        **helper_env,
        **aws.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": name,
    }
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert (result.returncode, result.stdout) == (5, ""), result
    first = result.stderr.splitlines()[0]
    assert first.startswith("mlflow-secrets-helper: error: invalid-secret: "), first
    assert f"secret aws-secrets-manager:{name}: {what}" in first, first
    assert MARK not in result.stderr


def test_a_user_pass_string_with_basic_mode_gets_the_basic_hint(
    aws: AwsBackend, helper_env: dict[str, str], run_helper: Callable[..., Any]
) -> None:
    name = unique_name()
    aws.create(name, "Q7xuser:Q7xpass\n")
    env = {
        **helper_env,
        **aws.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": name,
        "MLFLOW_AWS_AUTH_MODE": "basic",
    }
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert (result.returncode, result.stdout) == (5, ""), result
    assert "looks like username:password" in result.stderr
    assert 'hint: a username and password are stored as JSON {"username"' in result.stderr
    assert MARK not in result.stderr
