"""The cache of one directory: where entries, locks, counters and notes are placed.

:class:`Cache` joins the pieces: the key from :mod:`.keystore`, the sealed format
of :mod:`.entry`, the private files of :mod:`.files`, locks and counters. It never
raises for disk trouble and prints nothing: problems go to the ``warn`` callback
once, and everything unusable on disk is a miss.
"""

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import TYPE_CHECKING, NamedTuple, Union

from mlflow_secrets_helper.cache import counters, entry, files, keystore
from mlflow_secrets_helper.cache.entry import CacheIdentity, Entry, Keys
from mlflow_secrets_helper.cache.keystore import KeyLocation, MasterKey
from mlflow_secrets_helper.secret import Credential, constant_time_equal

if TYPE_CHECKING:
    from mlflow_secrets_helper.providers.base import Memory

#: a directory as callers give it; the cache keeps plain strings (pathlib is not on the hit path)
StrPath = Union[str, "os.PathLike[str]"]

ENTRY_SUFFIX = ".entry"
LOCK_SUFFIX = ".lock"
NOTE_SUFFIX = ".note"
_NOTE_MAX_AGE = 7 * 86400.0  # notes untouched this long
#: the file whose mtime says when the cache was last swept
SWEEP_MARKER = "sweep"
#: sweep at most this often (on a miss that writes an entry; never on a hit)...
SWEEP_INTERVAL = 3600.0
#: ...or sooner when more than this many entries are there: the cap (oldest written go first)
MAX_ENTRIES = 1000
#: at most this many directory names are looked at by one run
SWEEP_BATCH = 4 * MAX_ENTRIES
#: an entry file this old is past the longest TTL plus the longest stale grace (a day each)
ENTRY_MAX_AGE = 2 * 86400.0
#: a lock file this old whose entry does not exist is an orphan
LOCK_MAX_AGE = 3600.0


class CacheStatus(NamedTuple):
    """What ``cache status``, ``info`` and ``doctor`` show about the cache."""

    enabled: bool
    directory: str
    entries: int
    hits: int
    misses: int
    key_location: KeyLocation
    key_path: str | None
    warnings: tuple[str, ...]


class Cache:
    """The cache in one directory. Build it with :meth:`open`; it never raises for disk trouble."""

    def __init__(
        self,
        directory: str,
        key: MasterKey | None,
        *,
        clock: Callable[[], float],
        warn: Callable[[str], None],
        runtime_dir: str | None,
        warnings: tuple[str, ...],
        clearable: bool,
    ) -> None:
        self.directory = directory
        self.enabled = key is not None
        self._dir = os.fspath(directory)
        self._clock = clock
        self._warn = warn
        # A disabled cache still builds entries (credential ids need a key): a throwaway one.
        self._keys = Keys.derive(key.secret if key is not None else os.urandom(32))
        self._key_location: KeyLocation = key.location if key is not None else "none"
        self._key_path = key.path if key is not None else None
        self._runtime_dir = runtime_dir
        self._warnings = warnings
        self._clearable = clearable
        self._write_warned = False

    def __repr__(self) -> str:
        return f"Cache({self._dir!r}, enabled={self.enabled})"

    @classmethod
    def open(
        cls,
        directory: StrPath,
        *,
        runtime_dir: StrPath | None = None,
        clock: Callable[[], float] = time.time,
        warn: Callable[[str], None] = lambda message: None,
    ) -> "Cache":
        """Open (creating if needed) the cache in ``directory``.

        An unusable directory or key gives a disabled cache after one ``warn`` line:
        nothing is read or written, but :meth:`put` still builds entries.
        """
        path = os.fspath(directory)
        runtime = os.fspath(runtime_dir) if runtime_dir is not None else None
        try:
            if not path:
                raise files.Refused(
                    f"no home directory (HOME is unset or relative and uid {os.getuid()} has "
                    "no passwd entry); set MLFLOW_SECRETS_CACHE_DIR to use a cache"
                )
            files.prepare_directory(path)
            key = keystore.load(path, runtime)
        except files.Refused as refused:
            line = f"cache disabled: {refused}"
            warn(line)
            return cls(
                path,
                None,
                clock=clock,
                warn=warn,
                runtime_dir=runtime,
                warnings=(line,),
                clearable=files.is_own_directory(path),
            )
        return cls(
            path,
            key,
            clock=clock,
            warn=warn,
            runtime_dir=runtime,
            warnings=key.notes,
            clearable=True,
        )

    # -- entries ------------------------------------------------------------------------------

    def credential_id(self, identity: CacheIdentity, credential: Credential) -> str:
        """A keyed fingerprint of the credential for this identity; never a plain hash."""
        return entry.credential_id(self._keys, identity.associated_data(), credential)

    def get(self, identity: CacheIdentity) -> Entry | None:
        """The stored entry for ``identity`` (possibly expired), or None.

        A file that is torn, tampered, written for another identity, foreign-owned,
        too open or a symlink is a miss; when it is ours it is removed.
        """
        if not self.enabled:
            return None
        aad = identity.associated_data()
        path = self._path(aad, ENTRY_SUFFIX)
        data, inode = files.read_or_discard(path, entry.MAX_ENTRY_BYTES)
        if not data:
            return None
        found = entry.decode(self._keys, aad, data)
        if found is None or not entry.trustworthy(found, self._clock()):
            files.remove_if_ours(path, inode)
            return None
        return found

    def put(
        self,
        identity: CacheIdentity,
        credential: Credential,
        *,
        ttl: float,
        backend_expires_at: float | None,
        store: bool = True,
    ) -> Entry:
        """Build the entry for a freshly fetched credential and store it atomically.

        ``expires_at`` is ``min(now + ttl, backend_expires_at)``; ``refresh_after`` lies at a
        random 75-90 % of that lifetime. With ``store=False`` (a local copy such as a
        mounted file), ``ttl <= 0``, an already expired backend lifetime or a disabled
        cache, the entry (and its credential id) is built but nothing is written.
        """
        aad = identity.associated_data()
        now = self._clock()
        built = entry.new_entry(
            self._keys,
            aad,
            credential,
            now=now,
            ttl=ttl,
            backend_expires_at=backend_expires_at,
            draw=entry.uniform(),
        )
        if not store or not self.enabled or ttl <= 0 or built.expires_at <= now:
            return built
        data = entry.encode(self._keys, aad, built, os.urandom(12))
        self._write(self._keys.file_stem(aad) + ENTRY_SUFFIX, data)
        with suppress(OSError):
            self.maintain()
        return built

    def erase(self, identity: CacheIdentity, credential_id: str | None = None) -> bool:
        """Delete the entry for ``identity``; True if something was deleted.

        With ``credential_id`` this is compare-and-delete: the entry goes only if it still
        holds that credential, so a fresh credential another process just stored survives.
        """
        if not self.enabled:
            return False
        aad = identity.associated_data()
        path = self._path(aad, ENTRY_SUFFIX)
        if credential_id is None:
            try:
                os.unlink(path)
            except OSError:
                return False
            return True
        data, inode = files.read_or_discard(path, entry.MAX_ENTRY_BYTES)
        if not data:
            return False
        found = entry.decode(self._keys, aad, data)
        if found is None:
            files.remove_if_ours(path, inode)
            return False
        if not constant_time_equal(found.credential_id.encode(), credential_id.encode()):
            return False
        return files.remove_exact(path, inode)

    def clear(self) -> int:
        """Remove every entry, note, lock, counter, stray temp file and the key; count the
        entries.

        The next :meth:`open` makes a new key. This also works on a cache that is disabled
        because of a loose or broken file, as long as the directory itself is ours.
        """
        removed = 0
        if self._clearable:
            for name in files.list_names(self._dir):
                ours = (
                    name.endswith((ENTRY_SUFFIX, NOTE_SUFFIX, LOCK_SUFFIX))
                    or name.startswith(files.TMP_PREFIX)
                    or name in (keystore.KEY_FILE, SWEEP_MARKER, *counters.FILES.values())
                )
                if not ours:
                    continue
                try:
                    os.unlink(f"{self._dir}/{name}")
                except OSError:
                    continue
                if name.endswith(ENTRY_SUFFIX):
                    removed += 1
        keystore.forget(self._dir, self._runtime_dir, self._key_path)
        # This instance's key is gone from disk: stop using it.
        if self.enabled:
            self.enabled = False
            self._keys = Keys.derive(os.urandom(32))
            self._warnings = ("the cache was cleared; it is used again from the next run",)
            self._key_location = "none"
            self._key_path = None
        return removed

    # -- locks, counters, status, memory ------------------------------------------------------

    def lock(self, identity: CacheIdentity, deadline: float) -> AbstractContextManager[bool]:
        """Hold the per-entry lock; yields True if it was acquired before ``deadline``.

        ``deadline`` is a :func:`time.monotonic` value. On False the caller proceeds
        without the lock (a slow holder never blocks a fetch past its deadline).
        """
        if not self.enabled:
            return _not_held()
        from mlflow_secrets_helper.cache import lock  # only a miss takes a lock

        return lock.hold(self._path(identity.associated_data(), LOCK_SUFFIX), deadline)

    def record(self, hit: bool) -> None:
        """Count one cache hit or miss in counters shared by all processes."""
        if self.enabled:
            counters.record(self._dir, hit)

    def status(self) -> CacheStatus:
        """Location, entry count, hit counters, where the key is, and security warnings.

        Memory notes are not counted: they are not credentials.
        """
        entries = hits = misses = 0
        if self.enabled:
            hits = counters.count(self._dir, True)
            misses = counters.count(self._dir, False)
            for name in files.list_names(self._dir):
                if name.endswith(ENTRY_SUFFIX) and self._key_id_of(name) == self._keys.key_id:
                    entries += 1
        return CacheStatus(
            enabled=self.enabled,
            directory=self.directory,
            entries=entries,
            hits=hits,
            misses=misses,
            key_location=self._key_location,
            key_path=self._key_path,
            warnings=self._warnings,
        )

    def memory(self) -> "Memory":
        """Encrypted notes for providers (see :mod:`.memory`); forgets all when disabled."""
        from mlflow_secrets_helper.cache.memory import CacheMemory

        return CacheMemory(self)

    # -- internals ----------------------------------------------------------------------------

    def _path(self, aad: bytes, suffix: str) -> str:
        return f"{self._dir}/{self._keys.file_stem(aad)}{suffix}"

    def _write(self, name: str, data: bytes) -> None:
        try:
            files.write_atomically(self._dir, name, data)
        except OSError as error:
            if not self._write_warned:
                self._write_warned = True
                reason = error.strerror or type(error).__name__
                self._warn(f"could not write the cache entry in {self.directory}: {reason}")

    def _key_id_of(self, name: str) -> bytes | None:
        try:
            data, _ = files.read_private_file(f"{self._dir}/{name}", entry.HEADER_LEN)
        except (OSError, files.Refused):
            return None
        return entry.key_id_of(data)

    def maintain(self) -> bool:
        """Sweep the directory when it is due; True if a sweep ran.

        Due once :data:`SWEEP_INTERVAL` has passed since the last sweep (the marker file's
        mtime), or when more than :data:`MAX_ENTRIES` entries are there. Called after a
        put, never on a hit; one run looks at no more than :data:`SWEEP_BATCH` names (and
        every put removes stray temporaries over a minute old among them).
        """
        if not self.enabled:
            return False
        marker = f"{self._dir}/{SWEEP_MARKER}"
        now = time.time()
        try:
            due = now - os.lstat(marker).st_mtime >= SWEEP_INTERVAL
        except FileNotFoundError:
            due = True
        if not due and self._count_entries(now) <= MAX_ENTRIES:
            return False
        # Claim this sweep first, so concurrent misses do not all sweep.
        files.touch(marker)
        if not self._sweep(now):
            os.utime(marker, (0, 0))  # the batch ran out: the next put goes on
        return True

    def _count_entries(self, now: float) -> int:
        """The entries among the first :data:`SWEEP_BATCH` names; temporaries of a killed
        write found there are removed once a minute old, as every put promises."""
        count = 0
        for looked, name in enumerate(files.iter_names(self._dir)):
            if looked >= SWEEP_BATCH:
                break
            if name.startswith(files.TMP_PREFIX):
                files.remove_stale_temporary(f"{self._dir}/{name}", now)
            count += name.endswith(ENTRY_SUFFIX)
        return count

    def _sweep(self, now: float) -> bool:
        """Remove stray temporaries, entries long past any use (whatever key wrote them),
        notes untouched for a week, orphaned lock files, and the oldest entries above the
        cap. True when the whole directory was looked at."""
        entries: list[tuple[float, str]] = []
        locks: list[tuple[float, str]] = []

        def stale(name: str, info: os.stat_result) -> bool:
            age = now - info.st_mtime
            if name.endswith(ENTRY_SUFFIX):
                if age > ENTRY_MAX_AGE:
                    return True  # its lock goes below, as an orphan, if nobody holds it
                entries.append((info.st_mtime, name))
                return False
            if name.endswith(LOCK_SUFFIX):
                if age > LOCK_MAX_AGE:
                    locks.append((info.st_mtime, name))
                return False
            return name.endswith(NOTE_SUFFIX) and age > _NOTE_MAX_AGE

        complete = files.sweep(self._dir, now, stale, limit=SWEEP_BATCH)
        entries.sort()
        for _, name in entries[: max(len(entries) - MAX_ENTRIES, 0)]:
            files.unlink_quietly(f"{self._dir}/{name}")
        for _, name in locks:
            stem = name[: -len(LOCK_SUFFIX)]
            if not os.path.lexists(f"{self._dir}/{stem}{ENTRY_SUFFIX}"):
                from mlflow_secrets_helper.cache import lock  # only a sweep removes locks

                lock.remove_if_free(f"{self._dir}/{name}")
        return complete


@contextmanager
def _not_held() -> Iterator[bool]:
    yield False


def open_user_cache(
    directory: StrPath, env: Mapping[str, str], warn: Callable[[str], None] = lambda _m: None
) -> Cache:
    """The cache in ``directory``, with its key in ``$XDG_RUNTIME_DIR`` when that is safe."""
    runtime = env.get("XDG_RUNTIME_DIR")
    return Cache.open(directory, runtime_dir=runtime or None, warn=warn)
