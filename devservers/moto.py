"""AWS Secrets Manager on 127.0.0.1: moto's ``ThreadedMotoServer`` behind a counting proxy.

:class:`MotoServer` runs moto in this process (moto's in-process server shares state with
moto's ``mock_aws`` decorators, so do not mix the two) with a
:class:`~devservers.faultproxy.FaultProxy` in front of it. Clients under test, in this
process or in others, are pointed at the proxy (``endpoint``), which logs every request:
that is how callers count the ``GetSecretValue`` calls other processes make (moto has no
request counter), and where faults are injected. Set-up calls go to moto directly
(``moto_url``, :meth:`MotoServer.client`) so they are not counted::

    with MotoServer() as aws:
        aws.client().create_secret(Name="mlflow/x", SecretString='{"token": "t"}')
        env = {**clean_env, **aws.env(MLFLOW_AWS_SECRET_NAME="mlflow/x")}

Everything stays on 127.0.0.1: :meth:`MotoServer.env` gives dummy credentials,
``AWS_EC2_METADATA_DISABLED`` and empty AWS config files, so botocore neither probes
instance metadata nor reads the machine's profiles.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from devservers.faultproxy import FaultProxy
from devservers.net import LOOPBACK, http_json

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


class MotoServer:
    """moto's server on ``127.0.0.1:<free port>`` and the proxy in front of it."""

    def __init__(self) -> None:
        self.moto_url = ""
        self._proxy: FaultProxy | None = None
        self._server: object | None = None

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self._proxy = FaultProxy(self.moto_url)
        return self

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def proxy(self) -> FaultProxy:
        assert self._proxy is not None, "moto was not started"
        return self._proxy

    @property
    def endpoint(self) -> str:
        """The URL clients under test use (the counting proxy)."""
        return self.proxy.url

    def reset(self) -> None:
        """Forget every secret (moto's reset API) and the proxy's rules and log."""
        status, answer = http_json("POST", f"{self.moto_url}/moto-api/reset")
        if status != 200:
            raise RuntimeError(f"moto answered {status} to reset: {answer!r}")
        self.proxy.clear()

    def client(self) -> SecretsManagerClient:
        """A boto3 ``secretsmanager`` client with dummy credentials that talks to moto
        directly (not counted, no faults)."""
        import boto3

        return boto3.client(
            "secretsmanager",
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def env(self, **extra: str) -> dict[str, str]:
        """Variables that point an AWS SDK at ``endpoint`` with dummy credentials.

        Merge into a clean environment; ``extra`` adds or overrides entries. Provider
        selection is left to the caller.
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
