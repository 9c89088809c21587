"""The user's files: where the config file and the cache live, and reading the config
file safely (the file and its directory checked, size bounded).

The rules are the FILES, CONFIGURATION FILE and ENVIRONMENT sections of the man page.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from typing import Any

from mlflow_secrets_helper.errors import ConfigError

APP_NAME = "mlflow-secrets-helper"
#: what :func:`config_path` and :func:`cache_dir` return when there is no home directory
NOWHERE = ""


def home_dir(env: Mapping[str, str]) -> str | None:
    """The user's home: ``$HOME`` when it is an absolute path, else the passwd entry's
    home directory, else None. A relative ``$HOME`` counts as unset: it would make the
    config and cache locations depend on the current directory."""
    home = env.get("HOME", "")
    if os.path.isabs(home):
        return home
    import pwd

    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # no passwd entry (a container's arbitrary uid)
        return None
    return home if os.path.isabs(home) else None


def expand_user(path: str, env: Mapping[str, str]) -> str:
    """``~`` and ``~/...`` against :func:`home_dir`; anything else unchanged (a ``~``
    that cannot be expanded stays as it is, and then names no existing file)."""
    if path == "~" or path.startswith("~/"):
        home = home_dir(env)
        if home is not None:
            return home + path[1:]
    return path


def config_path(env: Mapping[str, str]) -> str:
    """The config file's path; :data:`NOWHERE` when there is no home to look in."""
    explicit = env.get("MLFLOW_SECRETS_CONFIG")
    if explicit:
        return expand_user(explicit, env)
    base = _user_dir("config", env)
    return base + "/config.toml" if base else NOWHERE


def cache_dir(env: Mapping[str, str]) -> str:
    """The default cache directory; :data:`NOWHERE` when there is no home to put it in."""
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
            home = home_dir(env)
            if home is None:
                return NOWHERE
            base = os.path.join(home, ".config" if kind == "config" else ".cache")
        return os.path.join(base, APP_NAME)
    import platformdirs

    if kind == "config":
        return platformdirs.user_config_dir(APP_NAME, appauthor=False)
    return platformdirs.user_cache_dir(APP_NAME, appauthor=False)


def read_config_file(path: str, *, required: bool = False) -> dict[str, Any] | None:
    """The TOML document, or None when there is no file (and none was ``required``).

    An unsafe file or directory, a malformed file, or a ``required`` file that is
    missing is a :class:`ConfigError`. A directory is safe when it is owned by the user
    or root and nobody else can write to it; a world-writable directory with the sticky
    bit (``/tmp``) is not safe either (the file's name could be taken before it exists),
    as in OpenSSH's StrictModes.
    """
    if path == NOWHERE:
        return None
    _check_directory(os.path.dirname(os.path.abspath(path)), path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"MLFLOW_SECRETS_CONFIG names {path}, which does not exist",
                hints=["create it, fix the path, or unset MLFLOW_SECRETS_CONFIG"],
            ) from None
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


def _check_directory(directory: str, path: str) -> None:
    """Refuse the config file's directory when another user could replace or delete the
    file in it. A directory that does not exist holds no file: nothing to check."""
    try:
        info = os.stat(directory)
    except OSError:
        return
    if info.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            f"the directory of the config file {path} is owned by uid {info.st_uid}, "
            f"not by uid {os.geteuid()} or root",
            hints=["keep the config file in a directory of your own"],
        )
    if info.st_mode & 0o022:
        raise ConfigError(
            f"the directory of the config file {path} is writable by other users",
            hints=[f"chmod go-w {directory}, or keep the config file in a directory of your own"],
        )
