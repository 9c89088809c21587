"""The process-level backstop for ``--timeout``: a backend read ends at the deadline.

Providers cut every socket timeout to the time left, but a socket timeout restarts with
every byte received, so a backend that drips its answer (or an SDK that does something
we did not foresee) could keep a read going far past the deadline while the per-entry
cache lock is held. :func:`guard` arms an interval timer (``SIGALRM``) in the main
thread for the duration of one backend read; when it fires, :class:`Expired` is raised
wherever the main thread is (Python retries an interrupted system call only when the
signal handler returns, so a blocked ``recv`` ends too). ``Expired`` derives from
``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` in an SDK
swallows it, and :func:`guard` turns it into :class:`BackendUnavailable` at its own
boundary (so stale-if-error still applies).

Why a signal rather than a watchdog thread: only the main thread can be interrupted in
a blocking call, and the read happens there for Vault and AWS. No entry is written to the
cache inside the guard (it is stored after the read returns; a provider's note, such as
Vault's mount, is written atomically and its temporary removed on any exception), and
the lock is released by the caller's ``with`` block as the exception unwinds (the flock
also ends with the process), so an interrupted read leaves no half-written file and no
held lock. Outside the main thread (or where
``SIGALRM`` does not exist) the guard does nothing and the providers' own timeouts apply.

The rule is in the man page (OPTIONS, ``--timeout``): a read ends at most
:data:`GRACE_SEC` after the deadline.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mlflow_secrets_helper.errors import BackendUnavailable

#: the guard fires this long after the deadline, so the providers' own timeouts (with
#: their more precise messages) normally end a slow read first
GRACE_SEC = 0.25


class Expired(BaseException):
    """Raised in the main thread by the timer; only :func:`guard` catches it."""


@contextmanager
def guard(
    deadline: float, monotonic: Callable[[], float], describe: Callable[[], str]
) -> Iterator[None]:
    """Run the body, interrupting it :data:`GRACE_SEC` after ``deadline`` (a
    ``monotonic()`` value) with :class:`BackendUnavailable` saying ``describe()``."""
    in_main = threading.current_thread() is threading.main_thread()
    if not in_main or not hasattr(signal, "setitimer"):
        yield
        return
    seconds = max(deadline - monotonic(), 0.0) + GRACE_SEC
    token = object()

    def expire(signum: int, frame: object) -> None:
        raise Expired(token)

    previous = signal.signal(signal.SIGALRM, expire)
    # a timer someone else armed (a test runner's timeout) is put back afterwards
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    started = monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            # the timer fires once: if it fired in here, the except below still sees it
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Expired as expired:
        if expired.args != (token,):
            raise
        raise BackendUnavailable(
            f"{describe()} did not answer within the timeout (stopped {GRACE_SEC:g} s after it)",
            hints=["raise --timeout / MLFLOW_SECRETS_TIMEOUT_SEC or check the backend"],
        ) from None
    finally:
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (monotonic() - started), 0.001))
