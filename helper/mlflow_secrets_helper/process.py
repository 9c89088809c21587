"""Hardening of the helper's own process: no core dumps.

The helper holds the secret and the backend's token in memory; with ``ulimit -c
unlimited`` a crash would write both to disk. As ssh-agent and gpg-agent do, the core
size limit is set to zero, the hard limit too, so nothing in the process raises it again.
A core handler that ignores the limit (a program in ``core_pattern``) still gets no memory
of the process on Linux: ``/proc/self/coredump_filter`` is cleared, so a core would hold
no mapping at all. It runs on every call, cache hits included, and costs two system calls
and one small write (no ``ctypes``: loading it would cost a cache hit more than its work).
"""

from __future__ import annotations

import sys


def no_core_dumps() -> None:
    """Turn core dumps off for this process; best effort (a failure is not an error)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, OSError, ValueError):
        pass
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/coredump_filter", "w") as mask:
                mask.write("0")
        except OSError:
            pass
