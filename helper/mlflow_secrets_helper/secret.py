"""Secret values, the credential they hold, and the HTTP header made from it.

This module owns :class:`Secret` (a value whose ``repr``/``str`` reveal nothing and
that refuses to be pickled or hashed), the two credentials :class:`Bearer` and
:class:`Basic` (``Credential = Bearer | Basic``; each validates its fields when built,
makes its header value and its cache fields), and :func:`parse_secret`, which reads a
backend's payload into one of them without guessing. The raw value leaves its box
only to build the header and to encrypt the cache entry.

The secret formats and the header limits are the SECRET FORMATS and OUTPUT sections of
the man page, ``man/mlflow-secrets-helper.1``.
"""

from __future__ import annotations

import base64
import json
from _operator import _compare_digest
from collections.abc import Mapping
from typing import ClassVar, Final, Generic, Literal, NoReturn, TypeAlias, TypeVar

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


class Bearer:
    """A bearer token: ``Bearer <token>``. The constructor checks the token: visible
    ASCII, 1 byte to 8 KiB."""

    __slots__ = ("token",)
    mode: ClassVar[Literal["bearer"]] = "bearer"

    def __init__(self, token: Secret[str]) -> None:
        _check_token(token.expose())
        self.token: Final = token

    def header_value(self) -> Secret[str]:
        """``Bearer <token>``."""
        return _header("Bearer " + self.token.expose())

    def to_fields(self) -> dict[str, str]:
        """The raw fields, for the encrypted cache entry only."""
        return {"mode": "bearer", "token": self.token.expose()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bearer):
            return NotImplemented
        return self.token == other.token

    def __repr__(self) -> str:
        return "Bearer(<redacted>)"


class Basic:
    """A username and password: ``Basic base64(username:password)``. The constructor
    checks both: a non-empty username without ``:``, no control characters, 8 KiB each."""

    __slots__ = ("password", "username")
    mode: ClassVar[Literal["basic"]] = "basic"

    def __init__(self, username: Secret[str], password: Secret[str]) -> None:
        _check_basic(username.expose(), password.expose())
        self.username: Final = username
        self.password: Final = password

    def header_value(self) -> Secret[str]:
        """``Basic base64(username:password)``."""
        raw = f"{self.username.expose()}:{self.password.expose()}".encode()
        return _header("Basic " + base64.b64encode(raw).decode("ascii"))

    def to_fields(self) -> dict[str, str]:
        """The raw fields, for the encrypted cache entry only."""
        return {
            "mode": "basic",
            "username": self.username.expose(),
            "password": self.password.expose(),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Basic):
            return NotImplemented
        # both compared, in constant time each, whatever the first one says
        same_user = self.username == other.username
        same_password = self.password == other.password
        return same_user and same_password

    def __repr__(self) -> str:
        return "Basic(<redacted>)"


#: What a secret resolves to. ``credential.mode`` tells them apart (mypy narrows on it).
Credential: TypeAlias = Bearer | Basic


def from_fields(fields: Mapping[str, object]) -> Credential:
    """Rebuild from ``to_fields()``; raises :class:`InvalidSecret` on anything odd."""
    mode = fields.get("mode")
    token = fields.get("token")
    username = fields.get("username")
    password = fields.get("password")
    if mode == "bearer" and isinstance(token, str):
        return Bearer(Secret(token))
    if mode == "basic" and isinstance(username, str) and isinstance(password, str):
        return Basic(Secret(username), Secret(password))
    raise InvalidSecret("malformed credential record")


def _header(value: str) -> Secret[str]:
    if len(value) > MAX_HEADER_VALUE_BYTES:
        raise InvalidSecret("the secret makes a header value longer than 12 KiB")
    return Secret(value)


def parse_secret(
    raw: Secret[str] | Secret[bytes], mode: AuthMode | None = None, *, reference: str = ""
) -> Credential:
    """Turn a secret payload into a :class:`Credential`.

    ``mode`` is the configured auth mode; when set, the secret's shape must agree
    with it. Bytes (AWS SecretBinary) are decoded once as UTF-8 and then read
    like a string. Exactly one trailing line ending (LF or CRLF) is removed from a
    token, username or password, since that is what ``echo`` and editors leave; any
    other character a header cannot carry is an :class:`InvalidSecret` naming
    ``reference`` (the provider's non-secret locator) and the character's class and
    position, never the value.
    """
    try:
        return _parse(raw, mode)
    except InvalidSecret as exc:
        if not reference:
            raise
        raise InvalidSecret(f"secret {reference}: {exc.message}", hints=exc.hints) from None


def _parse(raw: Secret[str] | Secret[bytes], mode: AuthMode | None) -> Credential:
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
    document: object = None
    if value.lstrip().startswith("{"):
        try:
            document = json.loads(value)
        except (ValueError, RecursionError):
            raise InvalidSecret(
                "the secret starts with '{' but is not valid JSON",
                hints=['store {"token": "..."} or {"username": "...", "password": "..."}'],
            ) from None
    if isinstance(document, dict):
        credential = _from_object(document)
    else:
        token = _chomp(value)
        hints = [BASIC_HINT] if _user_pass_shape(token) else []
        try:
            credential = Bearer(Secret(token))
        except InvalidSecret as exc:
            raise InvalidSecret(exc.message, hints=[*exc.hints, *hints]) from None
        if mode == "basic" and hints:
            raise InvalidSecret(
                "the secret is a plain string, which is always a bearer token, but auth "
                "mode basic is configured; it looks like username:password",
                hints=hints,
            )
    if mode is not None and credential.mode != mode:
        raise InvalidSecret(
            f"the secret holds a {credential.mode} credential but auth mode {mode} is configured",
            hints=["change the auth mode setting or the secret's format"],
        )
    return credential


#: how to store a username and password; shown when a plain secret looks like ``user:pass``
BASIC_HINT = (
    'a username and password are stored as JSON {"username": "...", "password": "..."} '
    "(Vault: vault kv put PATH username=... password=...); a plain string is always "
    "sent as a bearer token"
)


def looks_like_user_pass(raw: Secret[str] | Secret[bytes]) -> bool:
    """True when a secret is a plain string (not JSON) with the ``username:password``
    shape that mlflow-secrets-auth users store. The answer only chooses a hint: the
    value is never shown."""
    value = raw.expose()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return not value.lstrip().startswith("{") and _user_pass_shape(_chomp(value))


def _user_pass_shape(text: str) -> bool:
    user, sep, password = text.partition(":")
    return bool(sep and user and password)


def _chomp(text: str) -> str:
    """``text`` without one trailing LF or CRLF (what ``echo`` and editors leave)."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _from_object(document: dict[str, object]) -> Credential:
    token = document.get("token")
    username = document.get("username")
    password = document.get("password")
    if token is not None and (username is not None or password is not None):
        raise InvalidSecret("the secret has both a token and a username/password; keep one")
    if token is not None:
        if not isinstance(token, str):
            raise InvalidSecret('the secret\'s "token" is not a string')
        return Bearer(Secret(_chomp(token)))
    if username is not None or password is not None:
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidSecret('basic secrets need string "username" and "password" fields')
        return Basic(Secret(_chomp(username)), Secret(_chomp(password)))
    raise InvalidSecret(
        'the JSON secret has no "token" and no "username"/"password"',
        hints=['store {"token": "..."} or {"username": "...", "password": "..."}'],
    )


def _check_token(token: str) -> None:
    if not token:
        raise InvalidSecret("the token is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidSecret("the token is longer than 8 KiB")
    for position, ch in enumerate(token, 1):
        if not "\x21" <= ch <= "\x7e":
            raise InvalidSecret(
                f"the token contains {_describe(ch)} at position {position}",
                hints=["a token is visible ASCII only: no spaces, control or non-ASCII characters"],
            )


def _check_basic(username: str, password: str) -> None:
    if not username:
        raise InvalidSecret("the username is empty")
    if ":" in username:
        raise InvalidSecret("the username contains ':' which basic auth cannot carry")
    for label, text in (("username", username), ("password", password)):
        if len(text) > MAX_TOKEN_BYTES:
            raise InvalidSecret(f"the {label} is longer than 8 KiB")
        for position, ch in enumerate(text, 1):
            if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029":
                raise InvalidSecret(f"the {label} contains {_describe(ch)} at position {position}")


def _describe(ch: str) -> str:
    """The class of a character a header cannot carry. Code points are given for
    whitespace and control characters only: they carry no secret, a letter might."""
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        name = {0x0A: " (line feed)", 0x0D: " (carriage return)", 0x09: " (tab)"}.get(code, "")
        return f"a control character U+{code:04X}{name}"
    if ch in "\u2028\u2029":
        return f"a line separator U+{code:04X}"
    if ch.isspace():
        return f"a whitespace character U+{code:04X}"
    return "a non-ASCII character"


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_header_name(name: str) -> str:
    """Validate an HTTP header field name (RFC 9110 token) from configuration."""
    if not name or len(name) > 256 or not set(name) <= _TCHAR:
        raise ConfigError(
            f"invalid header name {name!r}",
            hints=["MLFLOW_AUTH_HEADER_NAME must be an HTTP token such as Authorization"],
        )
    return name
