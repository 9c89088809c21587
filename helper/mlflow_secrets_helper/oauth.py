"""OAuth 2.0 client credentials (RFC 6749 section 4.4): a secret that holds an OAuth
client is exchanged for an access token, which is what the helper serves and caches.

This module owns the exchange: reading the client from a secret (:func:`read_client`),
combining it with the route's ``oidc_*`` settings, finding the token endpoint (given,
or by OpenID discovery from the issuer, remembered as an encrypted cache note), and the
token request itself, made by authlib's requests client as its authors intend. The
client secret goes to the token endpoint only: over https (plain http only to a literal
loopback address), never across a redirect, never into the cache or a message.

The resolver calls :func:`exchange` after any provider's read, so every store (and the
file source) can hold a client. The rules are the SHORT-LIVED TOKENS section of the man
page; ``tests/e2e/test_oauth.py`` runs them against a real OpenID Provider over TLS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from mlflow_secrets_helper.config import OIDC_SETTINGS
from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    HelperError,
    InvalidSecret,
)
from mlflow_secrets_helper.providers.base import (
    Fetched,
    Final,
    Seams,
    Throttled,
    bounded_requests_body,
    install_hint,
    retry_after_seconds,
    use_until,
    with_retries,
)
from mlflow_secrets_helper.secret import MAX_SECRET_BYTES, MAX_TOKEN_BYTES, Secret
from mlflow_secrets_helper.text import display_url, escape, one_line

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
#: how long the token endpoint found by discovery is remembered (an encrypted cache note)
DISCOVERY_NOTE_SEC = 3600.0
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: the extra that installs authlib, and the module checked for it
EXTRA, SDK = "oidc", "authlib"

_VARIABLE = {key: variable for variable, key in OIDC_SETTINGS}


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
    except ValueError:
        return False  # parse_secret reports the broken JSON
    return isinstance(document, dict) and "client_id" in document


def read_client(
    raw: Secret[str] | Secret[bytes], settings: Mapping[str, str], *, reference: str = ""
) -> Client:
    """The client in ``raw`` completed by the route's ``oidc_*`` settings. A field given
    in both with different values, a missing endpoint, or a malformed field is an
    :class:`InvalidSecret` or :class:`ConfigError` naming ``reference``, never a value."""
    value = raw.expose()
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    where = f"the OAuth client in {reference}" if reference else "the OAuth client"
    document = json.loads(text)
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
                f"set {_VARIABLE['oidc_issuer']} (OpenID discovery) or "
                f"{_VARIABLE['oidc_token_url']}, or add issuer or token_url to the secret",
            ],
        )
    method = merged["auth_method"] or AUTH_METHODS[0]
    if method not in AUTH_METHODS:
        raise ConfigError(
            f"{_VARIABLE['oidc_auth_method']} must be one of {', '.join(AUTH_METHODS)}",
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


class Token(NamedTuple):
    """An access token from the token endpoint (``token_url``), asked for at ``issued_at``
    and said to last ``lifetime`` seconds (None: the identity provider did not say)."""

    value: Secret[str]
    token_url: str
    issued_at: float
    lifetime: float | None

    def fetched(self) -> Fetched:
        """As a provider's read: ``expires_at`` is the end less :func:`use_until`'s
        margin, or None (the route's TTL alone decides)."""
        if self.lifetime is None:
            return Fetched(self.value)
        return Fetched(self.value, use_until(self.issued_at + self.lifetime, self.issued_at))


def exchange(
    raw: Secret[str] | Secret[bytes],
    settings: Mapping[str, str],
    env: Mapping[str, str],
    seams: Seams,
    deadline: float,
    *,
    reference: str = "",
) -> Fetched:
    """The access token for the client in ``raw``, as a provider's read."""
    return request_token(raw, settings, env, seams, deadline, reference=reference).fetched()


def request_token(
    raw: Secret[str] | Secret[bytes],
    settings: Mapping[str, str],
    env: Mapping[str, str],
    seams: Seams,
    deadline: float,
    *,
    reference: str = "",
) -> Token:
    """Read the client in ``raw``, find its token endpoint, and ask it for a token
    (``doctor`` shows the endpoint and the lifetime)."""
    client = read_client(raw, settings, reference=reference)
    _require_authlib()
    verify = _verify(settings, env)
    token_url = client.token_url or _discover(client, verify, seams, deadline)
    issued_at = seams.clock()
    answer = _token_request(client, token_url, verify, seams, deadline)
    token, lifetime = _read_token(answer, token_url)
    return Token(Secret(token), token_url, issued_at, lifetime)


# -- the requests ---------------------------------------------------------------------------


def _discover(client: Client, verify: bool | str, seams: Seams, deadline: float) -> str:
    """The token endpoint from the issuer's OpenID configuration (remembered for an hour)."""
    assert client.issuer is not None
    issuer = client.issuer.rstrip("/")
    note_key = "oidc-token-endpoint|" + issuer
    remembered = seams.memory.recall(note_key)
    if remembered:
        return remembered
    url = issuer + DISCOVERY_PATH
    where = f"OpenID discovery at {display_url(url)[:200]}"

    def attempt(remaining: float) -> Any:
        import requests

        with requests.Session() as session:
            response = _send(session, "GET", url, where, verify, seams, remaining)
        if response.status_code != 200:
            raise Final(
                ConfigError(
                    f"{where} answered HTTP {response.status_code}",
                    hints=[
                        f"check {_VARIABLE['oidc_issuer']}, or set {_VARIABLE['oidc_token_url']}"
                    ],
                )
            )
        return _json_object(response, where)

    document = with_retries(attempt, deadline=deadline, seams=seams, timed_out=_timed_out(where))
    found = str(document.get("issuer", "")).rstrip("/")
    if found != issuer:
        raise ConfigError(
            f"{where} names another issuer ({escape(found)[:200]!s}); it is not used",
            hints=[
                f"set {_VARIABLE['oidc_issuer']} to the issuer exactly as the provider names it"
            ],
        )
    endpoint = document.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError(f"{where} has no token_endpoint")
    check_endpoint(endpoint, f"the token endpoint that {where} names")
    methods = document.get("token_endpoint_auth_methods_supported")
    if isinstance(methods, list) and methods and client.auth_method not in methods:
        raise ConfigError(
            f"the identity provider does not accept {client.auth_method} at its token endpoint",
            hints=[
                f"set {_VARIABLE['oidc_auth_method']} to one it supports: "
                + ", ".join(m for m in AUTH_METHODS if m in methods)
            ],
        )
    seams.memory.remember(note_key, endpoint, DISCOVERY_NOTE_SEC)
    return endpoint


def _token_request(
    client: Client,
    token_url: str,
    verify: bool | str,
    seams: Seams,
    deadline: float,
) -> Any:
    where = f"the token endpoint {display_url(token_url)[:200]}"

    def attempt(remaining: float) -> Any:
        from authlib.integrations.base_client.errors import OAuthError
        from authlib.integrations.requests_client import OAuth2Session

        extra = {"audience": client.audience} if client.audience else {}
        with OAuth2Session(
            client.client_id,
            client.client_secret.expose(),
            token_endpoint_auth_method=client.auth_method,
            scope=client.scope,
        ) as session:
            try:
                return _send(
                    session,
                    "TOKEN",
                    token_url,
                    where,
                    verify,
                    seams,
                    remaining,
                    fetch=lambda **kw: session.fetch_token(
                        token_url, grant_type="client_credentials", **extra, **kw
                    ),
                )
            except OAuthError as exc:
                raise _oauth_error(str(exc.error or ""), exc.description, client) from None
            except ValueError:  # authlib: a 2xx/4xx answer that is not a JSON object
                raise Final(BackendUnavailable(f"{where} did not answer with JSON")) from None

    return with_retries(attempt, deadline=deadline, seams=seams, timed_out=_timed_out(where))


def _send(
    session: Any,
    method: str,
    url: str,
    where: str,
    verify: bool | str,
    seams: Seams,
    remaining: float,
    *,
    fetch: Any = None,
) -> Any:
    """One request with the rules every call here shares: the deadline, the CA, no
    redirect, a bounded body, proxies as for any backend, and the errors mapped."""
    import requests.exceptions as rq

    from mlflow_secrets_helper import netrules

    options: dict[str, Any] = {
        "timeout": remaining,
        "verify": verify,
        "allow_redirects": False,
        "hooks": {"response": [_status_guard(where, seams), bounded_requests_body(where)]},
    }
    if netrules.is_loopback_url(url):
        options["proxies"] = netrules.no_proxies()
    try:
        if fetch is not None:
            return fetch(**options)
        return session.request(method, url, **options)
    except rq.SSLError:
        raise Final(
            BackendUnavailable(
                f"TLS with {where} failed (certificate not trusted, or not TLS)",
                hints=[
                    f"trust the identity provider's CA with {_VARIABLE['oidc_ca_bundle']}",
                ],
            )
        ) from None
    except rq.Timeout:
        raise BackendUnavailable(f"{where} timed out") from None
    except rq.ConnectionError:
        raise BackendUnavailable(
            f"{where} could not be reached", hints=["is the identity provider up?"]
        ) from None
    except rq.RequestException as exc:
        raise Final(
            BackendUnavailable(f"request to {where} failed: {type(exc).__name__}")
        ) from None


def _status_guard(where: str, seams: Seams) -> Any:
    """A requests hook, run before anything reads the answer: redirects stop here (the
    client secret never follows one), 429 and 5xx become retryable errors."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        status = response.status_code
        if 300 <= status < 400:
            response.close()
            target = display_url(str(response.headers.get("Location", "")))[:200]
            raise Final(
                ConfigError(
                    f"{where} answered with a redirect (HTTP {status}) to {target or '?'}; "
                    "it is not followed",
                    hints=[f"set {_VARIABLE['oidc_token_url']} or the issuer to the final address"],
                )
            )
        if status == 429 or status >= 500:
            response.close()
            message = f"{where} answered HTTP {status}"
            if status in (429, 503):
                wait = retry_after_seconds(response.headers.get("Retry-After"), seams.clock())
                if wait is not None:
                    raise Throttled(message, retry_after=wait)
            raise BackendUnavailable(message)

    return hook


def _read_token(answer: Any, token_url: str) -> tuple[str, float | None]:
    """The access token and its lifetime in seconds from a token response (RFC 6749 5.1)."""
    where = f"the token endpoint {display_url(token_url)[:200]}"
    token = answer.get("access_token") if isinstance(answer, Mapping) else None
    if not isinstance(token, str) or not token:
        raise BackendUnavailable(f"{where} answered without an access_token")
    kind = answer.get("token_type")
    if not isinstance(kind, str) or not kind:
        raise BackendUnavailable(f"{where} answered without a token_type")
    if kind.lower() != "bearer":
        raise InvalidSecret(
            f"{where} issued a {escape(kind)[:40]!s} token; only Bearer tokens can be sent",
            hints=["configure the client at the identity provider for Bearer access tokens"],
        )
    lifetime = answer.get("expires_in")
    if isinstance(lifetime, str) and lifetime.strip().isdigit():
        lifetime = int(lifetime)
    if lifetime is None:
        return token, None
    if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime <= 0:
        raise BackendUnavailable(f"{where} answered with an expires_in that is not a lifetime")
    return token, float(lifetime)


# -- errors, settings ---------------------------------------------------------------------

#: OAuth error codes (RFC 6749 5.2) → what to do about them
_DENIED_HINTS = {
    "invalid_client": "check the client_id and client_secret stored in the secret, "
    "and that the client is enabled at the identity provider",
    "unauthorized_client": "allow the client-credentials grant for this client at the "
    "identity provider",
    "unsupported_grant_type": "allow the client-credentials grant for this client at the "
    "identity provider",
    "invalid_scope": f"check the scope ({_VARIABLE['oidc_scope']} or the secret's scope)",
    "invalid_target": f"check the audience ({_VARIABLE['oidc_audience']} or the secret's audience)",
    "invalid_grant": "check the client's grants at the identity provider",
    "access_denied": "ask the identity provider's administrators to allow this client",
    "invalid_request": f"check the scope, audience and {_VARIABLE['oidc_auth_method']}",
}


def _oauth_error(code: str, description: object, client: Client) -> HelperError:
    said = one_line(escape(description), 200) if description else ""
    message = f"the identity provider refused the client {escape(client.client_id)[:80]!s}: " + (
        f"{escape(code)[:60]!s} ({said})" if said else escape(code)[:60]
    )
    if code in ("temporarily_unavailable", "server_error"):
        return BackendUnavailable(message)
    hint = _DENIED_HINTS.get(code, "check the client's settings at the identity provider")
    return BackendDenied(message, hints=[hint])


def _timed_out(where: str) -> Any:
    def build(attempts: int, last: HelperError | None) -> HelperError:
        because = f": {last.message}" if last is not None else ""
        return BackendUnavailable(
            f"{where} did not answer before the deadline ({attempts} attempt"
            f"{'s' if attempts != 1 else ''}){because}",
            hints=["raise --timeout / MLFLOW_SECRETS_TIMEOUT_SEC, or check the identity provider"],
        )

    return build


def _json_object(response: Any, where: str) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise Final(BackendUnavailable(f"{where} did not answer with a JSON object"))
    return document


def _verify(settings: Mapping[str, str], env: Mapping[str, str]) -> bool | str:
    """What requests checks the identity provider's certificate against: the CA bundle
    setting when set, else requests' own default (which honours REQUESTS_CA_BUNDLE)."""
    bundle = settings.get("oidc_ca_bundle")
    if not bundle:
        return True
    import os

    from mlflow_secrets_helper import userfiles

    path = userfiles.expand_user(bundle, env)
    if not os.access(path, os.R_OK):
        raise ConfigError(
            f"{_VARIABLE['oidc_ca_bundle']} names {escape(path)[:200]!s}, which cannot be read",
            hints=["point it at the PEM file (or directory) of the identity provider's CA"],
        )
    return path


def _require_authlib() -> None:
    import importlib

    try:
        importlib.import_module("authlib.integrations.requests_client")
    except ImportError:
        raise ConfigError(
            "an OAuth client needs authlib, which is not installed; install it with: "
            + install_hint(EXTRA, SDK)
        ) from None


def _both(
    field: str, secret_value: str | None, key: str, settings: Mapping[str, str], where: str
) -> str | None:
    """The value of a client field given in the secret, in the settings, or in both alike."""
    setting = settings.get(key)
    if secret_value and setting and secret_value != setting.strip():
        raise ConfigError(
            f"{where} says {field} differs from {_VARIABLE[key]}; keep one",
            hints=[f"remove {field} from the secret or unset {_VARIABLE[key]} (route: {key})"],
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
