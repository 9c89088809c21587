"""Secrets and credentials: the payload formats, the two credential types, their header."""

from __future__ import annotations

import base64
import pickle

import pytest

from mlflow_secrets_helper.errors import ConfigError, InvalidSecret
from mlflow_secrets_helper.secret import (
    Basic,
    Bearer,
    Credential,
    Secret,
    check_header_name,
    from_fields,
    parse_secret,
)

CANARY = "canary-5d1e-secret"


def basic(username: str, password: str) -> Basic:
    return Basic(Secret(username), Secret(password))


# --- Secret ------------------------------------------------------------------------------


def test_secret_never_prints_its_value() -> None:
    secret = Secret(CANARY)
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert CANARY not in text
    assert secret.expose() == CANARY


def test_secret_compares_by_value_and_cannot_be_hashed_or_pickled() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret(b"a") == Secret("a")
    with pytest.raises(TypeError):
        hash(Secret("a"))
    with pytest.raises(TypeError):
        pickle.dumps(Secret("a"))


# --- the two credentials -----------------------------------------------------------------


def test_bearer() -> None:
    cred = Bearer(Secret(CANARY))
    assert cred.mode == "bearer"
    assert cred.header_value().expose() == f"Bearer {CANARY}"
    assert cred.to_fields() == {"mode": "bearer", "token": CANARY}
    assert CANARY not in repr(cred) and CANARY not in str(cred)


def test_basic() -> None:
    cred = basic("alice", "p@ss:word")
    assert cred.mode == "basic"
    expected = base64.b64encode(b"alice:p@ss:word").decode()
    assert cred.header_value().expose() == f"Basic {expected}"
    assert cred.to_fields() == {"mode": "basic", "username": "alice", "password": "p@ss:word"}
    assert "alice" not in repr(cred) and "p@ss" not in repr(cred)


def test_equality_is_by_value_and_type() -> None:
    assert Bearer(Secret("t")) == Bearer(Secret("t"))
    assert Bearer(Secret("t")) != Bearer(Secret("u"))
    assert basic("u", "p") == basic("u", "p")
    assert basic("u", "p") != basic("u", "q")
    assert basic("u", "p") != basic("v", "p")
    assert Bearer(Secret("p")) != basic("u", "p")


def test_credentials_cannot_be_hashed_or_pickled() -> None:
    for cred in (Bearer(Secret("t")), basic("u", "p")):
        with pytest.raises(TypeError):
            hash(cred)
        with pytest.raises(TypeError):
            pickle.dumps(cred)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "the token is empty"),
        ("a" * 8193, "longer than 8 KiB"),
        ("has space", "not visible ASCII"),
        ("tab\t", "not visible ASCII"),
        ("caf\u00e9", "not visible ASCII"),
    ],
)
def test_bearer_constructor_validates(token: str, message: str) -> None:
    with pytest.raises(InvalidSecret, match=message) as caught:
        Bearer(Secret(token))
    if token:
        assert token not in caught.value.message


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("", "pw", "the username is empty"),
        ("a:b", "pw", "contains ':'"),
        ("u" * 8193, "pw", "username is longer than 8 KiB"),
        ("alice", "p" * 8193, "password is longer than 8 KiB"),
        ("al\nice", "pw", "username contains control characters"),
        ("alice", "p\x00w", "password contains control characters"),
        ("alice", "p\u2028w", "password contains control characters"),
    ],
)
def test_basic_constructor_validates(username: str, password: str, message: str) -> None:
    with pytest.raises(InvalidSecret, match=message):
        basic(username, password)


def test_basic_allows_an_empty_password_and_non_ascii() -> None:
    assert basic("j\u00fcrgen", "").header_value().expose().startswith("Basic ")


def test_header_value_longer_than_12_kib_is_refused() -> None:
    cred = basic("u" * 8000, "p" * 8000)
    with pytest.raises(InvalidSecret, match="12 KiB"):
        cred.header_value()


def test_mode_narrows_the_union() -> None:
    # what mypy sees: the mode tells Bearer from Basic
    def held(cred: Credential) -> str:
        if cred.mode == "bearer":
            return cred.token.expose()
        return cred.password.expose()

    assert held(Bearer(Secret("t"))) == "t"
    assert held(basic("u", "p")) == "p"


# --- from_fields -------------------------------------------------------------------------


@pytest.mark.parametrize("cred", [Bearer(Secret("t0k")), basic("alice", "pw")])
def test_from_fields_round_trip(cred: Credential) -> None:
    assert from_fields(cred.to_fields()) == cred


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"mode": "bearer"},
        {"mode": "bearer", "token": 5},
        {"mode": "basic", "username": "u"},
        {"mode": "basic", "username": "u", "password": None},
        {"mode": "other", "token": "t"},
        {"mode": "bearer", "token": "bad token"},
        {"mode": "basic", "username": "a:b", "password": "p"},
    ],
)
def test_from_fields_rejects_anything_odd(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidSecret):
        from_fields(fields)


# --- parse_secret ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("plain-token", Bearer(Secret("plain-token"))),
        ("  padded-token\n", Bearer(Secret("padded-token"))),
        ("user:pass", Bearer(Secret("user:pass"))),
        ('{"token": "t"}', Bearer(Secret("t"))),
        ('{"username": "u", "password": "p"}', basic("u", "p")),
        ('{"username": "u", "password": "p", "note": 1}', basic("u", "p")),
        ("[1,2]", Bearer(Secret("[1,2]"))),
        ('"quoted"', Bearer(Secret('"quoted"'))),
    ],
)
def test_parse_secret_formats(payload: str, expected: Credential) -> None:
    assert parse_secret(Secret(payload)) == expected
    assert parse_secret(Secret(payload.encode())) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"token": "t", "username": "u", "password": "p"}', "both a token"),
        ('{"token": 5}', '"token" is not a string'),
        ('{"username": "u"}', "string"),
        ('{"other": 1}', 'no "token"'),
        ("", "the token is empty"),
    ],
)
def test_parse_secret_rejects(payload: str, message: str) -> None:
    with pytest.raises(InvalidSecret, match=message):
        parse_secret(Secret(payload))


def test_parse_secret_binary_must_be_utf8() -> None:
    with pytest.raises(InvalidSecret, match="not UTF-8"):
        parse_secret(Secret(b"\xff\xfe"))


def test_parse_secret_size_limit() -> None:
    with pytest.raises(InvalidSecret, match="64 KiB"):
        parse_secret(Secret("a" * 65537))
    with pytest.raises(InvalidSecret, match="64 KiB"):
        parse_secret(Secret(b"a" * 65537))


def test_parse_secret_checks_the_configured_mode() -> None:
    assert parse_secret(Secret("t"), "bearer").mode == "bearer"
    with pytest.raises(InvalidSecret, match="auth mode basic"):
        parse_secret(Secret("t"), "basic")
    with pytest.raises(InvalidSecret, match="auth mode bearer"):
        parse_secret(Secret('{"username": "u", "password": "p"}'), "bearer")


def test_parse_secret_never_puts_the_value_in_a_message() -> None:
    for payload in (f"{CANARY} x", f'{{"token": "{CANARY} x"}}', f"{{{CANARY}"):
        with pytest.raises(InvalidSecret) as caught:
            parse_secret(Secret(payload))
        assert CANARY not in caught.value.message + " ".join(caught.value.hints)


# --- header names ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Authorization", "X-Api-Key", "x_token!"])
def test_header_name_ok(name: str) -> None:
    assert check_header_name(name) == name


@pytest.mark.parametrize("name", ["", "Bad Header", "a:b", "caf\u00e9", "x" * 257])
def test_header_name_rejected(name: str) -> None:
    with pytest.raises(ConfigError):
        check_header_name(name)
