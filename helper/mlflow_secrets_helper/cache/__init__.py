"""The encrypted per-user cache of resolved credentials (contract §7).

Layout of the cache directory (0700, owned by the effective user)::

    <name>.entry   one credential, AES-256-GCM encrypted          (0600)
    <name>.note    one provider memory note, encrypted likewise   (0600)
    <name>.lock    per-entry lock file for ``fcntl.flock``        (0600)
    hits, misses   hit-rate counters: one byte appended per call  (0600)
    key            the master key, only when no safe runtime dir  (0600)
    .tmp-*         in-flight atomic writes (swept after a minute)

``<name>`` is a keyed hash of the entry's identity (or the note's key), so neither
host names nor secret references appear on disk. The modules: :mod:`.store` (the
:class:`Cache`), :mod:`.entry` and :mod:`.note` (the sealed formats, pure),
:mod:`.keystore` (where the key lives), :mod:`.files`, :mod:`.lock`, :mod:`.counters`
and :mod:`.memory` (providers' notes, loaded on demand).
"""

from mlflow_secrets_helper.cache.entry import FORMAT_VERSION, MAGIC, CacheIdentity, Entry
from mlflow_secrets_helper.cache.keystore import KEY_MAGIC, KeyLocation
from mlflow_secrets_helper.cache.store import Cache, CacheStatus, open_user_cache

__all__ = [
    "FORMAT_VERSION",
    "KEY_MAGIC",
    "MAGIC",
    "Cache",
    "CacheIdentity",
    "CacheStatus",
    "Entry",
    "KeyLocation",
    "open_user_cache",
]
