"""Azure Key Vault: the provider, its settings and variables, its error mapping.

Reads one secret (latest or a pinned version) with the SDK's ``DefaultAzureCredential``
(interactive browser excluded) and ``SecretClient``, imported only inside
:meth:`AzureKeyVaultProvider.fetch`. The read runs in a daemon thread so the deadline
holds whatever the SDK does; transient Key Vault failures are retried by
:func:`~mlflow_secrets_helper.providers.base.with_retries`, not by the SDK (a 429 or 503
``Retry-After`` sets the least pause); the vault's and the token endpoints' answers are read
through :func:`_bounded_transport`, never past the size limit. A disabled,
expired or not-yet-valid secret is refused, and ``exp`` caps how long the value may be
cached. SDK log records never reach the terminal. The settings, sign-in chain and exit
statuses are described in the man page (AZURE KEY VAULT).

Seams: ``monotonic`` (the deadline), ``clock`` (the secret's ``nbf``/``exp``), ``sleep``
and ``jitter`` (the pauses), and ``client_factory``: when set it is called as
``client_factory(vault_url, credential)`` with the ``DefaultAzureCredential`` built here
and returns a ``SecretClient``-like object: ``get_secret(name, version, **options)``
(``options`` are azure-core per-call timeouts) and ``close()``.

It runs past 400 lines because one provider is one module: the settings' validation and
the mapping of the SDK's errors stay beside the read they belong to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    HelperError,
    InvalidSecret,
    NotFound,
)
from mlflow_secrets_helper.netrules import is_loopback_url, no_proxies
from mlflow_secrets_helper.providers.base import (
    DEFAULT_SEAMS,
    Fetched,
    Final,
    ProviderSpec,
    Retry,
    Seams,
    Throttled,
    bounded_requests_body,
    require_sdk,
    retry_after_seconds,
    with_retries,
)
from mlflow_secrets_helper.secret import Secret
from mlflow_secrets_helper.text import one_line

if TYPE_CHECKING:
    from datetime import datetime

    from azure.keyvault.secrets import KeyVaultSecret

NAME = "azure-key-vault"
PUBLIC_CLOUD_SUFFIX = ".vault.azure.net"
RBAC_ROLE = "Key Vault Secrets User"

SETTINGS = frozenset({"vault_url", "secret_name", "secret_version", "client_id"})
# vault names: 3-24 characters, letters, digits and single hyphens, starting with a letter
_VAULT_NAME = re.compile(r"[a-z](?:[a-z0-9]|-(?!-)){1,22}[a-z0-9]")
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_SECRET_VERSION = re.compile(r"[0-9a-f]{32}")
_CLIENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Key Vault reads are retried at most twice, inside the caller's deadline
RETRY = Retry(attempts=3, base=0.4, cap=2.0)
#: no TCP connect to the vault waits longer than this
CONNECT_TIMEOUT_CAP = 10.0


def vault_url_from(value: str) -> str:
    """``https://host[:port]`` from a vault URL, or the public-cloud URL of a bare vault name."""
    text = value.strip()
    if not text:
        raise ConfigError(
            "no Key Vault is configured",
            hints=[
                "set MLFLOW_AZURE_KEY_VAULT_URL to https://<vault>.vault.azure.net or a vault name"
            ],
        )
    if "://" not in text:
        name = text.lower()
        if not _VAULT_NAME.fullmatch(name):
            raise ConfigError(
                f"{text!r} is neither a Key Vault URL nor a vault name",
                hints=[
                    "a vault name has 3-24 letters, digits and single hyphens and starts with"
                    " a letter; otherwise give the full https:// URL"
                ],
            )
        return f"https://{name}{PUBLIC_CLOUD_SUFFIX}"
    from urllib.parse import urlsplit  # only when Azure is configured

    parts = urlsplit(text)
    if parts.scheme.lower() != "https":
        raise ConfigError(
            f"the Key Vault URL must use https, not {parts.scheme!r}",
            hints=["Key Vault accepts only TLS; the Azure SDK never sends a token over http"],
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("the Key Vault URL has an invalid port") from None
    host = (parts.hostname or "").lower()
    if (
        parts.username is not None
        or parts.password is not None
        or not _HOST.fullmatch(host)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            "the Key Vault URL must be https://<host>[:port] with no path, query or user info",
            hints=["for example https://myvault.vault.azure.net"],
        )
    return f"https://{host}" + (f":{port}" if port not in (None, 443) else "")


def _secret_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise ConfigError(
            "no Key Vault secret name is configured",
            hints=["set MLFLOW_AZURE_SECRET_NAME"],
        )
    if not _SECRET_NAME.fullmatch(name):
        raise ConfigError(
            "the Key Vault secret name must be 1-127 letters, digits and hyphens",
            hints=["check MLFLOW_AZURE_SECRET_NAME"],
        )
    return name


def _secret_version(value: str) -> str | None:
    version = value.strip().lower()
    if version in ("", "latest"):
        return None
    if not _SECRET_VERSION.fullmatch(version):
        raise ConfigError(
            "MLFLOW_AZURE_SECRET_VERSION must be 'latest' or a 32-character version id",
            hints=["list versions with: az keyvault secret list-versions --vault-name V --name N"],
        )
    return version


def managed_identity_client_id(value: str) -> str | None:
    client_id = value.strip().lower()
    if not client_id:
        return None
    if not _CLIENT_ID.fullmatch(client_id):
        raise ConfigError("client_id must be the managed identity's client id (a GUID)")
    return client_id


class AzureKeyVaultProvider:
    """Reads one secret (latest or a pinned version) from one Key Vault.

    ``env`` is read only for ``AZURE_AUTHORITY_HOST`` (a loopback authority is reached
    directly): ``DefaultAzureCredential`` reads its own variables from the process
    environment when the secret is fetched.
    """

    def __init__(
        self, settings: Mapping[str, str], env: Mapping[str, str], seams: Seams = DEFAULT_SEAMS
    ) -> None:
        self.vault_url = vault_url_from(settings.get("vault_url", ""))
        self.secret_name = _secret_name(settings.get("secret_name", ""))
        self.secret_version = _secret_version(settings.get("secret_version", ""))
        self.client_id = managed_identity_client_id(settings.get("client_id", ""))
        self._seams = seams
        self._direct_login = direct_login(env)

    def __repr__(self) -> str:
        return f"AzureKeyVaultProvider({self.reference()!r})"

    def warnings(self) -> tuple[str, ...]:
        return ()

    def reference(self) -> str:
        ref = f"{self.vault_url}/secrets/{self.secret_name}"
        return f"{ref}/{self.secret_version}" if self.secret_version else ref

    def cache_key(self) -> str:
        return f"{NAME}|{self.vault_url}|{self.secret_name}|{self.secret_version or 'latest'}"

    def fetch(self, deadline: float) -> Fetched:
        """Read the secret before ``deadline`` (``seams.monotonic()``), whatever the SDK does.

        The SDK has no single deadline covering token acquisition, the challenge round trip and
        retries, so the read runs in a daemon thread and this call stops waiting at the
        deadline; the transport's own timeouts make the abandoned thread end soon after.
        """
        # before the thread: a missing SDK is a config error, not a crash in the thread
        require_sdk(SPEC, "azure.identity", "azure.keyvault.secrets")
        remaining = deadline - self._seams.monotonic()
        if remaining <= 0:
            raise self._too_slow(0.0)
        import threading  # only a backend read needs it: keep it off the cache-hit path

        outcome: list[Fetched | BaseException] = []
        worker = threading.Thread(
            target=self._read_into,
            args=(outcome, deadline, remaining),
            name="azure-key-vault",
            daemon=True,
        )
        worker.start()
        worker.join(remaining)
        if not outcome:
            raise self._too_slow(remaining)
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _too_slow(self, seconds: float) -> BackendUnavailable:
        return BackendUnavailable(
            f"Key Vault {self.vault_url} did not return secret {self.secret_name!r} "
            f"within the {seconds:.1f} s deadline",
            hints=[
                "check network access to the vault, or raise --timeout / MLFLOW_SECRETS_TIMEOUT_SEC"
            ],
        )

    def _read_into(
        self, outcome: list[Fetched | BaseException], deadline: float, budget: float
    ) -> None:
        try:
            outcome.append(self._read(deadline, budget))
        except HelperError as error:
            outcome.append(error)
        except Exception as error:  # noqa: BLE001 - mapped, or handed to the caller's thread
            mapped = self._map(error)
            if mapped is not None:
                mapped.__cause__ = error  # shown only as a debug traceback
            outcome.append(mapped or error)

    def _read(self, deadline: float, budget: float) -> Fetched:
        credential = default_credential(
            f"the Azure sign-in for {self.vault_url}",
            client_id=self.client_id,
            direct_login=self._direct_login,
        )
        with credential:
            factory = self._seams.client_factory or _secret_client
            client = factory(self.vault_url, credential)
            try:
                secret = with_retries(
                    lambda seconds: self._get(client, seconds),
                    deadline=deadline,
                    seams=self._seams,
                    timed_out=lambda _attempts, _last: self._too_slow(budget),
                    policy=RETRY,
                )
            finally:
                client.close()
        return self._checked(secret)

    def _get(self, client: Any, seconds: float) -> KeyVaultSecret:
        """One attempt: a GET of the secret (after the challenge round trip the first time),
        with the transport's timeouts cut to the ``seconds`` left."""
        from azure.core.exceptions import ClientAuthenticationError

        try:
            secret: KeyVaultSecret = client.get_secret(
                self.secret_name,
                self.secret_version,
                connection_timeout=min(seconds, CONNECT_TIMEOUT_CAP),
                read_timeout=seconds,
                timeout=seconds,
            )
        except Exception as error:  # mapped, or raised as it is
            mapped = self._map(error)
            if mapped is None:
                raise
            if isinstance(error, ClientAuthenticationError) and error.status_code is None:
                # signing in failed, after the credential's own retries: do not start over
                raise Final(mapped) from error
            raise mapped from error
        return secret

    def _checked(self, secret: KeyVaultSecret) -> Fetched:
        properties = secret.properties
        version = properties.version
        where = f"secret {self.secret_name!r}" + (f" version {version}" if version else "")
        where += f" in {self.vault_url}"
        hint_version = "or set MLFLOW_AZURE_SECRET_VERSION to a valid version"
        if properties.enabled is False:
            raise BackendDenied(
                f"{where} is disabled",
                hints=[f"enable it in the vault, {hint_version}"],
            )
        now = self._seams.clock()
        not_before, expires_on = properties.not_before, properties.expires_on
        if not_before is not None and not_before.timestamp() > now:
            raise BackendDenied(
                f"{where} is not valid before {_utc(not_before)}",
                hints=[f"wait, change its activation date, {hint_version}"],
            )
        if expires_on is not None and expires_on.timestamp() <= now:
            raise BackendDenied(
                f"{where} expired at {_utc(expires_on)}",
                hints=[f"store a new version, {hint_version}"],
            )
        if secret.value is None:
            raise InvalidSecret(f"{where} has no value")
        return Fetched(
            value=Secret(secret.value),
            expires_at=expires_on.timestamp() if expires_on is not None else None,
        )

    def _map(self, error: Exception) -> HelperError | None:
        """The helper's error for an Azure SDK exception, or None when it is not one of them."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        secret = f"secret {self.secret_name!r} in {self.vault_url}"
        if isinstance(error, ResourceNotFoundError):
            code = _codes(error) or "SecretNotFound"
            return NotFound(
                f"{secret} was not found ({code})"
                + (
                    f"; version {self.secret_version} does not exist" if self.secret_version else ""
                ),
                hints=[
                    "check MLFLOW_AZURE_SECRET_NAME, MLFLOW_AZURE_SECRET_VERSION and the vault URL"
                ],
            )
        if isinstance(error, ClientAuthenticationError) and error.status_code is None:
            return sign_in_error(error, self.vault_url)
        if isinstance(error, HttpResponseError):
            status = error.status_code or 0
            code = _codes(error) or f"HTTP {status}"
            if status == 401:
                return BackendDenied(
                    f"Key Vault rejected the Azure token for {secret} ({code})",
                    hints=["the identity may belong to another tenant, or its token was revoked"],
                )
            if status == 403:
                if "SecretDisabled" in code:
                    return BackendDenied(
                        f"{secret} is disabled ({code})",
                        hints=[
                            "enable it in the vault, or set MLFLOW_AZURE_SECRET_VERSION "
                            "to an enabled version"
                        ],
                    )
                return BackendDenied(
                    f"access to {secret} was denied ({code})",
                    hints=[
                        f"grant the identity the '{RBAC_ROLE}' role on the vault or the secret "
                        "(or the 'Get' secret permission where the vault uses access policies), "
                        "and check the vault's firewall"
                    ],
                )
            if status in (408, 429) or status >= 500:
                message = f"Key Vault could not serve {secret} now ({code})"
                response = getattr(error, "response", None)
                headers = getattr(response, "headers", None) or {}
                wait = (
                    retry_after_seconds(headers.get("Retry-After"), self._seams.clock())
                    if status in (429, 503)
                    else None
                )
                if wait is not None:
                    return Throttled(message, retry_after=wait)
                return BackendUnavailable(message)
            return BackendDenied(f"Key Vault refused the request for {secret} ({code})")
        if isinstance(error, (ServiceRequestError, ServiceResponseError)):
            return BackendUnavailable(
                f"cannot reach Key Vault for {secret}: {one_line(str(error))}",
                hints=["check the network, proxy settings and the CA bundle (REQUESTS_CA_BUNDLE)"],
            )
        if isinstance(error, ValueError) and "challenge" in str(error).lower():
            return ConfigError(
                f"{self.vault_url} answered with an authentication challenge for another service; "
                "is it a Key Vault URL?",
                hints=["check MLFLOW_AZURE_KEY_VAULT_URL"],
            )
        return None


def direct_login(env: Mapping[str, str]) -> bool:
    """Whether ``AZURE_AUTHORITY_HOST`` is a loopback address, reached directly (no proxy)."""
    return is_loopback_url(env.get("AZURE_AUTHORITY_HOST", "").strip())


def default_credential(
    where: str, *, client_id: str | None, direct_login: bool, **options: Any
) -> Any:
    """``DefaultAzureCredential`` as the Azure providers sign in: the interactive browser
    excluded, a user-assigned managed identity when ``client_id`` is set, a loopback
    authority contacted directly, the token endpoints' answers size-limited (``where``
    names them in the error), SDK log records kept off the terminal. ``options`` go to the
    credential as they are (azure-core pipeline settings such as ``retry_total``)."""
    from azure.identity import DefaultAzureCredential

    _keep_sdk_logs_off_the_terminal()
    credential_options: dict[str, Any] = {"exclude_interactive_browser_credential": True}
    if client_id:
        credential_options["managed_identity_client_id"] = client_id
    if direct_login:  # a loopback authority is contacted directly, never via a proxy
        credential_options["proxies"] = no_proxies()
    credential_options["transport"] = _bounded_transport(where)
    try:
        return DefaultAzureCredential(**credential_options, **options)
    except ValueError as exc:  # a setting the SDK refuses, e.g. AZURE_TOKEN_CREDENTIALS=bogus
        raise ConfigError(
            f"the Azure SDK refuses its configuration: {one_line(str(exc), 200)}",
            hints=["check the AZURE_* variables (AZURE_TOKEN_CREDENTIALS takes dev or prod)"],
        ) from None


def sign_in_error(error: Exception, target: str) -> HelperError:
    """The helper's error when ``DefaultAzureCredential`` got no token for ``target`` (its
    ``ClientAuthenticationError`` without an HTTP status): unavailable when the chain failed
    on the network, denied otherwise, with what each credential said in one line."""
    summary = _chain_summary(str(getattr(error, "message", "") or error))
    if _looks_like_network(summary):
        return BackendUnavailable(f"cannot get an Azure token for {target}: {summary}")
    return BackendDenied(
        f"no Azure credential could get a token for {target}: {summary}",
        hints=[
            "configure a managed identity, a service principal (AZURE_TENANT_ID, "
            "AZURE_CLIENT_ID, AZURE_CLIENT_SECRET), workload identity, or run 'az login'"
        ],
    )


def _codes(error: Any) -> str:
    """``Code/InnerCode`` from a Key Vault error body, e.g. ``Forbidden/ForbiddenByRbac``."""
    odata = getattr(error, "error", None)
    code = getattr(odata, "code", None)
    inner = getattr(odata, "innererror", None)
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    parts = [str(part) for part in (code, inner_code) if part]
    return "/".join(parts)


def _chain_summary(message: str) -> str:
    """One line from DefaultAzureCredential's multi-line failure: each credential it tried and
    why it gave up, with the SDK's troubleshooting boilerplate left out."""
    attempts: list[str] = []
    for line in message.splitlines():
        name, sep, reason = line.strip().partition(": ")
        if not sep or not name.endswith("Credential") or " " in name:
            continue
        if "unavailable" in reason.lower() or "not fully configured" in reason.lower():
            attempts.append(f"{name}: not configured")
        else:
            attempts.append(f"{name}: {one_line(reason.split(' Visit ')[0], 200)}")
    return "; ".join(attempts) if attempts else one_line(message)


_NETWORK_WORDS = (
    "connection refused",
    "failed to establish",
    "timed out",
    "name resolution",
    "max retries exceeded",
    "connection aborted",
    "connection reset",
    "sent an answer larger than",  # the size limit on a token endpoint's answer
)


def _looks_like_network(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _NETWORK_WORDS)


def _utc(moment: datetime) -> str:
    from datetime import timezone

    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _keep_sdk_logs_off_the_terminal() -> None:
    """Give the SDK loggers a NullHandler so Python's last-resort handler never prints their
    warnings; a program that configured logging still receives the records."""
    import logging

    for name in ("azure", "msal"):
        logger = logging.getLogger(name)
        if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
            logger.addHandler(logging.NullHandler())


def _secret_client(vault_url: str, credential: Any) -> Any:
    """The production ``client_factory``: the SDK's ``SecretClient``, with the SDK's own
    retries off (:func:`with_retries` retries) and HTTP logging off."""
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url=vault_url,
        credential=credential,
        retry_total=0,
        logging_enable=False,
        # a loopback vault (an emulator) is contacted directly, never through a proxy
        proxies=no_proxies() if is_loopback_url(vault_url) else None,
        transport=_bounded_transport(f"Key Vault {vault_url}"),
    )


def _bounded_transport(where: str) -> Any:
    """azure-core's requests transport over a session whose response hook reads each answer
    itself, at most :data:`~mlflow_secrets_helper.providers.base.MAX_ANSWER_BYTES` of it."""
    from azure.core.pipeline.transport import RequestsTransport

    transport = RequestsTransport()
    transport.open()  # builds its session as azure-core configures it; the hook is added to it
    transport.session.hooks["response"].append(bounded_requests_body(where))
    return transport


SPEC = ProviderSpec(
    name=NAME,
    toggle="MLFLOW_SECRETS_AUTH_ENABLE_AZURE_KEY_VAULT",
    env_prefix="MLFLOW_AZURE",
    sdk="azure.keyvault.secrets",
    extra="azure",
    locator="secret_name",
    env_settings=(
        ("MLFLOW_AZURE_KEY_VAULT_URL", "vault_url"),
        ("MLFLOW_AZURE_SECRET_NAME", "secret_name"),
        ("MLFLOW_AZURE_SECRET_VERSION", "secret_version"),
    ),
    settings=SETTINGS,
    credential_variables=(
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_USERNAME",
        "AZURE_PASSWORD",
        "AZURE_FEDERATED_TOKEN_FILE",
    ),
    location_variables=("AZURE_AUTHORITY_HOST",),
    build=AzureKeyVaultProvider,
)
