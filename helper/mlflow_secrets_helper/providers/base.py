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

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from mlflow_secrets_helper.errors import BackendUnavailable, ConfigError, HelperError
from mlflow_secrets_helper.secret import Secret

T = TypeVar("T")


class Fetched(NamedTuple):
    """One read of a secret. ``expires_at`` is an absolute unix time after which the
    backend says the value must not be used (a Vault lease, Azure's ``exp``, a token's
    end less :func:`use_until`'s margin), or None. ``local`` marks a value that is
    already a local copy (a mounted file): it is never written to the cache, and callers
    are told to ask again at ``expires_at``."""

    value: Secret[str] | Secret[bytes]
    expires_at: float | None = None
    local: bool = False


#: a short-lived token is replaced this share of its lifetime before it ends ...
EXPIRY_MARGIN_SHARE = 0.1
#: ... but at least this many seconds before (lifetimes and expiry times are whole seconds,
#: so the identity provider's clock may have started the token up to a second earlier) ...
EXPIRY_MARGIN_MIN_SEC = 1.0
#: ... and never more than this many seconds before (clock skew and the request's own time)
EXPIRY_MARGIN_MAX_SEC = 60.0


def use_until(expires_at: float, issued_at: float) -> float:
    """Until when a token that ``issued_at`` was said to expire at ``expires_at`` is used:
    its end less a tenth of its lifetime, at least 1 s (half of a lifetime under 2 s) and
    at most 60 s. A 10 s token is used for 9 s, a 4 s one for 3 s, an hour-long one until
    a minute before its end (man page, SHORT-LIVED TOKENS)."""
    lifetime = max(expires_at - issued_at, 0.0)
    least = min(EXPIRY_MARGIN_MIN_SEC, lifetime / 2)
    margin = min(EXPIRY_MARGIN_MAX_SEC, max(least, EXPIRY_MARGIN_SHARE * lifetime))
    return expires_at - margin


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
    #: the import name of its SDK, and the extra that installs it ("" for a provider that
    #: needs none, such as the file source)
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
    #: login material it reads from files under HOME by itself (``info`` shows present/absent)
    credential_files: tuple[str, ...] = ()
    #: the auth modes its answers can have (an Entra ID token is only ever a bearer token):
    #: any other configured mode is a configuration error
    auth_modes: tuple[str, ...] = ("bearer", "basic")

    def secret_variable(self) -> str:
        """The environment variable that names the secret."""
        return next(v for v, s in self.env_settings if s == self.locator)

    def variables(self) -> tuple[str, ...]:
        """Every environment variable this provider reads or shows."""
        own = (self.toggle, f"{self.env_prefix}_AUTH_MODE", f"{self.env_prefix}_TTL_SEC")
        names = (*own, *(v for v, _ in self.env_settings))
        # once each: a setting's variable may also be shown as a location (the file's path)
        return tuple(dict.fromkeys((*names, *self.credential_variables, *self.location_variables)))

    def install_hint(self) -> str:
        """One line saying how to install the provider's SDK (README "Install"), or that
        it needs none."""
        if not self.sdk:
            return f"the {self.name} provider needs no SDK"
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
    any SDK import, so a missing SDK never surfaces as a traceback or a timeout. A
    provider with no SDK (``spec.sdk == ""``) needs nothing and passes."""
    import importlib  # a read only: keep it off the cache-hit path

    for module in modules or ((spec.sdk,) if spec.sdk else ()):
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


class Throttled(BackendUnavailable):
    """The backend asked us to wait (HTTP 429 or 503 with ``Retry-After``): the next
    attempt starts no sooner than ``retry_after`` seconds later, or not at all if that is
    past the deadline. Same kind and exit status as :class:`BackendUnavailable`."""

    def __init__(self, message: str, *, retry_after: float, hints: Iterable[str] = ()) -> None:
        super().__init__(message, hints=tuple(hints))
        self.retry_after = retry_after


def retry_after_seconds(value: object, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 10.2.3): delta-seconds or an
    HTTP-date (``now`` is the wall clock, unix time); None when absent or not valid."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    from email.utils import parsedate_to_datetime  # only a throttled answer needs it

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        from datetime import timezone

        when = when.replace(tzinfo=timezone.utc)
    return max(when.timestamp() - now, 0.0)


#: the most any single backend answer (a secret, an error, a login or token answer) may be;
#: a secret is at most 64 KiB in AWS and 25 KiB in Azure, a header far less
MAX_ANSWER_BYTES = 1 << 20
#: how much of an answer is read at a time while its size is checked
READ_CHUNK = 64 << 10


def too_large(where: str) -> Final:
    """The error for an answer over :data:`MAX_ANSWER_BYTES`: exit 4, not retried (the
    backend would send the same again); a stale entry may still be served."""
    return Final(
        BackendUnavailable(
            f"{where} sent an answer larger than {MAX_ANSWER_BYTES >> 20} MiB; "
            "it was not read further",
            hints=["check that the address points at the backend and not at something else"],
        )
    )


def read_bounded(chunks: Iterable[bytes], declared: object, where: str) -> bytes:
    """The body from ``chunks``, stopping (with :func:`too_large`) as soon as it, or the
    declared ``Content-Length``, is over :data:`MAX_ANSWER_BYTES`."""
    length = declared.strip() if isinstance(declared, str) else ""
    if length.isascii() and length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise too_large(where)
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise too_large(where)
    return bytes(body)


def bounded_requests_body(where: str) -> Callable[..., None]:
    """A requests ``response`` hook that reads the body itself, at most
    :data:`MAX_ANSWER_BYTES` of it (decoded). requests runs response hooks before it
    reads the body of a non-streamed request, so nothing larger is ever held."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        try:
            body = read_bounded(
                response.iter_content(READ_CHUNK), response.headers.get("Content-Length"), where
            )
        except Final:
            response.close()
            raise
        # what requests itself does once it has read a body (requests has no public setter)
        response._content = body
        response._content_consumed = True

    return hook


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
    it is wrapped in :class:`Final`. After a :class:`Throttled` error the pause is at least
    its ``retry_after``; when that would end past ``deadline`` the error is raised at once,
    saying so. No attempt or pause runs past ``deadline``: when time runs out,
    ``timed_out(attempts, last_error)`` builds the error raised.
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
        left = deadline - seams.monotonic()
        pause = min(policy.cap, policy.base * 2 ** (made - 1)) * jitter()
        if isinstance(last, Throttled):
            if last.retry_after + policy.min_attempt > left:
                raise BackendUnavailable(
                    f"{last.message}; it asked to be retried after {last.retry_after:g} s "
                    f"(Retry-After), past the {max(left, 0.0):.1f} s left before the timeout",
                    hints=["raise --timeout / MLFLOW_SECRETS_TIMEOUT_SEC, or try again later"],
                ) from last
            # at least what the backend asked for; "Retry-After: 0" still gets the backoff
            pause = max(pause, last.retry_after)
        if pause + policy.min_attempt > left:
            raise timed_out(made, last) from last
        seams.sleep(pause)
