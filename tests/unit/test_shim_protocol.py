"""The shim's reading of the helper's JSON answer, and its memory's timing rules, with
an in-process helper double (the process itself is covered in test_shim_auth)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_secrets_shim.errors import HelperError
from mlflow_secrets_shim.invocation import (
    Completed,
    Credential,
    Refusal,
    Sealed,
    parse_get_answer,
)
from mlflow_secrets_shim.memo import RETRY_REFRESH_AFTER, CredentialMemo
from mlflow_secrets_shim.origin import Origin

OK: dict[str, Any] = {
    "header": {"name": "Authorization", "value": "Bearer tok-secret-1"},
    "credential_id": "hmac-0123",
    "expires_at": 2000.0,
    "refresh_after": 1500,
    "source": "backend",
}


def line(doc: object) -> bytes:
    return (json.dumps(doc) + "\n").encode()


def test_a_valid_answer_is_read() -> None:
    answer = parse_get_answer(Completed(0, Sealed(line({"v": 1, "ok": OK})), b""))
    assert answer == Credential(
        "Authorization", Sealed("Bearer tok-secret-1"), "hmac-0123", 2000.0, 1500.0, "backend"
    )
    assert "tok-secret" not in repr(answer)


@pytest.mark.parametrize(
    ("returncode", "stdout"),
    [
        (0, b""),
        (0, line({"v": 1, "ok": OK}) * 2),
        (0, line({"v": 1, "ok": OK}).rstrip(b"\n")),
        (0, line({"v": 2, "ok": OK})),
        (0, line({"v": True, "ok": OK})),
        (0, line({"v": 1, "ok": OK, "err": {}})),
        (0, line([1])),
        (1, line({"v": 1, "ok": OK})),  # ok with a failure status
        (0, line({"v": 1, "err": {"kind": "x", "message": "m"}})),  # err with status 0
        (0, line({"v": 1, "ok": {**OK, "header": {"name": "Bad Name", "value": "v"}}})),
        (0, line({"v": 1, "ok": {**OK, "header": {"name": "A", "value": "v\r\nX: y"}}})),
        (0, line({"v": 1, "ok": {**OK, "header": {"name": "A", "value": " lead"}}})),
        (0, line({"v": 1, "ok": {**OK, "header": {"name": "A", "value": "é"}}})),
        (0, line({"v": 1, "ok": {**OK, "credential_id": ""}})),
        (0, line({"v": 1, "ok": {**OK, "expires_at": "soon"}})),
        (0, line({"v": 1, "ok": {**OK, "refresh_after": True}})),
        (0, line({"v": 1, "ok": {k: v for k, v in OK.items() if k != "expires_at"}})),
        (0, line({"v": 1, "ok": {**OK, "source": "disk"}})),
        (0, b'{"v":1,"ok":' + json.dumps(OK).encode() + b"}\n\xff"),
    ],
)
def test_anything_but_one_valid_line_is_rejected_without_quoting_stdout(
    returncode: int, stdout: bytes
) -> None:
    with pytest.raises(HelperError) as caught:
        parse_get_answer(Completed(returncode, Sealed(stdout), b""))
    assert "tok-secret" not in str(caught.value)
    assert caught.value.kind == "protocol"


def test_refusals_and_failures() -> None:
    refused = {
        "v": 1,
        "err": {"kind": "host-not-allowed", "message": "no\x1b[31m", "retryable": False},
    }
    assert parse_get_answer(Completed(1, Sealed(line(refused)), b"")) == Refusal(
        "host-not-allowed", "no\\x1b[31m"
    )
    not_found = {"v": 1, "err": {"kind": "not-found", "message": "no secret", "retryable": False}}
    with pytest.raises(HelperError, match="mlflow-secrets-helper: not-found: no secret"):
        parse_get_answer(Completed(1, Sealed(line(not_found)), b""))
    # a "not ours" kind with the wrong exit status is a failure, not a refusal
    with pytest.raises(HelperError, match="host-not-allowed"):
        parse_get_answer(Completed(5, Sealed(line(refused)), b""))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
_answers = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 2, True, "1"])},
    optional={
        "ok": st.fixed_dictionaries(
            {},
            optional={
                "header": st.fixed_dictionaries(
                    {"name": st.text(max_size=12), "value": st.text(max_size=24)}
                ),
                "credential_id": st.text(max_size=10),
                "expires_at": _json,
                "refresh_after": _json,
                "source": st.sampled_from(["cache", "backend", "stale", "x"]),
            },
        ),
        "err": _json,
    },
)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(-2, 6),
    st.binary(max_size=200) | _answers.map(lambda d: (json.dumps(d) + "\n").encode()),
)
def test_arbitrary_output_is_a_valid_answer_or_a_helper_error(code: int, stdout: bytes) -> None:
    try:
        answer = parse_get_answer(Completed(code, Sealed(stdout), b""))
    except HelperError:
        return
    if isinstance(answer, Credential):
        assert code == 0
        value = answer.header_value.expose()
        assert value.isascii() and value.isprintable()
        assert not value.startswith(" ")
    else:
        assert code == 1


class ScriptedHelper:
    """A helper double: answers from a list, records calls."""

    def __init__(self, answers: list[Credential | Refusal | HelperError]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def get(self, origin: Origin) -> Credential | Refusal:
        self.calls.append("get")
        answer = self.answers.pop(0)
        if isinstance(answer, HelperError):
            raise answer
        return answer

    def erase(self, origin: Origin, credential_id: str) -> None:
        self.calls.append(f"erase {credential_id}")


def cred(cid: str, refresh: float | None, expires: float | None) -> Credential:
    return Credential("Authorization", f"Bearer {cid}", cid, expires, refresh, "backend")


ORIGIN = Origin.of("https://mlflow.example.com")


def test_a_failed_refresh_keeps_the_unexpired_credential_and_retries_later() -> None:
    now = [1000.0]
    helper = ScriptedHelper(
        [cred("a", 1100, 1300), HelperError("down", retryable=True), cred("b", 2000, 3000)]
    )
    memo = CredentialMemo(helper, clock=lambda: now[0])
    assert memo.current(ORIGIN) == cred("a", 1100, 1300)
    now[0] = 1150  # due for refresh, still valid
    assert memo.current(ORIGIN) == cred("a", 1100, 1300)
    now[0] = 1150 + RETRY_REFRESH_AFTER - 1
    assert memo.current(ORIGIN) == cred("a", 1100, 1300)
    assert helper.calls == ["get", "get"]
    now[0] = 1150 + RETRY_REFRESH_AFTER
    assert memo.current(ORIGIN) == cred("b", 2000, 3000)


def test_an_expired_credential_is_never_used_after_a_failed_refresh() -> None:
    now = [1000.0]
    helper = ScriptedHelper([cred("a", None, 1010), HelperError("down")])
    memo = CredentialMemo(helper, clock=lambda: now[0])
    memo.current(ORIGIN)
    now[0] = 1010
    with pytest.raises(HelperError, match="down"):
        memo.current(ORIGIN)


def test_after_a_401_the_same_credential_means_a_genuine_rejection() -> None:
    now = [1000.0]
    helper = ScriptedHelper([cred("a", 2000, None), cred("a", 2000, None)])
    memo = CredentialMemo(helper, clock=lambda: now[0])
    first = memo.current(ORIGIN)
    assert isinstance(first, Credential)
    assert memo.replace(ORIGIN, first, 401) is None
    assert memo.replace(ORIGIN, first, 401) is None  # checked already: no second erase
    assert helper.calls == ["get", "erase a", "get"]
