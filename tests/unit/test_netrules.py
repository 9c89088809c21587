"""The shared network rules: loopback, and one plain-http rule for every backend address."""

from __future__ import annotations

import pytest

from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.netrules import (
    is_loopback_host,
    is_loopback_url,
    require_tls_unless_loopback,
)


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.9.8.7", "::1", "[::1]"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["", "localhost.example.com", "10.0.0.1", "128.0.0.1", "::2", "0.0.0.0", "mylocalhost"]
)
def test_other_hosts(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "https://secretsmanager.us-east-1.amazonaws.com",
        "https://vault.example.com:8200",
        "http://127.0.0.1:5000",
        "http://localhost:8200",
        "HTTP://[::1]:8200",
    ],
)
def test_https_or_loopback_passes(url: str) -> None:
    require_tls_unless_loopback(url, "AWS_ENDPOINT_URL")


@pytest.mark.parametrize(
    "url",
    [
        "http://secretsmanager.example.com",
        "http://10.0.0.1:4566",
        "HTTP://vault.example.com",
        "http://localhost.example.com",
        "http://127.0.0.1.example.com",
        "http://[::1",
    ],
)
def test_plain_http_elsewhere_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        require_tls_unless_loopback(url, "AWS_ENDPOINT_URL")
    assert caught.value.message.startswith("AWS_ENDPOINT_URL ")
    assert "only a loopback address may skip TLS" in caught.value.message
    assert caught.value.exit_code == 5


def test_loopback_url() -> None:
    assert is_loopback_url("http://localhost:1/x")
    assert not is_loopback_url("http://[::1")
    assert not is_loopback_url("")


def test_the_message_hides_user_info() -> None:
    with pytest.raises(ConfigError) as caught:
        require_tls_unless_loopback("http://user:pw@10.0.0.1:4566/?k=v", "AWS_ENDPOINT_URL")
    assert "pw" not in caught.value.message
    assert "10.0.0.1:4566" in caught.value.message
