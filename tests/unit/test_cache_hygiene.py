"""Cache hygiene: entries from a clock that was ahead, the sweep of old files, the cap,
and never creating directories in another user's home."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pytest

from mlflow_secrets_helper.cache import Cache, CacheIdentity, entry, store
from mlflow_secrets_helper.secret import Bearer, Secret

IDENTITY = CacheIdentity(
    "https", "mlflow.example.com", 443, "vault", "secret/x", "", "Authorization", ""
)
TOKEN = Bearer(Secret("tok-hygiene-1"))
NOW = 1_800_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def open_cache(directory: Path, clock: Clock) -> tuple[Cache, list[str]]:
    warnings: list[str] = []
    cache = Cache.open(directory, clock=clock, warn=warnings.append)
    assert cache.enabled, warnings
    return cache, warnings


# -- 15.7: the clock was ahead when the entry was written ---------------------------------------


def test_an_entry_written_while_the_clock_was_ahead_is_a_miss(cache_dir: Path) -> None:
    clock = Clock(NOW + DAY)  # a day ahead
    cache, _ = open_cache(cache_dir, clock)
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    clock.now = NOW  # corrected
    assert cache.get(IDENTITY) is None
    assert list(cache_dir.glob("*.entry")) == []  # distrusted, and removed


def test_a_small_skew_is_allowed(cache_dir: Path) -> None:
    clock = Clock(NOW + entry.CLOCK_SKEW_SEC - 1)
    cache, _ = open_cache(cache_dir, clock)
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    clock.now = NOW
    assert cache.get(IDENTITY) is not None


def _write_record(cache: Cache, record: dict[str, object]) -> None:
    aad = IDENTITY.associated_data()
    plaintext = json.dumps(record).encode()
    keys = cache._keys
    data = entry.seal(keys, entry.MAGIC, aad, plaintext, os.urandom(12))
    path = f"{cache.directory}/{keys.file_stem(aad)}.entry"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data)
    os.close(fd)


def test_an_expiry_further_away_than_the_ttl_allows_is_a_miss(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir, Clock())
    record: dict[str, object] = {
        "v": entry.ENTRY_VERSION,
        "credential": TOKEN.to_fields(),
        "stored_at": NOW,
        "refresh_after": NOW + 200,
        "expires_at": NOW + DAY,  # claims a day under a 300 s TTL
        "backend_expires_at": None,
        "ttl": 300,
    }
    _write_record(cache, record)
    assert cache.get(IDENTITY) is None
    record["expires_at"] = NOW + 300
    _write_record(cache, record)
    assert cache.get(IDENTITY) is not None


def test_entries_of_the_old_format_are_misses(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir, Clock())
    _write_record(
        cache,
        {
            "v": 1,
            "credential": TOKEN.to_fields(),
            "stored_at": NOW,
            "refresh_after": NOW + 200,
            "expires_at": NOW + 300,
            "backend_expires_at": None,
        },
    )
    assert cache.get(IDENTITY) is None
    assert list(cache_dir.glob("*.entry")) == []


# -- 15.14: the sweep and the cap ---------------------------------------------------------------


def _seed(directory: Path, name: str, age: float) -> Path:
    path = directory / name
    path.write_bytes(b"x" * 64)
    path.chmod(0o600)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _age_marker(directory: Path) -> None:
    os.utime(directory / store.SWEEP_MARKER, (0, 0))


def test_a_miss_sweeps_expired_entries_and_orphan_locks(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir, Clock())
    expired = [_seed(cache_dir, f"{i:032x}.entry", 3 * DAY) for i in range(200)]
    their_locks = [_seed(cache_dir, f"{i:032x}.lock", 3 * DAY) for i in range(200)]
    orphans = [_seed(cache_dir, f"{i:032x}.lock", 2 * 3600) for i in range(1000, 1300)]
    live_entry = _seed(cache_dir, f"{5000:032x}.entry", 600)
    live_lock = _seed(cache_dir, f"{5000:032x}.lock", 2 * 3600)  # its entry is there
    fresh_lock = _seed(cache_dir, f"{6000:032x}.lock", 10)  # a fetch in flight
    held_lock = _seed(cache_dir, f"{7000:032x}.lock", 2 * 3600)
    fd = os.open(held_lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    finally:
        os.close(fd)
    assert not any(p.exists() for p in expired + their_locks + orphans)
    assert live_entry.exists() and live_lock.exists() and fresh_lock.exists()
    assert held_lock.exists()  # someone holds it: left alone
    assert cache.get(IDENTITY) is not None


def test_the_sweep_runs_at_most_once_an_hour_and_never_on_a_hit(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir, Clock())
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)  # sweeps: no marker yet
    old = _seed(cache_dir, f"{1:032x}.entry", 3 * DAY)
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    assert old.exists()  # swept less than an hour ago
    _age_marker(cache_dir)
    for _ in range(3):
        assert cache.get(IDENTITY) is not None
    assert old.exists()  # a hit never sweeps
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    assert not old.exists()


def test_the_number_of_entries_is_capped_oldest_first(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir, Clock())
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)  # sweep done: marker fresh
    extra = 50
    seeded = [
        _seed(cache_dir, f"{i:032x}.entry", 3600 - i)  # i = 0 is the oldest
        for i in range(store.MAX_ENTRIES + extra)
    ]
    cache.put(IDENTITY._replace(port=8443), TOKEN, ttl=300, backend_expires_at=None)
    left = list(cache_dir.glob("*.entry"))
    assert len(left) == store.MAX_ENTRIES
    assert not any(p.exists() for p in seeded[: extra + 2])
    assert all(p.exists() for p in seeded[extra + 2 :])
    assert cache.get(IDENTITY._replace(port=8443)) is not None  # the newest stays


def test_one_run_looks_at_a_bounded_number_of_names(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "SWEEP_BATCH", 100)
    cache, _ = open_cache(cache_dir, Clock())
    for i in range(300):
        _seed(cache_dir, f"{i:032x}.entry", 3 * DAY)
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    remaining = len(list(cache_dir.glob("*.entry")))
    assert 200 <= remaining < 300  # about a batch removed, not all
    assert (cache_dir / store.SWEEP_MARKER).stat().st_mtime == 0  # the next miss goes on
    for _ in range(4):
        cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    assert [p.name for p in cache_dir.glob("*.entry")] == [
        f"{cache._keys.file_stem(IDENTITY.associated_data())}.entry"
    ]


# -- 15.12: never create a directory in another user's directory --------------------------------


def test_no_directory_is_created_in_another_users_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chown(home, 65534, 65534)  # tests run as root: the sudo -E situation
    warnings: list[str] = []
    cache = Cache.open(home / ".cache" / "mlflow-secrets-helper", warn=warnings.append)
    assert not cache.enabled
    assert list(home.iterdir()) == []
    assert len(warnings) == 1 and "belongs to uid 65534" in warnings[0]
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    assert list(home.iterdir()) == []


def test_no_home_is_a_disabled_cache_with_a_reason() -> None:
    warnings: list[str] = []
    cache = store.open_user_cache("", {}, warnings.append)
    assert not cache.enabled
    assert len(warnings) == 1 and "no home directory" in warnings[0]


def test_every_miss_removes_stray_temporaries(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir, Clock())
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)  # sweep done: marker fresh
    stray = _seed(cache_dir, ".tmp-0123456789abcdef", 120)  # a write killed two minutes ago
    young = _seed(cache_dir, ".tmp-fedcba9876543210", 5)  # a write in flight
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    assert not stray.exists() and young.exists()


def test_a_cache_left_by_root_in_another_users_home_is_not_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".cache" / "mlflow-secrets-helper").mkdir(parents=True, mode=0o700)
    os.chown(home, 65534, 65534)
    os.chown(home / ".cache", 65534, 65534)  # the leftover directory itself is root's
    warnings: list[str] = []
    cache = Cache.open(home / ".cache" / "mlflow-secrets-helper", warn=warnings.append)
    cache.put(IDENTITY, TOKEN, ttl=300, backend_expires_at=None)
    assert not cache.enabled and len(warnings) == 1
    assert list((home / ".cache" / "mlflow-secrets-helper").iterdir()) == []
