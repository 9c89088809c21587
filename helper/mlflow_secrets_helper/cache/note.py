"""The format of a memory note: a small non-secret string a provider keeps between runs.

Pure, like :mod:`.entry`, and sealed the same way, but with its own magic and its
own associated data (``mlflow-secrets-helper/note/v1`` and the note's key), so a
note never opens as an entry, nor an entry as a note, nor one key's note as another's.
"""

from __future__ import annotations

import json

from mlflow_secrets_helper.cache.entry import FORMAT_VERSION, Keys, number, open_record, seal

NOTE_MAGIC = b"MSHNOTES"
MAX_NOTE_BYTES = 4096
MAX_KEY_BYTES = 1024
#: notes are hints: none is kept longer than a week (the sweep's horizon)
MAX_NOTE_TTL = 7 * 86400.0
#: the largest note file worth reading: a maximal note JSON-escaped, plus the header
MAX_NOTE_FILE_BYTES = 6 * MAX_NOTE_BYTES + 1024
_AAD_PREFIX = b"mlflow-secrets-helper/note/v1\n"


def associated_data(key: str) -> bytes:
    """The associated data of the note kept under ``key`` (also the input of its file name).

    Raises ValueError for a key that is not text or is longer than MAX_KEY_BYTES.
    """
    encoded = key.encode("utf-8")
    if len(encoded) > MAX_KEY_BYTES:
        raise ValueError("note key too long")
    return _AAD_PREFIX + encoded


def encode(
    keys: Keys, key: str, note: str, *, now: float, ttl: float, nonce: bytes
) -> bytes | None:
    """The sealed file holding ``note`` until ``now + ttl`` (at most MAX_NOTE_TTL);
    None when it must not be kept: a ttl that is not positive, a note over MAX_NOTE_BYTES."""
    if not ttl > 0 or len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        return None
    expires_at = now + min(ttl, MAX_NOTE_TTL)
    plaintext = json.dumps(
        {"v": FORMAT_VERSION, "note": note, "stored_at": now, "expires_at": expires_at},
        separators=(",", ":"),
    ).encode("utf-8")
    return seal(keys, NOTE_MAGIC, associated_data(key), plaintext, nonce)


def decode(keys: Keys, key: str, data: bytes, *, now: float) -> str | None:
    """The note sealed in ``data`` for ``key`` if it is valid at ``now``, else None.

    An expired note, one dated in the future (a clock set back, or a planted file),
    or one that does not open for this key is a miss.
    """
    record = open_record(keys, NOTE_MAGIC, associated_data(key), data, FORMAT_VERSION)
    if record is None:
        return None
    note = record.get("note")
    stored_at = number(record.get("stored_at"))
    expires_at = number(record.get("expires_at"))
    if not isinstance(note, str) or stored_at is None or expires_at is None:
        return None
    if not stored_at <= now < expires_at:
        return None
    return note
