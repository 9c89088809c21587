"""Mounted secret files: the provider, its setting and variable, its safety rule.

Reads one file that something else keeps up to date: a Kubernetes secret volume or
projected service-account token, a Vault Agent sink, a Secrets Store CSI volume, a
Docker or Compose secret under ``/run/secrets``. The content is a raw token or one of the
JSON formats (the resolver parses it); at most 64 KiB is read.

The file is already the local copy, so nothing is cached: every :meth:`FileProvider.fetch`
reads it again and says, through ``Fetched(local=True)``, that the answer must be asked
for again after :data:`RECHECK_SEC`. A changed file is served at the next read.

Before anything is read, the path is walked from ``/`` one component at a time, following
symbolic links as the kernel would (the kubelet's ``token -> ..data/token`` and
``..data -> ..2026_12_04_...``), and refused when another user could have written the file
or swapped something on the way (:func:`walk`; the rule is in the man page, FILE SOURCE).
The file is then opened once, without following a link at its last component, and
``fstat`` of that descriptor must be the file the walk checked; everything is read from
that descriptor, so a read that races the kubelet's atomic ``..data`` swap returns the old
content or the new one, never a mix. A swap between the walk and the open is detected and
the walk done again, at most :data:`ATTEMPTS` times.

Seams: ``clock`` (when to re-check); nothing else, the file system is the real one.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

from mlflow_secrets_helper import userfiles
from mlflow_secrets_helper.errors import (
    BackendUnavailable,
    ConfigError,
    HelperError,
    InvalidSecret,
    NotFound,
)
from mlflow_secrets_helper.providers.base import DEFAULT_SEAMS, Fetched, ProviderSpec, Seams
from mlflow_secrets_helper.secret import MAX_SECRET_BYTES, Secret

T = TypeVar("T")

NAME = "file"
VARIABLE = "MLFLOW_SECRETS_FILE"
SETTINGS = frozenset({"path"})

#: a mounted file is read again at least this often (a caller asks again after it)
RECHECK_SEC = 10.0
#: walks and opens tried when the file is swapped underneath (the kubelet's ``..data``)
ATTEMPTS = 5
#: symbolic links followed in one walk, as Linux allows (ELOOP past it)
MAX_SYMLINKS = 40
#: mode bits that let a group or others write
_SHARED_WRITE = stat.S_IWGRP | stat.S_IWOTH

_WHERE = f"check {VARIABLE} (or the route's path): is the volume mounted in this container?"


def _configured_path(value: str, env: Mapping[str, str]) -> str:
    text = value.strip()
    if not text:
        raise ConfigError("no secret file is configured", hints=[f"set {VARIABLE}"])
    path = userfiles.expand_user(text, env)
    if "\0" in path:
        raise ConfigError("the secret file path contains a NUL character")
    if not path.startswith("/"):
        raise ConfigError(
            f"the secret file path {path!r} is not absolute",
            hints=[f"set {VARIABLE} to an absolute path (or one starting with ~/)"],
        )
    if path.endswith("/"):
        raise ConfigError(
            f"the secret file path {path!r} ends with '/', so it names a directory",
            hints=[f"set {VARIABLE} to the file itself"],
        )
    return path


class _Changed(Exception):
    """The path changed during the walk or between the walk and the open (a swap): walk
    again. ``where`` is the component that vanished (``vanished``) or was replaced."""

    def __init__(self, where: str, *, vanished: bool) -> None:
        super().__init__(where)
        self.where = where
        self.vanished = vanished


class Walked(NamedTuple):
    """Where a walk ended: the file's real path, its ``lstat``, and whether a symbolic
    link was followed (only then can a swap explain something vanishing)."""

    real: str
    stat: os.stat_result
    linked: bool


def _trusted(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def _who() -> str:
    euid = os.geteuid()
    return "root" if euid == 0 else f"root or uid {euid}"


def _owner(st: os.stat_result) -> str:
    return f"owned by uid {st.st_uid}, not by {_who()}"


def _mode(st: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(st.st_mode):04o}"


def walk(path: str) -> Walked:
    """Resolve ``path`` from ``/`` as the kernel would, checking each step.

    Refused (:class:`ConfigError`): a directory on the way (``/`` and the directories of
    every link target included) owned by someone other than root or the effective user,
    or writable by its group or others without the sticky bit; an entry of a sticky
    directory writable by its group or others that is not owned by root or the effective
    user; a symbolic link owned by someone else; a last component that is not a regular
    file, is owned by someone else or is writable by its group or others. A component
    that does not exist raises :class:`NotFound`, or ``_Changed`` when a symbolic link
    was followed before it (a swap may be under way).
    """
    root = _lstat("/", path, linked=False)
    _check_directory("/", root, path)
    directories: list[tuple[str, os.stat_result]] = [("/", root)]
    pending = _components(path)
    links = 0
    while pending:
        name = pending.pop()
        if name == "..":
            if len(directories) > 1:
                directories.pop()
            continue
        parent, parent_stat = directories[-1]
        here = parent.rstrip("/") + "/" + name
        st = _lstat(here, path, linked=links > 0)
        if parent_stat.st_mode & _SHARED_WRITE and not _trusted(st.st_uid):
            # a sticky directory others can write: only our own or root's entries count
            raise _refused(
                path,
                f"{here} is {_owner(st)}, in {parent}, a directory others can write",
                f"keep the file in a directory only {_who()} can write",
            )
        if stat.S_ISLNK(st.st_mode):
            if not _trusted(st.st_uid):
                raise _refused(
                    path,
                    f"the symbolic link {here} is {_owner(st)}",
                    f"let {_who()} create the link, or point {VARIABLE} at its target",
                )
            links += 1
            if links > MAX_SYMLINKS:
                raise ConfigError(
                    f"the secret file {path}: more than {MAX_SYMLINKS} symbolic links (a loop?)",
                    hints=[_WHERE],
                )
            target = _readlink(here, path)
            if target.startswith("/"):
                del directories[1:]
            pending.extend(_components(target))
            continue
        if pending:
            if not stat.S_ISDIR(st.st_mode):
                raise ConfigError(
                    f"the secret file {path}: {here} is not a directory", hints=[_WHERE]
                )
            _check_directory(here, st, path)
            directories.append((here, st))
            continue
        check_file(path, here, st)
        return Walked(here, st, links > 0)
    # the path named a directory ("/", or one ending in "..")
    raise _is_a_directory(path)


def _components(path: str) -> list[str]:
    """The names of ``path`` in reverse order (``pop`` gives the next), without the
    empty and ``.`` ones."""
    return [name for name in reversed(path.split("/")) if name not in ("", ".")]


def _check_directory(where: str, st: os.stat_result, path: str) -> None:
    if not _trusted(st.st_uid):
        raise _refused(
            path,
            f"the directory {where} is {_owner(st)}",
            f"move the file to a directory owned by {_who()}",
        )
    if st.st_mode & _SHARED_WRITE and not st.st_mode & stat.S_ISVTX:
        raise _refused(
            path,
            f"the directory {where} is writable by its group or others ({_mode(st)}) "
            "and has no sticky bit",
            f"chmod go-w {where}",
        )


def check_file(path: str, real: str, st: os.stat_result) -> None:
    """The last component: a regular file, ours or root's, that only its owner can write."""
    if stat.S_ISDIR(st.st_mode):
        raise _is_a_directory(path)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"the secret file {path} is not a regular file ({real} is a {_kind(st)})",
            hints=[f"point {VARIABLE} at the mounted file itself"],
        )
    if not _trusted(st.st_uid):
        raise _refused(path, f"{real} is {_owner(st)}", f"chown {os.geteuid()} {real}")
    if st.st_mode & _SHARED_WRITE:
        raise _refused(
            path, f"{real} is writable by its group or others ({_mode(st)})", f"chmod go-w {real}"
        )


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _is_a_directory(path: str) -> ConfigError:
    return ConfigError(
        f"the secret file {path} is a directory",
        hints=[f"point {VARIABLE} at the file inside it, e.g. {path.rstrip('/')}/token"],
    )


def _refused(path: str, why: str, hint: str) -> ConfigError:
    return ConfigError(
        f"refusing the secret file {path}: {why}, so another user could change what is read",
        hints=[hint],
    )


def _lstat(here: str, path: str, *, linked: bool) -> os.stat_result:
    try:
        return os.lstat(here)
    except OSError as exc:
        raise _os_error(exc, here, path, linked=linked) from None


def _readlink(here: str, path: str) -> str:
    try:
        return os.readlink(here)  # noqa: PTH115 - the walk works on strings, as the kernel does
    except OSError as exc:  # replaced by something else since its lstat
        raise _os_error(exc, here, path, linked=True) from None


def _os_error(exc: OSError, here: str, path: str, *, linked: bool) -> Exception:
    """The typed error for a failed look at ``here`` on the way to ``path``."""
    import errno  # only a failure needs it: keep it off the cache-hit path

    if exc.errno in (errno.ENOENT, errno.EINVAL):  # EINVAL: readlink of what is no link now
        if linked or exc.errno == errno.EINVAL:
            return _Changed(here, vanished=exc.errno == errno.ENOENT)
        return _missing(path, here)
    if exc.errno == errno.ENOTDIR:
        return ConfigError(f"the secret file {path}: a component of {here} is not a directory")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(
            f"cannot read the secret file {path}: permission denied at {here}",
            hints=[f"the file and its directories must be readable by uid {os.geteuid()}"],
        )
    if exc.errno == errno.ELOOP:  # a link put at the last component since the walk
        return _Changed(here, vanished=False)
    return ConfigError(f"cannot read the secret file {path}: {exc.strerror or 'error'}")


def _missing(path: str, missing: str) -> NotFound:
    where = "" if missing == path else f" ({missing} is missing)"
    return NotFound(f"the secret file {path} does not exist{where}", hints=[_WHERE])


def read_file(path: str) -> str:
    """The text of the secret file at ``path``, checked by :func:`walk` and read from one
    descriptor whose ``fstat`` is the file the walk checked."""
    return _settled(path, lambda: _read_walked(path, walk(path)))


def _settled(path: str, look: Callable[[], T]) -> T:
    """``look()``, done again while a swap changes the path underneath it."""
    for _ in range(ATTEMPTS - 1):
        try:
            return look()
        except _Changed:
            continue
    try:
        return look()
    except _Changed as last:
        # a swap settles at once: what is still missing behind a link (a dangling one) is
        # not there, and a file replaced at every look is rewritten faster than it is read
        if last.vanished:
            raise _missing(path, last.where) from None
        raise BackendUnavailable(
            f"the secret file {path} was replaced {ATTEMPTS} times while it was read",
            hints=["whatever writes the file should replace it with one rename, not rewrite it"],
        ) from None


def _read_walked(path: str, walked: Walked) -> str:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(walked.real, flags)
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise ConfigError(
                f"cannot read the secret file {path}: permission denied",
                hints=[
                    f"make {walked.real} readable by uid {os.geteuid()} (in Kubernetes: "
                    "runAsUser, fsGroup or the volume's defaultMode)"
                ],
            ) from None
        raise _os_error(exc, walked.real, path, linked=walked.linked) from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (walked.stat.st_dev, walked.stat.st_ino):
            raise _Changed(walked.real, vanished=False)
        check_file(path, walked.real, st)
        data = _read_bounded(fd, path)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSecret(f"the secret file {path} is not UTF-8 text") from None


def _read_bounded(fd: int, path: str) -> bytes:
    """At most :data:`MAX_SECRET_BYTES` + 1 bytes: one more is the proof it is too large."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the secret file {path}: {exc.strerror or 'read error'}"
            ) from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_SECRET_BYTES:
            raise InvalidSecret(
                f"the secret file {path} is larger than {MAX_SECRET_BYTES >> 10} KiB",
                hints=[f"point {VARIABLE} at the token file itself"],
            )


def state(path: str) -> str:
    """For ``info``: whether the file is there and passes the safety rule, without
    reading it. One line, never the content."""
    try:
        _settled(path, lambda: walk(path))
    except HelperError as exc:
        return exc.message
    return "present; owner and modes are safe"


class FileProvider:
    """Reads one mounted file, checked and read again at every fetch."""

    def __init__(
        self, settings: Mapping[str, str], env: Mapping[str, str], seams: Seams = DEFAULT_SEAMS
    ) -> None:
        self.path = _configured_path(settings.get("path", ""), env)
        self._seams = seams

    def __repr__(self) -> str:
        return f"FileProvider({self.path!r})"

    def reference(self) -> str:
        return self.path

    def cache_key(self) -> str:
        return f"{NAME}|{self.path}"

    def warnings(self) -> tuple[str, ...]:
        return ()

    def state(self) -> str:
        """Whether the file is there and safe to read (``info``); reads no content."""
        return state(self.path)

    def fetch(self, deadline: float) -> Fetched:
        """Read the file now. Never cached: the caller asks again after RECHECK_SEC."""
        text = read_file(self.path)
        return Fetched(Secret(text), expires_at=self._seams.clock() + RECHECK_SEC, local=True)


SPEC = ProviderSpec(
    name=NAME,
    toggle="MLFLOW_SECRETS_AUTH_ENABLE_FILE",
    env_prefix=VARIABLE,
    sdk="",
    extra="",
    locator="path",
    env_settings=((VARIABLE, "path"),),
    settings=SETTINGS,
    credential_variables=(),
    location_variables=(VARIABLE,),
    build=FileProvider,
)
