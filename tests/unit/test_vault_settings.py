"""The Vault provider without a server or hvac: settings, where the secret is, memory notes."""

from __future__ import annotations

import sys

import pytest

from mlflow_secrets_helper.errors import ConfigError
from mlflow_secrets_helper.providers import create
from mlflow_secrets_helper.providers.base import DEFAULT_SEAMS
from mlflow_secrets_helper.providers.vault import (
    SPEC,
    VaultProvider,
    location_from_note,
    parse_settings,
)
from mlflow_secrets_helper.providers.vault.client import Location

ENV = {"VAULT_ADDR": "https://vault.example.com", "VAULT_TOKEN": "t"}


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("https://vault.example.com:8200", True),
        ("https://vault.example.com/", True),
        ("http://127.0.0.1:8200", True),
        ("http://127.9.9.9:8200", True),
        ("http://localhost:8200", True),
        ("http://[::1]:8200", True),
        ("http://vault.example.com:8200", False),
        ("http://10.0.0.1:8200", False),
        ("ftp://vault.example.com", False),
        ("https://user:pw@vault.example.com", False),
        ("https://vault.example.com:99999", False),
        ("vault.example.com:8200", False),
        ("", False),
    ],
)
def test_address_must_be_https_unless_loopback(address: str, ok: bool) -> None:
    env = {"VAULT_ADDR": address, "VAULT_TOKEN": "t"}
    if ok:
        assert VaultProvider({"secret_path": "secret/x"}, env).settings.address == address.rstrip(
            "/"
        )
    else:
        with pytest.raises(ConfigError):
            VaultProvider({"secret_path": "secret/x"}, env)


# --------------------------------------------------------------------------- settings


def test_settings_are_validated() -> None:
    env = {"VAULT_ADDR": "https://vault.example.com", "VAULT_TOKEN": "t"}
    with pytest.raises(ConfigError, match="'colour'"):
        create("vault", {"secret_path": "secret/x", "colour": "blue"}, env)
    with pytest.raises(ConfigError, match="MLFLOW_VAULT_SECRET_PATH"):
        VaultProvider({}, env)
    for bad in ("secret/../x", "secret//x", "secret/x?y", "secret/%2e"):
        with pytest.raises(ConfigError):
            VaultProvider({"secret_path": bad}, env)
    for key, value in (("secret_version", "0"), ("secret_version", "x"), ("kv_version", "3")):
        with pytest.raises(ConfigError):
            VaultProvider({"secret_path": "secret/x", key: value}, env)
    for namespace in ("team a", "t\u00e9am", "a//b"):
        with pytest.raises(ConfigError, match="VAULT_NAMESPACE"):
            VaultProvider({"secret_path": "secret/x"}, {**env, "VAULT_NAMESPACE": namespace})
    with pytest.raises(ConfigError, match="auth method"):
        VaultProvider({"secret_path": "secret/x", "auth_method": "ldap"}, env)
    with pytest.raises(ConfigError, match="MLFLOW_VAULT_K8S_ROLE"):
        VaultProvider({"secret_path": "secret/x", "auth_method": "kubernetes"}, env)


def test_auth_method_is_inferred() -> None:
    env = {"VAULT_ADDR": "https://vault.example.com"}
    assert VaultProvider({"secret_path": "s/x"}, env).settings.auth_method == "token"
    approle = VaultProvider({"secret_path": "s/x"}, {**env, "VAULT_ROLE_ID": "r"})
    assert approle.settings.auth_method == "approle"
    k8s = VaultProvider({"secret_path": "s/x", "k8s_role": "ml"}, env)
    assert k8s.settings.auth_method == "kubernetes"
    assert k8s.settings.k8s_token_path == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_registry_builds_the_provider() -> None:
    provider = create("vault", {"secret_path": "secret/x"}, {"VAULT_ADDR": "https://v.example"})
    assert isinstance(provider, VaultProvider)
    assert "secret/x" in provider.reference() and "https://v.example" in provider.reference()


def test_building_reads_no_file() -> None:
    """The CA and client certificate are checked when Vault is first called, not before."""
    env = {**ENV, "VAULT_CACERT": "/nonexistent/ca.pem", "VAULT_CLIENT_CERT": "/nonexistent"}
    provider = SPEC.build({"secret_path": "secret/x"}, env, DEFAULT_SEAMS)
    assert provider.reference() == "secret/x at https://vault.example.com"
    assert provider.warnings() == ()


def test_skip_verify_warns_for_https_loopback_only() -> None:
    https = {"VAULT_ADDR": "https://127.0.0.1:8200", "VAULT_SKIP_VERIFY": "true"}
    (warning,) = VaultProvider({"secret_path": "secret/x"}, https).warnings()
    assert "VAULT_SKIP_VERIFY" in warning and "\n" not in warning
    http = {**https, "VAULT_ADDR": "http://127.0.0.1:8200"}
    assert VaultProvider({"secret_path": "secret/x"}, http).warnings() == ()


def test_cache_key_names_version_namespace_and_configured_mount() -> None:
    keys = {
        VaultProvider(settings, env).cache_key()
        for settings, env in (
            ({"secret_path": "secret/x"}, ENV),
            ({"secret_path": "secret/x", "secret_version": "2"}, ENV),
            ({"secret_path": "secret/x"}, {**ENV, "VAULT_NAMESPACE": "team"}),
            ({"secret_path": "secret/x", "mount": "secret", "kv_version": "2"}, ENV),
            ({"secret_path": "secret/x"}, {**ENV, "VAULT_ADDR": "https://other.example"}),
        )
    }
    assert len(keys) == 5


@pytest.mark.parametrize(
    ("secret_path", "mount", "kv_version", "relative", "acl_path"),
    [
        ("secret/mlflow/auth", "secret", 2, "mlflow/auth", "secret/data/mlflow/auth"),
        ("secret/data/mlflow/auth", "secret", 2, "mlflow/auth", "secret/data/mlflow/auth"),
        ("secret/data/data/x", "secret", 2, "data/x", "secret/data/data/x"),
        ("kv1/data/mlflow", "kv1", 1, "data/mlflow", "kv1/data/mlflow"),
        ("team/kv/mlflow/auth", "team/kv", 2, "mlflow/auth", "team/kv/data/mlflow/auth"),
    ],
)
def test_location_of_a_secret_path(
    secret_path: str, mount: str, kv_version: int, relative: str, acl_path: str
) -> None:
    location = Location.of(secret_path, mount, kv_version)
    assert location == (mount, kv_version, relative)
    assert location.acl_path() == acl_path


def test_a_path_that_is_only_the_mount_is_a_config_error() -> None:
    for kv_version in (1, 2):
        with pytest.raises(ConfigError, match="names the mount"):
            Location.of("team/kv", "team/kv", kv_version)
    with pytest.raises(ConfigError, match="names the mount"):
        Location.of("secret/data/", "secret", 2)


@pytest.mark.parametrize(
    ("settings", "note", "expected"),
    [
        ({}, "secret\n2", ("secret", 2, "mlflow/auth")),
        ({}, "secret\n1", ("secret", 1, "mlflow/auth")),
        ({}, None, None),
        ({}, "", None),  # forgotten
        ({}, "secret", None),
        ({}, "secret\n3", None),
        ({}, "other\n2", None),  # not a prefix of the path
        ({}, "secret/mlflow/auth\n2", None),  # the path itself
        ({"kv_version": "1"}, "secret\n2", None),
        ({"mount": "secret/mlflow"}, "secret\n2", None),
        ({"mount": "secret"}, "secret\n2", ("secret", 2, "mlflow/auth")),
        ({"secret_version": "3"}, "secret\n1", None),  # KV v1 has no versions: ask Vault
        ({"secret_version": "3"}, "secret\n2", ("secret", 2, "mlflow/auth")),
    ],
)
def test_a_remembered_note_is_used_only_when_it_fits(
    settings: dict[str, str], note: str | None, expected: tuple[str, int, str] | None
) -> None:
    parsed = parse_settings({"secret_path": "secret/mlflow/auth", **settings}, ENV)
    assert location_from_note(note, parsed) == expected


def test_without_hvac_a_read_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # as if it were not installed
    settings = {"secret_path": "secret/x", "mount": "secret", "kv_version": "2"}
    with pytest.raises(ConfigError, match="needs hvac") as info:
        VaultProvider(settings, ENV).fetch(1e12)
    assert SPEC.install_hint() in info.value.message  # one line: the command is in it
