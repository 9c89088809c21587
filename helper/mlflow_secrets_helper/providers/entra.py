"""Microsoft Entra ID: an access token for an app's scope, served as a bearer token.

MLflow behind App Service authentication or API Management takes an Entra ID access
token issued for the app registration that protects it. This provider asks the Azure
SDK's ``DefaultAzureCredential`` (built as the Key Vault provider builds it:
:func:`~mlflow_secrets_helper.providers.azure.default_credential`) for a token for one
configured scope, ``MLFLOW_AZURE_TOKEN_SCOPE``, and returns it with
``expires_at = use_until(expires_on, issued_at)``: the resolver caches it encrypted,
refreshes it ahead of that time and fetches a new one single-flight across processes,
like any other entry. azure-identity is imported only inside :meth:`fetch`.

The scope is one scope: ``<resource>/.default`` (the only kind the client-credentials
flow and managed identities accept), or the resource itself (an Application ID URI such
as ``api://<app-id>`` or ``https://...``, or the application id), to which ``/.default``
is added. The tenant is the credential's own (``AZURE_TENANT_ID``, the managed
identity's). An access token is only ever a bearer token (``auth_modes`` in the spec: the
configuration refuses ``basic``). The rules are in the man page (MICROSOFT
ENTRA ID).

Seams: ``clock`` (when a token was asked for, for the margin), ``monotonic``, ``sleep``
and ``jitter`` (:func:`~mlflow_secrets_helper.providers.base.with_retries`), and
``client_factory``: when set it is called as ``client_factory(where=..., client_id=...,
direct_login=..., retry_total=0)`` instead of ``default_credential`` and returns a
context manager with ``get_token(scope)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    HelperError,
)
from mlflow_secrets_helper.providers import azure
from mlflow_secrets_helper.providers.base import (
    DEFAULT_SEAMS,
    Fetched,
    ProviderSpec,
    Retry,
    Seams,
    require_sdk,
    use_until,
    with_retries,
)
from mlflow_secrets_helper.secret import Secret

NAME = "entra-id"
ENV_PREFIX = "MLFLOW_AZURE_TOKEN"
SCOPE_VARIABLE = f"{ENV_PREFIX}_SCOPE"
DEFAULT_SUFFIX = "/.default"

SETTINGS = frozenset({"token_scope", "client_id"})
#: an Application ID URI (api:// or https://, a host-like part, an optional path) ...
_RESOURCE_URI = re.compile(r"(?:api|https)://[A-Za-z0-9._~%!$&'()*+;=:-]+(?:/[\x21-\x7e]*)?")
#: ... or the application (client) id itself
_APP_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: characters no scope contains: a second scope, a query, a fragment, user info
_NOT_IN_A_SCOPE = re.compile(r"[\s,?#@\"\\]")

#: a token request is tried at most three times, inside the caller's deadline; the
#: credential's own retries are off (``retry_total=0``), so these are all there are
RETRY = Retry(attempts=3, base=0.4, cap=2.0)

_SCOPE_HINT = f"set {SCOPE_VARIABLE} to the app's scope, e.g. api://<application id>/.default"


def token_scope(value: str) -> str:
    """The one ``<resource>/.default`` scope a token is asked for, from a scope or a
    resource (to which ``/.default`` is added). Raises :class:`ConfigError` with a hint."""
    text = value.strip()
    if not text:
        raise ConfigError("no Entra ID token scope is configured", hints=[_SCOPE_HINT])
    if _NOT_IN_A_SCOPE.search(text):
        raise ConfigError(
            f"{SCOPE_VARIABLE} must be one scope (no spaces, commas, query, fragment or user info)",
            hints=[
                "a token is issued for one app: give that app's scope, "
                "api://<application id>/.default"
            ],
        )
    resource = text[: -len(DEFAULT_SUFFIX)] if text.endswith(DEFAULT_SUFFIX) else text
    if not (_RESOURCE_URI.fullmatch(resource) or _APP_ID.fullmatch(resource)):
        raise ConfigError(
            f"{text!r} is not an Entra ID scope for an app",
            hints=[
                "give <Application ID URI>/.default (api://... or https://...) or "
                "<application id>/.default, as shown under 'Expose an API' in the app "
                "registration"
            ],
        )
    return resource + DEFAULT_SUFFIX


#: the environment variables that choose whose token DefaultAzureCredential gets; each is
#: part of the cache entry's name (a developer sign-in, ``az login``, cannot be told apart:
#: see the man page)
IDENTITY_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_USERNAME",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
)


class EntraTokenProvider:
    """An Entra ID access token for one scope, from ``DefaultAzureCredential``.

    ``env`` is read for ``AZURE_AUTHORITY_HOST`` (a loopback authority is reached directly),
    for the identity that names the cache entry (``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``)
    and for the auth mode; the credential reads its own variables from the process
    environment when a token is fetched.
    """

    def __init__(
        self, settings: Mapping[str, str], env: Mapping[str, str], seams: Seams = DEFAULT_SEAMS
    ) -> None:
        self.scope = token_scope(settings.get("token_scope", ""))
        self.client_id = azure.managed_identity_client_id(settings.get("client_id", ""))
        self._seams = seams
        self._direct_login = azure.direct_login(env)
        # A token is the identity's: everything that chooses the identity names the entry
        # (the route's managed identity and the environment's sign-in variables alike).
        self._identity = (
            f"mi={self.client_id}",
            *(f"{name}={env.get(name, '').strip()}" for name in IDENTITY_VARIABLES),
        )

    def __repr__(self) -> str:
        return f"EntraTokenProvider({self.scope!r})"

    def warnings(self) -> tuple[str, ...]:
        return ()

    def reference(self) -> str:
        return self.scope

    def cache_key(self) -> str:
        return "|".join((NAME, self.scope, *self._identity))

    def fetch(self, deadline: float) -> Fetched:
        """Ask for a token before ``deadline`` (``seams.monotonic()``); network failures
        are retried, a refusal is not. The process-level deadline guard ends a request
        that hangs."""
        require_sdk(SPEC, "azure.identity")
        budget = max(deadline - self._seams.monotonic(), 0.0)
        factory = self._seams.client_factory or azure.default_credential
        credential = factory(
            where=f"the Entra ID sign-in for {self.scope}",
            client_id=self.client_id,
            direct_login=self._direct_login,
            retry_total=0,  # with_retries retries, inside the deadline
        )
        with credential:
            return with_retries(
                lambda _seconds: self._get(credential),
                deadline=deadline,
                seams=self._seams,
                timed_out=lambda attempts, last: self._too_slow(budget, attempts, last),
                policy=RETRY,
            )

    def _get(self, credential: Any) -> Fetched:
        from azure.core.exceptions import ClientAuthenticationError

        issued_at = self._seams.clock()
        try:
            token = credential.get_token(self.scope)
        except ClientAuthenticationError as error:  # CredentialUnavailableError included
            raise azure.sign_in_error(error, self.scope) from error
        expires_on = float(token.expires_on)
        if expires_on <= self._seams.clock():
            raise BackendDenied(
                f"the Entra ID token for {self.scope} had expired when it arrived",
                hints=["check this machine's clock"],
            )
        return Fetched(Secret(str(token.token)), expires_at=use_until(expires_on, issued_at))

    def _too_slow(self, budget: float, attempts: int, last: HelperError | None) -> HelperError:
        tried = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        why = f"; last: {last.message}" if last is not None else ""
        return BackendUnavailable(
            f"no Entra ID token for {self.scope} within the {budget:.1f} s timeout ({tried}{why})",
            hints=["check the network path to the identity endpoint, or raise --timeout"],
        )


SPEC = ProviderSpec(
    name=NAME,
    toggle="MLFLOW_SECRETS_AUTH_ENABLE_ENTRA_ID",
    env_prefix=ENV_PREFIX,
    sdk="azure.identity",
    extra="azure",
    locator="token_scope",
    env_settings=((SCOPE_VARIABLE, "token_scope"),),
    settings=SETTINGS,
    # the same sign-in chain as Key Vault: its variables are the Azure provider's
    credential_variables=azure.SPEC.credential_variables,
    location_variables=azure.SPEC.location_variables,
    build=EntraTokenProvider,
    auth_modes=("bearer",),
)
