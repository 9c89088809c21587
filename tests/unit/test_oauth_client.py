"""Reading an OAuth client from a secret and the rules for where its secret may go.

Pure parts of :mod:`mlflow_secrets_helper.oauth` (no authlib, no network): what counts
as a client, how the secret's fields and the ``oidc_*`` settings combine, the https
rule, and how a token response is read. The exchange itself runs against a real OpenID
Provider in ``tests/e2e/test_oauth.py``.
"""

from __future__ import annotations

import json

import pytest

from mlflow_secrets_helper import oauth
from mlflow_secrets_helper.config import OIDC_SETTINGS
from mlflow_secrets_helper.errors import (
    BackendUnavailable,
    ConfigError,
    HelperError,
    InvalidSecret,
)
from mlflow_secrets_helper.oauth.endpoint import read_token
from mlflow_secrets_helper.secret import Secret

CLIENT_SECRET = "cs-Zq8-very-secret"
ISSUER = "https://login.example.com/realms/ml"


def client_json(**fields: str) -> Secret[str]:
    return Secret(json.dumps({"client_id": "ci-train", "client_secret": CLIENT_SECRET, **fields}))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"client_id": "a", "client_secret": "b"}', True),
        (b'{"client_id": "a", "client_secret": "b"}', True),
        ('  {"client_id": "a"}\n', True),  # read_client then says what is missing
        ('{"token": "client_id"}', False),
        ('{"username": "client_id", "password": "x"}', False),
        ('"client_id"', False),
        ("plain-token-client_id", False),
        ('{"client_id": broken', False),  # parse_secret reports the broken JSON
        ("[1, 2]", False),
    ],
)
def test_what_counts_as_an_oauth_client(raw: str | bytes, expected: bool) -> None:
    assert oauth.holds_client(Secret(raw)) is expected


def test_a_client_with_an_issuer() -> None:
    client = oauth.read_client(client_json(issuer=ISSUER, scope="mlflow"), {}, reference="kv/ml")
    assert client.client_id == "ci-train"
    assert client.client_secret == Secret(CLIENT_SECRET)
    assert (client.issuer, client.token_url, client.scope) == (ISSUER, None, "mlflow")
    assert client.auth_method == "client_secret_basic"  # the default


def test_settings_complete_the_client() -> None:
    settings = {
        "oidc_token_url": "https://idp.example.com/oauth2/token",
        "oidc_audience": "https://mlflow.example.com",
        "oidc_auth_method": "client_secret_post",
    }
    client = oauth.read_client(client_json(), settings)
    assert client.token_url == "https://idp.example.com/oauth2/token"
    assert client.audience == "https://mlflow.example.com"
    assert client.auth_method == "client_secret_post"


def test_the_same_value_in_both_places_is_fine_a_different_one_is_an_error() -> None:
    same = oauth.read_client(
        client_json(scope="mlflow"), {"oidc_scope": "mlflow", "oidc_issuer": ISSUER}
    )
    assert same.scope == "mlflow"
    with pytest.raises(ConfigError) as caught:
        oauth.read_client(
            client_json(scope="mlflow"), {"oidc_scope": "other", "oidc_issuer": ISSUER}
        )
    assert "MLFLOW_OIDC_SCOPE" in caught.value.message
    assert "other" not in caught.value.message and "mlflow" not in caught.value.message


@pytest.mark.parametrize(
    ("fields", "settings", "error", "words"),
    [
        ({}, {}, ConfigError, "names no token endpoint"),
        ({"issuer": ISSUER, "token_url": ISSUER + "/token"}, {}, ConfigError, "give one"),
        (
            {},
            {"oidc_issuer": ISSUER, "oidc_auth_method": "private_key_jwt"},
            ConfigError,
            "must be one of",
        ),
        ({"scope": ""}, {"oidc_issuer": ISSUER}, InvalidSecret, "non-empty string"),
        ({"client_sercet": "x"}, {"oidc_issuer": ISSUER}, InvalidSecret, "unknown field"),
    ],
)
def test_a_client_that_cannot_be_used(
    fields: dict[str, str], settings: dict[str, str], error: type[HelperError], words: str
) -> None:
    with pytest.raises(error) as caught:
        oauth.read_client(client_json(**fields), settings, reference="kv/ml")
    assert words in caught.value.message
    assert CLIENT_SECRET not in caught.value.message + " ".join(caught.value.hints)


def test_a_client_without_a_secret() -> None:
    with pytest.raises(InvalidSecret) as caught:
        oauth.read_client(Secret('{"client_id": "ci"}'), {"oidc_issuer": ISSUER}, reference="kv/ml")
    assert "no client_secret" in caught.value.message
    assert "kv/ml" in caught.value.message


def test_one_trailing_line_ending_of_the_client_secret_is_dropped() -> None:
    raw = Secret(json.dumps({"client_id": "ci", "client_secret": CLIENT_SECRET + "\r\n"}))
    client = oauth.read_client(raw, {"oidc_issuer": ISSUER})
    assert client.client_secret == Secret(CLIENT_SECRET)


def test_control_characters_in_the_client_secret_are_refused_without_showing_it() -> None:
    raw = Secret(json.dumps({"client_id": "ci", "client_secret": "a\x00" + CLIENT_SECRET}))
    with pytest.raises(InvalidSecret) as caught:
        oauth.read_client(raw, {"oidc_issuer": ISSUER})
    assert CLIENT_SECRET not in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.com/token",
        "https://idp.example.com:8443/realms/x/protocol/openid-connect/token",
        "http://127.0.0.1:8080/token",
        "http://127.0.0.2/token",
        "http://[::1]:9000/token",
    ],
)
def test_where_the_client_secret_may_go(url: str) -> None:
    oauth.check_endpoint(url, "the token URL")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://idp.example.com/token", "plain http"),
        ("http://localhost:8080/token", "plain http"),  # a name, not a literal address
        ("http://127.0.0.1.example.com/token", "plain http"),
        ("ftp://idp.example.com/token", "https://"),
        ("https://user:pw@idp.example.com/token", "user info"),
        ("https://idp.example.com/token#x", "fragment"),
        ("idp.example.com/token", "https://"),
        ("https://idp.example.com:99999/token", "not a valid URL"),
    ],
)
def test_where_the_client_secret_never_goes(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        oauth.check_endpoint(url, "the token URL")
    assert words in caught.value.message
    assert "pw@" not in caught.value.message


def test_the_issuer_and_token_url_follow_the_same_rule() -> None:
    with pytest.raises(ConfigError):
        oauth.read_client(client_json(), {"oidc_issuer": "http://idp.example.com"})
    with pytest.raises(ConfigError):
        oauth.read_client(client_json(token_url="http://idp.example.com/token"), {})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"access_token": "at-1", "token_type": "Bearer", "expires_in": 300}, ("at-1", 300.0)),
        ({"access_token": "at-1", "token_type": "bearer", "expires_in": "60"}, ("at-1", 60.0)),
        ({"access_token": "at-1", "token_type": "Bearer"}, ("at-1", None)),
    ],
)
def test_reading_a_token_response(answer: dict[str, object], expected: object) -> None:
    assert read_token(answer, "https://idp.example.com/token") == expected


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"token_type": "Bearer", "expires_in": 300}, BackendUnavailable),
        ({"access_token": "at-1", "token_type": "DPoP", "expires_in": 300}, InvalidSecret),
        ({"access_token": "at-1", "expires_in": 300}, BackendUnavailable),
        ({"access_token": "at-1", "token_type": "Bearer", "expires_in": 0}, BackendUnavailable),
        ({"access_token": "at-1", "token_type": "Bearer", "expires_in": True}, BackendUnavailable),
        (
            {"access_token": "at-1", "token_type": "Bearer", "expires_in": "soon"},
            BackendUnavailable,
        ),
    ],
)
def test_a_token_response_that_cannot_be_used(
    answer: dict[str, object], error: type[HelperError]
) -> None:
    with pytest.raises(error):
        read_token(answer, "https://idp.example.com/token")


def test_every_setting_has_a_variable_under_the_oidc_prefix() -> None:
    assert {key for _, key in OIDC_SETTINGS} == {
        "oidc_issuer",
        "oidc_token_url",
        "oidc_scope",
        "oidc_audience",
        "oidc_ca_bundle",
        "oidc_auth_method",
    }
    assert all(variable == "MLFLOW_" + key.upper() for variable, key in OIDC_SETTINGS)


def test_a_binary_client_that_is_not_utf8_is_refused_not_mangled() -> None:
    raw = Secret(b'{"client_id": "ci", "client_secret": "\xff\xfe", "issuer": "https://x.example"}')
    assert oauth.holds_client(raw)
    with pytest.raises(InvalidSecret, match="not UTF-8"):
        oauth.read_client(raw, {})


def test_deeply_nested_json_is_an_invalid_secret_not_a_crash() -> None:
    from mlflow_secrets_helper.secret import parse_secret

    deep = Secret('{"client_id": ' + "[" * 30_000 + "]" * 30_000 + "}")
    assert oauth.holds_client(deep) is False
    with pytest.raises(InvalidSecret):
        oauth.read_client(deep, {"oidc_issuer": ISSUER})
    with pytest.raises(InvalidSecret, match="not valid JSON"):
        parse_secret(Secret('{"token": ' + "[" * 30_000 + "]" * 30_000 + "}"))


def test_an_access_token_is_always_a_bearer_token() -> None:
    credential = oauth.bearer(Secret('{"username":"u","password":"p"}'), None, "kv/ml")
    assert credential.header_value().expose() == 'Bearer {"username":"u","password":"p"}'
    with pytest.raises(InvalidSecret, match="auth mode basic"):
        oauth.bearer(Secret("at-1"), "basic", "kv/ml")
    with pytest.raises(InvalidSecret, match="the access token for the OAuth client in kv/ml"):
        oauth.bearer(Secret("at 1"), None, "kv/ml")
