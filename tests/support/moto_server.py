"""AWS Secrets Manager for tests: fixtures over :class:`devservers.moto.MotoServer`.

Fixtures:

``moto_server`` (session)
    a :class:`~devservers.moto.MotoServer`: moto's ``ThreadedMotoServer`` on
    ``127.0.0.1:<free port>`` in this process, with a
    :class:`~devservers.faultproxy.FaultProxy` in front of it. Clients under test
    (in this process or in subprocesses) are pointed at the proxy, which logs every
    request: that is how tests count the ``GetSecretValue`` calls other processes
    make (moto has no request counter).
    Stopped at session end.

``aws`` (function)
    an :class:`AwsBackend`, after resetting moto's state and clearing the
    proxy's rules and log. Typical use::

        def test_x(aws, helper_env, run_helper):
            arn = aws.create("mlflow/prod", '{"token": "t"}')
            env = {**helper_env, **aws.env(MLFLOW_AWS_SECRET_NAME="mlflow/prod")}
            ...
            assert aws.get_secret_value_count() == 1

    In-process tests use ``aws.setenv(monkeypatch)`` (never ``os.environ[...] =``).
    To inject faults, add rules to ``aws.proxy`` (they are cleared per test)::

        aws.proxy.add(aws_error("ThrottlingException"), header=AWS_GET_SECRET_VALUE)

Everything stays on 127.0.0.1: dummy credentials, ``AWS_EC2_METADATA_DISABLED``
and empty AWS config files keep botocore from probing instance metadata or
reading the machine's profiles. moto's in-process server shares state with
moto's ``mock_aws`` decorators, so tests must not use those.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from devservers.faultproxy import AWS_GET_SECRET_VALUE
from devservers.moto import ACCOUNT, REGION, MotoServer

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["ACCOUNT", "REGION", "AwsBackend", "MotoServer", "aws", "moto_server"]

#: variables that would let the machine's AWS setup leak into a test
_LEAKY = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


class AwsBackend:
    """Per-test handle on moto's Secrets Manager.

    ``endpoint``: the URL clients under test use (the counting proxy).
    ``moto_url``: moto itself (no counting, no faults).
    ``client``: a boto3 ``secretsmanager`` client with dummy credentials that
    talks to moto directly, so set-up calls are not counted.
    ``proxy``: the :class:`FaultProxy` in front of moto (rules and log cleared
    per test).
    """

    region = REGION
    account = ACCOUNT

    def __init__(self, server: MotoServer) -> None:
        self.server = server
        self.endpoint = server.endpoint
        self.moto_url = server.moto_url
        self.proxy = server.proxy
        self.client: SecretsManagerClient = server.client()

    def create(self, name: str, value: str | bytes) -> str:
        """Create a secret (``SecretString`` for str, ``SecretBinary`` for bytes); its ARN."""
        if isinstance(value, bytes):
            response = self.client.create_secret(Name=name, SecretBinary=value)
        else:
            response = self.client.create_secret(Name=name, SecretString=value)
        return response["ARN"]

    def rotate(self, name: str, value: str | bytes) -> str:
        """Put a new AWSCURRENT version (the old one becomes AWSPREVIOUS); its VersionId."""
        if isinstance(value, bytes):
            response = self.client.put_secret_value(SecretId=name, SecretBinary=value)
        else:
            response = self.client.put_secret_value(SecretId=name, SecretString=value)
        return response["VersionId"]

    def version_id(self, name: str, stage: str = "AWSCURRENT") -> str:
        """The VersionId that carries ``stage``."""
        response = self.client.get_secret_value(SecretId=name, VersionStage=stage)
        return response["VersionId"]

    def delete(self, name: str) -> None:
        """Schedule deletion (the secret then reads as 'marked deleted')."""
        self.client.delete_secret(SecretId=name, RecoveryWindowInDays=7)

    def env(self, **extra: str) -> dict[str, str]:
        """Variables that point an AWS SDK at this server with dummy credentials.

        Merge into a clean environment (``{**helper_env, **aws.env()}``); ``extra``
        adds or overrides entries. Provider selection is left to the test.
        """
        return self.server.env(**extra)

    def setenv(self, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
        """Apply :meth:`env` to this process and unset variables that would leak
        the machine's AWS setup (profiles, session tokens, proxies, retry knobs)."""
        for name in _LEAKY:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env(**extra).items():
            monkeypatch.setenv(name, value)

    def get_secret_value_count(self) -> int:
        """GetSecretValue requests that reached ``endpoint`` since the test began."""
        return self.proxy.count(header=AWS_GET_SECRET_VALUE)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoServer) -> AwsBackend:
    moto_server.reset()
    return AwsBackend(moto_server)
