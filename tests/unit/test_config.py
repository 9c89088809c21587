"""Configuration precedence and defaults, in-process (the CLI tests cover the rest)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlflow_secrets_helper import config, userfiles
from mlflow_secrets_helper.errors import ConfigError

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG rule")


@linux_only
def test_default_dirs_follow_xdg() -> None:
    env = {"HOME": "/home/u"}
    assert userfiles.cache_dir(env) == "/home/u/.cache/mlflow-secrets-helper"
    assert userfiles.config_path(env) == "/home/u/.config/mlflow-secrets-helper/config.toml"
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "/fast", "XDG_CONFIG_HOME": "relative"}
    assert userfiles.cache_dir(env) == "/fast/mlflow-secrets-helper"
    # a relative XDG variable is ignored, as the XDG spec (and platformdirs) say
    assert Path(userfiles.config_path(env)).parent == Path("/home/u/.config/mlflow-secrets-helper")


@linux_only
def test_default_dirs_agree_with_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    env = {"HOME": "/home/u"}
    assert str(userfiles.cache_dir(env)) == platformdirs.user_cache_dir(
        "mlflow-secrets-helper", appauthor=False
    )
    assert str(Path(userfiles.config_path(env)).parent) == platformdirs.user_config_dir(
        "mlflow-secrets-helper", appauthor=False
    )


def test_explicit_locations_win(tmp_path: Path) -> None:
    env = {
        "MLFLOW_SECRETS_CONFIG": str(tmp_path / "c.toml"),
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache"),
    }
    loaded = config.load(env)
    assert loaded.cache_dir == str(tmp_path / "cache")
    assert loaded.config_file is None  # the file does not exist, which is fine


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("timeout_sec = 3\nstale_grace_sec = 7\n")
    path.chmod(0o600)
    env = {"MLFLOW_SECRETS_CONFIG": str(path), "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path)}
    assert config.load(env).timeout_sec == 3
    assert config.load(env).stale_grace_sec == 7
    env["MLFLOW_SECRETS_TIMEOUT_SEC"] = "4"
    assert config.load(env).timeout_sec == 4
    assert config.load(env, timeout=5).timeout_sec == 5


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault,vault"}, ("vault", "azure-key-vault")),
        ({"MLFLOW_SECRETS_AUTH_ENABLE_AWS_SECRETS_MANAGER": "yes"}, ("aws-secrets-manager",)),
        (
            {"MLFLOW_SECRETS_AUTH_ENABLE": "vault", "MLFLOW_SECRETS_AUTH_ENABLE_VAULT": "false"},
            (),
        ),
        ({}, ()),
    ],
)
def test_enabled_providers_in_priority_order(
    env: dict[str, str], expected: tuple[str, ...]
) -> None:
    assert config.enabled_providers(env) == expected


def test_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        config.enabled_providers({"MLFLOW_SECRETS_AUTH_ENABLE": "keepass"})


def test_enabled_provider_without_secret_is_skipped(tmp_path: Path) -> None:
    env = {
        "MLFLOW_SECRETS_CONFIG": str(tmp_path / "none.toml"),
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path),
        "MLFLOW_SECRETS_AUTH_ENABLE": "vault,aws-secrets-manager",
        "MLFLOW_AWS_SECRET_NAME": "mlflow/prod",
    }
    loaded = config.load(env)
    assert [r.provider for r in loaded.routes] == ["aws-secrets-manager"]
    assert loaded.skipped == ("vault",)
    del env["MLFLOW_AWS_SECRET_NAME"]
    with pytest.raises(ConfigError, match="no enabled provider names its secret"):
        config.load(env)
