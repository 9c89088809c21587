"""Configuration precedence and defaults, in-process (the CLI tests cover the rest)."""

from __future__ import annotations

import os
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
    (tmp_path / "c.toml").write_text("")
    env = {
        "MLFLOW_SECRETS_CONFIG": str(tmp_path / "c.toml"),
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache"),
    }
    loaded = config.load(env)
    assert loaded.cache_dir == str(tmp_path / "cache")
    assert loaded.config_file == str(tmp_path / "c.toml")


def test_a_named_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    env = {"MLFLOW_SECRETS_CONFIG": str(tmp_path / "c.toml"), "HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"MLFLOW_SECRETS_CONFIG names .*c\.toml.* not exist"):
        config.load(env)
    # the default location, absent, is simply no file
    del env["MLFLOW_SECRETS_CONFIG"]
    assert config.load(env).config_file is None


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o1777])
def test_config_file_in_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    path = directory / "c.toml"
    path.write_text('allowed_hosts = ["mlflow.example.com"]\n')
    path.chmod(0o600)
    directory.chmod(mode)  # 1777: world-writable with the sticky bit, like /tmp: refused too
    env = {"MLFLOW_SECRETS_CONFIG": str(path), "HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"directory of the config file .* writable by other"):
        config.load(env)
    path.unlink()  # another user deleted it: still refused, never "serve every host"
    with pytest.raises(ConfigError, match="directory of the config file"):
        config.load(env)
    directory.chmod(0o700)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(env)


def test_config_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o755)
    path = directory / "c.toml"
    path.write_text("")
    path.chmod(0o644)
    os.chown(directory, 65534, 65534)
    env = {"MLFLOW_SECRETS_CONFIG": str(path), "HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        config.load(env)


def test_a_relative_home_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME=relative/dir must not make the config load from the current directory."""
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "relative" / "dir" / ".config" / "mlflow-secrets-helper"
    planted.mkdir(parents=True)
    (planted / "config.toml").write_text("this is not toml [")
    env = {"HOME": "relative/dir", "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache")}
    loaded = config.load(env)
    assert loaded.config_file is None or os.path.isabs(loaded.config_file)
    assert not userfiles.config_path(env).startswith("relative")
    assert os.path.isabs(userfiles.cache_dir(env))


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
        "HOME": str(tmp_path),
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
