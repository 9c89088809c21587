"""How configuration turns each provider's spec into environment routes: pure, no SDK.

Every test walks the registry, so a new provider is covered without a line here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_secrets_helper import config, providers
from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.providers import ProviderSpec

SPECS = providers.specs()


def ids(spec: ProviderSpec) -> str:
    return spec.name


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path / "cache"),
    }


def test_known_variables_are_the_core_ones_and_every_providers() -> None:
    known = config.known_variables()
    assert isinstance(known, frozenset)
    assert known >= config.CORE_VARIABLES
    for variable in (
        "MLFLOW_SECRETS_AUTH_ENABLE",
        "MLFLOW_SECRETS_ALLOWED_HOSTS",
        "MLFLOW_SECRETS_TIMEOUT_SEC",
        "MLFLOW_SECRETS_STALE_GRACE_SEC",
        "MLFLOW_SECRETS_CACHE_DIR",
        "MLFLOW_SECRETS_CONFIG",
        "MLFLOW_SECRETS_LOG_LEVEL",
        "MLFLOW_AUTH_HEADER_NAME",
        "MLFLOW_SECRETS_HELPER_COMMAND",
    ):
        assert variable in known
    for spec in SPECS:
        assert set(spec.variables()) <= known
        assert {spec.toggle, f"{spec.env_prefix}_AUTH_MODE", f"{spec.env_prefix}_TTL_SEC"} <= known
    assert "MLFLOW_SECRETS_TIMEOUT" not in known
    assert "MLFLOW_SECRETS_AUTH_ENABLED" not in known


def test_known_variables_hold_nothing_else() -> None:
    providers_own = {v for spec in SPECS for v in spec.variables()}
    extra = config.known_variables() - providers_own - config.CORE_VARIABLES
    oidc = {variable for variable, _ in config.OIDC_SETTINGS}
    assert extra == {"MLFLOW_SECRETS_HELPER_COMMAND", *oidc}
    assert all(variable.startswith(config.OIDC_PREFIX) for variable in oidc)


def test_enabling_every_provider_follows_the_registry_order() -> None:
    listed = ",".join(reversed(providers.names()))
    assert config.enabled_providers({"MLFLOW_SECRETS_AUTH_ENABLE": listed}) == providers.names()
    toggles = {spec.toggle: "true" for spec in SPECS}
    assert config.enabled_providers(toggles) == providers.names()


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_a_toggle_enables_and_disables_its_provider_alone(spec: ProviderSpec) -> None:
    assert config.enabled_providers({spec.toggle: "yes"}) == (spec.name,)
    everything = {"MLFLOW_SECRETS_AUTH_ENABLE": ",".join(providers.names())}
    rest = tuple(name for name in providers.names() if name != spec.name)
    assert config.enabled_providers({**everything, spec.toggle: "off"}) == rest


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_a_bad_toggle_is_named(spec: ProviderSpec) -> None:
    with pytest.raises(ConfigError, match=f"^{spec.toggle} must be true or false$"):
        config.enabled_providers({spec.toggle: "maybe"})


def test_an_unknown_provider_lists_the_registry() -> None:
    with pytest.raises(ConfigError) as info:
        config.enabled_providers({"MLFLOW_SECRETS_AUTH_ENABLE": "vault,keepass"})
    assert info.value.message == "MLFLOW_SECRETS_AUTH_ENABLE names an unknown provider 'keepass'"
    assert info.value.hints == ("use a comma-separated list of: " + ", ".join(providers.names()),)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_environment_route_reads_the_spec(spec: ProviderSpec, base_env: dict[str, str]) -> None:
    env = {**base_env, spec.toggle: "true"}
    for variable, setting in spec.env_settings:
        env.setdefault(variable, f"value-of-{setting}")
    mode = spec.auth_modes[-1]
    env[f"{spec.env_prefix}_AUTH_MODE"] = mode.title()
    env[f"{spec.env_prefix}_TTL_SEC"] = "42"
    (route,) = config.load(env).routes
    assert route.provider == spec.name
    assert route.source == "environment"
    assert route.hosts is None
    assert (route.auth_mode, route.ttl_sec) == (mode, 42.0)
    assert dict(route.settings) == {
        setting: f"value-of-{setting}" for _, setting in spec.env_settings
    }


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_the_first_listed_alias_wins(spec: ProviderSpec, base_env: dict[str, str]) -> None:
    env = {**base_env, spec.toggle: "true"}
    for number, (variable, _) in enumerate(spec.env_settings):
        env[variable] = f"value-{number}"
    (route,) = config.load(env).routes
    first: dict[str, str] = {}
    for number, (_, setting) in enumerate(spec.env_settings):
        first.setdefault(setting, f"value-{number}")
    assert dict(route.settings) == first


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_route_variables_are_checked_and_named(
    spec: ProviderSpec, base_env: dict[str, str]
) -> None:
    env = {**base_env, spec.toggle: "true", spec.secret_variable(): "s"}
    with pytest.raises(
        ConfigError, match=f"^{spec.env_prefix}_TTL_SEC is not a number of seconds, e.g. 10$"
    ):
        config.load({**env, f"{spec.env_prefix}_TTL_SEC": "soon"})
    with pytest.raises(ConfigError, match=f"^{spec.env_prefix}_AUTH_MODE must be bearer or basic$"):
        config.load({**env, f"{spec.env_prefix}_AUTH_MODE": "digest"})


def test_enabled_providers_without_a_secret_are_skipped_then_named(
    base_env: dict[str, str],
) -> None:
    first, *rest = SPECS
    everything = {**base_env, "MLFLOW_SECRETS_AUTH_ENABLE": ",".join(providers.names())}
    loaded = config.load({**everything, first.secret_variable(): "s"})
    assert [route.provider for route in loaded.routes] == [first.name]
    assert loaded.skipped == tuple(spec.name for spec in rest)
    with pytest.raises(ConfigError, match="no enabled provider names its secret") as info:
        config.load(everything)
    assert info.value.hints == ("set " + ", ".join(s.secret_variable() for s in SPECS),)


def test_a_file_route_must_name_a_registered_provider(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[[routes]]\nhosts = ['h.example']\nprovider = 'keepass'\n")
    path.chmod(0o600)
    env = {"MLFLOW_SECRETS_CONFIG": str(path), "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path)}
    with pytest.raises(ConfigError) as info:
        config.load(env)
    assert info.value.message == (
        f"{path}: route 1: provider must be one of {', '.join(providers.names())}"
    )


def one_route(tmp_path: Path, spec: ProviderSpec, *lines: str) -> dict[str, str]:
    """A private config file with one route of ``spec`` for h.example (its secret named,
    plus ``lines``); the environment that loads it."""
    path = tmp_path / "config.toml"
    path.write_text(
        "[[routes]]\n"
        "hosts = ['h.example']\n"
        f"provider = '{spec.name}'\n"
        f"{spec.locator} = 'the-secret'\n" + "".join(f"{line}\n" for line in lines)
    )
    path.chmod(0o600)
    return {"MLFLOW_SECRETS_CONFIG": str(path), "MLFLOW_SECRETS_CACHE_DIR": str(tmp_path)}


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_a_file_route_passes_its_settings_on(spec: ProviderSpec, tmp_path: Path) -> None:
    (route,) = config.load(one_route(tmp_path, spec, "ttl_sec = 7")).routes
    assert (route.provider, dict(route.settings), route.ttl_sec) == (
        spec.name,
        {spec.locator: "the-secret"},
        7.0,
    )


def test_oidc_settings_apply_to_every_environment_route() -> None:
    env = {
        "MLFLOW_SECRETS_AUTH_ENABLE": ",".join(s.name for s in SPECS),
        **{s.secret_variable(): "the-secret" for s in SPECS},
        "MLFLOW_OIDC_ISSUER": "https://idp.example.com ",
        "MLFLOW_OIDC_SCOPE": "mlflow",
    }
    routes = config.load(env).routes
    assert len(routes) == len(SPECS)
    for route in routes:
        assert route.oauth == (("oidc_issuer", "https://idp.example.com"), ("oidc_scope", "mlflow"))
        assert "oidc_issuer" not in route.settings


def test_a_file_route_takes_oidc_keys_and_the_environment_overrides_them(tmp_path: Path) -> None:
    spec = SPECS[0]
    env = one_route(
        tmp_path,
        spec,
        "oidc_token_url = 'https://idp.example.com/token'",
        "oidc_scope = 'from-file'",
    )
    (route,) = config.load(env).routes
    assert dict(route.oauth) == {
        "oidc_token_url": "https://idp.example.com/token",
        "oidc_scope": "from-file",
    }
    assert dict(route.settings) == {spec.locator: "the-secret"}
    (route,) = config.load({**env, "MLFLOW_OIDC_SCOPE": "from-env"}).routes
    assert dict(route.oauth)["oidc_scope"] == "from-env"


def test_a_misspelt_oidc_key_in_a_route_gets_a_suggestion(tmp_path: Path) -> None:
    env = one_route(tmp_path, SPECS[0], "oidc_isuer = 'https://idp.example.com'")
    with pytest.raises(ConfigError, match=r"did you mean oidc_issuer\?"):
        config.load(env)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.auth_modes != ("bearer", "basic")], ids=ids)
def test_an_auth_mode_the_provider_cannot_serve_is_a_config_error(
    spec: ProviderSpec, base_env: dict[str, str], tmp_path: Path
) -> None:
    (other,) = {"bearer", "basic"} - set(spec.auth_modes)
    env = {**base_env, spec.toggle: "true", spec.secret_variable(): "the-secret"}
    with pytest.raises(ConfigError, match="serves bearer credentials only"):
        config.load({**env, f"{spec.env_prefix}_AUTH_MODE": other})
    with pytest.raises(ConfigError, match="route 1: auth_mode is basic"):
        config.load(one_route(tmp_path, spec, f"auth_mode = '{other}'"))
