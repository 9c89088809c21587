"""Hardening of the helper's own process: no core dumps.

The helper holds the secret and the backend's token in memory; with ``ulimit -c
unlimited`` a crash would write both to disk. As ssh-agent and gpg-agent do, the core
size limit is set to zero (hard limit too, so nothing in the process raises it again)
and, on Linux, the process is marked non-dumpable, which also keeps other processes of
the same user from attaching a debugger or reading its memory through ``/proc``.
It runs on every call, cache hits included: two system calls, no import beyond
``resource`` and (Linux) ``ctypes``'s already-loaded libc handle.
"""

from __future__ import annotations

import sys

PR_SET_DUMPABLE = 4


def no_core_dumps() -> None:
    """Turn core dumps off for this process; best effort (a failure is not an error)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, OSError, ValueError):
        pass
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (ImportError, OSError, AttributeError):
            pass
