"""The registry: the provider modules, in priority order.

Each module under ``providers/`` owns one backend and exposes its
:class:`~mlflow_secrets_helper.providers.base.ProviderSpec` as ``SPEC``; adding a
provider is one new module and one line here. The modules are imported the first
time a spec is asked for; their bodies import no SDK, so this stays cheap on the
cache-hit path.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.providers.base import (
    DEFAULT_SEAMS,
    Fetched,
    Provider,
    ProviderSpec,
    Seams,
)

__all__ = [
    "MODULES",
    "Fetched",
    "Provider",
    "ProviderSpec",
    "Seams",
    "create",
    "names",
    "spec",
    "specs",
]

#: priority order: the first enabled provider that has the secret serves
MODULES: tuple[str, ...] = ("vault", "aws", "azure", "entra", "file")

_specs: tuple[ProviderSpec, ...] | None = None


def specs() -> tuple[ProviderSpec, ...]:
    """Every provider's spec, in priority order."""
    global _specs
    if _specs is None:
        loaded = []
        for module in MODULES:
            found: ProviderSpec = importlib.import_module(f"{__name__}.{module}").SPEC
            loaded.append(found)
        _specs = tuple(loaded)
    return _specs


def names() -> tuple[str, ...]:
    return tuple(s.name for s in specs())


def spec(name: str) -> ProviderSpec:
    for found in specs():
        if found.name == name:
            return found
    raise ConfigError(f"unknown provider {name!r}", hints=["use one of: " + ", ".join(names())])


def create(
    name: str, settings: Mapping[str, str], env: Mapping[str, str], seams: Seams = DEFAULT_SEAMS
) -> Provider:
    """Build the named provider from a route's settings. Imports no SDK."""
    found = spec(name)
    unknown = sorted(set(settings) - found.settings)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigError(
            f"unknown {name} setting{plural} " + ", ".join(repr(key) for key in unknown),
            hints=[f"{name} routes accept: " + ", ".join(sorted(found.settings))],
        )
    return found.build(settings, env, seams)
