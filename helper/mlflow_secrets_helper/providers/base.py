"""What a provider is: its spec, the interface of its instances, its seams, one retry loop.

A provider module owns everything about its backend and exposes it as ``SPEC``, a
:class:`ProviderSpec`: its name, SDK and extra, its settings and the environment
variables that set them, what ``info`` and ``doctor`` show, and how to build it.
Nothing outside the module names one of its variables.

Every provider class has the same constructor, ``Provider(settings, env, seams)``, and
reads its SDK only inside :meth:`Provider.fetch`, so building one (and a cache hit) loads
no SDK. Providers raise the typed errors of :mod:`mlflow_secrets_helper.errors`:
``NotFound`` means "try the next provider", everything else stops resolution. A provider
never prints and never puts a secret value in an error message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from mlflow_secrets_helper.errors import ConfigError, HelperError
from mlflow_secrets_helper.secret import Secret

T = TypeVar("T")


class Fetched(NamedTuple):
    """One read of a secret. ``expires_at`` is an absolute unix time after which the
    backend says the value must not be used (a Vault lease, Azure's ``exp``), or None."""

    value: Secret[str] | Secret[bytes]
    expires_at: float | None = None


class Memory(Protocol):
    """Small non-secret notes a provider keeps between runs, stored encrypted in the
    cache (Vault remembers the KV mount it discovered). A miss is always allowed."""

    def recall(self, key: str) -> str | None: ...

    def remember(self, key: str, note: str, ttl: float) -> None: ...


class NoMemory:
    """The memory when there is no cache: remembers nothing."""

    def recall(self, key: str) -> str | None:
        return None

    def remember(self, key: str, note: str, ttl: float) -> None:
        return None


class Seams(NamedTuple):
    """What every provider takes from outside, with production defaults.

    ``monotonic`` measures deadlines, ``clock`` is wall time (expiry dates), ``sleep``
    waits between attempts, ``client_factory`` builds the SDK client (None: the SDK's
    own, built as its authors intend; each provider documents the arguments it passes),
    ``memory`` keeps notes between runs, ``jitter`` scales each pause between attempts
    (a number in [0, 1); None: :func:`random.random`)."""

    monotonic: Callable[[], float] = time.monotonic
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    client_factory: Callable[..., Any] | None = None
    memory: Memory = NoMemory()
    jitter: Callable[[], float] | None = None


DEFAULT_SEAMS = Seams()


class Provider(Protocol):
    """What every provider instance implements."""

    def reference(self) -> str:
        """A human-readable, non-secret locator: a path, name, ARN or URL (for messages)."""
        ...

    def cache_key(self) -> str:
        """A stable string naming exactly which secret this provider reads:
        address, namespace, mount, path or name, and requested version."""
        ...

    def warnings(self) -> tuple[str, ...]:
        """One-line notes about how it is configured (e.g. TLS checks off)."""
        ...

    def fetch(self, deadline: float) -> Fetched:
        """Read the secret. ``deadline`` is a ``seams.monotonic()`` value that the
        whole read, retries included, must finish before."""
        ...


class ProviderSpec(NamedTuple):
    """Everything the rest of the helper knows about one provider."""

    #: the name in MLFLOW_SECRETS_AUTH_ENABLE and in a route's ``provider``
    name: str
    #: the variable that enables or disables it alone (true/false)
    toggle: str
    #: ``<prefix>_AUTH_MODE`` and ``<prefix>_TTL_SEC`` configure its route
    env_prefix: str
    #: the import name of its SDK, and the extra that installs it
    sdk: str
    extra: str
    #: the setting that locates the secret: a provider enabled without it is skipped
    locator: str
    #: environment variable → route setting (the first listed wins for aliases)
    env_settings: tuple[tuple[str, str], ...]
    #: every route setting it accepts (none of them holds a secret)
    settings: frozenset[str]
    #: login material read from the environment: shown only as set / not set
    credential_variables: tuple[str, ...]
    #: where its backend is and how TLS is checked: shown with their values
    location_variables: tuple[str, ...]
    #: build an instance: ``build(settings, env, seams)``; loads no SDK
    build: Callable[[Mapping[str, str], Mapping[str, str], Seams], Provider]

    def secret_variable(self) -> str:
        """The environment variable that names the secret."""
        return next(v for v, s in self.env_settings if s == self.locator)

    def variables(self) -> tuple[str, ...]:
        """Every environment variable this provider reads or shows."""
        own = (self.toggle, f"{self.env_prefix}_AUTH_MODE", f"{self.env_prefix}_TTL_SEC")
        names = (*own, *(v for v, _ in self.env_settings))
        return (*names, *self.credential_variables, *self.location_variables)

    def install_hint(self) -> str:
        """One line saying how to install the provider's SDK (README "Install")."""
        return install_hint(self.extra, self.sdk)


def install_hint(extra: str, sdk: str) -> str:
    """How to install an extra, in words that work today: the package is installed from
    a checkout or a built wheel until it is published on the package index."""
    return (
        f"install the {extra} extra ({sdk}): pip install '<checkout or wheel>[{extra}]', "
        f"or pip install 'mlflow-secrets-helper[{extra}]' once it is published"
    )


def require_sdk(spec: ProviderSpec, *modules: str) -> None:
    """Import the provider's SDK modules (default: ``spec.sdk``), or raise a one-line
    :class:`ConfigError` (exit 5, never retried) that names the provider and the install
    command ``doctor`` prints. Every provider calls it first thing in ``fetch``, before
    any SDK import, so a missing SDK never surfaces as a traceback or a timeout."""
    import importlib  # a read only: keep it off the cache-hit path

    for module in modules or (spec.sdk,):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = exc.name or module
            why = (
                "is not installed"
                if missing == module or module.startswith(missing + ".")
                else f"cannot be imported ({missing} is missing)"
            )
            raise ConfigError(
                f"the {spec.name} provider needs {module}, which {why}; "
                f"install it with: {spec.install_hint()}"
            ) from None


class Retry(NamedTuple):
    """How often and how patiently a provider retries a transient failure itself."""

    attempts: int = 3
    base: float = 0.25
    cap: float = 2.0
    #: no attempt starts with less time than this left
    min_attempt: float = 0.05


DEFAULT_RETRY = Retry()


class Final(Exception):
    """Raised by an attempt to end :func:`with_retries` at once with ``error``, although
    its kind is one a caller may retry later (a TLS failure fails the same way again).
    The ``__cause__`` of the ``Final`` becomes the ``__cause__`` of the error raised."""

    def __init__(self, error: HelperError) -> None:
        super().__init__(error.message)
        self.error = error


def with_retries(
    attempt: Callable[[float], T],
    *,
    deadline: float,
    seams: Seams,
    timed_out: Callable[[int, HelperError | None], HelperError],
    policy: Retry = DEFAULT_RETRY,
    jitter: Callable[[], float] | None = None,
) -> T:
    """Run ``attempt(seconds_left)`` until it returns or raises a final error.

    ``attempt`` raises typed errors; a retryable one (``BackendUnavailable``) is tried
    again after a full-jitter exponential pause while attempts and time remain, unless
    it is wrapped in :class:`Final`. No attempt or pause runs past ``deadline``: when
    time runs out, ``timed_out(attempts, last_error)`` builds the error raised.
    """
    if jitter is None:
        jitter = seams.jitter
    if jitter is None:
        import random  # only a retry needs it: keep it off the cache-hit path

        jitter = random.random
    made = 0
    last: HelperError | None = None
    while True:
        remaining = deadline - seams.monotonic()
        if remaining < policy.min_attempt:
            raise timed_out(made, last) from last
        made += 1
        try:
            return attempt(remaining)
        except Final as stop:
            raise stop.error from stop.__cause__
        except HelperError as exc:
            if not exc.retryable or made >= policy.attempts:
                raise
            last = exc
        pause = min(policy.cap, policy.base * 2 ** (made - 1)) * jitter()
        if pause + policy.min_attempt > deadline - seams.monotonic():
            raise timed_out(made, last) from last
        seams.sleep(pause)
