"""``with_retries``, ``Retry-After``, the answer-size limit and the deadline guard, on fake clocks.

The retry loop takes its clock and its sleep as seams, so a fake clock that advances only
when the loop sleeps shows exactly which pauses it takes. The deadline guard needs the
real ``SIGALRM`` timer, so its tests use real (short) time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from mlflow_secrets_helper import deadline as total
from mlflow_secrets_helper.errors import BackendDenied, BackendUnavailable, HelperError
from mlflow_secrets_helper.providers.base import (
    MAX_ANSWER_BYTES,
    Final,
    Retry,
    Seams,
    Throttled,
    bounded_requests_body,
    read_bounded,
    retry_after_seconds,
    with_retries,
)


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.pauses.append(seconds)
        self.now += seconds

    def seams(self) -> Seams:
        return Seams(monotonic=self.monotonic, sleep=self.sleep, jitter=lambda: 0.5)


def timed_out(attempts: int, last: HelperError | None) -> HelperError:
    return BackendUnavailable(f"timed out after {attempts} attempts")


def attempts_raising(*errors: HelperError, then: str = "ok") -> tuple[list[float], object]:
    calls: list[float] = []
    pending = list(errors)

    def attempt(remaining: float) -> str:
        calls.append(remaining)
        if pending:
            raise pending.pop(0)
        return then

    return calls, attempt


def test_retry_after_replaces_the_jittered_pause() -> None:
    clock = FakeClock()
    calls, attempt = attempts_raising(Throttled("429", retry_after=1.0))
    result = with_retries(
        attempt,  # type: ignore[arg-type]
        deadline=clock.now + 10,
        seams=clock.seams(),
        timed_out=timed_out,
    )
    assert result == "ok"
    assert clock.pauses == [1.0]  # not the 0.125 s the jittered first pause would be
    assert calls == [10.0, 9.0]


def test_retry_after_past_the_deadline_gives_up_at_once_naming_it() -> None:
    clock = FakeClock()
    calls, attempt = attempts_raising(Throttled("Vault answered HTTP 429", retry_after=3600.0))
    with pytest.raises(BackendUnavailable) as raised:
        with_retries(
            attempt,  # type: ignore[arg-type]
            deadline=clock.now + 6,
            seams=clock.seams(),
            timed_out=timed_out,
        )
    assert clock.pauses == [] and len(calls) == 1
    message = raised.value.message
    assert "Vault answered HTTP 429" in message
    assert "Retry-After" in message and "3600 s" in message and "6.0 s left" in message


def test_retry_after_that_just_fits_is_waited_and_never_beyond_the_deadline() -> None:
    clock = FakeClock()
    policy = Retry(attempts=5, min_attempt=0.05)
    _calls, attempt = attempts_raising(
        Throttled("429", retry_after=2.0), Throttled("429", retry_after=2.0)
    )
    with pytest.raises(BackendUnavailable, match="Retry-After"):
        with_retries(
            attempt,  # type: ignore[arg-type]
            deadline=clock.now + 3,
            seams=clock.seams(),
            timed_out=timed_out,
            policy=policy,
        )
    assert clock.pauses == [2.0]  # the second 2 s pause would end past the deadline
    assert clock.now <= 1000.0 + 3


def test_a_retry_after_shorter_than_the_backoff_keeps_the_backoff() -> None:
    """``Retry-After: 0`` (Key Vault sends it) must not make a hot loop."""
    clock = FakeClock()
    _calls, attempt = attempts_raising(
        Throttled("503", retry_after=0.0), Throttled("503", retry_after=0.2)
    )
    with_retries(
        attempt,  # type: ignore[arg-type]
        deadline=clock.now + 10,
        seams=clock.seams(),
        timed_out=timed_out,
    )
    assert clock.pauses == [0.125, 0.25]


def test_without_retry_after_the_jittered_backoff_is_unchanged() -> None:
    clock = FakeClock()
    _calls, attempt = attempts_raising(BackendUnavailable("503"), BackendUnavailable("503"))
    assert (
        with_retries(
            attempt,  # type: ignore[arg-type]
            deadline=clock.now + 10,
            seams=clock.seams(),
            timed_out=timed_out,
        )
        == "ok"
    )
    assert clock.pauses == [0.125, 0.25]  # base 0.25 * 2**n * jitter 0.5


def test_attempts_still_bound_throttled_retries() -> None:
    clock = FakeClock()
    calls, attempt = attempts_raising(*(Throttled("429", retry_after=0.0) for _ in range(5)))
    with pytest.raises(Throttled):
        with_retries(
            attempt,  # type: ignore[arg-type]
            deadline=clock.now + 10,
            seams=clock.seams(),
            timed_out=timed_out,
            policy=Retry(attempts=3),
        )
    assert len(calls) == 3


def test_a_denial_is_not_retried_whatever_it_says() -> None:
    clock = FakeClock()
    calls, attempt = attempts_raising(BackendDenied("403"))
    with pytest.raises(BackendDenied):
        with_retries(
            attempt,  # type: ignore[arg-type]
            deadline=clock.now + 10,
            seams=clock.seams(),
            timed_out=timed_out,
        )
    assert len(calls) == 1 and clock.pauses == []


def test_throttled_is_backend_unavailable() -> None:
    error = Throttled("429", retry_after=1.0)
    assert isinstance(error, BackendUnavailable)
    assert (error.kind, error.exit_code, error.retryable) == ("backend-unavailable", 4, True)


# --- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1", 1.0), (" 120 ", 120.0), ("3600", 3600.0)],
)
def test_retry_after_delta_seconds(value: str, expected: float) -> None:
    assert retry_after_seconds(value, now=0.0) == expected


def test_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0)
    # the obsolete RFC 850 form is an HTTP-date too
    assert retry_after_seconds("Friday, 15-Jan-2027 08:00:30 GMT", 1_800_000_000.0) == (
        pytest.approx(1_800_000_030.0 - now)
    )
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0.0  # in the past


@pytest.mark.parametrize("value", [None, "", "soon", "-1", "1.5", "\uff11", 5])
def test_retry_after_that_is_not_valid_is_ignored(value: object) -> None:
    assert retry_after_seconds(value, now=0.0) is None


# --- the answer-size limit -------------------------------------------------------------


def pieces(total_bytes: int, size: int = 64 << 10) -> Iterator[bytes]:
    sent = 0
    while sent < total_bytes:
        part = min(size, total_bytes - sent)
        sent += part
        yield b"x" * part


def test_read_bounded_reads_an_answer_up_to_the_limit() -> None:
    assert read_bounded(pieces(MAX_ANSWER_BYTES), str(MAX_ANSWER_BYTES), "here") == (
        b"x" * MAX_ANSWER_BYTES
    )


def test_read_bounded_stops_one_piece_past_the_limit_without_a_length() -> None:
    consumed = 0

    def counted() -> Iterator[bytes]:
        nonlocal consumed
        for piece in pieces(100 << 20):
            consumed += len(piece)
            yield piece

    with pytest.raises(Final) as raised:
        read_bounded(counted(), None, "Vault at http://127.0.0.1:1")
    assert consumed <= MAX_ANSWER_BYTES + (64 << 10)
    error = raised.value.error
    assert isinstance(error, BackendUnavailable) and error.exit_code == 4
    assert "Vault at http://127.0.0.1:1 sent an answer larger than 1 MiB" in error.message


def test_read_bounded_refuses_a_declared_length_before_reading() -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("read although Content-Length was over the limit")
        yield b""

    with pytest.raises(Final):
        read_bounded(never(), str(100 << 20), "here")


class FakeResponse:
    """What the requests hook uses of ``requests.Response``."""

    def __init__(self, total_bytes: int, declared: bool) -> None:
        self.headers = {"Content-Length": str(total_bytes)} if declared else {}
        self._total = total_bytes
        self.closed = False
        self._content: bytes | bool = False
        self._content_consumed = False

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        return pieces(self._total, chunk_size)

    def close(self) -> None:
        self.closed = True


def test_the_requests_hook_keeps_a_small_body_as_the_content() -> None:
    response = FakeResponse(300, declared=True)
    bounded_requests_body("here")(response)
    assert response._content == b"x" * 300 and response._content_consumed


@pytest.mark.parametrize("declared", [True, False])
def test_the_requests_hook_closes_and_refuses_a_large_body(declared: bool) -> None:
    response = FakeResponse(100 << 20, declared=declared)
    with pytest.raises(Final):
        bounded_requests_body("here")(response)
    assert response.closed and response._content is False


# --- the deadline guard ----------------------------------------------------------------


def test_the_guard_ends_a_blocked_call_just_after_the_deadline() -> None:
    started = time.monotonic()
    with (
        pytest.raises(BackendUnavailable, match="vault:secret/x did not answer within"),
        total.guard(started + 0.2, time.monotonic, lambda: "vault:secret/x"),
    ):
        time.sleep(10)  # a read that never ends by itself
    assert time.monotonic() - started < 0.2 + total.GRACE_SEC + 0.5


def test_the_guard_is_not_caught_by_sdk_style_except_exception() -> None:
    started = time.monotonic()
    swallowed = False
    with (
        pytest.raises(BackendUnavailable),
        total.guard(started + 0.1, time.monotonic, lambda: "backend"),
    ):
        try:
            time.sleep(10)
        except Exception:  # what an SDK might do
            swallowed = True
    assert not swallowed


def test_the_guard_leaves_no_timer_and_restores_the_handler() -> None:
    import signal

    before = signal.getsignal(signal.SIGALRM)
    outer = signal.getitimer(signal.ITIMER_REAL)
    signal.setitimer(signal.ITIMER_REAL, 0)  # none armed: none left behind
    try:
        with total.guard(time.monotonic() + 5, time.monotonic, lambda: "backend"):
            pass
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert signal.getsignal(signal.SIGALRM) is before
        # one armed by someone else (a test runner's timeout): put back, minus the time spent
        signal.setitimer(signal.ITIMER_REAL, 120)
        with total.guard(time.monotonic() + 5, time.monotonic, lambda: "backend"):
            pass
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 110 < remaining <= 120
        assert signal.getsignal(signal.SIGALRM) is before
    finally:
        signal.setitimer(signal.ITIMER_REAL, outer[0])
