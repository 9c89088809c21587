"""The sealed memory-note format, pure: bytes in, bytes out, no disk and no SDK."""

from __future__ import annotations

import pytest

from mlflow_secrets_helper.cache import entry as entry_format
from mlflow_secrets_helper.cache import note as fmt
from mlflow_secrets_helper.cache.entry import CacheIdentity, Keys
from mlflow_secrets_helper.secret import Bearer, Secret

KEYS = Keys.derive(bytes(range(32)))
NONCE = b"\x05" * 12
NOW = 1_800_000_000.0
KEY = "vault kv-mount https://vault.example.test:8200 secret/data/x"


def sealed(note: str = "secret/", *, key: str = KEY, ttl: float = 3600.0) -> bytes:
    data = fmt.encode(KEYS, key, note, now=NOW, ttl=ttl, nonce=NONCE)
    assert data is not None
    return data


def test_round_trip_within_its_lifetime() -> None:
    data = sealed("kv-v2/")
    assert fmt.decode(KEYS, KEY, data, now=NOW) == "kv-v2/"
    assert fmt.decode(KEYS, KEY, data, now=NOW + 3599.9) == "kv-v2/"
    assert data.startswith(fmt.NOTE_MAGIC) and b"kv-v2" not in data and b"vault" not in data


def test_expired_or_future_dated_note_is_a_miss() -> None:
    data = sealed(ttl=60)
    assert fmt.decode(KEYS, KEY, data, now=NOW + 60) is None
    assert fmt.decode(KEYS, KEY, data, now=NOW + 1e9) is None
    assert fmt.decode(KEYS, KEY, data, now=NOW - 1) is None  # stored "later" than now


def test_lifetime_is_capped_at_a_week() -> None:
    data = sealed(ttl=1e12)
    assert fmt.decode(KEYS, KEY, data, now=NOW + fmt.MAX_NOTE_TTL - 1) is not None
    assert fmt.decode(KEYS, KEY, data, now=NOW + fmt.MAX_NOTE_TTL) is None


@pytest.mark.parametrize("ttl", [0.0, -5.0, float("nan")])
def test_no_lifetime_nothing_to_keep(ttl: float) -> None:
    assert fmt.encode(KEYS, KEY, "x", now=NOW, ttl=ttl, nonce=NONCE) is None


def test_size_is_bounded() -> None:
    assert sealed("é" * (fmt.MAX_NOTE_BYTES // 2)) is not None
    assert (
        fmt.encode(KEYS, KEY, "x" * (fmt.MAX_NOTE_BYTES + 1), now=NOW, ttl=1, nonce=NONCE) is None
    )
    worst = sealed("\x01" * fmt.MAX_NOTE_BYTES)  # every byte JSON-escaped
    assert len(worst) <= fmt.MAX_NOTE_FILE_BYTES
    with pytest.raises(ValueError):
        fmt.associated_data("k" * (fmt.MAX_KEY_BYTES + 1))


def test_a_note_opens_only_for_its_own_key() -> None:
    data = sealed()
    assert fmt.decode(KEYS, KEY + " ", data, now=NOW) is None
    assert fmt.decode(Keys.derive(bytes(32)), KEY, data, now=NOW) is None


def test_notes_and_entries_never_open_as_each_other() -> None:
    identity = CacheIdentity("https", "h.test", 443, "vault", "p", "", "Authorization", "")
    aad = identity.associated_data()
    built = entry_format.new_entry(
        KEYS, aad, Bearer(Secret("tok")), now=NOW, ttl=60, backend_expires_at=None, draw=0.5
    )
    entry_bytes = entry_format.encode(KEYS, aad, built, NONCE)
    # Even with the magic swapped and the note's key equal to the identity's encoding,
    # the associated data differs, so neither opens as the other.
    disguised = fmt.NOTE_MAGIC + entry_bytes[len(fmt.NOTE_MAGIC) :]
    assert fmt.decode(KEYS, aad.decode(), disguised, now=NOW) is None
    note_bytes = sealed(key=aad.decode())
    assert entry_format.decode(KEYS, aad, note_bytes) is None
    assert entry_format.decode(KEYS, aad, entry_format.MAGIC + note_bytes[8:]) is None
    assert KEYS.file_stem(fmt.associated_data(aad.decode())) != KEYS.file_stem(aad)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"nope",
        b'{"v": 1, "note": 3, "stored_at": 0, "expires_at": 1e20}',
        b'{"v": 1, "note": "x", "stored_at": "0", "expires_at": 1e20}',
        b'{"v": 2, "note": "x", "stored_at": 0, "expires_at": 1e20}',
    ],
)
def test_authentic_but_malformed_note_is_a_miss(plaintext: bytes) -> None:
    data = entry_format.seal(KEYS, fmt.NOTE_MAGIC, fmt.associated_data(KEY), plaintext, NONCE)
    assert fmt.decode(KEYS, KEY, data, now=NOW) is None
