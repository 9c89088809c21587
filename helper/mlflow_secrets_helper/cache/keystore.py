"""Where the cache's master key lives, and loading, creating and forgetting it.

When the runtime directory (``$XDG_RUNTIME_DIR``) is ours, mode 0700 and on tmpfs,
the key is ``<runtime>/mlflow-secrets-helper/<hash of the cache path>.key`` and
never sits beside the entries; otherwise it is the ``key`` file in the cache
directory, and the cache says so in its warnings.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Literal

from mlflow_secrets_helper.cache.entry import hmac_sha256
from mlflow_secrets_helper.cache.files import (
    Refused,
    describe,
    link_new,
    make_private_directory,
    read_private_file,
    unlink_quietly,
)

KeyLocation = Literal["runtime-dir", "key-file", "none"]

KEY_MAGIC = b"MSHKEY\x00\x01"
KEY_FILE = "key"
_RUNTIME_SUBDIR = "mlflow-secrets-helper"
_MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


class MasterKey:
    """The master key of one cache directory, where it lives, and notes about that."""

    __slots__ = ("location", "notes", "path", "secret")

    def __init__(
        self, secret: bytes, location: KeyLocation, path: str | None, notes: tuple[str, ...]
    ) -> None:
        self.secret = secret
        self.location: KeyLocation = location
        self.path = path
        self.notes = notes

    def __repr__(self) -> str:
        return f"MasterKey(<redacted>, {self.location!r})"


def load(directory: str, runtime_dir: str | None) -> MasterKey:
    """Find or create the master key: in the runtime dir when it is safe, else in ``key``.

    Raises :class:`Refused` when the key that is there cannot be used safely.
    """
    runtime_key = runtime_key_path(directory, runtime_dir)
    if runtime_dir is not None and runtime_key is not None:
        reason = _runtime_dir_problem(runtime_dir)
        if reason is None:
            parent = os.path.dirname(runtime_key)
            try:
                make_private_directory(parent)
                info = os.lstat(parent)
            except OSError as error:
                reason = f"cannot create {parent}: {error.strerror or error}"
            else:
                reason = describe(parent, info, directory=True)
        if reason is None:
            return MasterKey(_read_or_create(runtime_key), "runtime-dir", runtime_key, ())
        why = f"the runtime directory is not used ({reason}); "
    else:
        why = "no runtime directory (XDG_RUNTIME_DIR) is set; "
    key_path = f"{directory}/{KEY_FILE}"
    note = (
        why + f"the cache key is kept in {key_path}, beside the entries: "
        "anyone who can read your files can decrypt the cache"
    )
    return MasterKey(_read_or_create(key_path), "key-file", key_path, (note,))


def forget(directory: str, runtime_dir: str | None, key_path: str | None) -> None:
    """Delete the key of ``directory`` wherever it may be (``cache clear``)."""
    runtime_key = runtime_key_path(directory, runtime_dir)
    if runtime_key is not None:
        unlink_quietly(runtime_key)
    if key_path is not None:
        unlink_quietly(key_path)


def runtime_key_path(directory: str, runtime_dir: str | None) -> str | None:
    if runtime_dir is None or not os.path.isabs(runtime_dir):
        return None
    tag = hmac_sha256(b"mlflow-secrets-helper key path", os.fsencode(directory))
    return f"{runtime_dir}/{_RUNTIME_SUBDIR}/{tag.hex()[:16]}.key"


def _runtime_dir_problem(runtime_dir: str) -> str | None:
    try:
        info = os.lstat(runtime_dir)
    except OSError as error:
        return f"{runtime_dir}: {error.strerror or error}"
    problem = describe(runtime_dir, info, directory=True)
    if problem is not None:
        return problem
    if stat.S_IMODE(info.st_mode) != 0o700:
        return f"{runtime_dir} has mode {stat.S_IMODE(info.st_mode):03o}, not 700"
    fstype = _filesystem_type(info.st_dev)
    if fstype not in _MEMORY_FILESYSTEMS:
        return f"{runtime_dir} is not on tmpfs ({fstype or 'unknown filesystem'})"
    return None


def _filesystem_type(device: int) -> str | None:
    """The type of the mounted filesystem with this device number (Linux mountinfo)."""
    try:
        with open("/proc/self/mountinfo", "rb") as mounts:
            table = mounts.read()
    except OSError:
        return None
    wanted = f"{os.major(device)}:{os.minor(device)}".encode()
    for line in table.splitlines():
        # "36 35 98:0 /root /mount/point options [optional fields] - fstype source options"
        fields = line.split(b" ", 3)
        if len(fields) == 4 and fields[2] == wanted:
            _, separator, after = line.partition(b" - ")
            if separator:
                return after.split(b" ", 1)[0].decode("ascii", "replace")
    return None


def _read_or_create(path: str) -> bytes:
    """Read the private key file at ``path`` or create it; refuse one that is not private."""
    for _ in range(3):
        try:
            data, _inode = read_private_file(path, len(KEY_MAGIC) + 33)
        except FileNotFoundError:
            pass
        except Refused as refused:
            raise Refused(f"key {refused}") from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise Refused(f"the key file {path} is a symlink") from None
            raise Refused(f"cannot read the key file {path}: {error.strerror}") from None
        else:
            if len(data) == len(KEY_MAGIC) + 32 and data.startswith(KEY_MAGIC):
                return data[len(KEY_MAGIC) :]
            # Malformed but private and ours: replace it (the entries it wrote are lost anyway).
            unlink_quietly(path)
        master = os.urandom(32)
        try:
            link_new(KEY_MAGIC + master, path)
        except FileExistsError:
            continue  # another process created it first: read theirs
        except OSError as error:
            raise Refused(f"cannot create the key file {path}: {error.strerror}") from None
        return master
    raise Refused(f"the key file {path} keeps changing")
