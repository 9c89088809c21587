"""AWS Secrets Manager for tests: moto's server on loopback behind a counting proxy.

Fixtures:

``moto_server`` (session)
    a :class:`MotoServer`: moto's ``ThreadedMotoServer`` on ``127.0.0.1:<free
    port>`` in this process, with a :class:`~tests.support.faultproxy.FaultProxy`
    in front of it. Clients under test (in this process or in subprocesses) are
    pointed at the proxy, which logs every request: that is how tests count the
    ``GetSecretValue`` calls other processes make (moto has no request counter).
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

import logging
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from tests.support.faultproxy import FaultProxy

# tests.support.faultproxy is imported inside functions: it is a pytest plugin
# too, and importing it here (before pytest loads it) would skip its assertion
# rewriting.

REGION = "us-east-1"
ACCOUNT = "123456789012"

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


@dataclass
class MotoServer:
    """The session's moto server and the counting proxy in front of it."""

    moto_url: str
    proxy: FaultProxy

    @property
    def endpoint(self) -> str:
        return self.proxy.url

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            response.read()
        self.proxy.clear()


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
        import boto3

        self.endpoint = server.endpoint
        self.moto_url = server.moto_url
        self.proxy = server.proxy
        self.client: SecretsManagerClient = boto3.client(
            "secretsmanager",
            endpoint_url=server.moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

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
        return {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **extra,
        }

    def setenv(self, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
        """Apply :meth:`env` to this process and unset variables that would leak
        the machine's AWS setup (profiles, session tokens, proxies, retry knobs)."""
        for name in _LEAKY:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env(**extra).items():
            monkeypatch.setenv(name, value)

    def get_secret_value_count(self) -> int:
        """GetSecretValue requests that reached ``endpoint`` since the test began."""
        from tests.support.faultproxy import AWS_GET_SECRET_VALUE

        return self.proxy.count(header=AWS_GET_SECRET_VALUE)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    from tests.support.faultproxy import FaultProxy

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    proxy = FaultProxy(moto_url)
    try:
        yield MotoServer(moto_url, proxy)
    finally:
        proxy.stop()
        server.stop()


@pytest.fixture
def aws(moto_server: MotoServer) -> AwsBackend:
    moto_server.reset()
    return AwsBackend(moto_server)
