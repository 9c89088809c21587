"""The user's files: where the config file and the cache live, and reading the config
file safely (owner and permissions checked on the open file, size bounded).

The rules are the FILES and CONFIGURATION FILE sections of the man page.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from typing import Any

from mlflow_secrets_helper.errors import ConfigError

APP_NAME = "mlflow-secrets-helper"


def config_path(env: Mapping[str, str]) -> str:
    explicit = env.get("MLFLOW_SECRETS_CONFIG")
    if explicit:
        return os.path.expanduser(explicit)
    return _user_dir("config", env) + "/config.toml"


def cache_dir(env: Mapping[str, str]) -> str:
    return _user_dir("cache", env)


def _user_dir(kind: str, env: Mapping[str, str]) -> str:
    """The user's config or cache directory for this program.

    On Linux and the BSDs this is the XDG rule platformdirs applies
    (``$XDG_CONFIG_HOME`` / ``$XDG_CACHE_HOME`` when absolute, else
    ``~/.config`` / ``~/.cache``), computed here because importing platformdirs
    costs more than a cache hit's own work. Elsewhere platformdirs decides.
    """
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        base = env.get("XDG_CONFIG_HOME" if kind == "config" else "XDG_CACHE_HOME", "")
        if not os.path.isabs(base):
            home = env.get("HOME") or os.path.expanduser("~")
            base = os.path.join(home, ".config" if kind == "config" else ".cache")
        return os.path.join(base, APP_NAME)
    import platformdirs

    if kind == "config":
        return platformdirs.user_config_dir(APP_NAME, appauthor=False)
    return platformdirs.user_cache_dir(APP_NAME, appauthor=False)


def read_config_file(path: str) -> dict[str, Any] | None:
    """The TOML document, or None when there is no file; an unsafe or malformed file is an
    error."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the config file {path} is not a regular file")
        if info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o022:
            raise ConfigError(
                f"the config file {path} is writable by other users",
                hints=[f"chmod go-w {path}"],
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(1 << 20)
    finally:
        os.close(fd)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    loaded: dict[str, Any] = document
    return loaded
