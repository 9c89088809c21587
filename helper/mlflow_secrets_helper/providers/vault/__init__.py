"""HashiCorp Vault and OpenBao: one KV secret, read with a token, AppRole or Kubernetes login.

This module owns the provider's settings and their variables (validated when the provider is
built, with no SDK loaded), its ``SPEC``, and the reading policy: which login to use and when
to log in again, and where the secret lives — the configured mount, else the one remembered
in ``seams.memory`` for an hour, else the one Vault reports. Its calls to Vault through hvac
and the mapping of hvac's errors live in :mod:`.client`. The rules the user sees (paths,
logins, TLS, what is retried) are documented in the man page, section HASHICORP VAULT AND
OPENBAO.

It runs past 400 lines because the settings' validation (every VAULT_* and MLFLOW_VAULT_*
rule, with its message) stays with the provider that reads them; it is on the cache-hit
path, so it is not split into a second module that every call would load.
"""

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from mlflow_secrets_helper.errors import BackendDenied, ConfigError
from mlflow_secrets_helper.netrules import is_loopback_url, require_tls_unless_loopback
from mlflow_secrets_helper.providers.base import (
    DEFAULT_SEAMS,
    Fetched,
    ProviderSpec,
    Seams,
    require_sdk,
)

if TYPE_CHECKING:  # .client is loaded for a read only: a cache hit never pays for it
    from mlflow_secrets_helper.providers.vault.client import (
        Location,
        Login,
        TokenRejected,
        VaultCalls,
    )

DEFAULT_K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
AUTH_METHODS = ("token", "approle", "kubernetes")
SETTINGS = frozenset(
    {
        "secret_path",
        "secret_version",
        "mount",
        "kv_version",
        "auth_method",
        "approle_mount",
        "k8s_role",
        "k8s_token_path",
        "k8s_mount",
        "address",
        "namespace",
        "cacert",
        "capath",
    }
)
#: how long a discovered mount and KV version are remembered between runs
LOCATION_MEMORY_SEC = 3600.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class VaultSettings(NamedTuple):
    """Everything the provider needs, validated; no login material."""

    address: str
    namespace: str
    secret_path: str
    version: int | None
    mount: str | None
    kv_version: int | None
    auth_method: str
    approle_mount: str
    k8s_role: str | None
    k8s_token_path: str
    k8s_mount: str
    cacert: str | None
    capath: str | None
    skip_verify: bool


def parse_settings(settings: Mapping[str, str], env: Mapping[str, str]) -> VaultSettings:
    """Validate a route's settings (the registry has already refused unknown keys)."""

    def get(key: str, env_name: str | None = None) -> str | None:
        value = settings.get(key)
        if value is None and env_name is not None:
            value = env.get(env_name)
        value = value.strip() if value is not None else None
        return value or None

    address = _check_address(get("address", "VAULT_ADDR"))
    secret_path = _check_path(get("secret_path"), "MLFLOW_VAULT_SECRET_PATH")
    mount = get("mount")
    if mount is not None:
        mount = _check_path(mount, "MLFLOW_VAULT_MOUNT")
        if not secret_path.startswith(mount + "/"):
            raise ConfigError(
                f"the Vault secret path {secret_path!r} is not under the mount {mount!r}",
                hints=["MLFLOW_VAULT_SECRET_PATH is the full path, starting with the mount"],
            )
    kv_version = _check_int(get("kv_version"), "MLFLOW_VAULT_KV_VERSION", allowed=(1, 2))
    version = _check_int(get("secret_version"), "MLFLOW_VAULT_SECRET_VERSION")
    if version is not None and kv_version == 1:
        raise ConfigError(
            "MLFLOW_VAULT_SECRET_VERSION is set but KV v1 secrets have no versions",
            hints=["unset MLFLOW_VAULT_SECRET_VERSION or use a KV v2 mount"],
        )
    k8s_role = get("k8s_role")
    method = (get("auth_method") or "").lower()
    if not method:
        if env.get("VAULT_ROLE_ID", "").strip():
            method = "approle"
        elif k8s_role:
            method = "kubernetes"
        else:
            method = "token"
    if method not in AUTH_METHODS:
        raise ConfigError(
            f"unknown Vault auth method {method!r}",
            hints=["MLFLOW_VAULT_AUTH_METHOD is one of: " + ", ".join(AUTH_METHODS)],
        )
    if method == "kubernetes" and not k8s_role:
        raise ConfigError(
            "Vault Kubernetes login needs a role: MLFLOW_VAULT_K8S_ROLE is not set",
            hints=["set MLFLOW_VAULT_K8S_ROLE to the Vault role bound to this service account"],
        )
    skip = env.get("VAULT_SKIP_VERIFY", "").strip().lower()
    if skip not in _TRUE + _FALSE:
        raise ConfigError(
            f"VAULT_SKIP_VERIFY must be true or false, not {skip[:20]!r}",
        )
    skip_verify = skip in _TRUE
    if skip_verify and address.startswith("https://") and not _is_loopback(address):
        raise ConfigError(
            f"VAULT_SKIP_VERIFY is honoured only for a loopback Vault address, not {address}",
            hints=[
                "trust the server's CA with VAULT_CACERT (a PEM file) or VAULT_CAPATH instead",
                "skipping TLS verification would hand the Vault login to anyone on the path",
            ],
        )
    namespace = (get("namespace", "VAULT_NAMESPACE") or "").strip("/")
    if namespace:
        _check_path(namespace, "VAULT_NAMESPACE")
        if not all("\x21" <= ch <= "\x7e" for ch in namespace):
            raise ConfigError(f"VAULT_NAMESPACE {namespace[:100]!r} must be visible ASCII")
    return VaultSettings(
        address=address,
        namespace=namespace,
        secret_path=secret_path,
        version=version,
        mount=mount,
        kv_version=kv_version,
        auth_method=method,
        approle_mount=_check_path(get("approle_mount") or "approle", "MLFLOW_VAULT_APPROLE_MOUNT"),
        k8s_role=k8s_role,
        k8s_token_path=get("k8s_token_path") or DEFAULT_K8S_TOKEN_PATH,
        k8s_mount=_check_path(get("k8s_mount") or "kubernetes", "MLFLOW_VAULT_K8S_MOUNT"),
        cacert=get("cacert", "VAULT_CACERT"),
        capath=get("capath", "VAULT_CAPATH"),
        skip_verify=skip_verify,
    )


def _check_address(address: str | None) -> str:
    if not address:
        raise ConfigError(
            "VAULT_ADDR is not set", hints=["set VAULT_ADDR, e.g. https://vault.example.com:8200"]
        )
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in address):
        raise ConfigError("VAULT_ADDR contains whitespace, control or non-ASCII characters")
    scheme, host, port, extra = _split_address(address)
    if scheme not in ("https", "http") or not host:
        raise ConfigError(
            f"VAULT_ADDR {address[:200]!r} must be an https:// URL",
            hints=["e.g. https://vault.example.com:8200"],
        )
    if extra:
        raise ConfigError("VAULT_ADDR must not carry a user, query or fragment")
    if port is not None and not (port.isdigit() and int(port) <= 65535):
        raise ConfigError(f"VAULT_ADDR {address[:200]!r} is not a valid URL")
    address = address.rstrip("/")
    require_tls_unless_loopback(address, "VAULT_ADDR")
    return address


def _split_address(address: str) -> tuple[str, str, str | None, bool]:
    """(scheme, host, port text or None, has user info, query or fragment) of a URL: the
    parts VAULT_ADDR may have, read without urllib (this runs on every cache hit)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        return "", "", None, False
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority, tail = rest[:end], rest[end:]
    extra = "@" in authority or "?" in tail or "#" in tail
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            return scheme.lower(), "", None, extra
        return scheme.lower(), host, after[1:] or None, extra
    host, colon, port = authority.rpartition("@")[2].partition(":")
    return scheme.lower(), host, (port or None) if colon else None, extra


def _is_loopback(address: str) -> bool:
    return is_loopback_url(address)


def _check_path(path: str | None, name: str) -> str:
    if not path:
        raise ConfigError(
            f"{name} is not set",
            hints=[f"set {name}, e.g. secret/mlflow/auth"] if name.endswith("SECRET_PATH") else [],
        )
    path = path.strip("/")
    segments = path.split("/")
    if (
        not path
        or any(seg in ("", ".", "..") for seg in segments)
        or any(ord(ch) < 0x20 or ch in "?#%\\\x7f" for ch in path)
    ):
        raise ConfigError(
            f"{name} {path[:200]!r} is not a valid Vault path",
            hints=["use segments separated by single '/', without '.', '..', '?', '#' or '%'"],
        )
    return path


def _check_int(value: str | None, name: str, allowed: tuple[int, ...] = ()) -> int | None:
    if value is None:
        return None
    try:
        number = int(value, 10)
    except ValueError:
        number = -1
    if number < 1 or (allowed and number not in allowed):
        choices = " or ".join(map(str, allowed)) if allowed else "a positive integer"
        raise ConfigError(f"{name} must be {choices}, not {value[:20]!r}")
    return number


class VaultProvider:
    """Reads one KV secret from Vault or OpenBao."""

    def __init__(
        self,
        settings: Mapping[str, str],
        env: Mapping[str, str],
        seams: Seams = DEFAULT_SEAMS,
    ) -> None:
        self.settings = parse_settings(settings, env)
        self._env = env
        self._seams = seams
        self._vault: VaultCalls | None = None
        self._login: Login | None = None
        self._location: Location | None = None
        #: True when ``_location`` came from memory rather than from Vault in this process
        self._recalled = False

    def __repr__(self) -> str:
        return f"VaultProvider({self.reference()!r}, auth={self.settings.auth_method})"

    # -- Provider protocol -----------------------------------------------------------
    def reference(self) -> str:
        s = self.settings
        text = s.secret_path + (f"@{s.version}" if s.version is not None else "")
        if s.namespace:
            text += f" in namespace {s.namespace}"
        return f"{text} at {s.address}"

    def cache_key(self) -> str:
        s = self.settings
        return "vault:" + json.dumps(
            [s.address, s.namespace, s.secret_path, s.version, s.mount, s.kv_version],
            separators=(",", ":"),
        )

    def warnings(self) -> tuple[str, ...]:
        if self.settings.skip_verify and self.settings.address.startswith("https://"):
            return (
                f"TLS certificate verification for Vault at {self.settings.address} is OFF "
                "(VAULT_SKIP_VERIFY); use VAULT_CACERT instead",
            )
        return ()

    def fetch(self, deadline: float) -> Fetched:
        require_sdk(SPEC, "hvac", "requests")
        from mlflow_secrets_helper.providers.vault.client import TokenRejected

        login, fresh = self._current_login(deadline)
        try:
            return self._read(login, deadline)
        except TokenRejected as rejected:
            if not login.from_login or fresh:
                raise self._denied(rejected, login) from None
        # the login token expired or was revoked since we got it: log in once more
        self._login = None
        login, _ = self._current_login(deadline)
        try:
            return self._read(login, deadline)
        except TokenRejected as rejected:
            raise self._denied(rejected, login) from None

    # -- where the secret is -------------------------------------------------------------
    def _read(self, login: "Login", deadline: float) -> Fetched:
        from mlflow_secrets_helper.providers.vault.client import Absent, TokenRejected

        location = self._locate(login, deadline)
        try:
            return self._calls().read(location, login, deadline)
        except (Absent, TokenRejected) as exc:
            if not self._recalled or (isinstance(exc, TokenRejected) and exc.bad_token):
                raise
            failure = exc
        # nothing there, or not allowed, at a remembered place: ask Vault as a run without
        # memory would, and read again only if the secret is on another mount now
        try:
            found = self._discover(login, deadline)
        except Exception:
            self._location = None
            self._remember("")
            raise
        self._location, self._recalled = found, False
        if found == location:
            raise failure
        return self._calls().read(found, login, deadline)

    def _locate(self, login: "Login", deadline: float) -> "Location":
        """Where the secret is: as configured, else as remembered, else as Vault says."""
        from mlflow_secrets_helper.providers.vault.client import Location

        if self._location is None:
            s = self.settings
            if s.mount is not None and s.kv_version is not None:
                self._location = Location.of(s.secret_path, s.mount, s.kv_version)
            else:
                recalled = location_from_note(self._seams.memory.recall(self._memory_key()), s)
                self._recalled = recalled is not None
                self._location = recalled or self._discover(login, deadline)
        return self._location

    def _discover(self, login: "Login", deadline: float) -> "Location":
        from mlflow_secrets_helper.providers.vault.client import Location

        mount, kv_version = self._calls().discover(login, deadline)
        location = Location.of(self.settings.secret_path, mount, kv_version)
        self._remember(f"{mount}\n{kv_version}")
        return location

    def _memory_key(self) -> str:
        s = self.settings
        return "vault-location:" + json.dumps(
            [s.address, s.namespace, s.secret_path], separators=(",", ":")
        )

    def _remember(self, note: str) -> None:
        """Keep (or, with an empty note, forget) where the secret is, for later runs."""
        self._seams.memory.remember(self._memory_key(), note, LOCATION_MEMORY_SEC)

    # -- login ----------------------------------------------------------------------------
    def _calls(self) -> "VaultCalls":
        from mlflow_secrets_helper.providers.vault.client import VaultCalls

        if self._vault is None:
            self._vault = VaultCalls(self.settings, self._env, self._seams)
        return self._vault

    def _current_login(self, deadline: float) -> "tuple[Login, bool]":
        """The login to use and whether it was made just now."""
        login = self._login
        if login is not None and (
            login.renew_at is None or self._seams.monotonic() < login.renew_at
        ):
            return login, False
        vault = self._calls()
        method = self.settings.auth_method
        if method == "token":
            login = vault.static_token()
        elif method == "approle":
            login = vault.approle_login(deadline)
        else:
            login = vault.kubernetes_login(deadline)
        self._login = login if login.from_login else None
        return login, True

    def _denied(self, rejected: "TokenRejected", login: "Login") -> BackendDenied:
        from mlflow_secrets_helper.providers.vault.client import login_hints

        s = self.settings
        where = f" in namespace {s.namespace}" if s.namespace else ""
        acl_path = self._location.acl_path() if self._location else s.secret_path
        if rejected.bad_token:
            reason = "the token is invalid, expired or revoked"
            hints = login_hints(s)
        else:  # a valid login: logging in again gives the same policies
            reason = "the token's policies do not allow it"
            hints = [
                f"ask for a policy with read on {acl_path}; "
                f"`vault token capabilities {acl_path}` shows what this token may do"
            ]
        return BackendDenied(
            f"Vault at {s.address} denied {rejected.what}{where} with the "
            f"{login.source} (auth method {s.auth_method}): {reason}",
            hints=hints,
        )


def location_from_note(note: str | None, s: VaultSettings) -> "Location | None":
    """The location in a remembered note, or None when there is none or it no longer fits
    the settings (then Vault is asked, as if nothing had been remembered)."""
    from mlflow_secrets_helper.providers.vault.client import Location

    mount, _, version = (note or "").partition("\n")
    if not mount or version not in ("1", "2") or not s.secret_path.startswith(mount + "/"):
        return None
    kv_version = int(version)
    if s.mount not in (None, mount) or s.kv_version not in (None, kv_version):
        return None
    if kv_version == 1 and s.version is not None:
        return None
    try:
        return Location.of(s.secret_path, mount, kv_version)
    except ConfigError:  # the note names the secret's own path as its mount
        return None


SPEC = ProviderSpec(
    name="vault",
    toggle="MLFLOW_SECRETS_AUTH_ENABLE_VAULT",
    env_prefix="MLFLOW_VAULT",
    sdk="hvac",
    extra="vault",
    locator="secret_path",
    env_settings=(
        ("MLFLOW_VAULT_SECRET_PATH", "secret_path"),
        ("MLFLOW_VAULT_SECRET_VERSION", "secret_version"),
        ("MLFLOW_VAULT_MOUNT", "mount"),
        ("MLFLOW_VAULT_KV_VERSION", "kv_version"),
        ("MLFLOW_VAULT_AUTH_METHOD", "auth_method"),
        ("MLFLOW_VAULT_APPROLE_MOUNT", "approle_mount"),
        ("MLFLOW_VAULT_K8S_ROLE", "k8s_role"),
        ("MLFLOW_VAULT_K8S_TOKEN_PATH", "k8s_token_path"),
        ("MLFLOW_VAULT_K8S_MOUNT", "k8s_mount"),
    ),
    settings=SETTINGS,
    credential_variables=(
        "VAULT_TOKEN",
        "VAULT_ROLE_ID",
        "VAULT_SECRET_ID",
        "VAULT_SECRET_ID_FILE",
    ),
    location_variables=(
        "VAULT_ADDR",
        "VAULT_NAMESPACE",
        "VAULT_CACERT",
        "VAULT_CAPATH",
        "VAULT_SKIP_VERIFY",
    ),
    build=VaultProvider,
    credential_files=(".vault-token",),
)
