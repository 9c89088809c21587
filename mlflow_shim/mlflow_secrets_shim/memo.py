"""The helper's answers kept in memory per origin, with one refresh at a time.

A credential is reused until the helper's ``refresh_after`` (never past ``expires_at``);
then one thread asks the helper again while the others wait for its answer. After a
401 or 403 the rejected credential is erased by id and replaced, again by one thread:
the others find the new credential already in place. Locks are recreated in a forked
child, so a fork taken while a refresh was running cannot deadlock the child.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple, Protocol

from mlflow_secrets_shim.errors import HelperError
from mlflow_secrets_shim.invocation import Answer, Credential, Refusal
from mlflow_secrets_shim.origin import Origin

_log = logging.getLogger("mlflow_secrets_shim")

# How long an answer is reused when the helper gives no refresh_after and no expires_at.
DEFAULT_REUSE = 300.0
# A "not ours" answer is asked again after this long (the configuration may change).
REFUSAL_REUSE = 60.0
# A failure is repeated to callers for this long instead of starting a helper per request.
FAILURE_REUSE = 2.0
# When a scheduled refresh fails but the old credential has not expired, keep using it and
# try again after this long.
RETRY_REFRESH_AFTER = 15.0
# A credential the helper confirmed after a 401 (the store still holds it: the server was
# changed first) is checked again after this long, so the job recovers once the store is
# updated, while a storm of 401s causes at most one backend read per credential per period.
RECHECK_401_AFTER = 3.0


class Helper(Protocol):
    def get(self, origin: Origin) -> Answer: ...

    def erase(self, origin: Origin, credential_id: str) -> None: ...


class _Entry(NamedTuple):
    answer: Credential | Refusal | HelperError
    reuse_until: float
    usable_until: float


class _Slot:
    __slots__ = ("entry", "lock", "rejected_401", "rejected_403")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entry: _Entry | None = None
        self.rejected_401: dict[str, float] = {}
        self.rejected_403: set[str] = set()


class CredentialMemo:
    """Per-origin memory of the helper's answers. Seams: the helper and the clock."""

    def __init__(self, helper: Helper, clock: Callable[[], float] = time.time) -> None:
        self._helper = helper
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[Origin, _Slot] = {}
        _LIVE.add(self)

    def current(self, origin: Origin) -> Credential | Refusal:
        """The answer to use for a request now; raises :class:`HelperError`."""
        slot = self._slots.get(origin)
        if slot is not None:
            entry = slot.entry
            if entry is not None and self._clock() < entry.reuse_until:
                return _unwrap(entry.answer)
        return self._refresh_due(origin)

    def replace(self, origin: Origin, rejected: Credential, status: int) -> Credential | None:
        """After ``status`` (401 or 403) for ``rejected``: a different credential, or None.

        None means: the helper has nothing better (the same credential again, or the host
        is no longer ours), or this credential was already checked, so hand the response
        to the caller. Only one thread per origin erases; the others reuse its result.
        """
        slot = self._slot(origin)
        with slot.lock:
            now = self._clock()
            entry = slot.entry
            if (
                entry is not None
                and isinstance(entry.answer, Credential)
                and entry.answer.credential_id != rejected.credential_id
                and now < entry.usable_until
            ):
                return entry.answer
            if status == 403:
                if rejected.credential_id in slot.rejected_403:
                    return None
                if len(slot.rejected_403) > 64:
                    slot.rejected_403.clear()
                slot.rejected_403.add(rejected.credential_id)
            else:
                checked = slot.rejected_401.get(rejected.credential_id)
                if checked is not None and now - checked < RECHECK_401_AFTER:
                    return None
                if len(slot.rejected_401) > 64:
                    slot.rejected_401.clear()
                slot.rejected_401[rejected.credential_id] = now
            _log.debug("%s answered %d: erasing the credential and asking again", origin, status)
            try:
                self._helper.erase(origin, rejected.credential_id)
                answer = self._helper.get(origin)
            except HelperError as exc:
                slot.entry = self._failure(exc)
                raise
            slot.entry = self._entry(answer, self._clock())
        if isinstance(answer, Credential) and answer.credential_id != rejected.credential_id:
            return answer
        return None

    def forget(self) -> None:
        """Drop every remembered answer; the next request asks the helper again."""
        with self._lock:
            self._slots = {}

    def _refresh_due(self, origin: Origin) -> Credential | Refusal:
        slot = self._slot(origin)
        with slot.lock:
            now = self._clock()
            old = slot.entry
            if old is not None and now < old.reuse_until:
                return _unwrap(old.answer)  # another thread refreshed while we waited
            try:
                answer = self._helper.get(origin)
            except HelperError as exc:
                later = self._clock()
                if (
                    old is not None
                    and isinstance(old.answer, Credential)
                    and later < old.usable_until
                ):
                    _log.warning(
                        "mlflow-secrets-helper could not refresh the credential for %s; "
                        "using the current one, which has not expired: %s",
                        origin,
                        exc.message,
                    )
                    retry = min(later + RETRY_REFRESH_AFTER, old.usable_until)
                    slot.entry = old._replace(reuse_until=retry)
                    return _unwrap(old.answer)
                slot.entry = self._failure(exc)
                raise
            entry = self._entry(answer, self._clock())
            slot.entry = entry
            return answer

    def _failure(self, exc: HelperError) -> _Entry:
        until = self._clock() + FAILURE_REUSE  # counted from the end of the helper call
        return _Entry(exc, until, until)

    def _entry(self, answer: Answer, now: float) -> _Entry:
        if isinstance(answer, Refusal):
            return _Entry(answer, now + REFUSAL_REUSE, now + REFUSAL_REUSE)
        usable = answer.expires_at if answer.expires_at is not None else float("inf")
        reuse = answer.refresh_after
        if reuse is None:
            reuse = now + DEFAULT_REUSE
        return _Entry(answer, min(reuse, usable), usable)

    def _slot(self, origin: Origin) -> _Slot:
        slot = self._slots.get(origin)
        if slot is None:
            with self._lock:
                slot = self._slots.setdefault(origin, _Slot())
        return slot

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        for slot in self._slots.values():
            slot.lock = threading.Lock()


def _unwrap(answer: Credential | Refusal | HelperError) -> Credential | Refusal:
    if isinstance(answer, HelperError):
        # A fresh exception per caller: re-raising one object would chain tracebacks.
        raise HelperError(answer.message, kind=answer.kind, retryable=answer.retryable)
    return answer


_LIVE: weakref.WeakSet[CredentialMemo] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for memo in list(_LIVE):
        memo._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere the helper refuses to run anyway
    os.register_at_fork(after_in_child=_reinit_after_fork)
