"""Configuration: environment variables over an optional TOML file over defaults.

Owns the common variables and the configuration file; everything about a provider (its
name, toggle, variables and settings) comes from its spec in the registry, so no provider
is named here. The rules — precedence, routes, the file's keys and permissions — are the
ENVIRONMENT and CONFIGURATION FILE sections of the man page.

It is a little over 400 lines because the environment and the file build the same routes
by the same rules (auth modes, TTLs, header names, the ``oidc_*`` settings), which are read
side by side; the file's reading and permissions are already :mod:`.userfiles`.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

from mlflow_secrets_helper import providers, userfiles
from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.policy import HostPattern, HostPolicy, parse_patterns
from mlflow_secrets_helper.protocol import Target
from mlflow_secrets_helper.providers import ProviderSpec
from mlflow_secrets_helper.secret import AUTH_MODES, AuthMode, check_header_name

DEFAULT_TIMEOUT_SEC = 10.0
DEFAULT_TTL_SEC = 300.0
DEFAULT_STALE_GRACE_SEC = 300.0
MAX_TIMEOUT_SEC = 600.0
MAX_TTL_SEC = 86400.0
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: the variables this module reads itself (each provider's come from its spec)
CORE_VARIABLES = frozenset(
    {
        "MLFLOW_SECRETS_CONFIG",
        "MLFLOW_SECRETS_CACHE_DIR",
        "MLFLOW_SECRETS_TIMEOUT_SEC",
        "MLFLOW_SECRETS_STALE_GRACE_SEC",
        "MLFLOW_SECRETS_LOG_LEVEL",
        "MLFLOW_SECRETS_ALLOWED_HOSTS",
        "MLFLOW_SECRETS_AUTH_ENABLE",
        "MLFLOW_AUTH_HEADER_NAME",
    }
)
#: OAuth client credentials (:mod:`mlflow_secrets_helper.oauth`): environment variable →
#: route key. They apply to every route, and only when its secret holds an OAuth client;
#: a variable overrides the same key in a route of the file.
OIDC_PREFIX = "MLFLOW_OIDC_"
OIDC_SETTINGS = (
    ("MLFLOW_OIDC_ISSUER", "oidc_issuer"),
    ("MLFLOW_OIDC_TOKEN_URL", "oidc_token_url"),
    ("MLFLOW_OIDC_SCOPE", "oidc_scope"),
    ("MLFLOW_OIDC_AUDIENCE", "oidc_audience"),
    ("MLFLOW_OIDC_CA_BUNDLE", "oidc_ca_bundle"),
    ("MLFLOW_OIDC_AUTH_METHOD", "oidc_auth_method"),
)
_OIDC_KEYS = frozenset(key for _, key in OIDC_SETTINGS)
#: set in the same environment but read by the MLflow plugin, not by the helper
_PLUGIN_VARIABLES = frozenset({"MLFLOW_SECRETS_HELPER_COMMAND"})

#: route keys the configuration module itself owns (everything else goes to the provider)
_ROUTE_KEYS = frozenset({"hosts", "provider", "auth_mode", "ttl_sec", "header_name"})
_TOP_KEYS = frozenset(
    {
        "allowed_hosts",
        "header_name",
        "timeout_sec",
        "stale_grace_sec",
        "cache_dir",
        "log_level",
        "ttl_sec",
        "routes",
    }
)


class Route(NamedTuple):
    """One way to get a credential: a provider, its settings, and the hosts it serves."""

    provider: str
    settings: Mapping[str, str]
    hosts: tuple[HostPattern, ...] | None  # None: every host the policy allows
    auth_mode: AuthMode | None
    ttl_sec: float
    header_name: str
    source: str
    #: the ``oidc_*`` settings (sorted key, value pairs) for a secret that holds an OAuth client
    oauth: tuple[tuple[str, str], ...] = ()

    def serves(self, target: Target) -> bool:
        return self.hosts is None or any(p.matches(target) for p in self.hosts)


class Config(NamedTuple):
    policy: HostPolicy
    routes: tuple[Route, ...]
    header_name: str
    timeout_sec: float
    stale_grace_sec: float
    cache_dir: str
    log_level: str
    config_file: str | None
    #: providers the environment enabled but could not use (no secret reference)
    skipped: tuple[str, ...] = ()

    def routes_for(self, target: Target) -> tuple[Route, ...]:
        return tuple(route for route in self.routes if route.serves(target))


def load(env: Mapping[str, str], *, timeout: float | None = None) -> Config:
    """Build the effective configuration. Raises :class:`ConfigError` on anything malformed."""
    path = userfiles.config_path(env)
    document = userfiles.read_config_file(path, required=bool(env.get("MLFLOW_SECRETS_CONFIG")))
    loaded = document is not None
    document = document or {}
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        _unknown_key(unknown[0], f"{path}:", _TOP_KEYS)

    header_name = check_header_name(
        env.get("MLFLOW_AUTH_HEADER_NAME")
        or _file_str(document, "header_name", path)
        or "Authorization"
    )
    if timeout is None:
        timeout = _number(
            env.get("MLFLOW_SECRETS_TIMEOUT_SEC"),
            document.get("timeout_sec"),
            "MLFLOW_SECRETS_TIMEOUT_SEC",
            DEFAULT_TIMEOUT_SEC,
            positive=True,
            maximum=MAX_TIMEOUT_SEC,
        )
    stale_grace = _number(
        env.get("MLFLOW_SECRETS_STALE_GRACE_SEC"),
        document.get("stale_grace_sec"),
        "MLFLOW_SECRETS_STALE_GRACE_SEC",
        DEFAULT_STALE_GRACE_SEC,
        maximum=MAX_TTL_SEC,
    )
    default_ttl = _number(
        None, document.get("ttl_sec"), "ttl_sec", DEFAULT_TTL_SEC, maximum=MAX_TTL_SEC
    )
    cache_dir_text = env.get("MLFLOW_SECRETS_CACHE_DIR") or _file_str(document, "cache_dir", path)
    cache_dir = (
        userfiles.expand_user(cache_dir_text, env) if cache_dir_text else userfiles.cache_dir(env)
    )
    log_level = (
        env.get("MLFLOW_SECRETS_LOG_LEVEL") or _file_str(document, "log_level", path) or "warning"
    ).lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(
            f"MLFLOW_SECRETS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}",
        )

    enabled = enabled_providers(env)
    skipped: list[str] = []
    if enabled:
        routes: list[Route] = []
        for name in enabled:
            route = _env_route(providers.spec(name), env, header_name, default_ttl)
            if route is None:
                skipped.append(name)
            else:
                routes.append(route)
        if not routes:
            missing = ", ".join(providers.spec(n).secret_variable() for n in enabled)
            raise ConfigError(
                "no enabled provider names its secret",
                hints=[f"set {missing}"],
            )
    else:
        routes = _file_routes(document, path, env, header_name, default_ttl)

    allowed = env.get("MLFLOW_SECRETS_ALLOWED_HOSTS")
    if allowed is not None:
        policy = HostPolicy.from_spec(allowed)
    elif "allowed_hosts" in document:
        patterns = document["allowed_hosts"]
        if isinstance(patterns, list):
            patterns = [str(p) for p in patterns]
        elif not isinstance(patterns, str):
            raise ConfigError(f"{path}: allowed_hosts must be a list of host patterns")
        policy = HostPolicy.from_spec(patterns, source=f"{path}: allowed_hosts")
    elif routes and all(route.hosts is not None for route in routes):
        # The file's routes name every host we serve: they are the allowlist.
        policy = HostPolicy.from_spec(
            [str(pattern) for route in routes for pattern in route.hosts or ()],
            source=f"{path}: the hosts of its routes",
        )
    else:
        policy = HostPolicy.from_spec(None)

    return Config(
        policy=policy,
        routes=tuple(routes),
        header_name=header_name,
        timeout_sec=timeout,
        stale_grace_sec=stale_grace,
        cache_dir=cache_dir,
        log_level=log_level,
        config_file=path if loaded else None,
        skipped=tuple(skipped),
    )


def known_variables() -> frozenset[str]:
    """Every environment variable the helper (or its MLflow plugin) reads or shows: the
    common ones and each provider's, for telling a typo from a setting."""
    own = CORE_VARIABLES | _PLUGIN_VARIABLES | {variable for variable, _ in OIDC_SETTINGS}
    return own.union(*(spec.variables() for spec in providers.specs()))


def enabled_providers(env: Mapping[str, str]) -> tuple[str, ...]:
    """Providers enabled by ``MLFLOW_SECRETS_AUTH_ENABLE`` and the per-provider toggles,
    in priority order (the registry's). An explicit ``false`` toggle wins."""
    names = providers.names()
    listed: set[str] = set()
    for item in env.get("MLFLOW_SECRETS_AUTH_ENABLE", "").split(","):
        name = item.strip().lower()
        if not name:
            continue
        if name not in names:
            raise ConfigError(
                f"MLFLOW_SECRETS_AUTH_ENABLE names an unknown provider {name!r}",
                hints=["use a comma-separated list of: " + ", ".join(names)],
            )
        listed.add(name)
    for spec in providers.specs():
        toggle = env.get(spec.toggle)
        if toggle is None or toggle.strip() == "":
            continue
        if parse_bool(toggle, spec.toggle):
            listed.add(spec.name)
        else:
            listed.discard(spec.name)
    return tuple(name for name in names if name in listed)


def parse_bool(text: str, variable: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{variable} must be true or false")


def _env_route(
    spec: ProviderSpec, env: Mapping[str, str], header_name: str, default_ttl: float
) -> Route | None:
    prefix = spec.env_prefix
    settings: dict[str, str] = {}
    for variable, key in spec.env_settings:
        value = env.get(variable)
        if value and key not in settings:
            settings[key] = value
    if not settings.get(spec.locator):
        return None
    return Route(
        provider=spec.name,
        settings=settings,
        hosts=None,
        auth_mode=_auth_mode(env.get(f"{prefix}_AUTH_MODE"), f"{prefix}_AUTH_MODE", spec),
        ttl_sec=_number(
            env.get(f"{prefix}_TTL_SEC"),
            None,
            f"{prefix}_TTL_SEC",
            default_ttl,
            maximum=MAX_TTL_SEC,
        ),
        header_name=header_name,
        source="environment",
        oauth=_oauth_settings({}, env),
    )


def _file_routes(
    document: Mapping[str, Any],
    path: str,
    env: Mapping[str, str],
    header_name: str,
    default_ttl: float,
) -> list[Route]:
    raw_routes = document.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ConfigError(f"{path}: routes must be an array of tables ([[routes]])")
    routes = []
    for number, raw in enumerate(raw_routes, start=1):
        where = f"{path}: route {number}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} is not a table")
        provider = raw.get("provider")
        names = providers.names()
        if provider not in names:
            raise ConfigError(f"{where}: provider must be one of {', '.join(names)}")
        hosts_value = raw.get("hosts")
        if isinstance(hosts_value, str):
            hosts_value = [hosts_value]
        if not isinstance(hosts_value, list) or not hosts_value:
            raise ConfigError(f"{where}: hosts must be a non-empty list of host patterns")
        hosts = parse_patterns([str(h) for h in hosts_value], source=where)
        accepted = providers.spec(provider).settings
        settings: dict[str, str] = {}
        oauth: dict[str, str] = {}
        for key, value in raw.items():
            if key in _ROUTE_KEYS:
                continue
            if key in _OIDC_KEYS:
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"{where}: {key} must be a non-empty string")
                oauth[key] = value
                continue
            if key not in accepted:
                _unknown_route_key(key, where, providers.spec(provider))
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be a string")
            settings[key] = str(value)
        # header_name: env overrides the route, the route overrides the file's top level.
        route_header = env.get("MLFLOW_AUTH_HEADER_NAME") or raw.get("header_name") or header_name
        if not isinstance(route_header, str):
            raise ConfigError(f"{where}: header_name must be a string")
        routes.append(
            Route(
                provider=provider,
                settings=settings,
                hosts=hosts,
                auth_mode=_auth_mode(
                    raw.get("auth_mode"), f"{where}: auth_mode", providers.spec(provider)
                ),
                ttl_sec=_number(
                    None,
                    raw.get("ttl_sec"),
                    f"{where}: ttl_sec",
                    default_ttl,
                    maximum=MAX_TTL_SEC,
                ),
                header_name=check_header_name(route_header),
                source=f"{path} route {number}",
                oauth=_oauth_settings(oauth, env),
            )
        )
    return routes


#: words that name login material or the credential itself, whatever the provider
_GENERIC_MATERIAL = frozenset({"token", "password", "secret", "username", "api_key", "credential"})


def login_material_keys() -> frozenset[str]:
    """Route keys that would hold a secret: the generic words and each provider's login
    variables without their first word (``X_CLIENT_SECRET`` → ``client_secret``) or with it."""
    words = set(_GENERIC_MATERIAL)
    for spec in providers.specs():
        for variable in spec.credential_variables:
            words.add(variable.lower())
            words.add(variable.partition("_")[2].lower())
    return frozenset(words)


def _unknown_key(key: str, where: str, accepted: frozenset[str]) -> NoReturn:
    from mlflow_secrets_helper.typos import did_you_mean

    raise ConfigError(
        f"{where} unknown setting {key!r}{did_you_mean(key, accepted)}",
        hints=["accepted here: " + ", ".join(sorted(accepted))],
    )


def _unknown_route_key(key: str, where: str, spec: ProviderSpec) -> NoReturn:
    if key.lower() in login_material_keys():
        raise ConfigError(
            f"{where}: {key!r} is login material, which is never read from the configuration "
            "file: the provider's login comes from the environment only, and the MLflow "
            "credential itself from the secret store",
            hints=[
                f"remove {key!r}; {spec.name} signs in with " + ", ".join(spec.credential_variables)
            ],
        )
    _unknown_key(key, f"{where}:", spec.settings | _ROUTE_KEYS | _OIDC_KEYS)


def _oauth_settings(
    route: Mapping[str, str], env: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """A route's ``oidc_*`` settings with the MLFLOW_OIDC_* variables over them."""
    merged = dict(route)
    for variable, key in OIDC_SETTINGS:
        value = env.get(variable)
        if value and value.strip():
            merged[key] = value.strip()
    return tuple(sorted(merged.items()))


def _auth_mode(value: object, where: str, spec: ProviderSpec) -> AuthMode | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() in AUTH_MODES:
        mode: AuthMode = "basic" if value.strip().lower() == "basic" else "bearer"
        if mode not in spec.auth_modes:
            raise ConfigError(
                f"{where} is {mode}, but the {spec.name} provider serves "
                + " or ".join(spec.auth_modes)
                + " credentials only",
                hints=[f"remove the auth mode or set it to {spec.auth_modes[0]}"],
            )
        return mode
    raise ConfigError(f"{where} must be bearer or basic")


def _number(
    env_value: str | None,
    file_value: object,
    name: str,
    default: float,
    *,
    positive: bool = False,
    maximum: float,
) -> float:
    raw: object = env_value if env_value not in (None, "") else file_value
    if raw is None:
        return default
    try:
        if isinstance(raw, bool):
            raise ValueError
        number = float(raw) if isinstance(raw, (int, float, str)) else float("nan")
    except ValueError:
        raise ConfigError(f"{name} is not a number of seconds, e.g. 10") from None
    if number != number or number < 0 or (positive and number == 0) or number > maximum:
        low = "greater than 0" if positive else "0 or more"
        raise ConfigError(f"{name} must be {low} and at most {maximum:g}")
    return number


def _file_str(document: Mapping[str, Any], key: str, path: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {key} must be a string")
    return value
