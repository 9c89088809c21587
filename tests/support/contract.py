"""The contract every provider passes.

A provider's test module subclasses :class:`ProviderContract` and supplies the
fixtures below, backed by a real server (moto, OpenBao, the Key Vault
emulator). The tests here then check the behaviour the resolver relies on.

Fixtures a subclass must define (function scope):

``make_provider``
    ``make_provider(payload: str | bytes, **settings) -> Provider``: store
    ``payload`` as a new secret in the backend and return a provider reading it.
``missing_provider``
    a provider whose secret does not exist.
``denied_provider``
    a provider whose backend login is valid-looking but refused (bad token,
    wrong key, forbidden).
``unreachable_provider``
    a provider pointed at a loopback port where nothing answers in time.
``rotate``
    ``rotate(provider, payload)``: store a new current version of the provider's secret.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from mlflow_secrets_helper.errors import BackendDenied, BackendUnavailable, NotFound
from mlflow_secrets_helper.providers import Provider
from mlflow_secrets_helper.secret import parse_secret

CANARY = "canary-7f3e1b9c-token-value"


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


class ProviderContract:
    """Shared provider behaviour. Subclass it in a ``Test…`` class."""

    #: the SDK module name that must not be imported by building a provider
    sdk_module: str = ""

    def test_reads_plain_token(self, make_provider: Callable[..., Provider]) -> None:
        fetched = make_provider(CANARY).fetch(deadline())
        cred = parse_secret(fetched.value)
        assert cred.mode == "bearer"
        assert cred.header_value().expose() == f"Bearer {CANARY}"

    def test_reads_json_basic(self, make_provider: Callable[..., Provider]) -> None:
        payload = '{"username": "alice", "password": "p@ss:word"}'
        cred = parse_secret(make_provider(payload).fetch(deadline()).value)
        assert cred.mode == "basic"
        assert cred.username is not None and cred.username.expose() == "alice"
        assert cred.password is not None and cred.password.expose() == "p@ss:word"

    def test_token_with_colon_stays_a_token(self, make_provider: Callable[..., Provider]) -> None:
        cred = parse_secret(make_provider("user:pass").fetch(deadline()).value)
        assert cred.mode == "bearer"

    def test_missing_secret_is_not_found(self, missing_provider: Provider) -> None:
        with pytest.raises(NotFound) as info:
            missing_provider.fetch(deadline())
        assert missing_provider.reference() in str(info.value) or info.value.message

    def test_denied_is_backend_denied(self, denied_provider: Provider) -> None:
        with pytest.raises(BackendDenied):
            denied_provider.fetch(deadline())

    def test_unreachable_is_unavailable_within_deadline(
        self, unreachable_provider: Provider
    ) -> None:
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            unreachable_provider.fetch(deadline(2.0))
        assert time.monotonic() - start < 6.0

    def test_rotation_returns_new_value(
        self, make_provider: Callable[..., Provider], rotate: Callable[[Provider, str], None]
    ) -> None:
        provider = make_provider("first-value")
        assert (
            parse_secret(provider.fetch(deadline()).value)
            .header_value()
            .expose()
            .endswith("first-value")
        )
        rotate(provider, "second-value")
        value = parse_secret(provider.fetch(deadline()).value).header_value().expose()
        assert value == "Bearer second-value"

    def test_nothing_reveals_the_secret(
        self, make_provider: Callable[..., Provider], capfd: pytest.CaptureFixture[str]
    ) -> None:
        provider = make_provider(CANARY)
        fetched = provider.fetch(deadline())
        for text in (
            repr(provider),
            str(provider),
            provider.reference(),
            provider.cache_key(),
            repr(fetched),
            str(fetched),
        ):
            assert CANARY not in text
        out, err = capfd.readouterr()
        assert CANARY not in out and CANARY not in err
        assert out == ""

    def test_cache_key_names_the_secret(self, make_provider: Callable[..., Provider]) -> None:
        first, second = make_provider("a-value"), make_provider("b-value")
        assert first.cache_key() != second.cache_key()
        assert first.cache_key() == first.cache_key()

    def test_building_a_provider_imports_no_sdk(self) -> None:
        assert self.sdk_module, "subclass must name its SDK module"
        build = ""
        if self.minimal_route is not None:
            settings, env = self.minimal_route
            build = (
                f"p = p.create({self.provider_name!r}, {settings!r}, {env!r})\n"
                "p.reference(); p.cache_key(); p.warnings(); repr(p)\n"
            )
        code = (
            "import sys\n"
            "import mlflow_secrets_helper.providers as p\n"
            f"p.spec({self.provider_name!r})\n"
            f"{build}"
            f"assert {self.sdk_module!r} not in sys.modules, 'SDK imported before a fetch'\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)

    #: the registry name of the provider under test
    provider_name: str = ""
    #: ``(settings, env)`` of a valid route: the SDK check then builds a provider too
    minimal_route: tuple[dict[str, str], dict[str, str]] | None = None
