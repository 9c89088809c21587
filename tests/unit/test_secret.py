"""Secrets and credentials: the payload formats, the two credential types, their header."""

from __future__ import annotations

import base64
import pickle
import re

import pytest

from mlflow_secrets_helper.errors import ConfigError, InvalidSecret
from mlflow_secrets_helper.secret import (
    BASIC_HINT,
    Basic,
    Bearer,
    Credential,
    Secret,
    check_header_name,
    from_fields,
    looks_like_user_pass,
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
        ("has space", "a whitespace character U+0020 at position 4"),
        ("tab\t", "a control character U+0009 (tab) at position 4"),
        ("caf\u00e9", "a non-ASCII character at position 4"),
    ],
)
def test_bearer_constructor_validates(token: str, message: str) -> None:
    with pytest.raises(InvalidSecret, match=re.escape(message)) as caught:
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
        ("al\nice", "pw", "username contains a control character U+000A (line feed) at position 3"),
        ("alice", "p\x00w", "password contains a control character U+0000 at position 2"),
        ("alice", "p\u2028w", "password contains a line separator U+2028 at position 2"),
    ],
)
def test_basic_constructor_validates(username: str, password: str, message: str) -> None:
    with pytest.raises(InvalidSecret, match=re.escape(message)):
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
        ("padded-token\n", Bearer(Secret("padded-token"))),
        ("crlf-token\r\n", Bearer(Secret("crlf-token"))),
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


# --- line endings, character classes, the user:pass shape (issue 11.6) ---------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"token": "t\\n"}', Bearer(Secret("t"))),
        ('{"token": "t\\r\\n"}\n', Bearer(Secret("t"))),
        ('{"username": "u\\r\\n", "password": "p\\n"}', basic("u", "p")),
    ],
)
def test_one_line_ending_is_stripped_from_each_field(payload: str, expected: Credential) -> None:
    assert parse_secret(Secret(payload)) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("zq9\n\n", "the token contains a control character U+000A (line feed) at position 4"),
        ("zq9\r\r\n", "the token contains a control character U+000D (carriage return) at"),
        ("zq9\n\r", "the token contains a control character U+000A (line feed) at position 4"),
        (" zq9", "the token contains a whitespace character U+0020 at position 1"),
        ("zq9\u00a0", "the token contains a whitespace character U+00A0 at position 4"),
        ("zq9\x85", "the token contains a control character U+0085 at position 4"),
        ("\n", "the token is empty"),
    ],
)
def test_anything_else_names_the_reference_class_and_position(payload: str, message: str) -> None:
    with pytest.raises(InvalidSecret) as info:
        parse_secret(Secret(payload), reference="secret/x at https://vault.example.com")
    assert info.value.message.startswith("secret secret/x at https://vault.example.com: ")
    assert message in info.value.message
    assert "zq9" not in info.value.message


def test_a_second_line_ending_in_a_password_is_refused() -> None:
    with pytest.raises(InvalidSecret, match="password contains a control character U\\+000A"):
        parse_secret(Secret('{"username": "u", "password": "p\\n\\n"}'))


def test_without_a_reference_the_message_is_unchanged() -> None:
    with pytest.raises(InvalidSecret, match=r"^the token contains a whitespace character"):
        parse_secret(Secret("a b"))


def test_a_letter_is_never_shown_by_code_point() -> None:
    with pytest.raises(InvalidSecret) as info:
        parse_secret(Secret("caf\u00e9"))
    assert "U+" not in info.value.message
    assert "non-ASCII" in info.value.message


@pytest.mark.parametrize(
    ("payload", "shaped"),
    [
        ("alice:pw", True),
        ("alice:pw\n", True),
        (b"alice:pw", True),
        ("alice:", False),
        (":pw", False),
        ("token", False),
        ('{"token": "a:b"}', False),
        ('  {"username": "a", "password": "b"}', False),
    ],
)
def test_looks_like_user_pass(payload: str | bytes, shaped: bool) -> None:
    assert looks_like_user_pass(Secret(payload)) is shaped


def test_a_plain_user_pass_stays_a_bearer_token() -> None:
    assert parse_secret(Secret("alice:pw\n")) == Bearer(Secret("alice:pw"))


def test_basic_mode_with_a_user_pass_string_says_how_to_store_basic() -> None:
    with pytest.raises(InvalidSecret) as info:
        parse_secret(Secret("alice:s3cret"), "basic", reference="secret/x")
    assert "looks like username:password" in info.value.message
    assert info.value.hints == (BASIC_HINT,)
    assert "alice" not in info.value.message + " ".join(info.value.hints)
    assert "s3cret" not in info.value.message + " ".join(info.value.hints)


def test_an_invalid_user_pass_string_gets_the_basic_hint_too() -> None:
    with pytest.raises(InvalidSecret) as info:
        parse_secret(Secret("alice:pass word"))
    assert BASIC_HINT in info.value.hints
