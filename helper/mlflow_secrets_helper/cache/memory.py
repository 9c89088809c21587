"""Providers' memory: small non-secret notes kept encrypted in the cache directory.

Each note is ``<keyed hash of its key>.note``, sealed like an entry but as a note
(:mod:`.note`). Memory is only ever a hint, so it never fails: any trouble makes
:meth:`CacheMemory.recall` return None and :meth:`CacheMemory.remember` do nothing.
Loaded only when a provider asks for it, never on the cache-hit path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlflow_secrets_helper.cache import files
from mlflow_secrets_helper.cache import note as note_format
from mlflow_secrets_helper.cache.store import NOTE_SUFFIX

if TYPE_CHECKING:
    from mlflow_secrets_helper.cache.store import Cache


class CacheMemory:
    """The :class:`~mlflow_secrets_helper.providers.base.Memory` of one cache.

    It follows the cache: while the cache is disabled (or after ``clear``) it
    remembers nothing. It uses the cache's directory, keys and clock (same package).
    """

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    def __repr__(self) -> str:
        return f"CacheMemory({self._cache!r})"

    def recall(self, key: str) -> str | None:
        cache = self._cache
        if not cache.enabled:
            return None
        try:
            path = cache._path(note_format.associated_data(key), NOTE_SUFFIX)
            data, inode = files.read_or_discard(path, note_format.MAX_NOTE_FILE_BYTES)
            if not data:
                return None
            found = note_format.decode(cache._keys, key, data, now=cache._clock())
            if found is None:
                files.remove_if_ours(path, inode)  # expired, damaged, or another key's
            return found
        except Exception:  # noqa: BLE001 - a note is a hint: any trouble is a miss
            return None

    def remember(self, key: str, note: str, ttl: float) -> None:
        cache = self._cache
        if not cache.enabled:
            return
        try:
            aad = note_format.associated_data(key)
            data = note_format.encode(
                cache._keys, key, note, now=cache._clock(), ttl=ttl, nonce=os.urandom(12)
            )
            if data is not None:
                files.write_atomically(cache._dir, cache._keys.file_stem(aad) + NOTE_SUFFIX, data)
        except Exception:  # noqa: BLE001, S110 - a note is a hint: keeping it may fail quietly
            pass
