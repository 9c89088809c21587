"""The resolver's rules, one table or test per rule, against fake providers.

Policy before cache; route order and "not found: ask the next route"; the first other
error stops; stale-if-error only within the grace, before the backend's own expiry, on
an unavailable backend and never after erase; refresh-ahead by one process, falling
back to the cached entry; ``refresh`` bypasses the cache and leaves it alone on
failure; erase by id and by value. A real :class:`Cache` in ``tmp_path`` (local files
only) and a fake wall clock; the providers are :class:`FakeProvider`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlflow_secrets_helper.cache import Cache, CacheIdentity
from mlflow_secrets_helper.config import Config, Route
from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    HelperError,
    HostNotConfigured,
    HostRefused,
    InvalidSecret,
    NotFound,
)
from mlflow_secrets_helper.policy import HostPolicy, parse_patterns
from mlflow_secrets_helper.protocol import Target
from mlflow_secrets_helper.providers.base import Fetched, use_until
from mlflow_secrets_helper.resolve import STALE_RETRY_SEC, Answer, EraseResult, Resolver
from mlflow_secrets_helper.secret import Bearer, Secret
from tests.unit.fake_provider import FakeProvider, Scripted, factory

HOST = Target("https", "mlflow.example.com", 443)
T0 = 1_800_000_000.0
TTL = 100.0  # refresh_after lands at 75-90 s, expiry at 100 s
GRACE = 300.0
BASIC = '{"username": "alice", "password": "pw-1"}'


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> None:
        self.now = T0 + offset


class World:
    """One cache directory, a clock, the fakes ``a`` and ``b``, and what was warned."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.clock = Clock()
        self.cache = Cache.open(directory, clock=self.clock)
        self.warnings: list[str] = []
        self.fakes = {"a": FakeProvider(name="a"), "b": FakeProvider(name="b")}

    def resolver(
        self,
        routes: tuple[str, ...] = ("a",),
        *,
        allowed: str | None = None,
        grace: float = GRACE,
        ttl: float = TTL,
        hosts: str | None = None,
        auth_mode: Any = None,
    ) -> Resolver:
        patterns = None if hosts is None else parse_patterns(hosts, source="test")
        config = Config(
            policy=HostPolicy.from_spec(allowed),
            routes=tuple(
                Route(
                    provider=name,
                    settings={},
                    hosts=patterns,
                    auth_mode=auth_mode,
                    ttl_sec=ttl,
                    header_name="Authorization",
                    source=f"route {name}",
                )
                for name in routes
            ),
            header_name="Authorization",
            timeout_sec=5.0,
            stale_grace_sec=grace,
            cache_dir=self.directory,
            log_level="warning",
            config_file=None,
        )
        return Resolver(
            config,
            self.cache,
            {},
            warn=self.warnings.append,
            clock=self.clock,
            create_provider=factory(self.fakes),
        )

    def identity(self, name: str = "a") -> CacheIdentity:
        return CacheIdentity(
            scheme=HOST.scheme,
            host=HOST.host,
            port=HOST.port,
            provider=name,
            secret_ref=self.fakes[name].cache_key(),
            version="",
            header_name="Authorization",
            auth_mode="",
        )

    def calls(self) -> tuple[int, int]:
        return self.fakes["a"].calls, self.fakes["b"].calls


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "cache")


def value(answer: Answer) -> str:
    return answer.header_value().expose()


# --- the host policy comes first -----------------------------------------------------------


def test_a_refused_host_gets_nothing_even_from_a_warm_cache(world: World) -> None:
    world.fakes["a"].answer("tok-1")
    assert world.resolver().get(HOST).source == "backend"
    assert world.resolver().get(HOST).source == "cache"
    narrowed = world.resolver(allowed="other.example.com")
    with pytest.raises(HostRefused):
        narrowed.get(HOST)
    with pytest.raises(HostRefused):
        narrowed.get(HOST, refresh=True)
    with pytest.raises(HostRefused):
        narrowed.erase(HOST)
    assert world.calls() == (1, 0)
    # the refused erase left the entry alone
    assert world.resolver().get(HOST).source == "cache"


def test_plain_http_in_development_mode_is_refused_before_any_provider(world: World) -> None:
    world.fakes["a"].answer("tok-1")
    with pytest.raises(HostRefused, match="plain http"):
        world.resolver().get(Target("http", "mlflow.example.com", 80))
    assert world.calls() == (0, 0)


def test_no_provider_configured(world: World) -> None:
    with pytest.raises(HostNotConfigured, match="no provider is configured"):
        world.resolver(routes=()).get(HOST)
    assert world.resolver(routes=()).erase(HOST) is EraseResult.NOT_CACHED


def test_no_route_serves_the_host(world: World) -> None:
    resolver = world.resolver(hosts="other.example.com")
    with pytest.raises(HostNotConfigured, match="no route in the config file serves"):
        resolver.get(HOST)
    assert resolver.erase(HOST) is EraseResult.NOT_CACHED
    assert world.calls() == (0, 0)


# --- route order, fall-through, the first real error stops ---------------------------------

ROUTES: list[tuple[str, tuple[Scripted, ...], tuple[Scripted, ...], Any, tuple[int, int]]] = [
    ("first serves", ("tok-a",), ("tok-b",), "Bearer tok-a", (1, 0)),
    ("not found: next", (NotFound("a: none"),), ("tok-b",), "Bearer tok-b", (1, 1)),
    ("both not found", (NotFound("a: none"),), (NotFound("b: none"),), NotFound, (1, 1)),
    ("denied stops", (BackendDenied("a: no"),), ("tok-b",), BackendDenied, (1, 0)),
    ("unavailable stops", (BackendUnavailable("a: down"),), ("tok-b",), BackendUnavailable, (1, 0)),
    ("invalid secret stops", ("bad token",), ("tok-b",), InvalidSecret, (1, 0)),
    ("second denied", (NotFound("a: none"),), (BackendDenied("b: no"),), BackendDenied, (1, 1)),
]


@pytest.mark.parametrize(
    ("a", "b", "expected", "calls"),
    [row[1:] for row in ROUTES],
    ids=[row[0] for row in ROUTES],
)
def test_route_order(
    world: World,
    a: tuple[Scripted, ...],
    b: tuple[Scripted, ...],
    expected: Any,
    calls: tuple[int, int],
) -> None:
    world.fakes["a"].answer(*a)
    world.fakes["b"].answer(*b)
    resolver = world.resolver(routes=("a", "b"))
    if isinstance(expected, str):
        answer = resolver.get(HOST)
        assert (value(answer), answer.source) == (expected, "backend")
        assert world.calls() == calls
        # the entry is kept under the route that served: the next get is a hit
        again = resolver.get(HOST)
        assert (value(again), again.source) == (expected, "cache")
        assert again.credential_id == answer.credential_id
    else:
        with pytest.raises(expected):
            resolver.get(HOST)
        assert world.calls() == calls
    assert world.calls() == calls


def test_when_no_route_has_the_secret_the_first_not_found_is_raised(world: World) -> None:
    world.fakes["a"].answer(NotFound("first: missing"))
    world.fakes["b"].answer(NotFound("second: missing"))
    with pytest.raises(NotFound, match="first: missing"):
        world.resolver(routes=("a", "b")).get(HOST)


def test_a_secret_that_fails_validation_is_never_cached(world: World) -> None:
    world.fakes["a"].answer("bad token", "good-token")
    resolver = world.resolver()
    with pytest.raises(InvalidSecret):
        resolver.get(HOST)
    assert world.cache.get(world.identity()) is None
    assert resolver.get(HOST).source == "backend"


def test_the_configured_auth_mode_is_enforced(world: World) -> None:
    world.fakes["a"].answer("a-token")
    with pytest.raises(InvalidSecret, match="auth mode basic"):
        world.resolver(auth_mode="basic").get(HOST)


def test_ttl_zero_never_caches(world: World) -> None:
    world.fakes["a"].answer("tok-1")
    resolver = world.resolver(ttl=0)
    assert [resolver.get(HOST).source for _ in range(2)] == ["backend", "backend"]
    assert world.calls() == (2, 0)


def test_provider_warnings_come_with_every_answer(world: World) -> None:
    world.fakes["a"] = FakeProvider("tok-1", name="a", warnings=("TLS checks are off",))
    resolver = world.resolver()
    assert resolver.get(HOST).warnings == ("TLS checks are off",)
    assert resolver.get(HOST).warnings == ("TLS checks are off",)


def test_the_provider_gets_the_configured_deadline(world: World) -> None:
    world.fakes["a"].answer("tok-1")
    before = time.monotonic()
    world.resolver().get(HOST)
    (deadline,) = world.fakes["a"].deadlines
    assert before + 5.0 <= deadline <= time.monotonic() + 5.0


# --- the cache: hits, expiry, the backend's own expiry ------------------------------------


def test_hits_until_expiry_then_reads_again(world: World) -> None:
    world.fakes["a"].answer("tok-1", "tok-2")
    resolver = world.resolver()
    first = resolver.get(HOST)
    assert first.expires_at == T0 + TTL
    assert first.refresh_after is not None and T0 + 75 <= first.refresh_after <= T0 + 90
    world.clock.at(50)
    assert (value(resolver.get(HOST)), resolver.get(HOST).source) == ("Bearer tok-1", "cache")
    world.clock.at(TTL)
    answer = resolver.get(HOST)
    assert (value(answer), answer.source) == ("Bearer tok-2", "backend")
    assert world.calls() == (2, 0)


def test_the_backend_expiry_caps_the_entry(world: World) -> None:
    world.fakes["a"] = FakeProvider("tok-1", "tok-2", name="a", expires_at=T0 + 30)
    resolver = world.resolver()
    assert resolver.get(HOST).expires_at == T0 + 30
    world.clock.at(30)
    assert resolver.get(HOST).source == "backend"


def test_a_local_copy_is_never_cached_and_is_read_again_when_it_says(world: World) -> None:
    local = Fetched(Secret("tok-file-1"), T0 + 10.0, local=True)
    world.fakes["a"].answer(local, Fetched(Secret("tok-file-2"), T0 + 20.0, local=True))
    first = world.resolver().get(HOST)
    assert (value(first), first.source) == ("Bearer tok-file-1", "backend")
    assert (first.expires_at, first.refresh_after) == (T0 + 10.0, T0 + 10.0)
    assert first.credential_id.startswith("c1:")
    assert world.cache.get(world.identity()) is None
    assert not list(world.directory.glob("*.entry*"))
    second = world.resolver().get(HOST)  # no cache hit: the provider is read again
    assert value(second) == "Bearer tok-file-2"
    assert world.fakes["a"].calls == 2


@pytest.mark.parametrize(("ttl", "again"), [(100.0, 10.0), (4.0, 4.0), (0.0, 0.0)])
def test_a_shorter_ttl_makes_callers_ask_for_a_local_copy_sooner(
    world: World, ttl: float, again: float
) -> None:
    world.fakes["a"].answer(Fetched(Secret("tok-file-1"), T0 + 10.0, local=True))
    answer = world.resolver(ttl=ttl).get(HOST)
    assert (answer.expires_at, answer.refresh_after) == (T0 + again, T0 + again)


@pytest.mark.parametrize(
    ("lifetime", "used_for"),
    [
        (10.0, 9.0),
        (4.0, 3.0),
        (2.0, 1.0),
        (1.0, 0.5),
        (30.0, 27.0),
        (600.0, 540.0),
        (3600.0, 3540.0),
        (86400.0, 86340.0),
        (0.0, 0.0),
    ],
)
def test_a_short_lived_token_is_used_for_most_of_its_life(lifetime: float, used_for: float) -> None:
    assert use_until(T0 + lifetime, T0) == pytest.approx(T0 + used_for)


def test_a_waiter_uses_what_the_lock_holder_fetched(world: World) -> None:
    # Another process holds the entry's lock while it reads the backend; this one waits,
    # then finds the fresh entry and does not read the backend itself.
    world.fakes["a"].answer("never-read")
    resolver = world.resolver()
    answers: list[Answer] = []
    with world.cache.lock(world.identity(), time.monotonic() + 5) as locked:
        assert locked
        waiter = threading.Thread(target=lambda: answers.append(resolver.get(HOST)))
        waiter.start()
        time.sleep(0.05)
        world.cache.put(
            world.identity(), Bearer(Secret("from-holder")), ttl=TTL, backend_expires_at=None
        )
    waiter.join(5)
    assert [value(a) for a in answers] == ["Bearer from-holder"]
    assert answers[0].source == "cache"
    assert world.calls() == (0, 0)


# --- stale-if-error ------------------------------------------------------------------------

#: (name, seconds after the fetch, grace, backend expiry offset, failure, stale until offset)
STALE: list[tuple[str, float, float, float | None, HelperError, float | None]] = [
    ("just expired", TTL, GRACE, None, BackendUnavailable("down"), TTL + GRACE),
    ("inside grace", 399, GRACE, None, BackendUnavailable("down"), TTL + GRACE),
    ("grace over", TTL + GRACE, GRACE, None, BackendUnavailable("down"), None),
    ("grace off", 150, 0.0, None, BackendUnavailable("down"), None),
    ("backend expiry later", 150, GRACE, 1000.0, BackendUnavailable("down"), TTL + GRACE),
    ("until backend expiry", 150, GRACE, 200.0, BackendUnavailable("down"), 200.0),
    ("past backend expiry", 250, GRACE, 200.0, BackendUnavailable("down"), None),
    ("expired by the backend", 60, GRACE, 50.0, BackendUnavailable("down"), None),
    ("never on denied", 150, GRACE, None, BackendDenied("no"), None),
    ("never on not found", 150, GRACE, None, NotFound("gone"), None),
]


@pytest.mark.parametrize(
    ("offset", "grace", "backend", "failure", "until"),
    [row[1:] for row in STALE],
    ids=[row[0] for row in STALE],
)
def test_stale_if_error(
    world: World,
    offset: float,
    grace: float,
    backend: float | None,
    failure: HelperError,
    until: float | None,
) -> None:
    world.fakes["a"] = FakeProvider(
        "tok-1", failure, name="a", expires_at=None if backend is None else T0 + backend
    )
    resolver = world.resolver(grace=grace)
    fetched = resolver.get(HOST)
    world.clock.at(offset)
    if until is None:
        with pytest.raises(type(failure)):
            resolver.get(HOST)
        assert world.warnings == []
        return
    answer = resolver.get(HOST)
    assert (value(answer), answer.source) == ("Bearer tok-1", "stale")
    assert answer.credential_id == fetched.credential_id
    assert answer.expires_at == T0 + until
    assert answer.refresh_after == min(T0 + until, world.clock.now + STALE_RETRY_SEC)
    (warning,) = world.warnings
    assert "stale grace" in warning and "down" in warning


def test_never_stale_after_erase(world: World) -> None:
    world.fakes["a"].answer("tok-1", BackendUnavailable("down"))
    resolver = world.resolver()
    resolver.get(HOST)
    assert resolver.erase(HOST) is EraseResult.ERASED
    world.clock.at(150)
    with pytest.raises(BackendUnavailable):
        resolver.get(HOST)


def test_never_stale_on_refresh(world: World) -> None:
    world.fakes["a"].answer("tok-1", BackendUnavailable("down"))
    resolver = world.resolver()
    resolver.get(HOST)
    world.clock.at(150)
    with pytest.raises(BackendUnavailable):
        resolver.get(HOST, refresh=True)


# --- refresh-ahead -------------------------------------------------------------------------


def test_refresh_ahead_reads_the_backend_once_past_refresh_after(world: World) -> None:
    world.fakes["a"].answer("tok-1", "tok-2")
    resolver = world.resolver()
    first = resolver.get(HOST)
    world.clock.at(95)  # past refresh_after (75-90 s), before expiry (100 s)
    answer = resolver.get(HOST)
    assert (value(answer), answer.source) == ("Bearer tok-2", "backend")
    assert answer.credential_id != first.credential_id
    assert answer.expires_at == T0 + 95 + TTL
    again = resolver.get(HOST)
    assert (value(again), again.source) == ("Bearer tok-2", "cache")
    assert world.calls() == (2, 0)


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (BackendUnavailable("down"), "backend-unavailable"),
        (BackendDenied("no"), "backend-denied"),
        (NotFound("gone"), "not-found"),
        ("bad token", "invalid-secret"),
    ],
)
def test_a_failed_early_refresh_serves_the_cached_entry(
    world: World, failure: Scripted, kind: str
) -> None:
    world.fakes["a"].answer("tok-1", failure)
    resolver = world.resolver()
    first = resolver.get(HOST)
    world.clock.at(95)
    answer = resolver.get(HOST)
    assert (value(answer), answer.source) == ("Bearer tok-1", "cache")
    assert answer.credential_id == first.credential_id
    assert world.warnings == [f"early refresh failed ({kind}); the cached credential is used"]
    assert world.calls() == (2, 0)


def test_only_the_lock_holder_refreshes_ahead(world: World) -> None:
    world.fakes["a"].answer("tok-1", "tok-2")
    resolver = world.resolver()
    resolver.get(HOST)
    world.clock.at(95)
    with world.cache.lock(world.identity(), time.monotonic() + 5) as locked:
        assert locked  # another process is refreshing this entry
        answer = resolver.get(HOST)
    assert (value(answer), answer.source) == ("Bearer tok-1", "cache")
    assert world.calls() == (1, 0) and world.warnings == []


def test_no_refresh_before_refresh_after(world: World) -> None:
    world.fakes["a"].answer("tok-1")
    resolver = world.resolver()
    resolver.get(HOST)
    world.clock.at(74)
    assert resolver.get(HOST).source == "cache"
    assert world.calls() == (1, 0)


# --- refresh (--refresh) -------------------------------------------------------------------


def test_refresh_bypasses_a_fresh_entry_and_replaces_it(world: World) -> None:
    world.fakes["a"].answer("tok-1", "tok-2")
    resolver = world.resolver()
    resolver.get(HOST)
    answer = resolver.get(HOST, refresh=True)
    assert (value(answer), answer.source) == ("Bearer tok-2", "backend")
    assert value(resolver.get(HOST)) == "Bearer tok-2"
    assert world.calls() == (2, 0)


@pytest.mark.parametrize(
    "failure", [BackendUnavailable("down"), BackendDenied("no"), NotFound("gone"), "bad token"]
)
def test_a_failed_refresh_leaves_the_cache_unchanged(world: World, failure: Scripted) -> None:
    world.fakes["a"].answer("tok-1", failure)
    resolver = world.resolver()
    first = resolver.get(HOST)
    with pytest.raises(HelperError):
        resolver.get(HOST, refresh=True)
    answer = resolver.get(HOST)
    assert (value(answer), answer.source) == ("Bearer tok-1", "cache")
    assert answer.credential_id == first.credential_id


# --- erase ---------------------------------------------------------------------------------

#: (name, payload, erase arguments, result, whether the entry survives)
ERASE: list[tuple[str, str, dict[str, str], EraseResult, bool]] = [
    ("everything", "tok-1", {}, EraseResult.ERASED, False),
    ("by current id", "tok-1", {"credential_id": "<current>"}, EraseResult.ERASED, False),
    ("by old id", "tok-1", {"credential_id": "c1:" + "0" * 24}, EraseResult.NOT_OURS, True),
    ("by token", "tok-1", {"value": "tok-1"}, EraseResult.ERASED, False),
    ("by another token", "tok-1", {"value": "tok-2"}, EraseResult.NOT_OURS, True),
    ("by password", BASIC, {"value": "pw-1"}, EraseResult.ERASED, False),
    ("by username", BASIC, {"value": "alice"}, EraseResult.NOT_OURS, True),
    (
        "id before value",
        "tok-1",
        {"credential_id": "c1:" + "0" * 24, "value": "tok-1"},
        EraseResult.NOT_OURS,
        True,
    ),
]


@pytest.mark.parametrize(
    ("payload", "kwargs", "result", "survives"),
    [row[1:] for row in ERASE],
    ids=[row[0] for row in ERASE],
)
def test_erase(
    world: World, payload: str, kwargs: dict[str, str], result: EraseResult, survives: bool
) -> None:
    world.fakes["a"].answer(payload, "tok-next")
    resolver = world.resolver()
    first = resolver.get(HOST)
    if kwargs.get("credential_id") == "<current>":
        kwargs = {**kwargs, "credential_id": first.credential_id}
    assert resolver.erase(HOST, **kwargs) is result
    after = resolver.get(HOST)
    if survives:
        assert (after.source, after.credential_id) == ("cache", first.credential_id)
    else:
        assert (value(after), after.source) == ("Bearer tok-next", "backend")


@pytest.mark.parametrize(
    "kwargs", [{}, {"credential_id": "c1:" + "0" * 24}, {"value": "tok-1"}], ids=str
)
def test_erase_with_nothing_cached(world: World, kwargs: dict[str, str]) -> None:
    assert world.resolver().erase(HOST, **kwargs) is EraseResult.NOT_CACHED
    assert world.calls() == (0, 0)


def test_erase_by_value_finds_the_entry_of_a_later_route(world: World) -> None:
    world.fakes["a"].answer(NotFound("a: none"))
    world.fakes["b"].answer("tok-b", "tok-b2")
    resolver = world.resolver(routes=("a", "b"))
    resolver.get(HOST)
    assert resolver.erase(HOST, value="tok-b") is EraseResult.ERASED
    assert value(resolver.get(HOST)) == "Bearer tok-b2"


def test_erase_by_id_spares_a_credential_stored_since(world: World) -> None:
    # compare-and-delete: the id of the credential we were given, not of what is cached now
    world.fakes["a"].answer("tok-1", "tok-2")
    resolver = world.resolver()
    old = resolver.get(HOST)
    new = resolver.get(HOST, refresh=True)
    assert resolver.erase(HOST, credential_id=old.credential_id) is EraseResult.NOT_OURS
    assert resolver.get(HOST).credential_id == new.credential_id
    assert resolver.erase(HOST, credential_id=new.credential_id) is EraseResult.ERASED


def test_erase_compares_values_without_revealing_them(world: World) -> None:
    world.fakes["a"].answer("tok-1")
    resolver = world.resolver()
    resolver.get(HOST)
    result = resolver.erase(HOST, value="tok-1-but-longer")
    assert result is EraseResult.NOT_OURS
    assert "tok-1" not in repr(result) and "tok-1" not in str(result)
