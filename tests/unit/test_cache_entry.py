"""The sealed entry format, pure: bytes in, bytes out, no disk and no SDK."""

from __future__ import annotations

import hashlib
import json

import pytest

from mlflow_secrets_helper.cache import FORMAT_VERSION, MAGIC, CacheIdentity, Entry
from mlflow_secrets_helper.cache import entry as fmt
from mlflow_secrets_helper.secret import Basic, Bearer, Credential, Secret

MASTER = bytes(range(32))
KEYS = fmt.Keys.derive(MASTER)
NONCE = b"\x07" * 12
NOW = 1_800_000_000.0
TOKEN = "tok-Zq8vXw3LmNpR7sTu"
IDENTITY = CacheIdentity(
    "https", "mlflow.example.test", 443, "vault", "secret/data/x", "", "Authorization", ""
)
AAD = IDENTITY.associated_data()


def entry_for(credential: Credential, **times: float | None) -> Entry:
    return fmt.new_entry(
        KEYS,
        AAD,
        credential,
        now=NOW,
        ttl=float(times.get("ttl") or 300.0),
        backend_expires_at=times.get("backend"),
        draw=0.5,
    )


@pytest.mark.parametrize(
    "credential",
    [Bearer(Secret(TOKEN)), Basic(Secret("svc"), Secret("pw-9"))],
    ids=["bearer", "basic"],
)
def test_round_trip(credential: Credential) -> None:
    stored = entry_for(credential)
    sealed = fmt.encode(KEYS, AAD, stored, NONCE)
    assert fmt.decode(KEYS, AAD, sealed) == stored
    assert fmt.decode(fmt.Keys.derive(MASTER), AAD, sealed) == stored  # same master, same keys


def test_header_layout() -> None:
    sealed = fmt.encode(KEYS, AAD, entry_for(Bearer(Secret(TOKEN))), NONCE)
    assert sealed[:8] == MAGIC == b"MSHCACHE"
    assert sealed[8] == FORMAT_VERSION == 1
    assert sealed[9:17] == KEYS.key_id == fmt.key_id_of(sealed)
    assert sealed[17:29] == NONCE
    assert TOKEN.encode() not in sealed
    assert fmt.key_id_of(b"MSHCACHE\x01") is None
    assert fmt.key_id_of(b"X" * 40) is None


def test_only_the_same_identity_and_key_open_it() -> None:
    sealed = fmt.encode(KEYS, AAD, entry_for(Bearer(Secret(TOKEN))), NONCE)
    other = IDENTITY._replace(port=8443).associated_data()
    assert fmt.decode(KEYS, other, sealed) is None
    assert fmt.decode(fmt.Keys.derive(bytes(32)), AAD, sealed) is None


def test_every_damaged_byte_is_a_miss() -> None:
    sealed = fmt.encode(KEYS, AAD, entry_for(Bearer(Secret(TOKEN))), NONCE)
    for index in range(len(sealed)):
        flipped = sealed[:index] + bytes([sealed[index] ^ 0x40]) + sealed[index + 1 :]
        assert fmt.decode(KEYS, AAD, flipped) is None, index
    for cut in (0, 1, fmt.HEADER_LEN, fmt.HEADER_LEN + 16, len(sealed) - 1):
        assert fmt.decode(KEYS, AAD, sealed[:cut]) is None, cut
    assert fmt.decode(KEYS, AAD, sealed + b"\0") is None


@pytest.mark.parametrize(
    "plaintext",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"v": 2}',
        b'{"v": 1, "credential": {"token": "t"}, "stored_at": 1, "refresh_after": 2}',
        b'{"v": 1, "credential": {"token": "t"}, "stored_at": true, "refresh_after": 2,'
        b' "expires_at": 3}',
        b'{"v": 1, "credential": {"token": "t"}, "stored_at": 1, "refresh_after": 2,'
        b' "expires_at": 3, "backend_expires_at": "soon"}',
        b'{"v": 1, "credential": {"nothing": "usable"}, "stored_at": 1, "refresh_after": 2,'
        b' "expires_at": 3}',
        b'{"v": 1, "credential": "t", "stored_at": 1, "refresh_after": 2, "expires_at": 3}',
        b"[" * 100_000,
    ],
)
def test_authentic_but_malformed_body_is_a_miss(plaintext: bytes) -> None:
    sealed = fmt.seal(KEYS, MAGIC, AAD, plaintext, NONCE)
    assert fmt.decode(KEYS, AAD, sealed) is None


def test_credential_id_is_keyed_and_bound_to_the_identity() -> None:
    credential = Bearer(Secret(TOKEN))
    first = fmt.credential_id(KEYS, AAD, credential)
    assert first.startswith("c1:") and len(first) == 27
    assert first == fmt.credential_id(fmt.Keys.derive(MASTER), AAD, credential)
    assert first != fmt.credential_id(fmt.Keys.derive(bytes(32)), AAD, credential)
    assert first != fmt.credential_id(
        KEYS, IDENTITY._replace(version="2").associated_data(), credential
    )
    assert first != fmt.credential_id(KEYS, AAD, Bearer(Secret(TOKEN + "x")))
    assert first[3:] not in hashlib.sha256(TOKEN.encode()).hexdigest()


@pytest.mark.parametrize(("draw", "fraction"), [(0.0, 0.75), (0.5, 0.825), (1.0, 0.9)])
def test_refresh_after_is_jittered_within_75_to_90_percent(draw: float, fraction: float) -> None:
    built = fmt.new_entry(
        KEYS, AAD, Bearer(Secret(TOKEN)), now=NOW, ttl=200, backend_expires_at=None, draw=draw
    )
    assert built.stored_at == NOW and built.expires_at == NOW + 200
    assert built.refresh_after == pytest.approx(NOW + 200 * fraction)


def test_backend_expiry_caps_and_zero_ttl() -> None:
    capped = entry_for(Bearer(Secret(TOKEN)), backend=NOW + 60)
    assert capped.expires_at == NOW + 60 and capped.backend_expires_at == NOW + 60
    built = fmt.new_entry(
        KEYS, AAD, Bearer(Secret(TOKEN)), now=NOW, ttl=0, backend_expires_at=None, draw=0.5
    )
    assert built.stored_at == built.refresh_after == built.expires_at == NOW
    past = entry_for(Bearer(Secret(TOKEN)), backend=NOW - 1)
    assert past.expires_at == NOW - 1 and past.refresh_after == NOW - 1


def test_uniform_stays_in_range() -> None:
    draws = [fmt.uniform() for _ in range(500)]
    assert min(draws) >= 0.0 and max(draws) <= 1.0 and max(draws) - min(draws) > 0.5


def test_identity_encoding_is_canonical() -> None:
    assert AAD.startswith(b"mlflow-secrets-helper/cache/v1\n")
    fields = json.loads(AAD.split(b"\n", 1)[1])
    assert list(fields) == sorted(fields) and fields["port"] == 443
    assert KEYS.file_stem(AAD) == fmt.Keys.derive(MASTER).file_stem(AAD)
    assert len(KEYS.file_stem(AAD)) == 32
    assert KEYS.file_stem(AAD) != KEYS.file_stem(
        IDENTITY._replace(auth_mode="basic").associated_data()
    )


def test_keys_never_show() -> None:
    assert repr(KEYS) == "Keys(<redacted>)"
    assert MASTER.hex() not in repr(KEYS) and KEYS.names.hex() not in repr(KEYS)
