"""The provider contract, run on the FakeProvider: the fake behaves like a real provider.

The resolver's fast tests lean on :class:`FakeProvider`; passing the same contract as
the real providers (the parts that need no server) keeps it honest.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable

import pytest

from mlflow_secrets_helper.errors import BackendDenied, BackendUnavailable, NotFound
from mlflow_secrets_helper.providers.base import Provider
from tests.support.contract import ProviderContract
from tests.unit.fake_provider import FakeProvider

_names = itertools.count()


class TestFakeProviderContract(ProviderContract):
    provider_name = "fake"
    sdk_module = "no-sdk"

    @pytest.fixture
    def make_provider(self) -> Callable[..., Provider]:
        def make(payload: str | bytes, **settings: str) -> Provider:
            return FakeProvider(payload, name=f"secret-{next(_names)}")

        return make

    @pytest.fixture
    def missing_provider(self) -> Provider:
        return FakeProvider(NotFound("secret fake:missing was not found"), name="missing")

    @pytest.fixture
    def denied_provider(self) -> Provider:
        return FakeProvider(BackendDenied("the fake backend refused the login"), name="denied")

    @pytest.fixture
    def unreachable_provider(self) -> Provider:
        return FakeProvider(BackendUnavailable("the fake backend did not answer"), name="gone")

    @pytest.fixture
    def rotate(self) -> Callable[[Provider, str], None]:
        def rotate(provider: Provider, payload: str) -> None:
            assert isinstance(provider, FakeProvider)
            provider.answer(payload)

        return rotate

    def test_building_a_provider_imports_no_sdk(self) -> None:
        # The registry check runs a subprocess; the fake is not in the registry and
        # has no SDK, so check in-process that building and fetching it loads none.
        before = set(sys.modules)
        FakeProvider("t").fetch(0.0)
        loaded = {name.partition(".")[0] for name in set(sys.modules) - before}
        assert not loaded & {"hvac", "boto3", "botocore", "azure", "mlflow"}


def test_fake_counts_calls_and_repeats_the_last_answer() -> None:
    fake = FakeProvider(NotFound("gone"), "second", expires_at=123.0)
    with pytest.raises(NotFound):
        fake.fetch(1.0)
    for _ in range(2):
        fetched = fake.fetch(2.0)
        assert fetched.value.expose() == "second" and fetched.expires_at == 123.0
    assert fake.calls == 3 and fake.deadlines == [1.0, 2.0, 2.0]


def test_fake_without_answers_fails_loudly() -> None:
    with pytest.raises(AssertionError, match="not expected"):
        FakeProvider().fetch(0.0)
