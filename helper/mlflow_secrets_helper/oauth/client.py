"""An OAuth client as a secret holds it: what counts as one, its fields combined with the
route's ``oidc_*`` settings, and the rule for the addresses its secret may go to.

Pure: no network and no authlib (the unit tier tests it with the core only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from mlflow_secrets_helper.config import OIDC_SETTINGS
from mlflow_secrets_helper.errors import ConfigError, InvalidSecret
from mlflow_secrets_helper.secret import MAX_SECRET_BYTES, MAX_TOKEN_BYTES, Secret
from mlflow_secrets_helper.text import display_url, escape

#: how the client authenticates at the token endpoint (RFC 7591 names); the first is the default
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
#: the fields an OAuth client secret may have
CLIENT_FIELDS = frozenset(
    {
        "client_id",
        "client_secret",
        "token_url",
        "issuer",
        "scope",
        "audience",
        "token_endpoint_auth_method",
    }
)
#: route key → the environment variable that sets it (for messages and hints)
VARIABLE = {key: variable for variable, key in OIDC_SETTINGS}


class Client(NamedTuple):
    """An OAuth client and where and how it asks for tokens (secret fields and settings
    combined); ``token_url`` or ``issuer`` is set, never both."""

    client_id: str
    client_secret: Secret[str]
    token_url: str | None
    issuer: str | None
    scope: str | None
    audience: str | None
    auth_method: str


def holds_client(raw: Secret[str] | Secret[bytes]) -> bool:
    """Whether a secret is a JSON object with a ``client_id``: an OAuth client, which
    :func:`exchange` turns into a token (a cheap look; :func:`read_client` checks it)."""
    head = raw.expose()[:MAX_SECRET_BYTES]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    if not text.lstrip().startswith("{") or '"client_id"' not in text:
        return False
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return False  # parse_secret reports the broken JSON
    return isinstance(document, dict) and "client_id" in document


def read_client(
    raw: Secret[str] | Secret[bytes], settings: Mapping[str, str], *, reference: str = ""
) -> Client:
    """The client in ``raw`` completed by the route's ``oidc_*`` settings. A field given
    in both with different values, a missing endpoint, or a malformed field is an
    :class:`InvalidSecret` or :class:`ConfigError` naming ``reference``, never a value."""
    value = raw.expose()
    where = f"the OAuth client in {reference}" if reference else "the OAuth client"
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        document = json.loads(text)
    except UnicodeDecodeError:
        raise InvalidSecret(f"{where}: the binary secret is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise InvalidSecret(f"{where} is not valid JSON") from None
    unknown = sorted(set(document) - CLIENT_FIELDS)
    if unknown:
        raise InvalidSecret(
            f"{where} has unknown field{'s' if len(unknown) > 1 else ''} "
            + ", ".join(repr(escape(k))[:60] for k in unknown),
            hints=["an OAuth client has: " + ", ".join(sorted(CLIENT_FIELDS))],
        )
    fields: dict[str, str] = {}
    for key, item in document.items():
        if not isinstance(item, str) or not item.strip():
            raise InvalidSecret(f"{where}: {key!r} must be a non-empty string")
        fields[key] = item if key == "client_secret" else item.strip()
    if "client_secret" not in fields:
        raise InvalidSecret(
            f"{where} has a client_id but no client_secret",
            hints=['store {"client_id": "...", "client_secret": "..."}'],
        )
    client_id, client_secret = fields["client_id"], _chomp(fields["client_secret"])
    for label, item in (("client_id", client_id), ("client_secret", client_secret)):
        if len(item) > MAX_TOKEN_BYTES or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in item):
            raise InvalidSecret(f"{where}: the {label} is over 8 KiB or has control characters")
    merged = {
        name: _both(field, fields.get(field), f"oidc_{name}", settings, where)
        for name, field in (
            ("token_url", "token_url"),
            ("issuer", "issuer"),
            ("scope", "scope"),
            ("audience", "audience"),
            ("auth_method", "token_endpoint_auth_method"),
        )
    }
    token_url, issuer = merged["token_url"], merged["issuer"]
    if token_url and issuer:
        raise ConfigError(
            f"{where} has both a token URL and an issuer; give one",
            hints=["the token URL is used as it is; the issuer is for OpenID discovery"],
        )
    if not token_url and not issuer:
        raise ConfigError(
            f"{where} names no token endpoint",
            hints=[
                f"set {VARIABLE['oidc_issuer']} (OpenID discovery) or "
                f"{VARIABLE['oidc_token_url']}, or add issuer or token_url to the secret",
            ],
        )
    method = merged["auth_method"] or AUTH_METHODS[0]
    if method not in AUTH_METHODS:
        raise ConfigError(
            f"{VARIABLE['oidc_auth_method']} must be one of {', '.join(AUTH_METHODS)}",
        )
    for label, url in (("token URL", token_url), ("issuer", issuer)):
        if url:
            check_endpoint(url, f"{where}: the {label}")
    return Client(
        client_id=client_id,
        client_secret=Secret(client_secret),
        token_url=token_url,
        issuer=issuer,
        scope=merged["scope"],
        audience=merged["audience"],
        auth_method=method,
    )


def check_endpoint(url: str, what: str) -> None:
    """The rule for every address the client secret (or discovery) goes to: an absolute
    https URL without user info or fragment; plain http only to a literal loopback
    address (127.0.0.0/8 or ::1, not a name). Raises :class:`ConfigError`."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(f"{what} is not a valid URL: {display_url(url)[:200]}") from None
    shown = display_url(url)[:200]
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(f"{what} must be an https:// URL: {shown}")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ConfigError(f"{what} must not carry user info or a fragment: {shown}")
    if parts.scheme == "http" and not _literal_loopback(host):
        raise ConfigError(
            f"{what} is plain http: {shown}; the client secret goes only over https",
            hints=["use https:// (only a literal loopback address such as 127.0.0.1 may use http)"],
        )


def _both(
    field: str, secret_value: str | None, key: str, settings: Mapping[str, str], where: str
) -> str | None:
    """The value of a client field given in the secret, in the settings, or in both alike."""
    setting = settings.get(key)
    if secret_value and setting and secret_value != setting.strip():
        raise ConfigError(
            f"{where} says {field} differs from {VARIABLE[key]}; keep one",
            hints=[f"remove {field} from the secret or unset {VARIABLE[key]} (route: {key})"],
        )
    return secret_value or (setting.strip() if setting else None) or None


def _chomp(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _literal_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
