"""The Vault provider's calls to Vault, through hvac: logins, the mount lookup, the KV read.

Each call builds an ``hvac.Client`` (or ``seams.client_factory``) whose timeout is the time
left before the deadline, since hvac has no per-call timeout; every client shares one requests
session. Every client argument is passed explicitly, so hvac never falls back to ``VAULT_ADDR``,
``VAULT_TOKEN``, ``~/.vault-token`` or the CA and client-certificate variables of the process.
Every answer is read by the session's response hook, never past the size limit, and a 429 or
503 ``Retry-After`` sets the least pause before the next attempt.
Transient failures are retried by :func:`~mlflow_secrets_helper.providers.base.with_retries`;
hvac's typed exceptions become the helper's errors here, and only here.

It is past 400 lines because it holds every call the provider makes together with the meaning
of each answer; splitting it further would part a call from the errors it can end in.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    HelperError,
    NotFound,
)
from mlflow_secrets_helper.netrules import is_loopback_url
from mlflow_secrets_helper.providers.base import (
    Fetched,
    Seams,
    Throttled,
    bounded_requests_body,
    retry_after_seconds,
    with_retries,
)
from mlflow_secrets_helper.secret import Secret

if TYPE_CHECKING:
    from mlflow_secrets_helper.providers.vault import VaultSettings

#: a login token is replaced this long before Vault says it expires
LOGIN_RENEW_MARGIN_SEC = 5.0
_TIMEOUT_HINT = "the helper's timeout is --timeout / MLFLOW_SECRETS_TIMEOUT_SEC"


class Login(NamedTuple):
    token: Secret[str]
    #: monotonic time after which Vault no longer accepts the token (None: no expiry)
    renew_at: float | None
    #: True when the token came from an AppRole/Kubernetes login (so logging in again can help)
    from_login: bool
    source: str


class Location(NamedTuple):
    """Where the secret is: its KV mount, the engine version and the path inside the mount."""

    mount: str
    kv_version: int
    relative: str

    @classmethod
    def of(cls, secret_path: str, mount: str, kv_version: int) -> Location:
        relative = secret_path[len(mount) + 1 :]
        if kv_version == 2 and relative.startswith("data/"):
            relative = relative[len("data/") :]
        if not relative:
            raise ConfigError(
                f"MLFLOW_VAULT_SECRET_PATH {secret_path!r} names the mount, not a secret in it"
            )
        return cls(mount, kv_version, relative)

    def acl_path(self) -> str:
        if self.kv_version == 2:
            return f"{self.mount}/data/{self.relative}"
        return f"{self.mount}/{self.relative}"


class TokenRejected(Exception):
    """A 403 on a read or the mount lookup; the provider decides whether to log in again."""

    def __init__(self, errors: list[str], what: str) -> None:
        super().__init__(what)
        self.errors = errors
        self.what = what

    @property
    def bad_token(self) -> bool:
        """A missing, expired or revoked token (rather than an ACL denial)."""
        return self.errors == ["permission denied"]


class Absent(NotFound):
    """Nothing at the secret's path: no such secret, or a mount that is not where we think."""


class _Final(Exception):
    """Vault is unavailable and another attempt would not help; passes through ``with_retries``
    (which retries every BackendUnavailable) and becomes one outside it."""

    def __init__(self, message: str, *hints: str) -> None:
        super().__init__(message)
        self.message, self.hints = message, hints


def _retry(message: str) -> BackendUnavailable:
    return BackendUnavailable(message, hints=[_TIMEOUT_HINT])


class VaultCalls:
    """One provider's conversation with Vault."""

    def __init__(self, settings: VaultSettings, env: Mapping[str, str], seams: Seams) -> None:
        self.settings = settings
        self._env = env
        self._seams = seams
        self._session: Any = None
        self._factory: Callable[..., Any] | None = seams.client_factory
        self._verify: bool | str = True
        self._cert: tuple[str, str] | tuple[()] = ()
        #: the status of the last answer (hvac's UnexpectedError does not carry it)
        self._status = 0
        #: the Retry-After header of the last answer, if it had one
        self._retry_after: str | None = None

    # -- logins ---------------------------------------------------------------------------
    def static_token(self) -> Login:
        token = self._env.get("VAULT_TOKEN", "").strip()
        if token:
            _check_header_safe(token, "VAULT_TOKEN")
            return Login(Secret(token), None, False, "token from VAULT_TOKEN")
        home = self._env.get("HOME")
        if home:
            try:
                token = (Path(home) / ".vault-token").read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                token = ""
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"cannot read the Vault token file ~/.vault-token: {exc.__class__.__name__}"
                ) from None
            if token:
                _check_header_safe(token, "~/.vault-token")
                return Login(Secret(token), None, False, "token from ~/.vault-token")
        raise ConfigError(
            "no Vault token: VAULT_TOKEN is unset and ~/.vault-token is missing or empty",
            hints=[
                "run `vault login`, set VAULT_TOKEN, or set MLFLOW_VAULT_AUTH_METHOD to "
                "approle or kubernetes",
            ],
        )

    def approle_login(self, deadline: float) -> Login:
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
        source = f"AppRole login at auth/{s.approle_mount}"
        return self._login(
            s.approle_mount,
            lambda c: c.auth.approle.login(
                role_id, secret_id or None, use_token=False, mount_point=s.approle_mount
            ),
            source,
            deadline,
            role_id,
            secret_id,
        )

    def kubernetes_login(self, deadline: float) -> Login:
        s = self.settings
        assert s.k8s_role is not None
        role = s.k8s_role
        jwt = _read_file(s.k8s_token_path, "MLFLOW_VAULT_K8S_TOKEN_PATH")  # at every login
        source = f"Kubernetes login at auth/{s.k8s_mount} as role {role}"
        return self._login(
            s.k8s_mount,
            lambda c: c.auth.kubernetes.login(role, jwt, use_token=False, mount_point=s.k8s_mount),
            source,
            deadline,
            jwt,
        )

    def _login(
        self,
        mount: str,
        call: Callable[[Any], Any],
        source: str,
        deadline: float,
        *hide: str,
    ) -> Login:
        hv = self._hvac_errors()
        s = self.settings
        try:
            answer = self._call(f"auth/{mount}/login", deadline, None, call)
        except (hv.InvalidRequest, hv.Unauthorized, hv.Forbidden) as exc:
            raise BackendDenied(
                f"Vault at {s.address} refused the {source}: {self._says(exc, *hide)}",
                hints=login_hints(s),
            ) from None
        except hv.InvalidPath:
            raise ConfigError(
                f"Vault at {s.address} has no auth method mounted at auth/{mount}"
                + (f" in namespace {s.namespace}" if s.namespace else ""),
                hints=["check MLFLOW_VAULT_APPROLE_MOUNT / MLFLOW_VAULT_K8S_MOUNT"],
            ) from None
        except hv.VaultError as exc:
            raise self._unexpected(f"the {source}", self._says(exc, *hide)) from None
        auth = answer.get("auth") if answer is not None else None
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(auth, dict) or not isinstance(token, str) or not token:
            raise self._unexpected(f"the {source}", "")
        _check_header_safe(token, f"the token from the {source}")
        lease = auth.get("lease_duration")
        renew_at = None
        if isinstance(lease, (int, float)) and lease > 0:
            margin = max(float(lease) - LOGIN_RENEW_MARGIN_SEC, 0.0)
            renew_at = self._seams.monotonic() + margin
        return Login(Secret(token), renew_at, True, source)

    # -- where the secret is --------------------------------------------------------------
    def discover(self, login: Login, deadline: float) -> tuple[str, int]:
        """The mount and KV version of the secret path, asked of Vault like the Vault CLI does."""
        hv = self._hvac_errors()
        from hvac.utils import format_url

        s = self.settings
        what = f"looking up the KV mount of {s.secret_path}"
        url = format_url("/v1/sys/internal/ui/mounts/{path}", path=s.secret_path)
        try:
            # hvac has no method for the CLI's KV preflight: a plain GET through its adapter
            answer = self._call(
                f"finding the mount of {s.secret_path}",
                deadline,
                login.token,
                lambda c: c.adapter.get(url),
            )
        except hv.Forbidden as exc:
            rejected = TokenRejected(exc.errors or [], what)
            if rejected.bad_token:
                raise rejected from None
            raise BackendDenied(
                f"Vault at {s.address} found no KV mount for {s.secret_path} that the "
                f"{login.source} may read ({self._says(exc)})",
                hints=[
                    "check the mount name at the start of MLFLOW_VAULT_SECRET_PATH"
                    + (f" and VAULT_NAMESPACE ({s.namespace})" if s.namespace else ""),
                    "or set MLFLOW_VAULT_MOUNT and MLFLOW_VAULT_KV_VERSION to skip discovery",
                ],
            ) from None
        except hv.InvalidPath as exc:
            if "namespace" in self._says(exc):
                raise NotFound(
                    f"Vault namespace {s.namespace!r} does not exist at {s.address}",
                    hints=["check VAULT_NAMESPACE (e.g. admin/team, without a leading '/')"],
                ) from None
            raise ConfigError(
                f"Vault at {s.address} cannot tell the KV mount of {s.secret_path}",
                hints=["set MLFLOW_VAULT_MOUNT and MLFLOW_VAULT_KV_VERSION"],
            ) from None
        except hv.VaultError as exc:
            raise self._unexpected(what, self._says(exc)) from None
        if answer is None:
            raise self._unexpected(what, "")
        data = answer.get("data")
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

    # -- the read ---------------------------------------------------------------------------
    def read(self, location: Location, login: Login, deadline: float) -> Fetched:
        s = self.settings
        if location.kv_version == 1 and s.version is not None:
            raise ConfigError(
                f"{location.mount}/ is a KV v1 mount, so MLFLOW_VAULT_SECRET_VERSION cannot apply",
                hints=["unset MLFLOW_VAULT_SECRET_VERSION"],
            )
        hv = self._hvac_errors()
        what = f"reading {s.secret_path}"
        mount, path = location.mount, location.relative
        if location.kv_version == 2:

            def call(c: Any) -> Any:
                return c.secrets.kv.v2.read_secret_version(
                    path, s.version, mount_point=mount, raise_on_deleted_version=True
                )
        else:

            def call(c: Any) -> Any:
                return c.secrets.kv.v1.read_secret(path, mount_point=mount)

        try:
            answer = self._call(location.acl_path(), deadline, login.token, call)
        except hv.Forbidden as exc:
            raise TokenRejected(exc.errors or [], what) from None
        except hv.InvalidPath as exc:
            raise self._not_found(exc.json) from None
        except hv.VaultError as exc:
            raise self._unexpected(what, self._says(exc)) from None
        data = answer.get("data") if answer is not None else None
        if location.kv_version == 2 and isinstance(data, dict):
            data = data.get("data")
            if data is None:
                raise self._not_found(answer)
        if not isinstance(data, dict):
            raise self._unexpected(what, "")
        lease = answer.get("lease_duration") if answer is not None else None
        expires_at = (
            self._seams.clock() + float(lease)
            if isinstance(lease, (int, float)) and not isinstance(lease, bool) and lease > 0
            else None
        )
        return Fetched(value=Secret(_payload(data)), expires_at=expires_at)

    # -- one call, with retries ---------------------------------------------------------------
    def _call(
        self,
        path: str,
        deadline: float,
        token: Secret[str] | None,
        call: Callable[[Any], Any],
    ) -> dict[str, Any] | None:
        """``call(client)`` until it answers; its JSON document, or None when it has none.

        Vault's 4xx answers come out as hvac's exceptions for the caller to map; 5xx, 412, 429,
        timeouts and connection errors are retried; TLS errors, "sealed" and redirects are final.
        """
        hv = self._hvac_errors()
        import requests.exceptions as rq

        s = self.settings
        where = f"Vault at {s.address} ({path})"
        transient = (
            hv.InternalServerError,  # 500
            hv.VaultNotInitialized,  # 501
            hv.BadGateway,  # 502
            hv.VaultDown,  # 503
            hv.PreconditionFailed,  # 412
            hv.RateLimitExceeded,  # 429
        )

        def attempt(remaining: float) -> dict[str, Any] | None:
            assert self._factory is not None
            client = self._factory(
                url=s.address,
                token=token.expose() if token is not None else "",
                verify=self._verify,
                cert=self._cert,
                namespace=s.namespace or None,
                timeout=remaining,
                session=self._session,
                allow_redirects=False,
            )
            self._status, self._retry_after = 0, None
            try:
                with warnings.catch_warnings():
                    # VAULT_SKIP_VERIFY: our own one-line warning replaces urllib3's
                    warnings.filterwarnings("ignore", message="Unverified HTTPS request")
                    answer = call(client)
            except rq.SSLError as exc:
                if _plain_http_answer(exc):
                    raise _Final(
                        f"{where} answered in plain HTTP, not TLS",
                        "VAULT_ADDR says https:// but the server listens without TLS: "
                        "use http:// for a local dev server, or enable TLS on its listener",
                    ) from None
                hint = "trust the server's CA with VAULT_CACERT or VAULT_CAPATH"
                raise _Final(f"TLS with {where} failed: {_short(exc)}", hint) from None
            except rq.Timeout:
                raise _retry(f"{where} timed out before the deadline") from None
            except rq.ConnectionError as exc:
                if _refused(exc):
                    raise BackendUnavailable(
                        f"{where} refused the connection",
                        hints=[f"is Vault running at VAULT_ADDR ({s.address})?"],
                    ) from None
                raise _retry(f"{where} connection failed") from None
            except (rq.ChunkedEncodingError, rq.ContentDecodingError):
                raise _retry(f"{where} the answer was cut off") from None
            except rq.RequestException as exc:
                # the text of some of these (InvalidHeader) quotes header values: not shown
                raise _Final(f"request to {where} failed: {exc.__class__.__name__}") from None
            except hv.VaultError as exc:
                if isinstance(exc, hv.VaultDown) and "sealed" in self._says(exc).lower():
                    sealed = f"Vault at {s.address} is sealed"
                    raise _Final(sealed, "ask the Vault operators") from None
                status = self._status  # UnexpectedError: a code hvac has no class for (504...)
                unexpected = isinstance(exc, hv.UnexpectedError) and (
                    status >= 500 or status == 412
                )
                if isinstance(exc, transient) or unexpected:
                    message = f"{where} answered HTTP {status} ({self._says(exc)})"
                    wait = (
                        retry_after_seconds(self._retry_after, self._seams.clock())
                        if status in (429, 503)
                        else None
                    )
                    if wait is not None:
                        raise Throttled(message, retry_after=wait, hints=[_TIMEOUT_HINT]) from None
                    raise _retry(message) from None
                raise
            if isinstance(answer, dict):
                return answer
            if 300 <= self._status < 400:
                raise _Final(
                    f"{where} answered with a redirect (HTTP {self._status}); not followed",
                    "point VAULT_ADDR at the active node or its load balancer",
                )
            return None

        def timed_out(attempts: int, last: HelperError | None) -> HelperError:
            if last is not None:  # keep what the last attempt said, and its hints
                return BackendUnavailable(last.message, hints=last.hints)
            return _retry(f"{where} timed out before the deadline")

        try:
            return with_retries(attempt, deadline=deadline, seams=self._seams, timed_out=timed_out)
        except _Final as final:
            raise BackendUnavailable(final.message, hints=final.hints) from None

    def _hvac_errors(self) -> Any:
        """hvac's exceptions module, once hvac is known to be there (else a ConfigError)."""
        self._prepare()
        from hvac import exceptions

        return exceptions

    def _prepare(self) -> None:
        """The shared session and TLS settings, once; a bad CA or client cert is a ConfigError."""
        if self._session is not None:
            return
        import hvac  # present: VaultProvider.fetch checked with require_sdk
        import requests

        self._verify, self._cert = self._tls_verify(), self._client_cert()
        if self._factory is None:
            self._factory = hvac.Client
        session = requests.Session()
        # hvac lets a given session's verify and cert win over its arguments: set both
        session.verify, session.cert = self._verify, self._cert or None
        # every answer (logins included) is read by this hook, never more than the limit
        session.hooks["response"].extend(
            [self._saw, bounded_requests_body(f"Vault at {self.settings.address}")]
        )
        if is_loopback_url(self.settings.address):
            # a loopback Vault (a local agent) is reached directly: no proxy, no netrc
            session.trust_env = False
        self._session = session

    def _saw(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._status = int(response.status_code)
        self._retry_after = response.headers.get("Retry-After")

    def _tls_verify(self) -> bool | str:
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

    def _client_cert(self) -> tuple[str, str] | tuple[()]:
        """The client certificate, or ``()`` (not None: hvac would read VAULT_CLIENT_CERT)."""
        cert = self._env.get("VAULT_CLIENT_CERT", "").strip()
        key = self._env.get("VAULT_CLIENT_KEY", "").strip()
        if not cert and not key:
            return ()
        if not cert or not key:
            raise ConfigError("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY must be set together")
        return cert, key

    # -- errors ---------------------------------------------------------------------------
    def _says(self, exc: Any, *hide: str) -> str:
        """Vault's error text for a message, with any login material blanked out."""
        errors = exc.errors if isinstance(exc.errors, list) else []
        text = "; ".join(" ".join(str(e).split()) for e in errors)[:300]
        for secret in hide:
            if secret:
                text = text.replace(secret, "<redacted>")
        return text or f"HTTP {self._status}"

    def _not_found(self, body: Any) -> NotFound:
        s = self.settings
        where = f" in namespace {s.namespace}" if s.namespace else ""
        data = body.get("data") if isinstance(body, dict) else None
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
        return Absent(
            f"no secret at {version}{s.secret_path}{where} at {s.address}",
            hints=[
                "check MLFLOW_VAULT_SECRET_PATH (the full path, starting with the mount)"
                + (", MLFLOW_VAULT_SECRET_VERSION" if s.version is not None else "")
                + (" and VAULT_NAMESPACE" if s.namespace else "")
                + f"; `vault kv get {s.secret_path}` shows what is there"
            ],
        )

    def _unexpected(self, what: str, says: str) -> BackendDenied | BackendUnavailable:
        s, status = self.settings, self._status
        if 400 <= status < 500:
            return BackendDenied(
                f"Vault at {s.address} refused {what} (HTTP {status}: {says or f'HTTP {status}'})"
            )
        return BackendUnavailable(
            f"Vault at {s.address} gave an unexpected answer to {what} (HTTP {status})"
        )


def login_hints(s: VaultSettings) -> list[str]:
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


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (causes, contexts, urllib3's ``reason``), at most 10 deep."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 10:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend((item.__cause__, item.__context__, getattr(item, "reason", None), *item.args))
    return seen


def _refused(exc: BaseException) -> bool:
    """Nothing listens at the address: a refused TCP connection somewhere in the chain."""
    return any(
        isinstance(e, ConnectionRefusedError) or "connection refused" in str(e).lower()
        for e in _causes(exc)
    )


#: what OpenSSL says when the server answers a TLS hello in plain HTTP
_PLAIN_HTTP_SIGNS = (
    "wrong version number",
    "record layer failure",
    "http request",
    "packet length",
)


def _plain_http_answer(exc: BaseException) -> bool:
    text = " ".join(str(e) for e in _causes(exc)).lower()
    return any(sign in text for sign in _PLAIN_HTTP_SIGNS)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else exc.__class__.__name__
