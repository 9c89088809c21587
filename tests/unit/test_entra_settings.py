"""The Entra ID source's settings: the scope, the auth mode, the cache key. No SDK needed."""

from __future__ import annotations

import pytest

from mlflow_secrets_helper import config, providers
from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.providers.entra import token_scope

APP_ID = "3f0c4c1e-5a2b-4d7e-9c1f-2b3a4c5d6e7f"


@pytest.mark.parametrize(
    ("given", "scope"),
    [
        (f"api://{APP_ID}/.default", f"api://{APP_ID}/.default"),
        (f"  api://{APP_ID}/.default\n", f"api://{APP_ID}/.default"),
        (f"api://{APP_ID}", f"api://{APP_ID}/.default"),
        ("api://contoso.onmicrosoft.com/mlflow", "api://contoso.onmicrosoft.com/mlflow/.default"),
        ("https://mlflow.contoso.com/.default", "https://mlflow.contoso.com/.default"),
        ("https://mlflow.contoso.com", "https://mlflow.contoso.com/.default"),
        (APP_ID, f"{APP_ID}/.default"),
        (f"{APP_ID}/.default", f"{APP_ID}/.default"),
    ],
)
def test_a_scope_or_a_resource_becomes_one_default_scope(given: str, scope: str) -> None:
    assert token_scope(given) == scope


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("", "no Entra ID token scope"),
        ("   ", "no Entra ID token scope"),
        (f"api://{APP_ID}/.default https://graph.microsoft.com/.default", "one scope"),
        (f"api://{APP_ID}/.default,api://other/.default", "one scope"),
        ("https://mlflow.contoso.com/.default?x=1", "one scope"),
        ("https://user@mlflow.contoso.com/.default", "one scope"),
        ("http://mlflow.contoso.com/.default", "not an Entra ID scope"),
        ("mlflow", "not an Entra ID scope"),
        ("/.default", "not an Entra ID scope"),
        ("api:///.default", "not an Entra ID scope"),
        ("api://caf\u00e9/.default", "not an Entra ID scope"),
        ("api://app\x00/.default", "not an Entra ID scope"),
    ],
)
def test_a_bad_scope_is_a_config_error_with_a_hint(given: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        token_scope(given)
    assert words in info.value.message
    assert info.value.hints and "/.default" in info.value.hints[0]
    assert info.value.exit_code == 5


def test_the_scope_comes_from_its_variable_and_a_route_key() -> None:
    env = {"MLFLOW_SECRETS_AUTH_ENABLE": "entra-id", "MLFLOW_AZURE_TOKEN_SCOPE": APP_ID}
    (route,) = config.load(env).routes
    assert (route.provider, dict(route.settings)) == ("entra-id", {"token_scope": APP_ID})
    provider = providers.create(route.provider, route.settings, env)
    assert provider.reference() == f"{APP_ID}/.default"


def test_the_ttl_variable_caps_the_cache_time() -> None:
    env = {
        "MLFLOW_SECRETS_AUTH_ENABLE_ENTRA_ID": "true",
        "MLFLOW_AZURE_TOKEN_SCOPE": APP_ID,
        "MLFLOW_AZURE_TOKEN_TTL_SEC": "30",
        "MLFLOW_AZURE_TTL_SEC": "900",  # Key Vault's, not this source's
    }
    (route,) = config.load(env).routes
    assert route.ttl_sec == 30


@pytest.mark.parametrize("mode", ["basic", " Basic "])
def test_basic_auth_mode_is_a_config_error(mode: str) -> None:
    env = {"MLFLOW_SECRETS_AUTH_ENABLE": "entra-id", "MLFLOW_AZURE_TOKEN_SCOPE": APP_ID}
    with pytest.raises(ConfigError) as info:
        config.load({**env, "MLFLOW_AZURE_TOKEN_AUTH_MODE": mode, "HOME": "/nonexistent"})
    assert "entra-id provider serves bearer credentials only" in info.value.message
    assert info.value.hints == ("remove the auth mode or set it to bearer",)


@pytest.mark.parametrize("mode", ["", "bearer", "BEARER"])
def test_bearer_or_no_auth_mode_is_accepted(mode: str) -> None:
    env = {"MLFLOW_AZURE_TOKEN_AUTH_MODE": mode}
    assert providers.create("entra-id", {"token_scope": APP_ID}, env).reference()


def test_a_user_assigned_identity_is_checked_like_key_vaults() -> None:
    with pytest.raises(ConfigError, match="client_id"):
        providers.create("entra-id", {"token_scope": APP_ID, "client_id": "not-a-guid"}, {})


def test_the_cache_key_names_the_scope_and_the_identity() -> None:
    def key(settings: dict[str, str], env: dict[str, str]) -> str:
        return providers.create("entra-id", {"token_scope": APP_ID, **settings}, env).cache_key()

    system = key({}, {})
    assert f"{APP_ID}/.default" in system
    other_app = key({}, {"AZURE_CLIENT_ID": "0a1b2c3d-0000-4000-8000-000000000001"})
    other_tenant = key({}, {"AZURE_TENANT_ID": "0a1b2c3d-0000-4000-8000-000000000002"})
    user_assigned = key({"client_id": "0a1b2c3d-0000-4000-8000-000000000003"}, {})
    assert len({system, other_app, other_tenant, user_assigned}) == 4
    # the same scope given as a resource is the same entry
    assert key({"token_scope": f"{APP_ID}/.default"}, {}) == system


def test_it_is_tried_after_key_vault() -> None:
    names = providers.names()
    assert names.index("entra-id") == names.index("azure-key-vault") + 1


@pytest.mark.parametrize(
    "other",
    [
        {"AZURE_CLIENT_ID": "sp-2"},
        {"AZURE_TENANT_ID": "tenant-2"},
        {"AZURE_AUTHORITY_HOST": "https://login.example.test"},
        {"AZURE_USERNAME": "someone@example.com"},
        {"AZURE_CLIENT_CERTIFICATE_PATH": "/certs/other.pem"},
        {"AZURE_FEDERATED_TOKEN_FILE": "/var/run/other/token"},
        {"AZURE_TOKEN_CREDENTIALS": "dev"},
        {"IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token"},
    ],
)
def test_whatever_chooses_the_identity_names_the_cache_entry(other: dict[str, str]) -> None:
    """A route that picks a managed identity does not stop the environment's service
    principal from being the one that signs in: both name the entry."""
    settings = {"token_scope": APP_ID, "client_id": "11111111-2222-3333-4444-555555555555"}
    base = {"AZURE_CLIENT_ID": "sp-1", "AZURE_TENANT_ID": "tenant-1"}
    first = providers.create("entra-id", settings, base).cache_key()
    assert providers.create("entra-id", settings, dict(base)).cache_key() == first
    assert providers.create("entra-id", settings, {**base, **other}).cache_key() != first
