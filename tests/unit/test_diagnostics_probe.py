"""The dry-run request's pure parts: origins, shown URLs, the base path, CA selection and
how an answer is judged. Nothing here opens a connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_secrets_helper.diagnostics import probe
from mlflow_secrets_helper.errors import ConfigError, InvalidInput
from mlflow_secrets_helper.protocol import Target
from mlflow_secrets_helper.secret import Bearer, Secret


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://H.example.com/x", ("https", "h.example.com", 443)),
        ("http://127.0.0.1:5000/", ("http", "127.0.0.1", 5000)),
        ("http://[::1]:80", ("http", "::1", 80)),
        ("ftp://h.example.com", None),
        ("https://h.example.com:99999", None),
    ],
)
def test_origin_of(url: str, origin: tuple[str, str, int] | None) -> None:
    assert probe.origin_of(url) == origin


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://mlflow.example.com", ""),
        ("https://mlflow.example.com/", ""),
        ("https://mlflow.example.com/mlflow/", "/mlflow"),
        ("http://127.0.0.1:5000/a/b", "/a/b"),
        ("mlflow.example.com", ""),  # a bare host has no path
    ],
)
def test_base_path(url: str, path: str) -> None:
    assert probe.base_path(url) == path


def test_base_path_rejects_a_malformed_url() -> None:
    with pytest.raises(InvalidInput, match="invalid URL"):
        probe.base_path("https://[::1/x")


@pytest.mark.parametrize(
    ("status", "refused", "state", "code"),
    [
        (200, None, "ok", 0),
        (204, None, "ok", 0),
        (401, None, "FAIL", 3),
        (403, None, "FAIL", 3),
        (302, "https://login.example.com/", "FAIL", 1),
        (404, None, "FAIL", 1),
        (503, None, "FAIL", 4),
    ],
)
def test_judge(status: int, refused: str | None, state: str, code: int) -> None:
    check = probe._judge("dry run", status, refused, "Authorization")
    assert (check.status, check.exit_code) == (state, code)
    if state == "FAIL" and status != 503:
        assert check.hints


def test_unreadable_ca_bundle_is_a_configuration_failure(tmp_path: Path) -> None:
    check = probe.send_request(
        Target("https", "mlflow.example.com", 443),
        "",
        "Authorization",
        Bearer(Secret("t")).header_value(),
        timeout=1,
        env={"REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem")},
    )
    assert (check.status, check.exit_code) == ("FAIL", 5)
    assert "REQUESTS_CA_BUNDLE" in check.message


def test_the_first_ca_variable_set_wins(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    env = {name: missing for name in probe.CA_VARIABLES}
    for expected in probe.CA_VARIABLES:
        with pytest.raises(ConfigError) as caught:
            probe.tls_context(env)
        assert caught.value.message.startswith(f"{expected} does not name")
        env[expected] = "  "  # blank counts as not set
    assert probe.tls_context(env).verify_mode.name == "CERT_REQUIRED"
