"""Running ``mlflow-secrets-helper`` as a child process and validating what it prints.

The command is absolute (the interpreter we run in, isolated, ``-m mlflow_secrets_helper``,
or ``MLFLOW_SECRETS_HELPER_COMMAND``), the target goes in on stdin, no shell is involved,
and the child runs in its own process group so a timeout kills everything it started.
``get`` answers are accepted only as one JSON line of protocol version 1. The helper's
stdout is kept in a :class:`Sealed` box from the moment it is read, and the parser returns
its verdict instead of raising where the plain answer is in scope, so no frame of a
traceback (which crash reporters record with its local variables) holds a credential.
(A little past 400 lines: the process handling and the answer's validation are one job,
running the helper and trusting nothing it prints.)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from mlflow_secrets_shim.errors import HelperError
from mlflow_secrets_shim.origin import Origin

COMMAND_VARIABLE = "MLFLOW_SECRETS_HELPER_COMMAND"
TIMEOUT_VARIABLE = "MLFLOW_SECRETS_TIMEOUT_SEC"
DEFAULT_BACKEND_TIMEOUT = 10.0
# Time on top of the helper's own backend deadline for interpreter start-up and the cache.
STARTUP_ALLOWANCE = 5.0
MAX_OUTPUT = 64 * 1024

# ``err.kind`` values (exit status 1) that mean "this host is not ours": send without a header.
NOT_OURS = frozenset({"host-not-allowed", "host-not-configured"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
_HEADER_VALUE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,16383}")
_CREDENTIAL_ID = re.compile(r"[\x21-\x7e]{1,256}")
_KIND = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_SOURCES = frozenset({"cache", "backend", "stale"})

T = TypeVar("T")


class Sealed(Generic[T]):
    """A credential or the helper's raw answer: ``repr`` and ``str`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def expose(self) -> T:
        """The value itself; call only where it must go out (the request's header)."""
        return self._value

    def __repr__(self) -> str:
        return "Sealed(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Credential:
    """One header from the helper; its value is sealed."""

    header_name: str
    header_value: Sealed[str]
    credential_id: str
    expires_at: float | None
    refresh_after: float | None
    source: str


@dataclass(frozen=True)
class Refusal:
    """The helper has no credential for this origin (not allowed or not configured)."""

    kind: str
    message: str


Answer = Credential | Refusal


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: Sealed[bytes]
    stderr: bytes


Runner = Callable[[list[str], bytes, float, Mapping[str, str]], Completed]


class HelperProcess:
    """Calls the helper's ``get`` and ``erase``. Seams: environment, interpreter, runner."""

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        executable: str = sys.executable,
        runner: Runner | None = None,
    ) -> None:
        self._environ = environ
        self._executable = executable
        self._runner: Runner = runner if runner is not None else run_process_group

    def get(self, origin: Origin) -> Answer:
        done = self._call(["--format", "json", "get"], origin.helper_input())
        return parse_get_answer(done)

    def erase(self, origin: Origin, credential_id: str) -> None:
        done = self._call(["erase"], origin.helper_input(credential_id=credential_id))
        if done.returncode != 0:
            raise HelperError(
                f"mlflow-secrets-helper erase failed for {origin}: {_stderr_reason(done)}"
            )

    def command(self) -> list[str]:
        raw = self._environ.get(COMMAND_VARIABLE, "").strip()
        if not raw:
            if not self._executable or not Path(self._executable).is_absolute():
                raise HelperError(
                    "cannot tell which Python interpreter runs MLflow; "
                    f"set {COMMAND_VARIABLE} to the helper's absolute path",
                    kind="config",
                )
            return [self._executable, "-I", "-m", "mlflow_secrets_helper"]
        try:
            words = shlex.split(raw)
        except ValueError as exc:
            raise HelperError(f"{COMMAND_VARIABLE} cannot be split: {exc}", kind="config") from None
        if not words or not Path(words[0]).is_absolute():
            raise HelperError(
                f"{COMMAND_VARIABLE} must start with an absolute path to the helper",
                kind="config",
            )
        _check_program(words[0])
        return words

    def timeout(self) -> float:
        raw = self._environ.get(TIMEOUT_VARIABLE, "")
        try:
            backend = float(raw) if raw.strip() else DEFAULT_BACKEND_TIMEOUT
        except ValueError:
            backend = DEFAULT_BACKEND_TIMEOUT  # the helper itself reports the bad number
        if not math.isfinite(backend) or backend <= 0:
            backend = DEFAULT_BACKEND_TIMEOUT
        return backend + STARTUP_ALLOWANCE

    def _call(self, args: list[str], stdin: bytes) -> Completed:
        check_platform()
        argv = [*self.command(), *args]
        try:
            return self._runner(argv, stdin, self.timeout(), self._environ)
        except OSError as exc:
            raise HelperError(
                f"cannot run mlflow-secrets-helper ({argv[0]}): {exc.strerror or exc}",
                kind="config",
            ) from None


#: what the plugin and the helper run on (process groups, flock, POSIX permissions)
SUPPORTED = "Linux and macOS"


def check_platform() -> None:
    """Fail with one line where the helper cannot run (Windows: use WSL)."""
    if sys.platform == "win32" or not hasattr(os, "killpg") or not hasattr(os, "geteuid"):
        raise HelperError(
            f"mlflow-secrets-helper runs on {SUPPORTED} only, not on {sys.platform}; "
            "on Windows, run MLflow inside WSL",
            kind="config",
        )


def _check_program(program: str) -> None:
    """Refuse a helper program that another user could replace: the file and its
    directory (as named and with symlinks resolved) must be owned by us or root and not
    writable by group or others, the rule the helper applies to its config file."""
    named, real = Path(program), Path(program).resolve()
    for place in dict.fromkeys((named, named.parent, real, real.parent)):
        try:
            info = place.stat()
        except OSError:
            continue  # a missing program is reported when it is run
        if info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o022:
            who = "writable by group or others" if info.st_mode & 0o022 else "owned by another user"
            shown = printable(str(place))
            raise HelperError(
                f"{COMMAND_VARIABLE} names {printable(program)}, but {shown} is {who}, "
                f"so another user could change what runs; refusing to run it "
                f"(fix with: chmod go-w {shown})",
                kind="config",
            )


def run_process_group(
    argv: list[str], stdin: bytes, timeout: float, environ: Mapping[str, str]
) -> Completed:
    """Run ``argv`` in a new process group; kill the whole group on timeout or flood."""
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        env=dict(environ),
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    finished = False
    try:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out = _read_until_eof(proc, deadline, argv[0])
        remaining = deadline - time.monotonic()
        try:
            returncode = proc.wait(timeout=max(remaining, 0.0))
        except subprocess.TimeoutExpired:
            raise _timed_out(timeout) from None
        finished = True
        return Completed(returncode, out[0], out[1])
    finally:
        if not finished:
            _kill_group(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def _read_until_eof(
    proc: subprocess.Popen[bytes], deadline: float, name: str
) -> tuple[Sealed[bytes], bytes]:
    assert proc.stdout is not None and proc.stderr is not None
    # stdout goes into a sealed buffer: a timeout raised here leaves no plain copy in a frame
    out: Sealed[bytearray] = Sealed(bytearray())
    err = bytearray()
    buffers = {proc.stdout.fileno(): out.expose(), proc.stderr.fileno(): err}
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                del buffers  # no plain copy of stdout in this frame's locals
                raise _timed_out(None)
            for key, _ in selector.select(remaining):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    continue
                buffers[fd] += chunk
                del chunk
                if len(buffers[fd]) > MAX_OUTPUT:
                    del buffers
                    raise HelperError(
                        f"mlflow-secrets-helper ({name}) printed more than {MAX_OUTPUT} bytes; "
                        "it was stopped"
                    )
    return Sealed(bytes(out.expose())), bytes(err)


def _timed_out(timeout: float | None) -> HelperError:
    after = f" after {timeout:g} s" if timeout is not None else ""
    return HelperError(
        f"mlflow-secrets-helper did not answer{after} and was stopped; "
        f"raise {TIMEOUT_VARIABLE} if the secret store is slow",
        kind="timeout",
        retryable=True,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The child leads its own group (start_new_session) and is not reaped yet, so its pid
    # still names that group: nothing else can be hit.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def parse_get_answer(done: Completed) -> Answer:
    """Validate the helper's ``--format json get`` output; raise :class:`HelperError`."""
    verdict = _verdict(done)
    if isinstance(verdict, HelperError):
        raise verdict
    return verdict


def _verdict(done: Completed) -> Answer | HelperError:
    """The answer, or the error to raise; never raises while the plain answer is in scope."""
    document = _one_json_line(done)
    if isinstance(document, HelperError):
        return document
    if set(document) == {"v", "ok"} and done.returncode == 0:
        return _credential(document["ok"], done)
    if set(document) == {"v", "err"} and done.returncode != 0:
        err = document["err"]
        if not isinstance(err, dict):
            return _malformed(done, "err is not an object")
        kind, message = err.get("kind"), err.get("message")
        if not isinstance(kind, str) or not _KIND.fullmatch(kind) or not isinstance(message, str):
            return _malformed(done, "err needs a kind and a message")
        retryable = err.get("retryable") is True
        if kind in NOT_OURS and done.returncode == 1:
            return Refusal(kind, printable(message))
        return HelperError(
            f"mlflow-secrets-helper: {kind}: {printable(message)}", kind=kind, retryable=retryable
        )
    return _malformed(done, "the answer must be ok with exit status 0 or err with a failure status")


def _one_json_line(done: Completed) -> dict[str, Any] | HelperError:
    stdout = done.stdout.expose()
    if not stdout:
        return _malformed(done, "nothing on stdout")
    if stdout.count(b"\n") != 1 or not stdout.endswith(b"\n"):
        return _malformed(done, "stdout must be exactly one line")
    try:
        document = json.loads(stdout.decode("utf-8"))
    except ValueError:
        return _malformed(done, "stdout is not JSON")
    if not isinstance(document, dict):
        return _malformed(done, "stdout is not a JSON object")
    version = document.get("v")
    if type(version) is not int or version != 1:
        return _malformed(done, "unsupported protocol version")
    return document


def _credential(ok: object, done: Completed) -> Credential | HelperError:
    if not isinstance(ok, dict):
        return _malformed(done, "ok is not an object")
    header = ok.get("header")
    if not isinstance(header, dict):
        return _malformed(done, "ok.header is not an object")
    name, value = header.get("name"), header.get("value")
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        return _malformed(done, "ok.header.name is not a valid header name")
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        return _malformed(done, "ok.header.value is not a valid header value")
    credential_id = ok.get("credential_id")
    if not isinstance(credential_id, str) or not _CREDENTIAL_ID.fullmatch(credential_id):
        return _malformed(done, "ok.credential_id is missing or invalid")
    source = ok.get("source")
    if source not in _SOURCES:
        return _malformed(done, "ok.source is not cache, backend or stale")
    times = [_timestamp(ok, key, done) for key in ("expires_at", "refresh_after")]
    for moment in times:
        if isinstance(moment, HelperError):
            return moment
    expires_at, refresh_after = times
    assert not isinstance(expires_at, HelperError) and not isinstance(refresh_after, HelperError)
    return Credential(
        header_name=name,
        header_value=Sealed(value),
        credential_id=credential_id,
        expires_at=expires_at,
        refresh_after=refresh_after,
        source=str(source),
    )


def _timestamp(ok: dict[str, Any], key: str, done: Completed) -> float | HelperError | None:
    if key not in ok:
        return _malformed(done, f"ok.{key} is missing")
    value = ok[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return _malformed(done, f"ok.{key} is not a unix time or null")
    return float(value)


def _malformed(done: Completed, why: str) -> HelperError:
    # Never quote stdout: a broken helper may have printed a secret there.
    reason = f"; it said: {_stderr_reason(done)}" if done.stderr.strip() else ""
    return HelperError(
        f"mlflow-secrets-helper gave an answer this plugin cannot use ({why}; "
        f"exit status {done.returncode}){reason}",
        kind="protocol",
    )


def _stderr_reason(done: Completed) -> str:
    lines = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    line = (errors or lines or [f"exit status {done.returncode}"])[0]
    return printable(line)


def printable(text: str, limit: int = 500) -> str:
    """Control and non-ASCII characters escaped, length bounded: safe for one log line."""
    escaped = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode() for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."
