"""Hit and miss counters shared by every process: one byte appended per call.

Each counter is a private file whose size is the count; both are halved together
when one grows past ``LIMIT`` bytes, so they stay small and keep their ratio.
"""

from __future__ import annotations

import os

from mlflow_secrets_helper.cache.files import is_private

FILES = {True: "hits", False: "misses"}
LIMIT = 1 << 16

_OPEN_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def record(directory: str, hit: bool) -> None:
    """Count one hit or miss; any trouble leaves the counters as they are."""
    try:
        fd = os.open(f"{directory}/{FILES[hit]}", _OPEN_APPEND, 0o600)
    except OSError:
        return
    try:
        info = os.fstat(fd)
        if not is_private(info):
            return
        os.write(fd, b".")
        if info.st_size + 1 >= LIMIT:
            _halve(directory)
    except OSError:
        return
    finally:
        os.close(fd)


def count(directory: str, hit: bool) -> int:
    try:
        info = os.lstat(f"{directory}/{FILES[hit]}")
    except OSError:
        return 0
    return info.st_size if is_private(info) else 0


def _halve(directory: str) -> None:
    for name in FILES.values():
        try:
            fd = os.open(f"{directory}/{name}", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if is_private(info):
                os.ftruncate(fd, info.st_size // 2)
        except OSError:
            pass
        finally:
            os.close(fd)
