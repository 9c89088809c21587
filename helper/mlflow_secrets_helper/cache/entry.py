"""The cache entry format: identity, times, and the sealed bytes of one credential.

Pure: bytes in, bytes out; the caller supplies the clock reading, the nonce and
the jitter draw. Sealed files (entries and memory notes) are::

    magic   8 bytes  b"MSHCACHE" for entries
    version 1 byte   0x01 (the sealed-file layout; the record inside has its own "v")
    key id  8 bytes  HMAC(master, "key-id")[:8]: which key wrote this file
    nonce  12 bytes  fresh for every write
    body            AES-256-GCM(enc_key, nonce, plaintext, aad=header + associated data)

An entry's associated data is its identity, so a file moved to another identity's
name, or damaged in any way, does not open: it is a miss, never an exception.

An entry's record is version 2: it carries the TTL it was written under, so a reader
can tell an entry written while the clock was ahead (see :func:`trustworthy`).
Version 1 entries (no TTL) do not decode: they are misses, and are removed.
"""

import json
import os
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC

from mlflow_secrets_helper.errors import HelperError
from mlflow_secrets_helper.secret import Credential, from_fields

MAGIC = b"MSHCACHE"
FORMAT_VERSION = 1
#: the version of an entry's record (2: the TTL is recorded)
ENTRY_VERSION = 2
#: how far an entry's stored time may lie in the future (clocks of processes that share
#: a cache, a small step of NTP) before the entry is distrusted
CLOCK_SKEW_SEC = 60.0
HEADER_LEN = len(MAGIC) + 1 + 8 + 12
MAX_ENTRY_BYTES = 256 * 1024
_AAD_PREFIX = b"mlflow-secrets-helper/cache/v1\n"
_REFRESH_JITTER = (0.75, 0.9)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    # cryptography's HMAC: its library is loaded anyway, while the stdlib's
    # hmac module would load OpenSSL's hashlib bindings as well.
    mac = HMAC(key, SHA256())
    mac.update(message)
    return mac.finalize()


class Keys(NamedTuple):
    """The keys derived from one master key: key id, encryption, file names, credential ids."""

    key_id: bytes
    encrypt: AESGCM
    names: bytes
    ids: bytes

    @classmethod
    def derive(cls, master: bytes) -> "Keys":
        def sub(label: str) -> bytes:
            return hmac_sha256(master, b"mlflow-secrets-helper cache v1 " + label.encode())

        return cls(
            key_id=sub("key-id")[:8],
            encrypt=AESGCM(sub("encryption")),
            names=sub("file-names"),
            ids=sub("credential-id"),
        )

    def __repr__(self) -> str:
        return "Keys(<redacted>)"

    def file_stem(self, associated_data: bytes) -> str:
        """The keyed-hash file name (without suffix) for this associated data."""
        return hmac_sha256(self.names, associated_data).hex()[:32]


def seal(keys: Keys, magic: bytes, associated_data: bytes, plaintext: bytes, nonce: bytes) -> bytes:
    """Header + AES-GCM body; the header and ``associated_data`` are authenticated."""
    header = magic + bytes([FORMAT_VERSION]) + keys.key_id + nonce
    return header + keys.encrypt.encrypt(nonce, plaintext, header + associated_data)


def unseal(keys: Keys, magic: bytes, associated_data: bytes, data: bytes) -> bytes | None:
    """The plaintext of a sealed file, or None for anything that does not authenticate."""
    if len(data) <= HEADER_LEN + 16 or not data.startswith(magic):
        return None
    header = data[:HEADER_LEN]
    if header[len(magic)] != FORMAT_VERSION or header[len(magic) + 1 : -12] != keys.key_id:
        return None
    try:
        return keys.encrypt.decrypt(header[-12:], data[HEADER_LEN:], header + associated_data)
    except Exception:  # noqa: BLE001 - InvalidTag (or a malformed body): a miss
        return None


def open_record(
    keys: Keys, magic: bytes, associated_data: bytes, data: bytes, version: int
) -> dict[str, object] | None:
    """The JSON object sealed in ``data`` if it authenticates and has record ``version``."""
    plaintext = unseal(keys, magic, associated_data, data)
    if plaintext is None:
        return None
    try:
        record = json.loads(plaintext)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("v") != version:
        return None
    return record


def key_id_of(data: bytes, magic: bytes = MAGIC) -> bytes | None:
    """Which key sealed ``data`` (its first HEADER_LEN bytes suffice), or None."""
    if len(data) < HEADER_LEN or not data.startswith(magic):
        return None
    return data[len(magic) + 1 : len(magic) + 9]


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
    ttl: float = 0.0


# The only two places that know how a credential is written down.
def _fields(credential: Credential) -> dict[str, str]:
    return credential.to_fields()


def _credential(fields: dict[str, object]) -> Credential | None:
    try:
        return from_fields(fields)
    except HelperError:
        return None


def credential_id(keys: Keys, associated_data: bytes, credential: Credential) -> str:
    """A keyed fingerprint of the credential for this identity; never a plain hash."""
    fields = json.dumps(_fields(credential), sort_keys=True, separators=(",", ":"))
    message = associated_data + b"\n" + fields.encode("utf-8")
    return "c1:" + hmac_sha256(keys.ids, message).hex()[:24]


def new_entry(
    keys: Keys,
    associated_data: bytes,
    credential: Credential,
    *,
    now: float,
    ttl: float,
    backend_expires_at: float | None,
    draw: float,
) -> Entry:
    """The entry for a credential fetched at ``now``.

    ``expires_at`` is ``min(now + ttl, backend_expires_at)``; ``refresh_after`` lies at
    75-90 % of that lifetime, placed by ``draw`` (uniform in [0, 1]).
    """
    expires_at = now + max(ttl, 0.0)
    if backend_expires_at is not None:
        expires_at = min(expires_at, backend_expires_at)
    lifetime = expires_at - now
    low, high = _REFRESH_JITTER
    refresh_after = now + lifetime * (low + (high - low) * draw) if lifetime > 0 else now
    return Entry(
        credential=credential,
        credential_id=credential_id(keys, associated_data, credential),
        stored_at=now,
        refresh_after=min(refresh_after, expires_at),
        expires_at=expires_at,
        backend_expires_at=backend_expires_at,
        ttl=max(ttl, 0.0),
    )


def trustworthy(found: Entry, now: float) -> bool:
    """False for an entry the clock says cannot have been written yet: stored more than
    :data:`CLOCK_SKEW_SEC` in the future, or expiring further away than its TTL allows
    (both happen when the clock was ahead when it was written and has been corrected)."""
    return (
        found.stored_at <= now + CLOCK_SKEW_SEC
        and found.expires_at <= found.stored_at + found.ttl
        and found.expires_at <= now + found.ttl + CLOCK_SKEW_SEC
    )


def uniform() -> float:
    """A uniform float in [0, 1] from os.urandom (keeps ``random`` off the hot path)."""
    return int.from_bytes(os.urandom(4), "big") / 0xFFFFFFFF


def encode(keys: Keys, associated_data: bytes, entry: Entry, nonce: bytes) -> bytes:
    """The sealed file for ``entry``; ``nonce`` must be 12 fresh random bytes."""
    plaintext = json.dumps(
        {
            "v": ENTRY_VERSION,
            "credential": _fields(entry.credential),
            "stored_at": entry.stored_at,
            "refresh_after": entry.refresh_after,
            "expires_at": entry.expires_at,
            "backend_expires_at": entry.backend_expires_at,
            "ttl": entry.ttl,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    return seal(keys, MAGIC, associated_data, plaintext, nonce)


def decode(keys: Keys, associated_data: bytes, data: bytes) -> Entry | None:
    """The entry sealed in ``data`` for this identity, or None for anything else."""
    record = open_record(keys, MAGIC, associated_data, data, ENTRY_VERSION)
    if record is None:
        return None
    fields = record.get("credential")
    ttl = number(record.get("ttl"))
    stored_at = number(record.get("stored_at"))
    refresh_after = number(record.get("refresh_after"))
    expires_at = number(record.get("expires_at"))
    backend = record.get("backend_expires_at")
    backend_expires_at = None if backend is None else number(backend)
    if (
        not isinstance(fields, dict)
        or stored_at is None
        or refresh_after is None
        or expires_at is None
        or ttl is None
        or (backend is not None and backend_expires_at is None)
    ):
        return None
    credential = _credential(fields)
    if credential is None:
        return None
    return Entry(
        credential=credential,
        credential_id=credential_id(keys, associated_data, credential),
        stored_at=stored_at,
        refresh_after=refresh_after,
        expires_at=expires_at,
        backend_expires_at=backend_expires_at,
        ttl=ttl,
    )


def number(value: object) -> float | None:
    """A JSON number as float; None for anything else (booleans included)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
