"""Per-entry locks: ``fcntl.flock`` on a private lock file, given up at a deadline.

The lock only orders fetches between processes (one fetches, the others then read
its entry); correctness never depends on holding it, so every failure is "not held".
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow_secrets_helper.cache.files import is_private, remove_if_ours

_OPEN_LOCK = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


@contextmanager
def hold(path: str, deadline: float) -> Iterator[bool]:
    """Hold the lock file at ``path``; yields True if it was taken before ``deadline``.

    ``deadline`` is a :func:`time.monotonic` value. A symlink or a lock file that is
    not private is removed (when ours) and not taken.
    """
    try:
        fd = os.open(path, _OPEN_LOCK, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            remove_if_ours(path, None)
        yield False
        return
    try:
        info = os.fstat(fd)
        if not is_private(info):
            os.close(fd)
            fd = -1
            remove_if_ours(path, (info.st_dev, info.st_ino))
            yield False
            return
        acquired = _flock_until(fd, deadline)
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if fd >= 0:
            os.close(fd)


def _flock_until(fd: int, deadline: float) -> bool:
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EINTR):
                return False
        else:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def remove_if_free(path: str) -> bool:
    """Delete a lock file nobody holds (taken without waiting, deleted while held).

    A process that opened it just before may still take the unlinked file's lock while
    another creates a new one: two fetches at once, which the lock only ever saves.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not is_private(os.fstat(fd)):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        try:
            os.unlink(path)
        except OSError:
            return False
        return True
    finally:
        os.close(fd)
