"""Resolution: the host policy, then the cache, then the providers, in route order.

This module owns the order of the rules that turn a target into an :class:`Answer`
(policy before cache; cached, refreshed-ahead, fetched or stale; the first provider
whose secret exists serves) and erasing what was cached (:meth:`Resolver.erase`, which
says what it did as an :class:`EraseResult`). Providers are built through the
``create_provider`` seam, so a cache hit loads no SDK and tests can pass fakes.

The rules are in the man page: HOST POLICY, CONFIGURATION FILE (route order), CACHE,
and ACTIONS (erase); ``tests/unit/test_resolver.py`` holds the resolver to each of them.
"""

import enum
import time
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

from mlflow_secrets_helper import providers
from mlflow_secrets_helper.cache import Cache, CacheIdentity, Entry
from mlflow_secrets_helper.config import Config, Route
from mlflow_secrets_helper.errors import (
    BackendUnavailable,
    HelperError,
    HostNotConfigured,
    NotFound,
)
from mlflow_secrets_helper.protocol import Target
from mlflow_secrets_helper.providers.base import Memory, Provider, Seams
from mlflow_secrets_helper.secret import Credential, Secret, parse_secret

Source = Literal["cache", "backend", "stale"]

#: how soon a caller holding a stale answer should ask again
STALE_RETRY_SEC = 15.0


class Answer(NamedTuple):
    """A credential ready to print, with what the caller may do with it."""

    credential: Credential
    header_name: str
    credential_id: str
    expires_at: float | None
    refresh_after: float | None
    source: Source
    #: one-line warnings from the providers serving the target (e.g. TLS checks off)
    warnings: tuple[str, ...] = ()

    def header_value(self) -> Secret[str]:
        return self.credential.header_value()


class EraseResult(enum.Enum):
    """What ``erase`` did. Erasing nothing is not a failure (git expects exit 0)."""

    #: an entry holding the named credential (or any, when none was named) was deleted
    ERASED = "erased"
    #: nothing is cached for the target
    NOT_CACHED = "not-cached"
    #: an entry is cached, but it holds another credential than the one named
    NOT_OURS = "not-ours"


class _Candidate(NamedTuple):
    route: Route
    provider: Provider
    identity: CacheIdentity


class Resolver:
    def __init__(
        self,
        config: Config,
        cache: Cache,
        env: Mapping[str, str],
        *,
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        create_provider: Callable[
            [str, Mapping[str, str], Mapping[str, str], Seams], Provider
        ] = providers.create,
    ) -> None:
        self._config = config
        self._cache = cache
        self._env = env
        self._warn = warn
        self._clock = clock
        self._monotonic = monotonic
        self._create_provider = create_provider
        self._seams = Seams(monotonic=monotonic, clock=clock, memory=_LazyMemory(cache))

    def get(self, target: Target, *, refresh: bool = False) -> Answer:
        candidates = self._candidates(target)
        answer = self._get(candidates, refresh=refresh)
        warnings = tuple(w for c in candidates for w in _provider_warnings(c.provider))
        return answer._replace(warnings=warnings) if warnings else answer

    def _get(self, candidates: list[_Candidate], *, refresh: bool) -> Answer:
        deadline = self._monotonic() + self._config.timeout_sec
        if not refresh:
            for candidate in candidates:
                answer = self._from_cache(candidate)
                if answer is not None:
                    self._cache.record(hit=True)
                    return answer
            self._cache.record(hit=False)
        first = candidates[0]
        with self._cache.lock(first.identity, deadline):
            if not refresh:
                # Another process may have fetched while we waited for the lock.
                for candidate in candidates:
                    answer = self._from_cache(candidate, refresh_ahead=False)
                    if answer is not None:
                        return answer
            return self._fetch_first(candidates, deadline, allow_stale=not refresh)

    def erase(
        self, target: Target, *, credential_id: str | None = None, value: str | None = None
    ) -> EraseResult:
        """Delete what ``get`` cached for ``target`` (the policy is checked first).

        With ``credential_id`` this is compare-and-delete: an entry goes only while it
        still holds that credential, so a fresh one another process just stored survives.
        Otherwise, with ``value`` (git's ``password`` or ``credential``), only an entry
        holding that value goes. With neither, every entry for the target goes.
        """
        erased = cached = False
        for candidate in self._candidates(target, required=False):
            identity = candidate.identity
            if credential_id is None and value is not None:
                entry = self._cache.get(identity)
                if entry is None:
                    continue
                cached = True
                if _git_value(entry.credential) != Secret(value):
                    continue
                wanted: str | None = entry.credential_id
            else:
                wanted = credential_id
            if self._cache.erase(identity, wanted):
                erased = True
            elif wanted is not None and self._cache.get(identity) is not None:
                cached = True
        if erased:
            return EraseResult.ERASED
        return EraseResult.NOT_OURS if cached else EraseResult.NOT_CACHED

    # -- internals ---------------------------------------------------------------

    def _candidates(self, target: Target, *, required: bool = True) -> list[_Candidate]:
        self._config.policy.check(target, self._env)
        routes = self._config.routes_for(target)
        if not routes:
            if not required:
                return []
            if not self._config.routes:
                raise HostNotConfigured(
                    f"no provider is configured, so nothing serves {target.origin()}",
                    hints=[
                        f"set MLFLOW_SECRETS_AUTH_ENABLE ({_one_of(providers.names())}) and "
                        "the provider's secret variables, or add a [[routes]] table to the "
                        "config file",
                    ],
                )
            raise HostNotConfigured(
                f"no route in the config file serves {target.origin()}",
                hints=["add the host to the hosts of a [[routes]] table"],
            )
        candidates = []
        for route in routes:
            provider = self._create_provider(route.provider, route.settings, self._env, self._seams)
            identity = CacheIdentity(
                scheme=target.scheme,
                host=target.host,
                port=target.port,
                provider=route.provider,
                secret_ref=_secret_ref(provider, route),
                version=route.settings.get("secret_version", ""),
                header_name=route.header_name,
                auth_mode=route.auth_mode or "",
            )
            candidates.append(_Candidate(route, provider, identity))
        return candidates

    def _from_cache(self, candidate: _Candidate, *, refresh_ahead: bool = True) -> Answer | None:
        entry = self._cache.get(candidate.identity)
        now = self._clock()
        if entry is None or now >= entry.expires_at:
            return None
        if refresh_ahead and now >= entry.refresh_after:
            refreshed = self._refresh_ahead(candidate)
            if refreshed is not None:
                return refreshed
        return self._answer(candidate, entry, "cache")

    def _refresh_ahead(self, candidate: _Candidate) -> Answer | None:
        """Past `refresh_after`: one process re-reads the backend while the entry is
        still valid; everyone else (and this process, on failure) keeps using it."""
        with self._cache.lock(candidate.identity, self._monotonic()) as locked:
            if not locked:
                return None
            entry = self._cache.get(candidate.identity)
            if entry is not None and self._clock() < entry.refresh_after:
                return self._answer(candidate, entry, "cache")
            deadline = self._monotonic() + self._config.timeout_sec
            try:
                return self._fetch(candidate, deadline)
            except HelperError as exc:
                # The entry is still valid: serve it, and say the early refresh failed.
                self._warn(f"early refresh failed ({exc.kind}); the cached credential is used")
                return None

    def _fetch_first(
        self, candidates: list[_Candidate], deadline: float, *, allow_stale: bool
    ) -> Answer:
        not_found: NotFound | None = None
        for candidate in candidates:
            try:
                return self._fetch(candidate, deadline)
            except NotFound as exc:
                not_found = not_found or exc
            except BackendUnavailable as exc:
                stale = self._stale(candidate, exc) if allow_stale else None
                if stale is None:
                    raise
                return stale
        assert not_found is not None
        raise not_found

    def _fetch(self, candidate: _Candidate, deadline: float) -> Answer:
        from mlflow_secrets_helper import deadline as total  # only a backend read needs them
        from mlflow_secrets_helper import oauth

        provider, mode = candidate.provider, candidate.route.auth_mode
        with total.guard(deadline, self._monotonic, provider.reference):
            fetched = provider.fetch(deadline)
            exchanged = oauth.holds_client(fetched.value)
            if exchanged:
                fetched = oauth.exchange(
                    fetched.value,
                    dict(candidate.route.oauth),
                    self._env,
                    self._seams,
                    deadline,
                    reference=provider.reference(),
                )
        if exchanged:  # an access token is a bearer token, whatever it looks like
            credential: Credential = oauth.bearer(fetched.value, mode, provider.reference())
        else:
            credential = parse_secret(fetched.value, mode, reference=provider.reference())
        credential.header_value()  # validates before anything is stored or printed
        entry = self._cache.put(
            candidate.identity,
            credential,
            ttl=candidate.route.ttl_sec,
            backend_expires_at=fetched.expires_at,
            store=not fetched.local,
        )
        if fetched.local:
            # Never cached: the caller asks again when the provider said to re-read, or
            # sooner when the route's TTL is shorter (the entry's expiry is the earlier).
            entry = entry._replace(refresh_after=entry.expires_at)
        return self._answer(candidate, entry, "backend")

    def _stale(self, candidate: _Candidate, failure: BackendUnavailable) -> Answer | None:
        grace = self._config.stale_grace_sec
        entry = self._cache.get(candidate.identity)
        now = self._clock()
        if grace <= 0 or entry is None or now >= entry.expires_at + grace:
            return None
        if entry.backend_expires_at is not None and now >= entry.backend_expires_at:
            return None
        self._warn(
            f"serving the cached credential that expired {int(now - entry.expires_at)}s ago "
            f"(stale grace {grace:g}s) because {failure.message}"
        )
        # A stale answer is good until the grace ends; callers should ask again soon.
        usable_until = entry.expires_at + grace
        if entry.backend_expires_at is not None:
            usable_until = min(usable_until, entry.backend_expires_at)
        return Answer(
            credential=entry.credential,
            header_name=candidate.route.header_name,
            credential_id=entry.credential_id,
            expires_at=usable_until,
            refresh_after=min(usable_until, now + STALE_RETRY_SEC),
            source="stale",
        )

    def _answer(self, candidate: _Candidate, entry: Entry, source: Source) -> Answer:
        return Answer(
            credential=entry.credential,
            header_name=candidate.route.header_name,
            credential_id=entry.credential_id,
            expires_at=entry.expires_at,
            refresh_after=entry.refresh_after,
            source=source,
        )


def _secret_ref(provider: Provider, route: Route) -> str:
    """What the cache entry is for: the provider's secret and, when it holds an OAuth
    client, the settings of the exchange (another scope is another token)."""
    if not route.oauth:
        return provider.cache_key()
    return provider.cache_key() + "|oauth|" + "|".join(f"{k}={v}" for k, v in route.oauth)


def _git_value(credential: Credential) -> Secret[str]:
    """The part of a credential git holds and sends back on erase: the bearer token
    (``credential=``) or the basic password (``password=``)."""
    return credential.token if credential.mode == "bearer" else credential.password


def _provider_warnings(provider: Provider) -> tuple[str, ...]:
    """Providers may offer ``warnings()`` (one-line notes such as TLS checks being off)."""
    extra = getattr(provider, "warnings", None)
    return tuple(str(w) for w in extra()) if callable(extra) else ()


def _one_of(names: tuple[str, ...]) -> str:
    *others, last = names
    return f"{', '.join(others)} or {last}" if others else last


class _LazyMemory:
    """The cache's notes for providers, opened on first use: a cache hit never loads them."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._memory: Memory | None = None

    def _open(self) -> Memory:
        if self._memory is None:
            self._memory = self._cache.memory()
        return self._memory

    def recall(self, key: str) -> str | None:
        return self._open().recall(key)

    def remember(self, key: str, note: str, ttl: float) -> None:
        self._open().remember(key, note, ttl)
