"""The provider registry and the specs it returns: pure, no SDK needed."""

from __future__ import annotations

import sys

import pytest

from mlflow_secrets_helper import providers
from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.providers import ProviderSpec

#: the smallest valid route of each provider: (settings, environment)
MINIMAL: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "vault": (
        {"secret_path": "secret/mlflow"},
        {"VAULT_ADDR": "https://127.0.0.1:8200", "VAULT_TOKEN": "not-a-real-token"},
    ),
    "aws-secrets-manager": ({"secret_name": "mlflow/token"}, {"AWS_REGION": "us-east-1"}),
    "azure-key-vault": ({"vault_url": "kv1", "secret_name": "mlflow-token"}, {}),
    "entra-id": ({"token_scope": "api://3f0c4c1e-5a2b-4d7e-9c1f-2b3a4c5d6e7f/.default"}, {}),
    "file": ({"path": "/run/secrets/mlflow-token"}, {}),
}

#: the import names of every provider SDK and of what they pull in
SDK_PACKAGES = ("hvac", "boto3", "botocore", "azure", "msal", "requests")


def all_specs() -> tuple[ProviderSpec, ...]:
    return providers.specs()


def test_names_follow_the_module_order() -> None:
    assert len(providers.specs()) == len(providers.MODULES)
    assert providers.names() == tuple(spec.name for spec in providers.specs())
    for spec in providers.specs():
        assert providers.spec(spec.name) is spec


# the extra is not among them: providers built on one SDK install the same extra (azure)
@pytest.mark.parametrize("field", ["name", "toggle", "env_prefix", "sdk"])
def test_what_identifies_a_provider_is_unique(field: str) -> None:
    values = [getattr(spec, field) for spec in providers.specs()]
    if field in ("sdk", "extra"):  # a provider that needs no SDK (the file source) has none
        assert all(bool(spec.sdk) == bool(spec.extra) for spec in providers.specs())
        values = [value for value in values if value]
    assert all(values), values
    assert len(set(values)) == len(values), values


def test_no_two_providers_share_a_variable() -> None:
    """A provider's own variables are its alone; providers built on one SDK (the same
    extra) may read the same sign-in variables (credential and location ones)."""
    owners: dict[str, ProviderSpec] = {}
    for spec in providers.specs():
        assert len(set(spec.variables())) == len(spec.variables()), spec.name
        for variable in spec.variables():
            first = owners.setdefault(variable, spec)
            if first is spec:
                continue
            sign_in = (*first.credential_variables, *first.location_variables)
            assert first.extra == spec.extra and variable in sign_in, (
                variable,
                first.name,
                spec.name,
            )
            assert variable in (*spec.credential_variables, *spec.location_variables)


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.name)
def test_a_spec_is_consistent(spec: ProviderSpec) -> None:
    assert spec.toggle.startswith("MLFLOW_SECRETS_AUTH_ENABLE_")
    assert spec.locator in spec.settings
    assert {setting for _, setting in spec.env_settings} <= spec.settings
    for variable, _ in spec.env_settings:
        # the prefix itself may name the secret (MLFLOW_SECRETS_FILE)
        assert variable == spec.env_prefix or variable.startswith(spec.env_prefix + "_"), variable
    assert spec.extra in spec.install_hint()
    if not spec.sdk:
        assert spec.install_hint() == f"the {spec.name} provider needs no SDK"


def test_the_minimal_routes_cover_every_provider() -> None:
    assert set(MINIMAL) == set(providers.names())


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'keepass'") as info:
        providers.create("keepass", {}, {})
    assert info.value.hints == ("use one of: " + ", ".join(providers.names()),)


@pytest.mark.parametrize("name", list(MINIMAL))
def test_create_names_every_unknown_setting_before_building(name: str) -> None:
    """The registry checks the keys once, for every provider, before the provider
    validates its values: the message names all unknown keys, the hint the accepted ones."""
    with pytest.raises(ConfigError) as info:
        providers.create(name, {"zz_typo": "1", "bogus": "2"}, {})
    assert info.value.message == f"unknown {name} settings 'bogus', 'zz_typo'"
    accepted = ", ".join(sorted(providers.spec(name).settings))
    assert info.value.hints == (f"{name} routes accept: {accepted}",)
    settings, env = MINIMAL[name]
    with pytest.raises(ConfigError) as one:
        providers.create(name, {**settings, "bogus": "2"}, env)
    assert one.value.message == f"unknown {name} setting 'bogus'"


@pytest.fixture
def no_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every SDK import fail, whether or not the SDKs are installed or loaded."""
    for module in list(sys.modules):
        if module.split(".")[0] in SDK_PACKAGES:
            monkeypatch.delitem(sys.modules, module)
    for package in SDK_PACKAGES:
        monkeypatch.setitem(sys.modules, package, None)


@pytest.mark.usefixtures("no_sdk")
@pytest.mark.parametrize("name", list(MINIMAL))
def test_building_and_naming_a_provider_needs_no_sdk(name: str) -> None:
    """What a cache hit does with a provider (build it, ask its key, reference and
    warnings) must not import its SDK."""
    settings, env = MINIMAL[name]
    provider = providers.create(name, settings, env)
    assert provider.cache_key()
    assert provider.reference()
    assert isinstance(provider.warnings(), tuple)
    assert repr(provider)


@pytest.mark.parametrize("name", list(MINIMAL))
def test_the_seams_are_keyword_compatible(name: str) -> None:
    settings, env = MINIMAL[name]
    seams = providers.Seams(monotonic=lambda: 0.0, clock=lambda: 0.0, sleep=lambda _: None)
    built = providers.spec(name).build(settings, env, seams)
    assert built.cache_key() == providers.create(name, settings, env).cache_key()
