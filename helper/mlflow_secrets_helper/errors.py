"""The helper's typed errors: every failure it can report is one of these classes.

Each carries its ``kind`` (the word in ``err.kind`` of the JSON output and on stderr),
its exit status, whether a caller may retry later, and optional ``hints`` saying what
to do next. Messages never contain a secret value; they name hosts, paths and secret
references only. Providers raise :class:`NotFound` when the secret does not exist (the
resolver then tries the next route); every other error stops resolution. The exit
statuses are the EXIT STATUS section of the man page.
"""

from __future__ import annotations

from collections.abc import Sequence


class HelperError(Exception):
    """Base class: a failure with a documented kind and exit status."""

    kind = "internal"
    exit_code = 5
    retryable = False

    def __init__(self, message: str, *, hints: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hints = tuple(hints)


class InvalidInput(HelperError):
    """Bad command line or stdin (exit 2)."""

    kind = "invalid-input"
    exit_code = 2


class UnsupportedScheme(InvalidInput):
    """The target's scheme is neither https nor http (exit 2; silent in git mode)."""


class HostRefused(HelperError):
    """The host policy refuses this target (exit 1)."""

    kind = "host-not-allowed"
    exit_code = 1


class HostNotConfigured(HelperError):
    """No route or enabled provider serves this target (exit 1)."""

    kind = "host-not-configured"
    exit_code = 1


class NotFound(HelperError):
    """The configured secret does not exist (exit 1); the next provider may have it."""

    kind = "not-found"
    exit_code = 1


class BackendDenied(HelperError):
    """The backend refused us: bad login, expired login, permission denied (exit 3)."""

    kind = "backend-denied"
    exit_code = 3


class BackendUnavailable(HelperError):
    """Timeout, connection or TLS failure, 5xx or throttling (exit 4); stale grace applies."""

    kind = "backend-unavailable"
    exit_code = 4
    retryable = True


class ConfigError(HelperError):
    """Local configuration is invalid or incomplete (exit 5)."""

    kind = "config"
    exit_code = 5


class InvalidSecret(HelperError):
    """The secret exists but its content cannot make a valid header (exit 5)."""

    kind = "invalid-secret"
    exit_code = 5
