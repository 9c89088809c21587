"""The provider interface and the static registry of providers.

A provider knows where one secret lives and how to read it. It is built from
a route's settings without touching its SDK; the SDK is imported inside
:meth:`Provider.fetch`, so a cache hit never loads boto3, hvac or azure.

Errors: :class:`~mlflow_secrets_helper.errors.NotFound` means "the secret is
not there, try the next provider"; ``BackendDenied``, ``BackendUnavailable``,
``ConfigError`` and ``InvalidSecret`` stop resolution. A provider never prints
and never puts a secret value in an error message.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.secret import Secret


class Fetched(NamedTuple):
    """One read of a secret.

    ``expires_at`` is an absolute unix time after which the backend says the
    value must not be used (a Vault lease, Azure's ``exp``), or None.
    ``version`` is the backend's version id of what was read, when known.
    """

    value: Secret[str] | Secret[bytes]
    expires_at: float | None = None
    version: str | None = None


class Provider(Protocol):
    """What every provider implements. Built by ``from_settings`` in its module."""

    #: the provider's name as used in configuration ("vault", ...)
    name: str

    def reference(self) -> str:
        """A human-readable, non-secret locator: a path, name, ARN or URL (for messages)."""
        ...

    def cache_key(self) -> str:
        """A stable string naming exactly which secret this provider reads:
        address, namespace, mount, path or name, and requested version."""
        ...

    def fetch(self, deadline: float) -> Fetched:
        """Read the secret. ``deadline`` is a ``time.monotonic()`` value that the
        whole read, retries included, must finish before."""
        ...


class ProviderFactory(Protocol):
    def __call__(self, settings: Mapping[str, str], env: Mapping[str, str]) -> Provider: ...


#: priority order: the first enabled provider that has the secret serves
PROVIDER_NAMES: tuple[str, ...] = ("vault", "aws-secrets-manager", "azure-key-vault")

#: provider name → (module, the SDK module whose presence `info` reports)
_MODULES: dict[str, tuple[str, str]] = {
    "vault": ("mlflow_secrets_helper.providers.vault", "hvac"),
    "aws-secrets-manager": ("mlflow_secrets_helper.providers.aws", "boto3"),
    "azure-key-vault": ("mlflow_secrets_helper.providers.azure", "azure.keyvault.secrets"),
}


def create(name: str, settings: Mapping[str, str], env: Mapping[str, str]) -> Provider:
    """Build the named provider from a route's settings. Imports no SDK."""
    try:
        module_name, _sdk = _MODULES[name]
    except KeyError:
        raise ConfigError(
            f"unknown provider {name!r}",
            hints=["use one of: " + ", ".join(PROVIDER_NAMES)],
        ) from None
    module = importlib.import_module(module_name)
    factory: ProviderFactory = module.from_settings
    return factory(settings, env)


def settings(name: str) -> frozenset[str]:
    """The route settings the provider accepts. None of them holds a secret:
    login material comes from the environment only."""
    module = importlib.import_module(_MODULES[name][0])
    accepted: frozenset[str] = module.SETTINGS
    return accepted


def sdk_module(name: str) -> str:
    """The import name of the provider's SDK (for `info` and `doctor`)."""
    return _MODULES[name][1]
