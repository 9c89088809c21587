"""``doctor``'s checks of one route: the provider's settings and SDK, a real read (bypassing
the cache), the OAuth exchange when the secret holds a client, the secret format and the
header, shown as its name and scheme only. Never a secret value, a token or a backend
credential.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from mlflow_secrets_helper import oauth, providers
from mlflow_secrets_helper.config import Config, Route
from mlflow_secrets_helper.deadline import guard as deadline_guard
from mlflow_secrets_helper.diagnostics.info import sdk_installed
from mlflow_secrets_helper.diagnostics.report import Check
from mlflow_secrets_helper.errors import HelperError, NotFound
from mlflow_secrets_helper.providers.base import Fetched, Seams
from mlflow_secrets_helper.secret import (
    BASIC_HINT,
    Credential,
    looks_like_user_pass,
    parse_secret,
)
from mlflow_secrets_helper.text import display_url, escape


def check_route(
    route: Route,
    number: int,
    config: Config,
    env: Mapping[str, str],
    *,
    fallback: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], float] = time.time,
) -> list[Check]:
    """SDK, login and read, secret format and header for one route. Never shows the value.

    ``fallback``: a later route serves the same hosts, so "not found" here is a warning.
    """
    label = f"route {number} ({route.provider})"
    checks: list[Check] = []
    try:
        provider = providers.create(route.provider, route.settings, env)
    except HelperError as exc:
        return [Check.failed(f"{label}: settings", exc)]
    reference = provider.reference()
    spec = providers.spec(route.provider)
    if not spec.sdk:
        checks.append(Check("ok", f"{label}: no SDK needed"))
    elif not sdk_installed(spec):
        return [
            Check("FAIL", f"{label}: SDK {spec.sdk} is not installed", (spec.install_hint(),), 5)
        ]
    else:
        checks.append(Check("ok", f"{label}: SDK {spec.sdk} is installed"))
    checks.extend(Check("warn", f"{label}: {w}") for w in provider.warnings())

    started = monotonic()
    try:
        with deadline_guard(started + config.timeout_sec, monotonic, provider.reference):
            fetched = provider.fetch(started + config.timeout_sec)
    except NotFound as exc:
        if fallback:
            return [
                *checks,
                Check(
                    "warn",
                    f"{label}: {exc.kind}: {exc.message}; the next provider is tried",
                    exc.hints,
                ),
            ]
        return [*checks, Check.failed(f"{label}: read {reference}", exc)]
    except HelperError as exc:
        return [*checks, Check.failed(f"{label}: read {reference}", exc)]
    except Exception as exc:  # noqa: BLE001 - an SDK surprise: its type only, never its text
        return [*checks, unexpected(f"{label}: read {reference}", exc)]
    elapsed = monotonic() - started
    done = "logged in and read" if spec.sdk else "read"
    read = f"{label}: {done} {reference} in {elapsed:.2f} s"
    checks.append(Check("ok", read + valid_for(fetched.expires_at, clock())))
    if route.oauth and not oauth.holds_client(fetched.value):
        names = ", ".join(key for key, _ in route.oauth)
        checks.append(
            Check(
                "warn",
                f"{label}: OAuth settings ({names}) are set, but the secret is not an OAuth "
                "client, so they are not used",
                ('an OAuth client is stored as {"client_id": "...", "client_secret": "..."}',),
            )
        )
    exchanged = oauth.holds_client(fetched.value)
    if exchanged:
        line, token = _check_exchange(label, route, fetched, reference, config, env, monotonic)
        checks.append(line)
        if token is None:
            return checks
        fetched = token

    try:
        credential: Credential = (
            oauth.bearer(fetched.value, route.auth_mode, reference)
            if exchanged
            else parse_secret(fetched.value, route.auth_mode, reference=reference)
        )
    except HelperError as exc:
        return [*checks, Check.failed(f"{label}: secret format", exc)]
    kind = "bearer token" if credential.mode == "bearer" else "username and password (basic)"
    if credential.mode == "bearer" and looks_like_user_pass(fetched.value):
        # what mlflow-secrets-auth users store; it works only if the server wants that token
        checks.append(
            Check(
                "warn",
                f"{label}: secret format: a plain string shaped like username:password; "
                "it is sent as a bearer token, not as basic auth",
                (BASIC_HINT,),
            )
        )
    else:
        checks.append(Check("ok", f"{label}: secret format: {kind}"))
    try:
        shown = describe_header(route.header_name, credential)
    except HelperError as exc:
        return [*checks, Check.failed(f"{label}: header", exc)]
    checks.append(Check("ok", f"{label}: header {shown}"))
    return checks


def _check_exchange(
    label: str,
    route: Route,
    fetched: Fetched,
    reference: str,
    config: Config,
    env: Mapping[str, str],
    monotonic: Callable[[], float],
) -> tuple[Check, Fetched | None]:
    """Exchange the OAuth client in the secret for a token, as ``get`` would (without the
    cache); the line names the client and the endpoint and gives the token's lifetime."""
    started = monotonic()
    what = f"{label}: OAuth client exchange"
    try:
        with deadline_guard(started + config.timeout_sec, monotonic, lambda: "the token endpoint"):
            client = oauth.read_client(fetched.value, dict(route.oauth), reference=reference)
            token = oauth.request_token(
                fetched.value,
                dict(route.oauth),
                env,
                Seams(monotonic=monotonic),
                started + config.timeout_sec,
                reference=reference,
            )
    except HelperError as exc:
        return Check.failed(what, exc), None
    except Exception as exc:  # noqa: BLE001 - a library surprise: its type only, never its text
        return unexpected(what, exc), None
    lifetime = (
        "no expires_in: the route's TTL decides"
        if token.lifetime is None
        else f"expires in {token.lifetime:g} s"
    )
    line = Check(
        "ok",
        f"{label}: OAuth client {escape(client.client_id)} got a Bearer token from "
        f"{display_url(token.token_url)} ({lifetime})",
    )
    return line, token.fetched()


def valid_for(expires_at: float | None, now: float) -> str:
    """``; valid for N s`` (or min, or d) when the backend said until when the value may be
    used (a token's end less the margin, a lease, an expiry date); empty otherwise."""
    if expires_at is None:
        return ""
    left = max(int(expires_at - now), 0)
    if left < 120:
        return f"; valid for {left} s"
    if left < 2 * 86400:
        return f"; valid for {left // 60} min"
    return f"; valid for {left // 86400} d"


def describe_header(name: str, credential: Credential) -> str:
    """``Name: Scheme <redacted>`` after building (and so validating) the real value."""
    credential.header_value()  # built only to validate it; the value is never shown
    scheme = "Bearer" if credential.mode == "bearer" else "Basic"
    return f"{name}: {scheme} <redacted>"


def unexpected(what: str, exc: BaseException) -> Check:
    return Check(
        "FAIL",
        f"{what}: unexpected {type(exc).__name__}",
        ("run the same call with get and MLFLOW_SECRETS_LOG_LEVEL=debug for details",),
        5,
    )
