"""The operator commands ``info`` (what is configured) and ``doctor`` (does it work).

Both return their whole report as text, with the exit status, and print nothing
themselves. Neither ever shows a secret value or a backend credential: secret
*references* (paths, names, ARNs, vault URLs) are shown, credentials in the
environment only as ``set``/``not set``, and a header only as its name and scheme
(``Authorization: Bearer <redacted>``). Every text that came from outside is
escaped to printable ASCII.

``info`` reads the configuration and the cache; it contacts no backend. A
configuration error does not stop it: the error is part of the report and the
exit status is 5.

``doctor`` runs checks in order and prints one line per check, starting with
``ok``, ``warn`` or ``FAIL``, with ``hint:`` lines under it. The exit status is
the documented code of the first failure (0 when nothing failed):

========================================  ====
configuration does not load               5
no provider configured / secret not found  1
SDK missing, bad route settings            5
backend login refused, permission denied  3
backend unreachable, timeout, 5xx         4
secret content cannot make a header       5
cache disabled or unusable                5
dry run: host refused by the policy       1
dry run: server answered 401 or 403       3
dry run: connection, TLS, timeout, 5xx    4
dry run: other answers, cross-origin      1
========================================  ====

``doctor --dry-run URL`` also resolves a header for the URL the way ``get``
does (policy, cache, provider) and sends one authenticated
``GET <URL>/api/2.0/mlflow/experiments/search?max_results=1``. The URL's path is
the tracking server's base path, as in an MLflow tracking URI. TLS is always
verified; the trusted CAs come from ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE`` (the first one
set), else the system store. Proxies come from the process environment, as for
MLflow. A redirect to the same origin keeps the header; a redirect to another
origin (scheme, host or port) is not followed, so the header never leaves the
origin that the policy allowed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException, HTTPMessage
from pathlib import Path
from typing import IO, Any, Literal

from mlflow_secrets_helper import __version__, providers
from mlflow_secrets_helper import config as config_module
from mlflow_secrets_helper.cache import Cache, CacheIdentity, CacheStatus, open_user_cache
from mlflow_secrets_helper.config import SECRET_VARIABLES, Config, Route
from mlflow_secrets_helper.errors import ConfigError, HelperError, InvalidInput, NotFound
from mlflow_secrets_helper.protocol import DEFAULT_PORTS, Target, parse_target
from mlflow_secrets_helper.resolve import Resolver
from mlflow_secrets_helper.secret import Credential, Secret, parse_secret
from mlflow_secrets_helper.text import escape, quote

PROG = "mlflow-secrets-helper"

#: the MLflow API call of ``doctor --dry-run``: cheap, read-only, and behind auth
DRY_RUN_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"

#: backend credentials: shown only as set / not set, never a character of the value
CREDENTIAL_VARIABLES: dict[str, tuple[str, ...]] = {
    "vault": ("VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "VAULT_SECRET_ID_FILE"),
    "aws-secrets-manager": (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    ),
    "azure-key-vault": (
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_USERNAME",
        "AZURE_PASSWORD",
        "AZURE_FEDERATED_TOKEN_FILE",
    ),
}

#: where backends and TLS are found: shown with their values (URLs without user info or query)
LOCATION_VARIABLES = (
    "VAULT_ADDR",
    "VAULT_NAMESPACE",
    "VAULT_CACERT",
    "VAULT_CAPATH",
    "VAULT_SKIP_VERIFY",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AZURE_AUTHORITY_HOST",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
)


_EXTRA = {"vault": "vault", "aws-secrets-manager": "aws", "azure-key-vault": "azure"}
_TRUE = ("1", "true", "yes", "on")
_CA_VARIABLES = (
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
)

#: the identity of doctor's cache probe; no real target can have it (``.invalid`` is reserved)
PROBE_IDENTITY = CacheIdentity(
    scheme="https",
    host="doctor-probe.invalid",
    port=443,
    provider="doctor",
    secret_ref="cache-probe",  # noqa: S106 - a reference, not a password
    version="",
    header_name="X-Doctor-Probe",
    auth_mode="bearer",
)

Status = Literal["ok", "warn", "FAIL"]


def run(
    action: str,
    *,
    rest: Sequence[str],
    as_json: bool,
    dry_run: str | None,
    timeout: float | None,
    env: Mapping[str, str],
) -> tuple[str, int]:
    """Run ``info`` or ``doctor``; return (stdout text, exit status).

    Usage errors raise :class:`InvalidInput`; everything else is in the report.
    """
    if rest:
        raise InvalidInput(f"unexpected argument {quote(rest[0])}", hints=["see --help"])
    if action == "info":
        if dry_run is not None:
            raise InvalidInput("--dry-run applies to doctor only", hints=["see --help"])
        return info(env, as_json=as_json, timeout=timeout)
    if action == "doctor":
        target = None
        if dry_run is not None:
            target = parse_target(dry_run)
            _base_path(dry_run)  # reject a malformed path before any check runs
        return doctor(env, as_json=as_json, timeout=timeout, dry_run=dry_run, target=target)
    raise InvalidInput(f"unknown action {quote(action)}", hints=["see --help"])


# -- info ---------------------------------------------------------------------------------------


def info(env: Mapping[str, str], *, as_json: bool, timeout: float | None = None) -> tuple[str, int]:
    """What is installed and configured, the cache, and security warnings."""
    report = _info_report(env, timeout)
    status = 5 if report["errors"] else 0
    if as_json:
        return json.dumps(report, sort_keys=False) + "\n", status
    return _info_text(report), status


def _info_report(env: Mapping[str, str], timeout: float | None) -> dict[str, Any]:
    errors: list[dict[str, Any]] = []
    warnings: list[str] = []

    def error(exc: HelperError) -> None:
        errors.append({"kind": exc.kind, "message": exc.message, "hints": list(exc.hints)})

    try:
        path: str | None = str(config_module.default_config_path(env))
    except Exception:  # noqa: BLE001 - no config dir on this platform: report, do not crash
        path = None
    config: Config | None = None
    try:
        config = config_module.load(env, timeout=timeout)
    except HelperError as exc:
        error(exc)
    try:
        enabled = set(config_module.enabled_providers(env))
    except HelperError:
        enabled = set()  # already reported by load

    configured = {route.provider for route in config.routes} if config else set()
    provider_rows = [
        {
            "name": name,
            "enabled": name in enabled or name in configured,
            "configured": name in configured,
            "sdk_module": providers.sdk_module(name),
            "sdk_installed": sdk_installed(name),
        }
        for name in providers.PROVIDER_NAMES
    ]
    for row in provider_rows:
        if row["configured"] and not row["sdk_installed"]:
            warnings.append(
                f"{row['name']} is configured but its SDK ({row['sdk_module']}) is not installed; "
                f"install mlflow-secrets-helper[{_EXTRA[str(row['name'])]}]"
            )

    settings: dict[str, Any] | None = None
    routes: list[dict[str, Any]] = []
    if config is not None:
        settings = {
            "allowed_hosts": (
                None
                if config.policy.development_mode
                else [pattern.text for pattern in config.policy.patterns]
            ),
            "development_mode": config.policy.development_mode,
            "header_name": config.header_name,
            "timeout_sec": config.timeout_sec,
            "stale_grace_sec": config.stale_grace_sec,
            "log_level": config.log_level,
        }
        for number, route in enumerate(config.routes, 1):
            reference: str | None = None
            try:
                provider = providers.create(route.provider, route.settings, env)
                reference = provider.reference()
                warnings.extend(_provider_warnings(provider))
            except HelperError as exc:
                error(_in_route(exc, number, route))
            routes.append(_route_row(route, reference))
        warnings.extend(_policy_warnings(config, env))
        for name in config.skipped:
            warnings.append(
                f"{name} is enabled but {SECRET_VARIABLES[name]} is not set; it is skipped"
            )
        if not config.routes:
            warnings.append("no provider is enabled or configured: get answers host-not-configured")
    skip_verify_named = any("VAULT_SKIP_VERIFY" in w for w in warnings)
    if _truthy(env.get("VAULT_SKIP_VERIFY")) and not skip_verify_named:
        warnings.append("VAULT_SKIP_VERIFY is set: TLS certificate verification for Vault is off")

    cache_row, cache_warnings = _cache_row(config, env)
    warnings.extend(cache_warnings)

    return {
        "v": 1,
        "version": __version__,
        "config_file": {"path": path, "loaded": bool(config and config.config_file)},
        "errors": errors,
        "providers": provider_rows,
        "configuration": settings,
        "routes": routes,
        "credentials": credential_presence(env),
        "locations": {name: _shown(env.get(name)) for name in LOCATION_VARIABLES},
        "cache": cache_row,
        "warnings": list(dict.fromkeys(warnings)),
    }


def _route_row(route: Route, reference: str | None) -> dict[str, Any]:
    return {
        "provider": route.provider,
        "source": route.source,
        "hosts": None if route.hosts is None else [pattern.text for pattern in route.hosts],
        "secret": reference,
        "auth_mode": route.auth_mode,
        "ttl_sec": route.ttl_sec,
        "header_name": route.header_name,
        "settings": {
            key: (value if key in providers.settings(route.provider) else "set")
            for key, value in sorted(route.settings.items())
        },
    }


def _cache_row(config: Config | None, env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    directory = config.cache_dir if config else _fallback_cache_dir(env)
    if directory is None:
        return {"directory": None, "enabled": False}, []
    seen: list[str] = []
    status = open_user_cache(directory, env, seen.append).status()
    total = status.hits + status.misses
    row = {
        "directory": str(status.directory),
        "enabled": status.enabled,
        "entries": status.entries,
        "hits": status.hits,
        "misses": status.misses,
        "hit_rate": round(status.hits / total, 4) if total else None,
        "key_location": status.key_location,
        "key_path": str(status.key_path) if status.key_path else None,
    }
    return row, [*seen, *status.warnings]


def _info_text(report: dict[str, Any]) -> str:
    lines = [f"{PROG} {report['version']}"]
    config_file = report["config_file"]
    if config_file["path"] is None:
        lines.append("config file: none (no user config directory)")
    else:
        if config_file["loaded"]:
            state = "loaded"
        else:
            state = "not loaded" if report["errors"] else "absent"
        lines.append(f"config file: {escape(config_file['path'])} ({state})")
    for problem in report["errors"]:
        lines.append(f"error: {problem['kind']}: {escape(problem['message'])}")
        lines.extend(f"  hint: {escape(hint)}" for hint in problem["hints"])

    lines.append("providers:")
    for row in report["providers"]:
        sdk = "installed" if row["sdk_installed"] else "not installed"
        lines.append(
            f"  {row['name']:<20} enabled: {_yes(row['enabled']):<4}"
            f"configured: {_yes(row['configured']):<4}SDK {row['sdk_module']}: {sdk}"
        )

    settings = report["configuration"]
    if settings is not None:
        lines.append("configuration:")
        hosts = settings["allowed_hosts"]
        lines.append(
            "  allowed hosts: "
            + ("not set (development mode)" if hosts is None else escape(", ".join(hosts)))
        )
        lines.append(f"  header name: {escape(settings['header_name'])}")
        lines.append(f"  timeout: {settings['timeout_sec']:g} s")
        lines.append(f"  stale grace: {settings['stale_grace_sec']:g} s")
        lines.append(f"  log level: {settings['log_level']}")
        lines.append("routes:" if report["routes"] else "routes: none")
        for number, route in enumerate(report["routes"], 1):
            hosts_text = (
                "every allowed host" if route["hosts"] is None else ", ".join(route["hosts"])
            )
            lines.append(f"  {number}. {route['provider']} ({escape(route['source'])})")
            lines.append(f"     hosts: {escape(hosts_text)}")
            lines.append(f"     secret: {escape(route['secret'] or 'unavailable (see error)')}")
            for key, value in route["settings"].items():
                lines.append(f"     {escape(key)}: {escape(value)}")
            lines.append(f"     auth mode: {route['auth_mode'] or 'from the secret'}")
            lines.append(f"     ttl: {route['ttl_sec']:g} s")
            lines.append(f"     header name: {escape(route['header_name'])}")

    lines.append("credentials (values are never shown):")
    lines.extend(f"  {name}: {state}" for name, state in report["credentials"].items())
    locations = {name: value for name, value in report["locations"].items() if value is not None}
    lines.append("backend locations:" if locations else "backend locations: none set")
    lines.extend(f"  {name}: {escape(value)}" for name, value in locations.items())

    cache = report["cache"]
    lines.append("cache:")
    if cache["directory"] is None:
        lines.append("  location: unknown (no user cache directory)")
    else:
        lines.append(f"  location: {escape(cache['directory'])}")
        lines.append(f"  enabled: {_yes(cache['enabled'])}")
        lines.append(f"  entries: {cache['entries']}")
        rate = cache["hit_rate"]
        shown = "n/a" if rate is None else f"{100 * rate:.1f}%"
        lines.append(f"  hits: {cache['hits']}, misses: {cache['misses']}, hit rate: {shown}")
        key = cache["key_location"]
        if cache["key_path"]:
            key += f" ({escape(cache['key_path'])})"
        lines.append(f"  key: {key}")

    lines.append("warnings:" if report["warnings"] else "warnings: none")
    lines.extend(f"  warning: {escape(warning)}" for warning in report["warnings"])
    return "\n".join(lines) + "\n"


# -- doctor -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One line of doctor's report."""

    status: Status
    message: str
    hints: tuple[str, ...] = ()
    exit_code: int = 0

    @classmethod
    def failed(cls, what: str, exc: HelperError, *, hints: Sequence[str] = ()) -> Check:
        return cls(
            "FAIL", f"{what}: {exc.kind}: {exc.message}", (*exc.hints, *hints), exc.exit_code
        )


@dataclass
class _Doctor:
    env: Mapping[str, str]
    checks: list[Check] = field(default_factory=list)

    def add(self, status: Status, message: str, *hints: str, exit_code: int = 0) -> None:
        if status == "FAIL" and not exit_code:
            exit_code = 1
        self.checks.append(Check(status, message, tuple(hints), exit_code))

    def extend(self, checks: Sequence[Check]) -> None:
        self.checks.extend(checks)

    @property
    def status(self) -> int:
        return next((check.exit_code for check in self.checks if check.status == "FAIL"), 0)


def doctor(
    env: Mapping[str, str],
    *,
    as_json: bool = False,
    timeout: float | None = None,
    dry_run: str | None = None,
    target: Target | None = None,
) -> tuple[str, int]:
    """Run every check; see the module docstring for the exit statuses."""
    report = _Doctor(env)
    config = _check_config(report, timeout)
    if config is not None:
        _check_policy(report, config)
        _check_routes(report, config)
        cache = _check_cache(report, config)
        if dry_run is not None and target is not None and cache is not None:
            _check_dry_run(report, config, cache, dry_run, target)
    if as_json:
        document = {
            "v": 1,
            "ok": report.status == 0,
            "exit": report.status,
            "checks": [
                {
                    "status": check.status,
                    "message": check.message,
                    "hints": list(check.hints),
                }
                for check in report.checks
            ],
        }
        return json.dumps(document) + "\n", report.status
    lines: list[str] = []
    for check in report.checks:
        lines.append(f"{check.status:<4} {escape(check.message)}")
        lines.extend(f"     hint: {escape(hint)}" for hint in check.hints)
    return "\n".join(lines) + "\n", report.status


def _check_config(report: _Doctor, timeout: float | None) -> Config | None:
    try:
        config = config_module.load(report.env, timeout=timeout)
    except HelperError as exc:
        report.extend([Check.failed("configuration", exc)])
        return None
    where = (
        f"config file {config.config_file}"
        if config.config_file
        else "environment (no config file loaded)"
    )
    count = len(config.routes)
    report.add("ok", f"configuration: loads from {where}; {count} route{'s' * (count != 1)}")
    for name in config.skipped:
        report.add(
            "warn",
            f"configuration: {name} is enabled but {SECRET_VARIABLES[name]} is not set; "
            "it is skipped",
            f"set {SECRET_VARIABLES[name]}, or stop enabling {name}",
        )
    if not config.routes:
        report.add(
            "FAIL",
            "configuration: no provider is enabled or configured, so no host gets a header",
            "set MLFLOW_SECRETS_AUTH_ENABLE and the provider's secret variables, "
            "or add [[routes]] to the config file",
            exit_code=1,
        )
    return config


def _check_policy(report: _Doctor, config: Config) -> None:
    policy = config.policy
    if policy.development_mode:
        report.add(
            "warn",
            f"host policy: {policy.source} is not set (development mode: "
            "every https host gets a header)",
            f"set {policy.source} to the MLflow servers you use, e.g. mlflow.company.com",
        )
    else:
        patterns = ", ".join(pattern.text for pattern in policy.patterns)
        report.add("ok", f"host policy: allowlist {patterns}")
    for warning in _policy_warnings(config, report.env):
        if not policy.development_mode:
            report.add("warn", f"host policy: {warning}")


def _check_routes(report: _Doctor, config: Config) -> None:
    for number, route in enumerate(config.routes, 1):
        later_same_hosts = any(other.hosts == route.hosts for other in config.routes[number:])
        report.extend(check_route(route, number, config, report.env, fallback=later_same_hosts))


def check_route(
    route: Route,
    number: int,
    config: Config,
    env: Mapping[str, str],
    *,
    fallback: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[Check]:
    """SDK, login and read, secret format and header for one route. Never shows the value.

    ``fallback``: a later route serves the same hosts, so "not found" here is a warning.
    """
    label = f"route {number} ({route.provider})"
    checks: list[Check] = []
    try:
        provider = providers.create(route.provider, route.settings, env)
    except HelperError as exc:
        return [Check.failed(f"{label}: settings", exc)]
    reference = provider.reference()
    module = providers.sdk_module(route.provider)
    if not sdk_installed(route.provider):
        extra = _EXTRA[route.provider]
        return [
            Check(
                "FAIL",
                f"{label}: SDK {module} is not installed",
                (f"pip install 'mlflow-secrets-helper[{extra}]'",),
                5,
            )
        ]
    checks.append(Check("ok", f"{label}: SDK {module} is installed"))
    checks.extend(Check("warn", f"{label}: {w}") for w in _provider_warnings(provider))

    started = monotonic()
    try:
        fetched = provider.fetch(started + config.timeout_sec)
    except NotFound as exc:
        if fallback:
            return [
                *checks,
                Check(
                    "warn",
                    f"{label}: {exc.kind}: {exc.message}; the next provider is tried",
                    exc.hints,
                ),
            ]
        return [*checks, Check.failed(f"{label}: read {reference}", exc)]
    except HelperError as exc:
        return [*checks, Check.failed(f"{label}: read {reference}", exc)]
    except Exception as exc:  # noqa: BLE001 - an SDK surprise: its type only, never its text
        return [*checks, _unexpected(f"{label}: read {reference}", exc)]
    elapsed = monotonic() - started
    checks.append(Check("ok", f"{label}: logged in and read {reference} in {elapsed:.2f} s"))

    try:
        credential = parse_secret(fetched.value, route.auth_mode)
    except HelperError as exc:
        return [*checks, Check.failed(f"{label}: secret format", exc)]
    kind = "bearer token" if credential.mode == "bearer" else "username and password (basic)"
    checks.append(Check("ok", f"{label}: secret format: {kind}"))
    try:
        shown = describe_header(route.header_name, credential)
    except HelperError as exc:
        return [*checks, Check.failed(f"{label}: header", exc)]
    checks.append(Check("ok", f"{label}: header {shown}"))
    return checks


def describe_header(name: str, credential: Credential) -> str:
    """``Name: Scheme <redacted>`` after building (and so validating) the real value."""
    credential.header_value()  # built only to validate it; the value is never shown
    scheme = "Bearer" if credential.mode == "bearer" else "Basic"
    return f"{name}: {scheme} <redacted>"


def _check_cache(report: _Doctor, config: Config) -> Cache | None:
    seen: list[str] = []
    cache = open_user_cache(config.cache_dir, report.env, seen.append)
    status = cache.status()
    if not status.enabled:
        reason = next(iter(seen or status.warnings), "the cache cannot be used")
        report.add(
            "FAIL",
            f"cache: {reason}",
            "fix the ownership or mode named above, or set MLFLOW_SECRETS_CACHE_DIR "
            "to a private directory",
            exit_code=5,
        )
        return cache
    report.add("ok", f"cache: {status.directory} is private to this user")
    report.extend(_key_checks(status))
    report.extend(probe_cache(cache, seen))
    return cache


def _key_checks(status: CacheStatus) -> list[Check]:
    if status.key_location == "runtime-dir":
        return [Check("ok", f"cache: key kept apart from the entries, in {status.key_path}")]
    notes = status.warnings or (f"the cache key is in {status.key_path}, beside the entries",)
    return [
        Check(
            "warn",
            f"cache: {note}",
            ("set XDG_RUNTIME_DIR to a private tmpfs directory (mode 0700) to keep it apart",),
        )
        for note in notes
    ]


def probe_cache(cache: Cache, seen: list[str]) -> list[Check]:
    """Write, read back and erase an entry under :data:`PROBE_IDENTITY`."""
    probe = Credential.bearer("doctor-probe-" + os.urandom(12).hex())
    before = len(seen)
    written = cache.put(PROBE_IDENTITY, probe, ttl=60.0, backend_expires_at=None)
    read = cache.get(PROBE_IDENTITY)
    erased = cache.erase(PROBE_IDENTITY)
    if read is None or read.credential_id != written.credential_id:
        problem = seen[before] if len(seen) > before else "the probe entry did not read back"
        return [
            Check(
                "FAIL",
                f"cache: cannot write and read an entry: {problem}",
                ("check free space and permissions of the cache directory",),
                5,
            )
        ]
    status = cache.status()
    total = status.hits + status.misses
    rate = f"{100 * status.hits / total:.1f}%" if total else "n/a"
    result = "wrote, read and erased" if erased else "wrote and read (erase failed)"
    return [
        Check(
            "ok" if erased else "warn",
            f"cache: {result} a probe entry; {_entries(status.entries)}, hit rate {rate}",
        )
    ]


def _check_dry_run(report: _Doctor, config: Config, cache: Cache, url: str, target: Target) -> None:
    what = f"dry run {target.origin()}"
    try:
        config.policy.check(target, report.env)
    except HelperError as exc:
        report.extend([Check.failed(f"{what}: host policy", exc)])
        return
    report.add("ok", f"{what}: the host policy allows it")
    notes: list[str] = []
    resolver = Resolver(config, cache, report.env, warn=notes.append)
    try:
        answer = resolver.get(target)
    except HelperError as exc:
        report.extend([Check.failed(f"{what}: resolve", exc)])
        return
    except Exception as exc:  # noqa: BLE001 - an SDK surprise: its type only, never its text
        report.extend([_unexpected(f"{what}: resolve", exc)])
        return
    for note in notes:
        report.add("warn", f"{what}: {note}")
    shown = describe_header(answer.header_name, answer.credential)
    report.add("ok", f"{what}: resolved {shown} from {answer.source}")
    if _truthy(report.env.get("MLFLOW_TRACKING_INSECURE_TLS")):
        report.add(
            "warn",
            f"{what}: MLFLOW_TRACKING_INSECURE_TLS is set; doctor verifies TLS regardless",
        )
    report.extend(
        [
            send_request(
                target,
                _base_path(url),
                answer.header_name,
                answer.header_value(),
                timeout=config.timeout_sec,
                env=report.env,
            )
        ]
    )


# -- the dry-run request ------------------------------------------------------------------------


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects within the origin (re-adding the header); refuses any other."""

    def __init__(self, origin: tuple[str, str, int], header: tuple[str, Secret[str]]) -> None:
        super().__init__()
        self._origin = origin
        self._header = header
        self.refused: str | None = None

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if origin_of(newurl) != self._origin:
            self.refused = _display_url(newurl)
            return None  # urllib then raises HTTPError for the 3xx; nothing is sent
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            name, value = self._header
            new.add_unredirected_header(name, value.expose())
        return new


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host or port is None:
        return None
    return scheme, host, port


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """A verifying context trusting the first CA bundle named in the environment."""
    for variable in _CA_VARIABLES:
        location = env.get(variable, "").strip()
        if not location:
            continue
        path = Path(location).expanduser()
        try:
            if path.is_dir():
                return ssl.create_default_context(capath=str(path))
            return ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{variable} does not name a readable CA bundle ({type(exc).__name__})",
                hints=[f"point {variable} at a PEM file of trusted CA certificates"],
            ) from None
    return ssl.create_default_context()


def send_request(
    target: Target,
    base_path: str,
    header_name: str,
    header_value: Secret[str],
    *,
    timeout: float,
    env: Mapping[str, str],
) -> Check:
    """Send one authenticated GET to the MLflow API; the answer as a check line."""
    url = target.origin() + base_path + DRY_RUN_PATH
    what = f"dry run GET {_display_url(url)}"
    try:
        context = tls_context(env)
    except HelperError as exc:
        return Check.failed(what, exc)
    redirects = _SameOriginRedirects(
        (target.scheme, target.host, target.port), (header_name, header_value)
    )
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), redirects)
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - http(s) only, checked
    request.add_unredirected_header(header_name, header_value.expose())
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", f"{PROG}/{__version__} doctor")
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except urllib.error.URLError as exc:
        return _connection_failure(what, exc.reason, timeout)
    except (OSError, HTTPException) as exc:
        return _connection_failure(what, exc, timeout)
    return _judge(what, status, redirects.refused, header_name)


def _judge(what: str, status: int, refused: str | None, header_name: str) -> Check:
    if 200 <= status < 300:
        return Check("ok", f"{what}: HTTP {status}, the server accepted the {header_name} header")
    if refused is not None:
        return Check(
            "FAIL",
            f"{what}: HTTP {status} redirects to another origin ({refused}); "
            "not followed, the header was not sent there",
            (
                "use the address the server redirects to as the tracking URI",
                "a redirect to a login page means the server wants another kind of login",
            ),
            1,
        )
    if status in (401, 403):
        return Check(
            "FAIL",
            f"{what}: HTTP {status}, the server rejected the credential",
            (
                "check that the secret holds a valid MLflow token or password for this server",
                f"after fixing the secret: {PROG} cache clear",
            ),
            3,
        )
    if status >= 500:
        return Check("FAIL", f"{what}: HTTP {status} from the server", (), 4)
    if 300 <= status < 400:
        return Check("FAIL", f"{what}: HTTP {status}: too many redirects", (), 1)
    return Check(
        "FAIL",
        f"{what}: HTTP {status}",
        ("is this an MLflow tracking server, and is the URL's path its base path?",),
        1,
    )


def _connection_failure(what: str, reason: object, timeout: float) -> Check:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return Check(
            "FAIL",
            f"{what}: TLS certificate verification failed ({reason.verify_message})",
            (
                "trust the server's CA with MLFLOW_TRACKING_SERVER_CERT_PATH, "
                "REQUESTS_CA_BUNDLE or SSL_CERT_FILE",
            ),
            4,
        )
    if isinstance(reason, TimeoutError):
        return Check(
            "FAIL",
            f"{what}: no answer within {timeout:g} s",
            ("raise --timeout or check the network path",),
            4,
        )
    detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else None
    return Check(
        "FAIL",
        f"{what}: cannot connect ({detail or type(reason).__name__})",
        ("check the URL, the network path and the proxy settings",),
        4,
    )


def _base_path(url: str) -> str:
    """The path of a tracking URI, without a trailing slash ('' for none)."""
    if "://" not in url:
        return ""
    try:
        return urllib.parse.urlsplit(url).path.rstrip("/")
    except ValueError:
        raise InvalidInput(f"invalid URL {quote(url)}") from None


# -- shared pieces ------------------------------------------------------------------------------


def sdk_installed(name: str) -> bool:
    """Whether the provider's SDK can be imported (found, not imported)."""
    try:
        return importlib.util.find_spec(providers.sdk_module(name)) is not None
    except (ImportError, ValueError):
        return False


def credential_presence(env: Mapping[str, str]) -> dict[str, str]:
    """Each credential variable as "set" or "not set"; the Vault token file as present/absent."""
    presence = {
        variable: "set" if env.get(variable) else "not set"
        for names in CREDENTIAL_VARIABLES.values()
        for variable in names
    }
    home = env.get("HOME")
    token_file = Path(home) / ".vault-token" if home else None
    presence["~/.vault-token"] = "present" if token_file and token_file.is_file() else "absent"
    return presence


def _fallback_cache_dir(env: Mapping[str, str]) -> Path:
    explicit = env.get("MLFLOW_SECRETS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return config_module.default_cache_dir(env)


def _policy_warnings(config: Config, env: Mapping[str, str]) -> list[str]:
    policy = config.policy
    if policy.development_mode:
        return [f"{policy.source} is not set: development mode, every https host gets a header"]
    found = []
    for pattern in policy.patterns:
        if not pattern.literal:
            continue
        probe = Target("http", pattern.suffix, pattern.port or 80)
        if probe.is_loopback() and policy.allows_plain_http(probe, env):
            found.append(
                f"plain http is allowed to {pattern.text} (loopback): the header is sent "
                "unencrypted to whatever listens on that port"
            )
    return found


def _provider_warnings(provider: object) -> list[str]:
    extra = getattr(provider, "warnings", None)
    return [str(w) for w in extra()] if callable(extra) else []


def _in_route(exc: HelperError, number: int, route: Route) -> HelperError:
    return type(exc)(f"route {number} ({route.provider}): {exc.message}", hints=exc.hints)


def _unexpected(what: str, exc: BaseException) -> Check:
    return Check(
        "FAIL",
        f"{what}: unexpected {type(exc).__name__}",
        ("run the same call with get and MLFLOW_SECRETS_LOG_LEVEL=debug for details",),
        5,
    )


def _display_url(url: str) -> str:
    """A URL without user info, query or fragment (they may carry secrets)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if not parts.scheme or not host:
        return url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _shown(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return _display_url(value) if "://" in value else value


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"
