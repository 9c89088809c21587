"""A server (or job) as a child process: started as the leader of its own process group
with no stdin and its output in a log file, waited for, and stopped with its whole group."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

#: the signals held back while a child is being started with ``die_with_parent``
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StartError(RuntimeError):
    """A server did not come up; ``log`` is its log file (may hold secrets: redact it)."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` of the log (raw: redact before showing it to anyone)."""
        if self.log is None:
            return ""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class PortTaken(StartError):
    """Another process bound the port between our choosing it and the server binding it."""


def _in_child() -> None:
    """In the child, before exec: take the signals the parent held back, and get SIGTERM
    if the parent dies (Linux)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Process:
    """``argv`` as a child process; ``start()`` launches it, ``stop()`` ends its group.

    ``log``: a file for its stdout and stderr; ``None`` gives a pipe in ``proc.stdout``.
    ``die_with_parent``: hold SIGINT/SIGTERM/SIGHUP back while the child is launched (so a
    signal handler that raises cannot lose track of it) and have the kernel send it SIGTERM
    when this process dies. It runs Python code between fork and exec, so use it only in a
    program with no other threads at that moment (the demo), not in a test session.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: Path | None,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    def start(self) -> subprocess.Popen[bytes]:
        out: IO[bytes] | int = subprocess.PIPE
        if self.log is not None:
            out = self.log.open("wb")
        extra: dict[str, Any] = {}
        if self.die_with_parent:
            extra["preexec_fn"] = _in_child
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **extra,
            )
            return self.proc
        finally:
            if not isinstance(out, int):
                out.close()  # the child has its own copy
            if self.die_with_parent:  # last: a held-back signal is handled right here
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready()`` (an ``OSError`` counts as not yet) until it is true; raise
        :class:`PortTaken` or :class:`StartError` if the process exits or time runs out."""
        assert self.proc is not None, f"{self.name} was not started"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if ready():
                    return
            if self.proc.poll() is not None:
                if "address already in use" in self.log_text().lower():
                    raise PortTaken(f"{self.name}: its port was taken", self.log)
                raise StartError(
                    f"{self.name} exited during start-up (exit code {self.proc.returncode})",
                    self.log,
                )
            if time.monotonic() > deadline:
                raise StartError(
                    f"{self.name} did not become ready within {timeout:.0f} s", self.log
                )
            time.sleep(0.05)

    def log_text(self) -> str:
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        """End the process group: SIGTERM (and SIGCONT, so a stopped job sees it), wait up to
        ``grace`` seconds, then SIGKILL whatever is left of the group. Idempotent."""
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
                os.killpg(pgid, signal.SIGCONT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        # Sweep the group: workers that outlived their leader, or a leader that ignored SIGTERM.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


_S = TypeVar("_S", bound="Managed")


class Managed:
    """A server used as a context manager: ``start()`` on entry (stopping what a failed
    start left running), ``stop()`` on exit. Subclasses define both."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
