"""OAuth 2.0 client credentials (RFC 6749 section 4.4): a secret that holds an OAuth
client is exchanged for an access token, which is what the helper serves and caches.

This package owns the exchange: :mod:`.client` reads the client from a secret and
combines it with the route's ``oidc_*`` settings (pure); :mod:`.endpoint` finds the token
endpoint (given, or by OpenID discovery from the issuer, remembered as an encrypted cache
note) and makes the token request, with authlib's requests client as its authors intend;
this module puts the two together (:func:`exchange`, :func:`request_token`). The
client secret goes to the token endpoint only: over https (plain http only to a literal
loopback address), never across a redirect, never into the cache or a message.

The resolver calls :func:`exchange` after any provider's read, so every store (and the
file source) can hold a client. The rules are the SHORT-LIVED TOKENS section of the man
page; ``tests/e2e/test_oauth.py`` runs them against a real OpenID Provider over TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from mlflow_secrets_helper.errors import InvalidSecret
from mlflow_secrets_helper.oauth.client import Client, check_endpoint, holds_client, read_client
from mlflow_secrets_helper.oauth.endpoint import (
    discover,
    read_token,
    require_authlib,
    token_request,
    verify_setting,
)
from mlflow_secrets_helper.providers.base import Fetched, Seams, use_until
from mlflow_secrets_helper.secret import Bearer, Secret

__all__ = [
    "Client",
    "Token",
    "bearer",
    "check_endpoint",
    "exchange",
    "holds_client",
    "read_client",
    "request_token",
]


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
    require_authlib()
    verify = verify_setting(settings, env)
    token_url = client.token_url or discover(client, verify, seams, deadline)
    issued_at = seams.clock()
    answer = token_request(client, token_url, verify, seams, deadline)
    token, lifetime = read_token(answer, token_url)
    return Token(Secret(token), token_url, issued_at, lifetime)


def bearer(token: Secret[str] | Secret[bytes], mode: str | None, reference: str) -> Bearer:
    """The credential an access token makes: always ``Bearer``, never read as one of the
    secret formats. An auth mode of ``basic`` for the route is an :class:`InvalidSecret`."""
    where = f"the access token for the OAuth client in {reference}"
    if mode == "basic":
        raise InvalidSecret(
            f"{where} is a bearer token, but auth mode basic is configured",
            hints=["remove the auth mode or set it to bearer"],
        )
    value = token.expose()
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        return Bearer(Secret(text))
    except InvalidSecret as exc:
        raise InvalidSecret(f"{where}: {exc.message}", hints=exc.hints) from None
