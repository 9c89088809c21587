"""The encrypted per-user cache of resolved credentials (contract §7).

Layout of the cache directory (0700, owned by the effective user)::

    <name>.entry   one credential, AES-256-GCM encrypted          (0600)
    <name>.lock    per-entry lock file for ``fcntl.flock``        (0600)
    hits, misses   hit-rate counters: one byte appended per call  (0600)
    key            the master key, only when no safe runtime dir  (0600)
    .tmp-*         in-flight atomic writes (swept after a minute)

``<name>`` is ``HMAC-SHA256(name_key, identity AAD)`` in hex, so neither host
names nor secret references appear on disk. When the caller passes a runtime
directory (``$XDG_RUNTIME_DIR``) that is owned by us, mode 0700 and on tmpfs,
the master key lives there instead, as
``<runtime>/mlflow-secrets-helper/<hash of the cache path>.key``, and never sits
beside the entries.

Entry file format, version 1::

    magic   8 bytes  b"MSHCACHE"
    version 1 byte   0x01
    key id  8 bytes  HMAC(master, "key-id")[:8]: which key wrote this entry
    nonce  12 bytes  fresh from os.urandom for every write
    body            AES-256-GCM(enc_key, nonce, plaintext, aad=header + identity AAD)

The plaintext is compact JSON holding the credential fields and the times.
Anything that does not decrypt and authenticate for the identity asked about is
a miss, never an exception. Problems are reported only through the ``warn``
callback and return values; this module prints nothing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal, NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC

from mlflow_secrets_helper.errors import HelperError
from mlflow_secrets_helper.secret import Credential, constant_time_equal

KeyLocation = Literal["runtime-dir", "key-file", "none"]

MAGIC = b"MSHCACHE"
FORMAT_VERSION = 1
KEY_MAGIC = b"MSHKEY\x00\x01"
_HEADER_LEN = len(MAGIC) + 1 + 8 + 12
_MAX_ENTRY_BYTES = 256 * 1024
_AAD_PREFIX = b"mlflow-secrets-helper/cache/v1\n"
_ENTRY_SUFFIX = ".entry"
_LOCK_SUFFIX = ".lock"
_TMP_PREFIX = ".tmp-"
_KEY_FILE = "key"
_STATS_FILES = {True: "hits", False: "misses"}
_STATS_LIMIT = 1 << 16  # counters are halved together past this many bytes
_TMP_MAX_AGE = 60.0
_ORPHAN_MAX_AGE = 7 * 86400.0  # entries written with another key, untouched this long
_RUNTIME_SUBDIR = "mlflow-secrets-helper"
_MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_REFRESH_JITTER = (0.75, 0.9)

_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class CacheIdentity(NamedTuple):
    """Everything that selects one cache entry. Holds references, never secret values."""

    scheme: str
    host: str
    port: int
    provider: str
    secret_ref: str
    version: str
    header_name: str
    auth_mode: str

    def associated_data(self) -> bytes:
        """Canonical encoding: the AES-GCM associated data and the input of the file name."""
        fields = {
            "auth_mode": self.auth_mode,
            "header_name": self.header_name,
            "host": self.host,
            "port": self.port,
            "provider": self.provider,
            "scheme": self.scheme,
            "secret_ref": self.secret_ref,
            "version": self.version,
        }
        encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return _AAD_PREFIX + encoded.encode("ascii")


class Entry(NamedTuple):
    """A cached (or just fetched) credential and its times, in unix seconds."""

    credential: Credential
    credential_id: str
    stored_at: float
    refresh_after: float
    expires_at: float
    backend_expires_at: float | None


class CacheStatus(NamedTuple):
    """What ``cache status``, ``info`` and ``doctor`` show about the cache."""

    enabled: bool
    directory: Path
    entries: int
    hits: int
    misses: int
    key_location: KeyLocation
    key_path: Path | None
    warnings: tuple[str, ...]


class _Refused(Exception):
    """The cache cannot be used for this run; the message is the one warning line."""


class _Keys(NamedTuple):
    key_id: bytes
    encrypt: AESGCM
    names: bytes
    ids: bytes

    @classmethod
    def derive(cls, master: bytes) -> _Keys:
        def sub(label: str) -> bytes:
            return _hmac_sha256(master, b"mlflow-secrets-helper cache v1 " + label.encode())

        return cls(
            key_id=sub("key-id")[:8],
            encrypt=AESGCM(sub("encryption")),
            names=sub("file-names"),
            ids=sub("credential-id"),
        )

    def __repr__(self) -> str:
        return "_Keys(<redacted>)"


class Cache:
    """The cache in one directory. Build it with :meth:`open`; it never raises for disk trouble."""

    def __init__(
        self,
        directory: Path,
        *,
        enabled: bool,
        clock: Callable[[], float],
        warn: Callable[[str], None],
        keys: _Keys,
        key_location: KeyLocation,
        key_path: Path | None,
        runtime_dir: Path | None,
        notes: tuple[str, ...],
        clearable: bool,
    ) -> None:
        self.directory = directory
        self.enabled = enabled
        self._clock = clock
        self._warn = warn
        self._keys = keys
        self._key_location: KeyLocation = key_location
        self._key_path = key_path
        self._runtime_dir = runtime_dir
        self._notes = notes
        self._clearable = clearable
        self._write_warned = False

    def __repr__(self) -> str:
        return f"Cache({str(self.directory)!r}, enabled={self.enabled})"

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        runtime_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        warn: Callable[[str], None] = lambda message: None,
    ) -> Cache:
        """Open (creating if needed) the cache in ``directory``.

        An unusable directory or key gives a disabled cache after one ``warn`` line:
        nothing is read or written, but :meth:`put` still builds entries.
        """
        try:
            _prepare_directory(directory)
            master, location, key_path, notes = _load_master_key(directory, runtime_dir)
        except _Refused as refused:
            warn(f"cache disabled: {refused}")
            return cls(
                directory,
                enabled=False,
                clock=clock,
                warn=warn,
                keys=_Keys.derive(os.urandom(32)),
                key_location="none",
                key_path=None,
                runtime_dir=runtime_dir,
                notes=(f"cache disabled: {refused}",),
                clearable=_is_own_directory(directory),
            )
        return cls(
            directory,
            enabled=True,
            clock=clock,
            warn=warn,
            keys=_Keys.derive(master),
            key_location=location,
            key_path=key_path,
            runtime_dir=runtime_dir,
            notes=notes,
            clearable=True,
        )

    # -- entries ------------------------------------------------------------------------------

    def credential_id(self, identity: CacheIdentity, credential: Credential) -> str:
        """A keyed fingerprint of the credential for this identity; never a plain hash."""
        fields = json.dumps(credential.to_fields(), sort_keys=True, separators=(",", ":"))
        message = identity.associated_data() + b"\n" + fields.encode("utf-8")
        return "c1:" + _hmac_sha256(self._keys.ids, message).hex()[:24]

    def get(self, identity: CacheIdentity) -> Entry | None:
        """The stored entry for ``identity`` (possibly expired), or None.

        A file that is torn, tampered, written for another identity, foreign-owned,
        too open or a symlink is a miss; when it is ours it is removed.
        """
        if not self.enabled:
            return None
        aad = identity.associated_data()
        path = self._entry_path(aad)
        data, inode = self._read_entry(path)
        if not data:
            return None
        entry = self._decode(identity, aad, data)
        if entry is None:
            _remove_if_ours(path, inode)
        return entry

    def put(
        self,
        identity: CacheIdentity,
        credential: Credential,
        *,
        ttl: float,
        backend_expires_at: float | None,
    ) -> Entry:
        """Build the entry for a freshly fetched credential and store it atomically.

        ``expires_at`` is ``min(now + ttl, backend_expires_at)``; ``refresh_after`` lies at a
        random 75-90 % of that lifetime. With ``ttl <= 0``, an already expired backend
        lifetime or a disabled cache nothing is written.
        """
        now = self._clock()
        expires_at = now + max(ttl, 0.0)
        if backend_expires_at is not None:
            expires_at = min(expires_at, backend_expires_at)
        lifetime = expires_at - now
        low, high = _REFRESH_JITTER
        refresh_after = now + lifetime * (low + (high - low) * _uniform()) if lifetime > 0 else now
        entry = Entry(
            credential=credential,
            credential_id=self.credential_id(identity, credential),
            stored_at=now,
            refresh_after=min(refresh_after, expires_at),
            expires_at=expires_at,
            backend_expires_at=backend_expires_at,
        )
        if not self.enabled or ttl <= 0 or lifetime <= 0:
            return entry
        aad = identity.associated_data()
        plaintext = json.dumps(
            {
                "v": FORMAT_VERSION,
                "credential": credential.to_fields(),
                "stored_at": entry.stored_at,
                "refresh_after": entry.refresh_after,
                "expires_at": entry.expires_at,
                "backend_expires_at": entry.backend_expires_at,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        header = MAGIC + bytes([FORMAT_VERSION]) + self._keys.key_id + os.urandom(12)
        body = self._keys.encrypt.encrypt(header[-12:], plaintext, header + aad)
        with suppress(OSError):
            self._sweep()
        try:
            _write_atomically(self.directory, self._entry_path(aad).name, header + body)
        except OSError as error:
            self._warn_write_failure(error)
        return entry

    def erase(self, identity: CacheIdentity, credential_id: str | None = None) -> bool:
        """Delete the entry for ``identity``; True if something was deleted.

        With ``credential_id`` this is compare-and-delete: the entry goes only if it still
        holds that credential, so a fresh credential another process just stored survives.
        """
        if not self.enabled:
            return False
        aad = identity.associated_data()
        path = self._entry_path(aad)
        if credential_id is None:
            try:
                path.unlink()
            except OSError:
                return False
            return True
        data, inode = self._read_entry(path)
        if not data:
            return False
        entry = self._decode(identity, aad, data)
        if entry is None:
            _remove_if_ours(path, inode)
            return False
        if not constant_time_equal(entry.credential_id.encode(), credential_id.encode()):
            return False
        # Move the file aside, then delete it only if it is the one we compared; an entry
        # written in between is put back (unless an even newer one already took its place).
        aside = self.directory / (_TMP_PREFIX + os.urandom(8).hex())
        try:
            path.rename(aside)
        except OSError:
            return False
        try:
            moved = os.lstat(aside)
            if (moved.st_dev, moved.st_ino) == inode:
                return True
            with suppress(OSError):
                os.link(aside, path)
            return False
        finally:
            _unlink_quietly(aside)

    def clear(self) -> int:
        """Remove every entry, lock, counter, stray temp file and the key; count the entries.

        The next :meth:`open` makes a new key. This also works on a cache that is disabled
        because of a loose or broken file, as long as the directory itself is ours.
        """
        removed = 0
        if self._clearable:
            for name in _list(self.directory):
                ours = (
                    name.endswith((_ENTRY_SUFFIX, _LOCK_SUFFIX))
                    or name.startswith(_TMP_PREFIX)
                    or name in (_KEY_FILE, *_STATS_FILES.values())
                )
                if not ours:
                    continue
                try:
                    (self.directory / name).unlink()
                except OSError:
                    continue
                if name.endswith(_ENTRY_SUFFIX):
                    removed += 1
        runtime_key = _runtime_key_path(self.directory, self._runtime_dir)
        if runtime_key is not None:
            _unlink_quietly(runtime_key)
        if self._key_path is not None:
            _unlink_quietly(self._key_path)
        # This instance's key is gone from disk: stop using it.
        if self.enabled:
            self.enabled = False
            self._keys = _Keys.derive(os.urandom(32))
            self._notes = ("the cache was cleared; it is used again from the next run",)
            self._key_location = "none"
            self._key_path = None
        return removed

    # -- locking ------------------------------------------------------------------------------

    @contextmanager
    def lock(self, identity: CacheIdentity, deadline: float) -> Iterator[bool]:
        """Hold the per-entry lock; yields True if it was acquired before ``deadline``.

        ``deadline`` is a :func:`time.monotonic` value. On False the caller proceeds
        without the lock (a slow holder never blocks a fetch past its deadline).
        """
        if not self.enabled:
            yield False
            return
        aad = identity.associated_data()
        path = self.directory / (self._name(aad) + _LOCK_SUFFIX)
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as error:
            if error.errno == errno.ELOOP:
                _remove_if_ours(path, None)
            yield False
            return
        try:
            info = os.fstat(fd)
            if not _is_private(info):
                os.close(fd)
                fd = -1
                _remove_if_ours(path, (info.st_dev, info.st_ino))
                yield False
                return
            acquired = _flock_until(fd, deadline)
            try:
                yield acquired
            finally:
                if acquired:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            if fd >= 0:
                os.close(fd)

    # -- statistics ---------------------------------------------------------------------------

    def record(self, hit: bool) -> None:
        """Count one cache hit or miss in counters shared by all processes."""
        if not self.enabled:
            return
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.directory / _STATS_FILES[hit], flags, 0o600)
        except OSError:
            return
        try:
            info = os.fstat(fd)
            if not _is_private(info):
                return
            os.write(fd, b".")
            if info.st_size + 1 >= _STATS_LIMIT:
                self._halve_counters()
        except OSError:
            return
        finally:
            os.close(fd)

    def status(self) -> CacheStatus:
        """Location, entry count, hit counters, where the key is, and security warnings."""
        entries = 0
        hits = misses = 0
        if self.enabled:
            hits = self._counter(True)
            misses = self._counter(False)
            for name in _list(self.directory):
                if name.endswith(_ENTRY_SUFFIX) and self._key_id_of(name) == self._keys.key_id:
                    entries += 1
        return CacheStatus(
            enabled=self.enabled,
            directory=self.directory,
            entries=entries,
            hits=hits,
            misses=misses,
            key_location=self._key_location,
            key_path=self._key_path,
            warnings=self._notes,
        )

    # -- internals ----------------------------------------------------------------------------

    def _name(self, aad: bytes) -> str:
        return _hmac_sha256(self._keys.names, aad).hex()[:32]

    def _entry_path(self, aad: bytes) -> Path:
        return self.directory / (self._name(aad) + _ENTRY_SUFFIX)

    def _read_entry(self, path: Path) -> tuple[bytes, tuple[int, int]]:
        """The entry file's bytes and (device, inode), or b"" when there is nothing usable.

        A missing file is simply a miss. A symlink, an empty file, or a file of ours that
        is too open is removed; a foreign-owned file is left alone.
        """
        try:
            data, inode = _read_private_file(path, _MAX_ENTRY_BYTES)
        except _Refused:
            _remove_if_ours(path, None)
            return b"", (0, 0)
        except OSError as error:
            if error.errno == errno.ELOOP:
                _remove_if_ours(path, None)
            return b"", (0, 0)
        if not data:
            _remove_if_ours(path, inode)
        return data, inode

    def _decode(self, identity: CacheIdentity, aad: bytes, data: bytes) -> Entry | None:
        if len(data) <= _HEADER_LEN + 16 or not data.startswith(MAGIC):
            return None
        header = data[:_HEADER_LEN]
        if header[len(MAGIC)] != FORMAT_VERSION or header[len(MAGIC) + 1 : -12] != (
            self._keys.key_id
        ):
            return None
        try:
            plaintext = self._keys.encrypt.decrypt(header[-12:], data[_HEADER_LEN:], header + aad)
            record = json.loads(plaintext)
        except Exception:  # noqa: BLE001 - InvalidTag or a malformed body: both are a miss
            return None
        if not isinstance(record, dict) or record.get("v") != FORMAT_VERSION:
            return None
        fields = record.get("credential")
        stored_at = _number(record.get("stored_at"))
        refresh_after = _number(record.get("refresh_after"))
        expires_at = _number(record.get("expires_at"))
        backend = record.get("backend_expires_at")
        backend_expires_at = None if backend is None else _number(backend)
        if (
            not isinstance(fields, dict)
            or stored_at is None
            or refresh_after is None
            or expires_at is None
            or (backend is not None and backend_expires_at is None)
        ):
            return None
        try:
            credential = Credential.from_fields(fields)
        except HelperError:
            return None
        return Entry(
            credential=credential,
            credential_id=self.credential_id(identity, credential),
            stored_at=stored_at,
            refresh_after=refresh_after,
            expires_at=expires_at,
            backend_expires_at=backend_expires_at,
        )

    def _key_id_of(self, name: str) -> bytes | None:
        try:
            data, _ = _read_private_file(self.directory / name, _HEADER_LEN)
        except (OSError, _Refused):
            return None
        if len(data) < _HEADER_LEN or not data.startswith(MAGIC):
            return None
        return data[len(MAGIC) + 1 : len(MAGIC) + 9]

    def _sweep(self) -> None:
        """Remove stray temp files older than a minute and long-abandoned foreign-key entries."""
        now = time.time()
        for name in _list(self.directory):
            is_tmp = name.startswith(_TMP_PREFIX)
            if not is_tmp and not name.endswith(_ENTRY_SUFFIX):
                continue
            try:
                info = os.lstat(self.directory / name)
            except OSError:
                continue
            if info.st_uid != os.geteuid():
                continue
            if is_tmp:
                stale = now - info.st_mtime > _TMP_MAX_AGE
            else:
                stale = now - info.st_mtime > _ORPHAN_MAX_AGE and (
                    self._key_id_of(name) != self._keys.key_id
                )
            if stale:
                _unlink_quietly(self.directory / name)

    def _counter(self, hit: bool) -> int:
        try:
            info = os.lstat(self.directory / _STATS_FILES[hit])
        except OSError:
            return 0
        return info.st_size if _is_private(info) else 0

    def _halve_counters(self) -> None:
        for name in _STATS_FILES.values():
            try:
                fd = os.open(self.directory / name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                info = os.fstat(fd)
                if _is_private(info):
                    os.ftruncate(fd, info.st_size // 2)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _warn_write_failure(self, error: OSError) -> None:
        if not self._write_warned:
            self._write_warned = True
            reason = error.strerror or type(error).__name__
            self._warn(f"could not write the cache entry in {self.directory}: {reason}")


# -- files and directories ---------------------------------------------------------------------


def _is_private(info: os.stat_result, *, directory: bool = False) -> bool:
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)
    return kind_ok and info.st_uid == os.geteuid() and info.st_mode & 0o077 == 0


def _is_own_directory(directory: Path) -> bool:
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def _describe(path: Path, info: os.stat_result, *, directory: bool) -> str | None:
    """Why ``info`` is not a private file/directory of ours, or None when it is."""
    what = "directory" if directory else "file"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symlink"
    if directory and not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if not directory and not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if info.st_uid != os.geteuid():
        return f"{what} {path} is owned by uid {info.st_uid}, not by uid {os.geteuid()}"
    if info.st_mode & 0o077:
        wanted = "700" if directory else "600"
        return (
            f"{what} {path} has mode {stat.S_IMODE(info.st_mode):03o}; "
            f"it must be {wanted} (chmod {wanted} {path})"
        )
    return None


def _make_private_directory(path: Path) -> None:
    """mkdir with mode 0700 regardless of the umask; an existing entry is left alone."""
    try:
        path.mkdir(0o700)
    except FileExistsError:
        return
    path.chmod(0o700)


def _prepare_directory(directory: Path) -> None:
    """Create the cache directory (and at most one missing parent) and check it is private."""
    if not directory.is_absolute():
        raise _Refused(f"the cache directory {str(directory)!r} is not an absolute path")
    try:
        if not os.path.lexists(directory):
            parent = directory.parent
            if not os.path.lexists(parent):
                _make_private_directory(parent)
            _make_private_directory(directory)
        info = os.lstat(directory)
    except OSError as error:
        raise _Refused(
            f"cannot create the cache directory {directory}: {error.strerror or error}"
        ) from None
    problem = _describe(directory, info, directory=True)
    if problem is not None:
        raise _Refused(problem)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise _Refused(f"the cache directory {directory} is not writable")


def _read_private_file(path: Path, limit: int) -> tuple[bytes, tuple[int, int]]:
    """Read at most ``limit`` bytes of a 0600 regular file we own; raise otherwise.

    Returns the bytes and the file's (device, inode). A symlink fails with ELOOP
    (``OSError``); a file that is not private raises :class:`_Refused`.
    """
    fd = os.open(path, _OPEN_READ)
    try:
        info = os.fstat(fd)
        problem = _describe(path, info, directory=False)
        if problem is not None:
            raise _Refused(problem)
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks), (info.st_dev, info.st_ino)
    finally:
        os.close(fd)


def _write_atomically(directory: Path, name: str, data: bytes) -> None:
    """Temp file (O_EXCL, 0600) + fsync + rename over ``name`` + fsync of the directory."""
    temp = directory / (_TMP_PREFIX + os.urandom(8).hex())
    fd = os.open(temp, _OPEN_NEW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.replace(directory / name)
    except BaseException:
        _unlink_quietly(temp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_if_ours(path: Path, inode: tuple[int, int] | None) -> None:
    """Unlink a bad file in the cache dir when we own it (and it is still the one we read)."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if info.st_uid != os.geteuid():
        return
    if inode is not None and (info.st_dev, info.st_ino) != inode:
        return
    _unlink_quietly(path)


def _unlink_quietly(path: Path) -> None:
    with suppress(OSError):
        path.unlink()


def _list(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as found:
            return [item.name for item in found]
    except OSError:
        return []


def _flock_until(fd: int, deadline: float) -> bool:
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EINTR):
                return False
        else:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _uniform() -> float:
    """A uniform float in [0, 1] from os.urandom (keeps ``random`` off the hot path)."""
    return int.from_bytes(os.urandom(4), "big") / 0xFFFFFFFF


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


# -- the master key ----------------------------------------------------------------------------


def _load_master_key(
    directory: Path, runtime_dir: Path | None
) -> tuple[bytes, KeyLocation, Path, tuple[str, ...]]:
    """Find or create the master key: in the runtime dir when it is safe, else in ``key``."""
    runtime_key = _runtime_key_path(directory, runtime_dir)
    if runtime_dir is not None and runtime_key is not None:
        reason = _runtime_dir_problem(runtime_dir)
        if reason is None:
            try:
                _make_private_directory(runtime_key.parent)
                info = os.lstat(runtime_key.parent)
            except OSError as error:
                reason = f"cannot create {runtime_key.parent}: {error.strerror or error}"
            else:
                reason = _describe(runtime_key.parent, info, directory=True)
        if reason is None:
            return _read_or_create_key(runtime_key), "runtime-dir", runtime_key, ()
        why = f"the runtime directory is not used ({reason}); "
    else:
        why = "no runtime directory (XDG_RUNTIME_DIR) is set; "
    key_path = directory / _KEY_FILE
    note = (
        why + f"the cache key is kept in {key_path}, beside the entries: "
        "anyone who can read your files can decrypt the cache"
    )
    return _read_or_create_key(key_path), "key-file", key_path, (note,)


def _runtime_key_path(directory: Path, runtime_dir: Path | None) -> Path | None:
    if runtime_dir is None or not runtime_dir.is_absolute():
        return None
    tag = _hmac_sha256(b"mlflow-secrets-helper key path", os.fsencode(directory))
    return runtime_dir / _RUNTIME_SUBDIR / (tag.hex()[:16] + ".key")


def _runtime_dir_problem(runtime_dir: Path) -> str | None:
    try:
        info = os.lstat(runtime_dir)
    except OSError as error:
        return f"{runtime_dir}: {error.strerror or error}"
    problem = _describe(runtime_dir, info, directory=True)
    if problem is not None:
        return problem
    if stat.S_IMODE(info.st_mode) != 0o700:
        return f"{runtime_dir} has mode {stat.S_IMODE(info.st_mode):03o}, not 700"
    fstype = _filesystem_type(info.st_dev)
    if fstype not in _MEMORY_FILESYSTEMS:
        return f"{runtime_dir} is not on tmpfs ({fstype or 'unknown filesystem'})"
    return None


def _filesystem_type(device: int) -> str | None:
    """The type of the mounted filesystem with this device number (Linux mountinfo)."""
    try:
        with open("/proc/self/mountinfo", "rb") as mounts:
            table = mounts.read()
    except OSError:
        return None
    wanted = f"{os.major(device)}:{os.minor(device)}".encode()
    for line in table.splitlines():
        # "36 35 98:0 /root /mount/point options [optional fields] - fstype source options"
        fields = line.split(b" ", 3)
        if len(fields) == 4 and fields[2] == wanted:
            _, separator, after = line.partition(b" - ")
            if separator:
                return after.split(b" ", 1)[0].decode("ascii", "replace")
    return None


def _read_or_create_key(path: Path) -> bytes:
    """Read the private key file at ``path`` or create it; refuse one that is not private."""
    for _ in range(3):
        try:
            data, _inode = _read_private_file(path, len(KEY_MAGIC) + 33)
        except FileNotFoundError:
            pass
        except _Refused as refused:
            raise _Refused(f"key {refused}") from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise _Refused(f"the key file {path} is a symlink") from None
            raise _Refused(f"cannot read the key file {path}: {error.strerror}") from None
        else:
            if len(data) == len(KEY_MAGIC) + 32 and data.startswith(KEY_MAGIC):
                return data[len(KEY_MAGIC) :]
            # Malformed but private and ours: replace it (the entries it wrote are lost anyway).
            _unlink_quietly(path)
        try:
            return _create_key(path)
        except FileExistsError:
            continue  # another process created it first: read theirs
        except OSError as error:
            raise _Refused(f"cannot create the key file {path}: {error.strerror}") from None
    raise _Refused(f"the key file {path} keeps changing")


def _create_key(path: Path) -> bytes:
    """Write a fresh key to a temp file, then link it into place (fails if one appeared)."""
    master = os.urandom(32)
    temp = path.parent / (_TMP_PREFIX + os.urandom(8).hex())
    fd = os.open(temp, _OPEN_NEW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, KEY_MAGIC + master)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, path)
    finally:
        _unlink_quietly(temp)
    _fsync_directory(path.parent)
    return master


def open_user_cache(
    directory: Path, env: Mapping[str, str], warn: Callable[[str], None] = lambda _m: None
) -> Cache:
    """The cache in ``directory``, with its key in ``$XDG_RUNTIME_DIR`` when that is safe."""
    runtime = env.get("XDG_RUNTIME_DIR")
    return Cache.open(directory, runtime_dir=Path(runtime) if runtime else None, warn=warn)


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    # cryptography's HMAC: its library is loaded anyway, while the stdlib's
    # hmac module would load OpenSSL's hashlib bindings as well.
    mac = HMAC(key, SHA256())
    mac.update(message)
    return mac.finalize()
