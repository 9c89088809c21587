"""Secret values, the credential they hold, and the HTTP header made from it.

:class:`Secret` hides its value from ``repr``/``str``/pickling; the raw value is
taken out with :meth:`Secret.expose` only where it must be: building the header
and encrypting the cache entry.

Secret formats (no guessing): a JSON object ``{"token": ...}`` is a bearer
token, ``{"username": ..., "password": ...}`` is basic auth, and anything else
that is not a JSON object is a plain token, even when it contains ``:``.
"""

from __future__ import annotations

import base64
import json
from _operator import _compare_digest
from typing import Generic, Literal, NamedTuple, NoReturn, TypeVar

from mlflow_secrets_helper.errors import ConfigError, InvalidSecret

T = TypeVar("T", str, bytes)

MAX_TOKEN_BYTES = 8192
MAX_HEADER_VALUE_BYTES = 12288
MAX_SECRET_BYTES = 65536

AuthMode = Literal["bearer", "basic"]
AUTH_MODES: tuple[AuthMode, ...] = ("bearer", "basic")


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """hmac.compare_digest: the same C function, imported without the hmac module,
    which would load OpenSSL's hashlib bindings on the cache-hit path for nothing."""
    return _compare_digest(a, b)


class Secret(Generic[T]):
    """A value that never prints itself."""

    __slots__ = ("_value",)
    _value: T

    def __init__(self, value: T) -> None:
        self._value = value

    def expose(self) -> T:
        """Return the raw value. Each call marks a place where the secret leaves its box."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return constant_time_equal(_as_bytes(self._value), _as_bytes(other._value))

    def __hash__(self) -> int:
        raise TypeError("Secret is not hashable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret cannot be pickled")


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Credential(NamedTuple):
    """What a secret resolves to: a bearer token or a username and password."""

    mode: AuthMode
    token: Secret[str] | None = None
    username: Secret[str] | None = None
    password: Secret[str] | None = None

    @classmethod
    def bearer(cls, token: str) -> Credential:
        _check_token(token)
        return cls("bearer", token=Secret(token))

    @classmethod
    def basic(cls, username: str, password: str) -> Credential:
        _check_basic(username, password)
        return cls("basic", username=Secret(username), password=Secret(password))

    def header_value(self) -> Secret[str]:
        """``Bearer <token>`` or ``Basic base64(username:password)``, validated."""
        if self.mode == "bearer":
            assert self.token is not None
            value = "Bearer " + self.token.expose()
        else:
            assert self.username is not None and self.password is not None
            raw = f"{self.username.expose()}:{self.password.expose()}".encode()
            value = "Basic " + base64.b64encode(raw).decode("ascii")
        if len(value) > MAX_HEADER_VALUE_BYTES:
            raise InvalidSecret("the secret makes a header value longer than 12 KiB")
        return Secret(value)

    def to_fields(self) -> dict[str, str]:
        """The raw fields, for the encrypted cache entry only."""
        if self.mode == "bearer":
            assert self.token is not None
            return {"mode": "bearer", "token": self.token.expose()}
        assert self.username is not None and self.password is not None
        return {
            "mode": "basic",
            "username": self.username.expose(),
            "password": self.password.expose(),
        }

    @classmethod
    def from_fields(cls, fields: dict[str, object]) -> Credential:
        """Rebuild from :meth:`to_fields`; raises :class:`InvalidSecret` on anything odd."""
        mode = fields.get("mode")
        if mode == "bearer" and isinstance(fields.get("token"), str):
            return cls.bearer(str(fields["token"]))
        if (
            mode == "basic"
            and isinstance(fields.get("username"), str)
            and isinstance(fields.get("password"), str)
        ):
            return cls.basic(str(fields["username"]), str(fields["password"]))
        raise InvalidSecret("malformed credential record")


def parse_secret(raw: Secret[str] | Secret[bytes], mode: AuthMode | None = None) -> Credential:
    """Turn a secret payload into a :class:`Credential`.

    ``mode`` is the configured auth mode; when set, the secret's shape must agree
    with it. Bytes (AWS SecretBinary) are decoded once as UTF-8 and then read
    like a string.
    """
    value = raw.expose()
    if isinstance(value, bytes):
        if len(value) > MAX_SECRET_BYTES:
            raise InvalidSecret("the secret is larger than 64 KiB")
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSecret("the binary secret is not UTF-8 text") from None
    if len(value) > MAX_SECRET_BYTES:
        raise InvalidSecret("the secret is larger than 64 KiB")
    stripped = value.strip()
    document: object = None
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except ValueError:
            raise InvalidSecret(
                "the secret starts with '{' but is not valid JSON",
                hints=['store {"token": "..."} or {"username": "...", "password": "..."}'],
            ) from None
    if isinstance(document, dict):
        credential = _from_object(document)
    else:
        credential = Credential.bearer(stripped)
    if mode is not None and credential.mode != mode:
        raise InvalidSecret(
            f"the secret holds a {credential.mode} credential but auth mode {mode} is configured",
            hints=["change the auth mode setting or the secret's format"],
        )
    return credential


def _from_object(document: dict[str, object]) -> Credential:
    token = document.get("token")
    username = document.get("username")
    password = document.get("password")
    if token is not None and (username is not None or password is not None):
        raise InvalidSecret("the secret has both a token and a username/password; keep one")
    if token is not None:
        if not isinstance(token, str):
            raise InvalidSecret('the secret\'s "token" is not a string')
        return Credential.bearer(token)
    if username is not None or password is not None:
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidSecret('basic secrets need string "username" and "password" fields')
        return Credential.basic(username, password)
    raise InvalidSecret(
        'the JSON secret has no "token" and no "username"/"password"',
        hints=['store {"token": "..."} or {"username": "...", "password": "..."}'],
    )


def _check_token(token: str) -> None:
    if not token:
        raise InvalidSecret("the token is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidSecret("the token is longer than 8 KiB")
    if not all("\x21" <= ch <= "\x7e" for ch in token):
        raise InvalidSecret("the token contains characters that are not visible ASCII")


def _check_basic(username: str, password: str) -> None:
    if not username:
        raise InvalidSecret("the username is empty")
    if ":" in username:
        raise InvalidSecret("the username contains ':' which basic auth cannot carry")
    for label, text in (("username", username), ("password", password)):
        if len(text) > MAX_TOKEN_BYTES:
            raise InvalidSecret(f"the {label} is longer than 8 KiB")
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029" for ch in text):
            raise InvalidSecret(f"the {label} contains control characters")


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_header_name(name: str) -> str:
    """Validate an HTTP header field name (RFC 9110 token) from configuration."""
    if not name or len(name) > 256 or not set(name) <= _TCHAR:
        raise ConfigError(
            f"invalid header name {name!r}",
            hints=["MLFLOW_AUTH_HEADER_NAME must be an HTTP token such as Authorization"],
        )
    return name
