"""HashiCorp Vault and OpenBao: a KV v1 or v2 secret read with a token, AppRole or Kubernetes login.

Where the secret lives
    ``secret_path`` is the full path including the mount, in either CLI form
    (``secret/mlflow/auth``) or API form (``secret/data/mlflow/auth``). The mount
    and the KV engine version come from ``mount``/``kv_version`` when both are set;
    otherwise they are asked of Vault (``sys/internal/ui/mounts/<path>``, the same
    preflight the Vault CLI does). On a KV v2 mount one leading ``data/`` after the
    mount is the API form and is dropped; nothing else about the path is rewritten.

What is returned
    A KV secret is a map. ``{"value": "<string>"}`` (exactly that one key) is the
    plain-string form and yields the string; any other map is passed on as JSON,
    so ``{"token": ...}`` and ``{"username": ..., "password": ...}`` work as the
    contract's JSON formats. ``expires_at`` is now + ``lease_duration`` when Vault
    reports one (KV v1 reports the secret's ``ttl``, 32 days by default; KV v2
    reports none).

Login
    ``token``: ``VAULT_TOKEN``, else ``$HOME/.vault-token`` (like the Vault CLI).
    ``approle``: ``VAULT_ROLE_ID`` and ``VAULT_SECRET_ID`` or ``VAULT_SECRET_ID_FILE``.
    ``kubernetes``: a role and the pod's service-account token file. A login token
    lives only in this process's memory; it is replaced before it expires, and a
    read refused with a token from an earlier login logs in once more and retries
    once (covers revocation).

Failures
    403 → :class:`BackendDenied` naming the path and the login; 404, a deleted or
    destroyed version → :class:`NotFound`; sealed, 5xx, 429, timeouts, connection
    and TLS errors → :class:`BackendUnavailable`. Only transient failures (5xx other
    than "sealed", 412, 429, timeouts, connection errors) are retried, at most
    three attempts with jittered backoff, and never past the caller's deadline.

hvac is imported inside :meth:`VaultProvider.fetch`; its ``Client`` is not used,
because it reads ``VAULT_ADDR``, ``VAULT_TOKEN``, ``~/.vault-token`` and the CA
variables from the process behind the caller's back. Only its request adapter is
used, with every setting passed explicitly.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    NotFound,
)
from mlflow_secrets_helper.providers.base import Fetched, Provider, ProviderSpec, Seams
from mlflow_secrets_helper.secret import Secret

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
MAX_ATTEMPTS = 3
#: a login token is replaced this long before Vault says it expires
LOGIN_RENEW_MARGIN_SEC = 5.0
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


def from_settings(settings: Mapping[str, str], env: Mapping[str, str]) -> VaultProvider:
    """Build the provider from a route's settings; reads no file and imports no SDK."""
    return VaultProvider(parse_settings(settings, env), env)


def parse_settings(settings: Mapping[str, str], env: Mapping[str, str]) -> VaultSettings:
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ConfigError(
            f"unknown Vault setting {unknown[0]!r}",
            hints=["Vault routes accept: " + ", ".join(sorted(SETTINGS))],
        )

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
    try:
        parts = urllib.parse.urlsplit(address)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"VAULT_ADDR {address[:200]!r} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"VAULT_ADDR {address[:200]!r} must be an https:// URL",
            hints=["e.g. https://vault.example.com:8200"],
        )
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError("VAULT_ADDR must not carry a user, query or fragment")
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in address):
        raise ConfigError("VAULT_ADDR contains whitespace, control or non-ASCII characters")
    address = address.rstrip("/")
    if parts.scheme == "http" and not _is_loopback(address):
        raise ConfigError(
            f"VAULT_ADDR {address} is plain http; only a loopback address may skip TLS",
            hints=["use https:// (a local Vault agent on 127.0.0.1 may use http://)"],
        )
    return address


def _is_loopback(address: str) -> bool:
    host = urllib.parse.urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    import ipaddress  # only plain-http addresses get here

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


class _Login(NamedTuple):
    token: Secret[str]
    #: monotonic time after which Vault no longer accepts the token (None: no expiry)
    renew_at: float | None
    #: True when the token came from an AppRole/Kubernetes login (so logging in again can help)
    from_login: bool
    source: str


class _Location(NamedTuple):
    mount: str
    kv_version: int
    relative: str

    def api_path(self, version: int | None) -> tuple[str, dict[str, str]]:
        quoted = urllib.parse.quote(self.relative, safe="/")
        if self.kv_version == 2:
            params = {"version": str(version)} if version is not None else {}
            return f"{self.mount}/data/{quoted}", params
        return f"{self.mount}/{quoted}", {}


class _Answer(NamedTuple):
    status: int
    body: dict[str, Any] | None

    @property
    def errors(self) -> list[str]:
        raw = (self.body or {}).get("errors")
        return [str(e) for e in raw] if isinstance(raw, list) else []

    def says(self, *hide: str) -> str:
        """Vault's error text for a message, with any login material blanked out."""
        text = "; ".join(" ".join(e.split()) for e in self.errors)[:300]
        for secret in hide:
            if secret:
                text = text.replace(secret, "<redacted>")
        return text or f"HTTP {self.status}"

    @property
    def bad_token(self) -> bool:
        """403 for a missing, expired or revoked token (not an ACL denial)."""
        return self.status == 403 and self.errors == ["permission denied"]


class _TokenRejected(Exception):
    """A 403 during a read; the caller decides whether logging in again may help."""

    def __init__(self, answer: _Answer, what: str) -> None:
        super().__init__(what)
        self.answer = answer
        self.what = what


class VaultProvider:
    """Reads one KV secret from Vault or OpenBao."""

    name = "vault"

    def __init__(
        self,
        settings: VaultSettings,
        env: Mapping[str, str],
        *,
        adapter_factory: Callable[..., Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._env = env
        self._adapter_factory = adapter_factory
        self._monotonic = monotonic
        self._clock = clock
        self._sleep = sleep
        self._adapter: Any = None
        self._login: _Login | None = None
        self._location: _Location | None = None

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
        login, fresh = self._current_login(deadline)
        try:
            return self._read(login, deadline)
        except _TokenRejected as rejected:
            if not login.from_login or fresh:
                raise self._denied(rejected, login) from None
        # the login token expired or was revoked since we got it: log in once more
        self._login = None
        login, _ = self._current_login(deadline)
        try:
            return self._read(login, deadline)
        except _TokenRejected as rejected:
            raise self._denied(rejected, login) from None

    # -- reading -----------------------------------------------------------------------
    def _read(self, login: _Login, deadline: float) -> Fetched:
        location = self._locate(login, deadline)
        s = self.settings
        if location.kv_version == 1 and s.version is not None:
            raise ConfigError(
                f"{location.mount}/ is a KV v1 mount, so MLFLOW_VAULT_SECRET_VERSION cannot apply",
                hints=["unset MLFLOW_VAULT_SECRET_VERSION"],
            )
        api_path, params = location.api_path(s.version)
        answer = self._call("GET", api_path, deadline, token=login.token, params=params)
        what = f"reading {s.secret_path}"
        if answer.status == 403:
            raise _TokenRejected(answer, what)
        if answer.status == 404:
            raise self._not_found(answer, location)
        if answer.status != 200 or answer.body is None:
            raise self._unexpected(answer, what)
        body = answer.body
        data = body.get("data")
        if location.kv_version == 2:
            data = data.get("data") if isinstance(data, dict) else None
            if data is None:
                raise self._not_found(answer, location)
        if not isinstance(data, dict):
            raise self._unexpected(answer, what)
        lease = body.get("lease_duration")
        expires_at = (
            self._clock() + float(lease)
            if isinstance(lease, (int, float)) and not isinstance(lease, bool) and lease > 0
            else None
        )
        return Fetched(value=Secret(_payload(data)), expires_at=expires_at)

    def _locate(self, login: _Login, deadline: float) -> _Location:
        if self._location is not None:
            return self._location
        s = self.settings
        if s.mount is not None and s.kv_version is not None:
            mount, kv_version = s.mount, s.kv_version
        else:
            quoted = urllib.parse.quote(s.secret_path, safe="/")
            answer = self._call(
                "GET", f"sys/internal/ui/mounts/{quoted}", deadline, token=login.token
            )
            what = f"looking up the KV mount of {s.secret_path}"
            if answer.status == 403:
                if answer.bad_token:
                    raise _TokenRejected(answer, what)
                raise BackendDenied(
                    f"Vault at {s.address} found no KV mount for {s.secret_path} that the "
                    f"{login.source} may read ({answer.says()})",
                    hints=[
                        "check the mount name at the start of MLFLOW_VAULT_SECRET_PATH"
                        + (f" and VAULT_NAMESPACE ({s.namespace})" if s.namespace else ""),
                        "or set MLFLOW_VAULT_MOUNT and MLFLOW_VAULT_KV_VERSION to skip discovery",
                    ],
                )
            if answer.status == 404:
                if "namespace" in answer.says():
                    raise NotFound(f"Vault namespace {s.namespace!r} does not exist at {s.address}")
                raise ConfigError(
                    f"Vault at {s.address} cannot tell the KV mount of {s.secret_path}",
                    hints=["set MLFLOW_VAULT_MOUNT and MLFLOW_VAULT_KV_VERSION"],
                )
            if answer.status != 200 or answer.body is None:
                raise self._unexpected(answer, what)
            mount, kv_version = self._discovered(answer.body, s)
        relative = s.secret_path[len(mount) + 1 :]
        if kv_version == 2 and relative.startswith("data/"):
            relative = relative[len("data/") :]
        if not relative:
            raise ConfigError(
                f"MLFLOW_VAULT_SECRET_PATH {s.secret_path!r} names the mount, not a secret in it"
            )
        self._location = _Location(mount, kv_version, relative)
        return self._location

    def _discovered(self, body: dict[str, Any], s: VaultSettings) -> tuple[str, int]:
        data = body.get("data")
        data = data if isinstance(data, dict) else {}
        mount = str(data.get("path") or "").strip("/")
        engine = str(data.get("type") or "")
        options = data.get("options")
        options = options if isinstance(options, dict) else {}
        if not mount or not s.secret_path.startswith(mount + "/"):
            raise ConfigError(f"Vault at {s.address} has no mount for {s.secret_path}")
        if engine not in ("kv", "generic"):
            raise ConfigError(
                f"{mount}/ at {s.address} is a {engine or 'non-KV'} engine, not KV",
                hints=["MLFLOW_VAULT_SECRET_PATH must name a KV v1 or v2 secret"],
            )
        found = 2 if str(options.get("version") or "1") == "2" else 1
        if s.mount is not None and s.mount != mount:
            raise ConfigError(
                f"MLFLOW_VAULT_MOUNT is {s.mount!r} but Vault says {s.secret_path} "
                f"is on mount {mount!r}"
            )
        if s.kv_version is not None and s.kv_version != found:
            raise ConfigError(
                f"MLFLOW_VAULT_KV_VERSION is {s.kv_version} but {mount}/ is a KV v{found} mount",
                hints=["unset MLFLOW_VAULT_KV_VERSION to use what Vault reports"],
            )
        return mount, found

    # -- login ----------------------------------------------------------------------------
    def _current_login(self, deadline: float) -> tuple[_Login, bool]:
        """The login to use and whether it was made just now."""
        login = self._login
        if login is not None and (login.renew_at is None or self._monotonic() < login.renew_at):
            return login, False
        method = self.settings.auth_method
        if method == "token":
            login = self._static_token()
        elif method == "approle":
            login = self._approle_login(deadline)
        else:
            login = self._kubernetes_login(deadline)
        self._login = login if login.from_login else None
        return login, True

    def _static_token(self) -> _Login:
        token = self._env.get("VAULT_TOKEN", "").strip()
        if token:
            _check_header_safe(token, "VAULT_TOKEN")
            return _Login(Secret(token), None, False, "token from VAULT_TOKEN")
        home = self._env.get("HOME")
        if home:
            path = Path(home) / ".vault-token"
            try:
                token = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                token = ""
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"cannot read the Vault token file ~/.vault-token: {exc.__class__.__name__}"
                ) from None
            if token:
                _check_header_safe(token, "~/.vault-token")
                return _Login(Secret(token), None, False, "token from ~/.vault-token")
        raise ConfigError(
            "no Vault token: VAULT_TOKEN is unset and ~/.vault-token is missing or empty",
            hints=[
                "run `vault login`, set VAULT_TOKEN, or set MLFLOW_VAULT_AUTH_METHOD to "
                "approle or kubernetes",
            ],
        )

    def _approle_login(self, deadline: float) -> _Login:
        s = self.settings
        role_id = self._env.get("VAULT_ROLE_ID", "").strip()
        if not role_id:
            raise ConfigError(
                "Vault AppRole login needs VAULT_ROLE_ID", hints=["set VAULT_ROLE_ID"]
            )
        secret_id = self._env.get("VAULT_SECRET_ID", "").strip()
        secret_file = self._env.get("VAULT_SECRET_ID_FILE", "").strip()
        if not secret_id and secret_file:
            secret_id = _read_file(secret_file, "VAULT_SECRET_ID_FILE")
        body: dict[str, str] = {"role_id": role_id}
        if secret_id:
            body["secret_id"] = secret_id
        source = f"AppRole login at auth/{s.approle_mount}"
        return self._login_call(s.approle_mount, body, source, deadline, role_id, secret_id)

    def _kubernetes_login(self, deadline: float) -> _Login:
        s = self.settings
        assert s.k8s_role is not None
        jwt = _read_file(s.k8s_token_path, "MLFLOW_VAULT_K8S_TOKEN_PATH")
        source = f"Kubernetes login at auth/{s.k8s_mount} as role {s.k8s_role}"
        body = {"role": s.k8s_role, "jwt": jwt}
        return self._login_call(s.k8s_mount, body, source, deadline, jwt)

    def _login_call(
        self, mount: str, body: dict[str, str], source: str, deadline: float, *hide: str
    ) -> _Login:
        s = self.settings
        answer = self._call("POST", f"auth/{mount}/login", deadline, json_body=body)
        if answer.status in (400, 401, 403):
            raise BackendDenied(
                f"Vault at {s.address} refused the {source}: {answer.says(*hide)}",
                hints=_login_hints(s),
            )
        if answer.status == 404:
            raise ConfigError(
                f"Vault at {s.address} has no auth method mounted at auth/{mount}"
                + (f" in namespace {s.namespace}" if s.namespace else ""),
                hints=["check MLFLOW_VAULT_APPROLE_MOUNT / MLFLOW_VAULT_K8S_MOUNT"],
            )
        auth = (answer.body or {}).get("auth") if answer.status == 200 else None
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise self._unexpected(answer, f"the {source}")
        _check_header_safe(token, f"the token from the {source}")
        lease = auth.get("lease_duration") if isinstance(auth, dict) else None
        renew_at = None
        if isinstance(lease, (int, float)) and lease > 0:
            renew_at = self._monotonic() + max(float(lease) - LOGIN_RENEW_MARGIN_SEC, 0.0)
        return _Login(Secret(token), renew_at, True, source)

    # -- HTTP ---------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._adapter is None:
            verify, cert = self._verify(), self._client_cert()
            factory = self._adapter_factory
            session = None
            if factory is None:
                try:
                    import requests
                    from hvac.adapters import RawAdapter
                except ImportError:
                    raise ConfigError(
                        "the Vault provider needs hvac",
                        hints=["pip install 'mlflow-secrets-helper[vault]'"],
                    ) from None
                factory = RawAdapter
                # hvac lets a given session's settings win over its arguments: set both
                session = requests.Session()
                session.verify, session.cert = verify, cert
            self._adapter = factory(
                base_uri=self.settings.address,
                token=None,
                cert=cert,
                verify=verify,
                timeout=30,
                proxies=None,
                allow_redirects=False,
                session=session,
                namespace=self.settings.namespace or None,
            )
        return self._adapter

    def _verify(self) -> bool | str:
        s = self.settings
        if s.skip_verify:
            return False
        for value, name, want_dir in (
            (s.cacert, "VAULT_CACERT", False),
            (s.capath, "VAULT_CAPATH", True),
        ):
            if value:
                path = Path(value).expanduser()
                if not (path.is_dir() if want_dir else path.is_file()):
                    kind = "directory" if want_dir else "file"
                    raise ConfigError(f"{name} {value!r} is not a readable {kind}")
                return str(path)
        return True

    def _client_cert(self) -> tuple[str, str] | None:
        cert = self._env.get("VAULT_CLIENT_CERT", "").strip()
        key = self._env.get("VAULT_CLIENT_KEY", "").strip()
        if not cert and not key:
            return None
        if not cert or not key:
            raise ConfigError("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY must be set together")
        return cert, key

    def _call(
        self,
        method: str,
        path: str,
        deadline: float,
        *,
        token: Secret[str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, str] | None = None,
    ) -> _Answer:
        import requests

        adapter = self._client()
        s = self.settings
        where = f"Vault at {s.address} ({path.split('?')[0]})"
        headers = {"X-Vault-Token": token.expose()} if token is not None else {}
        problem = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                break
            try:
                with warnings.catch_warnings():
                    # VAULT_SKIP_VERIFY: our own one-line warning replaces urllib3's
                    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
                    response = adapter.request(
                        method,
                        f"v1/{path}",
                        headers=dict(headers),
                        raise_exception=False,
                        timeout=remaining,
                        params=dict(params or {}),
                        json=dict(json_body) if json_body is not None else None,
                    )
            except requests.exceptions.SSLError as exc:
                raise BackendUnavailable(
                    f"TLS with {where} failed: {_short(exc)}",
                    hints=["trust the server's CA with VAULT_CACERT or VAULT_CAPATH"],
                ) from None
            except requests.exceptions.Timeout:
                problem = "timed out"
            except requests.exceptions.ConnectionError:
                problem = "connection failed"
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ):
                problem = "the answer was cut off"
            except requests.exceptions.RequestException as exc:
                # the text of some of these (InvalidHeader) quotes header values: not shown
                raise BackendUnavailable(
                    f"request to {where} failed: {exc.__class__.__name__}"
                ) from None
            else:
                answer = _Answer(response.status_code, _json(response))
                response.close()
                status = answer.status
                if status == 503 and "sealed" in answer.says().lower():
                    raise BackendUnavailable(
                        f"Vault at {s.address} is sealed", hints=["ask the Vault operators"]
                    )
                if not (status >= 500 or status in (412, 429)):
                    if 300 <= status < 400:
                        raise BackendUnavailable(
                            f"{where} answered with a redirect (HTTP {status}); not followed",
                            hints=["point VAULT_ADDR at the active node or its load balancer"],
                        )
                    return answer
                problem = f"answered HTTP {status} ({answer.says()})"
            if attempt == MAX_ATTEMPTS:
                break
            import random  # only a retry needs it: keep it off the cache-hit path

            delay = min(0.1 * 2 ** (attempt - 1), 1.0) * random.uniform(0.5, 1.0)  # noqa: S311
            if self._monotonic() + delay >= deadline:
                break
            self._sleep(delay)
        raise BackendUnavailable(
            f"{where} {problem or 'timed out'}"
            + (" before the deadline" if problem in ("", "timed out") else ""),
            hints=["the helper's timeout is --timeout / MLFLOW_SECRETS_TIMEOUT_SEC"],
        )

    # -- errors ---------------------------------------------------------------------------
    def _denied(self, rejected: _TokenRejected, login: _Login) -> BackendDenied:
        s = self.settings
        where = f" in namespace {s.namespace}" if s.namespace else ""
        if rejected.answer.bad_token:
            reason = "the token is invalid, expired or revoked"
        else:
            reason = "the token's policies do not allow it"
        return BackendDenied(
            f"Vault at {s.address} denied {rejected.what}{where} with the "
            f"{login.source} (auth method {s.auth_method}): {reason}",
            hints=[*_login_hints(s), "the policy needs read on " + self._acl_path()],
        )

    def _acl_path(self) -> str:
        location = self._location
        if location is None:
            return self.settings.secret_path
        if location.kv_version == 2:
            return f"{location.mount}/data/{location.relative}"
        return f"{location.mount}/{location.relative}"

    def _not_found(self, answer: _Answer, location: _Location) -> NotFound:
        s = self.settings
        where = f" in namespace {s.namespace}" if s.namespace else ""
        data = (answer.body or {}).get("data")
        metadata = data.get("metadata") if isinstance(data, dict) else None
        if isinstance(metadata, dict) and metadata.get("version") is not None:
            label = f"version {metadata['version']} of {s.secret_path}"
            if metadata.get("destroyed"):
                return NotFound(f"{label}{where} at {s.address} was destroyed")
            if metadata.get("deletion_time"):
                return NotFound(
                    f"{label}{where} at {s.address} was deleted",
                    hints=["undelete it, write a new version, or set MLFLOW_VAULT_SECRET_VERSION"],
                )
        version = f"version {s.version} of " if s.version is not None else ""
        return NotFound(f"no secret at {version}{s.secret_path}{where} at {s.address}")

    def _unexpected(self, answer: _Answer, what: str) -> BackendDenied | BackendUnavailable:
        s = self.settings
        if 400 <= answer.status < 500:
            return BackendDenied(
                f"Vault at {s.address} refused {what} (HTTP {answer.status}: {answer.says()})"
            )
        return BackendUnavailable(
            f"Vault at {s.address} gave an unexpected answer to {what} (HTTP {answer.status})"
        )


def _login_hints(s: VaultSettings) -> list[str]:
    if s.auth_method == "token":
        return ["run `vault login` or set a valid VAULT_TOKEN"]
    if s.auth_method == "approle":
        return ["check VAULT_ROLE_ID and VAULT_SECRET_ID / VAULT_SECRET_ID_FILE"]
    return ["check MLFLOW_VAULT_K8S_ROLE and the service-account token file"]


def _payload(data: dict[str, Any]) -> str:
    if list(data) == ["value"] and isinstance(data["value"], str):
        return data["value"]
    return json.dumps(data, separators=(",", ":"))


def _read_file(path: str, name: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"{name} {path!r} does not exist",
            hints=["outside a Kubernetes pod, set MLFLOW_VAULT_K8S_TOKEN_PATH"]
            if name.startswith("MLFLOW_VAULT_K8S")
            else [],
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {name} {path!r}: {exc.__class__.__name__}") from None
    if not text:
        raise ConfigError(f"{name} {path!r} is empty")
    return text


def _check_header_safe(value: str, name: str) -> None:
    """A token goes into a header: visible ASCII only (never echo it back)."""
    if len(value) > 8192 or not all("\x21" <= ch <= "\x7e" for ch in value):
        raise ConfigError(
            f"{name} is not a valid Vault token (too long, or not visible ASCII characters)"
        )


def _json(response: Any) -> dict[str, Any] | None:
    content_type = str(response.headers.get("Content-Type", ""))
    if "json" not in content_type:
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else exc.__class__.__name__


def _build(settings: Mapping[str, str], env: Mapping[str, str], seams: Seams) -> Provider:
    return from_settings(settings, env)


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
    build=_build,
)
