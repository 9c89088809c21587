"""``info``: what is installed and configured, the cache, and security warnings.

It reads the configuration and the cache and contacts no backend. A configuration
error does not stop it: the error is part of the report and the exit status is 5.
The report is returned as text or as one JSON document, never printed here.

What it says about a provider comes from the provider's spec: its SDK and extra, which
of its settings are shown, its credential variables (only ``set``/``not set``, never a
character of the value) and its location variables (with their values, URLs without
user info or query), then the dry-run probe's CA variables. Every text that came from
outside is escaped to printable ASCII.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from typing import Any

from mlflow_secrets_helper import __version__, providers, typos, userfiles
from mlflow_secrets_helper import config as config_module
from mlflow_secrets_helper.cache import open_user_cache
from mlflow_secrets_helper.config import Config, Route
from mlflow_secrets_helper.diagnostics.probe import CA_VARIABLES, truthy
from mlflow_secrets_helper.errors import HelperError
from mlflow_secrets_helper.protocol import Target
from mlflow_secrets_helper.providers import ProviderSpec
from mlflow_secrets_helper.text import display_url, escape
from mlflow_secrets_helper.userfiles import APP_NAME

#: a location variable named so turns a backend's TLS verification off when true
_SKIP_VERIFY_SUFFIX = "_SKIP_VERIFY"


def info(env: Mapping[str, str], *, as_json: bool, timeout: float | None = None) -> tuple[str, int]:
    """What is installed and configured, the cache, and security warnings."""
    report = _report(env, timeout)
    status = 5 if report["errors"] else 0
    if as_json:
        return json.dumps(report, sort_keys=False) + "\n", status
    return _text(report), status


def sdk_installed(spec: ProviderSpec) -> bool:
    """Whether the provider's SDK can be imported (found, not imported); True for a
    provider that needs none."""
    if not spec.sdk:
        return True
    try:
        return importlib.util.find_spec(spec.sdk) is not None
    except (ImportError, ValueError):
        return False


def credential_presence(env: Mapping[str, str]) -> dict[str, str]:
    """Each credential variable as "set" or "not set"; each credential file a provider reads
    by itself (the Vault token file) as "present" or "absent"."""
    presence = {
        variable: "set" if env.get(variable) else "not set"
        for spec in providers.specs()
        for variable in spec.credential_variables
    }
    home = env.get("HOME") or ""
    for spec in providers.specs():
        for name in spec.credential_files:
            there = bool(home) and os.path.isfile(os.path.join(home, name))  # noqa: PTH113,PTH118
            presence[f"~/{name}"] = "present" if there else "absent"
    return presence


def policy_warnings(config: Config, env: Mapping[str, str]) -> list[str]:
    """Development mode, or plain http allowed to a loopback allowlist entry."""
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


def _report(env: Mapping[str, str], timeout: float | None) -> dict[str, Any]:
    errors: list[dict[str, Any]] = []
    warnings: list[str] = []

    def error(exc: HelperError) -> None:
        errors.append({"kind": exc.kind, "message": exc.message, "hints": list(exc.hints)})

    try:
        path: str | None = str(userfiles.config_path(env))
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
    provider_rows = []
    for spec in providers.specs():
        row = {
            "name": spec.name,
            "enabled": spec.name in enabled or spec.name in configured,
            "configured": spec.name in configured,
            "sdk_module": spec.sdk or None,
            "sdk_installed": sdk_installed(spec),
        }
        provider_rows.append(row)
        if row["configured"] and not row["sdk_installed"]:
            warnings.append(
                f"{spec.name} is configured but its SDK ({spec.sdk}) is not installed; "
                + spec.install_hint()
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
            state: str | None = None
            try:
                provider = providers.create(route.provider, route.settings, env)
                reference = provider.reference()
                warnings.extend(provider.warnings())
                state = _local_state(provider)
            except HelperError as exc:
                error(_in_route(exc, number, route))
            routes.append({**_route_row(route, reference), "state": state})
        warnings.extend(policy_warnings(config, env))
        for name in config.skipped:
            variable = providers.spec(name).secret_variable()
            warnings.append(f"{name} is enabled but {variable} is not set; it is skipped")
        if not config.routes:
            warnings.append("no provider is enabled or configured: get answers host-not-configured")
    warnings.extend(_tls_off_warnings(env, warnings))
    warnings.extend(typos.warnings(env, config_module.known_variables()))

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
        "locations": {name: _shown(env.get(name)) for name in _location_variables()},
        "cache": cache_row,
        "unknown_variables": typos.unknown_variables(env, config_module.known_variables()),
        "warnings": list(dict.fromkeys(warnings)),
    }


def _location_variables() -> tuple[str, ...]:
    """Where backends and trusted CAs are found: each provider's, then the probe's."""
    own = (variable for spec in providers.specs() for variable in spec.location_variables)
    return (*own, *CA_VARIABLES)


def _local_state(provider: providers.Provider) -> str | None:
    """What a provider that reads a local file (the file source) says about it: there,
    missing or refused, from its metadata only. None for the others."""
    look = getattr(provider, "state", None)
    return str(look()) if callable(look) else None


def _tls_off_warnings(env: Mapping[str, str], already: list[str]) -> list[str]:
    """A provider's ``*_SKIP_VERIFY`` set true, unless a warning already names it."""
    found = []
    for spec in providers.specs():
        for variable in spec.location_variables:
            if not variable.endswith(_SKIP_VERIFY_SUFFIX) or not truthy(env.get(variable)):
                continue
            if not any(variable in warning for warning in already):
                found.append(
                    f"{variable} is set: TLS certificate verification for "
                    f"{spec.name.capitalize()} is off"
                )
    return found


def _route_row(route: Route, reference: str | None) -> dict[str, Any]:
    shown = providers.spec(route.provider).settings
    return {
        "provider": route.provider,
        "source": route.source,
        "hosts": None if route.hosts is None else [pattern.text for pattern in route.hosts],
        "secret": reference,
        "auth_mode": route.auth_mode,
        "ttl_sec": route.ttl_sec,
        "header_name": route.header_name,
        "settings": {
            key: (value if key in shown else "set") for key, value in sorted(route.settings.items())
        },
        # where an OAuth client in the secret gets its token (none of these is secret)
        "oauth": dict(route.oauth),
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


def _fallback_cache_dir(env: Mapping[str, str]) -> str:
    explicit = env.get("MLFLOW_SECRETS_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)  # noqa: PTH111 - a string, like config.cache_dir
    return userfiles.cache_dir(env)


def _text(report: dict[str, Any]) -> str:
    lines = [f"{APP_NAME} {report['version']}"]
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
        if row["sdk_module"] is None:
            sdk = "SDK: none needed"
        else:
            sdk = f"SDK {row['sdk_module']}: " + (
                "installed" if row["sdk_installed"] else "not installed"
            )
        lines.append(
            f"  {row['name']:<20} enabled: {_yes(row['enabled']):<4}"
            f"configured: {_yes(row['configured']):<4}{sdk}"
        )

    settings = report["configuration"]
    if settings is not None:
        lines.extend(_configuration_text(settings, report["routes"]))

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


def _configuration_text(settings: dict[str, Any], routes: list[dict[str, Any]]) -> list[str]:
    hosts = settings["allowed_hosts"]
    lines = [
        "configuration:",
        "  allowed hosts: "
        + ("not set (development mode)" if hosts is None else escape(", ".join(hosts))),
        f"  header name: {escape(settings['header_name'])}",
        f"  timeout: {settings['timeout_sec']:g} s",
        f"  stale grace: {settings['stale_grace_sec']:g} s",
        f"  log level: {settings['log_level']}",
        "routes:" if routes else "routes: none",
    ]
    for number, route in enumerate(routes, 1):
        hosts_text = "every allowed host" if route["hosts"] is None else ", ".join(route["hosts"])
        lines.append(f"  {number}. {route['provider']} ({escape(route['source'])})")
        lines.append(f"     hosts: {escape(hosts_text)}")
        lines.append(f"     secret: {escape(route['secret'] or 'unavailable (see error)')}")
        if route["state"] is not None:
            lines.append(f"     state: {escape(route['state'])}")
        for key, value in route["settings"].items():
            lines.append(f"     {escape(key)}: {escape(value)}")
        for key, value in route["oauth"].items():
            lines.append(f"     {escape(key)}: {escape(value)} (if the secret is an OAuth client)")
        lines.append(f"     auth mode: {route['auth_mode'] or 'from the secret'}")
        lines.append(f"     ttl: {route['ttl_sec']:g} s")
        lines.append(f"     header name: {escape(route['header_name'])}")
    return lines


def _in_route(exc: HelperError, number: int, route: Route) -> HelperError:
    return type(exc)(f"route {number} ({route.provider}): {exc.message}", hints=exc.hints)


def _shown(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return display_url(value) if "://" in value else value


def _yes(flag: object) -> str:
    return "yes" if flag else "no"
