"""The Vault provider, in process, against a real OpenBao server (tests/support/openbao.py).

Every test gets a fresh OpenBao namespace (``vault_ns``) holding a KV v2 mount
``secret/`` and a KV v1 mount ``kv1/``. Faults OpenBao cannot produce on demand
(5xx, slow answers) come from the loopback fault proxy.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlflow_secrets_helper.errors import BackendDenied, BackendUnavailable, ConfigError, NotFound
from mlflow_secrets_helper.providers.base import Seams
from mlflow_secrets_helper.providers.vault import VaultProvider
from mlflow_secrets_helper.secret import parse_secret
from tests.support.contract import CANARY, ProviderContract, deadline
from tests.support.faultproxy import FaultProxy, closed_port_url, delay, drop, vault_error
from tests.support.openbao import Bao, K8sTokenReview, VaultNamespace


def kv_data(payload: str | bytes) -> dict[str, Any]:
    """How the tests store a payload: a JSON object as the secret's map, anything else
    as the documented plain-string form ``{"value": ...}``."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    if text.strip().startswith("{"):
        document = json.loads(text)
        assert isinstance(document, dict)
        return document
    return {"value": text}


def env_for(ns: VaultNamespace, token: str | None = None, **extra: str) -> dict[str, str]:
    env = {"VAULT_ADDR": ns.bao.http_url, "VAULT_NAMESPACE": ns.name, "HOME": "/nonexistent"}
    if token is not None:
        env["VAULT_TOKEN"] = token
    env.update(extra)
    return env


def header(provider: Any) -> str:
    return parse_secret(provider.fetch(deadline()).value).header_value().expose()


# --------------------------------------------------------------------------- contract


@pytest.fixture
def make_provider(vault_ns: VaultNamespace) -> Callable[..., VaultProvider]:
    def make(payload: str | bytes, **settings: str) -> VaultProvider:
        name = f"mlflow/{secrets.token_hex(4)}"
        vault_ns.write(name, kv_data(payload))
        token = vault_ns.reader_token(f"secret/data/{name}")
        return VaultProvider(
            {"secret_path": f"secret/{name}", **settings}, env_for(vault_ns, token)
        )

    return make


@pytest.fixture
def missing_provider(vault_ns: VaultNamespace) -> VaultProvider:
    token = vault_ns.reader_token("secret/data/mlflow/*")
    return VaultProvider({"secret_path": "secret/mlflow/missing"}, env_for(vault_ns, token))


@pytest.fixture
def denied_provider(vault_ns: VaultNamespace) -> VaultProvider:
    vault_ns.write("mlflow/auth", {"token": CANARY})
    return VaultProvider(
        {"secret_path": "secret/mlflow/auth"}, env_for(vault_ns, "s.this-token-does-not-exist")
    )


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A loopback port that accepts connections (kernel backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def unreachable_provider(silent_port: str) -> VaultProvider:
    return VaultProvider(
        {"secret_path": "secret/mlflow/auth", "mount": "secret", "kv_version": "2"},
        {"VAULT_ADDR": silent_port, "VAULT_TOKEN": "s.whatever"},
    )


@pytest.fixture
def rotate(vault_ns: VaultNamespace) -> Callable[[VaultProvider, str], None]:
    def rotate(provider: VaultProvider, payload: str) -> None:
        path = provider.settings.secret_path.removeprefix("secret/")
        vault_ns.write(path, kv_data(payload))

    return rotate


class TestVaultContract(ProviderContract):
    provider_name = "vault"
    sdk_module = "hvac"


# --------------------------------------------------------------------------- KV engines


def test_kv2_has_no_expiry(vault_ns: VaultNamespace, make_provider: Any) -> None:
    provider = make_provider('{"token": "tok-1"}')
    fetched = provider.fetch(deadline())
    assert json.loads(fetched.value.expose()) == {"token": "tok-1"}
    assert fetched.expires_at is None
    assert header(provider) == "Bearer tok-1"


def test_kv2_api_form_of_the_path(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"username": "alice", "password": "pw"})
    token = vault_ns.reader_token("secret/data/mlflow/auth")
    for path in ("secret/mlflow/auth", "secret/data/mlflow/auth", "/secret/data/mlflow/auth/"):
        provider = VaultProvider({"secret_path": path}, env_for(vault_ns, token))
        assert parse_secret(provider.fetch(deadline()).value).mode == "basic"


def test_kv2_pinned_version(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "old"})
    vault_ns.write("mlflow/auth", {"token": "new"})
    env = env_for(vault_ns, vault_ns.reader_token("secret/data/mlflow/auth"))
    pinned = VaultProvider({"secret_path": "secret/mlflow/auth", "secret_version": "1"}, env)
    latest = VaultProvider({"secret_path": "secret/mlflow/auth"}, env)
    assert header(pinned) == "Bearer old"
    assert header(latest) == "Bearer new"
    vault_ns.write("mlflow/auth", {"token": "newer"})
    assert header(pinned) == "Bearer old"
    assert header(latest) == "Bearer newer"
    assert pinned.cache_key() != latest.cache_key()


def test_kv2_missing_version_is_not_found(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    env = env_for(vault_ns, vault_ns.reader_token("secret/data/mlflow/auth"))
    provider = VaultProvider({"secret_path": "secret/mlflow/auth", "secret_version": "7"}, env)
    with pytest.raises(NotFound, match="version 7 of secret/mlflow/auth"):
        provider.fetch(deadline())


def test_kv2_deleted_and_destroyed_versions_are_not_found(vault_ns: VaultNamespace) -> None:
    for n in (1, 2, 3):
        vault_ns.write("mlflow/auth", {"token": f"v{n}"})
    vault_ns.bao.delete_kv2_versions("mlflow/auth", [3], namespace=vault_ns.name)
    vault_ns.bao.destroy_kv2_versions("mlflow/auth", [1], namespace=vault_ns.name)
    env = env_for(vault_ns, vault_ns.reader_token("secret/data/mlflow/auth"))

    def read(version: str | None) -> VaultProvider:
        settings = {"secret_path": "secret/mlflow/auth"}
        if version:
            settings["secret_version"] = version
        return VaultProvider(settings, env)

    with pytest.raises(NotFound, match=r"version 3 of secret/mlflow/auth .* was deleted"):
        read(None).fetch(deadline())
    with pytest.raises(NotFound, match=r"version 1 of secret/mlflow/auth .* was destroyed"):
        read("1").fetch(deadline())
    assert header(read("2")) == "Bearer v2"


def test_kv1_secret_and_its_lease_caps_expiry(vault_ns: VaultNamespace) -> None:
    vault_ns.write_v1("mlflow/auth", {"token": "kv1-token"})
    vault_ns.write_v1("mlflow/short", {"token": "kv1-short", "ttl": "30s"})
    env = env_for(vault_ns, vault_ns.reader_token("kv1/mlflow/*"))
    before = time.time()
    default = VaultProvider({"secret_path": "kv1/mlflow/auth"}, env).fetch(deadline())
    short = VaultProvider({"secret_path": "kv1/mlflow/short"}, env).fetch(deadline())
    assert parse_secret(default.value).header_value().expose() == "Bearer kv1-token"
    assert parse_secret(short.value).header_value().expose() == "Bearer kv1-short"
    # KV v1 reports its advisory ttl (32 days unless the secret sets one) as the lease
    assert default.expires_at is not None and default.expires_at >= before + 32 * 86400 - 5
    assert short.expires_at is not None and before + 25 <= short.expires_at <= time.time() + 30


def test_kv1_path_starting_with_data_is_not_rewritten(vault_ns: VaultNamespace) -> None:
    vault_ns.write_v1("data/mlflow", {"token": "under-data"})
    env = env_for(vault_ns, vault_ns.reader_token("kv1/data/mlflow"))
    assert header(VaultProvider({"secret_path": "kv1/data/mlflow"}, env)) == "Bearer under-data"


def test_kv1_with_a_version_is_a_config_error(vault_ns: VaultNamespace) -> None:
    vault_ns.write_v1("mlflow/auth", {"token": "x"})
    env = env_for(vault_ns, vault_ns.reader_token("kv1/mlflow/auth"))
    provider = VaultProvider({"secret_path": "kv1/mlflow/auth", "secret_version": "1"}, env)
    with pytest.raises(ConfigError, match="KV v1"):
        provider.fetch(deadline())


def test_configured_mount_skips_discovery(vault_ns: VaultNamespace, fault_proxy: Any) -> None:
    vault_ns.bao.mount_kv("team/kv", 2, namespace=vault_ns.name)
    vault_ns.write("mlflow/auth", {"token": "custom-mount"}, mount="team/kv")
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    token = vault_ns.reader_token("team/kv/data/mlflow/auth")
    env = env_for(vault_ns, token, VAULT_ADDR=proxy.url)
    configured = VaultProvider(
        {"secret_path": "team/kv/mlflow/auth", "mount": "team/kv", "kv_version": "2"}, env
    )
    assert header(configured) == "Bearer custom-mount"
    assert proxy.count(path="sys/internal") == 0
    discovered = VaultProvider({"secret_path": "team/kv/mlflow/auth"}, env)
    assert header(discovered) == "Bearer custom-mount"
    assert proxy.count(path="sys/internal/ui/mounts/team/kv/mlflow/auth") == 1


def test_configured_engine_version_must_agree(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    env = env_for(vault_ns, vault_ns.reader_token("secret/data/mlflow/auth"))
    provider = VaultProvider({"secret_path": "secret/mlflow/auth", "kv_version": "1"}, env)
    with pytest.raises(ConfigError, match="KV v2 mount"):
        provider.fetch(deadline())
    with pytest.raises(ConfigError, match="not under the mount"):
        VaultProvider({"secret_path": "secret/mlflow/auth", "mount": "kv"}, env)


def test_value_key_is_the_plain_form_and_other_maps_are_json(vault_ns: VaultNamespace) -> None:
    vault_ns.write("plain", {"value": '{"token": "inside"}'})
    vault_ns.write("extra", {"token": "tok", "owner": "ml-team"})
    vault_ns.write("other", {"value": "v", "note": "n"})
    env = env_for(vault_ns, vault_ns.reader_token("secret/data/*"))
    plain = VaultProvider({"secret_path": "secret/plain"}, env).fetch(deadline()).value.expose()
    assert plain == '{"token": "inside"}'
    assert header(VaultProvider({"secret_path": "secret/extra"}, env)) == "Bearer tok"
    other = VaultProvider({"secret_path": "secret/other"}, env).fetch(deadline()).value.expose()
    assert json.loads(other) == {"value": "v", "note": "n"}


def test_no_mount_at_the_path_is_denied_with_a_hint(vault_ns: VaultNamespace) -> None:
    provider = VaultProvider(
        {"secret_path": "nomount/x"}, env_for(vault_ns, vault_ns.bao.root_token)
    )
    with pytest.raises(BackendDenied, match="no KV mount for nomount/x") as info:
        provider.fetch(deadline())
    assert any("MLFLOW_VAULT_MOUNT" in hint for hint in info.value.hints)


# --------------------------------------------------------------------------- remembered mount


class Notebook:
    """A Memory kept in a dict: what the cache offers, without the encryption."""

    def __init__(self, notes: dict[str, str] | None = None) -> None:
        self.notes = dict(notes or {})
        self.ttls: dict[str, float] = {}
        self.recalled: list[str] = []

    def recall(self, key: str) -> str | None:
        self.recalled.append(key)
        return self.notes.get(key)

    def remember(self, key: str, note: str, ttl: float) -> None:
        self.notes[key], self.ttls[key] = note, ttl


def remembering(memory: Notebook, **settings: str) -> Callable[[dict[str, str]], VaultProvider]:
    return lambda env: VaultProvider(settings, env, Seams(memory=memory))


def test_a_remembered_mount_makes_a_cold_read_one_request(
    vault_ns: VaultNamespace, fault_proxy: Any
) -> None:
    vault_ns.write("mlflow/auth", {"token": CANARY})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    token = vault_ns.reader_token("secret/data/mlflow/auth")
    env = env_for(vault_ns, token, VAULT_ADDR=proxy.url)
    memory = Notebook()
    build = remembering(memory, secret_path="secret/mlflow/auth")
    assert header(build(env)) == f"Bearer {CANARY}"
    assert [r.path for r in proxy.requests] == [
        "/v1/sys/internal/ui/mounts/secret/mlflow/auth",
        "/v1/secret/data/mlflow/auth",
    ]
    ((key, note),) = memory.notes.items()
    assert note == "secret\n2" and 3000 <= memory.ttls[key] <= 4000
    assert vault_ns.name in key and "secret/mlflow/auth" in key
    assert token not in key and CANARY not in key
    proxy.clear()
    for _ in range(2):  # each a new provider: a cold run of the helper
        assert header(build(env)) == f"Bearer {CANARY}"
    assert [r.path for r in proxy.requests] == ["/v1/secret/data/mlflow/auth"] * 2


def test_memory_is_per_address_namespace_and_path(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/a", {"token": "a"})
    vault_ns.write("mlflow/b", {"token": "b"})
    root = vault_ns.bao.root_token
    memory = Notebook()
    for path in ("secret/mlflow/a", "secret/mlflow/b"):
        remembering(memory, secret_path=path)(env_for(vault_ns, root)).fetch(deadline())
    outside = {"VAULT_ADDR": vault_ns.bao.http_url, "VAULT_TOKEN": root}
    with pytest.raises(NotFound):
        remembering(memory, secret_path="secret/mlflow/a")(outside).fetch(deadline())
    assert len(set(memory.recalled)) == 3


@pytest.mark.parametrize("reader", [True, False], ids=["policy-token", "root-token"])
@pytest.mark.parametrize("note", ["team\n2", "team/kv\n1", "team/kv/mlflow\n2"])
def test_a_stale_memory_is_corrected_within_the_same_read(
    vault_ns: VaultNamespace, fault_proxy: Any, note: str, reader: bool
) -> None:
    """A mount that moved (or a wrong note) fails with 404 or 403: ask Vault again, once."""
    vault_ns.bao.mount_kv("team/kv", 2, namespace=vault_ns.name)
    vault_ns.write("mlflow/auth", {"token": "moved"}, mount="team/kv")
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    token = vault_ns.reader_token("team/kv/data/mlflow/auth") if reader else vault_ns.bao.root_token
    memory = Notebook()
    build = remembering(memory, secret_path="team/kv/mlflow/auth")
    env = env_for(vault_ns, token, VAULT_ADDR=proxy.url)
    build(env).fetch(deadline())
    (key,) = memory.notes
    memory.notes[key] = note
    proxy.clear()
    assert header(build(env)) == "Bearer moved"
    assert proxy.count(path="^/v1/sys/internal/ui/mounts/") == 1
    assert len(proxy.requests) == 3
    assert memory.notes[key] == "team/kv\n2"


def test_a_missing_secret_with_a_remembered_mount_is_not_found_as_without(
    vault_ns: VaultNamespace, fault_proxy: Any
) -> None:
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    with pytest.raises(NotFound) as without:
        VaultProvider({"secret_path": "secret/mlflow/missing"}, env).fetch(deadline())
    memory = Notebook()
    build = remembering(memory, secret_path="secret/mlflow/missing")
    with pytest.raises(NotFound):
        build(env).fetch(deadline())
    proxy.clear()
    with pytest.raises(NotFound) as remembered:
        build(env).fetch(deadline())
    assert remembered.value.message == without.value.message
    assert list(memory.notes.values()) == ["secret\n2"]
    # the 404 might mean a moved mount: Vault is asked, says the same, and no second read
    assert len(proxy.requests) == 2


def test_a_stale_memory_whose_mount_is_gone_is_forgotten(vault_ns: VaultNamespace) -> None:
    token = vault_ns.reader_token("gone/data/mlflow/auth")
    env = env_for(vault_ns, token)
    with pytest.raises(BackendDenied) as without:
        VaultProvider({"secret_path": "gone/mlflow/auth"}, env).fetch(deadline())
    memory = Notebook()
    build = remembering(memory, secret_path="gone/mlflow/auth")
    with pytest.raises(BackendDenied):
        build(env).fetch(deadline())
    assert memory.notes == {}  # nothing was found, nothing remembered
    key = memory.recalled[0]
    memory.notes[key] = "gone\n2"
    with pytest.raises(BackendDenied) as remembered:
        build(env).fetch(deadline())
    assert remembered.value.message == without.value.message
    assert memory.notes[key] == ""  # forgotten: the next run asks Vault first


def test_configured_mount_and_version_use_no_memory(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "configured"})
    memory = Notebook()
    settings = {"secret_path": "secret/mlflow/auth", "mount": "secret", "kv_version": "2"}
    provider = remembering(memory, **settings)(env_for(vault_ns, vault_ns.bao.root_token))
    assert header(provider) == "Bearer configured"
    assert memory.recalled == [] and memory.notes == {}


def test_a_note_that_disagrees_with_the_settings_is_ignored(
    vault_ns: VaultNamespace, fault_proxy: Any
) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    memory = Notebook()
    remembering(memory, secret_path="secret/mlflow/auth")(env).fetch(deadline())
    (key,) = memory.notes
    memory.notes[key] = "secret\n1"
    with pytest.raises(ConfigError, match="KV v2 mount"):
        remembering(memory, secret_path="secret/mlflow/auth", kv_version="1")(env).fetch(deadline())


def test_every_client_gets_every_setting_and_the_time_left(
    vault_ns: VaultNamespace, approle: tuple[str, str]
) -> None:
    """The clients are hvac's own; none is left to fill an argument from the process."""
    import hvac

    made: list[dict[str, Any]] = []

    def factory(**kwargs: Any) -> Any:
        made.append(kwargs)
        return hvac.Client(**kwargs)

    role_id, secret_id = approle
    env = env_for(vault_ns, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    provider = VaultProvider(
        {"secret_path": "secret/mlflow/auth"}, env, Seams(client_factory=factory)
    )
    assert header(provider) == "Bearer approle-read"
    assert len(made) == 3  # login, mount lookup, read
    for kwargs in made:
        assert kwargs["url"] == vault_ns.bao.http_url and kwargs["namespace"] == vault_ns.name
        for name in ("token", "verify", "cert", "session"):
            assert kwargs[name] is not None, name
        assert kwargs["allow_redirects"] is False
        assert 0 < kwargs["timeout"] <= 10
    assert made[0]["token"] == ""
    assert made[1]["token"] == made[2]["token"] != ""
    assert made[0]["timeout"] >= made[1]["timeout"] >= made[2]["timeout"]


# --------------------------------------------------------------------------- namespaces and TLS


def test_namespace_isolates_the_secret(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/ns-only", {"token": "in-namespace"})
    root = vault_ns.bao.root_token
    inside = VaultProvider({"secret_path": "secret/mlflow/ns-only"}, env_for(vault_ns, root))
    assert header(inside) == "Bearer in-namespace"
    outside_env = {"VAULT_ADDR": vault_ns.bao.http_url, "VAULT_TOKEN": root}
    outside = VaultProvider({"secret_path": "secret/mlflow/ns-only"}, outside_env)
    with pytest.raises(NotFound):
        outside.fetch(deadline())
    via_setting = VaultProvider(
        {"secret_path": "secret/mlflow/ns-only", "namespace": vault_ns.name}, outside_env
    )
    assert header(via_setting) == "Bearer in-namespace"
    assert inside.cache_key() != outside.cache_key()


def test_unknown_namespace_is_not_found(bao: Bao) -> None:
    env = {"VAULT_ADDR": bao.http_url, "VAULT_TOKEN": bao.root_token, "VAULT_NAMESPACE": "nope1"}
    with pytest.raises(NotFound, match="namespace 'nope1' does not exist"):
        VaultProvider({"secret_path": "secret/x"}, env).fetch(deadline())


@pytest.mark.parametrize("token", ["abc\ndef", "tok en", "t\u00e9", "x" * 9000])
def test_unsendable_token_is_a_config_error_that_does_not_echo_it(bao: Bao, token: str) -> None:
    env = {"VAULT_ADDR": bao.http_url, "VAULT_TOKEN": token}
    with pytest.raises(ConfigError, match="VAULT_TOKEN is not a valid Vault token") as info:
        VaultProvider({"secret_path": "secret/x"}, env).fetch(deadline())
    assert token.strip() not in info.value.message


def test_tls_with_cacert_and_capath(vault_ns: VaultNamespace, tmp_path: Path) -> None:
    vault_ns.write("mlflow/auth", {"token": "over-tls"})
    token = vault_ns.reader_token("secret/data/mlflow/auth")
    tls = env_for(vault_ns, token, VAULT_ADDR=vault_ns.bao.https_url)
    with_ca = VaultProvider(
        {"secret_path": "secret/mlflow/auth"}, {**tls, "VAULT_CACERT": vault_ns.bao.ca_path}
    )
    assert header(with_ca) == "Bearer over-tls"
    assert with_ca.warnings() == ()
    via_route = VaultProvider(
        {"secret_path": "secret/mlflow/auth", "cacert": vault_ns.bao.ca_path}, tls
    )
    assert header(via_route) == "Bearer over-tls"
    # the machine's default CA bundle does not know the test CA
    untrusted = VaultProvider({"secret_path": "secret/mlflow/auth"}, tls)
    with pytest.raises(BackendUnavailable, match="TLS") as info:
        untrusted.fetch(deadline())
    assert any("VAULT_CACERT" in hint for hint in info.value.hints)
    missing = VaultProvider(
        {"secret_path": "secret/mlflow/auth"}, {**tls, "VAULT_CACERT": str(tmp_path / "nope.pem")}
    )
    with pytest.raises(ConfigError, match="VAULT_CACERT"):
        missing.fetch(deadline())


def test_client_certificate_for_mutual_tls(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "mtls"})
    token = vault_ns.reader_token("secret/data/mlflow/auth")
    env = env_for(
        vault_ns, token, VAULT_ADDR=vault_ns.bao.mtls_url, VAULT_CACERT=vault_ns.bao.ca_path
    )
    without = VaultProvider({"secret_path": "secret/mlflow/auth"}, env)
    with pytest.raises(BackendUnavailable):
        without.fetch(deadline())
    cert, key = vault_ns.bao.client_cert
    with_cert = {**env, "VAULT_CLIENT_CERT": cert, "VAULT_CLIENT_KEY": key}
    assert header(VaultProvider({"secret_path": "secret/mlflow/auth"}, with_cert)) == "Bearer mtls"
    with pytest.raises(ConfigError, match="together"):
        VaultProvider(
            {"secret_path": "secret/mlflow/auth"}, {**env, "VAULT_CLIENT_CERT": cert}
        ).fetch(deadline())


def test_skip_verify_only_for_loopback_and_with_a_warning(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "skip"})
    token = vault_ns.reader_token("secret/data/mlflow/auth")
    env = env_for(vault_ns, token, VAULT_ADDR=vault_ns.bao.https_url, VAULT_SKIP_VERIFY="true")
    provider = VaultProvider({"secret_path": "secret/mlflow/auth"}, env)
    assert header(provider) == "Bearer skip"
    (warning,) = provider.warnings()
    assert "VAULT_SKIP_VERIFY" in warning and "\n" not in warning
    remote = {**env, "VAULT_ADDR": "https://vault.example.com:8200"}
    with pytest.raises(ConfigError, match="loopback"):
        VaultProvider({"secret_path": "secret/mlflow/auth"}, remote)
    with pytest.raises(ConfigError, match="VAULT_SKIP_VERIFY"):
        VaultProvider({"secret_path": "secret/x"}, {**env, "VAULT_SKIP_VERIFY": "maybe"})


# --------------------------------------------------------------------------- token login


def test_token_file_in_home_is_used(vault_ns: VaultNamespace, tmp_path: Path) -> None:
    vault_ns.write("mlflow/auth", {"token": "via-file"})
    (tmp_path / ".vault-token").write_text(vault_ns.reader_token("secret/data/mlflow/auth") + "\n")
    env = env_for(vault_ns, HOME=str(tmp_path))
    assert header(VaultProvider({"secret_path": "secret/mlflow/auth"}, env)) == "Bearer via-file"


def test_no_token_anywhere_is_a_config_error_even_if_the_process_has_one(
    vault_ns: VaultNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hvac would read VAULT_TOKEN and ~/.vault-token from the process; the provider reads
    only the environment it was given."""
    vault_ns.write("mlflow/auth", {"token": "x"})
    process_home = tmp_path / "process-home"
    process_home.mkdir()
    (process_home / ".vault-token").write_text(vault_ns.bao.root_token)
    monkeypatch.setenv("HOME", str(process_home))
    monkeypatch.setenv("VAULT_TOKEN", vault_ns.bao.root_token)
    given_home = tmp_path / "given-home"
    given_home.mkdir()
    provider = VaultProvider(
        {"secret_path": "secret/mlflow/auth"}, env_for(vault_ns, HOME=str(given_home))
    )
    with pytest.raises(ConfigError, match="no Vault token"):
        provider.fetch(deadline())


def test_acl_denial_names_path_and_auth_method(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": CANARY})
    vault_ns.write("mlflow/other", {"token": "x"})
    token = vault_ns.reader_token("secret/data/mlflow/other")
    configured = {"mount": "secret", "kv_version": "2"}
    for settings in ({}, configured):
        provider = VaultProvider(
            {"secret_path": "secret/mlflow/auth", **settings}, env_for(vault_ns, token)
        )
        with pytest.raises(BackendDenied) as info:
            provider.fetch(deadline())
        message = info.value.message
        assert "secret/mlflow/auth" in message and "auth method token" in message
        assert "policies" in message
        assert any("secret/data/mlflow/auth" in hint for hint in info.value.hints)
        assert token not in message + "".join(info.value.hints)


def test_expired_static_token_is_denied(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    token = vault_ns.reader_token("secret/data/mlflow/auth", ttl="1s")
    provider = VaultProvider({"secret_path": "secret/mlflow/auth"}, env_for(vault_ns, token))
    time.sleep(2.1)
    with pytest.raises(BackendDenied, match="invalid, expired or revoked"):
        provider.fetch(deadline())


# --------------------------------------------------------------------------- AppRole


@pytest.fixture
def approle(vault_ns: VaultNamespace) -> tuple[str, str]:
    vault_ns.write("mlflow/auth", {"token": "approle-read"})
    policy = vault_ns.reader_policy("secret/data/mlflow/auth")
    vault_ns.bao.enable_auth("approle", namespace=vault_ns.name)
    return vault_ns.bao.approle("mlflow", [policy], namespace=vault_ns.name)


def test_approle_login(vault_ns: VaultNamespace, approle: tuple[str, str], tmp_path: Path) -> None:
    role_id, secret_id = approle
    env = env_for(vault_ns, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    provider = VaultProvider({"secret_path": "secret/mlflow/auth"}, env)
    assert provider.settings.auth_method == "approle"
    assert header(provider) == "Bearer approle-read"
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(secret_id + "\n")
    from_file = env_for(vault_ns, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID_FILE=str(secret_file))
    assert header(VaultProvider({"secret_path": "secret/mlflow/auth"}, from_file)) == (
        "Bearer approle-read"
    )


def test_approle_bad_secret_id_is_denied(
    vault_ns: VaultNamespace, approle: tuple[str, str]
) -> None:
    role_id, _ = approle
    wrong = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    env = env_for(vault_ns, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=wrong)
    with pytest.raises(BackendDenied, match="AppRole login at auth/approle") as info:
        VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline())
    assert wrong not in info.value.message and role_id not in info.value.message


def test_revoked_login_token_logs_in_again(
    vault_ns: VaultNamespace, approle: tuple[str, str]
) -> None:
    role_id, secret_id = approle
    env = env_for(vault_ns, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    provider = VaultProvider({"secret_path": "secret/mlflow/auth"}, env)
    assert header(provider) == "Bearer approle-read"
    login = provider._login
    assert login is not None
    vault_ns.bao.revoke_token(login.token.expose(), namespace=vault_ns.name)
    assert header(provider) == "Bearer approle-read"
    assert provider._login is not None and provider._login.token != login.token


def test_login_token_is_replaced_before_it_expires(
    vault_ns: VaultNamespace, approle: tuple[str, str]
) -> None:
    role_id, secret_id = approle
    now = [1000.0]
    env = env_for(vault_ns, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    provider = VaultProvider(
        {"secret_path": "secret/mlflow/auth"}, env, Seams(monotonic=lambda: now[0])
    )
    provider.fetch(now[0] + 10)
    first = provider._login
    assert first is not None
    provider.fetch(now[0] + 10)
    assert provider._login is first  # still valid: reused
    now[0] += 20 * 60  # the role's token_ttl is 20 minutes
    provider.fetch(now[0] + 10)
    assert provider._login is not first


# --------------------------------------------------------------------------- Kubernetes


def test_kubernetes_login(
    vault_ns: VaultNamespace, k8s_tokenreview: K8sTokenReview, tmp_path: Path
) -> None:
    """Kubernetes auth against the loopback TokenReview stand-in (see tests/support/openbao.py)."""
    vault_ns.write("mlflow/auth", {"token": "k8s-read"})
    policy = vault_ns.reader_policy("secret/data/mlflow/auth")
    vault_ns.bao.enable_auth("kubernetes", namespace=vault_ns.name)
    vault_ns.bao.kubernetes(k8s_tokenreview, "trainer", [policy], namespace=vault_ns.name)
    jwt = k8s_tokenreview.service_account_jwt()
    token_file = tmp_path / "token"
    token_file.write_text(jwt)
    settings = {"secret_path": "secret/mlflow/auth", "k8s_role": "trainer"}
    provider = VaultProvider({**settings, "k8s_token_path": str(token_file)}, env_for(vault_ns))
    assert header(provider) == "Bearer k8s-read"
    k8s_tokenreview.revoke(jwt)
    refused = VaultProvider({**settings, "k8s_token_path": str(token_file)}, env_for(vault_ns))
    with pytest.raises(BackendDenied, match="Kubernetes login at auth/kubernetes as role trainer"):
        refused.fetch(deadline())
    outside_a_pod = VaultProvider(settings, env_for(vault_ns))
    with pytest.raises(ConfigError, match="serviceaccount/token"):
        outside_a_pod.fetch(deadline())


# --------------------------------------------------------------------------- faults


def test_sealed_server_is_unavailable(vault_ns: VaultNamespace) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    env = env_for(vault_ns, vault_ns.bao.root_token)
    vault_ns.bao.seal()
    try:
        with pytest.raises(BackendUnavailable, match="sealed"):
            VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline())
    finally:
        vault_ns.bao.unseal()
    assert header(VaultProvider({"secret_path": "secret/mlflow/auth"}, env)) == "Bearer x"


def test_transient_errors_are_retried(vault_ns: VaultNamespace, fault_proxy: Any) -> None:
    vault_ns.write("mlflow/auth", {"token": "after-retry"})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(vault_error(503, "injected"), path="/v1/secret/data/", times=1)
    proxy.add(vault_error(429, "slow down"), path="/v1/secret/data/", times=1)
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    provider = VaultProvider({"secret_path": "secret/mlflow/auth"}, env)
    assert header(provider) == "Bearer after-retry"
    assert proxy.count(path="/v1/secret/data/") == 3


def test_persistent_5xx_gives_up_after_bounded_attempts(
    vault_ns: VaultNamespace, fault_proxy: Any
) -> None:
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(vault_error(500, "boom"), path="/v1/secret/data/", times=None)
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    with pytest.raises(BackendUnavailable, match="HTTP 500"):
        VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline())
    assert proxy.count(path="/v1/secret/data/") == 3


def test_4xx_is_not_retried(vault_ns: VaultNamespace, fault_proxy: Any) -> None:
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(
        vault_error(403, "1 error occurred:\n\t* permission denied\n\n"),
        path="/v1/secret/data/",
        times=None,
    )
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    with pytest.raises(BackendDenied):
        VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline())
    assert proxy.count(path="/v1/secret/data/") == 1


def test_slow_server_fails_by_the_deadline(vault_ns: VaultNamespace, fault_proxy: Any) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(delay(3.0), path="/v1/secret/data/", times=None)
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="timed out"):
        VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline(1.0))
    assert time.monotonic() - start < 1.5


def test_dropped_connection_and_refused_port_are_unavailable(
    vault_ns: VaultNamespace, fault_proxy: Any
) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(drop(), path="/v1/secret/data/", times=None)
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    with pytest.raises(BackendUnavailable, match="connection"):
        VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline())
    refused = {**env, "VAULT_ADDR": closed_port_url()}
    start = time.monotonic()
    with pytest.raises(BackendUnavailable):
        VaultProvider({"secret_path": "secret/mlflow/auth"}, refused).fetch(deadline())
    assert time.monotonic() - start < 2


def test_redirects_are_not_followed(vault_ns: VaultNamespace, fault_proxy: Any) -> None:
    from tests.support.faultproxy import respond

    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    proxy.add(
        respond(307, "", {"Location": "http://127.0.0.2:1/v1/secret/data/mlflow/auth"}),
        path="/v1/secret/data/",
        times=None,
    )
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    with pytest.raises(BackendUnavailable, match="redirect"):
        VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline())


def test_requests_carry_the_vault_headers(vault_ns: VaultNamespace, fault_proxy: Any) -> None:
    vault_ns.write("mlflow/auth", {"token": "x"})
    proxy: FaultProxy = fault_proxy(vault_ns.bao.http_url)
    env = env_for(vault_ns, vault_ns.bao.root_token, VAULT_ADDR=proxy.url)
    VaultProvider({"secret_path": "secret/mlflow/auth"}, env).fetch(deadline())
    for request in proxy.requests:
        assert request.headers.get("x-vault-request") == "true"
        assert request.headers.get("x-vault-namespace") == vault_ns.name
        assert "authorization" not in request.headers


def test_errors_and_repr_never_carry_login_material(
    vault_ns: VaultNamespace, approle: tuple[str, str]
) -> None:
    role_id, secret_id = approle
    env = env_for(vault_ns, VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id)
    provider = VaultProvider({"secret_path": "secret/mlflow/not-granted"}, env)
    with pytest.raises(BackendDenied) as info:
        provider.fetch(deadline())
    login = provider._login
    assert login is not None
    texts = [
        repr(provider),
        str(provider),
        repr(login),
        info.value.message,
        repr(provider.settings),
    ]
    for text in texts:
        for secret in (secret_id, login.token.expose()):
            assert secret not in text


def test_fetch_imports_hvac_lazily() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from mlflow_secrets_helper.providers.vault import VaultProvider\n"
        "p = VaultProvider({'secret_path': 'secret/x'}, {'VAULT_ADDR': 'https://v.example'})\n"
        "p.cache_key(); p.reference(); p.warnings()\n"
        "assert 'hvac' not in sys.modules and 'requests' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
