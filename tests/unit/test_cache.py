"""The encrypted per-user cache (contract §7): format, permissions, expiry, erase, locks."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlflow_secrets_helper.cache import Cache, CacheIdentity, Entry
from mlflow_secrets_helper.providers.base import Memory
from mlflow_secrets_helper.secret import Basic, Bearer, Credential, Secret

TOKEN = "tok-Zq8vXw3LmNpR7sTu"
USERNAME = "svc-mlflow-robot"
PASSWORD = "pw-Kd93jfLq0zPx"
HOST = "mlflow.example-corp.test"
SECRET_REF = "secret/data/mlflow/prod-tracking"

IDENTITY = CacheIdentity(
    scheme="https",
    host=HOST,
    port=443,
    provider="vault",
    secret_ref=SECRET_REF,
    version="",
    header_name="Authorization",
    auth_mode="",
)
OTHER = IDENTITY._replace(host="staging." + HOST)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def open_cache(
    directory: Path, clock: Clock | None = None, runtime_dir: Path | None = None
) -> tuple[Cache, list[str]]:
    warnings: list[str] = []
    cache = Cache.open(
        directory, runtime_dir=runtime_dir, clock=clock or Clock(), warn=warnings.append
    )
    return cache, warnings


def entry_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.entry"))


def only_entry(directory: Path) -> Path:
    files = entry_files(directory)
    assert len(files) == 1
    return files[0]


# -- round trip and binding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "credential",
    [Bearer(Secret(TOKEN)), Basic(Secret(USERNAME), Secret(PASSWORD))],
    ids=["bearer", "basic"],
)
def test_round_trip_across_instances(cache_dir: Path, clock: Clock, credential: Credential) -> None:
    writer, warnings = open_cache(cache_dir, clock)
    stored = writer.put(IDENTITY, credential, ttl=300, backend_expires_at=None)

    reader, _ = open_cache(cache_dir, clock)
    loaded = reader.get(IDENTITY)

    assert warnings == []
    assert loaded == stored
    assert loaded.credential.header_value() == credential.header_value()
    assert reader.get(OTHER) is None


def test_files_and_directory_are_private_whatever_the_umask(cache_dir: Path) -> None:
    old = os.umask(0)
    try:
        cache, _ = open_cache(cache_dir)
        cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
        cache.record(True)
        with cache.lock(IDENTITY, time.monotonic() + 1) as held:
            assert held
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    names = sorted(path.name for path in cache_dir.iterdir())
    assert len(names) == 5  # entry, lock, hits, key, sweep marker
    for path in cache_dir.iterdir():
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600, path.name


def test_missing_parent_is_created_private(tmp_path: Path) -> None:
    directory = tmp_path / "xdg-cache" / "mlflow-secrets-helper"
    cache, warnings = open_cache(directory)
    assert cache.enabled and warnings == []
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700


def test_credential_id_is_keyed_and_stable(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    credential = Bearer(Secret(TOKEN))
    first = cache.credential_id(IDENTITY, credential)

    assert first.startswith("c1:") and len(first) == 3 + 24
    int(first[3:], 16)
    assert first == open_cache(cache_dir)[0].credential_id(IDENTITY, credential)
    assert first != cache.credential_id(OTHER, credential)
    assert first != cache.credential_id(IDENTITY, Bearer(Secret(TOKEN + "x")))
    assert first[3:] not in hashlib.sha256(TOKEN.encode()).hexdigest()
    # A different key (another user, or after `cache clear`) gives a different id.
    assert first != open_cache(cache_dir.parent / "other")[0].credential_id(IDENTITY, credential)


@pytest.mark.parametrize(
    "changed",
    [
        IDENTITY._replace(scheme="http"),
        IDENTITY._replace(host="x." + HOST),
        IDENTITY._replace(port=8443),
        IDENTITY._replace(provider="aws-secrets-manager"),
        IDENTITY._replace(secret_ref=SECRET_REF + "2"),
        IDENTITY._replace(version="3"),
        IDENTITY._replace(header_name="X-Auth"),
        IDENTITY._replace(auth_mode="bearer"),
    ],
    ids=lambda identity: next(
        name for name, value in identity._asdict().items() if getattr(IDENTITY, name) != value
    ),
)
def test_every_identity_field_selects_a_different_entry(
    cache_dir: Path, changed: CacheIdentity
) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert cache.get(changed) is None
    assert cache.get(IDENTITY) is not None


def test_entry_swapped_to_another_identity_is_a_miss(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    (ours,) = entry_files(cache_dir)
    cache.put(OTHER, Bearer(Secret("other-token")), ttl=300, backend_expires_at=None)
    (theirs,) = [path for path in entry_files(cache_dir) if path != ours]

    shutil.copyfile(ours, theirs)  # the AAD (identity) no longer matches the file name
    assert cache.get(OTHER) is None
    assert not theirs.exists()  # a bad entry of ours is removed
    assert cache.get(IDENTITY) is not None


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="zero-length"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-1], id="tag-truncated"),
        pytest.param(lambda data: data[:20], id="header-only"),
        pytest.param(lambda data: _flip(data, len(data) - 5), id="flipped-tag"),
        pytest.param(lambda data: _flip(data, 40), id="flipped-ciphertext"),
        pytest.param(lambda data: _flip(data, 2), id="flipped-magic"),
        pytest.param(lambda data: _flip(data, 8), id="flipped-version"),
        pytest.param(lambda data: _flip(data, 12), id="flipped-key-id"),
        pytest.param(lambda data: _flip(data, 20), id="flipped-nonce"),
        pytest.param(lambda data: data + b"\0", id="appended"),
        pytest.param(lambda data: os.urandom(len(data)), id="garbage"),
        pytest.param(lambda data: data[:17] + os.urandom(len(data) - 17), id="garbage-body"),
    ],
)
def test_damaged_entry_is_a_miss_and_removed(
    cache_dir: Path, damage: Callable[[bytes], bytes]
) -> None:
    cache, warnings = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    path = only_entry(cache_dir)
    path.write_bytes(damage(path.read_bytes()))

    assert cache.get(IDENTITY) is None
    assert not path.exists()
    assert warnings == []
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert cache.get(IDENTITY) is not None


@as_root
def test_entry_of_another_owner_is_never_used(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    path = only_entry(cache_dir)
    os.chown(path, 65534, 65534)

    assert cache.get(IDENTITY) is None
    assert path.exists()  # not ours: left alone
    assert not cache.erase(IDENTITY, cache.credential_id(IDENTITY, Bearer(Secret(TOKEN))))


def test_group_readable_entry_is_never_used(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    path = only_entry(cache_dir)
    path.chmod(0o644)

    assert cache.get(IDENTITY) is None
    assert not path.exists()


def test_symlinked_entry_is_never_used(cache_dir: Path, tmp_path: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    path = only_entry(cache_dir)
    elsewhere = tmp_path / "planted"
    shutil.copy2(path, elsewhere)  # a valid entry, 0600 and ours, reached through a link
    path.unlink()
    path.symlink_to(elsewhere)

    assert cache.get(IDENTITY) is None
    assert not path.is_symlink() and elsewhere.exists()


def test_directory_in_place_of_an_entry_is_a_miss(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    path = only_entry(cache_dir)
    path.unlink()
    path.mkdir(mode=0o700)
    assert cache.get(IDENTITY) is None
    entry = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert isinstance(entry, Entry)


# -- a cache that must not be used -------------------------------------------------------------


def test_loose_cache_directory_disables_the_cache(cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o700)
    cache_dir.chmod(0o755)
    cache, warnings = open_cache(cache_dir)

    assert not cache.enabled
    assert len(warnings) == 1 and "755" in warnings[0] and "chmod 700" in warnings[0]
    entry = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert entry.credential_id.startswith("c1:")
    assert cache.get(IDENTITY) is None
    assert list(cache_dir.iterdir()) == []
    assert cache.status().enabled is False
    assert cache.status().warnings == (warnings[0],)


def test_symlinked_cache_directory_disables_the_cache(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "cache"
    link.symlink_to(real)
    cache, warnings = open_cache(link)

    assert not cache.enabled
    assert len(warnings) == 1 and "symlink" in warnings[0]
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert cache.clear() == 0
    assert list(real.iterdir()) == []
    assert link.is_symlink()


@as_root
def test_foreign_cache_directory_disables_the_cache(cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, 65534, 65534)
    cache, warnings = open_cache(cache_dir)
    assert not cache.enabled
    assert len(warnings) == 1 and "owned by uid 65534" in warnings[0]


def test_unwritable_location_disables_the_cache(tmp_path: Path, clock: Clock) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the home directory should be\n")
    cache, warnings = open_cache(home / ".cache" / "mlflow-secrets-helper", clock)

    assert not cache.enabled
    assert len(warnings) == 1 and warnings[0].startswith("cache disabled: cannot create")
    entry = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert entry.expires_at == clock.now + 300
    assert cache.get(IDENTITY) is None
    assert not cache.erase(IDENTITY)
    cache.record(False)
    with cache.lock(IDENTITY, time.monotonic() + 5) as held:
        assert held is False
    assert cache.status().entries == 0
    assert len(warnings) == 1


def test_missing_home_disables_the_cache(tmp_path: Path) -> None:
    cache, warnings = open_cache(tmp_path / "no-such-home" / ".cache" / "mlflow-secrets-helper")
    assert not cache.enabled and len(warnings) == 1
    assert not (tmp_path / "no-such-home").exists()


def test_relative_directory_disables_the_cache() -> None:
    cache, warnings = open_cache(Path("relative-cache"))
    assert not cache.enabled and len(warnings) == 1
    assert not Path("relative-cache").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_loose_key_file_disables_the_cache(cache_dir: Path, mode: int) -> None:
    open_cache(cache_dir)[0].put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    (cache_dir / "key").chmod(mode)
    cache, warnings = open_cache(cache_dir)

    assert not cache.enabled
    assert len(warnings) == 1 and "key file" in warnings[0] and f"{mode:03o}" in warnings[0]
    # `cache clear` is the way out: it removes the bad key and the next run starts over.
    assert cache.clear() == 1
    fresh, warnings = open_cache(cache_dir)
    assert fresh.enabled and warnings == []


@as_root
def test_symlinked_or_foreign_key_disables_the_cache(cache_dir: Path, tmp_path: Path) -> None:
    open_cache(cache_dir)
    key = cache_dir / "key"
    elsewhere = tmp_path / "key-elsewhere"
    key.rename(elsewhere)
    key.symlink_to(elsewhere)
    cache, warnings = open_cache(cache_dir)
    assert not cache.enabled and len(warnings) == 1 and "symlink" in warnings[0]

    key.unlink()
    elsewhere.rename(key)
    os.chown(key, 65534, 65534)
    cache, warnings = open_cache(cache_dir)
    assert not cache.enabled and len(warnings) == 1 and "owned by uid 65534" in warnings[0]


def test_malformed_key_is_replaced(cache_dir: Path) -> None:
    open_cache(cache_dir)
    (cache_dir / "key").write_bytes(b"short")
    cache, warnings = open_cache(cache_dir)
    assert cache.enabled and warnings == []
    assert len((cache_dir / "key").read_bytes()) == 40


# -- nothing readable on disk ------------------------------------------------------------------


def test_no_secret_host_or_reference_on_disk(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    cache.put(OTHER, Basic(Secret(USERNAME), Secret(PASSWORD)), ttl=300, backend_expires_at=None)
    cache.record(True)
    with cache.lock(IDENTITY, time.monotonic() + 1):
        pass

    needles = [TOKEN, USERNAME, PASSWORD, HOST, "example-corp", SECRET_REF, "prod-tracking"]
    haystack = b""
    for path in cache_dir.rglob("*"):
        haystack += path.name.encode() + b"\n"
        if path.is_file():
            haystack += path.read_bytes()
    assert len(entry_files(cache_dir)) == 2
    for needle in needles:
        assert needle.encode() not in haystack
        assert needle.encode("utf-16-le") not in haystack


def test_reprs_hide_secrets(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    entry = cache.put(
        IDENTITY, Basic(Secret(USERNAME), Secret(PASSWORD)), ttl=300, backend_expires_at=None
    )
    text = repr(entry) + repr(cache) + repr(cache.status()) + repr(cache._keys)
    assert PASSWORD not in text and USERNAME not in text
    assert (cache_dir / "key").read_bytes()[8:].hex() not in text


# -- times ---------------------------------------------------------------------------------------


def test_times_and_jitter(cache_dir: Path, clock: Clock) -> None:
    cache, _ = open_cache(cache_dir, clock)
    fractions = []
    for _ in range(200):
        entry = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
        assert entry.stored_at == clock.now
        assert entry.expires_at == clock.now + 300
        assert entry.backend_expires_at is None
        assert entry.stored_at < entry.refresh_after < entry.expires_at
        fractions.append((entry.refresh_after - entry.stored_at) / 300)
    assert min(fractions) >= 0.75 and max(fractions) <= 0.9
    assert max(fractions) - min(fractions) > 0.1  # it really is jittered


def test_backend_expiry_caps_the_entry(cache_dir: Path, clock: Clock) -> None:
    cache, _ = open_cache(cache_dir, clock)
    entry = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=clock.now + 60)
    assert entry.expires_at == clock.now + 60
    assert entry.backend_expires_at == clock.now + 60
    assert clock.now + 45 <= entry.refresh_after <= clock.now + 54
    assert cache.get(IDENTITY) == entry

    later = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=clock.now + 3600)
    assert later.expires_at == clock.now + 300


def test_zero_ttl_writes_nothing(cache_dir: Path, clock: Clock) -> None:
    cache, _ = open_cache(cache_dir, clock)
    entry = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=0, backend_expires_at=None)
    assert entry.expires_at == entry.refresh_after == entry.stored_at == clock.now
    assert entry_files(cache_dir) == []
    assert cache.get(IDENTITY) is None


def test_already_expired_backend_lifetime_writes_nothing(cache_dir: Path, clock: Clock) -> None:
    cache, _ = open_cache(cache_dir, clock)
    entry = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=clock.now - 1)
    assert entry.expires_at == clock.now - 1
    assert entry_files(cache_dir) == []


def test_expired_entries_are_returned_for_the_caller_to_judge(
    cache_dir: Path, clock: Clock
) -> None:
    cache, _ = open_cache(cache_dir, clock)
    stored = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    clock.now += 10_000
    assert cache.get(IDENTITY) == stored


def test_stray_temp_files_are_swept(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    old = cache_dir / ".tmp-0123456789abcdef"
    young = cache_dir / ".tmp-fedcba9876543210"
    for path in (old, young):
        path.write_bytes(b"partial")
    os.utime(old, (time.time() - 120, time.time() - 120))
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert not old.exists() and young.exists()


# -- erase and clear -----------------------------------------------------------------------------


def test_erase_compare_and_delete(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    old = cache.put(IDENTITY, Bearer(Secret("old-token")), ttl=300, backend_expires_at=None)
    new = cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert old.credential_id != new.credential_id

    assert cache.erase(IDENTITY, old.credential_id) is False  # stale id: the fresh one stays
    assert cache.get(IDENTITY) == new
    assert cache.erase(IDENTITY, new.credential_id) is True
    assert cache.get(IDENTITY) is None
    assert cache.erase(IDENTITY, new.credential_id) is False  # nothing left: still fine
    assert list(cache_dir.glob(".tmp-*")) == []


def test_erase_without_id_deletes(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    cache.put(OTHER, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert cache.erase(IDENTITY) is True
    assert cache.get(IDENTITY) is None
    assert cache.get(OTHER) is not None
    assert cache.erase(IDENTITY) is False


def test_clear_removes_everything_and_the_key(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    old_id = cache.credential_id(IDENTITY, Bearer(Secret(TOKEN)))
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    cache.put(OTHER, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    cache.record(True)
    cache.record(False)
    with cache.lock(IDENTITY, time.monotonic() + 1):
        pass
    (cache_dir / "unrelated.txt").write_text("not ours\n")

    assert cache.clear() == 2
    assert sorted(path.name for path in cache_dir.iterdir()) == ["unrelated.txt"]
    assert not cache.enabled and cache.get(IDENTITY) is None

    fresh, _ = open_cache(cache_dir)
    assert fresh.enabled and fresh.status().entries == 0
    assert fresh.credential_id(IDENTITY, Bearer(Secret(TOKEN))) != old_id


# -- locks ---------------------------------------------------------------------------------------


def test_second_holder_gives_up_at_its_deadline(cache_dir: Path) -> None:
    first, _ = open_cache(cache_dir)
    second, _ = open_cache(cache_dir)
    with first.lock(IDENTITY, time.monotonic() + 1) as held:
        assert held
        started = time.monotonic()
        with second.lock(IDENTITY, started + 0.3) as also:
            waited = time.monotonic() - started
            assert also is False
        assert 0.28 <= waited < 2
        with second.lock(OTHER, time.monotonic() + 0.3) as other:
            assert other  # locks are per entry
    with second.lock(IDENTITY, time.monotonic()) as after:
        assert after


def test_lock_on_a_symlink_is_not_taken(cache_dir: Path, tmp_path: Path) -> None:
    cache, _ = open_cache(cache_dir)
    with cache.lock(IDENTITY, time.monotonic() + 1):
        pass
    (lock,) = cache_dir.glob("*.lock")
    lock.unlink()
    lock.symlink_to(tmp_path / "target")
    with cache.lock(IDENTITY, time.monotonic() + 1) as held:
        assert held is False
    assert not lock.is_symlink()


_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlflow_secrets_helper.cache import Cache, CacheIdentity
    from mlflow_secrets_helper.secret import Bearer, Secret

    directory, log = Path(sys.argv[1]), Path(sys.argv[2])
    identity = CacheIdentity("https", "h.test", 443, "vault", "p", "", "Authorization", "")
    cache = Cache.open(directory, warn=lambda line: print(line, file=sys.stderr))
    with cache.lock(identity, time.monotonic() + 30) as held:
        assert held
        with log.open("a") as out:
            out.write(f"start {time.monotonic()}\\n")
        if cache.get(identity) is None:
            time.sleep(0.2)  # the slow backend fetch
            with log.open("a") as out:
                out.write("fetch\\n")
            cache.put(identity, Bearer(Secret("t0ken")), ttl=300, backend_expires_at=None)
        entry = cache.get(identity)
        assert entry is not None and entry.credential.token is not None
        with log.open("a") as out:
            out.write(f"end {time.monotonic()}\\n")
    """
)


def test_processes_take_turns_and_fetch_once(cache_dir: Path, tmp_path: Path) -> None:
    open_cache(cache_dir)  # make the key once so the workers share it
    log = tmp_path / "log"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(cache_dir), str(log)], stderr=subprocess.PIPE
        )
        for _ in range(6)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr.decode()

    lines = log.read_text().split()
    assert lines.count("fetch") == 1
    events = [line for line in log.read_text().splitlines() if line != "fetch"]
    holders = 0
    for event in events:  # appended under the lock, so file order is lock order
        holders += 1 if event.startswith("start") else -1
        assert holders in (0, 1)
    assert len(events) == 12


def test_concurrent_first_use_agrees_on_one_key(cache_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(cache_dir), str(log)])
        for _ in range(6)
    ]
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    assert log.read_text().split().count("fetch") == 1


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mlflow_secrets_helper.cache import Cache, CacheIdentity
    from mlflow_secrets_helper.secret import Bearer, Secret

    identity = CacheIdentity("https", "h.test", 443, "vault", "p", "", "Authorization", "")
    cache = Cache.open(Path(sys.argv[1]))
    for round in range(300):
        cache.put(identity, Bearer(Secret(f"t{round}")), ttl=300, backend_expires_at=None)
    """
)


def test_readers_never_see_a_torn_write(cache_dir: Path) -> None:
    identity = CacheIdentity("https", "h.test", 443, "vault", "p", "", "Authorization", "")
    reader, _ = open_cache(cache_dir)
    reader.put(identity, Bearer(Secret("first")), ttl=300, backend_expires_at=None)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(cache_dir)])
    reads = 0
    while writer.poll() is None:
        assert reader.get(identity) is not None
        reads += 1
    assert writer.returncode == 0 and reads > 0
    entry = reader.get(identity)
    assert entry is not None and entry.credential.token is not None
    assert entry.credential.token.expose() == "t299"
    assert list(cache_dir.glob(".tmp-*")) == []


def test_abandoned_entries_of_an_old_key_are_swept(cache_dir: Path) -> None:
    old, _ = open_cache(cache_dir)
    old.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    abandoned = only_entry(cache_dir)
    month_ago = time.time() - 30 * 86400
    os.utime(abandoned, (month_ago, month_ago))
    (cache_dir / "key").unlink()  # e.g. the runtime dir's key vanished at reboot
    os.utime(cache_dir / "sweep", (0, 0))  # the last sweep was long ago

    fresh, _ = open_cache(cache_dir)
    assert fresh.status().entries == 0
    fresh.put(OTHER, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert not abandoned.exists()
    assert fresh.status().entries == 1


# -- statistics and status -----------------------------------------------------------------------


def test_hits_and_misses_are_shared_across_instances(cache_dir: Path) -> None:
    one, _ = open_cache(cache_dir)
    two, _ = open_cache(cache_dir)
    one.record(True)
    one.record(False)
    two.record(True)
    two.record(True)

    status = open_cache(cache_dir)[0].status()
    assert (status.hits, status.misses) == (3, 1)


def test_counters_stay_bounded(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    (cache_dir / "hits").write_bytes(b"." * 65534)
    (cache_dir / "misses").write_bytes(b"." * 20000)
    for path in (cache_dir / "hits", cache_dir / "misses"):
        path.chmod(0o600)
    cache.record(True)
    cache.record(True)
    status = cache.status()
    assert status.hits < 40000 and status.misses == 10000


def test_status_counts_only_entries_of_the_current_key(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    cache.put(OTHER, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    (cache_dir / ("0" * 32 + ".entry")).write_bytes(b"MSHCACHE\x01" + b"\0" * 60)
    status = cache.status()
    assert status.enabled and status.entries == 2
    assert status.directory == str(cache_dir)


# -- where the key lives -------------------------------------------------------------------------


@pytest.fixture
def shm_runtime_dir() -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    path = shm / f"cache-test-{os.getpid()}-{os.urandom(4).hex()}"
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_key_lives_in_a_tmpfs_runtime_dir(cache_dir: Path, shm_runtime_dir: Path) -> None:
    cache, warnings = open_cache(cache_dir, runtime_dir=shm_runtime_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    status = cache.status()

    assert warnings == [] and status.warnings == ()
    assert status.key_location == "runtime-dir"
    assert status.key_path is not None
    key_path = Path(status.key_path)
    assert key_path.is_relative_to(shm_runtime_dir)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert not (cache_dir / "key").exists()
    assert open_cache(cache_dir, runtime_dir=shm_runtime_dir)[0].get(IDENTITY) is not None

    assert cache.clear() == 1
    assert not key_path.exists()


def test_another_cache_dir_gets_another_runtime_key(tmp_path: Path, shm_runtime_dir: Path) -> None:
    first = open_cache(tmp_path / "a", runtime_dir=shm_runtime_dir)[0].status().key_path
    second = open_cache(tmp_path / "b", runtime_dir=shm_runtime_dir)[0].status().key_path
    assert first is not None and second is not None and first != second


def test_key_file_without_runtime_dir(cache_dir: Path) -> None:
    status = open_cache(cache_dir)[0].status()
    assert status.key_location == "key-file"
    assert status.key_path == str(cache_dir / "key")
    assert len(status.warnings) == 1 and "beside the entries" in status.warnings[0]


def test_runtime_dir_not_on_tmpfs_is_not_used(cache_dir: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    cache, warnings = open_cache(cache_dir, runtime_dir=runtime)
    status = cache.status()
    assert cache.enabled and warnings == []
    assert status.key_location == "key-file"
    assert "not on tmpfs" in status.warnings[0]
    assert not (runtime / "mlflow-secrets-helper").exists()


def test_loose_runtime_dir_is_not_used(cache_dir: Path, shm_runtime_dir: Path) -> None:
    shm_runtime_dir.chmod(0o755)
    status = open_cache(cache_dir, runtime_dir=shm_runtime_dir)[0].status()
    assert status.key_location == "key-file"
    assert "755" in status.warnings[0]


@as_root
def test_foreign_runtime_dir_is_not_used(cache_dir: Path, shm_runtime_dir: Path) -> None:
    os.chown(shm_runtime_dir, 65534, 65534)
    status = open_cache(cache_dir, runtime_dir=shm_runtime_dir)[0].status()
    assert status.key_location == "key-file"


def test_loose_runtime_key_disables_the_cache(cache_dir: Path, shm_runtime_dir: Path) -> None:
    key_path = open_cache(cache_dir, runtime_dir=shm_runtime_dir)[0].status().key_path
    assert key_path is not None
    Path(key_path).chmod(0o644)
    cache, warnings = open_cache(cache_dir, runtime_dir=shm_runtime_dir)
    assert not cache.enabled and len(warnings) == 1


# -- the hot path stays light --------------------------------------------------------------------


def test_import_stays_lean() -> None:
    code = (
        "import sys, mlflow_secrets_helper.cache; "
        "print(' '.join(m for m in ('random', 'secrets', 'logging', 'platformdirs', "
        "'subprocess', 'hashlib', 'hmac', 'dataclasses', 'threading', 'fcntl', "
        "'mlflow_secrets_helper.cache.memory', 'mlflow_secrets_helper.providers') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


# -- providers' memory ---------------------------------------------------------------------------

NOTE_KEY = f"vault kv-mount https://{HOST}:8200 {SECRET_REF}"


def note_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.note"))


def test_memory_round_trip_across_instances(cache_dir: Path, clock: Clock) -> None:
    cache, _ = open_cache(cache_dir, clock)
    memory: Memory = cache.memory()
    assert memory.recall(NOTE_KEY) is None
    memory.remember(NOTE_KEY, "kv-prod/", ttl=3600)

    assert open_cache(cache_dir, clock)[0].memory().recall(NOTE_KEY) == "kv-prod/"
    assert memory.recall(NOTE_KEY + "/other") is None
    (path,) = note_files(cache_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    on_disk = path.name.encode() + path.read_bytes()
    for needle in (b"kv-prod", HOST.encode(), SECRET_REF.encode(), b"vault"):
        assert needle not in on_disk
    memory.remember(NOTE_KEY, "kv-v2/", ttl=3600)
    assert memory.recall(NOTE_KEY) == "kv-v2/" and len(note_files(cache_dir)) == 1


def test_memory_honours_the_ttl(cache_dir: Path, clock: Clock) -> None:
    memory = open_cache(cache_dir, clock)[0].memory()
    memory.remember(NOTE_KEY, "kv/", ttl=60)
    clock.now -= 1  # dated in the future: the clock went back
    assert memory.recall(NOTE_KEY) is None
    clock.now += 1
    memory.remember(NOTE_KEY, "kv/", ttl=60)
    clock.now += 59
    assert memory.recall(NOTE_KEY) == "kv/"
    clock.now += 1
    assert memory.recall(NOTE_KEY) is None
    assert note_files(cache_dir) == []  # an expired note of ours is removed
    memory.remember(NOTE_KEY, "kv/", ttl=0)
    assert note_files(cache_dir) == []


def test_memory_rejects_large_notes(cache_dir: Path) -> None:
    memory = open_cache(cache_dir)[0].memory()
    memory.remember(NOTE_KEY, "x" * 4097, ttl=60)
    memory.remember("k" * 5000, "x", ttl=60)
    memory.remember("\ud800", "x", ttl=60)  # not encodable: still no exception
    assert note_files(cache_dir) == [] and memory.recall("k" * 5000) is None
    memory.remember(NOTE_KEY, "x" * 4096, ttl=60)
    assert memory.recall(NOTE_KEY) == "x" * 4096


def test_notes_and_entries_stay_apart(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    memory = cache.memory()
    memory.remember(NOTE_KEY, "kv/", ttl=300)
    (entry,), (note,) = entry_files(cache_dir), note_files(cache_dir)

    shutil.copyfile(note, entry)  # a note where the entry should be: a miss, and removed
    assert cache.get(IDENTITY) is None and not entry.exists()
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    shutil.copyfile(entry, note)
    assert memory.recall(NOTE_KEY) is None and not note.exists()
    assert cache.get(IDENTITY) is not None


def test_memory_tolerates_trouble(cache_dir: Path, tmp_path: Path) -> None:
    cache, _ = open_cache(cache_dir)
    memory = cache.memory()
    memory.remember(NOTE_KEY, "kv/", ttl=300)
    (note,) = note_files(cache_dir)
    note.unlink()
    note.mkdir(mode=0o700)  # a directory in its place: cannot be read nor replaced
    assert memory.recall(NOTE_KEY) is None
    memory.remember(NOTE_KEY, "kv/", ttl=300)
    note.rmdir()
    planted = tmp_path / "planted"
    planted.write_bytes(b"anything")
    note.symlink_to(planted)
    assert memory.recall(NOTE_KEY) is None and not note.is_symlink()
    note.write_bytes(b"MSHNOTES" + os.urandom(80))
    note.chmod(0o600)
    assert memory.recall(NOTE_KEY) is None and not note.exists()


def test_disabled_cache_memory_remembers_nothing(cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o755)
    cache_dir.chmod(0o755)
    memory = open_cache(cache_dir)[0].memory()
    memory.remember(NOTE_KEY, "kv/", ttl=300)
    assert memory.recall(NOTE_KEY) is None
    assert list(cache_dir.iterdir()) == []


def test_status_ignores_notes_and_clear_removes_them(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    memory = cache.memory()
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    memory.remember(NOTE_KEY, "kv/", ttl=300)
    memory.remember(NOTE_KEY + "2", "kv2/", ttl=300)
    assert cache.status().entries == 1

    assert cache.clear() == 1
    assert note_files(cache_dir) == []
    memory.remember(NOTE_KEY, "kv/", ttl=300)  # the cleared cache is off until the next run
    assert memory.recall(NOTE_KEY) is None and note_files(cache_dir) == []


def test_old_notes_are_swept(cache_dir: Path) -> None:
    cache, _ = open_cache(cache_dir)
    cache.memory().remember(NOTE_KEY, "kv/", ttl=300)
    (note,) = note_files(cache_dir)
    month_ago = time.time() - 30 * 86400
    os.utime(note, (month_ago, month_ago))
    cache.put(IDENTITY, Bearer(Secret(TOKEN)), ttl=300, backend_expires_at=None)
    assert not note.exists()
