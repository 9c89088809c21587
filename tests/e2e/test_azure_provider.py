"""The Azure Key Vault provider, in process, with the real SDK against the loopback stand-ins."""

from __future__ import annotations

import logging
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlflow_secrets_helper.errors import (
    BackendDenied,
    BackendUnavailable,
    ConfigError,
    NotFound,
)
from mlflow_secrets_helper.providers import Provider, Seams, create
from mlflow_secrets_helper.providers.azure import SPEC, AzureKeyVaultProvider
from mlflow_secrets_helper.secret import parse_secret
from tests.support.contract import ProviderContract
from tests.support.keyvault import AzureCloud


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def _name() -> str:
    return "mlflow-" + secrets.token_hex(4)


@pytest.fixture
def cloud(azure_cloud: AzureCloud, monkeypatch: pytest.MonkeyPatch) -> AzureCloud:
    azure_cloud.apply(monkeypatch)
    return azure_cloud


def build(settings: dict[str, str]) -> AzureKeyVaultProvider:
    return AzureKeyVaultProvider(settings, {})


def provider_for(cloud: AzureCloud, name: str, **settings: str) -> AzureKeyVaultProvider:
    return build({"vault_url": cloud.vault_url, "secret_name": name, **settings})


class TestAzureContract(ProviderContract):
    sdk_module = "azure.keyvault.secrets"
    provider_name = "azure-key-vault"
    minimal_route = ({"vault_url": "kv1", "secret_name": "mlflow-token"}, {})

    @pytest.fixture
    def make_provider(self, cloud: AzureCloud) -> Callable[..., Provider]:
        def make(payload: str | bytes, **settings: str) -> Provider:
            name = _name()
            text = payload.decode() if isinstance(payload, bytes) else payload
            cloud.kv.set_secret(name, text)
            return provider_for(cloud, name, **settings)

        return make

    @pytest.fixture
    def missing_provider(self, cloud: AzureCloud) -> Provider:
        return provider_for(cloud, "no-such-secret")

    @pytest.fixture
    def denied_provider(self, cloud: AzureCloud) -> Provider:
        cloud.kv.set_secret("guarded", "value-nobody-may-read")
        cloud.kv.deny("get")
        return provider_for(cloud, "guarded")

    @pytest.fixture
    def unreachable_provider(self, cloud: AzureCloud) -> Provider:
        return build({"vault_url": cloud.silent_vault_url, "secret_name": "anything"})

    @pytest.fixture
    def rotate(self, cloud: AzureCloud) -> Callable[[Provider, str], None]:
        def rotate(provider: Provider, payload: str) -> None:
            assert isinstance(provider, AzureKeyVaultProvider)
            cloud.kv.set_secret(provider.secret_name, payload)

        return rotate


# ----------------------------------------------------------------------------- configuration


def test_vault_name_expands_to_public_cloud_url() -> None:
    provider = build({"vault_url": "My-Vault1", "secret_name": "s"})
    assert provider.vault_url == "https://my-vault1.vault.azure.net"
    assert provider.reference() == "https://my-vault1.vault.azure.net/secrets/s"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://MyVault.vault.azure.net/", "https://myvault.vault.azure.net"),
        ("https://kv.vault.azure.cn", "https://kv.vault.azure.cn"),
        ("https://kv.vault.azure.net:443", "https://kv.vault.azure.net"),
        ("https://kv.example.test:8443", "https://kv.example.test:8443"),
    ],
)
def test_vault_urls_are_normalised(url: str, expected: str) -> None:
    assert build({"vault_url": url, "secret_name": "s"}).vault_url == expected


@pytest.mark.parametrize(
    "settings",
    [
        {"secret_name": "s"},
        {"vault_url": "", "secret_name": "s"},
        {"vault_url": "http://kv.vault.azure.net", "secret_name": "s"},
        {"vault_url": "https://user@kv.vault.azure.net", "secret_name": "s"},
        {"vault_url": "https://kv.vault.azure.net/secrets/s", "secret_name": "s"},
        {"vault_url": "https://kv.vault.azure.net?x=1", "secret_name": "s"},
        {"vault_url": "ab", "secret_name": "s"},
        {"vault_url": "bad--name", "secret_name": "s"},
        {"vault_url": "kv1"},
        {"vault_url": "kv1", "secret_name": "has space"},
        {"vault_url": "kv1", "secret_name": "a/b"},
        {"vault_url": "kv1", "secret_name": "s", "secret_version": "v1"},
        {"vault_url": "kv1", "secret_name": "s", "client_id": "not-a-guid"},
        {"vault_url": "kv1", "secret_name": "s", "ttl_sec": "5"},
        {"vault_url": "kv1", "secret_name": "s", "verify_challenge_resource": "false"},
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        create("azure-key-vault", settings, {})


def test_version_latest_means_no_version() -> None:
    provider = build({"vault_url": "kv1", "secret_name": "s", "secret_version": "latest"})
    assert provider.secret_version is None
    pinned = build({"vault_url": "kv1", "secret_name": "s", "secret_version": "A" * 32})
    assert pinned.secret_version == "a" * 32
    assert pinned.cache_key() != provider.cache_key()


def test_building_and_naming_a_provider_loads_no_azure_module() -> None:
    code = (
        "import sys\n"
        "from mlflow_secrets_helper.providers import create\n"
        "p = create('azure-key-vault', {'vault_url': 'kv1', 'secret_name': 's'}, {})\n"
        "p.cache_key(); p.reference(); repr(p)\n"
        "loaded = [m for m in sys.modules if m == 'azure' or m.startswith(('azure.', 'msal'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_builds_it() -> None:
    provider = create("azure-key-vault", {"vault_url": "kv1", "secret_name": "s"}, {})
    assert isinstance(provider, AzureKeyVaultProvider)
    assert SPEC.build is AzureKeyVaultProvider


def test_unknown_settings_are_all_named_once() -> None:
    settings = {"vault_url": "kv1", "secret_name": "s", "ttl_sec": "5", "verify": "no"}
    with pytest.raises(ConfigError, match="unknown azure-key-vault settings 'ttl_sec', 'verify'"):
        create("azure-key-vault", settings, {})


# ----------------------------------------------------------------------------- reading


def test_reads_latest_through_the_challenge_and_managed_identity(cloud: AzureCloud) -> None:
    exp = int(time.time()) + 3600
    cloud.kv.set_secret("tok", '{"token": "abc123"}', exp=exp)
    fetched = provider_for(cloud, "tok").fetch(deadline())
    assert fetched.expires_at == exp
    assert parse_secret(fetched.value).header_value().expose() == "Bearer abc123"
    # unauthenticated GET -> 401 challenge -> token from the App Service endpoint -> GET
    kv_calls = [(r["path"], r["authorized"]) for r in cloud.kv.requests]
    assert kv_calls == [("/secrets/tok/", False), ("/secrets/tok/", True)]
    assert {r["host"] for r in cloud.kv.requests} == {f"{cloud.kv.name}.vault.azure.net"}
    assert [r["query"]["resource"] for r in cloud.mi.requests] == ["https://vault.azure.net"]
    assert cloud.guard.tunnels == [f"{cloud.kv.name}.vault.azure.net:443"] * len(
        cloud.guard.tunnels
    )


def test_no_expiry_means_expires_at_none(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("plain", "t0ken")
    assert provider_for(cloud, "plain").fetch(deadline()).expires_at is None


def test_reads_a_pinned_version(cloud: AzureCloud) -> None:
    first = cloud.kv.set_secret("rot", "first")
    cloud.kv.set_secret("rot", "second")
    pinned = provider_for(cloud, "rot", secret_version=first.version).fetch(deadline())
    assert pinned.value.expose() == "first"
    assert cloud.kv.requests[-1]["path"] == f"/secrets/rot/{first.version}"
    assert provider_for(cloud, "rot").fetch(deadline()).value.expose() == "second"


def test_unknown_version_is_not_found(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("rot", "first")
    provider = provider_for(cloud, "rot", secret_version="0" * 32)
    with pytest.raises(NotFound, match="SecretNotFound"):
        provider.fetch(deadline())


def test_user_assigned_identity_client_id(cloud: AzureCloud) -> None:
    client_id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    cloud.mi.user_assigned.add(client_id)
    cloud.kv.set_secret("uami", "tok-uami")
    provider = provider_for(cloud, "uami", client_id=client_id)
    assert provider.fetch(deadline()).value.expose() == "tok-uami"
    assert cloud.mi.requests[-1]["query"]["client_id"] == client_id


# ----------------------------------------------------------------------------- refusals


def test_disabled_secret_is_refused(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("off", "old")
    cloud.kv.disable("off")
    with pytest.raises(BackendDenied, match="disabled") as info:
        provider_for(cloud, "off").fetch(deadline())
    assert "SecretDisabled" in info.value.message
    assert info.value.exit_code == 3


def test_expired_secret_is_refused(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("old", "tok-expired", exp=int(time.time()) - 60)
    with pytest.raises(BackendDenied, match="expired at") as info:
        provider_for(cloud, "old").fetch(deadline())
    assert "tok-expired" not in str(info.value)


def test_not_yet_valid_secret_is_refused(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("early", "tok-early", nbf=int(time.time()) + 3600)
    with pytest.raises(BackendDenied, match="not valid before"):
        provider_for(cloud, "early").fetch(deadline())


def test_expiry_is_judged_by_the_injected_clock(cloud: AzureCloud) -> None:
    exp = int(time.time()) + 60
    cloud.kv.set_secret("soon", "tok-soon", exp=exp)
    settings = {"vault_url": cloud.vault_url, "secret_name": "soon"}
    later = AzureKeyVaultProvider(settings, {}, Seams(clock=lambda: exp + 1.0))
    with pytest.raises(BackendDenied, match="expired"):
        later.fetch(deadline())


@pytest.mark.parametrize(
    ("style", "inner"), [("rbac", "ForbiddenByRbac"), ("accesspolicy", "AccessDenied")]
)
def test_forbidden_carries_the_key_vault_code(cloud: AzureCloud, style: str, inner: str) -> None:
    cloud.kv.set_secret("guarded", "v")
    cloud.kv.deny("get")
    cloud.kv.forbidden_style = style
    with pytest.raises(BackendDenied) as info:
        provider_for(cloud, "guarded").fetch(deadline())
    assert f"Forbidden/{inner}" in info.value.message
    assert any("Key Vault Secrets User" in hint for hint in info.value.hints)


def test_token_endpoint_refusal_is_denied(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("s", "v")
    cloud.mi.fail_with = 400
    with pytest.raises(BackendDenied, match="no Azure credential"):
        provider_for(cloud, "s").fetch(deadline())
    assert not [r for r in cloud.kv.requests if r["authorized"]]


def test_unreachable_token_endpoint_is_unavailable(
    cloud: AzureCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection failure while signing in is transient (exit 4, stale grace applies),
    not a denial."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/msi/token")
    cloud.kv.set_secret("s", "v")
    with pytest.raises(BackendUnavailable, match="Azure token"):
        provider_for(cloud, "s").fetch(deadline(9))


def test_token_for_another_tenant_is_rejected_by_the_vault(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("s", "v")
    cloud.mi.tenant = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(BackendDenied, match="rejected the Azure token"):
        provider_for(cloud, "s").fetch(deadline())


def test_server_errors_are_unavailable(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("s", "v")
    cloud.kv.inject = [503] * 10
    with pytest.raises(BackendUnavailable, match=r"HTTP 503|InternalServerError"):
        provider_for(cloud, "s").fetch(deadline(8))


def test_one_transient_error_is_retried(cloud: AzureCloud) -> None:
    cloud.kv.set_secret("s", "v-after-retry")
    cloud.kv.inject = [500]
    assert provider_for(cloud, "s").fetch(deadline()).value.expose() == "v-after-retry"


def test_retries_pause_through_the_seams(cloud: AzureCloud) -> None:
    """Key Vault reads are retried twice, with full-jitter pauses from the seams."""
    cloud.kv.set_secret("s", "v")
    cloud.kv.inject = [503] * 10
    sleeps: list[float] = []
    settings = {"vault_url": cloud.vault_url, "secret_name": "s"}
    provider = AzureKeyVaultProvider(settings, {}, Seams(sleep=sleeps.append, jitter=lambda: 1.0))
    with pytest.raises(BackendUnavailable, match=r"HTTP 503|InternalServerError"):
        provider.fetch(deadline(8))
    assert sleeps == [0.4, 0.8]


def test_client_factory_gets_the_vault_url_and_the_credential(cloud: AzureCloud) -> None:
    from azure.keyvault.secrets import SecretClient

    seen: list[tuple[str, str]] = []

    def factory(vault_url: str, credential: Any) -> SecretClient:
        seen.append((vault_url, type(credential).__name__))
        return SecretClient(vault_url, credential, retry_total=0)

    cloud.kv.set_secret("seam", "tok-seam")
    settings = {"vault_url": cloud.vault_url, "secret_name": "seam"}
    provider = AzureKeyVaultProvider(settings, {}, Seams(client_factory=factory))
    assert provider.fetch(deadline()).value.expose() == "tok-seam"
    assert seen == [(cloud.vault_url, "DefaultAzureCredential")]


def test_untrusted_certificate_is_unavailable(
    cloud: AzureCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other.pem"
    import trustme

    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    cloud.kv.set_secret("s", "v")
    with pytest.raises(BackendUnavailable, match="cannot reach Key Vault"):
        provider_for(cloud, "s").fetch(deadline(3))


def test_deadline_bounds_the_whole_call(cloud: AzureCloud) -> None:
    provider = build({"vault_url": cloud.silent_vault_url, "secret_name": "s"})
    start = time.monotonic()
    # either our deadline or the transport's timeout (set to the same budget) ends it first
    with pytest.raises(BackendUnavailable, match=r"deadline|timeout") as info:
        provider.fetch(deadline(1.0))
    assert time.monotonic() - start < 1.5
    assert cloud.silent_vault_url in info.value.message and "'s'" in info.value.message


def test_expired_deadline_fails_at_once(cloud: AzureCloud) -> None:
    with pytest.raises(BackendUnavailable):
        provider_for(cloud, "s").fetch(time.monotonic() - 1)
    assert cloud.kv.requests == []


def test_a_foreign_challenge_resource_is_refused(
    cloud: AzureCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's challenge-resource check is on: a vault URL outside vault.azure.net whose
    server challenges for vault.azure.net is refused before any token is sent."""
    cloud.guard.routes["vault.example.test:443"] = cloud.kv.port
    cloud.kv.set_secret("s", "v")
    provider = build({"vault_url": "https://vault.example.test", "secret_name": "s"})
    with pytest.raises(ConfigError, match="challenge"):
        provider.fetch(deadline())
    assert cloud.mi.requests == []
    assert not [r for r in cloud.kv.requests if r["authorized"]]


# ----------------------------------------------------------------------------- other credentials


def test_service_principal_through_the_routed_login_host(
    cloud: AzureCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cloud.service_principal().items():
        monkeypatch.setenv(name, value)
    cloud.kv.set_secret("sp", "tok-sp")
    assert provider_for(cloud, "sp").fetch(deadline()).value.expose() == "tok-sp"
    assert cloud.mi.requests == []
    assert [r["grant_type"] for r in cloud.entra.requests if r["method"] == "POST"] == [
        "client_credentials"
    ]
    subjects = {r.get("subject") for r in cloud.kv.requests if r["authorized"]}
    assert subjects == {f"app:{next(iter(cloud.entra.clients))}"}


def test_service_principal_with_a_wrong_secret_is_denied(
    cloud: AzureCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cloud.service_principal().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "wrong")
    cloud.kv.set_secret("sp", "tok-sp")
    with pytest.raises(BackendDenied, match="7000215"):
        provider_for(cloud, "sp").fetch(deadline())


def test_workload_identity(
    cloud: AzureCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in cloud.workload_identity(tmp_path).items():
        monkeypatch.setenv(name, value)
    cloud.kv.set_secret("wi", "tok-wi")
    assert provider_for(cloud, "wi").fetch(deadline()).value.expose() == "tok-wi"
    assert cloud.mi.requests == []
    assert [r["path"] for r in cloud.entra.requests] == [f"/{cloud.tenant}/oauth2/v2.0/token"]


# ----------------------------------------------------------------------------- hygiene


def test_sdk_logs_show_no_token_or_secret(
    cloud: AzureCloud, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud.kv.set_secret("logged", "canary-secret-value-42")
    provider_for(cloud, "logged").fetch(deadline())
    cloud.mi.fail_with = 400
    with pytest.raises(BackendDenied):
        build({"vault_url": cloud.vault_url, "secret_name": "logged"}).fetch(deadline())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records, "expected the SDK to log at DEBUG"
    for token in cloud.registry.issued():
        assert token not in text
    assert "canary-secret-value-42" not in text
    out, err = capfd.readouterr()
    assert out == ""
    assert "canary-secret-value-42" not in err


def test_sdk_warnings_do_not_reach_the_terminal_by_default(
    cloud: AzureCloud, capfd: pytest.CaptureFixture[str]
) -> None:
    cloud.mi.fail_with = 400
    with pytest.raises(BackendDenied):
        provider_for(cloud, "s").fetch(deadline())
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_the_emulator_pages_version_listings(cloud: AzureCloud) -> None:
    """Emulator fidelity: the SDK follows nextLink through all versions."""
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    made = [cloud.kv.set_secret("many", f"v{i}").version for i in range(5)]
    with (
        DefaultAzureCredential() as credential,
        SecretClient(cloud.vault_url, credential) as client,
    ):
        listed = [
            p.version for p in client.list_properties_of_secret_versions("many", max_page_size=2)
        ]
        stored = client.set_secret("many", "v5", content_type="text/plain")
        latest = client.get_secret("many")
    assert listed == made
    assert latest.properties.version == stored.properties.version
    assert latest.properties.content_type == "text/plain"
    pages = [r for r in cloud.kv.requests if r["path"].endswith("/versions") and r["authorized"]]
    assert len(pages) == 3


# --------------------------------------------------------------------------- secret formats (11.6)

#: in every value below; never in a message
MARK = "Q7x"


def _helper_env(azure_cloud: AzureCloud, helper_env: dict[str, str], name: str) -> dict[str, str]:
    return {
        **helper_env,
        **azure_cloud.env(),
        "MLFLOW_SECRETS_AUTH_ENABLE": "azure-key-vault",
        "MLFLOW_AZURE_KEY_VAULT_URL": azure_cloud.vault_url,
        "MLFLOW_AZURE_SECRET_NAME": name,
        "MLFLOW_SECRETS_ALLOWED_HOSTS": "mlflow.example.com",
    }


@pytest.mark.parametrize(
    ("stored", "header"),
    [
        (MARK + "-tok\n", f"Bearer {MARK}-tok"),
        (MARK + "-tok\r\n", f"Bearer {MARK}-tok"),
        ('{"username": "u\\r\\n", "password": "p\\n"}', "Basic dTpw"),
    ],
    ids=["lf", "crlf", "basic"],
)
def test_the_helper_strips_one_trailing_line_ending(
    azure_cloud: AzureCloud,
    helper_env: dict[str, str],
    run_helper: Callable[..., Any],
    stored: str,
    header: str,
) -> None:
    name = _name()
    azure_cloud.kv.set_secret(name, stored)
    env = _helper_env(azure_cloud, helper_env, name)
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert (result.returncode, result.stdout) == (0, f"Authorization: {header}\n"), result


@pytest.mark.parametrize(
    ("stored", "what"),
    [
        (MARK + "\r\n\r\n", "the token contains a control character U+000D (carriage return) at"),
        (MARK + "\u2028", "the token contains a line separator U+2028 at position 4"),
        ('{"username": "Q7x", "password": "Q7x\\u2028"}', "the password contains a line sep"),
    ],
    ids=["two-crlf", "line-separator-token", "line-separator-password"],
)
def test_an_invalid_character_names_the_secret_and_the_class(
    azure_cloud: AzureCloud,
    helper_env: dict[str, str],
    run_helper: Callable[..., Any],
    stored: str,
    what: str,
) -> None:
    name = _name()
    azure_cloud.kv.set_secret(name, stored)
    env = _helper_env(azure_cloud, helper_env, name)
    result = run_helper(["get"], "mlflow.example.com\n", env)
    assert (result.returncode, result.stdout) == (5, ""), result
    first = result.stderr.splitlines()[0]
    assert first.startswith("mlflow-secrets-helper: error: invalid-secret: "), first
    assert f"secret {azure_cloud.vault_url}/secrets/{name}: {what}" in first, first
    assert MARK not in result.stderr
