"""File primitives of the cache directory: private files and directories only.

Reads refuse symlinks (``O_NOFOLLOW``), files that are not ours or are open to
others; writes go to a 0600 temporary, are fsynced and renamed into place.
Paths are plain strings here: these run on every cache hit.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import suppress

TMP_PREFIX = ".tmp-"
TMP_MAX_AGE = 60.0

OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """The cache cannot be used for this run; the message is the one warning line."""


def is_private(info: os.stat_result, *, directory: bool = False) -> bool:
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)
    return kind_ok and info.st_uid == os.geteuid() and info.st_mode & 0o077 == 0


def is_own_directory(directory: str) -> bool:
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def describe(path: str, info: os.stat_result, *, directory: bool) -> str | None:
    """Why ``info`` is not a private file/directory of ours, or None when it is."""
    what = "directory" if directory else "file"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symlink"
    if directory and not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if not directory and not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if info.st_uid != os.geteuid():
        return f"{what} {path} is owned by uid {info.st_uid}, not by uid {os.geteuid()}"
    if info.st_mode & 0o077:
        wanted = "700" if directory else "600"
        return (
            f"{what} {path} has mode {stat.S_IMODE(info.st_mode):03o}; "
            f"it must be {wanted} (chmod {wanted} {path})"
        )
    return None


def make_private_directory(path: str) -> None:
    """mkdir with mode 0700 regardless of the umask; an existing entry is left alone."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)


def prepare_directory(directory: str) -> None:
    """Create the cache directory (and at most one missing parent) and check it is private,
    and that its parent belongs to us or to root."""
    if not os.path.isabs(directory):
        raise Refused(f"the cache directory {directory!r} is not an absolute path")
    parent = os.path.dirname(directory)
    try:
        if not os.path.lexists(parent):
            _check_parent(os.path.dirname(parent), parent)
            make_private_directory(parent)
        _check_parent(parent, directory)
        if not os.path.lexists(directory):
            make_private_directory(directory)
        info = os.lstat(directory)
    except OSError as error:
        raise Refused(
            f"cannot create the cache directory {directory}: {error.strerror or error}"
        ) from None
    problem = describe(directory, info, directory=True)
    if problem is not None:
        raise Refused(problem)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise Refused(f"the cache directory {directory} is not writable")


def _check_parent(parent: str, directory: str) -> None:
    """Refuse ``directory`` inside another user's directory (other than root's).

    Under ``sudo -E`` the effective user is root while HOME (and XDG_CACHE_HOME) still
    point at the invoking user's files: a root-owned directory made there would lock the
    user out of their own cache, so nothing is created or written there. (The owner of
    the parent could also move our directory away and put theirs in its place.)
    """
    info = os.stat(parent)
    if info.st_uid not in (os.geteuid(), 0):
        raise Refused(
            f"{parent} belongs to uid {info.st_uid}, not to the effective uid {os.geteuid()} "
            f"(sudo -E?): {directory} is not created or used there"
        )


def read_private_file(path: str, limit: int) -> tuple[bytes, tuple[int, int]]:
    """Read at most ``limit`` bytes of a 0600 regular file we own; raise otherwise.

    Returns the bytes and the file's (device, inode). A symlink fails with ELOOP
    (``OSError``); a file that is not private raises :class:`Refused`.
    """
    fd = os.open(path, OPEN_READ)
    try:
        info = os.fstat(fd)
        problem = describe(path, info, directory=False)
        if problem is not None:
            raise Refused(problem)
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks), (info.st_dev, info.st_ino)
    finally:
        os.close(fd)


def read_or_discard(path: str, limit: int) -> tuple[bytes, tuple[int, int]]:
    """A cache file's bytes and (device, inode), or b"" when there is nothing usable.

    A missing file is simply a miss. A symlink, an empty file, or a file of ours that
    is too open is removed; a foreign-owned file is left alone.
    """
    try:
        data, inode = read_private_file(path, limit)
    except Refused:
        remove_if_ours(path, None)
        return b"", (0, 0)
    except OSError as error:
        if error.errno == errno.ELOOP:
            remove_if_ours(path, None)
        return b"", (0, 0)
    if not data:
        remove_if_ours(path, inode)
    return data, inode


def temp_name(directory: str) -> str:
    """A fresh temporary's path in ``directory`` (swept by :func:`sweep` if abandoned)."""
    return f"{directory}/{TMP_PREFIX}{os.urandom(8).hex()}"


def write_atomically(directory: str, name: str, data: bytes) -> None:
    """Temp file (O_EXCL, 0600) + fsync + rename over ``name`` + fsync of the directory."""
    temp = temp_name(directory)
    fd = os.open(temp, OPEN_NEW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, f"{directory}/{name}")
    except BaseException:
        unlink_quietly(temp)
        raise
    fsync_directory(directory)


def link_new(data: bytes, path: str) -> None:
    """Write ``data`` to a temp file, then link it to ``path``; FileExistsError if taken."""
    temp = temp_name(os.path.dirname(path))
    fd = os.open(temp, OPEN_NEW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, path)
    finally:
        unlink_quietly(temp)
    fsync_directory(os.path.dirname(path))


def remove_exact(path: str, inode: tuple[int, int]) -> bool:
    """Delete ``path`` only if it is still the file (device, inode) we read; True if so.

    The file is moved aside first, and deleted only if it is that one; a file written
    in between is put back (unless an even newer one already took its place).
    """
    aside = temp_name(os.path.dirname(path))
    try:
        os.rename(path, aside)
    except OSError:
        return False
    try:
        moved = os.lstat(aside)
        if (moved.st_dev, moved.st_ino) == inode:
            return True
        with suppress(OSError):
            os.link(aside, path)
        return False
    finally:
        unlink_quietly(aside)


def fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_if_ours(path: str, inode: tuple[int, int] | None) -> None:
    """Unlink a bad file in the cache dir when we own it (and it is still the one we read)."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if info.st_uid != os.geteuid():
        return
    if inode is not None and (info.st_dev, info.st_ino) != inode:
        return
    unlink_quietly(path)


def unlink_quietly(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


def list_names(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as found:
            return [item.name for item in found]
    except OSError:
        return []


def iter_names(directory: str) -> Iterator[str]:
    """The names in ``directory``, read lazily (a caller may stop early)."""
    try:
        with os.scandir(directory) as found:
            for item in found:
                yield item.name
    except OSError:
        return


def remove_stale_temporary(path: str, now: float) -> None:
    """Unlink our temporary at ``path`` when it is older than :data:`TMP_MAX_AGE`."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if info.st_uid == os.geteuid() and now - info.st_mtime > TMP_MAX_AGE:
        unlink_quietly(path)


def touch(path: str) -> None:
    """Create ``path`` (0600) or set its mtime to now."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def sweep(
    directory: str,
    now: float,
    stale: Callable[[str, os.stat_result], bool],
    *,
    limit: int | None = None,
) -> bool:
    """Remove our temporaries older than a minute, and our files that ``stale`` condemns.

    ``stale(name, info)`` is asked about every other file of ours in ``directory``.
    At most ``limit`` names are looked at; True when the whole directory was.
    """
    for looked, name in enumerate(iter_names(directory)):
        if limit is not None and looked >= limit:
            return False
        path = f"{directory}/{name}"
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_uid != os.geteuid():
            continue
        if name.startswith(TMP_PREFIX):
            condemned = now - info.st_mtime > TMP_MAX_AGE
        else:
            condemned = stale(name, info)
        if condemned:
            unlink_quietly(path)
    return True
