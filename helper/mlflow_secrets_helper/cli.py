"""The command line: the only module that touches stdin, stdout, stderr and exit codes.

This module owns the argument syntax, the actions (``get``/``store``/``erase``, the
``cache`` commands, ``help``, and handing ``info``/``doctor`` to diagnostics), git's
helper conventions, and the :class:`Reporter` that writes one escaped line per
diagnostic on stderr; :mod:`.output` formats the answer and :mod:`.usage` holds the
help texts. stdout carries the answer and nothing else, written
once, whole, at the end. The rules are the SYNOPSIS, OPTIONS, ACTIONS, OUTPUT and
EXIT STATUS sections of the man page. (A little past 400 lines: git's conventions for
hosts it does not serve live beside the actions they change.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, BinaryIO, TextIO

from mlflow_secrets_helper import __version__
from mlflow_secrets_helper.errors import (
    ConfigError,
    HelperError,
    HostNotConfigured,
    HostRefused,
    InvalidInput,
    UnsupportedScheme,
)
from mlflow_secrets_helper.output import NeedsAuthtype, failure_output, success_output
from mlflow_secrets_helper.text import escape

if TYPE_CHECKING:
    from mlflow_secrets_helper.config import Config
    from mlflow_secrets_helper.resolve import Resolver

# Only stdlib and the small leaves above are imported here: everything else is imported
# once the platform check has passed (DESCRIPTION in the man page names the platforms).

PROG = "mlflow-secrets-helper"
FORMATS = ("header", "token", "json", "git")
ACTIONS = ("get", "store", "erase", "info", "doctor", "cache")
#: git's own verbs, accepted for symmetry with `git credential`
ALIASES = {"fill": "get", "approve": "store", "reject": "erase"}
#: what git mode says nothing about: a host this helper does not serve
NOT_SERVED = (HostRefused, HostNotConfigured, UnsupportedScheme)


def unsupported_platform() -> str | None:
    """Why this platform cannot run the helper, or None. The cache needs POSIX file
    locks and permissions; Windows has neither (WSL has both)."""
    if sys.platform != "win32":
        try:
            import fcntl  # noqa: F401 - what the cache locks with; loaded by it anyway
        except ImportError:
            pass
        else:
            return None
    return "Windows is not supported: run the helper on Linux or macOS, or inside WSL on Windows"


class Invocation:
    """The parsed command line."""

    def __init__(self) -> None:
        self.action = ""
        self.format = "header"
        self.refresh = False
        self.timeout: float | None = None
        self.json = False
        self.dry_run: str | None = None
        self.rest: list[str] = []
        #: --help, -h or the help action: what to describe ("" for the summary)
        self.help: str | None = None


def main(argv: Sequence[str] | None = None) -> int:
    return _start(list(sys.argv[1:] if argv is None else argv), git_program=False)


def git_main(argv: Sequence[str] | None = None) -> int:
    """``git-credential-mlflow-secrets``: the same program speaking git's protocol."""
    args = list(sys.argv[1:] if argv is None else argv)
    return _start(["--format", "git", *args], git_program=True)


def _start(argv: list[str], *, git_program: bool) -> int:
    reason = unsupported_platform()  # first, before anything POSIX-only is imported
    if reason is not None:
        Reporter(sys.stderr, "warning").error(ConfigError(reason))
        return ConfigError.exit_code
    from mlflow_secrets_helper.process import no_core_dumps

    no_core_dumps()
    return run(
        argv,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
        env=os.environ,
        git_program=git_program,
    )


def run(
    argv: list[str],
    *,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    env: Mapping[str, str],
    git_program: bool = False,
) -> int:
    report = Reporter(stderr, env.get("MLFLOW_SECRETS_LOG_LEVEL", "warning"))
    fmt = "header"
    try:
        invocation = parse_args(argv)
        fmt = invocation.format
        if invocation.help is not None:
            _write(stdout, help_text(invocation.help, git_program=git_program))
            return 0
        if invocation.action == "--version":
            _write(stdout, f"{PROG} {__version__}\n")
            return 0
        if git_program and invocation.action not in ACTIONS:
            return 0  # git's rule: ignore actions we do not know
        if invocation.action in ("info", "doctor"):
            from mlflow_secrets_helper import diagnostics

            output, status = diagnostics.run(
                invocation.action,
                rest=invocation.rest,
                as_json=invocation.json,
                dry_run=invocation.dry_run,
                timeout=invocation.timeout,
                env=env,
            )
            _write(stdout, output)
            return status
        output = dispatch(invocation, stdin, env, report)
    except HelperError as exc:
        if fmt == "git" and isinstance(exc, NOT_SERVED) and not isinstance(exc, NeedsAuthtype):
            # git asks every helper about every remote: a host we do not serve is not
            # ours to talk about (git's helper conventions), unless debugging.
            report.debug(f"not served: {exc.message}")
            return 0
        report.flush_pending()
        report.error(exc)
        output = failure_output(fmt, exc)
        if output:
            _write(stdout, output)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - fail closed: a clear line, never a traceback
        report.internal(exc)
        failure = HelperError("unexpected internal error")
        output = failure_output(fmt, failure)
        if output:
            _write(stdout, output)
        return failure.exit_code
    report.flush_pending()
    _write(stdout, output)
    return 0


def help_text(topic: str, *, git_program: bool = False) -> str:
    """The summary (``topic`` empty) or one action's page; an unknown topic is exit 2."""
    from mlflow_secrets_helper import usage

    if not topic:
        return usage.GIT_USAGE if git_program else usage.USAGE
    name = ALIASES.get(topic, topic)
    if name not in usage.topics():
        raise InvalidInput(
            f"no help for {topic!r}", hints=["actions: " + ", ".join(usage.topics())]
        )
    return usage.action_help(name)


def parse_args(argv: list[str]) -> Invocation:
    inv = Invocation()
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, inline = arg.partition("=")
        if name in ("--format", "--timeout", "--dry-run"):
            if not eq:
                if not args:
                    raise InvalidInput(f"{name} needs a value", hints=["see --help"])
                inline = args.pop(0)
            if name == "--format":
                if inline not in FORMATS:
                    raise InvalidInput(
                        f"unknown format {inline!r}", hints=["use header, token, json or git"]
                    )
                inv.format = inline
            elif name == "--timeout":
                inv.timeout = _timeout(inline)
            else:
                inv.dry_run = inline
        elif arg == "--refresh":
            inv.refresh = True
        elif arg == "--json":
            inv.json = True
        elif arg == "--version":
            inv.action = arg
            return inv
        elif arg in ("--help", "-h"):
            inv.help = inv.action if inv.action not in ("", "help") else ""
            if inv.action == "help" or not inv.action:
                inv.help = next((a for a in args if not a.startswith("-")), inv.help)
            return inv
        elif arg.startswith("-"):
            raise InvalidInput(f"unknown option {arg!r}", hints=["see --help"])
        elif not inv.action:
            inv.action = ALIASES.get(arg, arg)
        else:
            inv.rest.append(arg)
    if inv.action == "help":
        if len(inv.rest) > 1:
            raise InvalidInput(
                f"unexpected argument {inv.rest[1]!r}", hints=["usage: help [ACTION]"]
            )
        inv.help = inv.rest[0] if inv.rest else ""
    if not inv.action:
        raise InvalidInput("no action given", hints=["usage: ... get < host", "see --help"])
    return inv


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput("--timeout needs a number of seconds") from None
    if not 0 < value <= 600:
        raise InvalidInput("--timeout must be greater than 0 and at most 600 seconds")
    return value


def dispatch(inv: Invocation, stdin: TextIO, env: Mapping[str, str], report: Reporter) -> str:
    from mlflow_secrets_helper import config as config_module
    from mlflow_secrets_helper.protocol import parse_request, read_request

    if inv.action not in ACTIONS:
        raise InvalidInput(f"unknown action {inv.action!r}", hints=["see --help"])
    config = config_module.load(env, timeout=inv.timeout)
    report.level = config.log_level
    if inv.action == "cache":
        return cache_command(inv.rest, config, env, report)
    if inv.rest:
        raise InvalidInput(f"unexpected argument {inv.rest[0]!r}", hints=["see --help"])

    request = parse_request(read_request(_binary(stdin), timeout=config.timeout_sec))
    if inv.action == "store":
        return ""  # accepted and ignored: we never import foreign secrets

    resolver = make_resolver(config, env, report)
    if inv.action == "erase":
        # git names the credential to erase by its value: `password`, or `credential`
        # for an authtype answer; our own callers name it by `credential_id`.
        attributes = request.attributes
        result = resolver.erase(
            request.target,
            credential_id=_single(attributes, "credential_id"),
            value=_single(attributes, "credential") or _single(attributes, "password"),
        )
        report.debug(f"erase {request.target.origin()}: {result.value}")
        return ""

    _warn_unknown_variables(env, report, defer=inv.format == "git")
    answer = resolver.get(request.target, refresh=inv.refresh)
    for warning in answer.warnings:
        report.warning(warning)
    report.debug(f"served {request.target.origin()} from {answer.source}")
    wanted = _single(request.attributes, "username")
    cred = answer.credential
    if inv.format == "git" and wanted and cred.mode == "basic":
        from mlflow_secrets_helper.secret import Secret

        if cred.username != Secret(wanted):
            # git asks for another account than the store's: let the next helper answer.
            report.debug(f"the secret for {request.target.origin()} is for another username")
            return ""
    authtype = "authtype" in request.attributes.get("capability[]", ())
    return success_output(inv.format, answer, authtype=authtype)


def _warn_unknown_variables(env: Mapping[str, str], report: Reporter, *, defer: bool) -> None:
    """A misspelt variable silently does nothing (a typo'd allowlist is no allowlist):
    one warning each, with the closest known name. In git mode they wait until the
    host turns out to be ours, so other remotes hear nothing."""
    from mlflow_secrets_helper.config import known_variables
    from mlflow_secrets_helper.typos import warnings

    lines = warnings(env, known_variables())
    if defer:
        report.pending.extend(lines)
    else:
        for line in lines:
            report.warning(line)


def make_resolver(config: Config, env: Mapping[str, str], report: Reporter) -> Resolver:
    from mlflow_secrets_helper.cache import open_user_cache
    from mlflow_secrets_helper.resolve import Resolver

    return Resolver(
        config, open_user_cache(config.cache_dir, env, report.warning), env, warn=report.warning
    )


def cache_command(rest: list[str], config: Config, env: Mapping[str, str], report: Reporter) -> str:
    from mlflow_secrets_helper.cache import open_user_cache

    if rest == ["clear"]:
        removed = open_user_cache(config.cache_dir, env, report.warning).clear()
        return f"removed {removed} cache entries from {escape(str(config.cache_dir))}\n"
    if rest == ["status"]:
        # status() lists the cache's warnings itself; do not print them twice.
        status = open_user_cache(config.cache_dir, env).status()
        total = status.hits + status.misses
        rate = f"{100.0 * status.hits / total:.1f}%" if total else "n/a"
        lines = [
            f"location: {escape(str(status.directory))}",
            f"enabled: {'yes' if status.enabled else 'no'}",
            f"entries: {status.entries}",
            f"hits: {status.hits}",
            f"misses: {status.misses}",
            f"hit rate: {rate}",
            f"key: {status.key_location}"
            + (f" ({escape(str(status.key_path))})" if status.key_path else ""),
        ]
        lines += [f"warning: {escape(w)}" for w in status.warnings]
        return "\n".join(lines) + "\n"
    raise InvalidInput("cache needs status or clear", hints=["usage: cache status | cache clear"])


def _single(attributes: Mapping[str, tuple[str, ...]], key: str) -> str | None:
    values = attributes.get(key)
    return values[-1] if values else None


def _binary(stream: TextIO) -> BinaryIO:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        raise InvalidInput("stdin is not readable as bytes")
    return buffer  # type: ignore[no-any-return]


def _write(stream: TextIO, text: str) -> None:
    if not text:
        return
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        # The reader went away: point the descriptor at /dev/null so the
        # interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class Reporter:
    """Diagnostics on stderr: one line each, escaped, filtered by log level."""

    def __init__(self, stream: TextIO, level: str) -> None:
        self._stream = stream
        self.level = level.lower()
        #: warnings held back until the host turns out to be ours (git mode)
        self.pending: list[str] = []

    def flush_pending(self) -> None:
        for line in self.pending:
            self.warning(line)
        self.pending.clear()

    def _enabled(self, level: str) -> bool:
        return _LEVELS[level] >= _LEVELS.get(self.level, 30)

    def _line(self, text: str) -> None:
        try:
            self._stream.write(text + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            pass

    def debug(self, message: str) -> None:
        if self._enabled("debug"):
            self._line(f"{PROG}: debug: {escape(message)}")

    def warning(self, message: str) -> None:
        if self._enabled("warning"):
            self._line(f"{PROG}: warning: {escape(message)}")

    def error(self, exc: HelperError) -> None:
        self._line(f"{PROG}: error: {exc.kind}: {escape(exc.message)}")
        for hint in exc.hints:
            self._line(f"hint: {escape(hint)}")
        if self._enabled("debug") and exc.__cause__ is not None:
            self._traceback(exc.__cause__)

    def internal(self, exc: BaseException) -> None:
        self._line(f"{PROG}: error: internal: unexpected {type(exc).__name__}")
        if self._enabled("debug"):
            self._traceback(exc)
        else:
            self._line("hint: set MLFLOW_SECRETS_LOG_LEVEL=debug for details")

    def _traceback(self, exc: BaseException) -> None:
        import traceback

        for line in traceback.format_exception(type(exc), exc, exc.__traceback__):
            for part in line.rstrip("\n").split("\n"):
                self._line(escape(part))
