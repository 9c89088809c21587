"""The identity provider's endpoints: OpenID discovery and the token request, made by
authlib's requests client as its authors intend, with the rules every request here
shares (the deadline, the CA, no redirect, a bounded body, proxies as for any backend)
and the identity provider's answers mapped to the helper's errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    HelperError,
    InvalidSecret,
)
from mlflow_secrets_helper.oauth.client import AUTH_METHODS, VARIABLE, Client, check_endpoint
from mlflow_secrets_helper.providers.base import (
    Final,
    Seams,
    Throttled,
    bounded_requests_body,
    install_hint,
    retry_after_seconds,
    with_retries,
)
from mlflow_secrets_helper.text import display_url, escape, one_line

#: how long the token endpoint found by discovery is remembered (an encrypted cache note)
DISCOVERY_NOTE_SEC = 3600.0
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: the extra that installs authlib, and the module checked for it
EXTRA, SDK = "oidc", "authlib"


def discover(client: Client, verify: bool | str, seams: Seams, deadline: float) -> str:
    """The token endpoint from the issuer's OpenID configuration (remembered for an hour)."""
    assert client.issuer is not None
    issuer = client.issuer.rstrip("/")
    note_key = "oidc-discovery|" + issuer
    remembered = _read_note(seams.memory.recall(note_key))
    if remembered is not None:
        endpoint, methods = remembered
        _check_auth_method(client, methods)
        return endpoint
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
                    hints=[f"check {VARIABLE['oidc_issuer']}, or set {VARIABLE['oidc_token_url']}"],
                )
            )
        return _json_object(response, where)

    document = with_retries(attempt, deadline=deadline, seams=seams, timed_out=_timed_out(where))
    found = str(document.get("issuer", "")).rstrip("/")
    if found != issuer:
        raise ConfigError(
            f"{where} names another issuer ({escape(found)[:200]!s}); it is not used",
            hints=[f"set {VARIABLE['oidc_issuer']} to the issuer exactly as the provider names it"],
        )
    endpoint = document.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError(f"{where} has no token_endpoint")
    check_endpoint(endpoint, f"the token endpoint that {where} names")
    listed = document.get("token_endpoint_auth_methods_supported")
    methods = [m for m in listed if isinstance(m, str)] if isinstance(listed, list) else []
    _check_auth_method(client, methods)
    note = json.dumps({"token_endpoint": endpoint, "auth_methods": methods})
    seams.memory.remember(note_key, note, DISCOVERY_NOTE_SEC)
    return endpoint


def _check_auth_method(client: Client, methods: list[str]) -> None:
    """When the provider lists the ways clients may authenticate, ours must be one."""
    if methods and client.auth_method not in methods:
        raise ConfigError(
            f"the identity provider does not accept {client.auth_method} at its token endpoint",
            hints=[
                f"set {VARIABLE['oidc_auth_method']} to one it supports: "
                + ", ".join(m for m in AUTH_METHODS if m in methods)
            ],
        )


def _read_note(note: str | None) -> tuple[str, list[str]] | None:
    """A remembered discovery: the token endpoint and the auth methods, or None."""
    try:
        found = json.loads(note) if note else None
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    endpoint, methods = found.get("token_endpoint"), found.get("auth_methods")
    if not isinstance(endpoint, str) or not isinstance(methods, list):
        return None
    return endpoint, [m for m in methods if isinstance(m, str)]


def token_request(
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
                    refusals=True,
                )
            except OAuthError as exc:
                raise _oauth_error(str(exc.error or ""), exc.description, client) from None
            except (ValueError, TypeError, OverflowError):
                # authlib reads the answer first: not a JSON object, or an expires_in it
                # cannot turn into a number
                raise Final(
                    BackendUnavailable(
                        f"{where} sent a token response that cannot be read (not a JSON "
                        "object, or an expires_in that is not a number of seconds)"
                    )
                ) from None

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
    refusals: bool = False,
) -> Any:
    """One request with the rules every call here shares: the deadline, the CA, no
    redirect, a bounded body, proxies as for any backend, and the errors mapped. With
    ``refusals``, a 4xx answer that is not an OAuth error is a refusal (exit 3)."""
    import requests.exceptions as rq

    from mlflow_secrets_helper import netrules

    options: dict[str, Any] = {
        "timeout": remaining,
        "verify": verify,
        "allow_redirects": False,
        "hooks": {"response": [_status_guard(where, seams), bounded_requests_body(where)]},
    }
    if refusals:
        options["hooks"]["response"].append(_refusal_guard(where))
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
                    f"trust the identity provider's CA with {VARIABLE['oidc_ca_bundle']}",
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
                    hints=[f"set {VARIABLE['oidc_token_url']} or the issuer to the final address"],
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


def _refusal_guard(where: str) -> Any:
    """A requests hook, run after the body is read: a 4xx answer without an OAuth error
    (an HTML page, an empty body, a gateway's own JSON) is a refusal, not a fault."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        status = response.status_code
        if not 400 <= status < 500:
            return
        try:
            document = json.loads(response.content or b"null")
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            return  # an OAuth error: authlib raises it, _oauth_error maps it
        raise Final(
            BackendDenied(
                f"{where} answered HTTP {status} without an OAuth error",
                hints=[_DENIED_HINTS["invalid_client"]],
            )
        )

    return hook


def read_token(answer: Any, token_url: str) -> tuple[str, float | None]:
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
    "invalid_scope": f"check the scope ({VARIABLE['oidc_scope']} or the secret's scope)",
    "invalid_target": f"check the audience ({VARIABLE['oidc_audience']} or the secret's audience)",
    "invalid_grant": "check the client's grants at the identity provider",
    "access_denied": "ask the identity provider's administrators to allow this client",
    "invalid_request": f"check the scope, audience and {VARIABLE['oidc_auth_method']}",
}


def _oauth_error(code: str, description: object, client: Client) -> HelperError:
    # the identity provider's own words, minus the client secret should it echo it
    text = str(description or "").replace(client.client_secret.expose(), "<redacted>")
    said = one_line(escape(text), 200) if text else ""
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


def verify_setting(settings: Mapping[str, str], env: Mapping[str, str]) -> bool | str:
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
            f"{VARIABLE['oidc_ca_bundle']} names {escape(path)[:200]!s}, which cannot be read",
            hints=["point it at the PEM file (or directory) of the identity provider's CA"],
        )
    return path


def require_authlib() -> None:
    import importlib

    try:
        importlib.import_module("authlib.integrations.requests_client")
    except ImportError:
        raise ConfigError(
            "an OAuth client needs authlib, which is not installed; install it with: "
            + install_hint(EXTRA, SDK)
        ) from None
